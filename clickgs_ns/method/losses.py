"""Feature-stage losses of Click-Gaussian (everything except Global Feature-guided Learning).

Each Gaussian i has a feature f_i in R^D (D = 24). Its coarse feature is ``f[..., :coarse_dim]`` (12 channels);
its fine feature is the whole vector ``f[..., :D]`` (the coarse half concatenated with fbar = ``f[..., coarse_dim:]``),
the "granularity prior" of the paper. Rendered feature maps F [H, W, D] come from alpha-blending the f_i.

Terms (docs/method.md, section 3):

- contrastive: S^l(p, q) = cos(F^l_p, F^l_q) over pairs of sampled pixels labelled at level l;
  L_pos^l = -mean_{same id} S^l, L_neg^l = mean_{different id} [S^l > tau^l] S^l,
  L_cont = sum_l L_pos^l + negative_weight * sum_l L_neg^l, except that the fine pairs in different coarse
  segments weigh cross_object_negative_weight (1). In the fine negative term the coarse half is detached.
- L_3Dnorm = mean_i (||f_i^c|| - 1)^2 + (||fbar_i|| - 1)^2.
- L_2Dnorm = mean_p sum_l (||F^l_p|| - r^l)^2.
- L_spatial = -mean over sampled Gaussians i and their K nearest neighbours k of cos(f_i, f_k).

Pair conventions of the contrastive terms (both documented again on ``contrastive_losses``):

- Pairs are ordered pairs (p, q) with p != q (the diagonal p == q is excluded; since cos is symmetric the means
  equal those over unordered pairs). The diagonal only ever belongs to the "same id" set, where it would add a
  constant cos = 1 that carries no signal.
- In L_neg, a pair with different ids whose similarity is at or below the margin contributes 0 but still counts in
  the denominator: the mean is over all different-id pairs, so the loss shrinks as more pairs clear the margin.
- An empty pair set gives a zero that is connected to the autograd graph (never NaN).

Memory: the same-id sums are computed from per-segment sums of the unit features (sum_{p,q in s} u_p . u_q =
||sum_{p in s} u_p||^2), never as a P x P matrix. The negative terms need the P x P similarities because of the
margin indicator; they are computed in row blocks of ``pair_chunk_rows`` rows, one level at a time, and keep only
a boolean [P, P] mask per level for the backward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clickgs_ns.levels import fine_only_channels, level_channels


@dataclass
class FeatureLossConfig:
    """Weights, margins and sampling sizes of the feature-stage losses (docs/method.md, sections 3 and 7)."""

    num_sampled_pixels: int = 10000
    """Pixels sampled per training step for the contrastive and 2D-norm terms (P)."""
    coarse_margin: float = 0.5
    """tau^c: different-id pixel pairs are pushed apart at the coarse level only while their cosine exceeds this."""
    fine_margin: float = 0.75
    """tau^f: different-id pixel pairs are pushed apart at the fine level only while their cosine exceeds this."""
    negative_weight: float = 0.1
    """Weight of the negative term in L_cont = L_pos + negative_weight * L_neg."""
    cross_object_negative_weight: Optional[float] = 1.0
    """Weight of the fine negative pairs whose pixels also lie in different coarse segments of the view: such a
    pair weighs what a positive pair does (``negative_normalisation``), the pairs inside one coarse segment keep
    ``negative_weight``; None: ``negative_weight`` for every fine pair (the paper). It pushes only the fine-only
    channels (the coarse half is detached). Where the coarse masks draw a boundary, the fine level separates at
    full weight: the ground around an object's base and the base, or two parts that some views' coarse masks
    split an object along, which the views whose masks merge them had pulled together ten times harder. Inside a
    coarse segment the masks' random cuts of a part stay at 0.1 (at 1 they cut parts into pieces). Chosen on the
    development split (docs/benchmarks.md, "Fine negatives across coarse boundaries")."""
    negative_normalisation: Literal["positive_pairs", "negative_pairs"] = "positive_pairs"
    """"negative_pairs" (the paper): L_neg is a mean over the different-id pairs. "positive_pairs" (this project's
    default): its sum is divided by the number of same-id pairs instead, so that one pair weighs the same in both
    terms (times ``negative_weight``). With importance sampling a view of S segments has about S - 1 times more
    different-id than same-id pairs, so under the paper's mean a pair of objects (or parts) that a noisy mask
    merges in a few views is pulled together harder than all the other views push it apart (measured: the
    snowman's head and body, and a table and a lamp, ended with one feature)."""
    norm3d_weight: float = 0.2
    """Weight of L_3Dnorm (per-Gaussian half-feature norms pulled to 1) in the total loss."""
    norm2d_weight: float = 0.2
    """Weight of L_2Dnorm (rendered feature norms pulled to r^c, r^f) in the total loss."""
    spatial_weight: float = 0.5
    """Weight of L_spatial (neighbouring Gaussians have similar features) in the total loss."""
    coarse_norm_target: float = 1.0
    """r^c: target norm of the rendered coarse feature; also the target norm of each per-Gaussian half (3D norm)."""
    fine_norm_target: float = math.sqrt(2)
    """r^f: target norm of the rendered fine feature (two unit halves)."""
    spatial_num_gaussians: int = 100000
    """Gaussians sampled (once) as anchors of the spatial term."""
    spatial_num_neighbours: int = 5
    """K: nearest neighbours by centre of each anchor Gaussian in the spatial term."""
    importance_sampling: bool = True
    """Sample pixels with probability proportional to sum over levels of 1/area of their segment (else uniformly
    over labelled pixels)."""
    pair_chunk_rows: int = 2048
    """Rows of the P x P similarity matrix computed at once in the negative terms (memory only; same result)."""


# ----------------------------------------------------------------------------------------------------------------
# helpers


def graph_zero(x: Tensor) -> Tensor:
    """A scalar 0 connected to ``x``'s autograd graph (its gradient is zero; never NaN, even if ``x`` holds inf)."""
    return x.reshape(-1)[:0].sum()


def _safe_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` for a scalar count, or a graph-connected 0 where count == 0 (no host sync)."""
    count = count.to(total.dtype)
    return torch.where(count > 0, total / count.clamp(min=1), total * 0)


def _unit(features: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm; an all-zero row stays zero. [P, D] -> [P, D]."""
    return F.normalize(features, dim=-1)


def _segment_counts(ids: Tensor) -> Tuple[Tensor, Tensor]:
    """Compact segment index of each element and the size of each segment.

    Args:
        ids: [P] integer ids (arbitrary values).
    Returns:
        segment: [P] long in [0, S); counts: [S] long.
    """
    _, segment, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    return segment, counts


# ----------------------------------------------------------------------------------------------------------------
# pixel sampling


def sample_pixels(
    coarse_ids: Tensor,
    fine_ids: Tensor,
    num_samples: int,
    generator: Optional[torch.Generator] = None,
    importance: bool = True,
) -> Tensor:
    """Sample flat pixel indices, with replacement, among pixels labelled at one level at least.

    With ``importance``, a pixel's probability is proportional to sum over levels l of 1/area^l(pixel), where
    area^l is the pixel count of its segment at level l and levels where its id is -1 are left out. Every segment
    of a level therefore gets the same share of that level's half of the samples, so small masks are not drowned
    by large ones. Without ``importance``, sampling is uniform over labelled pixels. Pixels with id -1 at both
    levels are never returned.

    Sampling is with replacement (so a small mask can be sampled more often than it has pixels).

    Args:
        coarse_ids: [H, W] or [H*W] integer ids (any integer dtype), -1 = unlabelled.
        fine_ids: same shape as ``coarse_ids``.
        num_samples: number of samples P.
        generator: optional torch.Generator for reproducibility (its device is used to draw the random numbers).
        importance: importance sampling (True) or uniform over labelled pixels (False).
    Returns:
        [P] long flat pixel indices on ``coarse_ids``' device; empty ([0]) when no pixel is labelled.
    """
    if coarse_ids.shape != fine_ids.shape:
        raise ValueError(f"coarse_ids {tuple(coarse_ids.shape)} and fine_ids {tuple(fine_ids.shape)} differ")
    device = coarse_ids.device
    coarse = coarse_ids.reshape(-1).long()
    fine = fine_ids.to(device).reshape(-1).long()
    if importance:
        weights = torch.zeros(coarse.shape, dtype=torch.float64, device=device)  # [H*W]
        for ids in (coarse, fine):
            segment, counts = _segment_counts(ids)
            inverse_area = 1.0 / counts.to(torch.float64)[segment]  # [H*W]
            weights = weights + torch.where(ids >= 0, inverse_area, torch.zeros_like(inverse_area))
    else:
        weights = ((coarse >= 0) | (fine >= 0)).to(torch.float64)  # [H*W]
    if num_samples <= 0 or weights.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    positive = torch.nonzero(weights > 0).squeeze(-1)  # [L]
    if positive.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=device)

    # inverse-CDF sampling: no category limit (unlike torch.multinomial), float64 for ~1e7 pixels
    cdf = torch.cumsum(weights, dim=0)  # [H*W]
    rand_device = generator.device if generator is not None else device
    uniform = torch.rand(num_samples, generator=generator, device=rand_device, dtype=torch.float64).to(device)
    targets = uniform * cdf[-1]  # [P] in [0, total)
    # first index whose cdf exceeds the target: zero-weight pixels (cdf equal to their predecessor) are never hit
    indices = torch.searchsorted(cdf, targets, right=True)  # [P]
    # rounding can put a target at the very end; send it to the last labelled pixel
    return torch.minimum(indices, positive[-1])


# ----------------------------------------------------------------------------------------------------------------
# contrastive terms


def positive_mean_cosine(features: Tensor, ids: Tensor) -> Tensor:
    """Mean cosine over ordered pairs p != q with ids[p] == ids[q] >= 0, without a P x P matrix.

    sum_{p != q, same id} u_p . u_q = sum_s ||sum_{p in s} u_p||^2 - sum_p ||u_p||^2 with u the unit features.

    Args:
        features: [P, D] features of the sampled pixels at one level.
        ids: [P] integer ids, -1 = unlabelled (ignored).
    Returns:
        scalar mean cosine (0, graph-connected, when there is no such pair).
    """
    valid = ids >= 0  # [P]
    unit = _unit(features[valid])  # [V, D]
    if unit.shape[0] == 0:
        return graph_zero(features)
    segment, counts = _segment_counts(ids[valid].long())  # [V], [S]
    segment_sums = torch.zeros(
        counts.shape[0], unit.shape[1], dtype=unit.dtype, device=unit.device
    ).index_add(0, segment, unit)  # [S, D]
    total = segment_sums.pow(2).sum() - unit.pow(2).sum()
    num_pairs = (counts * (counts - 1)).sum()
    return _safe_mean(total, num_pairs)


def negative_mean_cosine(features: Tensor, ids: Tensor, margin: float, chunk_rows: int,
                         groups: Optional[Tensor] = None) -> Tensor:
    """Mean over ordered pairs with different ids (both >= 0) of [cos > margin] * cos; given ``groups``, the part of
    it from the pairs whose groups also differ, both >= 0 (the same denominator).

    Pairs at or below the margin contribute 0 but count in the denominator (the number of different-id pairs).
    The indicator is not differentiated. Computed in blocks of ``chunk_rows`` rows of the [P, P] similarity matrix.

    Args:
        features: [P, D] features of the sampled pixels at one level (detach parts beforehand as needed).
        ids: [P] integer ids, -1 = unlabelled (ignored).
        margin: tau^l.
        chunk_rows: rows of the similarity matrix computed at once.
        groups: optional [P] integer ids of a coarser grouping (say, the coarse ids), -1 = none.
    Returns:
        scalar (0, graph-connected, when there is no different-id pair).
    """
    valid = ids >= 0  # [P]
    unit = _unit(features[valid])  # [V, D]
    labels = ids[valid].long()  # [V]
    groups = None if groups is None else groups[valid].long()  # [V]
    num_valid = unit.shape[0]
    if num_valid == 0:
        return graph_zero(features)
    _, counts = _segment_counts(labels)  # [S]
    num_pairs = num_valid * num_valid - counts.pow(2).sum()  # the diagonal is always a same-id pair
    total = graph_zero(unit)
    chunk_rows = max(1, int(chunk_rows))
    for start in range(0, num_valid, chunk_rows):
        stop = min(start + chunk_rows, num_valid)
        similarity = unit[start:stop] @ unit.T  # [R, V]
        keep = (similarity.detach() > margin) & (labels[start:stop, None] != labels[None, :])  # [R, V] bool
        if groups is not None:
            keep = keep & (groups[start:stop, None] != groups[None, :]) & (groups[start:stop, None] >= 0) & (
                groups[None, :] >= 0)
        total = total + torch.where(keep, similarity, 0.0).sum()
    return _safe_mean(total, num_pairs)


def contrastive_losses(
    pixel_features: Tensor, coarse_ids: Tensor, fine_ids: Tensor, config: FeatureLossConfig, coarse_dim: int
) -> Dict[str, Tensor]:
    """Unweighted positive and negative contrastive terms at both levels.

    Pairs are ordered pairs (p, q), p != q (diagonal excluded), with both ids >= 0 at that level; a pixel with id -1
    at one level is ignored at that level only. Negative pairs at or below the margin contribute 0 but count in the
    denominator. In the fine negative term the coarse half is detached: F^f = cat(stopgrad(F^c), Fbar) before
    normalising; the fine positive term uses the full fine feature with gradients.

    Args:
        pixel_features: [P, D] rendered features of the sampled pixels (D = 24).
        coarse_ids: [P] integer coarse ids, -1 = unlabelled.
        fine_ids: [P] integer fine ids, -1 = unlabelled.
        config: margins and pair_chunk_rows are used.
        coarse_dim: leading channels that form the coarse feature (the model's ``coarse_dim``).
    Returns:
        {"pos_coarse", "pos_fine", "neg_coarse", "neg_fine"}: scalars; pos_* = -mean same-id cosine.
    """
    coarse_ids = coarse_ids.to(pixel_features.device).reshape(-1)
    fine_ids = fine_ids.to(pixel_features.device).reshape(-1)
    coarse_features = level_channels(pixel_features, "coarse", coarse_dim)  # [P, Dc]
    fine_features = level_channels(pixel_features, "fine", coarse_dim)  # [P, D]
    fine_features_coarse_detached = torch.cat(
        [coarse_features.detach(), fine_only_channels(pixel_features, coarse_dim)], dim=-1
    )  # [P, D]
    terms = {
        "pos_coarse": -positive_mean_cosine(coarse_features, coarse_ids),
        "pos_fine": -positive_mean_cosine(fine_features, fine_ids),
        "neg_coarse": negative_mean_cosine(coarse_features, coarse_ids, config.coarse_margin, config.pair_chunk_rows),
        "neg_fine": negative_mean_cosine(
            fine_features_coarse_detached, fine_ids, config.fine_margin, config.pair_chunk_rows
        ),
    }
    if config.cross_object_negative_weight is not None:
        terms["neg_fine_cross"] = negative_mean_cosine(
            fine_features_coarse_detached, fine_ids, config.fine_margin, config.pair_chunk_rows, groups=coarse_ids)
    if config.negative_normalisation == "positive_pairs":
        for level, ids in (("coarse", coarse_ids), ("fine", fine_ids)):
            same, different = pair_counts(ids)
            for name in (f"neg_{level}", f"neg_{level}_cross"):
                if name in terms:
                    terms[name] = terms[name] * (different / max(same, 1))
    elif config.negative_normalisation != "negative_pairs":
        raise ValueError(f"negative_normalisation must be 'negative_pairs' or 'positive_pairs', got "
                         f"{config.negative_normalisation!r}")
    return terms


def pair_counts(ids: Tensor) -> Tuple[int, int]:
    """Ordered pairs p != q with both ids >= 0: (same id, different id)."""
    valid = ids[ids >= 0].long()
    _, counts = _segment_counts(valid)
    same = int((counts * (counts - 1)).sum())
    return same, int(valid.numel()) ** 2 - int(counts.pow(2).sum())


def contrastive_loss(terms: Dict[str, Tensor], negative_weight: float,
                     cross_object_negative_weight: Optional[float] = None) -> Tensor:
    """L_cont = (pos_coarse + pos_fine) + negative_weight * (neg_coarse + neg_fine) from ``contrastive_losses``; with
    ``cross_object_negative_weight`` (and "neg_fine_cross" among the terms) the fine pairs in different coarse
    segments weigh that instead."""
    loss = (terms["pos_coarse"] + terms["pos_fine"]) + negative_weight * (terms["neg_coarse"] + terms["neg_fine"])
    if cross_object_negative_weight is not None and "neg_fine_cross" in terms:
        loss = loss + (cross_object_negative_weight - negative_weight) * terms["neg_fine_cross"]
    return loss


# ----------------------------------------------------------------------------------------------------------------
# norm regularisers


def norm3d_loss(gaussian_features: Tensor, coarse_dim: int, target: float = 1.0) -> Tensor:
    """mean_i (||f_i^c|| - target)^2 + (||fbar_i|| - target)^2, with f^c = f[:, :coarse_dim], fbar = f[:, coarse_dim:].

    Args:
        gaussian_features: [N, D] per-Gaussian features.
        coarse_dim: channels of the coarse half.
        target: target norm of each half (1 in the paper).
    Returns:
        scalar (0, graph-connected, when N == 0).
    """
    if gaussian_features.shape[0] == 0:
        return graph_zero(gaussian_features)
    coarse_norm = level_channels(gaussian_features, "coarse", coarse_dim).norm(dim=-1)  # [N]
    rest_norm = fine_only_channels(gaussian_features, coarse_dim).norm(dim=-1)  # [N]
    return ((coarse_norm - target).pow(2) + (rest_norm - target).pow(2)).mean()


def norm2d_loss(pixel_features: Tensor, coarse_dim: int, coarse_target: float, fine_target: float) -> Tensor:
    """mean_p (||F^c_p|| - coarse_target)^2 + (||F^f_p|| - fine_target)^2, F^c = F[:, :coarse_dim], F^f = F.

    Args:
        pixel_features: [P, D] rendered features of the sampled pixels.
        coarse_dim: channels of the coarse feature.
        coarse_target: r^c (1).
        fine_target: r^f (sqrt(2)).
    Returns:
        scalar (0, graph-connected, when P == 0).
    """
    if pixel_features.shape[0] == 0:
        return graph_zero(pixel_features)
    coarse_norm = level_channels(pixel_features, "coarse", coarse_dim).norm(dim=-1)  # [P]
    fine_norm = level_channels(pixel_features, "fine", coarse_dim).norm(dim=-1)  # [P]
    return ((coarse_norm - coarse_target).pow(2) + (fine_norm - fine_target).pow(2)).mean()


# ----------------------------------------------------------------------------------------------------------------
# spatial term


def nearest_neighbours(points: Tensor, num_neighbours: int, anchors: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """The ``num_neighbours`` nearest other points of each anchor, by a KD-tree on the CPU (scipy's cKDTree, all
    cores; about a second for N = 1M, M = 100k, K = 5 on 2 cores, ~3x faster than scikit-learn's).

    The project's one nearest-neighbour search: the spatial loss's index and the initial scales of new Gaussians.

    Args:
        points: [N, 3] (any device).
        num_neighbours: K; at most N - 1 are returned (K').
        anchors: [M] long indices of the points to query (default: all N).
    Returns:
        (distances [M, K'] float, indices [M, K'] long), nearest first, on the CPU; a point is never its own
        neighbour (with duplicate centres its twin may come first).
    """
    from scipy.spatial import cKDTree

    num_points = points.shape[0]
    anchors = torch.arange(num_points) if anchors is None else anchors.cpu()
    num_kept = min(max(0, int(num_neighbours)), max(num_points - 1, 0))
    if num_kept == 0 or len(anchors) == 0:
        return torch.zeros(len(anchors), num_kept), torch.zeros(len(anchors), num_kept, dtype=torch.long)
    cloud = points.detach().to("cpu", torch.float64).numpy()  # [N, 3]
    anchor_np = anchors.numpy()
    tree = cKDTree(cloud, balanced_tree=False)  # sliding-midpoint build: fastest for ~1e6 points
    distances, neighbours = tree.query(cloud[anchor_np], k=num_kept + 1, workers=-1)  # [M, K'+1], usually self first
    # drop the anchor itself; with duplicate centres it may be missing or not first: then drop the farthest
    is_self = neighbours == anchor_np[:, None]  # [M, K'+1]
    drop = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), num_kept)  # [M]
    keep = np.ones_like(is_self)
    keep[np.arange(len(drop)), drop] = False
    shape = (len(drop), num_kept)
    return (torch.from_numpy(distances[keep].reshape(shape)).float(),
            torch.from_numpy(neighbours[keep].reshape(shape).astype(np.int64)))


def build_knn_index(
    means: Tensor,
    num_neighbours: int,
    max_points: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """K nearest neighbours by centre of a random subset of Gaussians, excluding each point itself.

    Built once (the geometry is frozen in the feature stage) with ``nearest_neighbours``.

    Args:
        means: [N, 3] Gaussian centres (any device).
        num_neighbours: K.
        max_points: size of the random anchor subset, M = min(N, max_points) (all points when None).
        generator: optional CPU torch.Generator choosing the subset.
    Returns:
        [M, 1 + K'] long on ``means``' device: column 0 is the anchor's index, columns 1.. its neighbours, nearest
        first, with K' = min(K, N - 1) (so [M, 1] when N == 1 and [0, 1] when N == 0).
    """
    num_points = means.shape[0]
    num_anchors = num_points if max_points is None else min(num_points, int(max_points))
    if num_anchors < num_points:
        anchors = torch.randperm(num_points, generator=generator)[:num_anchors]  # [M]
    else:
        anchors = torch.arange(max(num_anchors, 0))
    _, neighbours = nearest_neighbours(means, num_neighbours, anchors)  # [M, K']
    return torch.cat([anchors[:, None], neighbours], dim=1).to(means.device)


def spatial_loss(gaussian_features: Tensor, knn: Tensor) -> Tensor:
    """-mean over anchors i and their neighbours k of cos(f_i, f_k), on the full D-dim features.

    Args:
        gaussian_features: [N, D] per-Gaussian features.
        knn: [M, 1 + K] long from ``build_knn_index`` (anchor first).
    Returns:
        scalar (0, graph-connected, when there is no neighbour pair).
    """
    if knn.shape[0] == 0 or knn.shape[1] < 2:
        return graph_zero(gaussian_features)
    knn = knn.to(gaussian_features.device)
    unit = _unit(gaussian_features)  # [N, D]
    anchors = unit[knn[:, 0]]  # [M, D]
    neighbours = unit[knn[:, 1:]]  # [M, K, D]
    return -(anchors[:, None, :] * neighbours).sum(dim=-1).mean()


# ----------------------------------------------------------------------------------------------------------------
# everything together


def feature_stage_losses(
    rendered_features: Tensor,
    coarse_ids: Tensor,
    fine_ids: Tensor,
    gaussian_features: Tensor,
    knn: Optional[Tensor],
    config: FeatureLossConfig,
    coarse_dim: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """All feature-stage losses of one training view (GFL excluded).

    Args:
        rendered_features: [H, W, D] rendered feature map (D = 24).
        coarse_ids: [H, W] integer coarse id map (int16/int32/int64, any device), -1 = unlabelled.
        fine_ids: [H, W] integer fine id map.
        gaussian_features: [N, D] per-Gaussian features.
        knn: [M, 1 + K] from ``build_knn_index`` (or None: spatial term is 0).
        config: FeatureLossConfig.
        coarse_dim: leading channels that form the coarse feature (the model's ``coarse_dim``).
        generator: optional torch.Generator for the pixel sampling.
    Returns:
        (weighted, terms): ``weighted`` has "contrastive_loss" (= L_pos + negative_weight * L_neg), "norm3d_loss",
        "norm2d_loss", "spatial_loss", whose sum is the total feature-stage loss without GFL; ``terms`` holds the
        unweighted "pos_coarse", "pos_fine", "neg_coarse", "neg_fine", "norm3d", "norm2d", "spatial" for logging.
    """
    height, width, dim = rendered_features.shape
    if tuple(coarse_ids.shape) != (height, width) or tuple(fine_ids.shape) != (height, width):
        raise ValueError(
            f"id maps coarse {tuple(coarse_ids.shape)} / fine {tuple(fine_ids.shape)} must match the rendered "
            f"features' [H, W] = {(height, width)} (are the masks at the training resolution?)"
        )
    device = rendered_features.device
    coarse_flat = coarse_ids.to(device).reshape(-1).long()  # [H*W]
    fine_flat = fine_ids.to(device).reshape(-1).long()  # [H*W]
    pixels = sample_pixels(
        coarse_flat, fine_flat, config.num_sampled_pixels, generator=generator, importance=config.importance_sampling
    )  # [P]
    pixel_features = rendered_features.reshape(-1, dim)[pixels]  # [P, D]

    terms = contrastive_losses(pixel_features, coarse_flat[pixels], fine_flat[pixels], config, coarse_dim)
    terms["norm3d"] = norm3d_loss(gaussian_features, coarse_dim, config.coarse_norm_target)
    terms["norm2d"] = norm2d_loss(pixel_features, coarse_dim, config.coarse_norm_target, config.fine_norm_target)
    terms["spatial"] = (
        spatial_loss(gaussian_features, knn) if knn is not None else graph_zero(gaussian_features)
    )
    weighted = {
        "contrastive_loss": contrastive_loss(terms, config.negative_weight, config.cross_object_negative_weight),
        "norm3d_loss": config.norm3d_weight * terms["norm3d"],
        "norm2d_loss": config.norm2d_weight * terms["norm2d"],
        "spatial_loss": config.spatial_weight * terms["spatial"],
    }
    return weighted, terms
