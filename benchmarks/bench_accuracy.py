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
Reruns reuse what ``--work`` already holds (scenes, splat, runs) only where it was made by the same code and flags:
each folder is named ``NAME_KEY``, KEY (``benchmarks/cache.py``) a hash of the content of every .py file under
clickgs_ns/ and method_configs/, this script, cache.py and pyproject.toml, of the installed versions of Python,
torch, nerfstudio, gsplat and numpy, and of every setting of that artefact (the scene's ``SynthConfig``; the
ns-train flags; the keys of the scene and splat it is made from), and holds ``cache_key.json``, written last; any
other folder is recomputed. ``# cache:`` lines say what was reused and what recomputed, with its key. ``--fresh``
starts over. The last line reads
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import PROJECT_ROOT, code_fingerprint, environment, is_cached, mark_cached, run_key  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SOURCES = [PROJECT_ROOT / "clickgs_ns", PROJECT_ROOT / "method_configs", Path(__file__).resolve(),
           Path(__file__).resolve().parent / "cache.py", PROJECT_ROOT / "pyproject.toml"]
"""Everything whose content can change a scene, the splat or a feature run (folders: their .py files)."""
NS_TRAIN_FLAGS = ["--machine.device-type", "cpu", "--vis", "tensorboard", "--pipeline.model.num-downscales", "0",
                  "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
                  "--steps-per-save", "1000000"]
"""Flags of every ``ns-train`` run here, before its own."""


def cache_note(reused: bool, what: str, path: Path, key: str) -> None:
    print(f"# cache: {'reused    ' if reused else 'recomputed'} {what:<24} key {key}  {path}", flush=True)


def make_scene(work: Path, name: str, config, code_fp: str, env: Dict[str, str]) -> Tuple[Path, str]:
    """``generate_scene(config)`` into ``work/NAME_KEY`` unless that folder holds the finished scene of KEY (code,
    ``config``, ``env``); returns the folder and KEY. ``name`` has no dot: nerfstudio names runs by the data's stem."""
    from clickgs_ns.data.synth import generate_scene

    flags = {"generate_scene": config, "environment": env}
    key = run_key(code_fp, flags)
    scene_dir = work / f"{name}_{key}"
    reused = is_cached(scene_dir, key) and (scene_dir / "prompts.json").exists()
    cache_note(reused, f"scene {name}", scene_dir, key)
    if not reused:
        if scene_dir.exists():  # an unfinished one: generate_scene leaves files it does not write
            shutil.rmtree(scene_dir)
        generate_scene(config, scene_dir)
        mark_cached(scene_dir, key, code_fp, flags)
    return scene_dir, key


def ns_train(data: Path, output_dir: Path, name: str, args: Sequence[str], log_dir: Path, code_fp: str,
             inputs: Dict[str, object], init_checkpoint: Optional[Path] = None) -> Tuple[Path, str]:
    """Run ``ns-train click-gaussian`` (CPU) as the run ``NAME_KEY`` unless that run finished (its last checkpoint,
    DONE and its cache key file exist); returns its config.yml and KEY. KEY hashes the code ``code_fp``, the flags
    (``NS_TRAIN_FLAGS`` and ``args``) and ``inputs``: the keys of the dataset ``data`` and of the run that wrote
    ``init_checkpoint``, and the environment; of the paths only ``init_checkpoint``'s below ``output_dir`` (its
    run's folder, named by that run's key, and its step). Its log: ``log_dir/NAME_KEY.log``."""
    flags: Dict[str, object] = {"ns_train": ["click-gaussian", *NS_TRAIN_FLAGS, *args], "inputs": inputs}
    if init_checkpoint is not None:  # its path below output_dir names its run (and that run's key) and step
        below = init_checkpoint.is_relative_to(output_dir)
        flags["init_checkpoint"] = init_checkpoint.relative_to(output_dir) if below else init_checkpoint
    key = run_key(code_fp, flags)
    run_name = f"{name}_{key}"
    run_dir = output_dir / data.name / "click-gaussian" / run_name
    config = run_dir / "config.yml"
    reused = (config.exists() and any((run_dir / "nerfstudio_models").glob("*.ckpt")) and (run_dir / "DONE").exists()
              and is_cached(run_dir, key))
    cache_note(reused, f"run {name}", run_dir, key)
    if reused:
        return config, key
    if run_dir.exists():
        shutil.rmtree(run_dir)
    init = ["--pipeline.model.init-checkpoint", str(init_checkpoint)] if init_checkpoint is not None else []
    command = [str(VENV_BIN / "ns-train"), "click-gaussian", "--data", str(data), "--output-dir", str(output_dir),
               "--timestamp", run_name, *NS_TRAIN_FLAGS, *init, *args]
    log = log_dir / f"{run_name}.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"ns-train failed ({code}); see {log}")
    (run_dir / "DONE").write_text(f"{time.perf_counter() - started:.1f}\n")
    mark_cached(run_dir, key, code_fp, flags)
    return config, key


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

    from clickgs_ns.data.synth import room_config

    print(f"# bench_accuracy: room scenes (seed {args.seed}), noise {args.noise}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; RGB stage {args.rgb_steps} steps from seed points, feature stage "
          f"{args.feature_steps} steps (GFL from {args.gfl_start} every {args.gfl_every}, {args.pixels} pixels)",
          flush=True)
    code_fp = code_fingerprint(SOURCES)
    env = environment()
    print(f"# cache: code fingerprint {code_fp[:12]} (clickgs_ns/ and method_configs/ .py files, this script, "
          f"cache.py, pyproject.toml); {', '.join(f'{k} {v}' for k, v in env.items())}", flush=True)

    scenes: Dict[float, Path] = {}
    scene_keys: Dict[Path, str] = {}
    for noise in args.noise:
        scene_dir, scene_keys[scene_dir] = make_scene(args.work, "room_noise" + f"{noise:g}".replace(".", ""),
                                                      room_config(seed=args.seed, mask_noise=noise), code_fp, env)
        scenes[noise] = scene_dir
    noisy = args.noise[-1]
    scene_variant = None
    if args.scene_segments > 0:  # the same images, and the noisiest masks with a whole-scene segment added
        scene_variant, scene_keys[scene_variant] = make_scene(
            args.work, ("room_noise" + f"{noisy:g}_scene{args.scene_segments:g}").replace(".", ""),
            room_config(seed=args.seed, mask_noise=noisy, scene_segment_prob=args.scene_segments), code_fp, env)
    outputs = args.work / "runs"

    splat, splat_key = ns_train(scenes[noisy], outputs, "rgb",
                                ["--pipeline.model.rgb-stage-steps", str(args.rgb_steps),
                                 "--pipeline.model.feature-stage-steps", "0"],
                                args.work, code_fp, {"data": scene_keys[scenes[noisy]], "environment": env})
    checkpoint = last_checkpoint(splat)
    print(f"# RGB stage: {run_seconds(splat) / 60:.1f} min", flush=True)
    common = ["--pipeline.model.feature-stage-steps", str(args.feature_steps),
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

    # every training run first (relabelled rows share theirs), so that the cache lines come before the table
    configs: Dict[Tuple[Path, str], Path] = {}
    for _, scene, run_name, extra, _ in runs:
        if (scene, run_name) not in configs:
            configs[(scene, run_name)], _ = ns_train(
                scene, outputs, run_name, common + extra, args.work, code_fp,
                {"data": scene_keys[scene], "init_checkpoint": splat_key, "environment": env},
                init_checkpoint=checkpoint)

    print(f"{'run':<42} | coarse mIoU mBIoU | fine mIoU mBIoU | converged c/f | cands | train min", flush=True)
    results = {}
    for name, scene, run_name, extra, relabel in runs:
        config = configs[(scene, run_name)]
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
