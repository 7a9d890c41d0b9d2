"""Tests of clickgs_ns.render: known answers, gsplat-kernel semantics, gradients, densification hooks.

Everything runs on the CPU with the pure-PyTorch rasterizer; gsplat's CUDA kernels are never called here
(an autouse fixture makes any attempt fail instead of starting a JIT build). The last test compares
against ``gsplat.rasterization`` and only runs where CUDA is available.
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from clickgs_ns.render import (
    ALPHA_THRESHOLD,
    eval_sh,
    get_viewmat,
    project_gaussians,
    quat_scale_to_covar,
    rasterize,
    rasterize_to_pixels,
    rasterize_torch,
)

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def no_gsplat_cuda(monkeypatch):
    """Make every gsplat CUDA entry point raise instead of JIT-compiling its extension."""
    if HAS_CUDA:
        yield
        return

    class _NoCuda(types.ModuleType):
        def __getattr__(self, name):
            if name == "_C":
                raise AssertionError("gsplat's CUDA backend was used on the CPU")
            raise AttributeError(name)

    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", _NoCuda("gsplat.cuda._backend"))
    yield


@pytest.fixture(autouse=True)
def single_thread():
    """These tests run thousands of tiny ops: one intra-op thread is faster, and keeps them fast on a
    CPU shared with other processes (where waiting for a second thread dominates)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def camera(width: int, height: int, focal: float, dtype=torch.float64, cx=None, cy=None):
    """Identity world-to-camera (OpenCV) and pinhole intrinsics, as [1, 4, 4], [1, 3, 3]."""
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    K = torch.tensor([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]], dtype=dtype)
    return torch.eye(4, dtype=dtype)[None], K[None]


def iso_gaussians(points, sigma_px, opacities, colors, focal, dtype=torch.float64):
    """Isotropic Gaussians whose projected standard deviation is ``sigma_px`` pixels (before eps2d)."""
    means = torch.tensor(points, dtype=dtype)
    n = means.shape[0]
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * n, dtype=dtype)
    scales = (torch.as_tensor(sigma_px, dtype=dtype) * means[:, 2] / focal)[:, None].expand(n, 3).clone()
    return means, quats, scales, torch.tensor(opacities, dtype=dtype), torch.tensor(colors, dtype=dtype)


def random_scene(n, width, height, focal, d=3, seed=0, opacity=(0.05, 0.95), sigma_px=(0.7, 3.0), dtype=torch.float64):
    """Random anisotropic Gaussians in front of an identity camera."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g, dtype=dtype) * 4 + 2
    x = (torch.rand(n, generator=g, dtype=dtype) * 2 - 1) * z * (width / 2) / focal * 1.1
    y = (torch.rand(n, generator=g, dtype=dtype) * 2 - 1) * z * (height / 2) / focal * 1.1
    means = torch.stack([x, y, z], -1)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    lo, hi = math.log(sigma_px[0]), math.log(sigma_px[1])
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * (hi - lo) + lo) * z[:, None] / focal
    opacities = torch.rand(n, generator=g, dtype=dtype) * (opacity[1] - opacity[0]) + opacity[0]
    colors = torch.rand(n, d, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors


def reference_render(means, quats, scales, opacities, colors, viewmats, Ks, width, height, tile_size=16,
                     eps2d=0.3, backgrounds=None):
    """Slow reference written from gsplat's CUDA kernels: one Gaussian at a time in depth order, every pixel.

    Projection comes from gsplat's own pure-PyTorch implementation, so it is independent of ours.
    """
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height,
                                                                eps2d=eps2d)
    C = viewmats.shape[0]
    dtype = means.dtype
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype) + 0.5, torch.arange(width, dtype=dtype) + 0.5,
                            indexing="ij")
    tile_x, tile_y = (xs // tile_size).long(), (ys // tile_size).long()
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    renders, alphas = [], []
    for c in range(C):
        T = torch.ones(height, width, dtype=dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        out = torch.zeros(height, width, colors.shape[-1], dtype=dtype)
        for n in torch.argsort(depths[c].float(), stable=True).tolist():
            r = float(radii[c, n])
            if r <= 0:
                continue
            mx, my = float(means2d[c, n, 0]), float(means2d[c, n, 1])
            x0, x1 = (min(max(0, f((m + s * r) / tile_size)), t) for m, s, f, t in
                      ((mx, -1, math.floor, tw), (mx, 1, math.ceil, tw)))
            y0, y1 = (min(max(0, f((m + s * r) / tile_size)), t) for m, s, f, t in
                      ((my, -1, math.floor, th), (my, 1, math.ceil, th)))
            in_tiles = (tile_x >= x0) & (tile_x < x1) & (tile_y >= y0) & (tile_y < y1)
            a, b, cc = conics[c, n]
            dx, dy = means2d[c, n, 0] - xs, means2d[c, n, 1] - ys
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp(opacities[n] * torch.exp(-sigma), max=0.999)
            ok = in_tiles & ~done & (sigma >= 0) & (alpha >= 1.0 / 255.0)
            next_T = T * (1 - alpha)
            stop = ok & (next_T <= 1e-4)
            done |= stop
            ok &= ~stop
            out = out + torch.where(ok, alpha * T, 0.0)[..., None] * colors[n]
            T = torch.where(ok, next_T, T)
        if backgrounds is not None:
            out = out + T[..., None] * backgrounds[c]
        renders.append(out)
        alphas.append(1 - T)
    return torch.stack(renders), torch.stack(alphas)[..., None]


# ----------------------------------------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------------------------------------


def test_quat_scale_to_covar_matches_gsplat_and_identity():
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    quats = torch.randn(50, 4, dtype=torch.float64)
    scales = torch.rand(50, 3, dtype=torch.float64) + 0.1
    expected, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    torch.testing.assert_close(quat_scale_to_covar(quats, scales), expected)
    identity = torch.tensor([[2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # not normalised
    s = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(quat_scale_to_covar(identity, s)[0], torch.diag(s[0] ** 2))


def test_get_viewmat_flips_opengl_to_opencv():
    # nerfstudio camera at (1, 2, 3) looking down its -z axis (OpenGL), rotated 90 degrees about the world z axis
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([1.0, 2.0, 3.0])
    c2w = torch.cat([R, t[:, None]], 1)[None]  # [1, 3, 4]
    viewmat = get_viewmat(c2w)
    assert viewmat.shape == (1, 4, 4)
    # a point in front of the camera (camera -z) and above it (camera +y) in the OpenGL frame ...
    p_cam_gl = torch.tensor([0.5, 0.25, -2.0])
    p_world = R @ p_cam_gl + t
    p_cv = viewmat[0, :3, :3] @ p_world + viewmat[0, :3, 3]
    # ... is at positive depth and negative y (y down) in the OpenCV frame
    torch.testing.assert_close(p_cv, torch.tensor([0.5, -0.25, 2.0]))
    torch.testing.assert_close(viewmat[0, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(get_viewmat(torch.cat([c2w, viewmat[:, 3:]], 1)), viewmat)  # [C, 4, 4] input


def test_projection_matches_gsplat_torch_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    means, quats, scales, _, _ = random_scene(300, 64, 48, 50.0, seed=1)
    means = means * torch.tensor([1.6, 1.6, 1.0], dtype=torch.float64)  # some Gaussians off-image
    viewmats, Ks = camera(64, 48, 50.0, cx=30.0, cy=25.0)
    viewmats = torch.cat([viewmats, viewmats.clone()])
    viewmats[1, :3, 3] = torch.tensor([0.2, -0.1, 0.5], dtype=torch.float64)
    Ks = Ks.expand(2, 3, 3)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    ref = _fully_fused_projection(means, covars, viewmats, Ks, 64, 48, eps2d=0.3, calc_compensations=True)
    out = project_gaussians(means, quats, scales, viewmats, Ks, 64, 48, eps2d=0.3, calc_compensations=True)
    radii, ref_radii = out[0], ref[0]
    assert radii.dtype == torch.int32 and radii.shape == (2, 300)
    assert torch.equal(radii, ref_radii) and (radii == 0).any() and (radii > 0).any()
    vis = radii > 0
    for mine, theirs in zip(out[1:], ref[1:]):
        torch.testing.assert_close(mine[vis], theirs[vis])


def test_projection_culls_near_far_and_offscreen():
    focal = 20.0
    viewmats, Ks = camera(32, 32, focal)
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.005], [0.0, 0.0, 50.0],
                          [10.0, 0.0, 1.0]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 5, dtype=torch.float64)
    scales = torch.full((5, 3), 0.05, dtype=torch.float64)
    radii, *_ = project_gaussians(means, quats, scales, viewmats, Ks, 32, 32, near_plane=0.01, far_plane=10.0)
    assert radii[0].tolist() == [int(radii[0, 0]), 0, 0, 0, 0] and radii[0, 0] > 0


def test_eval_sh_matches_gsplat_torch_reference():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    dirs = torch.randn(40, 3, dtype=torch.float64) * 3  # not normalised
    coeffs = torch.randn(40, 16, 3, dtype=torch.float64)
    for degree in range(4):
        torch.testing.assert_close(eval_sh(degree, dirs, coeffs), _spherical_harmonics(degree, dirs, coeffs))
    # broadcasting over extra leading dimensions
    out = eval_sh(2, dirs[:, None].expand(40, 5, 3), coeffs[:, None].expand(40, 5, 16, 3))
    torch.testing.assert_close(out[:, 3], eval_sh(2, dirs, coeffs))


# ----------------------------------------------------------------------------------------------------------
# analytic known answers
# ----------------------------------------------------------------------------------------------------------

# The analytic tests put Gaussians on the optical axis, which passes through the centre of pixel (20, 16),
# so that an isotropic Gaussian projects to an isotropic footprint of f * s / z pixels.
FOCAL, W, H = 50.0, 40, 32
CX, CY = 20.5, 16.5


def render(means, quats, scales, opacities, colors, **kw):
    viewmats, Ks = camera(W, H, FOCAL, dtype=means.dtype, cx=CX, cy=CY)
    return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, W, H, backend="torch", **kw)


def on_axis(*depths):
    return [[0.0, 0.0, z] for z in depths]


def test_single_gaussian_footprint():
    o, sigma_px = 0.8, 1.0
    cx, cy = CX, CY
    g = iso_gaussians(on_axis(3.0), sigma_px, [o], [[1.0, 0.5, 0.25]], FOCAL)
    img, alphas, info = render(*g)
    var = sigma_px**2 + 0.3  # eps2d is added to the 2D covariance
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    d2 = ((xs - cx) ** 2 + (ys - cy) ** 2).double()
    expected = o * torch.exp(-0.5 * d2 / var)
    expected = torch.where(expected >= ALPHA_THRESHOLD, expected, 0.0)
    torch.testing.assert_close(alphas[0, ..., 0], expected, atol=1e-12, rtol=1e-9)
    assert alphas[0, 16, 20, 0].item() == pytest.approx(o)  # centre pixel: alpha = opacity
    assert alphas[0, 16, 21, 0].item() == pytest.approx(o * math.exp(-0.5 / var))
    assert alphas[0, 18, 19, 0].item() == pytest.approx(o * math.exp(-0.5 * 5 / var))
    torch.testing.assert_close(img[0], expected[..., None] * torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    # 3-sigma radius ceil(3 sqrt(largest eigenvalue)); nothing outside it
    radius = int(info["radii"][0, 0])
    assert radius == math.ceil(3 * math.sqrt(var + 0.1))  # gsplat floors b^2 - det at 0.01
    assert (alphas[0, ..., 0][d2 > radius**2] == 0).all()
    assert (alphas[0, ..., 0][d2 <= 4] > 0).all()


def test_antialiased_mode_scales_opacity_by_compensation():
    g = iso_gaussians(on_axis(3.0), 1.0, [0.8], [[1.0]], FOCAL)
    _, alphas, _ = render(*g, rasterize_mode="antialiased")
    # compensation sqrt(det(cov2d) / det(cov2d + 0.3 I)) = sqrt(1 / 1.3^2)
    assert alphas[0, 16, 20, 0].item() == pytest.approx(0.8 / 1.3)


def two_gaussians(z_red: float, z_green: float, o_red=0.6, o_green=0.7):
    return iso_gaussians(on_axis(z_red, z_green), 1.5, [o_red, o_green], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], FOCAL)


def test_front_to_back_order_and_transmittance():
    img_red_front, alpha1, _ = render(*two_gaussians(2.0, 4.0))
    img_green_front, alpha2, _ = render(*two_gaussians(4.0, 2.0))
    a1, a2 = 0.6, 0.7
    centre = img_red_front[0, 16, 20]
    torch.testing.assert_close(centre, torch.tensor([a1, a2 * (1 - a1), 0.0], dtype=torch.float64))
    torch.testing.assert_close(alpha1[0, 16, 20, 0], torch.tensor(1 - (1 - a1) * (1 - a2), dtype=torch.float64))
    centre = img_green_front[0, 16, 20]
    torch.testing.assert_close(centre, torch.tensor([a1 * (1 - a2), a2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(alpha1, alpha2)  # same total coverage
    # with equal opacities and footprints the nearer colour dominates wherever they overlap
    img_red_front, alphas, _ = render(*two_gaussians(2.0, 4.0, 0.6, 0.6))
    img_green_front, _, _ = render(*two_gaussians(4.0, 2.0, 0.6, 0.6))
    both = alphas[0, ..., 0] > 0
    assert both.sum() > 20
    assert (img_red_front[0, ..., 0] > img_red_front[0, ..., 1])[both].all()
    torch.testing.assert_close(img_green_front, img_red_front[..., [1, 0, 2]])


def test_background_blending():
    bg = torch.tensor([[0.1, 0.2, 0.9]], dtype=torch.float64)
    img, alphas, _ = render(*two_gaussians(2.0, 4.0), backgrounds=bg)
    img0, _, _ = render(*two_gaussians(2.0, 4.0))
    torch.testing.assert_close(img, img0 + (1 - alphas) * bg[:, None, None, :])
    torch.testing.assert_close(img[0, 0, 0], bg[0])  # far from both Gaussians
    a1, a2 = 0.6, 0.7
    expected = torch.tensor([a1, a2 * (1 - a1), 0.0], dtype=torch.float64) + (1 - a1) * (1 - a2) * bg[0]
    torch.testing.assert_close(img[0, 16, 20], expected)


def test_early_stop_excludes_the_stopping_gaussian_and_all_after_it():
    # opacities 0.9, 0.9, 0.9 leave T = 1e-3; the 4th (0.95) would bring T to 5e-5 <= 1e-4: the pixel stops
    # there, so neither the 4th nor the 5th Gaussian (which alone would not trigger the stop) contributes.
    pts = on_axis(2.0, 2.5, 3.0, 3.5, 4.0)
    cols = torch.eye(5, dtype=torch.float64).tolist()
    g = iso_gaussians(pts, 1.5, [0.9, 0.9, 0.9, 0.95, 0.5], cols, FOCAL)
    img, alphas, _ = render(*g)
    expected = torch.tensor([0.9, 0.09, 0.009, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(img[0, 16, 20], expected)
    torch.testing.assert_close(alphas[0, 16, 20, 0], torch.tensor(0.999, dtype=torch.float64))
    # without the stop (a weaker 4th Gaussian: T = 2e-4, then 1.4e-4) both later ones show up
    g = iso_gaussians(pts, 1.5, [0.9, 0.9, 0.9, 0.8, 0.3], cols, FOCAL)
    img, _, _ = render(*g)
    torch.testing.assert_close(img[0, 16, 20], torch.tensor([0.9, 0.09, 0.009, 0.0008, 0.00006], dtype=torch.float64))
    # chunking the sorted lists (one Gaussian per chunk) does not change the rule
    viewmats, Ks = camera(W, H, FOCAL, cx=CX, cy=CY)
    img_chunked, _, _ = rasterize_torch(*g, viewmats, Ks, W, H, k_chunk=1)
    torch.testing.assert_close(img_chunked, img)


def test_alpha_below_threshold_is_skipped():
    centre, behind = on_axis(3.0, 5.0)
    img, alphas, _ = render(*iso_gaussians([centre], 1.0, [0.003], [[1.0]], FOCAL))  # 0.003 < 1/255
    assert (alphas == 0).all() and (img == 0).all()
    img, alphas, _ = render(*iso_gaussians([centre], 1.0, [0.005], [[1.0]], FOCAL))
    assert alphas[0, 16, 20, 0].item() == pytest.approx(0.005)
    assert alphas[0, 16, 21, 0].item() == 0.0  # 0.005 * exp(-0.5 / 1.3) = 0.0034 < 1/255
    # a skipped Gaussian in front changes nothing behind it
    front = iso_gaussians([centre, behind], 1.0, [0.003, 0.5], [[1.0], [2.0]], FOCAL)
    only = iso_gaussians([behind], 1.0, [0.5], [[2.0]], FOCAL)
    torch.testing.assert_close(render(*front)[0], render(*only)[0])


@pytest.mark.parametrize("mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_render_mode_depth_channels(mode):
    bg = torch.tensor([[0.3, 0.3, 0.3]], dtype=torch.float64)
    g = two_gaussians(2.0, 4.0)
    rgb, alphas, info = render(*g, backgrounds=bg)
    out, alphas_d, _ = render(*g, render_mode=mode, backgrounds=bg)
    torch.testing.assert_close(alphas_d, alphas)
    a1, a2 = 0.6, 0.7
    depth_sum = 2.0 * a1 + 4.0 * a2 * (1 - a1)
    depth = out[0, 16, 20, -1].item()
    if mode.endswith("ED"):
        assert depth == pytest.approx(depth_sum / (1 - (1 - a1) * (1 - a2)))
    else:
        assert depth == pytest.approx(depth_sum)
    assert out[0, 0, 0, -1].item() == 0.0  # the depth channel's background is 0
    if mode.startswith("RGB"):
        assert out.shape == (1, H, W, 4)
        torch.testing.assert_close(out[..., :3], rgb)
    else:
        assert out.shape == (1, H, W, 1)
    # the accumulated depth is the render of the per-Gaussian depths
    plain = torch.where(alphas > 0, out[..., -1:], 0.0)
    expected, _, _ = render(*g[:4], info["depths"][0][:, None])
    if mode.endswith("ED"):
        expected = expected / alphas.clamp(min=1e-10)
    torch.testing.assert_close(plain, torch.where(alphas > 0, expected, 0.0))


def test_many_channels_equal_separate_renders():
    g = random_scene(200, W, H, FOCAL, d=24, seed=2, dtype=torch.float32)
    bg = torch.rand(1, 24)
    img, alphas, _ = render(*g, backgrounds=bg)
    assert img.shape == (1, H, W, 24)
    for k in range(0, 24, 3):
        part, part_alphas, _ = render(*g[:4], g[4][:, k : k + 3], backgrounds=bg[:, k : k + 3])
        torch.testing.assert_close(part, img[..., k : k + 3], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(part_alphas, alphas)


def test_sh_degree_0_equals_sh2rgb_colours():
    means, quats, scales, opacities, _ = random_scene(100, W, H, FOCAL, seed=3)
    sh0 = torch.randn(100, 1, 3, dtype=torch.float64)
    img_sh, _, _ = render(means, quats, scales, opacities, sh0, sh_degree=0)
    rgb = torch.clamp_min(sh0[:, 0] * 0.28209479177387814 + 0.5, 0.0)
    img_rgb, _, _ = render(means, quats, scales, opacities, rgb)
    torch.testing.assert_close(img_sh, img_rgb)


def test_sh_higher_degree_uses_view_directions():
    means, quats, scales, opacities, _ = random_scene(60, W, H, FOCAL, seed=4)
    shs = torch.randn(60, 16, 3, dtype=torch.float64) * 0.3
    viewmats, Ks = camera(W, H, FOCAL)
    viewmats[0, :3, 3] = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    img, _, _ = rasterize(means, quats, scales, opacities, shs, viewmats, Ks, W, H, sh_degree=2)
    campos = torch.linalg.inv(viewmats[0])[:3, 3]
    rgb = torch.clamp_min(eval_sh(2, means - campos, shs) + 0.5, 0.0)
    expected, _, _ = rasterize(means, quats, scales, opacities, rgb, viewmats, Ks, W, H)
    torch.testing.assert_close(img, expected)


# ----------------------------------------------------------------------------------------------------------
# gsplat kernel semantics on random scenes
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile_size", [8, 16])
def test_matches_sequential_reference(tile_size):
    means, quats, scales, opacities, colors = random_scene(250, 40, 36, 40.0, seed=5, opacity=(0.3, 1.0))
    opacities[:20] = 1.0  # clamped alphas
    viewmats, Ks = camera(40, 36, 40.0, cx=19.0, cy=18.5)
    viewmats = torch.cat([viewmats, viewmats.clone()])
    viewmats[1, :3, 3] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    Ks = Ks.expand(2, 3, 3)
    bg = torch.rand(2, 3, dtype=torch.float64)
    expected, expected_alphas = reference_render(means, quats, scales, opacities, colors, viewmats, Ks, 40, 36,
                                                 tile_size=tile_size, backgrounds=bg)
    for kw in ({}, {"subtile_size": 4, "k_chunk": 7, "max_elements": 3000}, {"subtile_size": tile_size}):
        img, alphas, _ = rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, 40, 36,
                                         tile_size=tile_size, backgrounds=bg, **kw)
        torch.testing.assert_close(img, expected, atol=1e-10, rtol=0)
        torch.testing.assert_close(alphas, expected_alphas, atol=1e-10, rtol=0)
    # float32 agrees to float32 rounding
    args32 = [t.float() for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
    img32, _, _ = rasterize_torch(*args32, 40, 36, tile_size=tile_size, backgrounds=bg.float())
    torch.testing.assert_close(img32, expected.float(), atol=2e-5, rtol=0)


def test_tiling_invariance():
    # With opacities below 0.35 nothing reaches alpha >= 1/255 outside the 3-sigma radius, so the tile
    # size does not matter; the internal subtile size never matters.
    g = random_scene(400, 48, 40, 40.0, seed=6, opacity=(0.05, 0.34), dtype=torch.float32)
    viewmats, Ks = camera(48, 40, 40.0, dtype=torch.float32)
    img16, a16, _ = rasterize_torch(*g, viewmats, Ks, 48, 40, tile_size=16)
    img8, a8, _ = rasterize_torch(*g, viewmats, Ks, 48, 40, tile_size=8)
    torch.testing.assert_close(img8, img16, atol=1e-6, rtol=0)
    torch.testing.assert_close(a8, a16, atol=1e-6, rtol=0)
    g = random_scene(400, 48, 40, 40.0, seed=7, dtype=torch.float32)
    ref, _, _ = rasterize_torch(*g, viewmats, Ks, 48, 40, tile_size=16, subtile_size=16)
    for sub in (1, 2, 4, 8):
        img, _, _ = rasterize_torch(*g, viewmats, Ks, 48, 40, tile_size=16, subtile_size=sub)
        torch.testing.assert_close(img, ref, atol=1e-5, rtol=0)


def test_empty_scene_and_all_culled():
    viewmats, Ks = camera(W, H, FOCAL)
    g = iso_gaussians([[0.0, 0.0, -2.0]], 1.0, [0.9], [[1.0, 1.0, 1.0]], FOCAL)  # behind the camera
    g = [t.clone().requires_grad_(True) for t in g]
    bg = torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64)
    img, alphas, info = rasterize(*g, viewmats, Ks, W, H, backgrounds=bg)
    assert (alphas == 0).all()
    torch.testing.assert_close(img, bg[:, None, None, :].expand(1, H, W, 3))
    info["means2d"].retain_grad()
    img.sum().backward()
    assert info["means2d"].grad is not None and (info["means2d"].grad == 0).all()


# ----------------------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------------------


def test_gradcheck_all_inputs():
    focal = 16.0
    means, quats, scales, opacities, colors = random_scene(10, 16, 12, focal, d=2, seed=8, opacity=(0.4, 0.95),
                                                           sigma_px=(0.8, 2.0))
    opacities[:3] = 1.0  # clamped alpha at the centres: zero gradient there, as gsplat
    viewmats, Ks = camera(16, 12, focal)
    bg = torch.tensor([[0.3, 0.6]], dtype=torch.float64)

    def fn(m, q, s, o, c):
        img, alphas, _ = rasterize_torch(m, q, s, o, c, viewmats, Ks, 16, 12, backgrounds=bg, tile_size=8,
                                         render_mode="RGB+ED", k_chunk=3)
        return img, alphas

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
    # fast mode: checks J^T v against finite differences along random directions (full Jacobians below)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-5, rtol=1e-4, fast_mode=True)
    small = [t[:4].clone().requires_grad_(True) for t in (means, scales, opacities)]
    assert torch.autograd.gradcheck(lambda m, s, o: fn(m, quats[:4], s, o, colors[:4]), small, eps=1e-7,
                                    atol=1e-5, rtol=1e-4)


def test_gradcheck_rasterize_to_pixels_pixel_space():
    focal = 16.0
    g = random_scene(5, 16, 12, focal, seed=9, sigma_px=(0.8, 2.0))
    viewmats, Ks = camera(16, 12, focal)
    radii, means2d, depths, conics, _ = project_gaussians(g[0], g[1], g[2], viewmats, Ks, 16, 12)
    colors, opacities = g[4][None], g[3][None]

    def fn(m2d, con, col, op):
        return rasterize_to_pixels(m2d, con, col, op, radii, depths, 16, 12, tile_size=8, k_chunk=2)

    inputs = [t.detach().clone().requires_grad_(True) for t in (means2d, conics, colors, opacities)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-5, rtol=1e-4)


def test_frozen_geometry_gets_colour_gradients_only():
    g = random_scene(50, W, H, FOCAL, d=24, seed=10, dtype=torch.float32)
    colors = g[4].clone().requires_grad_(True)
    img, _, info = render(*g[:4], colors)
    (img * torch.rand_like(img)).sum().backward()
    assert colors.grad is not None and colors.grad.abs().sum() > 0
    assert not info["means2d"].requires_grad


def test_means2d_grad_retained_and_absgrad():
    focal = 20.0
    g = random_scene(6, 12, 10, focal, seed=11, sigma_px=(0.8, 1.5))
    g = [t.clone().requires_grad_(True) for t in g]
    viewmats, Ks = camera(12, 10, focal)
    img, alphas, info = rasterize(*g, viewmats, Ks, 12, 10, absgrad=True, tile_size=8)
    means2d = info["means2d"]
    assert not means2d.is_leaf and means2d.shape == (1, 6, 2)
    means2d.retain_grad()
    weights = torch.randn_like(img)
    per_pixel = (img * weights).sum(-1)  # [1, H, W]: a loss with gradients of both signs
    per_pixel.sum().backward(retain_graph=True)
    grad, absgrad = means2d.grad.clone(), means2d.absgrad.clone()
    assert absgrad.shape == (1, 6, 2) and (grad != 0).any()
    # pixel-space gradient: same as differentiating the image w.r.t. the projected means directly
    expected = torch.autograd.grad(per_pixel.sum(), means2d, retain_graph=True)[0]
    torch.testing.assert_close(grad, expected)
    # absgrad = sum over pixels of |per-pixel gradient| (gsplat's definition), checked pixel by pixel
    brute = torch.zeros_like(absgrad)
    for i in range(10):
        for j in range(12):
            brute += torch.autograd.grad(per_pixel[0, i, j], means2d, retain_graph=True)[0].abs()
    torch.testing.assert_close(absgrad, brute)
    assert (absgrad >= grad.abs() - 1e-12).all()


def test_info_and_default_strategy_step():
    from gsplat.strategy import DefaultStrategy

    means, quats, scales, opacities, colors = random_scene(64, W, H, FOCAL, seed=12, dtype=torch.float32)
    params = torch.nn.ParameterDict({
        "means": means, "quats": quats, "scales": torch.log(scales),
        "opacities": torch.logit(opacities), "colors": colors,
    })  # fmt: skip
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    viewmats, Ks = camera(W, H, FOCAL, dtype=torch.float32)
    for absgrad in (False, True):
        strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=10_000, grow_grad2d=1e-12,
                                   grow_scale3d=0.01, absgrad=absgrad, verbose=False)
        strategy.check_sanity(params, optimizers)
        state = strategy.initialize_state(scene_scale=1.0)
        n_before = len(params["means"])
        img, alphas, info = rasterize(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            params["colors"], viewmats, Ks, W, H, absgrad=absgrad,
        )
        for key in ("means2d", "radii", "width", "height", "n_cameras", "depths", "conics", "tile_size",
                    "gaussian_ids", "camera_ids", "opacities"):
            assert key in info
        assert info["radii"].shape == (1, n_before) and info["radii"].dtype == torch.int32
        assert info["means2d"].shape == (1, n_before, 2) and info["depths"].shape == (1, n_before)
        assert info["conics"].shape == (1, n_before, 3) and info["gaussian_ids"] is None
        assert (info["width"], info["height"], info["n_cameras"], info["tile_size"]) == (W, H, 1, 16)
        strategy.step_pre_backward(params, optimizers, state, 1, info)
        (img - 0.5).square().mean().backward()
        grads = info["means2d"].absgrad if absgrad else info["means2d"].grad
        visible = info["radii"] > 0
        assert (grads[visible].abs().sum(-1) > 0).any() and (grads[~visible] == 0).all()
        strategy.step_post_backward(params, optimizers, state, 1, info, packed=False)
        assert len(params["means"]) > n_before  # duplicated and/or split
        assert all(len(p) == len(params["means"]) for p in params.values())
        for opt in optimizers.values():
            opt.zero_grad()


def test_backend_dispatch():
    g = random_scene(30, W, H, FOCAL, seed=13, dtype=torch.float32)
    viewmats, Ks = camera(W, H, FOCAL, dtype=torch.float32)
    auto, _, _ = rasterize(*g, viewmats, Ks, W, H)
    torch_path, _, _ = rasterize_torch(*g, viewmats, Ks, W, H)
    torch.testing.assert_close(auto, torch_path)
    with pytest.raises(ValueError):
        rasterize(*g, viewmats, Ks, W, H, backend="bogus")


# ----------------------------------------------------------------------------------------------------------
# against gsplat's CUDA rasterizer
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA for gsplat.rasterization")
@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_matches_gsplat_cuda(mode):
    """Torch path vs gsplat's kernels on the same random scene: images and alphas within 1e-3 (max abs),
    identical radii, pixel-space means2d gradients within 1e-3 relative to their scale."""
    device = torch.device("cuda")
    width, height, focal = 128, 96, 100.0
    g = [t.to(device) for t in random_scene(5000, width, height, focal, d=3, seed=14, dtype=torch.float32)]
    viewmats, Ks = (t.to(device) for t in camera(width, height, focal, dtype=torch.float32))
    bg = torch.tensor([[0.1, 0.2, 0.3]], device=device)
    outs = {}
    for backend in ("gsplat", "torch"):
        inputs = [t.clone().requires_grad_(True) for t in g]
        img, alphas, info = rasterize(*inputs, viewmats, Ks, width, height, backgrounds=bg, render_mode=mode,
                                      absgrad=True, backend=backend)
        info["means2d"].retain_grad()
        (img[..., :3] * torch.linspace(0, 1, 3, device=device)).sum().backward()
        outs[backend] = (img.detach(), alphas.detach(), info["radii"], info["means2d"].grad,
                         info["means2d"].absgrad, inputs[4].grad)
    (img_g, a_g, r_g, g_g, ag_g, c_g), (img_t, a_t, r_t, g_t, ag_t, c_t) = outs["gsplat"], outs["torch"]
    assert torch.equal(r_g, r_t)
    assert (img_g[..., :3] - img_t[..., :3]).abs().max() < 1e-3
    assert (a_g - a_t).abs().max() < 1e-3
    if mode == "RGB+ED":
        close = a_g[..., 0] > 0.5  # expected depth is ill-conditioned where alpha is tiny
        assert (img_g[..., 3][close] - img_t[..., 3][close]).abs().max() < 1e-2
    for mine, theirs in ((g_t, g_g), (ag_t, ag_g), (c_t, c_g)):
        assert (mine - theirs).abs().max() <= 1e-3 * theirs.abs().max() + 1e-6
