"""Splat checkpoints (clickgs_ns.io.splat_files): read with torch's weights-only unpickler, never running code named by
the file; nerfstudio's checkpoints as its Trainer saves them, numpy learning rates included."""

from __future__ import annotations

import os

import pytest
import torch

from clickgs_ns.io.splat_files import CheckpointLoadError, load_checkpoint, load_splat_checkpoint
from clickgs_ns.io.splat_files import SPLAT_KEYS

N = 5


def trainer_checkpoint(scheduler_config) -> dict:
    """What nerfstudio's ``Trainer.save_checkpoint`` writes for a splat of N Gaussians after three steps of Adam
    under ``scheduler_config``'s learning-rate schedule."""
    from collections import OrderedDict

    shapes = {"means": (N, 3), "scales": (N, 3), "quats": (N, 4), "features_dc": (N, 3), "features_rest": (N, 15, 3),
              "opacities": (N, 1)}
    params = {name: torch.nn.Parameter(torch.randn(shape)) for name, shape in shapes.items()}
    optimizer = torch.optim.Adam([params["means"]], lr=1.6e-4, eps=1e-15)
    scheduler = scheduler_config.setup().get_scheduler(optimizer, 1.6e-4)
    for _ in range(3):
        params["means"].grad = torch.ones(N, 3)
        optimizer.step()
        scheduler.step()
    pipeline = OrderedDict((f"_model.gauss_params.{name}", value.detach()) for name, value in params.items())
    pipeline["_model.coarse_labels"] = torch.full((N,), -1)
    return {"step": 3, "pipeline": pipeline, "optimizers": {"means": optimizer.state_dict()},
            "schedulers": {"means": scheduler.state_dict()},
            "scalers": torch.amp.GradScaler("cpu", enabled=False).state_dict()}


@pytest.mark.parametrize("schedule", ["nerfstudio (numpy learning rates)", "clickgs (float learning rates)"])
def test_nerfstudio_checkpoints_load_with_weights_only(tmp_path, schedule):
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    from clickgs_ns.method.schedulers import FloatExponentialDecaySchedulerConfig

    config = (ExponentialDecaySchedulerConfig if schedule.startswith("nerfstudio") else
              FloatExponentialDecaySchedulerConfig)(lr_final=1.6e-6, max_steps=30000)
    state = trainer_checkpoint(config)
    path = tmp_path / "step-000000003.ckpt"
    torch.save(state, path)
    params = load_splat_checkpoint(path)
    assert sorted(params) == sorted(SPLAT_KEYS)
    for name in SPLAT_KEYS:
        assert torch.equal(params[name], state["pipeline"][f"_model.gauss_params.{name}"])
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3
    assert float(loaded["schedulers"]["means"]["_last_lr"][0]) == pytest.approx(
        float(state["schedulers"]["means"]["_last_lr"][0]))


class RunsCode:
    """Unpickling this calls os.mkdir(marker): what a checkpoint loaded with weights_only=False may do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    state = trainer_checkpoint(ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=30000))
    marker = tmp_path / "code_ran"
    state["scalers"] = {"payload": RunsCode(marker)}
    path = tmp_path / "step-000000003.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointLoadError, match=r"step-000000003.ckpt cannot be loaded safely.*posix.mkdir"):
        load_splat_checkpoint(path)
    assert not marker.exists(), "loading ran code from the file"


def test_a_truncated_checkpoint_names_the_file(tmp_path):
    from clickgs_ns.method.schedulers import FloatExponentialDecaySchedulerConfig

    path = tmp_path / "step-000000003.ckpt"
    torch.save(trainer_checkpoint(FloatExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=30000)), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointLoadError, match=r"step-000000003.ckpt is not a readable torch checkpoint"):
        load_splat_checkpoint(path)
