"""Click accuracy end to end, the way a user gets it, next to the oracle bound of the same splat.

1. Scenes: the "room" family of ``clickgs synth`` (textured floor and walls, 7 objects with 17 parts, thin legs and
   poles, occlusions, 40 views of which 4 are held out), once per mask-noise level (same seed: same images, only
   the SAM-like masks differ; floor and wall segments change from view to view at every level).
2. The splat: ``ns-train click-gaussian`` from the dataset's seed points through the RGB stage (densified,
   fuzzy, partly hidden Gaussians, as real splats are). Trained once, shared by every run below.
3. Feature stage: ``ns-train click-gaussian --pipeline.model.init-checkpoint`` of that splat, per noise level,
   GFL on and off; on the noisiest masks also with SAM's whole-scene segment added to half the views
   (``--scene-segments``), and with each departure from the paper turned off (candidate merging, the balanced
   negatives; labels by nearest feature instead of the view vote, which is a relabelling of the same run; clicks by
   the best feature match alone, without the clicked pixel's say or the weak-candidate rule, a rescoring of it).
4. Scoring: ``clickgs eval``'s code on the scene's prompts.json (clicks in training views, targets in the held-out
   views only): mIoU and mBIoU per level; the convergence figure (opacity-weighted share of Gaussians whose feature
   has cos > 0.9 to its nearest candidate); and the oracle: every Gaussian labelled with the ground-truth segment
   that receives most of its rendered weight over the training views, clicked through those labels.

Usage: python benchmarks/bench_accuracy.py [--work DIR] [--rgb-steps 3000] [--feature-steps 1000] [--noise 0.5 1.0]
       python benchmarks/bench_accuracy.py --set dev|test [--work DIR] [--rgb-steps ...] [--feature-steps ...]

``--set dev`` / ``--set test`` instead runs every scene of that split of the synthetic test set
(``clickgs_ns.synth.test_set_configs``: room, garden and clutter families, 3 to 15 objects, small objects,
thin parts, both mask-noise models, prompts on every visible part; the dev split is the one to choose defaults on,
the test split the one to report), each through its own RGB splat and one feature run with the defaults (GFL on),
scored with ``clickgs eval``'s code next to the oracle of the same splat. It prints per scene coarse and fine mIoU
next to the oracle's, mBIoU, the candidate count per level and the selected-to-true area ratio (median, largest),
then per prompt IoU and area ratio next to the oracle's; then the mean over the scenes and the worst scene
(lowest mIoU) of each level, each next to its oracle, the largest shortfall from the oracle, and the area ratios
over all prompts; every figure also goes to ``WORK/set_SPLIT.json``. Its last line reads
``accuracy SPLIT: coarse mean 0.NNN (oracle 0.NNN), worst 0.NNN (oracle 0.NNN, SCENE); fine mean ...; area ratio
max N.NN``.
Reruns reuse what ``--work`` already holds (scenes, splats, runs) only where it was made by the same code and flags:
each folder is named ``NAME_KEY``, KEY (``benchmarks/cache.py``) a hash of the code that makes it, of the installed
versions of Python, torch, nerfstudio, gsplat and numpy, and of every setting of that artefact (the scene's
``SynthConfig``; the ns-train flags; the keys of the scene and splat it is made from), and holds ``cache_key.json``,
written last; any other folder is recomputed. The code of a scene and of an RGB-stage splat is every .py file under
clickgs_ns/ that training runs (``cache.TRAINING_SOURCES``), method_configs/ and pyproject.toml, without the
functions only the feature stage calls (``cache.FEATURE_STAGE_FUNCTIONS``: GFL, the feature losses, label
lifting); that of a feature run is all of it. So a change to GFL, the losses or the lifting retrains the feature
runs from the cached splats, and one to the selection or the scoring retrains nothing.
``# cache:`` lines say what was reused and what recomputed, with its key. ``--fresh``
starts over. ``--labelling NAME=VALUE ...`` labels every feature run with those ``LabellingConfig`` settings on
top of the defaults (each run's own options win): they key the labels, not the runs, so the cached runs are
relabelled in place by ``clickgs lift-labels`` (and relabelled back by a run without them), the summary lines name
them, and a ``--set`` report goes to ``set_SPLIT_labelling-HASH.json``. Compare label settings this way on the dev
split; the defaults are chosen there. The last line reads
``accuracy: coarse mIoU 0.NNN, fine mIoU 0.NNN (noisy masks, GFL on); oracle 0.NNN / 0.NNN``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import (NS_TRAIN_FLAGS, CodeKeys, check_checkout_unchanged, code_keys, environment, is_cached,  # noqa: E402
                   labelling_note, lift_labels_stage, mark_cached, parse_labelling, run_key, settings_fingerprint)

VENV_BIN = Path(sys.executable).parent


class AblationRow(NamedTuple):
    """One row of the room scenes' table: a feature run of ``scene`` (named ``run_name``, trained with ``flags`` on
    top of the common ones; rows with the same scene and name share it), scored as trained or after relabelling
    with ``relabel`` (``labelling`` settings) and with clicks by ``selection`` (``SelectionConfig`` settings)."""

    name: str
    scene: Path
    run_name: str
    flags: List[str]
    relabel: Optional[Dict[str, object]] = None
    selection: Optional[Dict[str, object]] = None


def cache_note(reused: bool, what: str, path: Path, key: str) -> None:
    print(f"# cache: {'reused    ' if reused else 'recomputed'} {what:<24} key {key}  {path}", flush=True)


def make_scene(work: Path, name: str, config, code_fp: str, env: Dict[str, str]) -> Tuple[Path, str]:
    """``generate_scene(config)`` into ``work/NAME_KEY`` unless that folder holds the finished scene of KEY (code,
    ``config``, ``env``); returns the folder and KEY. ``name`` has no dot: nerfstudio names runs by the data's stem."""
    from clickgs_ns.synth import generate_scene

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
             inputs: Dict[str, object], init_checkpoint: Optional[Path] = None, labels_fp: Optional[str] = None,
             labelling: Optional[Dict[str, str]] = None) -> Tuple[Path, str]:
    """Run ``ns-train click-gaussian`` (CPU) as the run ``NAME_KEY`` unless that run finished (its last checkpoint,
    DONE and its cache key file exist); returns its config.yml and KEY. KEY hashes the code ``code_fp``, the flags
    (``NS_TRAIN_FLAGS`` and ``args``) and ``inputs``: the keys of the dataset ``data`` and of the run that wrote
    ``init_checkpoint``, and the environment; of the paths only ``init_checkpoint``'s below ``output_dir`` (its
    run's folder, named by that run's key, and its step). Its log: ``log_dir/NAME_KEY.log``. With ``labels_fp``
    (a feature run), the labels saved in the run are those that code lifts (``cache.lift_labels_stage``), with the
    ``labelling`` settings (``--labelling``) on top of the defaults (the run's own labelling options in ``args``
    win): they key the labels, not the run."""
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
    if not reused:
        train_run(command_for(data, output_dir, run_name, args, init_checkpoint), run_dir, log_dir / f"{run_name}.log")
        mark_cached(run_dir, key, code_fp, flags)
    if labels_fp is not None:
        seconds, labels_reused = lift_labels_stage(run_dir, config, key, labels_fp, args, not reused,
                                                   log_dir / f"{run_name}_labels.log", labelling)
        if reused or labelling:  # a run trained just now lifted its labels at its end (with the defaults)
            how = "reused    " if labels_reused else f"relabelled by clickgs lift-labels in {seconds:.0f} s:"
            print(f"# cache: {how} labels of run {name} (labels code {labels_fp[:12]})", flush=True)
    return config, key


def command_for(data: Path, output_dir: Path, run_name: str, args: Sequence[str],
                init_checkpoint: Optional[Path]) -> List[str]:
    """The ``ns-train click-gaussian`` command of the run ``run_name``."""
    init = ["--pipeline.model.init-checkpoint", str(init_checkpoint)] if init_checkpoint is not None else []
    return [str(VENV_BIN / "ns-train"), "click-gaussian", "--data", str(data), "--output-dir", str(output_dir),
            "--timestamp", run_name, *NS_TRAIN_FLAGS, *init, *args]


def train_run(command: Sequence[str], run_dir: Path, log: Path) -> None:
    """Run ``command`` (ns-train) into ``run_dir`` afresh, its output in ``log``; ``run_dir/DONE`` holds its seconds."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"ns-train failed ({code}); see {log}")
    (run_dir / "DONE").write_text(f"{time.perf_counter() - started:.1f}\n")


def run_seconds(config: Path) -> float:
    return float((config.parent / "DONE").read_text())


def last_checkpoint(config: Path) -> Path:
    return sorted((config.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]


def oracle_labels(model, cameras, gt_maps: List[np.ndarray], num_segments: int) -> torch.Tensor:
    """Each Gaussian's ground-truth segment by rendered weight over ``cameras`` by the rules of ``lift_labels`` (-1:
    none or unseen; a hardly seen Gaussian takes its seen neighbours' segment)."""
    from clickgs_ns.method.lifting import add_votes, hardly_seen, nearest_seen, neighbour_labels, vote_labels
    from clickgs_ns.method.model import views_by_size

    votes = None
    for batch in views_by_size(cameras, 4):
        maps = torch.stack([torch.from_numpy(gt_maps[i]).long() for i in batch.tolist()])
        maps = torch.where(maps < 0, num_segments, maps)  # background -> "none"
        batch_votes = model.label_votes(cameras[batch], maps, num_segments + 1)
        votes = add_votes(votes, batch_votes)
    labelling = model.config.labelling
    hidden = hardly_seen(votes, 0, num_segments + 1, model.unoccluded_weights(cameras), labelling.min_visibility)
    neighbours = nearest_seen(model.means, hidden, labelling.hidden_neighbours)
    return neighbour_labels(vote_labels(votes, 0, num_segments + 1, labelling.min_weight), hidden, neighbours)


def score_oracle(scene, prompts, prompts_path: Path, scene_dir: Path) -> Dict[str, Dict[str, float]]:
    """mIoU / mBIoU per level of clicks through the oracle labels (the best any per-Gaussian labelling does)."""
    from clickgs_ns.segment.evaluate import summarize

    records = oracle_prompt_scores(scene, prompts, scene_dir)
    return summarize([r["level"] for r in records], [r["iou"] for r in records], [r["biou"] for r in records])


def oracle_prompt_scores(scene, prompts, scene_dir: Path) -> List[Dict[str, object]]:
    """Per prompt, the click through the oracle labels: {"level", "iou", "biou", "area_ratio"} (means over its
    targets; area ratio: selected pixels over ground-truth pixels summed over its targets, as ``clickgs eval``)."""
    from clickgs_ns.segment.evaluate import boundary_iou, mask_iou, read_mask_png
    from clickgs_ns.segment.selection import selection_mask
    from clickgs_ns.segment.views import full_resolution_camera

    dataset = scene.run.datamanager.train_dataset
    views = scene.views
    gt = {level: [np.load(scene_dir / "gt" / f"{Path(name).stem}.npz")[level] for name in dataset.image_filenames]
          for level in ("coarse", "fine")}
    labels = {level: oracle_labels(scene.model, dataset.cameras, gt[level], int(max(m.max() for m in gt[level])) + 1)
              for level in ("coarse", "fine")}
    records: List[Dict[str, object]] = []
    for prompt in prompts:
        click_gt = np.load(scene_dir / "gt" / f"{Path(prompt.image).stem}.npz")[prompt.level]
        segment = int(click_gt[int(prompt.xy[1]), int(prompt.xy[0])])
        selection = labels[prompt.level] == segment
        prompt_ious, prompt_bious, pred_pixels, gt_pixels = [], [], 0, 0
        for target in prompt.targets:
            view = views.get(target.image)
            pred = selection_mask(scene.model, selection, full_resolution_camera(view.camera, view.full_size))
            truth = read_mask_png(target.mask)
            prompt_ious.append(mask_iou(pred, truth))
            prompt_bious.append(boundary_iou(pred, truth))
            pred_pixels, gt_pixels = pred_pixels + int(pred.sum()), gt_pixels + int(truth.sum())
        records.append({"level": prompt.level, "iou": float(np.mean(prompt_ious)),
                        "biou": float(np.mean(prompt_bious)), "area_ratio": pred_pixels / max(1, gt_pixels)})
    return records


def mask_ids(scene_dir: Path, image_filenames: Sequence[Path]):
    """``lift_labels``' SAM id maps from the dataset's mask files (a loaded run's datamanager holds none)."""
    from clickgs_ns.io.id_maps import read_id_maps

    maps = [torch.from_numpy(np.stack(read_id_maps(scene_dir / "clickgs_masks" / f"{Path(name).stem}.npz"), -1))
            for name in image_filenames]
    return lambda indices: torch.stack([maps[i] for i in indices.tolist()]).long()


def evaluate_run(config: Path, scene_dir: Path, relabel: Optional[Dict[str, object]] = None,
                 selection: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """``clickgs eval`` on the scene's prompts; with ``relabel``, the run's labels are first recomputed with those
    ``labelling`` settings ({"method": "nearest_feature"}: the paper's rule, each Gaussian's nearest candidate);
    ``selection``: ``SelectionConfig`` settings of the clicks (default: its defaults)."""
    from clickgs_ns.app.api import load
    from clickgs_ns.segment.evaluate import evaluate_prompts, load_prompts
    from clickgs_ns.segment.selection import SelectionConfig

    scene = load(config, SelectionConfig(**(selection or {})))
    if relabel:
        labelling = scene.model.config.labelling
        for name, value in relabel.items():
            setattr(labelling, name, value)
        if labelling.method == "nearest_feature":
            scene.model.update_labels()
        else:
            dataset = scene.run.datamanager.train_dataset
            scene.model.lift_labels(dataset.cameras, mask_ids(scene_dir, dataset.image_filenames))
        scene.refresh()
    prompts_path = scene_dir / "prompts.json"
    prompts = load_prompts(prompts_path)
    report = evaluate_prompts(scene, prompts, prompts_path)
    segments = scene.segmentation("coarse").labels
    return {"summary": report["summary"], "convergence": report["convergence"], "scene": scene, "prompts": prompts,
            "num_gaussians": scene.num_gaussians, "segmented": float((segments >= 0).float().mean()),
            "candidates": (int(scene.model.coarse_candidates.shape[0]), int(scene.model.fine_candidates.shape[0])),
            "records": report["prompts"]}


def row(name: str, result: Dict[str, object], seconds: Optional[float]) -> str:
    summary, convergence = result["summary"], result["convergence"]
    c, f = summary["coarse"], summary["fine"]  # type: ignore[index]
    cc, cf = result["candidates"]  # type: ignore[misc]
    time_text = f"{seconds / 60:6.1f}" if seconds is not None else "     -"
    return (f"{name:<42} | {c['mIoU']:.3f} {c['mBIoU']:.3f} | {f['mIoU']:.3f} {f['mBIoU']:.3f} | "
            f"{convergence['coarse']:.2f} {convergence['fine']:.2f} | {cc:>3}/{cf:<3} | {time_text}")


# ------------------------------------------------------------------------------------------------ --set dev|test
SET_LEVELS = ("coarse", "fine")
AREA_RATIO_LIMIT = 1.3
"""Selected-to-true area ratio above which a prompt counts as over-selecting (issue 15's bound)."""


def scene_record(name: str, result: Dict[str, Any], oracle_records: Sequence[Dict[str, Any]],
                 seconds: Dict[str, float]) -> Dict[str, Any]:
    """One scene of a ``--set`` run as JSON-ready data: per level the method's and the oracle's summary
    ({"num_prompts", "mIoU", "mBIoU"}), the candidate count, and per prompt its segment, IoU, boundary IoU, area
    ratio and selected Gaussians next to the oracle's IoU and area ratio.

    Args:
        result: ``evaluate_run``'s; oracle_records: ``oracle_prompt_scores``' for the same prompts, in order.
        seconds: {"rgb", "feature"} training times.
    """
    from clickgs_ns.segment.evaluate import summarize

    records = result["records"]
    oracle = summarize([r["level"] for r in oracle_records], [r["iou"] for r in oracle_records],
                       [r["biou"] for r in oracle_records])
    cc, cf = result["candidates"]
    prompts = [{"level": r["level"], "segment": r.get("segment", ""), "iou": r["iou"], "biou": r["biou"],
                "area_ratio": r["area_ratio"], "num_selected": r["num_selected"], "oracle_iou": o["iou"],
                "oracle_area_ratio": o["area_ratio"]}
               for r, o in zip(records, oracle_records)]
    return {"name": name, "summary": {level: result["summary"][level] for level in SET_LEVELS},
            "oracle": {level: oracle[level] for level in SET_LEVELS}, "candidates": {"coarse": cc, "fine": cf},
            "num_gaussians": result["num_gaussians"], "seconds": seconds, "prompts": prompts}


SET_HEADER = (f"{'scene':<28} | coarse mIoU (oracle) mBIoU | fine mIoU (oracle) mBIoU | cands c/f | "
              f"area ratio med max | train min")


def _f(value: Optional[float], digits: int = 3) -> str:
    return "  nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def set_scene_lines(record: Dict[str, Any]) -> List[str]:
    """The table row of one ``scene_record`` and, below it, a line per prompt."""
    summary, oracle, cands = record["summary"], record["oracle"], record["candidates"]
    ratios = [p["area_ratio"] for p in record["prompts"]]
    minutes = sum(record["seconds"].values()) / 60
    ratio_text = f"{_f(float(np.median(ratios)), 2)} {_f(max(ratios), 2)}" if ratios else "   -    -"
    lines = [f"{record['name']:<28} | {_f(summary['coarse']['mIoU'])} ({_f(oracle['coarse']['mIoU'])})      "
             f"{_f(summary['coarse']['mBIoU'])} | {_f(summary['fine']['mIoU'])} ({_f(oracle['fine']['mIoU'])})    "
             f"{_f(summary['fine']['mBIoU'])} | {cands['coarse']:>4}/{cands['fine']:<4} | {ratio_text:>18} | "
             f"{minutes:6.1f}"]
    for p in record["prompts"]:
        flag = "  over" if p["area_ratio"] > AREA_RATIO_LIMIT else ""
        lines.append(f"    {p['level']:<6} {p['segment']:<26} IoU {_f(p['iou'])} (oracle {_f(p['oracle_iou'])})  "
                     f"area ratio {_f(p['area_ratio'], 2)} (oracle {_f(p['oracle_area_ratio'], 2)})  "
                     f"{p['num_selected']:>7} selected{flag}")
    return lines


def set_summary(records: Sequence[Dict[str, Any]], split: str) -> Tuple[List[str], Dict[str, Any]]:
    """The summary of a ``--set`` run over its ``scene_record``s: per level the mean mIoU over the scenes (scenes
    without a prompt of that level left out) and the worst scene (lowest mIoU), each next to the oracle's; the
    scene furthest below its oracle; the area ratios over every prompt; the candidate counts. Returns the lines to
    print (the last one the benchmark's last line) and the same figures as data."""
    lines: List[str] = []
    figures: Dict[str, Any] = {"split": split, "scenes": len(records)}
    last = []
    for level in SET_LEVELS:
        scored = [r for r in records if math.isfinite(r["summary"][level]["mIoU"])]
        if not scored:
            lines.append(f"# {level}: no scene has a prompt of this level")
            last.append(f"{level} no prompts")
            continue
        miou = np.array([r["summary"][level]["mIoU"] for r in scored])
        oracle = np.array([r["oracle"][level]["mIoU"] for r in scored])
        worst = int(np.argmin(miou))
        gap = int(np.nanargmax(oracle - miou)) if np.isfinite(oracle - miou).any() else worst
        level_figures = {
            "mean": float(miou.mean()), "oracle_mean": float(np.nanmean(oracle)),
            "worst": float(miou[worst]), "worst_oracle": float(oracle[worst]), "worst_scene": scored[worst]["name"],
            "largest_shortfall": float(oracle[gap] - miou[gap]), "largest_shortfall_scene": scored[gap]["name"],
            "candidates": [int(r["candidates"][level]) for r in records],
        }
        figures[level] = level_figures
        cands = level_figures["candidates"]
        lines.append(f"# {level}: mean mIoU {_f(miou.mean())} (oracle {_f(float(np.nanmean(oracle)))}) over "
                     f"{len(scored)} scenes; worst {_f(miou[worst])} (oracle {_f(oracle[worst])}) "
                     f"{scored[worst]['name']}; furthest below its oracle {scored[gap]['name']} by "
                     f"{_f(oracle[gap] - miou[gap])}; candidates {min(cands)}-{max(cands)} "
                     f"(mean {np.mean(cands):.1f})")
        last.append(f"{level} mean {_f(miou.mean())} (oracle {_f(float(np.nanmean(oracle)))}), worst "
                    f"{_f(miou[worst])} (oracle {_f(oracle[worst])}, {scored[worst]['name']})")
    ratios = [(p["area_ratio"], p["oracle_area_ratio"], r["name"], p["level"], p["segment"])
              for r in records for p in r["prompts"]]
    if ratios:
        values = np.array([ratio for ratio, *_ in ratios], dtype=float)
        largest = ratios[int(np.argmax(values))]
        over = int((values > AREA_RATIO_LIMIT).sum())
        figures["area_ratio"] = {"median": float(np.median(values)), "max": float(values.max()), "over": over,
                                 "prompts": len(values), "max_prompt": list(largest[2:])}
        lines.append(f"# area ratio (selected / true pixels) over {len(values)} prompts: median "
                     f"{_f(float(np.median(values)), 2)}, max {_f(float(values.max()), 2)} ({largest[2]} "
                     f"{largest[3]} {largest[4]}; oracle {_f(largest[1], 2)}), {over} above {AREA_RATIO_LIMIT}")
        last.append(f"area ratio max {_f(float(values.max()), 2)}")
    lines.append(f"accuracy {split}: " + "; ".join(last))
    return lines, figures


def chosen_scenes(scenes: List[Tuple[str, Any]], names: Optional[Sequence[str]]) -> List[Tuple[str, Any]]:
    """The ``scenes`` (name, config) whose names start with one of ``names`` (all of them without ``names``); a name
    that matches none is an error that lists the split's names."""
    if not names:
        return scenes
    unknown = [name for name in names if not any(scene.startswith(name) for scene, _ in scenes)]
    if unknown:
        raise SystemExit(f"--scenes: no scene of the split starts with {', '.join(unknown)}; the split's scenes: "
                         f"{', '.join(scene for scene, _ in scenes)}")
    return [(scene, config) for scene, config in scenes if any(scene.startswith(name) for name in names)]


def run_set(args: argparse.Namespace, codes: CodeKeys, env: Dict[str, str], started: float) -> None:
    """``--set dev|test``: every scene of that split through its own splat and one feature run (module doc)."""
    import gc

    from clickgs_ns.segment.evaluate import write_report
    from clickgs_ns.synth import test_set_configs

    every_scene = test_set_configs(args.scene_set)
    scenes = chosen_scenes(every_scene, args.scenes)
    whole = len(scenes) == len(every_scene)
    split = args.scene_set if whole else f"{args.scene_set} ({len(scenes)} of {len(every_scene)} scenes)"
    split += labelling_note(args.labelling)
    outputs = args.work / "runs"
    feature_flags = ["--pipeline.model.feature-stage-steps", str(args.feature_steps),
                     "--pipeline.model.gfl.start-step", str(args.gfl_start),
                     "--pipeline.model.gfl.update-every", str(args.gfl_every),
                     "--pipeline.model.losses.num-sampled-pixels", str(args.pixels)]
    print(f"# {args.scene_set} set: {len(scenes)} scenes ({', '.join(name for name, _ in scenes)})", flush=True)
    records: List[Dict[str, Any]] = []
    for name, config in scenes:
        scene_dir, scene_key = make_scene(args.work, f"{args.scene_set}_{name}", config, codes.rgb_stage, env)
        splat, splat_key = ns_train(scene_dir, outputs, "rgb",
                                    ["--pipeline.model.rgb-stage-steps", str(args.rgb_steps),
                                     "--pipeline.model.feature-stage-steps", "0"],
                                    args.work, codes.rgb_stage, {"data": scene_key, "environment": env})
        run, _ = ns_train(scene_dir, outputs, "gfl", feature_flags, args.work, codes.feature_stage,
                          {"data": scene_key, "init_checkpoint": splat_key, "environment": env},
                          init_checkpoint=last_checkpoint(splat), labels_fp=codes.labels, labelling=args.labelling)
        result = evaluate_run(run, scene_dir)
        oracle = oracle_prompt_scores(result["scene"], result["prompts"], scene_dir)
        record = scene_record(name, result, oracle, {"rgb": run_seconds(splat), "feature": run_seconds(run)})
        del result
        gc.collect()
        records.append(record)
        if len(records) == 1:
            print(SET_HEADER, flush=True)
        print("\n".join(set_scene_lines(record)), flush=True)
    lines, figures = set_summary(records, split)
    check_checkout_unchanged("the figures above")
    report_name = f"set_{args.scene_set}{'' if whole else '_part'}{labelling_suffix(args.labelling)}.json"
    report_path = args.work / report_name
    write_report({"summary": figures, "scenes": records}, report_path)  # JSON, NaN as null, atomically
    print(f"# figures in {report_path}; total {((time.perf_counter() - started) / 60):.1f} min", flush=True)
    print("\n".join(lines), flush=True)


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--set", dest="scene_set", choices=["dev", "test"], default=None,
                        help="run every scene of this split of the synthetic test set (synth.test_set_configs) "
                             "instead of the room scenes; --noise, --seed, --scene-segments and --skip-ablations "
                             "do not apply")
    parser.add_argument("--scenes", nargs="+", default=None, metavar="NAME",
                        help="with --set: only these scenes of the split (names as the split lists them, or a prefix "
                             "such as clutter09); the summary then covers these alone")
    parser.add_argument("--labelling", nargs="+", default=[], metavar="NAME=VALUE",
                        help="label every feature run with these LabellingConfig settings on top of the defaults "
                             "(e.g. coarse_merge_cosine=0.97; a run's own labelling options win): the cached runs "
                             "are relabelled, not retrained, and the summary names the settings; choose them on the "
                             "dev split only")
    return parser


def labelling_suffix(labelling: Dict[str, str]) -> str:
    """``_labelling-HASH`` for the report of a run with ``--labelling`` settings (none without), so that a variant
    does not overwrite the defaults' figures."""
    return f"_labelling-{settings_fingerprint(labelling)[:8]}" if labelling else ""


def main() -> None:
    args = build_parser().parse_args()
    args.labelling = parse_labelling(args.labelling)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from clickgs_ns.synth import room_config

    if args.scene_set is not None:
        print(f"# bench_accuracy: the {args.scene_set} set of synthetic scenes; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; RGB stage {args.rgb_steps} steps from seed points, feature stage "
              f"{args.feature_steps} steps (GFL from {args.gfl_start} every {args.gfl_every}, {args.pixels} pixels)",
              flush=True)
    else:
        print(f"# bench_accuracy: room scenes (seed {args.seed}), noise {args.noise}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; RGB stage {args.rgb_steps} steps from seed points, feature stage "
              f"{args.feature_steps} steps (GFL from {args.gfl_start} every {args.gfl_every}, {args.pixels} pixels)",
              flush=True)
    codes = code_keys()
    env = environment()
    print(f"# cache: code fingerprints {codes.rgb_stage[:12]} (scenes, RGB stage), {codes.feature_stage[:12]} "
          f"(feature runs), {codes.labels[:12]} (their labels); {', '.join(f'{k} {v}' for k, v in env.items())}",
          flush=True)
    if args.scene_set is not None:
        run_set(args, codes, env, started)
        return

    scenes: Dict[float, Path] = {}
    scene_keys: Dict[Path, str] = {}
    for noise in args.noise:
        scene_dir, scene_keys[scene_dir] = make_scene(args.work, "room_noise" + f"{noise:g}".replace(".", ""),
                                                      room_config(seed=args.seed, mask_noise=noise), codes.rgb_stage, env)
        scenes[noise] = scene_dir
    noisy = args.noise[-1]
    scene_variant = None
    if args.scene_segments > 0:  # the same images, and the noisiest masks with a whole-scene segment added
        scene_variant, scene_keys[scene_variant] = make_scene(
            args.work, ("room_noise" + f"{noisy:g}_scene{args.scene_segments:g}").replace(".", ""),
            room_config(seed=args.seed, mask_noise=noisy, scene_segment_prob=args.scene_segments), codes.rgb_stage, env)
    outputs = args.work / "runs"

    splat, splat_key = ns_train(scenes[noisy], outputs, "rgb",
                                ["--pipeline.model.rgb-stage-steps", str(args.rgb_steps),
                                 "--pipeline.model.feature-stage-steps", "0"],
                                args.work, codes.rgb_stage, {"data": scene_keys[scenes[noisy]], "environment": env})
    checkpoint = last_checkpoint(splat)
    print(f"# RGB stage: {run_seconds(splat) / 60:.1f} min", flush=True)
    common = ["--pipeline.model.feature-stage-steps", str(args.feature_steps),
              "--pipeline.model.gfl.start-step", str(args.gfl_start),
              "--pipeline.model.gfl.update-every", str(args.gfl_every),
              "--pipeline.model.losses.num-sampled-pixels", str(args.pixels)]
    no_merge = ["--pipeline.model.labelling.merge-cosine", "2.0",
                "--pipeline.model.labelling.coarse-merge-cosine", "2.0"]
    paper_loss = ["--pipeline.model.losses.negative-normalisation", "negative_pairs"]
    paper_fine_negatives = ["--pipeline.model.losses.cross-object-negative-weight", "0.1"]
    nearest = {"method": "nearest_feature"}
    all_pixels = {"confident_cosine": 0.75}
    paper_clicks = {"pixel_decides": False, "weak_segment_share": 0.0}  # the best feature match, confident labels
    runs: List[AblationRow] = []
    for noise in args.noise:
        tag = f"{noise:g}".replace(".", "")
        runs.append(AblationRow(f"noise {noise:g}, GFL on", scenes[noise], f"noise{tag}_gfl", []))
        runs.append(AblationRow(f"noise {noise:g}, GFL off", scenes[noise], f"noise{tag}_nogfl",
                                ["--pipeline.model.gfl.enabled", "False"]))
    tag = f"noise{noisy:g}".replace(".", "")
    if scene_variant is not None:
        runs.append(AblationRow(f"+ whole-scene segments in {args.scene_segments:.0%} of views", scene_variant,
                                f"{tag}_gfl_scene{args.scene_segments:g}".replace(".", ""), []))
    if not args.skip_ablations:
        runs += [
            AblationRow("- candidate merging off", scenes[noisy], f"{tag}_gfl_nomerge", no_merge),
            AblationRow("- balanced negatives off (paper's mean)", scenes[noisy], f"{tag}_gfl_paperloss", paper_loss),
            AblationRow("- fine negatives across objects at 0.1", scenes[noisy], f"{tag}_gfl_crossneg01",
                        paper_fine_negatives),
            AblationRow("- confident pixels off (all pixels vote)", scenes[noisy], f"{tag}_gfl", [], all_pixels),
            AblationRow("- view vote off (nearest-feature labels)", scenes[noisy], f"{tag}_gfl", [], nearest),
            AblationRow("- the pixel's say off (paper's clicks)", scenes[noisy], f"{tag}_gfl", [], None, paper_clicks),
            AblationRow("- all departures off (the paper)", scenes[noisy], f"{tag}_gfl_paper",
                        no_merge + paper_loss + paper_fine_negatives, nearest, paper_clicks),
        ]

    # every training run first (relabelled rows share theirs), so that the cache lines come before the table
    configs: Dict[Tuple[Path, str], Path] = {}
    for run in runs:
        if (run.scene, run.run_name) not in configs:
            configs[(run.scene, run.run_name)], _ = ns_train(
                run.scene, outputs, run.run_name, common + run.flags, args.work, codes.feature_stage,
                {"data": scene_keys[run.scene], "init_checkpoint": splat_key, "environment": env},
                init_checkpoint=checkpoint, labels_fp=codes.labels, labelling=args.labelling)

    print(f"{'run':<42} | coarse mIoU mBIoU | fine mIoU mBIoU | converged c/f | cands | train min", flush=True)
    results = {}
    for run in runs:
        config = configs[(run.scene, run.run_name)]
        result = evaluate_run(config, run.scene, run.relabel, run.selection)
        results[run.name] = result
        print(row(run.name, result, None if run.relabel or run.selection else run_seconds(config)), flush=True)

    main_run = results[f"noise {noisy:g}, GFL on"]
    oracle = score_oracle(main_run["scene"], main_run["prompts"], scenes[noisy] / "prompts.json", scenes[noisy])
    c, f = oracle["coarse"], oracle["fine"]
    print(f"{'oracle (same splat, ground-truth labels)':<42} | {c['mIoU']:.3f} {c['mBIoU']:.3f} | "
          f"{f['mIoU']:.3f} {f['mBIoU']:.3f} |", flush=True)
    print(f"# {main_run['num_gaussians']} Gaussians; segment everything (coarse) labels "
          f"{100 * main_run['segmented']:.1f}% of them; "
          f"total {((time.perf_counter() - started) / 60):.1f} min", flush=True)
    summary = main_run["summary"]
    check_checkout_unchanged("the figures above")
    print(f"accuracy{labelling_note(args.labelling)}: coarse mIoU {summary['coarse']['mIoU']:.3f}, fine mIoU "
          f"{summary['fine']['mIoU']:.3f} (noisy masks, GFL on); oracle {c['mIoU']:.3f} / {f['mIoU']:.3f}")


if __name__ == "__main__":
    main()
