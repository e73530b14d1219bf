"""The scoring service's C-heap setting is applied where the C library is glibc.

The setting is process-wide and glibc has no call to read it back, so it is applied in a child process:
the test process keeps its own allocator settings.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc_only
def test_mmap_threshold_is_applied_on_glibc() -> None:
    code = (
        "from scoring.service.heap import MMAP_THRESHOLD_BYTES, return_large_buffers\n"
        "raise SystemExit(0 if return_large_buffers(MMAP_THRESHOLD_BYTES) is True else 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
