"""One command for the GPU figures of the README (`make gpu-check`): prints one Markdown table naming the device.

Rows (each on CUDA when a device is there, on the CPU otherwise; a row that cannot run says why):
  CUDA vs CPU rasterizer  tests/test_rendering.py's comparisons of gsplat's kernels with the project's rasterizer
  click                   one click on 1M Gaussians: the pixel's feature to a selection mask (median of 21)
  feature-stage step      one nerfstudio training iteration of the feature stage, synthetic scene (median of 10)
  SAM masks               segment-anything's automatic mask generator and this project's fast one, vit_b with
                          random weights (same cost as the real ones), one 400x300 image, 16x16 point prompts
On a machine without CUDA it says so, runs the CPU rows and exits 0.

Usage: python benchmarks/gpu_check.py [--skip-sam]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` after one warm-up, synchronising CUDA around each call."""
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def cuda_comparison(device: torch.device) -> str:
    if device.type != "cuda":
        return "not run: no CUDA device"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "test_rendering.py"), "-k", "cuda"],
                            capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if "passed" in line or "failed" in line or "error" in line]
    return (lines[-1] if lines else result.stdout[-200:]).strip("= ")


def click_latency(device: torch.device) -> str:
    from clickgs_ns.method.gfl import assign_candidates
    from clickgs_ns.segment.selection import SelectionConfig, level_features, select_by_feature

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1_000_000, 24, generator=generator).to(device)
    candidates = torch.nn.functional.normalize(torch.randn(50, 12, generator=generator), dim=-1).to(device)
    unit = level_features(features, "coarse", 12)
    labels = assign_candidates(unit, candidates)[0]
    query = 0.8 * candidates[7]
    seconds = timed(lambda: select_by_feature(query, labels, candidates, unit, SelectionConfig()), 21, device)
    return f"{1000 * seconds:.2f} ms"


def feature_step(device: torch.device) -> str:
    from conftest import make_trainer_config

    from clickgs_ns.synth import SynthConfig, generate_scene

    with tempfile.TemporaryDirectory() as tmp:
        scene = generate_scene(SynthConfig(), Path(tmp) / "scene")
        config = make_trainer_config(scene.root, Path(tmp) / "out", init_ply=scene.scene_ply_path,
                                     feature_stage_steps=100)
        config.machine.device_type = device.type
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.pipeline.train()
        step = iter(range(10**6))
        seconds = timed(lambda: trainer.train_iteration(next(step)), 10, device)
        return f"{1000 * seconds:.0f} ms ({trainer.pipeline.model.num_points} Gaussians, 128x96 views)"


def sam_masks(device: torch.device) -> str:
    import numpy as np
    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    from clickgs_ns.data.sam_fast import FastSamMaskGenerator

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().to(device).eval()  # random weights: the architecture sets the cost
    image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    figures = []
    for label, Generator in (("stock", SamAutomaticMaskGenerator), ("fast", FastSamMaskGenerator)):
        generator = Generator(sam, points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        seconds = timed(lambda: generator.generate(image), 1 if device.type == "cpu" else 3, device)
        figures.append(f"{label} {seconds:.2f} s")
    return ", ".join(figures) + " per image"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-sam", action="store_true", help="leave out the SAM row (minutes on a CPU)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU only: no CUDA device here"
    print(f"# gpu-check on {name}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    checks: List[Tuple[str, Callable[[torch.device], str]]] = [
        ("CUDA vs CPU rasterizer (tests)", cuda_comparison), ("click, 1M Gaussians", click_latency),
        ("feature-stage step", feature_step),
    ] + ([] if args.skip_sam else [("SAM vit_b masks, 400x300, 16x16 points", sam_masks)])
    rows = []
    for title, check in checks:
        try:
            figure = check(device)
        except Exception as error:  # noqa: BLE001 - a row says why it could not run
            figure = f"not run: {type(error).__name__}: {str(error)[:120]}"
        rows.append((title, figure))
        print(f"# {title}: {figure}", flush=True)
    print(f"\n| check | {name} |\n| --- | --- |")
    for title, figure in rows:
        print(f"| {title} | {figure} |")


if __name__ == "__main__":
    main()
