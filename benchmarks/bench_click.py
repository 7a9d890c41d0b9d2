"""Benchmark of one click (docs/method.md, section 6): pixel feature to selection mask, on the CPU.

For N = 100k, 1M and 5M Gaussians with random features [N, 24] and 50 global candidates per level, it times, in one
run (median of repeats after a warm-up; click and read are timed alternately so that both see the same load):

  click    reading the clicked pixel's feature from a rendered feature map [H, W, D] (one index) and
           ``select_by_feature`` with precomputed candidate labels (argmax over the candidates, then one label
           comparison over N and the count of the selection)
  read     reading the whole per-Gaussian feature array once (``features.sum()``), the floor for any method that
           looks at every Gaussian's feature
  ratio    click / read (target: within 3x)
  labels   precomputing the labels once: normalising the level's features and ``assign_candidates`` (argmax over
           the candidates for every Gaussian), done once after training (one repeat at 5M)

Rendering the feature map is not included (the viewer renders the view anyway). Both timings use the same number
of torch threads (default 1: on a CPU shared with other work, multi-threaded kernels spend most of their time
waiting for a busy core, which hides the comparison). Usage:
    .venv/bin/python benchmarks/bench_click.py [--sizes 100000 1000000 5000000] [--repeats 21] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List, Tuple

import torch

from clickgs_ns.method.gfl import assign_candidates
from clickgs_ns.segment.selection import SelectionConfig, level_features, select_by_feature

FEATURE_DIM, COARSE_DIM, NUM_CANDIDATES = 24, 12, 50
MAP_HEIGHT, MAP_WIDTH = 720, 1280


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_seconds(first: Callable[[], object], second: Callable[[], object], repeats: int,
                          warmup: int = 2) -> Tuple[float, float]:
    """Median seconds of two functions timed alternately, so that both see the same machine load."""
    for _ in range(warmup):
        first(), second()
    times: Tuple[List[float], List[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    config = SelectionConfig()
    print(f"# bench_click: torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {NUM_CANDIDATES} "
          f"candidates per level, feature map {MAP_WIDTH}x{MAP_HEIGHT}; median of {args.repeats} repeats")
    print(f"{'N':>9} {'level':>6} | {'click ms':>9} {'read ms':>8} {'ratio':>6} | {'labels ms':>10} | selected")
    generator = torch.Generator().manual_seed(0)
    for n in args.sizes:
        features = torch.randn(n, FEATURE_DIM, generator=generator)  # [N, 24]
        for level, dim in (("coarse", COARSE_DIM), ("fine", FEATURE_DIM)):
            candidates = torch.nn.functional.normalize(torch.randn(NUM_CANDIDATES, dim, generator=generator), dim=-1)

            def precompute():
                unit = level_features(features, level, COARSE_DIM)  # type: ignore[arg-type]
                return unit, assign_candidates(unit, candidates)[0]

            label_repeats = 1 if n >= 5_000_000 else 3
            labels_time = median_seconds(precompute, label_repeats, warmup=0)
            unit, labels = precompute()
            # A rendered feature map whose pixel (row, col) shows candidate 7 (a blend, not unit length).
            feature_map = torch.randn(MAP_HEIGHT, MAP_WIDTH, dim, generator=generator) * 0.05
            row, col = MAP_HEIGHT // 3, MAP_WIDTH // 2
            feature_map[row, col] = 0.8 * candidates[7]

            def click():
                query = feature_map[row, col]  # one index into the rendered map
                return select_by_feature(query, labels, candidates, unit, config)

            result = click()
            assert not result.used_fallback and result.candidate == 7, result.message
            click_time, read = paired_median_seconds(click, lambda: features.sum(), args.repeats)
            print(f"{n:>9,} {level:>6} | {1000 * click_time:>9.3f} {1000 * read:>8.3f} {click_time / read:>6.2f} | "
                  f"{1000 * labels_time:>10.1f} | {result.num_selected:,}")
        del features


if __name__ == "__main__":
    main()
