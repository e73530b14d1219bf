"""Hand-written fakes of the client's own ports (client.ports), for the client's unit tests."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.adapters import Adapters
from client.console import Console
from client.errors import ServiceError
from client.ports import ResultDelivery, Sink, UploadedBlob
from client.settings import ClientSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeStore:
    uploads: list[tuple[str, dict[str, str], str, bytes]] = field(default_factory=list)
    fail_with: Exception | None = None

    def upload(
        self, path: Path, blob_name: str, metadata: dict[str, str], content_type: str, progress: Callable[[int], None]
    ) -> UploadedBlob:
        if self.fail_with is not None:
            raise self.fail_with
        data = path.read_bytes()
        progress(len(data) // 2)
        progress(len(data))
        self.uploads.append((blob_name, metadata, content_type, data))
        return UploadedBlob(name=blob_name, etag=f'"0x{len(self.uploads)}"', size=len(data), url=f"mem://{blob_name}")


@dataclass
class FakeFetcher:
    blobs: dict[str, bytes] = field(default_factory=dict)

    outputs: dict[str, bytes] = field(default_factory=dict)  # final outputs by name in the output container

    def download(self, url: str, sink: Sink, final_name: str) -> None:
        if url in self.blobs:
            sink.write(self.blobs[url])
        elif final_name in self.outputs:
            sink.write(self.outputs[final_name])
        else:
            raise ServiceError(f"no blob at {url} nor output {final_name}")


@dataclass
class FakeDelivery:
    payload: bytes
    settled: str | None = None
    reason: str | None = None

    @property
    def body(self) -> bytes:
        return self.payload

    def complete(self) -> None:
        assert self.settled is None, "settled twice"
        self.settled = "completed"

    def dead_letter(self, reason: str, description: str) -> None:
        assert self.settled is None, "settled twice"
        self.settled, self.reason = "dead-lettered", reason


class FakeInbox:
    """Hands out queued deliveries one batch per receive; an empty queue advances the fake clock."""

    def __init__(self, clock: FakeClock, batches: list[list[FakeDelivery]] | None = None) -> None:
        self.clock = clock
        self.batches = list(batches or [])
        self.received: list[FakeDelivery] = []
        self.waits: list[float] = []

    def receive(self, max_wait: float) -> list[ResultDelivery]:
        self.waits.append(max_wait)
        if not self.batches:
            self.clock.now += max_wait
            return []
        batch = self.batches.pop(0)
        self.received.extend(batch)
        return list(batch)


@dataclass
class FakeScoring:
    answer: Any = None
    seen: list[list[dict[str, Any]]] = field(default_factory=list)

    def score(self, rows: list[dict[str, Any]]) -> Any:
        self.seen.append(rows)
        if isinstance(self.answer, Exception):
            raise self.answer
        if callable(self.answer):
            return self.answer(rows)
        return self.answer


@dataclass
class FakeStatus:
    """Each request id maps to the records returned on successive polls (the last one repeats)."""

    records: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def get(self, request_id: str) -> dict[str, Any] | None:
        self.calls.append(request_id)
        sequence = self.records.get(request_id, [None])
        return sequence.pop(0) if len(sequence) > 1 else sequence[0]


@dataclass
class World:
    """Fakes for every port plus captured console streams."""

    clock: FakeClock = field(default_factory=FakeClock)
    store: FakeStore = field(default_factory=FakeStore)
    fetcher: FakeFetcher = field(default_factory=FakeFetcher)
    scoring: FakeScoring = field(default_factory=FakeScoring)
    status: FakeStatus = field(default_factory=FakeStatus)
    inbox: FakeInbox | None = None
    sessions: list[str] = field(default_factory=list)
    settings_seen: list[ClientSettings] = field(default_factory=list)
    out: io.StringIO = field(default_factory=io.StringIO)
    err: io.StringIO = field(default_factory=io.StringIO)
    stdin: io.StringIO = field(default_factory=io.StringIO)
    stdin_is_tty: bool = True

    def console(self) -> Console:
        return Console(self.out, self.err, self.stdin, stdin_is_tty=self.stdin_is_tty)

    def adapters(self) -> Adapters:
        @contextmanager
        def open_inbox(settings: ClientSettings, session_id: str) -> Iterator[FakeInbox]:
            self.sessions.append(session_id)
            if self.inbox is None:
                self.inbox = FakeInbox(self.clock)
            yield self.inbox

        def remember(settings: ClientSettings) -> None:
            self.settings_seen.append(settings)

        def store(s: ClientSettings) -> FakeStore:
            remember(s)
            return self.store

        return Adapters(
            input_store=store,
            output_fetcher=lambda s: self.fetcher,
            inbox=open_inbox,
            scoring=lambda s, timeout: (remember(s), self.scoring)[1],
            status=lambda s: self.status,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
