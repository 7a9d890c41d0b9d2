"""What SAM's working size costs in segments and boundary quality, on the real photos with ground-truth masks.

``clickgs masks`` runs SAM on each photo scaled down so that its longer side is at most ``--max-image-side``
(default 1024; a 12 MP photo, 4032 pixels wide, is worked on at a quarter of its size) and scales the id maps back
to the photo's size (nearest). The real captures in ``../shared/data/real`` are smaller than 1024 pixels, so the
default leaves them untouched; this script works them at smaller sides (256 on SPIn-NeRF's 1008-pixel photos is the
same factor, 3.9x, as 1024 on a 12 MP photo) through the code path of ``clickgs masks`` (``sam_masks._sam_id_maps``)
and compares each with the full-size masks against the ground-truth object mask, at the photo's full size:

- segments: distinct ids per image and level;
- best segment: the IoU and boundary IoU (``clickgs eval``'s metrics) of the single segment closest to the object,
  what one click on a perfect splat could select;
- object from segments: the union of the segments lying mostly (over half their pixels) inside the object, its
  IoU and boundary IoU, what the segment edges allow whatever the grouping;
- seconds per image (SAM and the id maps).

Model: MobileSAM (vit_t) with real weights (tests/sam_weights.py builds them, or --checkpoint), the generator
settings of ``benchmarks/bench_real.py`` (``--points-per-side 16``); every ``--stride``-th photo of each capture.
Its last line reads ``working size: SCENE SIDE best-segment BIoU 0.NNN (full 0.NNN), ...``.

Usage: python benchmarks/bench_working_size.py [--sides 0 512 256] [--stride 4] [--scenes dtu_scan37 spinnerf_1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from sam_weights import HOW_TO_SUPPLY, mobile_sam_checkpoint  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def segment_scores(ids: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """Scores of one [H, W] id map (-1 = no segment) against a [H, W] bool object mask (module doc)."""
    from clickgs_ns.segment.evaluate import boundary_iou, mask_iou

    labels = ids[ids >= 0]
    count = int(labels.max()) + 1 if labels.size else 0
    area = np.bincount(labels, minlength=count)
    inside = np.bincount(ids[gt & (ids >= 0)], minlength=count)
    union = area + int(gt.sum()) - inside
    best_mask = ids == int(np.argmax(inside / np.maximum(union, 1))) if count else np.zeros_like(gt)
    mostly_inside = np.flatnonzero(inside * 2 > area)
    from_segments = np.isin(ids, mostly_inside)
    return {"segments": float(np.count_nonzero(area)),
            "best_iou": mask_iou(best_mask, gt), "best_biou": boundary_iou(best_mask, gt),
            "union_iou": mask_iou(from_segments, gt), "union_biou": boundary_iou(from_segments, gt)}


def measure_scene(scene: Path, sides: List[int], stride: int, generator, rule) -> Dict[int, Dict[str, Dict[str, float]]]:
    """Per working side, per level: each score averaged over every ``stride``-th photo of ``scene``, and seconds."""
    from PIL import Image

    from clickgs_ns.data.sam_masks import _sam_id_maps, read_image  # the code path of `clickgs masks`

    photos = sorted((scene / "images").glob("*.jpg"))[::stride]
    scores: Dict[int, Dict[str, List[Dict[str, float]]]] = {side: {"coarse": [], "fine": []} for side in sides}
    seconds: Dict[int, float] = {side: 0.0 for side in sides}
    for photo in photos:
        _, image = read_image(photo)
        gt = np.asarray(Image.open(scene / "gt_masks" / f"{photo.stem}.png")) > 127
        for side in sides:
            start = time.perf_counter()
            coarse, fine, _ = _sam_id_maps(generator, image, rule, side)
            seconds[side] += time.perf_counter() - start
            scores[side]["coarse"].append(segment_scores(coarse, gt))
            scores[side]["fine"].append(segment_scores(fine, gt))
    return {side: {**{level: {key: float(np.mean([s[key] for s in per_image])) for key in per_image[0]}
                      for level, per_image in scores[side].items()},
                   "seconds": {"per_image": seconds[side] / len(photos), "photos": float(len(photos))}}
            for side in sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[0, 512, 256],
                        help="working sides to compare (0: the photo's full size, the reference)")
    parser.add_argument("--stride", type=int, default=4, help="every N-th photo of each capture")
    parser.add_argument("--scenes", nargs="+", default=["dtu_scan37", "spinnerf_1"])
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a MobileSAM mobile_sam.pt")
    args = parser.parse_args()
    if 0 not in args.sides:
        args.sides = [0, *args.sides]
    checkpoint = args.checkpoint or mobile_sam_checkpoint()
    if checkpoint is None:
        sys.exit(f"No MobileSAM weights: {HOW_TO_SUPPLY}")
    missing = [name for name in args.scenes if not (REAL / name / "images").is_dir()]
    if missing:
        sys.exit(f"Real captures not found: {', '.join(str(REAL / name) for name in missing)} (see its README.md).")

    from clickgs_ns.data.sam_masks import SamMaskConfig
    from clickgs_ns.data.sam_models import build_sam_generator
    from clickgs_ns.data.scene_segments import configured_scene_rule

    config = SamMaskConfig(sam_model="vit_t", sam_checkpoint=checkpoint, points_per_side=args.points_per_side,
                           device="cpu")
    generator, rule = build_sam_generator(config), configured_scene_rule(config)
    print(f"# bench_working_size: MobileSAM (vit_t), {args.points_per_side} points per side, every {args.stride}th "
          f"photo; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    print(f"{'scene':12s} {'side':>5s} {'level':6s} {'segments':>8s} {'best IoU':>8s} {'best BIoU':>9s} "
          f"{'union IoU':>9s} {'union BIoU':>10s} {'s/image':>7s}")
    last = []
    for name in args.scenes:
        results = measure_scene(REAL / name, args.sides, args.stride, generator, rule)
        for side, levels in results.items():
            for level in ("coarse", "fine"):
                row = levels[level]
                print(f"{name:12s} {side or 'full':>5} {level:6s} {row['segments']:8.1f} {row['best_iou']:8.3f} "
                      f"{row['best_biou']:9.3f} {row['union_iou']:9.3f} {row['union_biou']:10.3f} "
                      f"{levels['seconds']['per_image']:7.2f}", flush=True)
        full = results[0]["coarse"]["best_biou"]
        last += [f"{name} {side} best-segment BIoU {results[side]['coarse']['best_biou']:.3f} (full {full:.3f})"
                 for side in args.sides if side]
    print("working size: " + ", ".join(last))


if __name__ == "__main__":
    main()
