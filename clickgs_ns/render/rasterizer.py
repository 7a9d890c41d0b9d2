"""The project's differentiable pure-PyTorch tile rasterizer (``rasterize_torch``), for the CPU.

It reproduces the semantics of gsplat's CUDA kernels (projection, 3-sigma radii, culling, tile/depth sorting,
front-to-back alpha compositing, ``alpha < 1/255`` skipping and the ``T <= 1e-4`` early stop). Shapes are
given as ``[C, N, 3]`` etc. (C cameras, N Gaussians, D channels, M tile intersections).

How the torch path is organised (see :func:`rasterize_to_pixels`): Gaussians are
listed, in depth order, in every 8x8 subtile where they can reach ``alpha >= 1/255``
inside their gsplat tile range; the lists are consumed in chunks of ``k_chunk``
entries for all live subtiles at once as ``[tiles, pixels, entries]`` tensors, and
subtiles whose pixels have all stopped drop out. Compositing and its backward pass
are a custom autograd function with closed-form gradients (no Python loop over
Gaussians or pixels).

Differences from gsplat's CUDA backend (all at the level of float rounding):

* The Mahalanobis term ``sigma`` is evaluated as one small matrix product of
  per-pixel monomials ``[x^2, xy, y^2, x, y, 1]`` (tile-centred coordinates)
  with per-(tile, Gaussian) coefficients computed in float64; in float32 its
  rounding error is ~1e-5 instead of ~1e-7, so alphas agree to ~1e-5 relative.
* gsplat skips a Gaussian at a pixel when ``sigma < 0``. With a positive-definite
  conic (always the case after the ``det > 0`` cull) that can only happen through
  rounding, so the test is not applied (with the expanded evaluation a rounding-
  negative sigma at the exact centre would otherwise drop the Gaussian there).
  Alphas exactly equal to 1/255 are skipped (gsplat keeps them).
* Transmittance products are formed per chunk, so whether ``T`` crosses 1e-4 can
  differ from gsplat's sequential float32 product in last-bit ties.
* ``info["means2d"].absgrad`` is gsplat's quantity exactly (sum over pixels of the
  absolute per-pixel gradient of ``means2d``); it is attached as zeros in the
  forward pass and accumulated by the compositing backward pass.
* gsplat's ``isect_ids`` / ``flatten_ids`` / ``isect_offsets`` are not in ``info``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from clickgs_ns.render.projection import project_gaussians
from clickgs_ns.render.sh import eval_sh

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RasterizeMode = Literal["classic", "antialiased"]

#: A Gaussian is skipped at a pixel when its alpha is below this (gsplat: 1/255).
ALPHA_THRESHOLD: float = 1.0 / 255.0
#: Alphas are clamped to this maximum (gsplat: 0.999).
ALPHA_MAX: float = 0.999
#: A pixel stops when its transmittance would drop to this or below (gsplat: 1e-4).
TRANSMITTANCE_EPS: float = 1e-4

# log-opacity of the padding entry used to fill ragged tile lists: alpha = e^-100 = 0.
_PAD_LOG_OPACITY: float = -100.0


# ----------------------------------------------------------------------------
# Tile intersections (integer bookkeeping, no gradients)
# ----------------------------------------------------------------------------


@torch.no_grad()
def tile_ranges(
    means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int
) -> Tuple[Tensor, Tensor]:
    """Tiles touched by each Gaussian's radius box, as gsplat's ``isect_tiles``.

    Gaussian ``(c, n)`` touches tiles ``[floor((x - r) / ts), ceil((x + r) / ts))`` in
    x (clamped to ``[0, tile_width]``) and likewise in y, ``r`` its integer radius.
    A pixel is shaded by a Gaussian only if its tile is in this range.

    Args:
        means2d: ``[C, N, 2]``; radii: ``[C, N]`` (0 = culled).

    Returns:
        ``lo [C, N, 2]`` (inclusive) and ``hi [C, N, 2]`` (exclusive) tile indices
        (x, y), int64, with ``hi == lo`` for culled Gaussians.
    """
    m = means2d.detach().float() / tile_size  # [C, N, 2]
    r = (radii.float() / tile_size)[..., None]  # [C, N, 1]
    grid = torch.tensor([tile_width, tile_height], device=means2d.device)
    lo = torch.floor(m - r).clamp(0, 1 << 30).long().minimum(grid)
    hi = torch.ceil(m + r).clamp(0, 1 << 30).long().minimum(grid)
    hi = torch.where((radii > 0)[..., None], hi, lo)
    return lo, hi


@torch.no_grad()
def _pixel_boxes(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    radii: Tensor,
    width: int,
    height: int,
    tile_size: int,
) -> Tuple[Tensor, Tensor]:
    """Inclusive pixel boxes outside which a Gaussian has no effect on any pixel.

    A Gaussian shades pixel ``(j, i)`` only if the pixel's tile is in the Gaussian's
    tile range (:func:`tile_ranges`) and ``o * exp(-sigma) >= 1/255``, i.e.
    ``sigma <= log(255 o)``: an ellipse whose bounding half-extents are
    ``sqrt(2 log(255 o) Sigma_xx)`` and ``sqrt(2 log(255 o) Sigma_yy)``. Skipped
    Gaussians do not change transmittance, so restricting the work to the
    intersection of both boxes (widened by a small margin against rounding) gives
    exactly the same image for every choice of (sub)tiling.

    Returns:
        ``lo [C, N, 2]`` and ``hi [C, N, 2]`` inclusive pixel indices (x, y), int64;
        empty boxes have ``lo > hi``.
    """
    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
    t_lo, t_hi = tile_ranges(means2d, radii, tile_size, tile_width, tile_height)
    size = torch.tensor([width, height], device=means2d.device)
    lo = t_lo * tile_size
    hi = torch.minimum(t_hi * tile_size, size) - 1
    # bounding box of the alpha >= 1/255 ellipse
    m = means2d.detach().double()
    a, b, c = conics.detach().double().unbind(-1)  # [C, N]
    det = (a * c - b * b).clamp(min=1e-30)
    s = torch.log(255.0 * opacities.detach().double().clamp(min=1e-30))  # [C, N]
    var = torch.stack([c / det, a / det], dim=-1)  # diagonal of the 2D covariance
    ext = torch.sqrt(2.0 * s.clamp(min=0.0)[..., None] * var) * (1.0 + 1e-4) + 1e-3
    e_lo = torch.ceil(m - ext - 0.5).clamp(-1, 1 << 30).long()
    e_hi = torch.floor(m + ext - 0.5).clamp(-1, 1 << 30).long()
    lo, hi = torch.maximum(lo, e_lo), torch.minimum(hi, e_hi)
    hi = torch.where((s >= 0)[..., None], hi, lo - 1)
    return lo, hi


@torch.no_grad()
def _tile_lists(
    box_lo: Tensor, box_hi: Tensor, depths: Tensor, tile_size: int, tile_width: int, tile_height: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Depth-sorted Gaussian lists of every tile, flattened.

    Args:
        box_lo, box_hi: ``[C, N, 2]`` inclusive pixel boxes (:func:`_pixel_boxes`).
        depths: ``[C, N]`` sort keys (front to back; ties keep Gaussian order).

    Returns:
        ``starts [C * th * tw]``, ``counts [C * th * tw]`` (int64) and
        ``flatten_ids [M]`` (int64, index ``c * N + n``), tile-major, depth-sorted
        within each tile; tiles are numbered ``(c * th + ty) * tw + tx``.
    """
    C, N = depths.shape
    device = depths.device
    t_lo = box_lo.div(tile_size, rounding_mode="floor")
    t_hi = box_hi.div(tile_size, rounding_mode="floor") + 1
    ext = torch.where(box_hi >= box_lo, t_hi - t_lo, 0)  # [C, N, 2]
    counts = (ext[..., 0] * ext[..., 1]).flatten()  # [C * N]

    # Gaussians in global front-to-back order (stable, as gsplat's radix sort);
    # positive float32 depths order like their int32 bit patterns.
    d = depths.detach().float().flatten().clamp(min=0.0).contiguous()
    order = torch.sort(d.view(torch.int32), stable=True).indices  # [C * N]
    order = order[counts[order] > 0]
    n_per = counts[order]
    gid = torch.repeat_interleave(order, n_per)  # [M]
    first = torch.cumsum(n_per, 0) - n_per
    local = torch.arange(gid.numel(), device=device) - torch.repeat_interleave(first, n_per)
    lo = t_lo.reshape(-1, 2)[gid]
    w = ext.reshape(-1, 2)[gid, 0]
    tx = lo[:, 0] + local % w
    ty = lo[:, 1] + local // w
    tile = ((gid // N) * tile_height + ty) * tile_width + tx  # [M]
    n_tiles = C * tile_height * tile_width
    key = tile.to(torch.int32) if n_tiles < 2**31 else tile
    perm = torch.sort(key, stable=True).indices  # tile-major, depth order kept
    tile_counts = torch.bincount(tile, minlength=n_tiles)
    starts = torch.cumsum(tile_counts, 0) - tile_counts
    return starts, tile_counts, gid[perm]


# ----------------------------------------------------------------------------
# Rasterization
# ----------------------------------------------------------------------------


def _pixel_monomials(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[P, 6]`` monomials ``[x^2, xy, y^2, x, y, 1]`` of the pixel centres of a tile,
    in coordinates centred on the tile (``P = tile_size^2``, row-major)."""
    coords = torch.arange(tile_size, device=device, dtype=torch.float64) + 0.5 - 0.5 * tile_size
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    px, py = px.flatten(), py.flatten()
    f = torch.stack([px * px, px * py, py * py, px, py, torch.ones_like(px)], dim=-1)
    return f.to(dtype)


def _log_alpha_coeffs(g: Tensor, centres: Tensor) -> Tensor:
    """Coefficients turning pixel monomials into ``log(opacity) - sigma``.

    Args:
        g: ``[A, B, 6]`` gathered ``(mean_x, mean_y, conic_a, conic_b, conic_c, log_opacity)``.
        centres: ``[A, 2]`` pixel coordinates (x, y) of the tile centres, float64.

    Returns:
        ``[A, 6, B]`` coefficients (float64) such that ``monomials @ coeffs`` is
        ``log(o) - 0.5 (a dx^2 + c dy^2) - b dx dy`` with ``d = pixel - mean``.
    """
    g = g.double()
    mx = g[..., 0] - centres[:, None, 0]  # [A, B] mean relative to the tile centre
    my = g[..., 1] - centres[:, None, 1]
    a, b, c, log_o = g[..., 2], g[..., 3], g[..., 4], g[..., 5]
    qx = a * mx + b * my  # [A, B] = (Q m)_x
    qy = b * mx + c * my
    const = log_o - 0.5 * (mx * qx + my * qy)
    return torch.stack([-0.5 * a, -b, -0.5 * c, qx, qy, const], dim=1)  # [A, 6, B]


def _add_absgrad(
    acc: Tensor, gids: Tensor, g: Tensor, centres: Tensor, f: Tensor, g_log_alpha: Tensor
) -> None:
    """Add to ``acc[gid]`` the sum over pixels of ``|d loss / d means2d|`` per pixel
    (gsplat's ``absgrad``), given ``g_log_alpha [A, P, B]`` of a chunk."""
    mx = (g[..., 0] - centres[:, None, 0]).to(f.dtype)[:, None, :]  # [A, 1, B]
    my = (g[..., 1] - centres[:, None, 1]).to(f.dtype)[:, None, :]
    a, b, c = (g[..., k].to(f.dtype)[:, None, :] for k in (2, 3, 4))
    px, py = f[None, :, 3, None], f[None, :, 4, None]  # [1, P, 1]
    dx, dy = mx - px, my - py  # [A, P, B] mean - pixel
    # d(log alpha) / d mean = -Q (mean - pixel)
    vx = (g_log_alpha * (a * dx + b * dy)).abs_().sum(1)  # [A, B]
    vy = (g_log_alpha * (b * dx + c * dy)).abs_().sum(1)
    acc.index_add_(0, gids.flatten(), torch.stack([vx, vy], -1).reshape(-1, 2).to(acc.dtype))


def _blend_weights(
    coeffs: Tensor, f: Tensor, T: Tensor, done: Tensor, may_clamp: bool
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """The blending weights of one chunk of ``B`` depth-sorted entries per pixel (:class:`_Composite`'s notation).

    Args:
        coeffs: ``[A, 6, B]``; f: ``[P, 6]`` pixel monomials; T: ``[A, P]`` transmittance before the chunk;
        done: ``[A, P]`` stopped pixels; may_clamp: whether any alpha can reach ``ALPHA_MAX``.

    Returns:
        ``w [A, P, B]`` (the entry's weight relative to ``T``: its colour's factor in the pixel is ``T w``),
        ``-s [A, P, B]`` (``-s_{j+1}``), ``t_end [A, P]``, ``done_new [A, P]`` and the clamped alphas
        ``[A, P, B]`` bool (None unless ``may_clamp``).
    """
    buf = torch.matmul(f, coeffs)  # [A, P, B] log alpha
    clamped = buf > math.log(ALPHA_MAX) if may_clamp else None
    buf.exp_().clamp_(max=ALPHA_MAX)
    F.threshold_(buf, ALPHA_THRESHOLD, 0.0)  # alpha; skipped Gaussians: 0
    buf.neg_().add_(1.0).cumprod_(-1).neg_()  # -t_{j+1}, ascending along rows
    # n = #{j >= 1 : t_j > eps / T} (none for stopped pixels)
    thresh = torch.where(done, torch.full_like(T, math.inf), TRANSMITTANCE_EPS / T)
    n = torch.searchsorted(buf, (-thresh)[..., None].contiguous())  # [A, P, 1]
    done_new = done | (buf[..., -1] * T >= -TRANSMITTANCE_EPS)
    t_end = -buf.gather(-1, (n - 1).clamp_(min=0))
    t_end = torch.where(n == 0, torch.ones_like(t_end), t_end)  # [A, P, 1]
    torch.minimum(buf, -t_end, out=buf)  # -s_{j+1}
    w = torch.empty_like(buf)  # w_j = s_j - s_{j+1}
    torch.sub(buf[..., 1:], buf[..., :-1], out=w[..., 1:])
    torch.add(buf[..., 0], 1.0, out=w[..., 0])
    return w, buf, t_end.squeeze(-1), done_new, clamped


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of one chunk of ``B`` depth-sorted entries per pixel.

    Inputs: ``coeffs [A, 6, B]`` and pixel monomials ``f [P, 6]`` giving
    ``log_alpha = f @ coeffs = log(o) - sigma`` ``[A, P, B]``; ``colors [A, B, D]``;
    ``T [A, P]`` transmittance before the chunk; ``done [A, P]`` stopped pixels.
    Outputs: colour contribution ``[A, P, D]``, ``T_new [A, P]``, ``done_new [A, P]``.

    Let ``alpha_j = min(0.999, exp(log_alpha_j))`` (0 unless above 1/255),
    ``t_j = prod_{i<j} (1 - alpha_i)`` the transmittance relative to ``T``, ``n`` the
    number of entries used before the pixel stops (``T t_{j+1} > 1e-4`` for
    ``j < n``; ``n = 0`` for stopped pixels) and ``s_j = max(t_j, t_n)`` the
    transmittance frozen at the stop. Then the weights are ``w_j = s_j - s_{j+1}``
    (``= alpha_j t_j`` for used entries, 0 after the stop), ``contrib = T w @ colors``
    and ``T_new = T t_n``. With ``v_j = c_j . dL/dcontrib`` the backward pass is::

        S_j = sum_{k>j} w_k v_k + t_n dL/dT_new       (s_{j+1} > 0 for every j)
        dL/dlog_alpha_j = T w_j (v_j - S_j / s_{j+1})      (0 where alpha was clamped)
        dL/dc_j = sum_pixels T w_j dL/dcontrib,   dL/dT = sum_j w_j v_j + t_n dL/dT_new

    The ``[A, P, B]`` work is done in place on two buffers with float passes only
    (boolean masks over ``[A, P, B]`` are slow on CPU); ``t`` is kept negated so
    that each pixel's stop index is a ``searchsorted`` on an ascending row.
    """

    @staticmethod
    def forward(
        ctx,
        coeffs: Tensor,
        f: Tensor,
        colors: Tensor,
        T: Tensor,
        done: Tensor,
        may_clamp: bool,
        absgrad_args: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]],
    ):
        w, buf, t_end, done_new, clamped = _blend_weights(coeffs, f, T, done, may_clamp)
        contrib = torch.bmm(w, colors).mul_(T[..., None])  # [A, P, D]
        # the colours' gradient needs w and T alone: the rest is kept only when the geometry takes gradients
        geometry_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[3]
        ctx.save_for_backward(*(f, w, buf, colors) if geometry_grad else (None, w, None, None), T, t_end, clamped)
        ctx.absgrad_args = absgrad_args
        ctx.mark_non_differentiable(done_new)
        return contrib, T * t_end, done_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_contrib: Optional[Tensor], g_T: Optional[Tensor], _g_done: Optional[Tensor]):
        f, w, neg_s, colors, T, t_end, clamped = ctx.saved_tensors
        if g_contrib is None:
            g_contrib = torch.zeros(w.shape[:2] + colors.shape[-1:], dtype=w.dtype, device=w.device)
        if g_T is None:
            g_T = torch.zeros_like(T)
        g_contrib_T = g_contrib * T[..., None]  # [A, P, D]; T is folded in early
        g_colors = None
        if ctx.needs_input_grad[2]:
            g_colors = torch.bmm(w.transpose(1, 2), g_contrib_T)  # [A, B, D]
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[3]):  # e.g. frozen geometry
            return None, None, g_colors, None, None, None, None
        v = torch.bmm(g_contrib_T, colors.transpose(1, 2))  # [A, P, B] = T v
        g = torch.mul(w, v).cumsum_(-1)  # prefix sums of T w v
        wv = g[..., -1:].clone()  # [A, P, 1] T sum_j w_j v_j
        torch.sub(wv + (T * t_end * g_T)[..., None], g, out=g)  # T S_j
        g.div_(neg_s).add_(v).mul_(w)  # T w (v - S / s) = dL/dlog_alpha
        if clamped is not None:
            g.masked_fill_(clamped, 0.0)
        if ctx.absgrad_args is not None:
            _add_absgrad(*ctx.absgrad_args, f, g)
        g_coeffs = torch.matmul(f.t(), g) if ctx.needs_input_grad[0] else None  # [A, 6, B]
        g_T_in = wv.squeeze(-1) / T + t_end * g_T  # [A, P]
        return g_coeffs, None, g_colors, g_T_in, None, None, None


def _composite_chunk(
    table: Tensor,
    col_table: Tensor,
    gids: Tensor,
    centres: Tensor,
    f: Tensor,
    T: Tensor,
    done: Tensor,
    absgrad_acc: Optional[Tensor],
) -> Tuple[Tensor, Tensor, Tensor]:
    """Composite the next ``B`` depth-sorted Gaussians of ``A`` tiles.

    Args:
        table: ``[G, 6]`` (mean_x, mean_y, conic a, b, c, log opacity) per Gaussian.
        col_table: ``[G, D]`` colours.
        gids: ``[A, B]`` row indices into the tables (a padding row for empty slots).
        centres: ``[A, 2]`` tile centres; f: ``[P, 6]`` pixel monomials.
        T: ``[A, P]`` transmittance so far; done: ``[A, P]`` stopped pixels.
        absgrad_acc: ``[G, 2]`` accumulator for ``absgrad`` or None.

    Returns:
        ``T_new [A, P]``, colour contribution ``[A, P, D]`` and ``done_new [A, P]``.
    """
    A, B = gids.shape
    g = table.index_select(0, gids.flatten()).view(A, B, 6)
    coeffs = _log_alpha_coeffs(g, centres).to(f.dtype)  # [A, 6, B]
    colors = col_table.index_select(0, gids.flatten()).view(A, B, -1)  # [A, B, D]
    may_clamp = bool((g[..., 5] > math.log(ALPHA_MAX)).any())  # opacity > 0.999
    absgrad_args = None
    if absgrad_acc is not None:
        absgrad_args = (absgrad_acc, gids, g.detach(), centres)
    contrib, T_new, done_new = _Composite.apply(coeffs, f, colors, T, done, may_clamp, absgrad_args)
    return T_new, contrib, done_new


class _SubtileLists(NamedTuple):
    """Sorted Gaussian lists of the ``n_tiles = C * th * tw`` subtiles (:func:`_tile_lists`)."""

    starts: Tensor
    """``[n_tiles]`` int64: first entry of each subtile's list in ``flatten_ids``."""
    counts: Tensor
    """``[n_tiles]`` int64: entries in each subtile's list."""
    flatten_ids: Tensor
    """``[M]`` int64: row ``c * N + n`` of the per-Gaussian tables, tile-major, front to back."""


def _resolve_subtile_size(tile_size: int, subtile_size: Optional[int]) -> int:
    """``subtile_size``, a divisor of ``tile_size``; default 8 if it divides, else ``tile_size``."""
    if subtile_size is None:
        subtile_size = 8 if tile_size % 8 == 0 else tile_size
    if tile_size % subtile_size != 0:
        raise ValueError(f"subtile_size {subtile_size} must divide tile_size {tile_size}")
    return subtile_size


@torch.no_grad()
def _subtile_centres_and_outside(
    C: int, th: int, tw: int, ts: int, width: int, height: int, device: torch.device
) -> Tuple[Tensor, Tensor]:
    """Centres and out-of-image pixels of the ``n_tiles = C * th * tw`` subtiles of ``ts^2`` pixels.

    Returns:
        ``centres [n_tiles, 2]`` (x, y) pixel coordinates, float64, and ``outside [n_tiles, P]``
        (``P = ts^2``): pixels beyond the image, which start "done" (gsplat: done = !inside).
    """
    n_tiles = C * th * tw
    tile_ids = torch.arange(n_tiles, device=device)
    tile_yx = torch.stack([(tile_ids // tw) % th, tile_ids % tw], -1)  # [n_tiles, 2]
    centres = ((tile_yx.flip(-1) + 0.5) * ts).double()  # [n_tiles, 2] (x, y)
    local = torch.arange(ts, device=device)
    pix_y = tile_yx[:, 0, None, None] * ts + local[None, :, None]  # [n_tiles, ts, 1]
    pix_x = tile_yx[:, 1, None, None] * ts + local[None, None, :]  # [n_tiles, 1, ts]
    outside = ((pix_y >= height) | (pix_x >= width)).reshape(n_tiles, ts * ts)  # [n_tiles, P]
    return centres, outside


def _gaussian_tables(
    means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor
) -> Tuple[Tensor, Tensor]:
    """Differentiable per-Gaussian tables with one padding row (index ``C * N``, alpha = 0).

    Returns:
        ``table [C*N + 1, 6]`` (mean_x, mean_y, conic a, b, c, log opacity) and
        ``col_table [C*N + 1, D]`` (colours).
    """
    C, N, D = colors.shape
    log_o = torch.log(opacities.clamp(min=1e-30))  # [C, N]
    table = torch.cat([means2d, conics, log_o[..., None]], dim=-1).reshape(C * N, 6)
    pad_row = torch.zeros(1, 6, dtype=table.dtype, device=colors.device)
    pad_row[0, 5] = _PAD_LOG_OPACITY
    table = torch.cat([table, pad_row], 0)  # [C*N + 1, 6]
    col_table = torch.cat([colors.reshape(C * N, D), colors.new_zeros(1, D)], 0)  # [C*N + 1, D]
    return table, col_table


def _absgrad_accumulator(means2d: Tensor, device: torch.device) -> Tensor:
    """``[C*N + 1, 2]`` zeros (the last row for the padding entry); its first ``C * N`` rows
    are attached as ``means2d.absgrad [C, N, 2]``. The compositing backward pass adds into it."""
    C, N = means2d.shape[:2]
    absgrad_acc = torch.zeros(C * N + 1, 2, dtype=means2d.dtype, device=device)
    means2d.absgrad = absgrad_acc[: C * N].view(C, N, 2)
    return absgrad_acc


@torch.no_grad()
def _chunk_gids(lists: _SubtileLists, act: Tensor, k0: int, k_chunk: int, pad_id: int) -> Tensor:
    """Table rows ``[A, B]`` of entries ``k0 .. k0 + B - 1`` of the lists of the active
    subtiles ``act [A]``, ``B = min(k_chunk, longest remaining list)``; ``pad_id`` past the
    end of a list."""
    M = lists.flatten_ids.numel()
    B = int(min(k_chunk, int((lists.counts[act] - k0).max())))
    pos = k0 + torch.arange(B, device=act.device)  # [B]
    valid = pos[None, :] < lists.counts[act, None]  # [A, B]
    ent = (lists.starts[act, None] + pos[None, :]).clamp(max=max(M - 1, 0))  # [A, B]
    return torch.where(valid, lists.flatten_ids[ent], torch.full_like(ent, pad_id))  # [A, B]


def _composite_row_blocks(
    table: Tensor,
    col_table: Tensor,
    gids: Tensor,
    centres: Tensor,
    act: Tensor,
    f: Tensor,
    T: Tensor,
    done: Tensor,
    absgrad_acc: Optional[Tensor],
    max_elements: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`_composite_chunk` on the active subtiles ``act [A]``, in blocks of rows of at
    most about ``max_elements`` (subtile, pixel, Gaussian) entries.

    Args:
        gids: ``[A, B]`` table rows; centres: ``[n_tiles, 2]`` (all subtiles); f: ``[P, 6]``.
        T: ``[A, P]`` transmittance so far; done: ``[A, P]`` stopped pixels.

    Returns:
        ``T_new [A, P]``, colour contribution ``[A, P, D]`` and ``done_new [A, P]``.
    """
    rows = max(1, max_elements // (f.shape[0] * gids.shape[1]))
    parts = []
    for s in range(0, act.numel(), rows):
        sl = slice(s, s + rows)
        parts.append(
            _composite_chunk(
                table, col_table, gids[sl], centres[act[sl]], f, T[sl], done[sl], absgrad_acc
            )
        )
    T_new = torch.cat([p[0] for p in parts])
    contrib = torch.cat([p[1] for p in parts])
    return T_new, contrib, torch.cat([p[2] for p in parts])


def _composite_subtiles(
    table: Tensor,
    col_table: Tensor,
    lists: _SubtileLists,
    centres: Tensor,
    outside: Tensor,
    f: Tensor,
    k_chunk: int,
    max_elements: int,
    absgrad_acc: Optional[Tensor],
) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
    """Composite all subtile lists, ``k_chunk`` entries per step; a subtile retires once its
    list is used up or all its pixels have stopped.

    Returns:
        Per retirement step: the retired subtile ids ``[R]``, their transmittance ``[R, P]``
        and colour ``[R, P, D]``.
    """
    P, D = f.shape[0], col_table.shape[1]
    idx_done: List[Tensor] = []  # retired subtiles ...
    T_done: List[Tensor] = []  # ... their final transmittance
    out_done: List[Tensor] = []  # ... and colours
    with torch.no_grad():
        act = torch.nonzero(lists.counts > 0).squeeze(-1)  # [A] active subtiles
        done = outside[act]  # [A, P]
    dtype, device = col_table.dtype, col_table.device
    T = torch.ones(act.numel(), P, dtype=dtype, device=device)  # [A, P]
    out = torch.zeros(act.numel(), P, D, dtype=dtype, device=device)  # [A, P, D]
    k0 = 0
    while act.numel() > 0:
        gids = _chunk_gids(lists, act, k0, k_chunk, pad_id=table.shape[0] - 1)  # [A, B]
        T, contrib, done = _composite_row_blocks(
            table, col_table, gids, centres, act, f, T, done, absgrad_acc, max_elements
        )
        out = out + contrib
        k0 += gids.shape[1]
        with torch.no_grad():
            keep = (lists.counts[act] > k0) & ~done.all(1)  # [A]
        if not bool(keep.all()):
            retire = ~keep
            idx_done.append(act[retire])
            T_done.append(T[retire])
            out_done.append(out[retire])
            act, T, out, done = act[keep], T[keep], out[keep], done[keep]
    return idx_done, T_done, out_done


def _scatter_retired(
    retired: Tuple[List[Tensor], List[Tensor], List[Tensor]],
    n_tiles: int,
    P: int,
    table: Tensor,
    col_table: Tensor,
) -> Tuple[Tensor, Tensor]:
    """Transmittance ``[n_tiles, P]`` (1 where nothing was composited) and colour
    ``[n_tiles, P, D]`` of all subtiles, from those :func:`_composite_subtiles` retired."""
    idx_done, T_done, out_done = retired
    dtype, device = col_table.dtype, col_table.device
    T_full = torch.ones(n_tiles, P, dtype=dtype, device=device)
    out_full = torch.zeros(n_tiles, P, col_table.shape[1], dtype=dtype, device=device)
    if idx_done:
        idx = torch.cat(idx_done)
        T_full = T_full.index_copy(0, idx, torch.cat(T_done))
        out_full = out_full.index_copy(0, idx, torch.cat(out_done))
    else:
        # keep the inputs in the graph (zero gradients) so that e.g. means2d.grad exists
        out_full = out_full + 0.0 * (table.sum() + col_table.sum())
    return T_full, out_full


def _untile(x: Tensor, C: int, th: int, tw: int, ts: int, height: int, width: int) -> Tensor:
    """``[C * th * tw, ts * ts, X]`` subtile pixels -> ``[C, height, width, X]`` (crops padding)."""
    x = x.reshape(C, th, tw, ts, ts, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(C, th * ts, tw * ts, -1)[:, :height, :width]


@torch.no_grad()
def _subtile_setup(
    means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
    tile_size: int, ts: int, th: int, tw: int, device: torch.device, dtype: torch.dtype,
) -> Tuple[_SubtileLists, Tensor, Tensor, Tensor]:
    """The work grid of ``n_tiles = C * th * tw`` subtiles of ``ts^2 = P`` pixels for Gaussians ``[C, N, ...]``.

    Returns:
        the depth-sorted subtile lists (:func:`_tile_lists` on :func:`_pixel_boxes`), ``centres [n_tiles, 2]``,
        ``outside [n_tiles, P]`` (:func:`_subtile_centres_and_outside`) and the pixel monomials ``f [P, 6]``.
    """
    C = depths.shape[0]
    box_lo, box_hi = _pixel_boxes(means2d, conics, opacities, radii, width, height, tile_size)
    lists = _SubtileLists(*_tile_lists(box_lo, box_hi, depths, ts, tw, th))
    centres, outside = _subtile_centres_and_outside(C, th, tw, ts, width, height, device)
    f = _pixel_monomials(ts, device, dtype)  # [P, 6]
    return lists, centres, outside, f


def _composite_image(
    retired: Tuple[List[Tensor], List[Tensor], List[Tensor]], table: Tensor, col_table: Tensor, C: int, th: int,
    tw: int, ts: int, width: int, height: int, backgrounds: Optional[Tensor],
) -> Tuple[Tensor, Tensor]:
    """``render [C, H, W, D]`` (over ``backgrounds [C, D]`` if given) and ``alphas [C, H, W, 1]`` from the
    subtiles :func:`_composite_subtiles` retired."""
    T_full, out_full = _scatter_retired(retired, C * th * tw, ts * ts, table, col_table)
    render = _untile(out_full, C, th, tw, ts, height, width)  # [C, H, W, D]
    T_img = _untile(T_full[..., None], C, th, tw, ts, height, width)  # [C, H, W, 1]
    if backgrounds is not None:
        render = render + T_img * backgrounds[:, None, None, :]
    return render, 1.0 - T_img


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,
    absgrad: bool = False,
    subtile_size: Optional[int] = None,
    k_chunk: int = 128,
    max_elements: int = 1 << 21,
) -> Tuple[Tensor, Tensor]:
    """Differentiable front-to-back alpha compositing over tiles (pure PyTorch).

    For pixel centre ``p = (j + 0.5, i + 0.5)`` and, in depth order, every Gaussian
    whose ``tile_size`` tile range covers the pixel's tile:
    ``alpha = min(0.999, o * exp(-sigma))``, skipped when ``alpha < 1/255``; the pixel
    stops before the first Gaussian that would bring its transmittance ``T`` to
    ``<= 1e-4``. ``render = sum c * alpha * T`` (``+ T * bg``), ``alphas = 1 - T``.

    Work is organised on a grid of ``subtile_size`` tiles (a divisor of
    ``tile_size``; default 8 when it divides, else ``tile_size``); each Gaussian
    is listed only in the subtiles where it can reach ``alpha >= 1/255``
    (:func:`_pixel_boxes`), which does not change the result. The depth-sorted
    lists are consumed ``k_chunk`` entries per subtile at a time, so subtiles whose
    pixels have all stopped drop out early; at most ``max_elements`` (subtile,
    pixel, Gaussian) entries are materialised per step.

    Args:
        means2d: ``[C, N, 2]``; conics: ``[C, N, 3]``; colors: ``[C, N, D]``;
        opacities: ``[C, N]``; radii: ``[C, N]`` (0 = culled); depths: ``[C, N]``.
        backgrounds: ``[C, D]`` or None.
        absgrad: attach ``means2d.absgrad`` ``[C, N, 2]`` (zeros, filled in backward
            with per-Gaussian sums over pixels of ``|d loss / d means2d|``).

    Returns:
        ``render [C, H, W, D]`` and ``alphas [C, H, W, 1]``; differentiable w.r.t.
        means2d, conics, colors and opacities.
    """
    C = colors.shape[0]
    ts = _resolve_subtile_size(tile_size, subtile_size)
    th, tw = math.ceil(height / ts), math.ceil(width / ts)
    lists, centres, outside, f = _subtile_setup(
        means2d, conics, opacities, radii, depths, width, height, tile_size, ts, th, tw, colors.device, colors.dtype
    )
    table, col_table = _gaussian_tables(means2d, conics, colors, opacities)  # [C*N + 1, 6 | D]
    absgrad_acc = _absgrad_accumulator(means2d, colors.device) if absgrad else None
    retired = _composite_subtiles(table, col_table, lists, centres, outside, f, k_chunk, max_elements, absgrad_acc)
    return _composite_image(retired, table, col_table, C, th, tw, ts, width, height, backgrounds)


def _project_for_raster(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
    height: int, near_plane: float, far_plane: float, eps2d: float, rasterize_mode: RasterizeMode,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``radii [C, N]``, ``means2d [C, N, 2]``, ``depths [C, N]``, ``conics [C, N, 3]`` and per-camera opacities
    ``[C, N]`` (times the antialiasing compensation in "antialiased" mode) of N Gaussians seen by C cameras."""
    radii, means2d, depths, conics, compensations = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=(rasterize_mode == "antialiased"),
    )  # fmt: skip
    opacities = opacities[None, :].expand(viewmats.shape[0], means.shape[0])  # [C, N]
    if compensations is not None:
        opacities = opacities * compensations
    return radii, means2d, depths, conics, opacities


def _check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
    render_mode: RenderMode, rasterize_mode: RasterizeMode,
) -> None:
    """Assert the shapes of :func:`rasterize_torch`'s Gaussian and camera inputs and its modes."""
    N = means.shape[0]
    C = viewmats.shape[0]
    assert means.shape == (N, 3), means.shape
    assert quats.shape == (N, 4), quats.shape
    assert scales.shape == (N, 3), scales.shape
    assert opacities.shape == (N,), opacities.shape
    assert viewmats.shape == (C, 4, 4), viewmats.shape
    assert Ks.shape == (C, 3, 3), Ks.shape
    assert render_mode in ("RGB", "D", "ED", "RGB+D", "RGB+ED"), render_mode
    assert rasterize_mode in ("classic", "antialiased"), rasterize_mode


def _view_colors(colors: Tensor, means: Tensor, viewmats: Tensor, sh_degree: Optional[int]) -> Tensor:
    """Per-camera colours ``[C, N, D]``: ``colors`` ``[N, D]`` or ``[C, N, D]`` as they are when ``sh_degree`` is
    None, else SH coefficients ``[N, K, 3]`` or ``[C, N, K, 3]`` evaluated in the direction from each camera centre
    to each mean ``[N, 3]`` (colour = ``max(SH(dir) + 0.5, 0)``, D = 3)."""
    N = means.shape[0]
    C = viewmats.shape[0]
    if sh_degree is None:
        assert (colors.dim() == 2 and colors.shape[0] == N) or (
            colors.dim() == 3 and colors.shape[:2] == (C, N)
        ), colors.shape
        if colors.dim() == 2:
            colors = colors[None].expand(C, -1, -1)  # [C, N, D]
        return colors
    assert (colors.dim() == 3 and colors.shape[0] == N and colors.shape[2] == 3) or (
        colors.dim() == 4 and colors.shape[:2] == (C, N) and colors.shape[3] == 3
    ), colors.shape
    shs = colors[None].expand(C, -1, -1, -1) if colors.dim() == 3 else colors  # [C, N, K, 3]
    campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
    dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
    return torch.clamp_min(eval_sh(sh_degree, dirs, shs) + 0.5, 0.0)  # [C, N, 3]


def _with_depth_channel(
    colors: Tensor, backgrounds: Optional[Tensor], depths: Tensor, render_mode: RenderMode
) -> Tuple[Tensor, Optional[Tensor]]:
    """The features to composite and their backgrounds for ``render_mode``: ``colors [C, N, D]`` with ``depths
    [C, N]`` appended ("RGB+D", "RGB+ED"; background 0), ``depths [C, N, 1]`` alone ("D", "ED"; background 0) or
    ``colors`` unchanged ("RGB"). ``backgrounds`` is ``[C, D]`` or None."""
    C = depths.shape[0]
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)
    return colors, backgrounds


def _tiles_per_gaussian(
    means2d: Tensor, radii: Tensor, width: int, height: int, tile_size: int
) -> Tuple[int, int, Tensor]:
    """``tile_width``, ``tile_height`` and the number of gsplat tiles each Gaussian touches, ``[C, N]`` int32."""
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    t_lo, t_hi = tile_ranges(means2d, radii, tile_size, tile_width, tile_height)
    tiles_per_gauss = (t_hi - t_lo).prod(-1).to(torch.int32)  # [C, N]
    return tile_width, tile_height, tiles_per_gauss


def _expected_depth(render: Tensor, alphas: Tensor, render_mode: RenderMode) -> Tensor:
    """``render [C, H, W, X]`` with its last (accumulated depth) channel divided by ``alphas [C, H, W, 1]`` in the
    expected-depth modes "ED" and "RGB+ED"; unchanged otherwise."""
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    return render


def _meta_info(
    radii: Tensor, means2d: Tensor, depths: Tensor, conics: Tensor, opacities: Tensor, tile_width: int,
    tile_height: int, tiles_per_gauss: Tensor, width: int, height: int, tile_size: int,
) -> Dict[str, Any]:
    """gsplat's ``meta`` dict (unpacked mode) of a render of Gaussians ``[C, N, ...]``."""
    return {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": radii.shape[0],
    }


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: RasterizeMode = "classic",
    absgrad: bool = False,
    tile_size: int = 16,
    subtile_size: Optional[int] = None,
    k_chunk: int = 128,
    max_elements: int = 1 << 21,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Pure-PyTorch equivalent of ``gsplat.rasterization(..., packed=False)``.

    See :func:`rasterize` for the arguments. ``subtile_size``, ``k_chunk`` and
    ``max_elements`` tune memory and speed only (see :func:`rasterize_to_pixels`).

    Returns:
        ``render [C, H, W, X]``, ``alphas [C, H, W, 1]`` and the gsplat ``meta`` dict
        (``means2d`` [C, N, 2] is a non-leaf tensor of the graph; ``radii`` [C, N]
        int32; ``width``, ``height``, ``n_cameras``, ``tile_size``, ``depths``,
        ``conics``, ``opacities``, ``gaussian_ids=None``, ``camera_ids=None``,
        ``tile_width``, ``tile_height``, ``tiles_per_gauss``). gsplat's
        ``isect_ids``, ``flatten_ids`` and ``isect_offsets`` are not provided: the
        internal lists are built on a finer grid.
    """
    _check_inputs(means, quats, scales, opacities, viewmats, Ks, render_mode, rasterize_mode)
    radii, means2d, depths, conics, opacities = _project_for_raster(
        means, quats, scales, opacities, viewmats, Ks, width, height, near_plane, far_plane, eps2d, rasterize_mode
    )
    colors = _view_colors(colors, means, viewmats, sh_degree)  # [C, N, D]
    colors, backgrounds = _with_depth_channel(colors, backgrounds, depths, render_mode)
    tile_width, tile_height, tiles_per_gauss = _tiles_per_gaussian(means2d, radii, width, height, tile_size)
    render, alphas = rasterize_to_pixels(
        means2d, conics, colors, opacities, radii, depths, width, height, tile_size,
        backgrounds=backgrounds, absgrad=absgrad, subtile_size=subtile_size,
        k_chunk=k_chunk, max_elements=max_elements,
    )  # fmt: skip
    render = _expected_depth(render, alphas, render_mode)
    info = _meta_info(
        radii, means2d, depths, conics, opacities, tile_width, tile_height, tiles_per_gauss, width, height, tile_size
    )
    return render, alphas, info



# ----------------------------------------------------------------------------
# Label weights: what each Gaussian contributes to the pixels of each label
# ----------------------------------------------------------------------------


@torch.no_grad()
def _subtile_label_slots(label_maps: Tensor, th: int, tw: int, ts: int) -> Tuple[Tensor, Tensor]:
    """The distinct labels of each subtile and each pixel's slots among them.

    Args:
        label_maps: ``[C, H, W, K]`` long, K labels per pixel (-1: none).

    Returns:
        ``slot_labels [n_tiles, U]`` long (each subtile's distinct labels, -1 for none and unused slots) and
        ``pixel_slots [n_tiles, P, K]`` long in ``[0, U)``, subtiles numbered as :func:`_tile_lists` numbers them.
    """
    C, height, width, K = label_maps.shape
    padded = label_maps.new_full((C, th * ts, tw * ts, K), -1)
    padded[:, :height, :width] = label_maps
    tiles = padded.reshape(C, th, ts, tw, ts, K).permute(0, 1, 3, 2, 4, 5).reshape(C * th * tw, ts * ts * K)
    sorted_labels, order = tiles.sort(dim=1)
    first = torch.ones_like(sorted_labels, dtype=torch.bool)
    first[:, 1:] = sorted_labels[:, 1:] != sorted_labels[:, :-1]
    sorted_slots = first.cumsum(dim=1) - 1  # [n_tiles, P * K]
    slot_labels = sorted_labels.new_full((tiles.shape[0], int(sorted_slots[:, -1].max()) + 1), -1)
    slot_labels.scatter_(1, sorted_slots, sorted_labels)
    pixel_slots = torch.empty_like(sorted_slots).scatter_(1, order, sorted_slots)
    return slot_labels, pixel_slots.view(tiles.shape[0], ts * ts, K)


@torch.no_grad()
def _chunk_label_weights(
    w: Tensor, T: Tensor, gids: Tensor, pixel_slots: Tensor, slot_labels: Tensor, num_rows: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Per (table row, label) the weight ``sum_p T_p w_pj`` of one chunk's entries over the pixels of each label.

    Args:
        w: ``[A, P, B]`` blending weights; T: ``[A, P]``; gids: ``[A, B]`` table rows (``num_rows``: padding);
        pixel_slots: ``[A, P, K]``; slot_labels: ``[A, U]``.

    Returns:
        table rows ``[E]``, labels ``[E]`` and weights ``[E]`` of the non-zero sums.
    """
    A, P, K = pixel_slots.shape
    pixel_weights = T[..., None].expand(A, P, K).to(w.dtype)
    by_slot = w.new_zeros(A, P, slot_labels.shape[1]).scatter_add_(2, pixel_slots, pixel_weights)  # [A, P, U]
    sums = torch.bmm(w.transpose(1, 2), by_slot)  # [A, B, U]
    tile, entry, slot = torch.nonzero(sums, as_tuple=True)
    rows, labels = gids[tile, entry], slot_labels[tile, slot]
    keep = (rows < num_rows) & (labels >= 0)
    return rows[keep], labels[keep], sums[tile, entry, slot][keep]


@torch.no_grad()
def _collect_label_weights(
    table: Tensor, lists: _SubtileLists, centres: Tensor, outside: Tensor, f: Tensor, pixel_slots: Tensor,
    slot_labels: Tensor, pad_id: int, k_chunk: int, max_elements: int,
) -> List[Tuple[Tensor, Tensor, Tensor]]:
    """Walk all subtile lists as :func:`_composite_subtiles` does (``k_chunk`` entries per step, rows in blocks of
    about ``max_elements`` entries), without colours or autograd, collecting :func:`_chunk_label_weights`.

    Args:
        table: ``[pad_id + 1, 6]`` (:func:`_gaussian_tables`); centres: ``[n_tiles, 2]``; outside: ``[n_tiles, P]``;
        f: ``[P, 6]``; pixel_slots: ``[n_tiles, P, K]``; slot_labels: ``[n_tiles, U]``.

    Returns:
        Per chunk and block of rows: table rows ``[E]``, labels ``[E]`` and weights ``[E]``.
    """
    act = torch.nonzero(lists.counts > 0).squeeze(-1)  # [A] active subtiles
    done = outside[act]  # [A, P]
    T = torch.ones(act.numel(), f.shape[0], dtype=f.dtype, device=f.device)  # [A, P]
    found: List[Tuple[Tensor, Tensor, Tensor]] = []
    k0 = 0
    while act.numel() > 0:
        gids = _chunk_gids(lists, act, k0, k_chunk, pad_id=pad_id)  # [A, B]
        rows = max(1, max_elements // (f.shape[0] * gids.shape[1]))
        for start in range(0, act.numel(), rows):
            block = slice(start, start + rows)
            g = table.index_select(0, gids[block].flatten()).view(-1, gids.shape[1], 6)
            coeffs = _log_alpha_coeffs(g, centres[act[block]]).to(f.dtype)  # [a, 6, B]
            may_clamp = bool((g[..., 5] > math.log(ALPHA_MAX)).any())
            w, _, t_end, done[block], _ = _blend_weights(coeffs, f, T[block], done[block], may_clamp)
            found.append(_chunk_label_weights(w, T[block], gids[block], pixel_slots[act[block]],
                                              slot_labels[act[block]], pad_id))
            T[block] = T[block] * t_end
        k0 += gids.shape[1]
        keep = (lists.counts[act] > k0) & ~done.all(1)  # [A]
        act, T, done = act[keep], T[keep], done[keep]
    return found


def _concat_label_weights(
    found: List[Tuple[Tensor, Tensor, Tensor]], N: int, device: torch.device, dtype: torch.dtype
) -> Tuple[Tensor, Tensor, Tensor]:
    """Gaussian ids ``[E]`` (table rows modulo ``N``), labels ``[E]`` and weights ``[E]`` (``dtype``) of all the
    parts :func:`_collect_label_weights` found; empty tensors on ``device`` if none."""
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, dtype=dtype, device=device)
    rows, labels, weights = (torch.cat(parts) for parts in zip(*found))
    return rows % N, labels, weights


@torch.no_grad()
def rasterize_label_weights(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    label_maps: Tensor,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    rasterize_mode: RasterizeMode = "classic",
    tile_size: int = 16,
    subtile_size: Optional[int] = None,
    k_chunk: int = 128,
    max_elements: int = 1 << 21,
) -> Tuple[Tensor, Tensor, Tensor]:
    """The rendering weight ``alpha_i T_i`` that each Gaussian gives to the pixels of each label, in one forward
    pass without autograd: what the gradient of ``sum_p render(c)_p[label_p]`` with respect to the colours ``c``
    gives, in memory bounded by one chunk's ``[A, P, B]`` work and the labels one subtile shows, whatever the
    number of labels.

    Args:
        means, quats, scales, opacities, viewmats, Ks, width, height, ...: as :func:`rasterize_torch`.
        label_maps: ``[C, H, W]`` or ``[C, H, W, K]`` long, K labels per pixel, each voted for with the full
            weight (-1: none).

    Returns:
        Gaussian ids ``[E]`` long in ``[0, N)``, labels ``[E]`` long and weights ``[E]``, summed per subtile and
        chunk of entries (not over them: a (Gaussian, label) pair can occur more than once).
    """
    N, C = means.shape[0], viewmats.shape[0]
    label_maps = label_maps if label_maps.dim() == 4 else label_maps[..., None]
    radii, means2d, depths, conics, opacities = _project_for_raster(
        means, quats, scales, opacities, viewmats, Ks, width, height, near_plane, far_plane, eps2d, rasterize_mode
    )
    ts = _resolve_subtile_size(tile_size, subtile_size)
    th, tw = math.ceil(height / ts), math.ceil(width / ts)
    lists, centres, outside, f = _subtile_setup(
        means2d, conics, opacities, radii, depths, width, height, tile_size, ts, th, tw, means.device, means.dtype
    )
    table, _ = _gaussian_tables(means2d, conics, means2d.new_zeros(C, N, 1), opacities)  # [C*N + 1, 6]
    slot_labels, pixel_slots = _subtile_label_slots(label_maps.to(means.device), th, tw, ts)
    found = _collect_label_weights(
        table, lists, centres, outside, f, pixel_slots, slot_labels, C * N, k_chunk, max_elements
    )
    return _concat_label_weights(found, N, means.device, f.dtype)
