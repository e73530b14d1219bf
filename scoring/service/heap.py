"""Keeping the C heap from holding on to the large buffers a request passes through.

An async request moves megabyte-sized bytes objects between threads (download pieces, chunks, output
blocks). glibc's malloc raises its mmap threshold each time such a buffer is freed, so later ones come
from the per-thread arenas instead, where freed space is kept rather than returned: the process's
resident size then keeps the high-water mark of every thread's arena and creeps up request after
request. A fixed threshold (which also turns the adjustment off) makes every large buffer its own
mapping that goes back to the system when it is freed. After an async request that read a large input
(or a run of small ones adding up to one), what Arrow's memory pool and the C heap still hold unused is
handed back too, so the next request starts from the resting size rather than from the last one's peak.
Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import logging

import pyarrow as pa

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
# Below the async pipeline's buffers (about 4 MiB each) but above a 10,000-row sync request's arrays: a
# 256 KiB threshold made every such request map and fault in fresh pages (sync CSV scoring took 1.6x as long).
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def return_large_buffers(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False (and nothing changed) on another C library."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        logger.info("no mallopt in this C library; the heap keeps its own policy")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, threshold) != 1:
        logger.warning("mallopt refused an mmap threshold of %d bytes", threshold)
        return False
    # A fixed mmap threshold also stops glibc raising its trim threshold, which then hands the top of the heap
    # back after every request and faults it in again on the next (sync requests took 1.7x as long); the
    # async jobs trim explicitly (release_unused) instead.
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        logger.warning("mallopt refused a trim threshold of %d bytes", TRIM_THRESHOLD_BYTES)
    return True


def release_unused() -> None:
    """Hand memory that is allocated but unused back to the system (Arrow's pool, then glibc's arenas)."""
    pa.default_memory_pool().release_unused()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim(0)
