"""The CPU thread policy: known answers of the pure functions, and the policy following a changing load."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from clickgs_ns.method.cpu_threads import CpuSample, CpuThreadPolicy, busy_other_cores, threads_for


def test_threads_for_known_answers():
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.2) == 2  # a core at least 75% idle counts as free
    assert threads_for(2, 0.3) == 1
    assert threads_for(2, 1.0) == 1
    assert threads_for(2, 5.0) == 1  # never below one thread
    assert threads_for(16, 3.9) == 12
    assert threads_for(16, 0.0, max_threads=8) == 8


def test_busy_other_cores_subtracts_this_process():
    before = CpuSample(machine_busy=100.0, own=10.0, wall=50.0)
    after = CpuSample(machine_busy=104.0, own=12.0, wall=52.0)  # 4 busy core-seconds in 2 s, 2 of them ours
    assert busy_other_cores(before, after) == pytest.approx(1.0)
    assert busy_other_cores(after, after) == 0.0


def test_fixed_threads_are_applied_and_never_rechecked():
    saved = torch.get_num_threads()
    try:
        policy = CpuThreadPolicy(fixed_threads=1, recheck_seconds=0.0)
        assert policy.start() == 1 and torch.get_num_threads() == 1
        assert policy.update() is None
    finally:
        torch.set_num_threads(saved)


def test_policy_leaves_a_busy_core_alone_and_takes_it_back():
    saved = torch.get_num_threads()
    policy = CpuThreadPolicy(recheck_seconds=0.0)
    if policy.num_cores < 2:
        pytest.skip("needs two cores")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        beside = policy.start(probe_seconds=0.5)
        assert beside <= policy.num_cores - 1, "one core is taken by the busy process"
    finally:
        busy.kill()
        busy.wait()
    try:
        time.sleep(0.5)
        policy.last = CpuSample.now()
        time.sleep(0.5)
        policy.update()
        assert policy.threads >= beside and torch.get_num_threads() == policy.threads
    finally:
        torch.set_num_threads(saved)
