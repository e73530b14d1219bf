"""The scoring service's C-heap setting is applied where the C library is glibc."""

from __future__ import annotations

import platform

import pytest

from scoring.service.heap import MMAP_THRESHOLD_BYTES, return_large_buffers

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc_only
def test_mmap_threshold_is_applied_on_glibc() -> None:
    assert return_large_buffers(MMAP_THRESHOLD_BYTES) is True
