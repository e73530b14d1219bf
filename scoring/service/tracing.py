"""Spans of one scoring job's stages: download, parse + validate, predict, upload (``publish`` is the
publisher's own span).

The stages overlap chunk by chunk (a reader thread downloads while the job validates and predicts, the sink's
thread uploads), so each stage is timed piece by piece and becomes one span from its first to its last piece,
with its busy time as the attribute ``busy_ms`` (:class:`shared.telemetry.pipeline.StageClock`). With
telemetry off the clocks still run (a few ``time_ns`` calls per 4 MiB chunk) but no span is made.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from opentelemetry import trace

from scoring.service.sink import BlockWriter
from shared.telemetry.pipeline import BYTES, StageClock

M = TypeVar("M")


class JobClocks:
    def __init__(self) -> None:
        self.download = StageClock("download")
        self.validate = StageClock("parse+validate")
        self.predict = StageClock("predict")
        self.upload = StageClock("upload")
        self.bytes_read = 0
        self._predict_in_chunk = 0
        self.recording = trace.get_current_span().is_recording()

    def downloading(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Times each piece's download (and inflation); runs in the reader thread."""
        while True:
            start = time.time_ns()
            chunk = next(chunks, None)
            if chunk is None:
                return
            self.download.add(start, time.time_ns())
            self.bytes_read += len(chunk)
            yield chunk

    @contextlib.contextmanager
    def scoring_chunk(self) -> Iterator[None]:
        """Around one chunk's parse + validate + predict: the predict calls inside are timed apart."""
        self._predict_in_chunk = 0
        start = time.time_ns()
        try:
            yield
        finally:
            end = time.time_ns()
            self.validate.add(start, end, busy_ns=end - start - self._predict_in_chunk)

    def model(self, model: M) -> M:
        return _TimedModel(model, self)  # type: ignore[return-value]

    def writer(self, writer: BlockWriter) -> BlockWriter:
        return _TimedWriter(writer, self.upload)

    def emit(self, output_bytes: int | None) -> None:
        if not self.recording:
            return
        self.download.emit(**{BYTES: self.bytes_read})
        self.validate.emit()
        self.predict.emit()
        if self.upload.first is None and output_bytes is not None:
            # Small outputs travel inline in the result message: nothing is uploaded.
            now = time.time_ns()
            self.upload.add(now, now)
            self.upload.emit(inline=True, **{BYTES: output_bytes})
        else:
            self.upload.emit(inline=False, **{BYTES: output_bytes or 0})


class _TimedModel:
    """The model, with its ``predict`` calls timed as the ``predict`` stage."""

    def __init__(self, model: Any, clocks: JobClocks) -> None:
        self._model = model
        self._clocks = clocks

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        start = time.time_ns()
        try:
            return self._model.predict(*args, **kwargs)
        finally:
            end = time.time_ns()
            self._clocks.predict.add(start, end)
            self._clocks._predict_in_chunk += end - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class _TimedWriter:
    def __init__(self, writer: BlockWriter, clock: StageClock) -> None:
        self._writer = writer
        self._clock = clock

    def stage(self, block_id: str, data: bytes) -> None:
        with self._clock.timing():
            self._writer.stage(block_id, data)

    def commit(self, block_ids: list[str], content_type: str) -> None:
        with self._clock.timing():
            self._writer.commit(block_ids, content_type)

    @property
    def url(self) -> str:
        return self._writer.url
