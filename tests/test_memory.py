"""Tests of clickgs_ns/io/memory.py."""

from __future__ import annotations

import pytest
import torch

from clickgs_ns.io.memory import keep_freed_memory


def test_keep_freed_memory_is_taken_by_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system: the setting is glibc's")
    assert keep_freed_memory() is True
    assert torch.ones(64, 1 << 20).sum() == 64 << 20  # a 256 MB tensor is still allocated and freed normally


@pytest.mark.parametrize("reuse", [True, False])
def test_the_cpu_trainer_reuses_freed_memory_unless_told_not_to(tiny_scene, tmp_path, monkeypatch, reuse):
    import clickgs_ns.method.trainer as trainer_module
    from conftest import make_trainer_config

    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(True) or True)
    config = make_trainer_config(tiny_scene.root, tmp_path, rgb_stage_steps=2, feature_stage_steps=1)
    config.reuse_freed_memory = reuse
    config.setup(local_rank=0, world_size=1).setup()
    assert calls == ([True] if reuse else [])
