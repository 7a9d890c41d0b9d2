"""A run killed while lifting its labels keeps its trained features, and the command it names finishes the labels;
a finished run resumed has nothing to do and keeps its checkpoint."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml

from conftest import make_trainer_config

BIN = Path(sys.executable).parent
TESTS = Path(__file__).parent

KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from clickgs_ns.method.gfl import GFLConfig
from clickgs_ns.method.model import ClickGaussianModel
from conftest import make_trainer_config, train

def killed(self, *args, **kwargs):  # the kernel's OOM killer, say
    os.kill(os.getpid(), signal.SIGKILL)

ClickGaussianModel.lift_labels = killed
config = make_trainer_config(Path({data!r}), Path({output!r}), init_ply=Path({ply!r}), feature_stage_steps=12,
                             gfl=GFLConfig(start_step=4, update_every=4))
train(config)
"""


def _checkpoints(run_dir: Path):
    return sorted((run_dir / "nerfstudio_models").glob("*.ckpt"))


def test_killed_lifting_keeps_the_features_and_the_named_command_finishes_the_labels(tiny_scene, tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN).format(tests=str(TESTS), data=str(tiny_scene.root),
                                                         output=str(tmp_path), ply=str(tiny_scene.scene_ply_path)))
    killed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    command = re.search(r"^\s*(clickgs lift-labels --load-config \S+)$", killed.stdout, re.MULTILINE)
    assert command is not None, killed.stdout[-3000:]
    run_dir = tmp_path / tiny_scene.root.name / "click-gaussian" / "test"
    (checkpoint,) = _checkpoints(run_dir)
    assert checkpoint.name == "step-000000011.ckpt", "the last step's features were saved before lifting"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert not bool(saved["_model.labels_final"])
    features = saved["_model.gauss_params.click_features"]
    stopped = checkpoint.read_bytes()

    # one way forward: resume the run, which has no step left but its labels
    config = make_trainer_config(tiny_scene.root, tmp_path, init_ply=tiny_scene.scene_ply_path,
                                 feature_stage_steps=12)
    config.load_dir = checkpoint.parent

    def resume() -> None:
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()

    resume()
    assert _checkpoints(run_dir) == [checkpoint], "no step-000000000.ckpt beside it"
    resumed = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert bool(resumed["_model.labels_final"])

    # the other: the command the run printed, after the splat the run started from has moved away
    checkpoint.write_bytes(stopped)
    run_config = yaml.load((run_dir / "config.yml").read_text(), Loader=yaml.Loader)
    run_config.pipeline.model.init_ply = tmp_path / "moved_away.ply"
    (run_dir / "config.yml").write_text(yaml.dump(run_config))
    finished = subprocess.run([str(BIN / "clickgs"), *command.group(1).split()[1:]], capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "Labels lifted and saved" in finished.stdout
    assert _checkpoints(run_dir) == [checkpoint]
    relabelled = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = relabelled["pipeline"]
    assert bool(state["_model.labels_final"]) and relabelled["step"] == 11
    assert torch.equal(state["_model.gauss_params.click_features"], features), "the features are those trained"
    assert (saved["_model.coarse_labels"] >= 0).all(), "before: GFL's interim labels, every Gaussian's nearest"
    labelled = int((state["_model.coarse_segment_labels"] >= 0).sum())
    assert 0 < labelled < features.shape[0], "after: voted by the views (those no view shows confidently: -1)"
    for name in ("coarse_labels", "fine_labels", "coarse_segment_labels", "fine_segment_labels"):
        assert torch.equal(state[f"_model.{name}"], resumed[f"_model.{name}"]), f"{name}: both ways agree"
    assert set(relabelled) >= {"optimizers", "schedulers", "scalers"}, "the run still resumes"

    # resuming the finished run: nothing to train, and the final checkpoint stays as it is
    resume()
    assert _checkpoints(run_dir) == [checkpoint]
    assert checkpoint.read_bytes() != stopped
    assert torch.equal(torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]["_model.coarse_labels"],
                       state["_model.coarse_labels"])
