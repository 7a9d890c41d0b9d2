"""Time and peak memory of label lifting at scale: the sparse, label-bounded lifting against the dense one it
replaced (one render of every label, a one-hot [B, H, W, 4, L] and a dense [N, L] vote matrix).

A synthetic splat of N Gaussians in front of V cameras, the Gaussians' features clustered by place into C candidates
per level (so that views show many labels), is labelled by ``ClickGaussianModel.lift_labels``; peak memory is the
resident set size above the stage's start, sampled every 2 ms. The dense version is run where it fits (its one-hot
alone is B*H*W*4*L*8 bytes: 27 GB at 1920x1080 with 100 candidates per level); both give the same labels (checked
here where both run; tests/test_gfl_pipeline.py checks it on a trained scene). It also measures ``clickgs masks``' work on one large photo (a real capture's photo scaled up; MobileSAM with the
tests' real weights) at ``--max-image-side``. Usage:
    .venv/bin/python benchmarks/bench_scale.py [--gaussians 200000] [--views 2] [--candidates 100]
        [--sizes 480x270 1920x1080] [--dense-sizes 480x270] [--sam-sizes 4032x3024] [--max-image-side 1024]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import psutil
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox

from clickgs_ns.method.lifting import LabellingConfig
from clickgs_ns.method.model import ClickGaussianModelConfig, views_by_size


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
    result = fn()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return result, seconds, (max(peak[0], process.memory_info().rss) - start_rss) / 2**30


def synthetic_model(num_gaussians: int, num_views: int, num_candidates: int, seed: int = 0):
    """A click-gaussian model whose Gaussians fill a slab in front of the cameras, features clustered by place into
    ``num_candidates`` cells per level; returns (model, camera-to-worlds [V, 3, 4])."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(num_gaussians, 3, generator=generator) * torch.tensor([4.0, 2.4, 1.0]) - torch.tensor(
        [2.0, 1.2, 3.5])  # x in [-2, 2], y in [-1.2, 1.2], z in [-3.5, -2.5]: in front of cameras looking down -z
    config = ClickGaussianModelConfig(sh_degree=0, init_ply=None)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-3.0, -3.0, -4.0], [3.0, 3.0, 0.0]])),
                         num_train_data=num_views, seed_points=(means, torch.full((num_gaussians, 3), 128)))
    side = max(1, round(num_candidates ** 0.5))
    cells = ((means[:, 0] + 2) / 4 * side).long().clamp(0, side - 1) * side + (
        (means[:, 1] + 1.2) / 2.4 * side).long().clamp(0, side - 1)  # [N] in [0, side^2)
    coarse = torch.nn.functional.normalize(torch.randn(side * side, 12, generator=generator), dim=-1)
    fine = torch.nn.functional.normalize(torch.randn(side * side, 12, generator=generator), dim=-1)
    with torch.no_grad():
        model.gauss_params["click_features"].data = torch.cat([coarse[cells], fine[cells]], dim=-1)
        model.gauss_params["opacities"].data.fill_(2.0)
        model.gauss_params["scales"].data.fill_(float(torch.log(torch.tensor(0.02))))
    model.set_candidates(coarse, torch.cat([coarse, fine], dim=-1))
    angles = torch.linspace(-0.15, 0.15, num_views)
    c2w = torch.zeros(num_views, 3, 4)
    c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 1, 1], c2w[:, 2, 0], c2w[:, 2, 2] = (angles.cos(), angles.sin(), 1.0,
                                                                           -angles.sin(), angles.cos())
    model.eval()
    return model, c2w


def cameras_of(c2w: torch.Tensor, width: int, height: int) -> Cameras:
    focal = 0.8 * width
    return Cameras(camera_to_worlds=c2w, fx=focal, fy=focal, cx=width / 2, cy=height / 2, width=width,
                   height=height, camera_type=CameraType.PERSPECTIVE)


def dense_lift(model, cameras: Cameras) -> Dict[str, torch.Tensor]:
    """The lifting this project used before: every label rendered at once, one-hot labels, dense votes."""
    cfg = model.config.labelling
    columns = model.label_columns()
    votes = torch.zeros(model.num_points, columns[-1])
    for batch in views_by_size(cameras, cfg.render_batch_views):
        label_maps = model.candidate_label_maps(cameras[batch])
        colors = torch.zeros(model.num_points, columns[-1], requires_grad=True)
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


def run_stage(args: argparse.Namespace) -> None:
    """One stage in this (fresh) process: prints a JSON line with its seconds and peak memory; labels go to
    ``args.labels_out``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage == "sam":
        seconds, gib = sam_stage(args)
        print(json.dumps({"seconds": seconds, "gib": gib}))
        return
    model, c2w = synthetic_model(args.gaussians, args.views, args.candidates)
    model.config.labelling.vote_pass_megabytes = args.vote_pass_megabytes
    width, height = (int(v) for v in args.size.split("x"))
    cameras = cameras_of(c2w, width, height)
    if args.stage == "render":
        _, seconds, gib = peak_rss(lambda: model.render_features(cameras[:1]))
    elif args.stage == "sparse":
        _, seconds, gib = peak_rss(lambda: model.lift_labels(cameras))
        torch.save({"coarse": model.coarse_labels, "fine": model.fine_labels,
                    "coarse_segment": model.coarse_segment_labels, "fine_segment": model.fine_segment_labels},
                   args.labels_out)
    else:
        labels, seconds, gib = peak_rss(lambda: dense_lift(model, cameras))
        torch.save(labels, args.labels_out)
    splat_gib = sum(p.numel() * p.element_size() for p in model.gauss_params.values()) / 2**30
    print(json.dumps({"seconds": seconds, "gib": gib, "splat_gib": splat_gib, "threads": torch.get_num_threads(),
                      "labels": model.label_columns()[-1]}))


def sam_stage(args: argparse.Namespace) -> Tuple[float, float]:
    """``clickgs masks``' per-photo work (MobileSAM, the fast generator, id maps written at full size) on one photo of
    ``args.size``: a real capture's photo scaled up (the tests' real weights; ``--sam-checkpoint`` to give one)."""
    import sys as _sys

    from PIL import Image

    from clickgs_ns.data.sam_masks import SamMaskConfig, _sam_id_maps, build_sam_generator, configured_scene_rule

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sam_weights import mobile_sam_checkpoint

    width, height = (int(v) for v in args.size.split("x"))
    photo = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "dtu_scan37" / "images").glob(
        "*.jpg"))[0]
    image = np.asarray(Image.open(photo).convert("RGB").resize((width, height), Image.BICUBIC))
    config = SamMaskConfig(sam_checkpoint=args.sam_checkpoint or mobile_sam_checkpoint(), sam_model="vit_t",
                           points_per_side=args.points_per_side, max_image_side=args.max_image_side, device="cpu")
    generator = build_sam_generator(config)
    rule = configured_scene_rule(config)
    _, seconds, gib = peak_rss(lambda: _sam_id_maps(generator, image, rule, config.max_image_side))
    return seconds, gib


def stage_in_fresh_process(args: argparse.Namespace, stage: str, size: str, labels_out: Path) -> Dict[str, float]:
    """``run_stage`` in a new Python process, so that its peak memory is its own (a process keeps what it freed)."""
    command = [sys.executable, __file__, "--stage", stage, "--size", size, "--labels-out", str(labels_out),
               "--gaussians", str(args.gaussians), "--views", str(args.views), "--candidates", str(args.candidates),
               "--vote-pass-megabytes", str(args.vote_pass_megabytes), "--max-image-side", str(args.max_image_side),
               "--points-per-side", str(args.points_per_side)] + (
                   ["--threads", str(args.threads)] if args.threads else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"failed": result.returncode, "seconds": float("nan"), "gib": float("nan")}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=200_000)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--sizes", nargs="*", default=["480x270", "1920x1080"])
    parser.add_argument("--dense-sizes", nargs="+", default=["480x270"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--vote-pass-megabytes", type=float, default=LabellingConfig.vote_pass_megabytes)
    parser.add_argument("--sam-sizes", nargs="*", default=["4032x3024"], help="photo sizes for the SAM stage")
    parser.add_argument("--max-image-side", type=int, default=1024, help="clickgs masks --max-image-side")
    parser.add_argument("--points-per-side", type=int, default=16, help="SAM prompts per side for the SAM stage")
    parser.add_argument("--sam-checkpoint", type=Path, default=None)
    parser.add_argument("--stage", choices=["render", "sparse", "dense", "sam"], help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args)
        return
    print(f"# {platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"torch {torch.__version__}; {args.gaussians} Gaussians, {args.views} views, {args.candidates} "
          f"candidates per level; each stage in a fresh process; vote_pass_megabytes {args.vote_pass_megabytes}")
    print("| stage | size | seconds | peak memory above the loaded splat (GiB) | labels as the dense lifting's |")
    print("| --- | --- | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as work:
        for size in args.sam_sizes:
            sam = stage_in_fresh_process(args, "sam", size, Path(work) / "unused.pt")
            print(f"| SAM masks of one photo (MobileSAM, {args.points_per_side}x{args.points_per_side} prompts, "
                  f"--max-image-side {args.max_image_side}) | {size} | {sam['seconds']:.2f} | {sam['gib']:.2f} | |",
                  flush=True)
        for size in args.sizes:
            render = stage_in_fresh_process(args, "render", size, Path(work) / "unused.pt")
            print(f"| render one view's features | {size} | {render['seconds']:.2f} | {render['gib']:.2f} | |",
                  flush=True)
            sparse = stage_in_fresh_process(args, "sparse", size, Path(work) / f"sparse_{size}.pt")
            print(f"| lift labels ({sparse.get('labels', '?')} labels) | {size} | {sparse['seconds']:.2f} | "
                  f"{sparse['gib']:.2f} | |", flush=True)
            if size not in args.dense_sizes:
                continue
            dense = stage_in_fresh_process(args, "dense", size, Path(work) / f"dense_{size}.pt")
            if "failed" in dense:
                print(f"| lift labels, dense (before) | {size} | failed (exit {dense['failed']}) | | |", flush=True)
                continue
            ours, theirs = torch.load(Path(work) / f"sparse_{size}.pt"), torch.load(Path(work) / f"dense_{size}.pt")
            agree = min(float((ours[name] == theirs[name]).float().mean()) for name in theirs)
            print(f"| lift labels, dense (before) | {size} | {dense['seconds']:.2f} | {dense['gib']:.2f} | "
                  f"{100 * agree:.3f}% of Gaussians (the rest: near-ties) |", flush=True)


if __name__ == "__main__":
    main()
