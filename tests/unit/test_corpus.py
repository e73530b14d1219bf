"""The bad-input corpus itself: big enough, unique names, each case with a definite expectation."""

from __future__ import annotations

from shared.contracts import detect_format
from tests.corpus.bad_inputs import build_cases


def test_corpus_has_at_least_thirty_distinct_cases() -> None:
    cases = build_cases(size_limit=1 << 20)
    assert len(cases) >= 30
    assert len({c.name for c in cases}) == len(cases)
    scored = [c for c in cases if c.expect.scored]
    refused = [c for c in cases if not c.expect.scored]
    assert scored and refused
    # every case the pipeline must score has a name it accepts
    assert all(detect_format(c.name) is not None for c in scored)
    assert any(len(c.data) > (1 << 20) for c in cases)  # the over-size case exceeds the limit
