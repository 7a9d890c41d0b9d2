"""Benchmark of the SAM-mask post-processing and of the host memory that id maps take.

1. Images/s of ``scene_segments.segments_to_id_maps`` (area priority by painting) on synthetic SAM-like segments
   (random ellipses), given as a bool [S, H, W] stack and as SAM records (with "area" and "bbox", as SAM's
   generator returns them), next to a naive baseline measured in the same run: per-pixel argmax / argmin of the
   segment area over a float32 [S, H, W] stack. All give identical maps (checked).
2. Host memory of N images' coarse + fine id maps held as the datamanager holds them
   (``torch.from_numpy(masks.compact_ids(masks.resize_ids_nearest(ids, (h, w))))``), versus the same maps as float32
   and as int64 torch tensors: bytes of the arrays and the RSS growth (psutil) of a forked process holding them.

Usage: python benchmarks/bench_masks.py [--num-images 1000] [--baseline-images 50] [--segments 60]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import resource
import time
from typing import List, Tuple

import numpy as np
import psutil
import torch

from clickgs_ns.data.scene_segments import segments_to_id_maps
from clickgs_ns.io.id_maps import compact_ids, resize_ids_nearest


def ellipse_segments(rng: np.random.Generator, num_segments: int, height: int, width: int) -> np.ndarray:
    """bool [S, H, W]: random axis-aligned ellipses, radii log-uniform from 4 px to half the image (SAM-like mix)."""
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    segments = np.empty((num_segments, height, width), dtype=bool)
    for s in range(num_segments):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = np.exp(rng.uniform(np.log(4), np.log(height / 2), size=2))
        segments[s] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return segments


def naive_id_maps(segments: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Baseline: float32 [S, H, W] stacks of areas, argmax (coarse) / argmin (fine) per pixel, -1 where uncovered."""
    areas = segments.reshape(len(segments), -1).sum(1).astype(np.float32)
    covered = segments.any(0)
    coarse = np.argmax(segments.astype(np.float32) * areas[:, None, None], axis=0)
    fine = np.argmin(np.where(segments, areas[:, None, None], np.float32(np.inf)), axis=0)
    return np.where(covered, coarse, -1).astype(np.int32), np.where(covered, fine, -1).astype(np.int32)


def sam_records(segments: np.ndarray) -> List[dict]:
    """The segments as SAM's generator returns them: dicts with "segmentation", "area" and XYWH "bbox"."""
    records = []
    for mask in segments:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bbox = [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0]), float(rows[-1] - rows[0])]
        records.append({"segmentation": mask, "area": int(np.count_nonzero(mask)), "bbox": bbox})
    return records


def rss_bytes() -> int:
    return psutil.Process(os.getpid()).memory_info().rss


def mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:8.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--baseline-images", type=int, default=50)
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--pool", type=int, default=20, help="distinct synthetic segment stacks, used in turn")
    args = parser.parse_args()
    height, width, num_segments = args.height, args.width, args.segments

    print(f"# bench_masks: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, "
          f"torch {torch.__version__}")
    print(f"# images {width}x{height} (WxH), {num_segments} ellipse segments each; pool of {args.pool} distinct stacks")
    rng = np.random.default_rng(0)
    pool = [ellipse_segments(rng, num_segments, height, width) for _ in range(args.pool)]
    for segments in pool[:3]:
        for ours, ref in zip(segments_to_id_maps(segments), naive_id_maps(segments)):
            assert np.array_equal(ours, ref), "segments_to_id_maps and the baseline disagree"
    print("# check: segments_to_id_maps == naive baseline on 3 stacks: OK")

    # 1. speed -------------------------------------------------------------------------------------------------
    record_pool = [sam_records(segments) for segments in pool]
    for segments, records in zip(pool[:3], record_pool[:3]):
        for ours, ref in zip(segments_to_id_maps(records), segments_to_id_maps(segments)):
            assert np.array_equal(ours, ref), "records and stacks disagree"

    def rate(convert, inputs, count: int) -> float:
        convert(inputs[0])
        start = time.perf_counter()
        for k in range(count):
            convert(inputs[k % len(inputs)])
        return count / (time.perf_counter() - start)

    stack_rate = rate(segments_to_id_maps, pool, args.num_images)
    record_rate = rate(segments_to_id_maps, record_pool, args.num_images)
    naive_rate = rate(naive_id_maps, pool, args.baseline_images)
    print("\n## segments -> (coarse, fine) id maps")
    for name, value, count in (
        ("segments_to_id_maps, [S,H,W] stack", stack_rate, args.num_images),
        ("segments_to_id_maps, SAM records", record_rate, args.num_images),
        ("baseline float32 [S,H,W] argmax/min", naive_rate, args.baseline_images),
    ):
        print(f"{name:36s}: {value:8.1f} images/s  ({1e3 / value:6.2f} ms/image, {count} images, "
              f"{value / naive_rate:5.1f}x baseline)")
    print(f"baseline temporaries per image      : {mib(num_segments * height * width * 4 * 2)} "
          f"(two float32 [S,H,W] stacks)")

    # 2. memory ------------------------------------------------------------------------------------------------
    print(f"\n## host memory of {args.num_images} images' coarse + fine id maps ({width}x{height})")
    maps: List[Tuple[np.ndarray, np.ndarray]] = []
    for k in range(args.pool):
        maps.append(segments_to_id_maps(pool[k]))
    del pool, record_pool
    gc.collect()

    def hold(convert, results) -> None:
        """In a forked child: hold num_images converted map pairs; report (array bytes, RSS growth)."""
        gc.collect()
        before = rss_bytes()
        held = []
        for k in range(args.num_images):
            coarse, fine = maps[k % len(maps)]
            held.append((convert(coarse), convert(fine)))
        nbytes = sum(t.element_size() * t.nelement() for pair in held for t in pair)
        results.send((nbytes, rss_bytes() - before))

    as_datamanager = lambda ids: torch.from_numpy(compact_ids(resize_ids_nearest(ids, (height, width))))  # noqa: E731
    rows = [
        ("compact (datamanager)", as_datamanager),
        ("float32 torch", lambda ids: torch.from_numpy(ids).to(torch.float32)),
        ("int64 torch", lambda ids: torch.from_numpy(ids).to(torch.int64)),
    ]
    dtype = as_datamanager(maps[0][0]).dtype
    compact_bytes = None
    fork = multiprocessing.get_context("fork")
    for name, convert in rows:
        receive, send = fork.Pipe(duplex=False)
        child = fork.Process(target=hold, args=(convert, send))
        child.start()
        nbytes, grown = receive.recv()
        child.join()
        compact_bytes = compact_bytes or nbytes
        print(f"{name:22s}: arrays {mib(nbytes)}  RSS growth {mib(grown)}  ({nbytes / args.num_images / 1024:7.1f} KiB"
              f"/image, {nbytes / compact_bytes:4.1f}x compact)")
    print(f"compact dtype for {num_segments} segments: {dtype}; peak RSS of the parent process "
          f"{mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}")


if __name__ == "__main__":
    main()
