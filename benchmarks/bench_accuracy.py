"""Click accuracy end to end, the way a user gets it, next to the oracle bound of the same splat.

1. Scenes: the "room" family of ``clickgs synth`` (textured floor and walls, 7 objects with 17 parts, thin legs and
   poles, occlusions, 40 views of which 4 are held out), once per mask-noise level (same seed: same images, only
   the SAM-like masks differ; floor and wall segments change from view to view at every level).
2. The splat: ``ns-train click-gaussian`` from the dataset's seed points through the RGB stage (densified,
   fuzzy, partly hidden Gaussians, as real splats are). Trained once, shared by every run below.
3. Feature stage: ``ns-train click-gaussian --pipeline.model.init-checkpoint`` of that splat, per noise level,
   GFL on and off; on the noisiest masks also with SAM's whole-scene segment added to half the views
   (``--scene-segments``), and with each departure from the paper turned off (candidate merging; and labels by
   nearest feature instead of the view vote, which is a relabelling of the same run).
4. Scoring: ``clickgs eval``'s code on the scene's prompts.json (clicks in training views, targets in the held-out
   views only): mIoU and mBIoU per level; the convergence figure (opacity-weighted share of Gaussians whose feature
   has cos > 0.9 to its nearest candidate); and the oracle: every Gaussian labelled with the ground-truth segment
   that receives most of its rendered weight over the training views, clicked through those labels.

Usage: python benchmarks/bench_accuracy.py [--work DIR] [--rgb-steps 3000] [--feature-steps 1000] [--noise 0.5 1.0]
Reruns reuse what ``--work`` already holds (scenes, splat, runs); ``--fresh`` starts over. The last line reads
``accuracy: coarse mIoU 0.NNN, fine mIoU 0.NNN (noisy masks, GFL on); oracle 0.NNN / 0.NNN``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

VENV_BIN = Path(sys.executable).parent


def ns_train(data: Path, output_dir: Path, name: str, args: Sequence[str], log: Path) -> Path:
    """Run ``ns-train click-gaussian`` (CPU) unless the run's last checkpoint exists; returns its config.yml."""
    run_dir = output_dir / data.name / "click-gaussian" / name
    config = run_dir / "config.yml"
    if config.exists() and any((run_dir / "nerfstudio_models").glob("*.ckpt")) and (run_dir / "DONE").exists():
        return config
    if run_dir.exists():
        shutil.rmtree(run_dir)
    command = [str(VENV_BIN / "ns-train"), "click-gaussian", "--data", str(data), "--output-dir", str(output_dir),
               "--timestamp", name, "--machine.device-type", "cpu", "--vis", "tensorboard",
               "--pipeline.model.num-downscales", "0", "--steps-per-eval-image", "1000000",
               "--steps-per-eval-all-images", "1000000", "--steps-per-save", "1000000", *args]
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"ns-train failed ({code}); see {log}")
    (run_dir / "DONE").write_text(f"{time.perf_counter() - started:.1f}\n")
    return config


def run_seconds(config: Path) -> float:
    return float((config.parent / "DONE").read_text())


def last_checkpoint(config: Path) -> Path:
    return sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]


def oracle_labels(model, cameras, gt_maps: List[np.ndarray], num_segments: int) -> torch.Tensor:
    """Each Gaussian's ground-truth segment by rendered weight over ``cameras`` (-1: none / unseen)."""
    from clickgs_ns.method.lifting import add_votes, vote_labels
    from clickgs_ns.method.model import views_by_size

    votes = None
    for batch in views_by_size(cameras, 4):
        maps = torch.stack([torch.from_numpy(gt_maps[i]).long() for i in batch.tolist()])
        maps = torch.where(maps < 0, num_segments, maps)  # background -> "none"
        batch_votes = model.label_votes(cameras[batch], maps, num_segments + 1)
        votes = add_votes(votes, batch_votes)
    return vote_labels(votes, 0, num_segments + 1, model.config.labelling.min_weight)


def score_oracle(scene, prompts, prompts_path: Path, scene_dir: Path) -> Dict[str, Dict[str, float]]:
    """mIoU / mBIoU per level of clicks through the oracle labels (the best any per-Gaussian labelling does)."""
    from clickgs_ns.segment.evaluate import boundary_iou, mask_iou, read_mask_png, summarize
    from clickgs_ns.segment.selection import selection_mask
    from clickgs_ns.segment.views import full_resolution_camera

    dataset = scene.run.datamanager.train_dataset
    views = scene.views
    gt = {level: [np.load(scene_dir / "gt" / f"{Path(name).stem}.npz")[level] for name in dataset.image_filenames]
          for level in ("coarse", "fine")}
    labels = {level: oracle_labels(scene.model, dataset.cameras, gt[level], int(max(m.max() for m in gt[level])) + 1)
              for level in ("coarse", "fine")}
    levels, ious, bious = [], [], []
    for prompt in prompts:
        click_gt = np.load(scene_dir / "gt" / f"{Path(prompt.image).stem}.npz")[prompt.level]
        segment = int(click_gt[int(prompt.xy[1]), int(prompt.xy[0])])
        selection = labels[prompt.level] == segment
        prompt_ious, prompt_bious = [], []
        for target in prompt.targets:
            view = views.get(target.image)
            pred = selection_mask(scene.model, selection, full_resolution_camera(view.camera, view.full_size))
            truth = read_mask_png(target.mask)
            prompt_ious.append(mask_iou(pred, truth))
            prompt_bious.append(boundary_iou(pred, truth))
        levels.append(prompt.level)
        ious.append(float(np.mean(prompt_ious)))
        bious.append(float(np.mean(prompt_bious)))
    return summarize(levels, ious, bious)


def mask_coverage(scene_dir: Path, image_filenames: Sequence[Path]):
    """``lift_labels``' coverage from the dataset's mask files (a loaded run's datamanager holds no id maps)."""
    from clickgs_ns.io.id_maps import read_id_maps

    maps = [torch.from_numpy(np.stack(read_id_maps(scene_dir / "clickgs_masks" / f"{Path(name).stem}.npz"), -1))
            for name in image_filenames]
    return lambda indices: torch.stack([maps[i] for i in indices.tolist()]) >= 0


def evaluate_run(config: Path, scene_dir: Path, relabel: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """``clickgs eval`` on the scene's prompts; with ``relabel``, the run's labels are first recomputed with those
    ``labelling`` settings ({"method": "nearest_feature"}: the paper's rule, each Gaussian's nearest candidate)."""
    from clickgs_ns.app.api import load
    from clickgs_ns.segment.evaluate import evaluate_prompts, load_prompts

    scene = load(config)
    if relabel:
        labelling = scene.model.config.labelling
        for name, value in relabel.items():
            setattr(labelling, name, value)
        if labelling.method == "nearest_feature":
            scene.model.update_labels()
        else:
            dataset = scene.run.datamanager.train_dataset
            scene.model.lift_labels(dataset.cameras, mask_coverage(scene_dir, dataset.image_filenames))
        scene.refresh()
    prompts_path = scene_dir / "prompts.json"
    prompts = load_prompts(prompts_path)
    report = evaluate_prompts(scene, prompts, prompts_path)
    segments = scene.segmentation("coarse").labels
    return {"summary": report["summary"], "convergence": report["convergence"], "scene": scene, "prompts": prompts,
            "num_gaussians": scene.num_gaussians, "segmented": float((segments >= 0).float().mean()),
            "candidates": (int(scene.model.coarse_candidates.shape[0]), int(scene.model.fine_candidates.shape[0]))}


def row(name: str, result: Dict[str, object], seconds: Optional[float]) -> str:
    summary, convergence = result["summary"], result["convergence"]
    c, f = summary["coarse"], summary["fine"]  # type: ignore[index]
    cc, cf = result["candidates"]  # type: ignore[misc]
    time_text = f"{seconds / 60:6.1f}" if seconds is not None else "     -"
    return (f"{name:<42} | {c['mIoU']:.3f} {c['mBIoU']:.3f} | {f['mIoU']:.3f} {f['mBIoU']:.3f} | "
            f"{convergence['coarse']:.2f} {convergence['fine']:.2f} | {cc:>3}/{cf:<3} | {time_text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_accuracy_work"))
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.0], help="mask-noise levels, last = noisy")
    parser.add_argument("--rgb-steps", type=int, default=3000)
    parser.add_argument("--feature-steps", type=int, default=500)
    parser.add_argument("--gfl-start", type=int, default=150)
    parser.add_argument("--gfl-every", type=int, default=50)
    parser.add_argument("--pixels", type=int, default=2048, help="sampled pixels per feature step")
    parser.add_argument("--skip-ablations", action="store_true", help="only the GFL on/off runs")
    parser.add_argument("--scene-segments", type=float, default=0.5,
                        help="one more run on the noisiest masks with SAM's whole-scene segment in this share of the "
                             "views (SynthConfig.scene_segment_prob); 0 = no such run")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from clickgs_ns.data.synth import generate_scene, room_config

    scenes: Dict[float, Path] = {}
    for noise in args.noise:
        scene_dir = args.work / ("room_noise" + f"{noise:g}".replace(".", ""))  # no dot: nerfstudio names runs by stem
        if not (scene_dir / "prompts.json").exists():
            generate_scene(room_config(seed=args.seed, mask_noise=noise), scene_dir)
        scenes[noise] = scene_dir
    noisy = args.noise[-1]
    scene_variant = None
    if args.scene_segments > 0:  # the same images, and the noisiest masks with a whole-scene segment added
        scene_variant = args.work / (scenes[noisy].name + "_scene" + f"{args.scene_segments:g}".replace(".", ""))
        if not (scene_variant / "prompts.json").exists():
            generate_scene(room_config(seed=args.seed, mask_noise=noisy, scene_segment_prob=args.scene_segments),
                           scene_variant)
    outputs = args.work / "runs"
    print(f"# bench_accuracy: room scenes (seed {args.seed}), noise {args.noise}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; RGB stage {args.rgb_steps} steps from seed points, feature stage "
          f"{args.feature_steps} steps (GFL from {args.gfl_start} every {args.gfl_every}, {args.pixels} pixels)",
          flush=True)

    splat = ns_train(scenes[noisy], outputs, "rgb", ["--pipeline.model.rgb-stage-steps", str(args.rgb_steps),
                                                     "--pipeline.model.feature-stage-steps", "0"],
                     args.work / "rgb.log")
    checkpoint = last_checkpoint(splat)
    print(f"# RGB stage: {run_seconds(splat) / 60:.1f} min", flush=True)
    common = ["--pipeline.model.init-checkpoint", str(checkpoint),
              "--pipeline.model.feature-stage-steps", str(args.feature_steps),
              "--pipeline.model.gfl.start-step", str(args.gfl_start),
              "--pipeline.model.gfl.update-every", str(args.gfl_every),
              "--pipeline.model.losses.num-sampled-pixels", str(args.pixels)]
    no_merge = ["--pipeline.model.labelling.merge-cosine", "2.0"]
    paper_loss = ["--pipeline.model.losses.negative-normalisation", "negative_pairs"]
    nearest = {"method": "nearest_feature"}
    all_pixels = {"confident_cosine": 0.75}
    # (row, scene, training run, its flags, relabelling of that run: None = as trained)
    runs: List[Tuple[str, Path, str, List[str], Optional[Dict[str, object]]]] = []
    for noise in args.noise:
        tag = f"{noise:g}".replace(".", "")
        runs.append((f"noise {noise:g}, GFL on", scenes[noise], f"noise{tag}_gfl", [], None))
        runs.append((f"noise {noise:g}, GFL off", scenes[noise], f"noise{tag}_nogfl",
                     ["--pipeline.model.gfl.enabled", "False"], None))
    tag = f"noise{noisy:g}".replace(".", "")
    if scene_variant is not None:
        runs.append((f"+ whole-scene segments in {args.scene_segments:.0%} of views", scene_variant,
                     f"{tag}_gfl_scene{args.scene_segments:g}".replace(".", ""), [], None))
    if not args.skip_ablations:
        runs += [
            (f"- candidate merging off", scenes[noisy], f"{tag}_gfl_nomerge", no_merge, None),
            (f"- balanced negatives off (paper's mean)", scenes[noisy], f"{tag}_gfl_paperloss", paper_loss, None),
            (f"- confident pixels off (all pixels vote)", scenes[noisy], f"{tag}_gfl", [], all_pixels),
            (f"- view vote off (nearest-feature labels)", scenes[noisy], f"{tag}_gfl", [], nearest),
            (f"- all departures off (the paper)", scenes[noisy], f"{tag}_gfl_paper", no_merge + paper_loss, nearest),
        ]

    print(f"{'run':<42} | coarse mIoU mBIoU | fine mIoU mBIoU | converged c/f | cands | train min", flush=True)
    results = {}
    for name, scene, run_name, extra, relabel in runs:
        config = ns_train(scene, outputs, run_name, common + extra, args.work / f"{run_name}.log")
        result = evaluate_run(config, scene, relabel)
        results[name] = result
        print(row(name, result, None if relabel else run_seconds(config)), flush=True)

    main_run = results[f"noise {noisy:g}, GFL on"]
    oracle = score_oracle(main_run["scene"], main_run["prompts"], scenes[noisy] / "prompts.json", scenes[noisy])
    c, f = oracle["coarse"], oracle["fine"]
    print(f"{'oracle (same splat, ground-truth labels)':<42} | {c['mIoU']:.3f} {c['mBIoU']:.3f} | "
          f"{f['mIoU']:.3f} {f['mBIoU']:.3f} |", flush=True)
    print(f"# {main_run['num_gaussians']} Gaussians; segment everything (coarse) labels "
          f"{100 * main_run['segmented']:.1f}% of them; "
          f"total {((time.perf_counter() - started) / 60):.1f} min", flush=True)
    summary = main_run["summary"]
    print(f"accuracy: coarse mIoU {summary['coarse']['mIoU']:.3f}, fine mIoU {summary['fine']['mIoU']:.3f} "
          f"(noisy masks, GFL on); oracle {c['mIoU']:.3f} / {f['mIoU']:.3f}")


if __name__ == "__main__":
    main()
