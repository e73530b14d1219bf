"""Unit tests of the scoring service's parts with small hand-written fakes of our own ports."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from types import TracebackType

import pytest

from scoring.service.dispatcher import Dispatcher, JobState
from scoring.service.errors import RequestRejected, ScoringError
from scoring.service.job import _Prefetch
from scoring.service.publisher import Outgoing, Sent, by_session
from scoring.service.settings import ScoringSettings, SettingsError
from scoring.service.sink import BLOCK_BYTES, OutputSink
from scoring.service.source import decompressed, record_chunks
from shared.contracts import (
    AsyncScoringRequest,
    DataFormat,
    ErrorCode,
    ErrorInfo,
    InferenceResult,
    ReplyTo,
    ResultStatus,
)
from shared.retry import RESULT_PUBLISH, RetryPolicy
from tests.support.wait import wait_until

# ---------------------------------------------------------------------------------------------- source


def _produced_by(count: int, threads: list[str], fail_at: int | None = None) -> Iterator[bytes]:
    for i in range(count):
        if i == fail_at:
            raise ScoringError(ErrorCode.INPUT_UNAVAILABLE, "the storage went away")
        threads.append(threading.current_thread().name)
        yield f"chunk {i}".encode()


def test_read_ahead_takes_a_single_chunk_input_on_the_consuming_thread() -> None:
    threads: list[str] = []
    prefetch = _Prefetch(_produced_by(1, threads))
    assert list(prefetch) == [b"chunk 0"]
    prefetch.close()
    assert threads == [threading.current_thread().name]  # no reader thread for a small file


def test_read_ahead_reads_the_rest_of_a_larger_input_on_its_own_thread_in_order() -> None:
    threads: list[str] = []
    prefetch = _Prefetch(_produced_by(6, threads))
    assert list(prefetch) == [f"chunk {i}".encode() for i in range(6)]
    prefetch.close()
    here = threading.current_thread().name
    assert threads[:2] == [here, here] and set(threads[2:]) == {"input-reader"}


@pytest.mark.parametrize("fail_at", [0, 1, 4])
def test_read_ahead_raises_the_readers_error_on_the_consuming_thread(fail_at: int) -> None:
    prefetch = _Prefetch(_produced_by(6, [], fail_at=fail_at))
    got: list[bytes] = []
    with pytest.raises(ScoringError, match="storage went away"):
        got.extend(prefetch)
    prefetch.close()
    assert got == [f"chunk {i}".encode() for i in range(fail_at)]


def test_record_chunks_never_cut_inside_a_quoted_field() -> None:
    records = [f'{i},"a\nb, ""c""\n",x\n'.encode() if i % 3 == 0 else f"{i},plain,x\n".encode() for i in range(500)]
    data = b"".join(records)
    pieces = [data[i : i + 37] for i in range(0, len(data), 37)]
    chunks = list(record_chunks(pieces, chunk_bytes=100, max_record_bytes=1000, quotes=True))
    assert b"".join(chunks) == data
    assert len(chunks) > 10
    for chunk in chunks:
        assert chunk.count(b'"') % 2 == 0 and chunk.endswith(b"\n")


def test_record_chunks_add_a_final_newline_and_refuse_endless_records() -> None:
    assert list(record_chunks([b"a\nb"], chunk_bytes=10, max_record_bytes=10, quotes=False)) == [b"a\nb\n"]
    with pytest.raises(ScoringError) as caught:
        list(record_chunks([b"x" * 50] * 10, chunk_bytes=64, max_record_bytes=100, quotes=False))
    assert caught.value.code == ErrorCode.MALFORMED_DATA


def test_decompression_stops_at_the_limit_and_detects_corrupt_streams() -> None:
    bomb = gzip.compress(b"0" * 10_000_000)
    with pytest.raises(ScoringError) as caught:
        for _ in decompressed([bomb], "gzip", 1_000_000):
            pass
    assert caught.value.code == ErrorCode.TOO_LARGE
    assert b"".join(decompressed([gzip.compress(b"ab"), gzip.compress(b"cd")], "gzip", 100)) == b"abcd"
    with pytest.raises(ScoringError) as truncated:
        list(decompressed([gzip.compress(b"x" * 1000)[:-12]], "gzip", 10_000))
    assert truncated.value.code == ErrorCode.UNDECODABLE


# ---------------------------------------------------------------------------------------------- sink


class FakeBlob:
    def __init__(self, fail_after: int | None = None) -> None:
        self.staged: dict[str, bytes] = {}
        self.committed: list[str] | None = None
        self.fail_after = fail_after

    def stage(self, block_id: str, data: bytes) -> None:
        if self.fail_after is not None and len(self.staged) >= self.fail_after:
            raise OSError("storage went away")
        self.staged[block_id] = data

    def commit(self, block_ids: list[str], content_type: str) -> None:
        self.committed = block_ids

    @property
    def url(self) -> str:
        return "http://results/blob"

    def content(self) -> bytes:
        assert self.committed is not None
        return b"".join(self.staged[b] for b in self.committed)


def test_sink_keeps_small_outputs_inline() -> None:
    blob = FakeBlob()
    sink = OutputSink(100, lambda: blob, "text/csv")
    sink.write(b"a" * 60)
    sink.write(b"b" * 40)
    outcome = sink.finish()
    assert outcome.inline == b"a" * 60 + b"b" * 40 and outcome.blob_url is None
    assert blob.committed is None


def test_sink_stages_blocks_and_commits_large_outputs() -> None:
    blob = FakeBlob()
    sink = OutputSink(100, lambda: blob, "text/csv")
    parts = [bytes([65 + i % 26]) * (BLOCK_BYTES // 3) for i in range(10)]
    for part in parts:
        sink.write(part)
    outcome = sink.finish()
    whole = b"".join(parts)
    assert outcome.inline is None and outcome.blob_url == blob.url
    assert blob.content() == whole and outcome.size == len(whole)
    assert outcome.sha256 == hashlib.sha256(whole).hexdigest()
    assert len(blob.committed or []) == 4


def test_sink_surfaces_upload_failures() -> None:
    blob = FakeBlob(fail_after=1)
    sink = OutputSink(10, lambda: blob, "text/csv")
    with pytest.raises(OSError, match="storage went away"):
        for _ in range(8):
            sink.write(b"x" * BLOCK_BYTES)
            time.sleep(0.05)
        sink.finish()
    sink.abort()
    assert blob.committed is None


# ---------------------------------------------------------------------------------------------- dispatcher


class FakePublisher(AbstractContextManager["FakePublisher"]):
    """Records each result it sends, and each send as one list (a batch per session, as the real one)."""

    def __init__(self, sent: list[tuple[InferenceResult, str]], sends: list[list[str]] | None = None) -> None:
        self.sent = sent
        self.sends = sends if sends is not None else []

    def publish(self, results: Sequence[Outgoing], sent: Sent) -> None:
        for session in by_session(results):
            for item in session:
                self.send_one(item.result, item.session_id)
            self.sends.append([item.result.request_id for item in session])
            sent(session)

    def send_one(self, result: InferenceResult, session_id: str) -> None:
        self.sent.append((result, session_id))

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None


def _request(request_id: str, attempt: int = 1) -> AsyncScoringRequest:
    return AsyncScoringRequest(
        request_id=request_id,
        blob_url="https://x/y/z.csv",
        reply=ReplyTo("inference-results", f"session-{request_id}"),
        input_name="z.csv",
        format=DataFormat.CSV,
        attempt=attempt,
    )


def _result(request: AsyncScoringRequest) -> InferenceResult:
    return InferenceResult(
        request_id=request.request_id,
        status=ResultStatus.FAILED,
        input_name=request.input_name,
        model=request.model,
        error=ErrorInfo("empty_file", "the input is empty"),
        attempt=request.attempt,
    )


def _dispatcher(
    gate: threading.Event,
    sent: list[tuple[InferenceResult, str]],
    publisher: type[FakePublisher] | None = None,
    sends: list[list[str]] | None = None,
    **kw: object,
) -> Dispatcher:
    def make_processor() -> object:
        def process(request: AsyncScoringRequest) -> InferenceResult:
            gate.wait(10)
            return _result(request)

        return process

    settings = {
        "workers": 1,
        "queue_size": 2,
        "dedupe_entries": 3,
        "retry_after_seconds": 5,
        "publish_retry": RESULT_PUBLISH.with_tries(1),
    }
    return Dispatcher(
        **{**settings, **kw},  # type: ignore[arg-type]
        make_processor=make_processor,  # type: ignore[arg-type]
        make_publisher=lambda: (publisher or FakePublisher)(sent, sends),
    )


def test_dispatcher_refuses_when_full_and_deduplicates() -> None:
    gate, sent = threading.Event(), []
    dispatcher = _dispatcher(gate, sent)
    assert dispatcher.submit(_request("a")) is None
    wait_until(lambda: dispatcher.state("a", 1) == JobState.RUNNING, 5, "job a to run", interval=0.01)
    assert dispatcher.submit(_request("b")) is None
    assert dispatcher.submit(_request("c")) is None
    with pytest.raises(RequestRejected) as full:
        dispatcher.submit(_request("d"))
    assert full.value.status == 429 and full.value.headers == {"Retry-After": "5"}
    assert dispatcher.submit(_request("a")) == JobState.RUNNING
    assert dispatcher.submit(_request("b")) == JobState.QUEUED
    gate.set()
    wait_until(lambda: len(sent) == 3, 5, "three results", interval=0.01)
    assert [(r.request_id, s) for r, s in sent] == [("a", "session-a"), ("b", "session-b"), ("c", "session-c")]
    assert dispatcher.submit(_request("a")) == JobState.DONE
    assert dispatcher.submit(_request("a", attempt=2)) is None


def test_dispatcher_remembers_a_bounded_number_of_finished_requests() -> None:
    gate, sent = threading.Event(), []
    gate.set()
    dispatcher = _dispatcher(gate, sent, queue_size=50, dedupe_entries=3)
    for i in range(10):
        dispatcher.submit(_request(f"r{i}"))
    wait_until(lambda: len(sent) == 10, 5, "ten results", interval=0.01)
    wait_until(lambda: dispatcher.state("r9", 1) == JobState.DONE, 5, "job r9 to be done", interval=0.01)
    assert [dispatcher.state(f"r{i}", 1) for i in range(10)] == [None] * 7 + [JobState.DONE] * 3


def test_a_group_is_one_job_all_or_nothing_and_a_request_named_twice_counts_once() -> None:
    gate, sent = threading.Event(), []
    dispatcher = _dispatcher(gate, sent, queue_size=1)
    assert dispatcher.submit(_request("a")) is None
    wait_until(lambda: dispatcher.state("a", 1) == JobState.RUNNING, 5, "the dispatcher", interval=0.01)
    group = [_request("b"), _request("c"), _request("b"), _request("a")]
    assert dispatcher.submit_group(group) == [None, None, JobState.QUEUED, JobState.RUNNING]
    with pytest.raises(RequestRejected) as full:  # the queue holds one job: the next group is refused whole
        dispatcher.submit_group([_request("d"), _request("e")])
    assert full.value.status == 429
    assert dispatcher.state("d", 1) is None and dispatcher.state("e", 1) is None
    assert dispatcher.submit_group([_request("b"), _request("c")]) == [JobState.QUEUED, JobState.QUEUED]
    gate.set()
    wait_until(lambda: len(sent) == 3, 5, "the dispatcher", interval=0.01)
    assert [r.request_id for r, _ in sent] == ["a", "b", "c"]  # one result per file, each on its own session
    assert [s for _, s in sent] == ["session-a", "session-b", "session-c"]
    wait_until(lambda: dispatcher.state("c", 1) == JobState.DONE, 5, "the dispatcher", interval=0.01)
    assert dispatcher.submit_group([_request("d"), _request("e")]) == [None, None]
    wait_until(lambda: len(sent) == 5, 5, "the dispatcher", interval=0.01)


class FailsOnB(FakePublisher):
    def send_one(self, result: InferenceResult, session_id: str) -> None:
        if result.request_id == "b":
            raise ConnectionError("broker unreachable")
        super().send_one(result, session_id)


def test_a_group_that_broke_midway_forgets_the_files_without_a_result() -> None:
    gate, sent = threading.Event(), []
    gate.set()
    dispatcher = _dispatcher(gate, sent, FailsOnB, retry_after_seconds=0)
    dispatcher.submit_group([_request("a"), _request("b"), _request("c")])
    wait_until(
        lambda: dispatcher.state("b", 1) is None and dispatcher.state("c", 1) is None,
        5,
        "the dispatcher",
        interval=0.01,
    )
    assert dispatcher.state("a", 1) == JobState.DONE and [r.request_id for r, _ in sent] == ["a"]
    assert dispatcher.submit_group([_request("a"), _request("c")]) == [JobState.DONE, None]


def _on(session: str, *ids: str) -> list[AsyncScoringRequest]:
    return [replace(_request(i), reply=ReplyTo("inference-results", session)) for i in ids]


def test_the_results_of_a_job_go_out_together_one_send_per_session() -> None:
    gate, sent, sends = threading.Event(), [], []
    gate.set()
    dispatcher = _dispatcher(gate, sent, sends=sends, publish_after_seconds=60)
    dispatcher.submit_group([*_on("s1", "a", "b"), *_on("s2", "c"), *_on("s1", "d")])
    wait_until(lambda: dispatcher.state("d", 1) == JobState.DONE, 5, "the job to be published", interval=0.01)
    assert sends == [["a", "b", "d"], ["c"]]
    assert [(r.request_id, s) for r, s in sent] == [("a", "s1"), ("b", "s1"), ("d", "s1"), ("c", "s2")]


def test_a_result_waits_for_the_rest_of_its_job_at_most_publish_after_seconds() -> None:
    gate, sent, sends = threading.Event(), [], []
    dispatcher = _dispatcher(gate, sent, sends=sends, publish_after_seconds=0)
    dispatcher.submit_group(_on("s1", "a", "b", "c"))
    gate.set()
    wait_until(lambda: dispatcher.state("c", 1) == JobState.DONE, 5, "the job to be published", interval=0.01)
    assert sends == [["a"], ["b"], ["c"]]  # with no wait allowed, each result goes out as soon as it is ready


class FailsOnceOnS2(FakePublisher):
    def send_one(self, result: InferenceResult, session_id: str) -> None:
        if session_id == "s2" and not getattr(self, "failed", False):
            self.failed = True
            raise ConnectionError("link detached")
        super().send_one(result, session_id)


def test_a_retry_sends_only_the_results_no_send_took() -> None:
    gate, sent, sends = threading.Event(), [], []
    gate.set()
    retry = RetryPolicy(tries=2, base_seconds=0.01, max_seconds=0.01)
    dispatcher = _dispatcher(gate, sent, FailsOnceOnS2, sends, publish_after_seconds=60, publish_retry=retry)
    dispatcher.submit_group([*_on("s1", "a"), *_on("s2", "b"), *_on("s3", "c")])
    wait_until(lambda: dispatcher.state("c", 1) == JobState.DONE, 5, "the job to be published", interval=0.01)
    assert sends == [["a"], ["b"], ["c"]]  # "a" was not sent again with the retry
    assert [r.request_id for r, _ in sent] == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------- settings


def test_settings_fail_fast_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match="AZUREML_MODEL_DIR"):
        ScoringSettings.from_env({})
    with pytest.raises(SettingsError, match="SCORING_QUEUE_SIZE must be an integer"):
        ScoringSettings.from_env({"AZUREML_MODEL_DIR": "/m", "SCORING_QUEUE_SIZE": "many"})
    with pytest.raises(SettingsError, match="RESULTS_STORAGE_CONNECTION"):
        ScoringSettings.from_env({"AZUREML_MODEL_DIR": "/m", "RESULT_SERVICEBUS_CONNECTION": "Endpoint=sb://x"})
    settings = ScoringSettings.from_env(
        {
            "AZUREML_MODEL_DIR": "/m",
            "RESULT_SERVICEBUS_CONNECTION": "secret",
            "RESULTS_STORAGE_CONNECTION": "storage-secret",
        }
    )
    assert settings.async_enabled and settings.result_topic == "inference-results"
    assert "secret" not in repr(settings)
    assert settings.predict_parts == (os.cpu_count() or 1)
    assert ScoringSettings.from_env({"AZUREML_MODEL_DIR": "/m", "SCORING_PREDICT_PARTS": "3"}).predict_parts == 3
    with pytest.raises(SettingsError, match="SCORING_PREDICT_PARTS"):
        ScoringSettings.from_env({"AZUREML_MODEL_DIR": "/m", "SCORING_PREDICT_PARTS": "0"})


class BrokenPublisher(FakePublisher):
    def send_one(self, result: InferenceResult, session_id: str) -> None:
        raise ConnectionError("broker unreachable")


def test_a_result_that_could_not_be_published_does_not_block_a_retry() -> None:
    gate, sent = threading.Event(), []
    gate.set()
    dispatcher = _dispatcher(gate, sent, BrokenPublisher, retry_after_seconds=0)
    dispatcher.submit(_request("lost"))
    wait_until(lambda: dispatcher.state("lost", 1) is None, 5, "the lost job to be forgotten", interval=0.01)
    assert dispatcher.submit(_request("lost")) is None  # accepted again, not acknowledged as a duplicate
