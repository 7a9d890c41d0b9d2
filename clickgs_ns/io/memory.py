"""The process's memory allocator: reuse freed memory instead of returning it to the kernel (glibc).

glibc serves every block above its mmap threshold (dynamic, at most 32 MB) with a fresh ``mmap`` and unmaps it on
free, so each large tensor torch allocates is new memory that the kernel zero-fills page by page on first touch.
Training steps and SAM's mask decoder allocate many such tensors; on the 2-core development machine keeping freed
memory for reuse made a feature-stage step 2.1x and an RGB step 1.6x faster (``benchmarks/bench_memory.py``),
and SAM's stock generator 1.6-1.7x (``benchmarks/bench_sam.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(max_block_bytes: int = 1 << 30) -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the kernel (glibc only).

    Raises glibc's mmap threshold to ``max_block_bytes`` (glibc before 2.35 accepts at most 32 MiB, which is then
    used) and its trim threshold to twice that, so that large blocks come from the heap and stay there when freed.
    The process keeps its peak memory until it exits, which suits a training run or a mask-making command (the
    trainer calls this on a CPU, `clickgs masks` always). With jemalloc or tcmalloc preloaded it changes nothing.

    Returns:
        True if glibc took both settings; False if it is not glibc or refused the mmap threshold (nothing is
        changed then).
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    for threshold in (min(max_block_bytes, 2**30), 32 << 20):
        if mallopt(_M_MMAP_THRESHOLD, threshold):
            return bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    return False
