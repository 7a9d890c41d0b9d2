"""Time and peak memory of Click-Gaussian's stages at scale, each in a fresh process: the sparse, label-bounded
lifting against the dense one it replaced (one render of every label, a one-hot [B, H, W, 4, L] and a dense [N, L]
vote matrix), and the other steps of a run and of its use at the same size.

A synthetic splat of N Gaussians in front of V cameras, the Gaussians' features clustered by place into C candidates
per level (so that views show many labels), stands for a trained scene; its SAM id maps are made to match it (each
pixel's id is the place cell its ray meets, halved for the fine level). Peak memory is the resident set size above
the stage's start, sampled every 2 ms, plus, with ``--device cuda``, ``torch.cuda.max_memory_allocated`` above the
stage's start. A stage that runs out of memory is reported as not fitting. The stages (``--stages``):

    sam              ``clickgs masks``' work on one large photo (a real capture's photo scaled up; MobileSAM with the
                     tests' real weights) at ``--max-image-side``, for each of ``--sam-sizes``
    render           one view's feature render
    sparse, dense    ``ClickGaussianModel.lift_labels`` over ``--views`` views, and the dense lifting where it fits
                     (``--dense-sizes``; its one-hot alone is B*H*W*4*L*8 bytes: 27 GB at 1920x1080 with 100
                     candidates per level); both give the same labels (checked here where both run;
                     tests/test_gfl_pipeline.py checks it on a trained scene)
    idmaps           the SAM id maps of ``--idmap-views`` views read, renumbered and held as the datamanager
                     caches them (``ClickGaussianDataset.get_metadata`` on 2 threads; the images are not loaded;
                     the maps are written at the training size, so the resize to it that a downscaled capture's
                     full-resolution maps go through costs nothing here)
    feature_step     one feature-stage training step (GFL's loss on): the model's ``get_outputs`` and ``get_loss_dict``
                     on a batch as the datamanager builds it, backward, and the preset's optimizers; two steps run,
                     the seconds are the second's (the first also builds the spatial KNN index), the memory the
                     peak over both
    gfl              one GFL update over ``--gfl-views`` views (``ClickGaussianPipeline.update_global_candidates``:
                     render every view, average features per mask, HDBSCAN per level); its views are rendered one
                     batch at a time, so its time grows with the views and its memory does not
    click            one click through ``Segmenter`` (render the view, select) at the view's centre
    everything       ``Segmenter.segment_everything("coarse")`` (size-free)
    export           the whole splat labelled by its coarse segments written as one .ply as ``clickgs export
                     --segment-everything coarse --single-file`` does (``export_gaussians``; size-free)
    export_segments  one .ply per coarse segment as ``clickgs export --segment-everything coarse`` does
                     (``export_segments``; size-free)

Usage:
    .venv/bin/python benchmarks/bench_scale.py [--gaussians 200000] [--views 2] [--candidates 100]
        [--sizes 480x270 1920x1080] [--dense-sizes 480x270] [--sam-sizes 4032x3024] [--max-image-side 1024]
        [--stages sam render sparse dense idmaps feature_step gfl click everything export export_segments]
        [--idmap-views 200] [--gfl-views 20] [--sampled-pixels 10000] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import psutil
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox

from clickgs_ns.data.datamanager import ClickGaussianDataManager, ClickGaussianDataset
from clickgs_ns.method.lifting import LabellingConfig
from clickgs_ns.method.losses import FeatureLossConfig
from clickgs_ns.method.model import ClickGaussianModelConfig, views_by_size
from clickgs_ns.method.pipeline import ClickGaussianPipeline

SIZED_STAGES = ("render", "sparse", "dense", "idmaps", "feature_step", "gfl", "click")
"""Stages run at each of ``--sizes`` (dense only at ``--dense-sizes``)."""
SPLAT_STAGES = ("everything", "export", "export_segments")
"""Stages that do not depend on an image size: run once."""
STAGES = ("sam",) + SIZED_STAGES + SPLAT_STAGES
MASK_STAGES = ("idmaps", "feature_step", "gfl")
"""Stages that read SAM id maps (written by the parent process before the stage's process starts)."""

SLAB_MIN, SLAB_SIZE = (-2.0, -1.2, -3.5), (4.0, 2.4, 1.0)
"""The synthetic splat fills the box [SLAB_MIN, SLAB_MIN + SLAB_SIZE] (x, y, z), in front of cameras at the origin
looking down -z."""
FOCAL_PER_WIDTH = 0.8
"""The synthetic cameras' focal length in pixels, per pixel of image width."""
VISIBLE_DEPTH = -2.5
"""z at which the id maps place what a pixel shows: the slab's front face (at 200k Gaussians 93% of the pixels of a
160x90 view get the candidate the rendered features label them with; the others lie on cell borders)."""


# ------------------------------------------------------------------------------------------------ measuring
def peak_rss(fn: Callable[[], object]) -> Tuple[object, float, float]:
    """(result, seconds, peak resident memory above the start in GiB) of ``fn()``."""
    process = psutil.Process()
    start_rss = process.memory_info().rss
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:  # an out-of-memory error is reported by the caller: the sampler must not outlive it
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return result, seconds, (max(peak[0], process.memory_info().rss) - start_rss) / 2**30


def measure(fn: Callable[[], object], device: torch.device) -> Tuple[object, Dict[str, Optional[float]]]:
    """``fn()`` and its {"seconds", "gib": peak RSS above the start, "gpu_gib": peak CUDA memory allocated above the
    start (None off CUDA)}; on CUDA the time includes the queued kernels (synchronised)."""
    if device.type != "cuda":
        result, seconds, gib = peak_rss(fn)
        return result, {"seconds": seconds, "gib": gib, "gpu_gib": None}
    torch.cuda.synchronize(device)
    start = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)

    def synchronised() -> object:
        value = fn()
        torch.cuda.synchronize(device)
        return value

    result, seconds, gib = peak_rss(synchronised)
    return result, {"seconds": seconds, "gib": gib,
                    "gpu_gib": (torch.cuda.max_memory_allocated(device) - start) / 2**30}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that an allocation failed (CPU or CUDA), not that the code is wrong."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or any(
        words in text for words in ("out of memory", "not enough memory", "can't allocate memory"))


# ------------------------------------------------------------------------------------------------ the scene
def place_cells(x: torch.Tensor, y: torch.Tensor, side: int) -> torch.Tensor:
    """Place cell [...] long in [0, side^2) of points (x, y) [...] of the slab: side x side cells over x and y."""
    column = ((x - SLAB_MIN[0]) / SLAB_SIZE[0] * side).long().clamp(0, side - 1)
    row = ((y - SLAB_MIN[1]) / SLAB_SIZE[1] * side).long().clamp(0, side - 1)
    return column * side + row


def orbit_poses(num_views: int) -> torch.Tensor:
    """Camera-to-worlds [V, 3, 4] at the origin, turned about y by -0.15 .. 0.15 rad, looking down -z."""
    angles = torch.linspace(-0.15, 0.15, num_views)
    c2w = torch.zeros(num_views, 3, 4)
    c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 1, 1], c2w[:, 2, 0], c2w[:, 2, 2] = (angles.cos(), angles.sin(), 1.0,
                                                                           -angles.sin(), angles.cos())
    return c2w


def synthetic_model(num_gaussians: int, num_views: int, num_candidates: int, seed: int = 0):
    """A click-gaussian model whose Gaussians fill a slab in front of the cameras, features clustered by place into
    ``num_candidates`` cells per level; returns (model, camera-to-worlds [V, 3, 4])."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(num_gaussians, 3, generator=generator) * torch.tensor(SLAB_SIZE) + torch.tensor(SLAB_MIN)
    config = ClickGaussianModelConfig(sh_degree=0, init_ply=None)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-3.0, -3.0, -4.0], [3.0, 3.0, 0.0]])),
                         num_train_data=num_views, seed_points=(means, torch.full((num_gaussians, 3), 128)))
    side = max(1, round(num_candidates ** 0.5))
    cells = place_cells(means[:, 0], means[:, 1], side)  # [N] in [0, side^2)
    coarse = torch.nn.functional.normalize(torch.randn(side * side, 12, generator=generator), dim=-1)
    fine = torch.nn.functional.normalize(torch.randn(side * side, 12, generator=generator), dim=-1)
    with torch.no_grad():
        model.gauss_params["click_features"].data = torch.cat([coarse[cells], fine[cells]], dim=-1)
        model.gauss_params["opacities"].data.fill_(2.0)
        model.gauss_params["scales"].data.fill_(float(torch.log(torch.tensor(0.02))))
    model.set_candidates(coarse, torch.cat([coarse, fine], dim=-1))
    model.eval()
    return model, orbit_poses(num_views)


def cameras_of(c2w: torch.Tensor, width: int, height: int) -> Cameras:
    """Pinhole cameras [V] of ``width`` x ``height`` pixels at camera-to-worlds ``c2w`` [V, 3, 4]."""
    focal = FOCAL_PER_WIDTH * width
    return Cameras(camera_to_worlds=c2w, fx=focal, fy=focal, cx=width / 2, cy=height / 2, width=width,
                   height=height, camera_type=CameraType.PERSPECTIVE)


def synthetic_id_maps(c2w: torch.Tensor, width: int, height: int, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """SAM-like id maps of the synthetic splat seen by one camera ``c2w`` [3, 4] (``cameras_of``): the place cell
    that each pixel's ray meets at ``VISIBLE_DEPTH`` (coarse), split in two along x (fine); -1 off the slab.

    Returns:
        coarse, fine: int32 [H, W].
    """
    focal = FOCAL_PER_WIDTH * width
    u = (torch.arange(width) + 0.5 - width / 2) / focal  # [W]
    v = -(torch.arange(height) + 0.5 - height / 2) / focal  # [H]: image rows go down, camera y up
    rays = torch.stack(torch.broadcast_tensors(u[None, :], v[:, None], torch.tensor(-1.0)), dim=-1)  # [H, W, 3]
    rays = rays @ c2w[:, :3].T  # [H, W, 3] in the world
    depth = (VISIBLE_DEPTH - c2w[2, 3]) / rays[..., 2]  # [H, W]
    x, y = c2w[0, 3] + depth * rays[..., 0], c2w[1, 3] + depth * rays[..., 1]  # [H, W]
    on_slab = ((x >= SLAB_MIN[0]) & (x < SLAB_MIN[0] + SLAB_SIZE[0])
               & (y >= SLAB_MIN[1]) & (y < SLAB_MIN[1] + SLAB_SIZE[1]))
    coarse = place_cells(x, y, side)
    half = ((x - SLAB_MIN[0]) / SLAB_SIZE[0] * side * 2).long().clamp(0, 2 * side - 1) % 2
    fine = coarse * 2 + half
    return (torch.where(on_slab, coarse, -1).int().numpy(), torch.where(on_slab, fine, -1).int().numpy())


def write_synthetic_dataset(root: Path, num_views: int, width: int, height: int, side: int) -> Path:
    """A dataset folder ``root`` as the datamanager reads it: ``images/NNNN.png`` (one black image, hard-linked
    for every view: only its size is read) and ``clickgs_masks/NNNN.npz`` (``write_id_maps`` of
    ``synthetic_id_maps`` for the cameras ``orbit_poses(num_views)``). Returns ``root``."""
    from PIL import Image

    from clickgs_ns.io.id_maps import MASKS_DIRNAME, write_id_maps

    (root / "images").mkdir(parents=True)
    (root / MASKS_DIRNAME).mkdir()
    blank = root / "blank.png"
    Image.new("RGB", (width, height)).save(blank)
    for view, c2w in enumerate(orbit_poses(num_views)):
        os.link(blank, root / "images" / f"{view:04d}.png")
        write_id_maps(root / MASKS_DIRNAME / f"{view:04d}.npz", *synthetic_id_maps(c2w, width, height, side))
    return root


# ------------------------------------------------------------------------------------------------ stages
def dense_lift(model, cameras: Cameras) -> Dict[str, torch.Tensor]:
    """The lifting this project used before: every label rendered at once, one-hot labels, dense votes."""
    cfg = model.config.labelling
    columns = model.label_columns()
    votes = torch.zeros(model.num_points, columns[-1], device=model.device)
    for batch in views_by_size(cameras, cfg.render_batch_views):
        label_maps = model.candidate_label_maps(cameras[batch])
        colors = torch.zeros(model.num_points, columns[-1], device=model.device, requires_grad=True)
        with torch.enable_grad():
            rendered = model.render_colors(cameras[batch], colors)[0]
            one_hot = torch.nn.functional.one_hot(label_maps, columns[-1]).sum(dim=-2).to(rendered.dtype)
            (rendered * one_hot).sum().backward()
        votes += colors.grad
    labels = {}
    for name, (first, stop) in zip(("coarse_segment", "coarse", "fine_segment", "fine"),
                                   zip(columns[:-1], columns[1:])):
        block = votes[:, first:stop]
        best = block.argmax(dim=1)
        labels[name] = torch.where((best == stop - first - 1) | (block.sum(dim=1) < cfg.min_weight), -1, best)
    return labels


def mask_dataset(root: Path, cameras: Cameras) -> ClickGaussianDataset:
    """The training dataset the datamanager builds over the images and masks of ``root`` for ``cameras`` [V]."""
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

    outputs = DataparserOutputs(image_filenames=sorted((root / "images").glob("*.png")), cameras=cameras)
    return ClickGaussianDataset(outputs, data_root=root)


def cached_id_maps(dataset) -> List[Dict[str, torch.Tensor]]:
    """Every view's ``coarse_ids`` and ``fine_ids`` [H, W] (int8/int16/int32) as the datamanager caches them
    (``ClickGaussianDataset.get_metadata``, mapped over the views on 2 threads as nerfstudio's
    ``FullImageDatamanager._load_images`` does); the images are not decoded (only their size is used)."""
    def load(index: int) -> Dict[str, torch.Tensor]:
        height, width = int(dataset.cameras.height[index]), int(dataset.cameras.width[index])
        image = torch.zeros((), dtype=torch.uint8).expand(height, width, 3)  # [H, W, 3], no memory
        return {"image_idx": index, **dataset.get_metadata({"image_idx": index, "image": image})}

    with ThreadPoolExecutor(max_workers=2) as executor:
        return list(executor.map(load, range(len(dataset))))


class CachedViews:
    """What of ``ClickGaussianDataManager`` the GFL update reads: its training dataset and the cached views, with
    the datamanager's own ``id_maps``."""

    id_maps = ClickGaussianDataManager.id_maps

    def __init__(self, dataset, cached: List[Dict[str, torch.Tensor]]):
        self.train_dataset = dataset
        self.cached_train = cached


class GFLPipeline:
    """What of ``ClickGaussianPipeline`` its GFL update reads (model, datamanager, config, device), with the
    pipeline's own ``update_global_candidates`` and the methods it calls: the product's update on views without
    images."""

    update_global_candidates = ClickGaussianPipeline.update_global_candidates
    mask_averages = ClickGaussianPipeline.mask_averages
    rendered_training_views = ClickGaussianPipeline.rendered_training_views
    candidate_segment_pixels = ClickGaussianPipeline.candidate_segment_pixels
    merged_candidates = ClickGaussianPipeline.merged_candidates
    click_model = ClickGaussianPipeline.click_model

    def __init__(self, model, datamanager: CachedViews):
        self.model = model
        self.datamanager = datamanager
        self.config = SimpleNamespace(model=model.config)
        self.device = model.device


def reuse_freed_memory_as_the_trainer(device: torch.device) -> None:
    """Keep freed memory for reuse when the run is on the CPU, as ``ClickGaussianTrainer.setup`` does before it loads
    the data (``io.memory.keep_freed_memory``); called after a stage's setup, so that the setup's freed memory is
    gone."""
    from clickgs_ns.io.memory import keep_freed_memory

    if device.type == "cpu":
        keep_freed_memory()


def held_gib(cached: Sequence[Dict[str, torch.Tensor]]) -> float:
    """GiB held by the id maps of ``cached`` views."""
    return sum(data[key].numel() * data[key].element_size() for data in cached
               for key in ("coarse_ids", "fine_ids")) / 2**30


def idmaps_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """The id maps of ``args.stage_views`` views read from ``args.masks_dir`` and held as the datamanager caches
    them (on the CPU, where it keeps them on any device)."""
    width, height = size_of(args.size)
    dataset = mask_dataset(args.masks_dir, cameras_of(orbit_poses(args.stage_views), width, height))
    reuse_freed_memory_as_the_trainer(device)
    cached, result = measure(lambda: cached_id_maps(dataset), torch.device("cpu"))
    image_gib = len(cached) * width * height * 3 / 2**30
    dtypes = "/".join(sorted({str(data[key].dtype).replace("torch.", "") for data in cached
                              for key in ("coarse_ids", "fine_ids")}))
    return result, (f"held: {held_gib(cached):.3f} GiB ({dtypes}; the uint8 images beside them, not loaded here: "
                    f"{image_gib:.2f} GiB)")


def feature_step_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """Two feature-stage steps (GFL's loss on) on views 0 and 1 with the click-gaussian preset's optimizers: the
    second one's seconds (the first also builds the spatial KNN index: its seconds go to the note), and the peak
    memory over both above their start (the trainer keeps freed memory, so a later step reuses the first one's)."""
    from method_configs.click_gaussian import click_gaussian_config

    from nerfstudio.engine.optimizers import Optimizers

    model, c2w = synthetic_model(args.gaussians, args.stage_views, args.candidates)
    model.config.losses.num_sampled_pixels = args.sampled_pixels
    model.to(device).train()
    model.step = model.config.gfl_start_step  # the feature stage with GFL's loss on
    width, height = size_of(args.size)
    cameras = cameras_of(c2w, width, height)
    dataset = mask_dataset(args.masks_dir, cameras)
    views = cached_id_maps(dataset)
    image = torch.zeros(height, width, 3, dtype=torch.uint8, device=device)  # [H, W, 3]: the cached image's place
    optimizers = Optimizers(click_gaussian_config().optimizers, model.get_param_groups())

    def step(index: int) -> Dict[str, torch.Tensor]:
        """One training step on view ``index`` as nerfstudio's trainer runs it (``train_iteration``)."""
        camera = cameras[index : index + 1].to(device)
        camera.metadata = {"cam_idx": index}
        batch = dict(views[index], image=image)
        optimizers.zero_grad_all()
        outputs = model(camera)
        metrics = model.get_metrics_dict(outputs, batch)
        loss_dict = model.get_loss_dict(outputs, batch, metrics)
        sum(loss_dict.values()).backward()
        optimizers.optimizer_step_all()
        return loss_dict

    def two_steps() -> Tuple[Dict[str, torch.Tensor], List[float]]:
        """Steps on views 0 and 1, and the seconds of each."""
        seconds = []
        for index in (0, min(1, len(views) - 1)):
            started = time.perf_counter()
            loss_dict = step(index)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - started)
        return loss_dict, seconds

    reuse_freed_memory_as_the_trainer(device)
    (loss_dict, seconds), result = measure(two_steps, device)
    result["seconds"] = seconds[1]
    return result, (f"{args.sampled_pixels} sampled pixels, losses {', '.join(sorted(loss_dict))}; seconds of the "
                    f"second step, the first (which also builds the KNN index) took {seconds[0]:.2f} s; memory: "
                    "the peak over both")


def gfl_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """One ``update_global_candidates`` over ``args.stage_views`` views whose id maps are already cached."""
    model, c2w = synthetic_model(args.gaussians, args.stage_views, args.candidates)
    model.to(device)
    width, height = size_of(args.size)
    dataset = mask_dataset(args.masks_dir, cameras_of(c2w, width, height))
    pipeline = GFLPipeline(model, CachedViews(dataset, cached_id_maps(dataset)))
    reuse_freed_memory_as_the_trainer(device)
    merged, result = measure(lambda: pipeline.update_global_candidates(step=model.config.gfl_start_step), device)
    gfl = model.config.gfl
    counts = {level: len(level_merged.candidates) for level, level_merged in merged.items()}
    return result, (f"{counts['coarse']} coarse and {counts['fine']} fine candidates; views rendered "
                    f"{gfl.render_batch_views} at a time, at most {gfl.render_batch_pixels} pixels")


def click_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """A fresh ``Segmenter``'s first click, at the centre of view 0 (its render and per-level labels included)."""
    from clickgs_ns.segment.selection import Segmenter

    model, c2w = synthetic_model(args.gaussians, args.views, args.candidates)
    model.to(device)
    width, height = size_of(args.size)
    camera = cameras_of(c2w[:1], width, height)
    segmenter = Segmenter(model)
    clicked, result = measure(lambda: segmenter.click(camera, width / 2, height / 2, "coarse"), device)
    return result, f"{clicked.num_selected} Gaussians selected; render {clicked.render_seconds:.2f} s"


def everything_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """A fresh ``Segmenter``'s "segment everything" at the coarse level (its per-level labels included)."""
    from clickgs_ns.segment.selection import Segmenter

    model, _ = synthetic_model(args.gaussians, args.views, args.candidates)
    model.to(device)
    segmenter = Segmenter(model)
    segmentation, result = measure(lambda: segmenter.segment_everything("coarse"), device)
    return result, f"{segmentation.num_segments} segments"


def export_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """The whole splat, labelled, in one .ply (``export`` stage) or one .ply per segment (``export_segments``),
    from a dataparser transform (identity) as ``clickgs export`` undoes it."""
    from clickgs_ns.segment.export import export_gaussians, export_segments
    from clickgs_ns.segment.selection import Segmenter

    model, _ = synthetic_model(args.gaussians, args.views, args.candidates)
    model.to(device)
    labels = Segmenter(model).segment_everything("coarse").labels.cpu()
    transform = torch.eye(4)[:3]
    with tempfile.TemporaryDirectory() as out:
        if args.stage == "export":
            mask = torch.ones(model.num_points, dtype=torch.bool)
            exported, result = measure(lambda: export_gaussians(model, mask, Path(out) / "scene.ply", transform, 1.0,
                                                                labels), device)
            files = [exported]
        else:
            files, result = measure(lambda: export_segments(model, labels, Path(out), transform, 1.0), device)
        megabytes = sum(path.stat().st_size for path in Path(out).iterdir()) / 2**20
    return result, (f"{len(files)} .ply file(s), {sum(r.num_exported for r in files)} Gaussians, {megabytes:.0f} MiB "
                    "with sidecars")


def lifting_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """``render``, ``sparse`` or ``dense``; the labels of the last two go to ``args.labels_out``."""
    model, c2w = synthetic_model(args.gaussians, args.views, args.candidates)
    model.to(device)
    model.config.labelling.vote_pass_megabytes = args.vote_pass_megabytes
    model.config.labelling.min_visibility = 0.0  # the dense lifting it is compared with votes without it
    width, height = size_of(args.size)
    cameras = cameras_of(c2w, width, height)
    if args.stage == "render":
        _, result = measure(lambda: model.render_features(cameras[:1]), device)
    elif args.stage == "sparse":
        _, result = measure(lambda: model.lift_labels(cameras), device)
        torch.save({"coarse": model.coarse_labels.cpu(), "fine": model.fine_labels.cpu(),
                    "coarse_segment": model.coarse_segment_labels.cpu(),
                    "fine_segment": model.fine_segment_labels.cpu()}, args.labels_out)
    else:
        labels, result = measure(lambda: dense_lift(model, cameras), device)
        torch.save({name: value.cpu() for name, value in labels.items()}, args.labels_out)
    splat_gib = sum(p.numel() * p.element_size() for p in model.gauss_params.values()) / 2**30
    return result, f"{model.label_columns()[-1]} labels; splat {splat_gib:.3f} GiB"


def sam_stage(args: argparse.Namespace, device: torch.device) -> Tuple[Dict[str, Any], str]:
    """``clickgs masks``' per-photo work (MobileSAM, the fast generator, id maps written at full size) on one photo of
    ``args.size``: a real capture's photo scaled up (the tests' real weights; ``--sam-checkpoint`` to give one)."""
    from PIL import Image

    from clickgs_ns.data.sam_masks import SamMaskConfig, _sam_id_maps
    from clickgs_ns.data.sam_models import build_sam_generator
    from clickgs_ns.data.scene_segments import configured_scene_rule

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sam_weights import mobile_sam_checkpoint

    width, height = size_of(args.size)
    photo = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "dtu_scan37" / "images").glob(
        "*.jpg"))[0]
    image = np.asarray(Image.open(photo).convert("RGB").resize((width, height), Image.BICUBIC))
    config = SamMaskConfig(sam_checkpoint=args.sam_checkpoint or mobile_sam_checkpoint(), sam_model="vit_t",
                           points_per_side=args.points_per_side, max_image_side=args.max_image_side, device="cpu")
    generator = build_sam_generator(config)
    rule = configured_scene_rule(config)
    _, result = measure(lambda: _sam_id_maps(generator, image, rule, config.max_image_side), torch.device("cpu"))
    return result, "on the CPU"


STAGE_FUNCTIONS: Dict[str, Callable[[argparse.Namespace, torch.device], Tuple[Dict[str, Any], str]]] = {
    "sam": sam_stage, "render": lifting_stage, "sparse": lifting_stage, "dense": lifting_stage,
    "idmaps": idmaps_stage, "feature_step": feature_step_stage, "gfl": gfl_stage, "click": click_stage,
    "everything": everything_stage, "export": export_stage, "export_segments": export_stage,
}


def run_stage(args: argparse.Namespace) -> None:
    """One stage in this (fresh) process: prints a JSON line with its seconds, peak memory and a note, or with
    "does_not_fit" when an allocation failed."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result, note = STAGE_FUNCTIONS[args.stage](args, torch.device(args.device))
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        first_line = (str(error).splitlines() or [""])[0]  # a bare MemoryError has no message
        print(json.dumps({"does_not_fit": f"{type(error).__name__}: {first_line[:160]}"}))
        return
    print(json.dumps({**result, "note": note, "threads": torch.get_num_threads()}))


# ------------------------------------------------------------------------------------------------ the table
def size_of(size: str) -> Tuple[int, int]:
    """(width, height) of "WxH"."""
    width, height = (int(v) for v in size.split("x"))
    return width, height


def stage_views(args: argparse.Namespace, stage: str) -> int:
    """How many views ``stage`` works on."""
    return {"idmaps": args.idmap_views, "gfl": args.gfl_views, "render": 1, "click": 1}.get(stage, args.views)


def stage_in_fresh_process(args: argparse.Namespace, stage: str, size: str, labels_out: Path,
                           masks_dir: Optional[Path] = None) -> Dict[str, Any]:
    """``run_stage`` in a new Python process, so that its peak memory is its own (a process keeps what it freed)."""
    command = [sys.executable, __file__, "--stage", stage, "--size", size, "--labels-out", str(labels_out),
               "--gaussians", str(args.gaussians), "--views", str(args.views), "--candidates", str(args.candidates),
               "--vote-pass-megabytes", str(args.vote_pass_megabytes), "--max-image-side", str(args.max_image_side),
               "--points-per-side", str(args.points_per_side), "--device", args.device,
               "--sampled-pixels", str(args.sampled_pixels), "--stage-views", str(stage_views(args, stage))]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--masks-dir", str(masks_dir)] if masks_dir is not None else []
    command += ["--sam-checkpoint", str(args.sam_checkpoint)] if args.sam_checkpoint else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        killed = result.returncode in (-9, 137)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"failed": result.returncode,
                "why": "killed (out of memory?)" if killed else f"exit {result.returncode}: {last}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


STAGE_TITLES = {
    "render": "render one view's features",
    "sparse": "lift labels",
    "dense": "lift labels, dense (before)",
    "idmaps": "load the SAM id maps as the datamanager holds them",
    "feature_step": "one feature-stage training step (GFL loss on)",
    "gfl": "one GFL update (render, mask averages, HDBSCAN)",
    "click": "one click (Segmenter: render + select)",
    "everything": "segment everything (coarse)",
    "export": "export the labelled splat (one .ply)",
    "export_segments": "export one .ply per coarse segment",
}


def table_row(title: str, size: str, views: Any, result: Dict[str, Any], note: str = "") -> str:
    """One markdown row: a measured stage, or why it has no figures."""
    if "does_not_fit" in result:
        return f"| {title} | {size} | {views} | does not fit | | | {result['does_not_fit']} |"
    if "failed" in result:
        return f"| {title} | {size} | {views} | failed | | | {result['why']} |"
    gpu = "" if result.get("gpu_gib") is None else f"{result['gpu_gib']:.2f}"
    note = "; ".join(part for part in (result.get("note", ""), note) if part)
    return f"| {title} | {size} | {views} | {result['seconds']:.2f} | {result['gib']:.2f} | {gpu} | {note} |"


def machine_line(args: argparse.Namespace) -> str:
    """The machine, torch and the scene, for the line above the table."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = args.threads or torch.get_num_threads()
    return (f"# {platform.platform()} ({platform.machine()}), {psutil.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {gpu}; torch {torch.__version__}, {threads} torch "
            f"threads, stages on {args.device}; {args.gaussians} Gaussians, {args.candidates} candidates per level, "
            f"{args.views} views (lifting, feature step), {args.idmap_views} (id maps), {args.gfl_views} (GFL); each "
            f"stage in a fresh process; vote_pass_megabytes {args.vote_pass_megabytes}")


def agreement_note(work: Path, size: str) -> str:
    """How far the dense lifting's labels at ``size`` agree with the sparse one's (both saved in ``work``)."""
    sparse_path, dense_path = work / f"sparse_{size}.pt", work / f"dense_{size}.pt"
    if not sparse_path.exists() or not dense_path.exists():
        return ""
    ours, theirs = torch.load(sparse_path), torch.load(dense_path)
    agree = min(float((ours[name] == theirs[name]).float().mean()) for name in theirs)
    return f"labels as the sparse lifting's: {100 * agree:.3f}% of Gaussians (the rest: near-ties)"


def masks_for(args: argparse.Namespace, stage: str, size: str, work: Path, written: Dict[Tuple[int, str], Path]
              ) -> Optional[Path]:
    """The dataset folder with the id maps ``stage`` reads at ``size`` (written once per view count and size,
    outside every measurement); None for a stage that reads none."""
    if stage not in MASK_STAGES:
        return None
    key = (stage_views(args, stage), size)
    if key not in written:
        width, height = size_of(size)
        side = max(1, round(args.candidates ** 0.5))
        written[key] = write_synthetic_dataset(work / f"data_{key[0]}_{size}", key[0], width, height, side)
    return written[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=200_000)
    parser.add_argument("--views", type=int, default=2, help="views of the lifting and the feature step")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--sizes", nargs="*", default=["480x270", "1920x1080"])
    parser.add_argument("--dense-sizes", nargs="*", default=["480x270"])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--idmap-views", type=int, default=200, help="views whose id maps the idmaps stage loads")
    parser.add_argument("--gfl-views", type=int, default=20,
                        help="views of the GFL update (its render time grows with them: about 3.3 s per 1080p view "
                             "of 200k Gaussians on 2 cores)")
    parser.add_argument("--sampled-pixels", type=int, default=FeatureLossConfig.num_sampled_pixels,
                        help="pixels sampled per feature step (click-gaussian: 10000, click-gaussian-cpu: 2048)")
    parser.add_argument("--device", default="cpu", help="where the model's stages run: cpu or cuda")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--vote-pass-megabytes", type=float, default=LabellingConfig.vote_pass_megabytes)
    parser.add_argument("--sam-sizes", nargs="*", default=["4032x3024"], help="photo sizes for the SAM stage")
    parser.add_argument("--max-image-side", type=int, default=1024, help="clickgs masks --max-image-side")
    parser.add_argument("--points-per-side", type=int, default=16, help="SAM prompts per side for the SAM stage")
    parser.add_argument("--sam-checkpoint", type=Path, default=None)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--masks-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage-views", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args)
        return
    print(machine_line(args))
    print("| stage | size | views | seconds | peak RSS above the stage's start (GiB) | peak CUDA allocated (GiB) "
          "| notes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        work, written = Path(tmp), {}
        if "sam" in args.stages:
            for size in args.sam_sizes:
                result = stage_in_fresh_process(args, "sam", size, work / "unused.pt")
                title = (f"SAM masks of one photo (MobileSAM, {args.points_per_side}x{args.points_per_side} prompts, "
                         f"--max-image-side {args.max_image_side})")
                print(table_row(title, size, 1, result), flush=True)
        for size in args.sizes:
            for stage in SIZED_STAGES:
                if stage not in args.stages or (stage == "dense" and size not in args.dense_sizes):
                    continue
                result = stage_in_fresh_process(args, stage, size, work / f"{stage}_{size}.pt",
                                                masks_for(args, stage, size, work, written))
                note = agreement_note(work, size) if stage == "dense" and "failed" not in result else ""
                print(table_row(STAGE_TITLES[stage], size, stage_views(args, stage), result, note), flush=True)
        for stage in SPLAT_STAGES:
            if stage in args.stages:
                result = stage_in_fresh_process(args, stage, "-", work / "unused.pt")
                print(table_row(STAGE_TITLES[stage], "-", "-", result), flush=True)


if __name__ == "__main__":
    main()
