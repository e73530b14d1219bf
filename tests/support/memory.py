"""Peak memory of another process (Linux ``/proc``), and large blobs generated on the fly."""

from __future__ import annotations

import io
import re
from pathlib import Path

_HWM = re.compile(r"^VmHWM:\s+(\d+) kB$", re.MULTILINE)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (``VmHWM``)."""
    match = _HWM.search(Path(f"/proc/{pid}/status").read_text(encoding="ascii"))
    if match is None:
        raise RuntimeError(f"no VmHWM for pid {pid}")
    return int(match.group(1)) * 1024


class GeneratedCsv(io.RawIOBase):
    """``size`` bytes of CSV rows made as they are read, so a multi-GiB upload never sits in memory."""

    def __init__(self, size: int, header: bytes = b"a,b,c\n", row: bytes = b"1,2.5,text\n") -> None:
        self.size, self._header, self._row = size, header, row
        self._sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        count = min(len(target), self.size - self._sent)
        if count <= 0:
            return 0
        head = self._header[self._sent :][:count]
        start = max(self._sent - len(self._header), 0) % len(self._row)
        body = count - len(head)
        rows = (self._row * (body // len(self._row) + 2))[start : start + body]
        target[:count] = head + rows
        self._sent += count
        return count
