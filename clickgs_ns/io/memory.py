"""The process's memory allocator: reuse freed memory instead of returning it to the kernel (glibc).

glibc serves every block above its mmap threshold (dynamic, at most 32 MB) with a fresh ``mmap`` and unmaps it on
free, so each large tensor torch allocates is new memory that the kernel zero-fills page by page on first touch.
Training steps and SAM's mask decoder allocate many such tensors; on the 2-core development machine keeping freed
memory for reuse made a feature-stage step 2.1x and an RGB step 1.6x faster (``benchmarks/bench_memory.py``),
and SAM's decoder 1.6-1.8x (``benchmarks/bench_sam.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(max_block_bytes: int = 1 << 30) -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the kernel (glibc only).

    Raises glibc's mmap threshold to ``max_block_bytes`` and its trim threshold to twice that, so that large blocks
    come from the heap and stay there when freed. The process keeps its peak memory until it exits, which suits a
    training run or a mask-making command (the trainer calls this on a CPU, `clickgs masks` always).

    Returns:
        True if the allocator took the settings (False off glibc, where nothing is changed).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    took_mmap = mallopt(_M_MMAP_THRESHOLD, max_block_bytes)
    took_trim = mallopt(_M_TRIM_THRESHOLD, min(2 * max_block_bytes, 2**31 - 1))
    return bool(took_mmap and took_trim)
