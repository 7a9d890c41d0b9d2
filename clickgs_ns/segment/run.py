"""A trained click-gaussian run, loaded: ``run = load_run(config_path)`` (the Python API wraps it for clicking)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras

from clickgs_ns.io.checkpoints import save_checkpoint_atomic
from clickgs_ns.method.model import ClickGaussianModel
from clickgs_ns.method.pipeline import selection_env_set_aside


@dataclass
class LoadedRun:
    """A loaded run: its pipeline (datamanager + model), its training cameras and the step it was saved at."""

    pipeline: "torch.nn.Module"
    config_path: Path
    step: int

    @property
    def model(self) -> ClickGaussianModel:
        return self.pipeline.model

    @property
    def datamanager(self):
        return self.pipeline.datamanager

    @property
    def cameras(self) -> Cameras:
        """Training cameras [V] in nerfstudio's training frame."""
        return self.datamanager.train_dataset.cameras

    @property
    def image_paths(self) -> List[Path]:
        """The training views' image files, by ``camera_index``."""
        return [Path(p) for p in self.datamanager.train_dataset.image_filenames]

    @torch.no_grad()
    def render(self, camera_index: int) -> Dict[str, Tensor]:
        """Outputs of training view ``camera_index``: rgb [H,W,3], coarse_features [H,W,12], fine_features [H,W,24],
        accumulation [H,W,1], depth [H,W,1]."""
        if not 0 <= camera_index < len(self.cameras):
            raise IndexError(f"camera_index {camera_index} is out of range: the run has {len(self.cameras)} views")
        camera = self.cameras[camera_index : camera_index + 1]
        return self.model.get_outputs_for_camera(camera)


def check_config_path(config_path: Path) -> Path:
    """``config_path`` as a Path (a run folder stands for the ``config.yml`` in it), or FileNotFoundError saying what
    to give."""
    config_path = Path(config_path)
    if config_path.is_dir() and (config_path / "config.yml").is_file():
        return config_path / "config.yml"
    if config_path.is_dir():
        raise FileNotFoundError(f"{config_path} is a folder without a config.yml: give the config.yml of a "
                                "click-gaussian run (outputs/<data>/click-gaussian/<timestamp>/config.yml).")
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist: give the config.yml of a click-gaussian run "
                                "(outputs/<data>/click-gaussian/<timestamp>/config.yml).")
    return config_path


def without_initial_splat(config: Any) -> Any:
    """A run's ``TrainerConfig`` without the splat its feature stage started from (``init_ply`` /
    ``init_checkpoint``): the run's own checkpoint holds the Gaussians, so a run loads after that file has moved."""
    config.pipeline.model.init_ply = None
    config.pipeline.model.init_checkpoint = None
    return config


def lift_saved_labels(config_path: Path) -> Tuple[Path, Dict[str, int]]:
    """(Re)compute the labels clicks select for the latest checkpoint of a run, as the end of training does
    (``ClickGaussianPipeline.finish_labels``: candidates clustered once more, labels lifted from the training views
    and their SAM masks), and write them into that checkpoint (atomically; optimizer states kept, so the run still
    resumes). Returns the checkpoint and the number of labelled Gaussians per level."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, checkpoint_path, step = eval_setup(check_config_path(config_path), test_mode="val",
                                                    update_config_callback=without_initial_splat)
    if not isinstance(pipeline.model, ClickGaussianModel):
        raise TypeError(f"{config_path} is a {type(pipeline.model).__name__} run, not a click-gaussian one.")
    labelled = pipeline.finish_labels(step)
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    state["pipeline"] = pipeline.state_dict()
    save_checkpoint_atomic(state, checkpoint_path)
    return checkpoint_path, labelled


def load_run(config_path: Path, on_ignored_selection: Optional[Callable[[str], None]] = None) -> LoadedRun:
    """Load the latest checkpoint of the run whose ``config.yml`` is ``config_path`` (no masks needed).

    ``$CLICKGS_SELECTION`` is for ``ns-export`` (it keeps only the selected Gaussians): it is set aside while
    loading, so that selections and exports made here index the run's full set of Gaussians;
    ``on_ignored_selection(value)`` is told when it was set.
    """
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = check_config_path(config_path)
    with selection_env_set_aside() as selection:
        if selection and on_ignored_selection is not None:
            on_ignored_selection(selection)
        _, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    if not isinstance(pipeline.model, ClickGaussianModel):
        raise TypeError(f"{config_path} is a {type(pipeline.model).__name__} run, not a click-gaussian one.")
    pipeline.eval()
    if not bool(pipeline.model.labels_final):
        from nerfstudio.utils.rich_utils import CONSOLE

        CONSOLE.print(f"[yellow]{config_path}: the run stopped before its labels were lifted; clicks use the "
                      f"interim labels of its last GFL update. `clickgs lift-labels --load-config {config_path}` "
                      "finishes them.[/]")
    return LoadedRun(pipeline=pipeline, config_path=config_path, step=step)
