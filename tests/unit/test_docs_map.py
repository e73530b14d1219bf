"""docs/where-things-are.md stays true: the paths it names exist, and the behaviours newcomers look for are there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "where-things-are.md"
PATH = re.compile(r"`([A-Za-z_][\w./-]*(?:\.py|/))`")


def test_every_path_in_the_map_exists() -> None:
    paths = PATH.findall(MAP.read_text())
    assert len(paths) > 20, "the map names hardly any module: has its format changed?"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == [], f"docs/where-things-are.md names paths that do not exist: {missing}"


def test_the_map_names_the_behaviours_newcomers_look_for() -> None:
    text = MAP.read_text().lower()
    for behaviour in ("blob → request", "endpoint retries", "row validation", "output writing and idempotency",
                      "reconcile"):  # fmt: skip
        assert f"**{behaviour}**" in text, behaviour
