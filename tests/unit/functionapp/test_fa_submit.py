"""submit use case with fakes: request building, idempotent re-fires, and rejection of bad files."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from shared.blobnames import MAX_INPUT_NAME_LENGTH, name_problem
from shared.contracts import INLINE_INPUT_MAX_BYTES, InferenceRequest, RequestState, derive_request_id
from shared.ledger import Ledger
from shared.ports import BlobInfo
from shared.submit import DEFAULT_SESSION, SubmitOutcome, submit_blob

from .fakes import FakeBlobStore, FakeBus, FixedClock, make_settings

SETTINGS = make_settings()


class ReadCountingStore(FakeBlobStore):
    def __init__(self) -> None:
        super().__init__()
        self.input_reads = 0

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        if container == "input":
            self.input_reads += 1
        return super().read(container, name)


def run(blobs: FakeBlobStore, bus: FakeBus, name: str) -> SubmitOutcome:
    """As the trigger does: what the host passed (here the fake's properties) goes along as ``trigger_info``."""
    ledger = Ledger(blobs, "ledger")
    hint = blobs.properties("input", name) if ("input", name) in blobs.blobs else None
    return submit_blob("input", name, settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger, now=FixedClock().now(),
                       trigger_info=hint)  # fmt: skip


def test_publishes_a_request_carrying_a_small_file_read_with_its_properties() -> None:
    blobs, bus = ReadCountingStore(), FakeBus()
    etag = blobs.put("input", "batch/a.csv", b"x,y\n1,2\n", {"session_id": "client-7"})
    blobs.ops.clear()
    assert run(blobs, bus, "batch/a.csv") == SubmitOutcome.PUBLISHED
    assert blobs.input_reads == 0 and blobs.ops_by_container["peek", "input"] == 1
    assert blobs.ops_by_container["properties", "input"] == 1  # the test's own hint (run), not submit's
    [sent] = bus.sent
    request = InferenceRequest.from_json(sent.message.body)
    assert request.input_b64 is not None and base64.b64decode(request.input_b64) == b"x,y\n1,2\n"
    assert "input_b64" not in repr(request)  # no log line of the request holds the file
    assert request.request_id == derive_request_id("input", "batch/a.csv", etag)
    assert sent.topic == "inference-requests" and sent.at is None
    assert sent.message.message_id == request.request_id
    assert sent.message.session_id == request.session_id == "client-7"
    assert sent.message.application_properties["model"] == "default"
    assert sent.message.application_properties["content_type"] == "text/csv"
    assert (request.size, request.blob_url, request.format) == (8, "https://acct.blob.example/input/batch/a.csv", "csv")
    record = Ledger(blobs, "ledger").get(request.request_id)
    assert record is not None and record.state == RequestState.SUBMITTED and record.session_id == "client-7"


def test_a_file_over_the_inline_limit_is_not_read_and_travels_by_url_only() -> None:
    blobs, bus = ReadCountingStore(), FakeBus()
    blobs.put("input", "big.csv", b"a\n" + b"1\n" * INLINE_INPUT_MAX_BYTES)
    settings = make_settings(MAX_INPUT_BYTES=str(4 * INLINE_INPUT_MAX_BYTES))
    outcome = submit_blob("input", "big.csv", settings=settings, blobs=blobs, bus=bus, ledger=Ledger(blobs, "ledger"),
                          now=FixedClock().now())  # fmt: skip
    assert outcome == SubmitOutcome.PUBLISHED
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    assert request.input_b64 is None and request.size == 2 + 2 * INLINE_INPUT_MAX_BYTES
    assert blobs.input_reads == 0


def test_a_parquet_blob_is_requested_as_parquet() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "batch/rows.parquet", b"PAR1...PAR1")
    assert run(blobs, bus, "batch/rows.parquet") == SubmitOutcome.PUBLISHED
    [sent] = bus.sent
    request = InferenceRequest.from_json(sent.message.body)
    assert (request.format, request.compression) == ("parquet", None)
    assert sent.message.application_properties["content_type"] == "application/vnd.apache.parquet"


def test_refired_trigger_yields_the_same_request_and_message_id() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.jsonl.gz", b"\x1f\x8b...")
    run(blobs, bus, "a.jsonl.gz")
    run(blobs, bus, "a.jsonl.gz")
    assert len({s.message.message_id for s in bus.sent}) == 1
    request = InferenceRequest.from_json(bus.sent[0].message.body)
    assert (request.format, request.compression) == ("jsonl", "gzip")
    assert request.session_id == DEFAULT_SESSION  # no session_id metadata


def test_files_without_a_session_share_the_default_one_and_a_named_session_is_kept() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "store-1/day.csv", b"a\n1\n")
    blobs.put("input", "store-2/day.csv", b"a\n2\n")
    blobs.put("input", "store-3/day.csv", b"a\n3\n", {"session_id": "client-9"})
    for name in ("store-1/day.csv", "store-2/day.csv", "store-3/day.csv"):
        assert run(blobs, bus, name) == SubmitOutcome.PUBLISHED
    sessions = [InferenceRequest.from_json(s.message.body).session_id for s in bus.sent]
    assert sessions == [DEFAULT_SESSION, DEFAULT_SESSION, "client-9"]
    assert [s.message.session_id for s in bus.sent] == sessions


def test_the_message_names_the_etag_of_the_record_it_created_and_a_refire_names_none() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.csv", b"a\n1\n")
    run(blobs, bus, "a.csv")
    first = InferenceRequest.from_json(bus.sent[0].message.body)
    _, etag = blobs.read("ledger", f"requests/{first.request_id}.json")
    assert first.ledger_etag == etag
    # Fired again before the request was accepted: published again (dropped by duplicate detection), but the
    # record was not created by this call, so the message does not name it.
    assert run(blobs, bus, "a.csv") == SubmitOutcome.PUBLISHED
    again = InferenceRequest.from_json(bus.sent[1].message.body)
    assert again.request_id == first.request_id and again.ledger_etag is None


def test_no_republish_once_accepted_but_a_new_version_is_a_new_request() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "a.csv", b"1")
    run(blobs, bus, "a.csv")
    first = InferenceRequest.from_json(bus.sent[0].message.body)
    ledger = Ledger(blobs, "ledger")
    ledger.advance(first.request_id, lambda r: r and replace(r, state=RequestState.ACCEPTED), now=FixedClock().now())
    assert run(blobs, bus, "a.csv") == SubmitOutcome.ALREADY_IN_FLIGHT
    blobs.put("input", "a.csv", b"2")
    assert run(blobs, bus, "a.csv") == SubmitOutcome.PUBLISHED
    assert InferenceRequest.from_json(bus.sent[-1].message.body).request_id != first.request_id


@pytest.mark.parametrize(
    ("name", "metadata", "model"),
    [("churn-v2/a.csv", {}, "churn-v2"), ("x/a.csv", {"model": "churn-v2"}, "churn-v2"),
     ("unknown/a.csv", {}, "default"), ("churn-v2/a.csv", {"Model": "default"}, "default")],
)  # fmt: skip
def test_model_route_from_metadata_or_path_prefix(name: str, metadata: dict[str, str], model: str) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", name, b"1", metadata)
    run(blobs, bus, name)
    assert bus.sent[0].message.application_properties["model"] == model


@pytest.mark.parametrize(
    ("name", "size", "metadata", "code"),
    [("../etc/a.csv", 1, {}, "invalid_name"), ("a\\b.csv", 1, {}, "invalid_name"), ("a\x07.csv", 1, {}, "invalid_name"),
     ("d//a.csv", 1, {}, "invalid_name"), ("x" * MAX_INPUT_NAME_LENGTH + ".csv", 1, {}, "invalid_name"),
     ("a.xlsx", 1, {}, "unsupported_format"), ("a.csv", 0, {}, "empty_file"), ("a.csv", 1001, {}, "too_large"),
     ("a.csv", 1, {"model": "gpt"}, "unknown_model"), ("a.csv", 1, {"session_id": "s" * 129}, "invalid_request")],
)  # fmt: skip
def test_bad_files_get_an_error_record_and_a_failed_ledger_entry(
    name: str, size: int, metadata: dict[str, str], code: str
) -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    etag = blobs.put("input", name, b"x" * size, metadata)
    assert run(blobs, bus, name) == SubmitOutcome.REJECTED
    assert bus.sent == []
    [error_name] = blobs.names("output")
    assert error_name.startswith("errors/") and error_name.endswith(".error.json")
    assert ".." not in error_name.split("/") and "\\" not in error_name and "\x07" not in error_name
    document = json.loads(blobs.read("output", error_name)[0])
    assert document["error"]["code"] == code and document["input"]["name"] == name
    record = Ledger(blobs, "ledger").get(derive_request_id("input", name, etag))
    assert record is not None and record.state == RequestState.FAILED and record.error_code == code
    assert record.error_location == f"output/{error_name}"


def test_good_name_error_record_follows_the_contract() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    blobs.put("input", "dir/a.csv", b"")
    run(blobs, bus, "dir/a.csv")
    assert blobs.names("output") == ["errors/dir/a.csv.error.json"]


def test_a_blob_gone_before_submission_is_skipped() -> None:
    blobs, bus = FakeBlobStore(), FakeBus()
    assert run(blobs, bus, "a.csv") == SubmitOutcome.GONE
    assert bus.sent == [] and blobs.blobs == {}


def test_name_problem_accepts_ordinary_paths() -> None:
    assert name_problem("2026/01/customers-01.csv.gz") is None
    assert name_problem("a..b.csv") is None


class NoPathTricksStore(FakeBlobStore):
    def properties(self, container: str, name: str) -> BlobInfo:
        assert name_problem(name) is None, f"an unsafe name reached storage: {name!r}"
        return super().properties(container, name)


def test_unsafe_names_are_never_sent_to_storage() -> None:
    blobs, bus = NoPathTricksStore(), FakeBus()
    ledger = Ledger(blobs, "ledger")
    outcome = submit_blob("input", "a/../../b.csv", settings=SETTINGS, blobs=blobs, bus=bus, ledger=ledger,
                          now=FixedClock().now())  # fmt: skip
    assert outcome == SubmitOutcome.REJECTED and blobs.names("output") == ["errors/a/_/_/b.csv.error.json"]
