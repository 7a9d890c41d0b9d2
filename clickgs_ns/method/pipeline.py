"""The click-gaussian pipeline: nerfstudio's VanillaPipeline that can start from an existing splat.

Built for inference (``test_mode="inference"``, as ``ns-export`` builds it) with the environment variable
``CLICKGS_SELECTION=path/to/selection.npy`` set, the pipeline keeps only the Gaussians of that saved selection once
the checkpoint is loaded, so that ``CLICKGS_SELECTION=sel.npy ns-export gaussian-splat --load-config ...`` exports
just the selected object (in nerfstudio's training frame, as ns-export always does; ``clickgs export`` writes the
dataset's frame).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
import os
from pathlib import Path
import time
from typing import Any, Dict, Iterator, List, Literal, Optional, Tuple, Type

import torch
from torch import Tensor
from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE

from clickgs_ns.data.datamanager import ClickGaussianDataManagerConfig
from clickgs_ns.io.selection_files import load_selection
from clickgs_ns.io.splat_files import load_splat_checkpoint, load_splat_ply
from clickgs_ns.levels import LEVELS, level_state
from clickgs_ns.method.gfl import cluster_level_candidates, mask_average_features
from clickgs_ns.method.lifting import (
    MergedCandidates,
    SegmentPixels,
    concat_segment_pixels,
    merge_candidates,
    pixel_label_maps,
    segment_pixels,
    unmerged_candidates,
)
from clickgs_ns.method.model import LABEL_BUFFERS, ClickGaussianModel, ClickGaussianModelConfig, views_by_size
from clickgs_ns.render import transform_splat

SELECTION_ENV = "CLICKGS_SELECTION"
"""Environment variable: a selection .npy whose Gaussians alone an inference-mode pipeline keeps (module doc)."""


@contextmanager
def selection_env_set_aside() -> Iterator[Optional[str]]:
    """``$CLICKGS_SELECTION`` unset while the block runs (a pipeline built there keeps every Gaussian), then
    restored; yields its value (None when it was not set). For loaders other than ns-export."""
    value = os.environ.pop(SELECTION_ENV, None)
    try:
        yield value
    finally:
        if value is not None:
            os.environ[SELECTION_ENV] = value


@dataclass
class ClickGaussianPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline with click-gaussian's datamanager and model."""

    _target: Type = field(default_factory=lambda: ClickGaussianPipeline)
    datamanager: ClickGaussianDataManagerConfig = field(default_factory=ClickGaussianDataManagerConfig)
    model: ClickGaussianModelConfig = field(default_factory=ClickGaussianModelConfig)


class ClickGaussianPipeline(VanillaPipeline):
    """Builds the datamanager and model; when training (not when loaded by the viewer or an exporter), replaces
    the seed-point splat by the configured existing splat before any optimizer exists."""

    config: ClickGaussianPipelineConfig

    def __init__(
        self,
        config: ClickGaussianPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        self.pending_selection: Optional[Path] = None
        """Selection file to apply once the checkpoint is loaded (``CLICKGS_SELECTION``, inference only)."""
        if test_mode == "val":
            self.load_initial_splat()
        elif test_mode == "inference":
            self.read_selection_env()

    @property
    def click_model(self) -> ClickGaussianModel:
        return self.model  # type: ignore[return-value]

    def load_initial_splat(self) -> None:
        """Load ``model.init_checkpoint`` or ``model.init_ply`` (moved into the training frame), if set."""
        model_config = self.config.model
        if model_config.init_checkpoint is not None and model_config.init_ply is not None:
            raise ValueError("Give either --pipeline.model.init-checkpoint or --pipeline.model.init-ply, not both.")
        if model_config.init_checkpoint is not None:
            params = load_splat_checkpoint(model_config.init_checkpoint)
        elif model_config.init_ply is not None:
            outputs = self.datamanager.train_dataparser_outputs  # type: ignore[attr-defined]
            params = transform_splat(
                load_splat_ply(model_config.init_ply), outputs.dataparser_transform, float(outputs.dataparser_scale)
            )
        else:
            return
        self.click_model.set_gaussians(params)

    # ------------------------------------------------------------------------------------------- selection
    def read_selection_env(self) -> None:
        """Remember ``$CLICKGS_SELECTION`` (if set) for ``load_pipeline``: the checkpoint is loaded after the
        pipeline is built, so the selection can only be checked and applied then."""
        value = os.environ.get(SELECTION_ENV, "").strip()
        if not value:
            return
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{SELECTION_ENV}={value}: no such file. Give a selection .npy saved by `clickgs segment` (or "
                f"ClickGaussianScene.save_selection) for this run, or unset {SELECTION_ENV} to keep every Gaussian."
            )
        self.pending_selection = path

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        """Load the checkpoint, then keep only the Gaussians of ``$CLICKGS_SELECTION`` when it was set."""
        super().load_pipeline(loaded_state, step)
        if self.pending_selection is not None:
            path, self.pending_selection = self.pending_selection, None
            try:
                mask = load_selection(path, self.click_model.num_points)
            except ValueError as err:
                raise ValueError(f"{SELECTION_ENV}={path}: {err}") from err
            self.keep_gaussians(mask)
            CONSOLE.print(f"Kept {int(mask.sum())} of {mask.shape[0]} Gaussians: the selection {SELECTION_ENV}={path}")

    @torch.no_grad()
    def keep_gaussians(self, mask: Tensor) -> None:
        """Keep only the Gaussians of ``mask`` [N] bool (parameters and per-Gaussian labels). For a loaded model
        only: no optimizer follows the new parameters."""
        model = self.click_model
        kept = {name: param.data[mask.to(param.device)] for name, param in model.gauss_params.items()}
        labels = {name: getattr(model, name)[mask.to(model.device)] for name in LABEL_BUFFERS
                  if getattr(model, name).shape[0] == mask.shape[0]}
        model.set_gaussians(kept, labels)

    # ------------------------------------------------------------------------------------------------- GFL
    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        # after the model's callbacks, so that densification has consumed this step's render info
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.gfl_step,
                                          kwargs={"trainer": training_callback_attributes.trainer}))
        return callbacks

    def gfl_step(self, step: int, trainer: Optional[Any] = None) -> None:
        """Recompute the global candidates every ``gfl.update_every`` steps from the GFL start, and at once when a
        resumed run past the start has none. At the last step, the trained features are checkpointed (through
        ``trainer``) before the labels are lifted (``finish_labels_after_checkpoint``)."""
        model_config = self.config.model
        gfl, start = model_config.gfl, model_config.gfl_start_step
        if step == model_config.total_steps - 1 and step >= model_config.feature_start_step:
            self.finish_labels_after_checkpoint(step, trainer)  # the labels are saved with the last checkpoint
            return
        if not gfl.enabled or step < start:
            return
        if (step - start) % gfl.update_every == 0 or not self.click_model.has_candidates:
            self.update_global_candidates(step)

    def finish_labels_after_checkpoint(self, step: int, trainer: Optional[Any]) -> Dict[str, int]:
        """``finish_labels``, once the trained features are saved in ``trainer``'s checkpoint of ``step``: lifting
        the labels is the end of training that needs the most memory, and a run that fails there keeps its feature
        stage; the command that finishes the labels is named before lifting starts and again if it fails."""
        if trainer is None:
            return self.finish_labels(step)
        trainer.save_checkpoint(step)
        finish = f"clickgs lift-labels --load-config {trainer.base_dir / 'config.yml'}"
        CONSOLE.log(f"Trained features saved in {trainer.checkpoint_dir / f'step-{step:09d}.ckpt'}; lifting the "
                    "labels for clicks. Should this process stop before it ends, this command finishes them:")
        CONSOLE.print(f"  {finish}", soft_wrap=True, highlight=False)
        try:
            return self.finish_labels(step)
        except BaseException:
            CONSOLE.log("[bold red]Lifting the labels failed; the trained features are saved. This command finishes "
                        "the labels:[/]")
            CONSOLE.print(f"  {finish}", soft_wrap=True, highlight=False)
            raise

    def finish_labels(self, step: int) -> Dict[str, int]:
        """The labels clicks select, from the final features: candidates clustered once more (also when GFL is
        off), then each Gaussian labelled by ``labelling.method`` (clickgs_ns/method/lifting.py). Returns the number of
        labelled Gaussians per level."""
        # nerfstudio loads the training images on first use and then gives undistorted views the size of their
        # cropped images: load them before their cameras are rendered (a resumed or relabelled run has not yet)
        self.datamanager.cached_train  # type: ignore[attr-defined]  # noqa: B018
        merged = self.update_global_candidates(step, merge=True)
        model = self.click_model
        if self.config.model.labelling.method == "nearest_feature":
            model.labels_final = torch.tensor(True, device=model.device)
            return {level: int((level_state(model, level, "labels") >= 0).sum()) for level in LEVELS}
        started = time.perf_counter()
        labelled = model.lift_labels(self.datamanager.train_dataset.cameras,  # type: ignore[attr-defined]
                                     self.mask_ids, merged)
        model.labels_final = torch.tensor(True, device=model.device)
        CONSOLE.log(f"Labels lifted from {len(self.datamanager.train_dataset)} training views in "  # type: ignore
                    f"{time.perf_counter() - started:.1f} s: {labelled['coarse']} (coarse) and {labelled['fine']} "
                    f"(fine) of {model.num_points} Gaussians labelled for clicks; the others no training view "
                    "shows confidently near a candidate.")
        return labelled

    def mask_ids(self, indices: Tensor) -> Tensor:
        """[B, H, W, 2] integer: per level, the SAM segment ids of training views ``indices`` [B] (-1: no mask), in
        the datamanager's compact type (int8 to int32)."""
        maps = [torch.stack(self.datamanager.id_maps(int(i)), dim=-1) for i in indices]  # type: ignore[attr-defined]
        return torch.stack(maps).to(self.device)

    @torch.no_grad()
    def rendered_training_views(self) -> Iterator[Tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Every training view's rendered features [H, W, D] and accumulation [H, W, 1] with its coarse and fine SAM
        id maps [H, W], one view at a time. Views are rendered ``gfl.render_batch_views`` at a time, at most
        ``gfl.render_batch_pixels`` pixels (one rasterizer call per batch of same-size views)."""
        gfl, datamanager = self.config.model.gfl, self.datamanager
        cameras = datamanager.train_dataset.cameras  # type: ignore[attr-defined]
        for batch in views_by_size(cameras, gfl.render_batch_views, gfl.render_batch_pixels):
            feature_maps, alphas = self.click_model.render_features(cameras[batch])  # [B, H, W, D], [B, H, W, 1]
            for feature_map, alpha, index in zip(feature_maps, alphas, batch.tolist()):
                coarse_ids, fine_ids = datamanager.id_maps(index)  # type: ignore[attr-defined]
                yield feature_map, alpha, coarse_ids.to(self.device), fine_ids.to(self.device)

    @torch.no_grad()
    def mask_averages(self) -> Tuple[Tensor, Tensor]:
        """Mask-averaged rendered features of every training view: coarse [Mc, coarse_dim], fine [Mf, feature_dim]."""
        min_pixels = self.config.model.gfl.min_mask_pixels
        averages: Dict[str, List[Tensor]] = {level: [] for level in LEVELS}
        for feature_map, _, *level_ids in self.rendered_training_views():
            for level, ids in zip(LEVELS, level_ids):
                level_map = self.click_model.level_features(feature_map, level)
                averages[level].append(mask_average_features(level_map, ids, min_pixels)[0])
        return tuple(torch.cat(averages[level]) for level in LEVELS)  # type: ignore[return-value]

    @torch.no_grad()
    def candidate_segment_pixels(self, candidates: Dict[str, Tensor]) -> Dict[str, SegmentPixels]:
        """Per level, the pixels of each candidate in each SAM segment of the training views
        (``lifting.segment_pixels``; pixels labelled as ``lift_labels`` labels them at ``min_cosine``)."""
        labelling = self.config.model.labelling
        parts: Dict[str, List[SegmentPixels]] = {level: [] for level in candidates}
        for view, (feature_map, alpha, *level_ids) in enumerate(self.rendered_training_views()):
            for level, ids in zip(LEVELS, level_ids):
                labels = pixel_label_maps(self.click_model.level_features(feature_map[None], level), alpha[None],
                                          candidates[level].to(self.device), labelling.min_alpha,
                                          labelling.min_cosine, ids[None] >= 0)  # [1, H, W]
                parts[level].append(segment_pixels(labels, ids[None], len(candidates[level]), first_view=view))
        return {level: concat_segment_pixels(parts[level], len(candidates[level])) for level in candidates}

    def merged_candidates(self, candidates: Dict[str, Tensor], sizes: Dict[str, Tensor]) -> Dict[str, MergedCandidates]:
        """Per level, candidates [C, D] with their near-duplicates merged (``lifting.merge_candidates``): above
        ``labelling.merge_cosine`` and, unless ``labelling.merge_min_shared`` <= 0, shown in the same SAM segments
        (``candidate_segment_pixels``, one more rendering of the training views)."""
        labelling = self.config.model.labelling
        thresholds = {level: labelling.level_merge_cosine(level) for level in candidates}
        if all(threshold > 1 for threshold in thresholds.values()):
            return {level: unmerged_candidates(candidates[level], sizes[level]) for level in candidates}
        pixels = self.candidate_segment_pixels(candidates) if labelling.merge_min_shared > 0 else {}
        return {level: merge_candidates(candidates[level], sizes[level], thresholds[level], pixels.get(level),
                                        labelling.merge_min_shared) for level in candidates}

    def update_global_candidates(self, step: int, merge: bool = False) -> Dict[str, MergedCandidates]:
        """Render every training view, average features per mask, cluster them per level with HDBSCAN and give the
        model its new candidates; with ``merge``, near-duplicate candidates are merged (``merged_candidates``).
        A level whose clustering degenerates keeps no candidates (its GFL term is off) and says why; training goes on
        either way. Returns per level the candidates the model now holds, with the clusters they were merged from."""
        gfl = self.config.model.gfl
        started = time.perf_counter()
        coarse_averages, fine_averages = self.mask_averages()
        rendered = time.perf_counter()
        num_views = len(self.datamanager.train_dataset)  # type: ignore[arg-type]
        results, sizes = {}, {}
        for level, averages in (("coarse", coarse_averages), ("fine", fine_averages)):
            result = cluster_level_candidates(averages, num_views, level, gfl)
            if result.status != "ok":
                CONSOLE.log(f"[yellow]GFL step {step}, {level} level: {result.message} ({len(averages)} mask "
                            f"averages, min_cluster_size {result.min_cluster_size}, epsilon {result.epsilon}). This "
                            "level trains on the contrastive loss alone until the next update.[/]")
            results[level] = result.candidates if result.status == "ok" else result.candidates[:0]
            sizes[level] = result.sizes if result.status == "ok" else result.sizes[:0]
        clusters = {level: int(candidates.shape[0]) for level, candidates in results.items()}
        merged = (self.merged_candidates(results, sizes) if merge else
                  {level: unmerged_candidates(results[level], sizes[level]) for level in results})
        self.click_model.set_candidates(merged["coarse"].candidates, merged["fine"].candidates)
        seconds = time.perf_counter() - started
        counts = {level: int(merged[level].candidates.shape[0]) for level in LEVELS}
        converged = self.click_model.feature_convergence()
        writer.put_scalar("GFL/coarse_candidates", counts["coarse"], step)
        writer.put_scalar("GFL/fine_candidates", counts["fine"], step)
        writer.put_scalar("GFL/update_seconds", seconds, step)
        for level, share in converged.items():
            writer.put_scalar(f"GFL/{level}_converged", share, step)
        merged_from = f" (merged from {clusters['coarse']} + {clusters['fine']} clusters)" if merge else ""
        CONSOLE.log(f"GFL step {step}: {counts['coarse']} coarse and {counts['fine']} fine candidates{merged_from} "
                    f"from {len(coarse_averages)} + {len(fine_averages)} mask averages in {seconds:.2f} s "
                    f"(rendering {rendered - started:.2f} s); converged (opacity-weighted share of Gaussians with "
                    f"cos > 0.9 to a candidate): coarse {converged['coarse']:.2f}, fine {converged['fine']:.2f}")
        return merged
