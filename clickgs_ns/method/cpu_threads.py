"""How many threads torch uses on a CPU machine: the cores other processes leave free, re-checked as training runs.

torch's OpenMP threads wait for each other at every parallel region. With as many threads as cores and one other
busy process, some thread is always descheduled and the rest wait for it: a training step measured 0.18 s with one
thread and 5 s with two on a 2-core machine beside one busy process (``benchmarks/bench_threads.py``). Using the
cores that are free (measured from the machine's CPU time minus this process's own) avoids that cliff and costs
nothing on an idle machine.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Tuple


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_seconds() -> Tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process, all its threads)."""
    import psutil

    machine = psutil.cpu_times()
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    own = psutil.Process().cpu_times()
    return sum(machine) - idle, own.user + own.system


def threads_for(num_cores: int, busy_other_cores: float, max_threads: Optional[int] = None) -> int:
    """Threads for ``num_cores`` cores of which others keep ``busy_other_cores`` busy: the free cores, a core
    counting as free when it is at least 75% idle; at least 1, at most ``max_threads`` (default: every core)."""
    free = num_cores - max(0.0, busy_other_cores)
    limit = num_cores if max_threads is None else max(1, min(num_cores, max_threads))
    return max(1, min(limit, math.floor(free + 0.25)))


@dataclass
class CpuSample:
    """One reading of ``cpu_seconds`` and the wall clock."""

    machine_busy: float
    own: float
    wall: float

    @staticmethod
    def now() -> "CpuSample":
        machine_busy, own = cpu_seconds()
        return CpuSample(machine_busy, own, time.monotonic())


def busy_other_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores other processes kept busy, on average, between two samples."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, (after.machine_busy - before.machine_busy) - (after.own - before.own)) / wall


class CpuThreadPolicy:
    """Sets torch's thread count to the free cores, and again every ``recheck_seconds`` as the load changes.

    ``fixed_threads`` (a number) disables the measurement. The state is the last sample and the count in use.
    """

    def __init__(self, fixed_threads: Optional[int] = None, recheck_seconds: float = 10.0,
                 max_threads: Optional[int] = None):
        self.fixed_threads = fixed_threads
        self.recheck_seconds = recheck_seconds
        self.max_threads = max_threads
        self.num_cores = usable_cores()
        self.last: Optional[CpuSample] = None
        self.threads: Optional[int] = None

    def start(self, probe_seconds: float = 0.25) -> int:
        """Choose the first thread count: ``fixed_threads``, or the free cores over a short idle probe."""
        if self.fixed_threads is not None:
            return self._apply(max(1, int(self.fixed_threads)))
        before = CpuSample.now()
        time.sleep(probe_seconds)
        self.last = CpuSample.now()
        return self._apply(threads_for(self.num_cores, busy_other_cores(before, self.last), self.max_threads))

    def update(self) -> Optional[int]:
        """Re-check once ``recheck_seconds`` have passed (cheap otherwise); returns the new count when it changed."""
        if self.fixed_threads is not None or self.last is None:
            return None
        if time.monotonic() - self.last.wall < self.recheck_seconds:
            return None
        before, self.last = self.last, CpuSample.now()
        threads = threads_for(self.num_cores, busy_other_cores(before, self.last), self.max_threads)
        if threads == self.threads:
            return None
        return self._apply(threads)

    def _apply(self, threads: int) -> int:
        import torch

        torch.set_num_threads(threads)
        self.threads = threads
        return threads
