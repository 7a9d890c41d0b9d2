"""Benchmark of the pure-PyTorch tile rasterizer (clickgs_ns.render.rasterize_torch) on the CPU.

Times forward + backward (gradients for means, quats, scales, opacities and colours) of a 128x96 image
of 20,000 random Gaussians with D = 3 and D = 24 colour channels: the median of several repeats after
a warm-up.

Baseline, measured in the same run: a dense reference rasterizer with the same compositing rule
(depth-sorted, alpha = min(0.999, o exp(-sigma)), skip below 1/255, stop at T <= 1e-4, gsplat's tile
coverage) that evaluates every (pixel, Gaussian) pair as one [H*W, N] autograd graph, with no tile lists,
no per-tile early exit and no custom backward. It is timed on 2,000 Gaussians (its cost grows as
H*W*N; 3 repeats) and compared in Gaussians per second; its image is also compared with the tile
rasterizer's on the same scene.

Usage: .venv/bin/python benchmarks/bench_renderer.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Callable, List, Tuple

import torch
from torch import Tensor

from clickgs_ns.render import project_gaussians, rasterize_torch

WIDTH, HEIGHT, FOCAL = 128, 96, 100.0


def random_scene(n: int, d: int, seed: int = 0) -> List[Tensor]:
    """Gaussians spread over the view frustum at depths 2..6 with projected standard deviations of
    1..4 pixels per axis (log-uniform), random orientations and opacities in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * 4 + 2
    x = (torch.rand(n, generator=g) * 2 - 1) * z * (WIDTH / 2) / FOCAL * 1.1
    y = (torch.rand(n, generator=g) * 2 - 1) * z * (HEIGHT / 2) / FOCAL * 1.1
    means = torch.stack([x, y, z], -1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.rand(n, 3, generator=g) * math.log(4.0)) * z[:, None] / FOCAL
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, d, generator=g)
    return [means, quats, scales, opacities, colors]


def camera() -> Tuple[Tensor, Tensor]:
    K = torch.tensor([[FOCAL, 0.0, WIDTH / 2], [0.0, FOCAL, HEIGHT / 2], [0.0, 0.0, 1.0]])
    return torch.eye(4)[None], K[None]


def dense_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, tile_size: int = 16) -> Tensor:
    """Dense reference: all pixels x all Gaussians at once (plain autograd). Returns [H, W, D]."""
    radii, means2d, depths, conics, _ = project_gaussians(means, quats, scales, viewmats, Ks, WIDTH, HEIGHT)
    order = torch.argsort(depths[0])
    vis = order[radii[0, order] > 0]
    m, con, o, c, r = means2d[0, vis], conics[0, vis], opacities[vis], colors[vis], radii[0, vis]
    ys, xs = torch.meshgrid(torch.arange(HEIGHT) + 0.5, torch.arange(WIDTH) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [HW, 1]
    with torch.no_grad():  # gsplat's tile coverage of the 3-sigma box
        rt = r[None].float() / tile_size
        tx, ty = torch.floor(px / tile_size), torch.floor(py / tile_size)
        mt = m.detach() / tile_size
        cover = ((tx >= torch.floor(mt[None, :, 0] - rt)) & (tx < torch.ceil(mt[None, :, 0] + rt))
                 & (ty >= torch.floor(mt[None, :, 1] - rt)) & (ty < torch.ceil(mt[None, :, 1] + rt)))
    dx, dy = m[None, :, 0] - px, m[None, :, 1] - py  # [HW, N]
    sigma = 0.5 * (con[None, :, 0] * dx * dx + con[None, :, 2] * dy * dy) + con[None, :, 1] * dx * dy
    alpha = torch.clamp(o[None] * torch.exp(-sigma), max=0.999)
    alpha = torch.where(cover & (sigma >= 0) & (alpha >= 1.0 / 255.0), alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=-1)  # T after each Gaussian
    with torch.no_grad():
        used = trans > 1e-4  # the pixel stops before the first Gaussian that would reach 1e-4
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    T_before = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
    return ((alpha * T_before) @ c).reshape(HEIGHT, WIDTH, -1)


def time_fwd_bwd(render: Callable[..., Tensor], inputs: List[Tensor], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of render(*inputs) + backward of a weighted sum."""
    times = []
    for i in range(warmup + repeats):
        params = [t.clone().requires_grad_(True) for t in inputs]
        t0 = time.perf_counter()
        image = render(*params)
        (image * 0.5).sum().backward()
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    viewmats, Ks = camera()

    def tile_render(*p):
        return rasterize_torch(*p, viewmats, Ks, WIDTH, HEIGHT)[0]

    def dense_render(*p):
        return dense_rasterize(*p, viewmats, Ks)

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} intra-op threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"image {WIDTH}x{HEIGHT}, forward+backward, median of {args.repeats} runs after a warm-up run "
          f"(dense baseline: 3)\n")
    rows = []
    for name, render, n, d, n_threads, repeats in (
        ("tile rasterizer (rasterize_torch)", tile_render, 20_000, 3, threads, args.repeats),
        ("tile rasterizer (rasterize_torch)", tile_render, 20_000, 24, threads, args.repeats),
        ("tile rasterizer (rasterize_torch)", tile_render, 20_000, 3, 1, args.repeats),
        ("tile rasterizer (rasterize_torch)", tile_render, 20_000, 24, 1, args.repeats),
        ("baseline: dense reference, no tiles", dense_render, 2_000, 3, threads, 3),
        ("tile rasterizer (rasterize_torch)", tile_render, 2_000, 3, threads, args.repeats),
    ):
        torch.set_num_threads(n_threads)
        seconds = time_fwd_bwd(render, random_scene(n, d), repeats)
        rows.append((name, n, d, n_threads, seconds))
    torch.set_num_threads(threads)
    print(f"{'renderer':<38}{'N':>8}{'D':>5}{'threads':>9}{'seconds':>10}{'Gaussians/s':>14}")
    for name, n, d, n_threads, seconds in rows:
        print(f"{name:<38}{n:>8}{d:>5}{n_threads:>9}{seconds:>10.3f}{n / seconds:>14.3e}")

    tile20k, dense2k, tile2k = rows[0][-1], rows[4][-1], rows[5][-1]
    print(f"\nthroughput ratio, tile (20k, D=3) / dense baseline (2k, D=3): "
          f"{(20_000 / tile20k) / (2_000 / dense2k):.1f}x")
    print(f"same 2k scene: dense / tile time: {dense2k / tile2k:.1f}x")
    scene = random_scene(2_000, 3)
    with torch.no_grad():
        diff = (tile_render(*scene)[0] - dense_render(*scene)).abs().max().item()
        _, alphas, info = rasterize_torch(*random_scene(20_000, 3), viewmats, Ks, WIDTH, HEIGHT)
    vis = info["radii"] > 0
    a, b, c = info["conics"][vis].unbind(-1)
    area = math.pi / torch.sqrt(a * c - b * b)  # 1-sigma ellipse of the 2D footprint (with eps2d)
    print(f"max |tile - dense| on the 2k scene: {diff:.2e}")
    print(f"20k scene: {int(vis.sum())} Gaussians visible, 1-sigma footprint median {area.median().item():.1f} px "
          f"(10%-90%: {area.quantile(0.1).item():.1f}-{area.quantile(0.9).item():.1f} px), "
          f"mean image alpha {alphas.mean().item():.4f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
