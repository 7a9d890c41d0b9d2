"""A CPU training step with glibc's default allocator and with freed memory kept for reuse.

``ClickGaussianTrainer`` calls ``clickgs_ns.io.memory.keep_freed_memory()`` when it trains on the CPU
(``--reuse-freed-memory False`` turns it off): glibc otherwise unmaps every freed block above 32 MB, and each new
large tensor costs a zero fill page by page. The setting cannot be undone inside a process, so each condition runs
in its own process, one after the other, on the same synthetic scene: the median of 10 steps of the RGB stage (from
the seed points) and of the feature stage (from the scene's .ply, the preset's 10,000 sampled pixels), 2 threads.

Usage: python benchmarks/bench_memory.py [--steps 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_threads import stage_trainers, step_seconds  # noqa: E402


def child(reuse: bool, steps: int) -> None:
    """Print "STAGE SECONDS" for the RGB and the feature stage, with the trainer's allocator setting ``reuse``."""
    with tempfile.TemporaryDirectory() as tmp:
        for stage, trainer in stage_trainers(Path(tmp), 2, reuse_freed_memory=reuse):
            print(f"{stage} {step_seconds(trainer, 0, steps, 2):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage")
    parser.add_argument("--child", choices=["default", "reuse"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child == "reuse", args.steps)
    print(f"# bench_memory: torch {torch.__version__}, 2 threads, CPU; median step seconds")
    seconds = {}
    for condition in ("default", "reuse"):
        out = subprocess.run([sys.executable, __file__, "--child", condition, "--steps", str(args.steps)],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():  # nerfstudio logs to stdout too
            words = line.split()
            if len(words) == 2 and words[0] in ("rgb", "features"):
                seconds[words[0], condition] = float(words[1])
    print(f"{'stage':<9} {'default allocator s':>19} {'freed memory reused s':>21} {'speed-up':>8}")
    for stage in ("rgb", "features"):
        default, reuse = seconds[stage, "default"], seconds[stage, "reuse"]
        print(f"{stage:<9} {default:>19.3f} {reuse:>21.3f} {default / reuse:>7.2f}x")
    print("memory: reusing freed memory makes a step " + ", ".join(
        f"{stage} {seconds[stage, 'default'] / seconds[stage, 'reuse']:.2f}x" for stage in ("rgb", "features"))
        + " faster")


if __name__ == "__main__":
    main()
