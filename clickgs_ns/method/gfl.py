"""Global Feature-guided Learning (GFL): the pure parts (mask averages, HDBSCAN candidates, assignment, losses).

Every ``update_every`` steps from the GFL start, the caller renders the feature maps of all training views without
gradients and, for each level l (coarse = ``f[..., :coarse_dim]``, fine = all D channels), averages the rendered
features over each SAM mask (``mask_average_features``). The mask averages of a level are L2-normalised and clustered
with HDBSCAN (``cluster_candidates``); the normalised mean of each cluster's members is one global feature candidate
g_c^l. Between updates, the per-Gaussian features are pulled to their nearest candidate and pushed away from the
others (``gfl_losses`` / ``gfl_level_losses``), see docs/method.md, section 4:

- c_i = argmax_c cos(f_i^l, g_c^l) (not differentiated);
- L_GFL_pos^l = -mean_i [cos(f_i^l, g_{c_i}) > positive_threshold] * cos(f_i^l, g_{c_i});
- L_GFL_neg^l = mean_i (1/C^l) sum_{c != c_i} [cos(f_i^l, g_c) > tau^l] * cos(f_i^l, g_c);
- L_GFL = sum_l L_GFL_pos^l + L_GFL_neg^l (weighted by ``loss_weight`` in the total loss).

The margins tau^l are the contrastive margins of ``FeatureLossConfig`` (coarse 0.5, fine 0.75); the caller passes them.
Candidates are constants: no gradient reaches them. With C^l <= 1 there is no negative term, so both terms of that
level are a graph-connected zero (the caller should treat a "single_cluster" result as "GFL off for that level").

Memory: cosines to the candidates are computed without gradients in row blocks of about ``chunk_elements`` entries;
the differentiable part of the loss is then an [N, D] dot product with precomputed targets (the indicators are not
differentiated, and cos(f_i, g_c) = u_i . g_c is linear in the unit feature u_i), so no [N, C] matrix is kept for
the backward pass.

Nothing here imports ``hdbscan`` at module import time (config modules import ``GFLConfig``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from clickgs_ns.levels import check_level, level_channels
from clickgs_ns.method.losses import graph_zero

DEFAULT_CHUNK_ELEMENTS = 1 << 24
"""Default number of entries of a [rows, C] cosine block computed at once (64 MiB in float32)."""


@dataclass
class GFLConfig:
    """Schedule, clustering and loss settings of Global Feature-guided Learning (docs/method.md, sections 4 and 7)."""

    enabled: bool = True
    """Turn GFL on (candidates are clustered and the GFL loss is added from ``start_step``)."""
    start_step: int = 2000
    """First step of GFL, counted from the start of the feature stage."""
    update_every: int = 250
    """Re-render all training views and re-cluster the candidates every this many steps from ``start_step``."""
    loss_weight: float = 10.0
    """Weight of L_GFL (sum over levels of the positive and negative terms) in the total loss."""
    positive_threshold: float = 0.9
    """A Gaussian is pulled to its nearest candidate only while their cosine exceeds this."""
    coarse_cluster_epsilon: float = 1e-2
    """HDBSCAN cluster_selection_epsilon for the coarse level (Euclidean distance between unit vectors)."""
    fine_cluster_epsilon: float = 1e-3
    """HDBSCAN cluster_selection_epsilon for the fine level."""
    min_cluster_size_fraction: float = 0.05
    """HDBSCAN min_cluster_size = max(min_cluster_size_floor, round(fraction * number of training views))."""
    min_cluster_size_floor: int = 2
    """Lower bound of the HDBSCAN min_cluster_size (HDBSCAN needs at least 2)."""
    min_samples: Optional[int] = None
    """HDBSCAN min_samples (density estimate neighbourhood); None = min_cluster_size, as HDBSCAN does."""
    max_cluster_points: int = 5000
    """Cluster a random subsample of at most this many mask averages (HDBSCAN is slow past tens of thousands of
    points in 24-D: about 0.35 s for 5,000 but 7-12 s for 20,000 on 2 CPU cores); the candidates come from the
    subsample alone, and the mask averages left out are not used (nor counted in the cluster sizes)."""
    subsample_scales_min_cluster_size: bool = False
    """When subsampling, scale min_cluster_size by the kept fraction (keeps clusters of rarely seen objects but makes
    HDBSCAN noisier). Off: the absolute min_cluster_size is used on the subsample."""
    single_cluster_min_resultant: float = 0.9
    """When HDBSCAN labels every point noise (it never returns a single all-covering cluster), the points are still
    reported as one cluster ("single_cluster") if the norm of the mean of their unit vectors is at least this."""
    min_mask_pixels: int = 1
    """Masks with fewer rendered pixels than this are left out of the mask averages."""
    render_batch_views: int = 8
    """Training views rendered and averaged at once during a candidate update (memory only; same result)."""
    render_batch_pixels: int = 1 << 22
    """At most this many pixels per batch of views (memory only; views of 1920x1080 go two at a time)."""
    loss_num_gaussians: Optional[int] = 100000
    """Gaussians sampled (with replacement, new each step) for the GFL loss; None or 0 = all Gaussians."""
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
    """Entries of the [rows, C] cosine block computed at once in assignment and losses (memory only; same result)."""
    seed: int = 0
    """Seed of the clustering subsample."""


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _rows_per_chunk(num_columns: int, chunk_elements: int) -> int:
    """Rows of a [rows, num_columns] block with about ``chunk_elements`` entries (at least 1)."""
    return max(1, int(chunk_elements) // max(1, int(num_columns)))


def min_cluster_size_for(num_views: int, config: GFLConfig) -> int:
    """HDBSCAN min_cluster_size for ``num_views`` training views: max(floor, round(fraction * num_views)).

    Rounds halves up (2.5 -> 3), unlike Python's ``round``.
    """
    scaled = int(math.floor(config.min_cluster_size_fraction * max(0, int(num_views)) + 0.5))
    return max(int(config.min_cluster_size_floor), scaled)


# ----------------------------------------------------------------------------------------------------------------
# mask averages


def mask_average_features(feature_map: Tensor, ids: Tensor, min_pixels: int = 1) -> Tuple[Tensor, Tensor]:
    """Mean rendered feature over each mask of one view, without a loop over masks.

    Args:
        feature_map: [H, W, D] rendered feature map (any float dtype; summed in float32 or better).
        ids: [H, W] integer mask ids (any integer dtype, any device), -1 (or any negative) = no mask.
        min_pixels: masks with fewer pixels are dropped.
    Returns:
        (averages [S, D], pixel_counts [S] long), rows in ascending mask id, on ``feature_map``'s device.
    """
    if feature_map.dim() != 3:
        raise ValueError(f"feature_map must be [H, W, D], got {tuple(feature_map.shape)}")
    if tuple(ids.shape) != tuple(feature_map.shape[:2]):
        raise ValueError(f"ids {tuple(ids.shape)} must be [H, W] = {tuple(feature_map.shape[:2])}")
    dim = feature_map.shape[-1]
    accumulate_dtype = feature_map.dtype if feature_map.dtype in (torch.float32, torch.float64) else torch.float32
    flat_ids = ids.to(feature_map.device).reshape(-1).long()  # [H*W]
    valid = flat_ids >= 0
    mask_ids, segment, counts = torch.unique(flat_ids[valid], return_inverse=True, return_counts=True)  # [S']
    sums = torch.zeros(mask_ids.shape[0], dim, dtype=accumulate_dtype, device=feature_map.device).index_add_(
        0, segment, feature_map.reshape(-1, dim)[valid].to(accumulate_dtype)
    )  # [S', D]
    keep = counts >= max(1, int(min_pixels))  # [S']
    return sums[keep] / counts[keep][:, None].to(accumulate_dtype), counts[keep]


# ----------------------------------------------------------------------------------------------------------------
# clustering


@dataclass
class ClusterResult:
    """Global feature candidates of one level from one HDBSCAN run, with what happened."""

    candidates: Tensor
    """[C, D] unit candidates (normalised mean of each cluster's unit members), on the input's device and dtype."""
    sizes: Tensor
    """[C] long: members of each candidate's cluster among the clustered points."""
    status: str
    """"ok" (C >= 2), "single_cluster" (C == 1: no negative term, GFL should be off for this level),
    "no_clusters" (C == 0: every point is noise) or "too_few_points" (fewer points than min_cluster_size)."""
    message: str
    """What happened and with which settings (for the log)."""
    num_points: int
    """Usable input points (finite, non-zero rows)."""
    num_points_clustered: int
    """Points given to HDBSCAN (the subsample size when subsampling)."""
    num_noise: int
    """Clustered points labelled noise by HDBSCAN."""
    seconds: float
    """Wall time of the whole call."""
    min_cluster_size: int
    """min_cluster_size actually used."""
    min_samples: Optional[int]
    """min_samples actually used (None = min_cluster_size)."""
    epsilon: float
    """cluster_selection_epsilon used."""

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[0])


class _Outcome(NamedTuple):
    """What one clustering step found, before it becomes a ClusterResult."""

    candidates: np.ndarray
    """[C, D] float64 unit candidates."""
    sizes: Sequence[int]
    """[C] members of each candidate's cluster."""
    status: str
    message: str
    """Without the notes (they are appended by ``_cluster_result``)."""
    num_noise: int


def _hdbscan_min_cluster_size(requested: int) -> Tuple[int, List[str]]:
    """``requested`` raised to HDBSCAN's minimum of 2, and a note when it was raised."""
    min_cluster_size = max(2, requested)
    if min_cluster_size != requested:
        return min_cluster_size, [f"min_cluster_size raised from {requested} to 2 (HDBSCAN minimum)"]
    return min_cluster_size, []


def _usable_unit_rows(averages: Tensor) -> Tuple[np.ndarray, List[str]]:
    """The finite, non-zero rows of ``averages`` [M, D], L2-normalised, as float64 [M', D] on the CPU, and a note
    when rows were dropped."""
    points = averages.detach().to("cpu", torch.float64).numpy()  # [M, D]
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(points, axis=1)  # [M]
    usable = np.isfinite(points).all(axis=1) & np.isfinite(norms) & (norms > 0)  # [M]
    notes = []
    if not usable.all():
        notes.append(f"{int((~usable).sum())} of {len(points)} rows dropped (zero or non-finite)")
    return points[usable] / norms[usable, None], notes  # [M', D]


def _subsample_points(
    unit: np.ndarray, max_points: Optional[int], seed: int, min_cluster_size: int, scale_min_cluster_size: bool
) -> Tuple[np.ndarray, int, List[str]]:
    """The points to cluster and the min_cluster_size to use on them, with notes.

    All of ``unit`` [M', D] when ``max_points`` is None, <= 0 or >= M'; else ``max_points`` rows drawn without
    replacement by ``default_rng(seed)``, kept in input order, and (when ``scale_min_cluster_size``)
    min_cluster_size scaled by the kept fraction, halves rounded up, at least 2. Rows left out are dropped.
    """
    num_points = int(unit.shape[0])
    if max_points is None or not 0 < int(max_points) < num_points:
        return unit, min_cluster_size, []
    notes = []
    chosen = np.sort(np.random.default_rng(seed).choice(num_points, size=int(max_points), replace=False))  # [S]
    if scale_min_cluster_size:
        scaled = max(2, int(math.floor(min_cluster_size * int(max_points) / num_points + 0.5)))
        notes.append(f"min_cluster_size scaled from {min_cluster_size} to {scaled} for the subsample")
        min_cluster_size = scaled
    notes.append(f"clustered a random subsample of {int(max_points)} of {num_points} points (seed {seed})")
    return unit[chosen], min_cluster_size, notes


def _too_few_points_outcome(num_clustered: int, dim: int, min_cluster_size: int) -> _Outcome:
    """Fewer points than min_cluster_size: nothing is clustered (all points count as noise)."""
    return _Outcome(
        np.zeros((0, dim)), [], "too_few_points",
        f"{num_clustered} points < min_cluster_size {min_cluster_size}: nothing clustered "
        "(more views or masks, or a smaller min_cluster_size, would be needed)",
        num_clustered,
    )


def _hdbscan_outcome(
    points: np.ndarray,
    min_cluster_size: int,
    min_samples: Optional[int],
    epsilon: float,
    single_cluster_min_resultant: Optional[float],
) -> _Outcome:
    """HDBSCAN on the unit ``points`` [S, D] and the candidates of its clusters; an HDBSCAN error is "no_clusters"."""
    import hdbscan  # heavy import, kept out of module import

    settings = f"min_cluster_size={min_cluster_size}, min_samples={min_samples}, epsilon={epsilon:g}"
    try:
        labels = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            cluster_selection_epsilon=float(epsilon),
            metric="euclidean",
            core_dist_n_jobs=-1,
        ).fit(points).labels_
    except Exception as error:  # noqa: BLE001 - degenerate inputs must not stop training; say what failed
        return _Outcome(
            np.zeros((0, points.shape[1])), [], "no_clusters",
            f"HDBSCAN failed on {len(points)} points ({settings}): {type(error).__name__}: {error}",
            len(points),
        )
    return _labels_outcome(points, np.asarray(labels), settings, single_cluster_min_resultant)


def _cluster_means(points: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Normalised mean [C, D] and member count [C] of each cluster (label >= 0) of ``points`` [S, D], in
    ascending label order; noise (label < 0) is left out."""
    cluster_labels = np.unique(labels[labels >= 0])  # [C]
    candidates = np.zeros((len(cluster_labels), points.shape[1]))  # [C, D]
    sizes = np.zeros(len(cluster_labels), dtype=np.int64)  # [C]
    for row, label in enumerate(cluster_labels):  # one row per cluster (tens to hundreds)
        members = points[labels == label]
        mean = members.mean(axis=0)
        candidates[row] = mean / max(np.linalg.norm(mean), np.finfo(np.float64).tiny)
        sizes[row] = len(members)
    return candidates, sizes


def _labels_outcome(
    points: np.ndarray, labels: np.ndarray, settings: str, single_cluster_min_resultant: Optional[float]
) -> _Outcome:
    """"ok" (>= 2 clusters) or "single_cluster" (1) from HDBSCAN's ``labels`` [S] of ``points`` [S, D]; with no
    cluster, see ``_all_noise_outcome``."""
    num_clustered = len(points)
    num_noise = int((labels < 0).sum())
    candidates, sizes = _cluster_means(points, labels)  # [C, D], [C]
    if len(sizes) >= 2:
        return _Outcome(
            candidates, sizes, "ok",
            f"{len(sizes)} clusters from {num_clustered} points ({num_noise} noise; {settings})",
            num_noise,
        )
    if len(sizes) == 1:
        return _Outcome(
            candidates, sizes, "single_cluster",
            f"one cluster of {int(sizes[0])} from {num_clustered} points ({num_noise} noise; {settings}): "
            "no negative term, GFL should be off for this level",
            num_noise,
        )
    return _all_noise_outcome(points, settings, single_cluster_min_resultant)


def _all_noise_outcome(points: np.ndarray, settings: str, single_cluster_min_resultant: Optional[float]) -> _Outcome:
    """HDBSCAN labelled every point of ``points`` [S, D] noise: one "single_cluster" candidate (their normalised
    mean) when the mean resultant length is at least ``single_cluster_min_resultant``, else "no_clusters"."""
    num_clustered = len(points)
    mean = points.mean(axis=0)  # [D]
    resultant = float(np.linalg.norm(mean))
    if single_cluster_min_resultant is not None and resultant >= float(single_cluster_min_resultant):
        return _Outcome(
            (mean / resultant)[None], [num_clustered], "single_cluster",
            f"HDBSCAN labelled all {num_clustered} points noise ({settings}) but they are concentrated around one "
            f"direction (mean resultant length {resultant:.3f} >= {float(single_cluster_min_resultant):g}): one "
            "candidate, no negative term, GFL should be off for this level",
            num_clustered,
        )
    return _Outcome(
        np.zeros((0, points.shape[1])), [], "no_clusters",
        f"HDBSCAN labelled all {num_clustered} points noise ({settings}; mean resultant length {resultant:.3f}): "
        "no candidates (a smaller min_cluster_size or a larger epsilon may find some)",
        num_clustered,
    )


def _cluster_result(
    outcome: _Outcome, notes: List[str], like: Tensor, num_points: int, num_clustered: int,
    min_cluster_size: int, min_samples: Optional[int], epsilon: float, start: float,
) -> ClusterResult:
    """``outcome`` as a ClusterResult: candidates on ``like``'s device and (float) dtype, notes appended to the
    message, ``seconds`` counted from ``start`` (a ``time.perf_counter()`` value)."""
    message = f"{outcome.message} ({'; '.join(notes)})" if notes else outcome.message
    out_dtype = like.dtype if like.is_floating_point() else torch.float32
    candidates = np.ascontiguousarray(outcome.candidates).reshape(-1, int(like.shape[1]))  # [C, D]
    return ClusterResult(
        candidates=torch.from_numpy(candidates).to(like.device, out_dtype),
        sizes=torch.from_numpy(np.asarray(outcome.sizes, dtype=np.int64)).to(like.device),
        status=outcome.status,
        message=message,
        num_points=num_points,
        num_points_clustered=num_clustered,
        num_noise=outcome.num_noise,
        seconds=time.perf_counter() - start,
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        epsilon=float(epsilon),
    )


def cluster_candidates(
    averages: Tensor,
    min_cluster_size: int,
    epsilon: float,
    max_points: Optional[int] = None,
    min_samples: Optional[int] = None,
    seed: int = 0,
    scale_min_cluster_size: bool = False,
    single_cluster_min_resultant: Optional[float] = 0.9,
) -> ClusterResult:
    """HDBSCAN on L2-normalised mask averages; one unit candidate per cluster (noise dropped). Never raises on data.

    Rows that are not finite or are all zero are left out. When there are more than ``max_points`` rows, a random
    subsample of ``max_points`` rows (numpy ``default_rng(seed)``) is clustered and the candidates come from it
    alone: the rows left out count nowhere (not in ``sizes`` nor ``num_noise``).
    HDBSCAN (``hdbscan.HDBSCAN``, Euclidean metric on unit float64 vectors, all CPU cores for core distances)
    never returns one cluster covering everything; when it labels every point noise but the points are
    concentrated (norm of the mean unit vector >= ``single_cluster_min_resultant``), the result is
    "single_cluster" with their normalised mean as the only candidate.

    Args:
        averages: [M, D] mask-averaged features of one level (any device).
        min_cluster_size: HDBSCAN min_cluster_size (raised to 2 if lower).
        epsilon: HDBSCAN cluster_selection_epsilon.
        max_points: cluster at most this many points (None or <= 0: all).
        min_samples: HDBSCAN min_samples (None: min_cluster_size), capped at the number of clustered points.
        seed: seed of the subsample.
        scale_min_cluster_size: when subsampling, scale min_cluster_size by the kept fraction (at least 2).
        single_cluster_min_resultant: see above; None disables the single-cluster check.
    Returns:
        ClusterResult.
    """
    start = time.perf_counter()
    if averages.dim() != 2:
        raise ValueError(f"averages must be [M, D], got {tuple(averages.shape)}")
    min_cluster_size, raised_notes = _hdbscan_min_cluster_size(int(min_cluster_size))
    unit, dropped_notes = _usable_unit_rows(averages)  # [M', D]
    clustered, min_cluster_size, subsample_notes = _subsample_points(
        unit, max_points, seed, min_cluster_size, scale_min_cluster_size
    )  # [S, D]
    num_clustered = int(clustered.shape[0])
    used_min_samples = min_samples
    if num_clustered < min_cluster_size:
        outcome = _too_few_points_outcome(num_clustered, int(averages.shape[1]), min_cluster_size)
    else:
        used_min_samples = None if min_samples is None else max(1, min(int(min_samples), num_clustered))
        outcome = _hdbscan_outcome(clustered, min_cluster_size, used_min_samples, epsilon, single_cluster_min_resultant)
    notes = raised_notes + dropped_notes + subsample_notes
    return _cluster_result(
        outcome, notes, averages, int(unit.shape[0]), num_clustered, min_cluster_size, used_min_samples, epsilon, start
    )


def cluster_level_candidates(averages: Tensor, num_views: int, level: str, config: GFLConfig) -> ClusterResult:
    """``cluster_candidates`` with the settings of ``config`` for level "coarse" or "fine" and ``num_views`` views."""
    check_level(level)
    return cluster_candidates(
        averages,
        min_cluster_size=min_cluster_size_for(num_views, config),
        epsilon=config.coarse_cluster_epsilon if level == "coarse" else config.fine_cluster_epsilon,
        max_points=config.max_cluster_points,
        min_samples=config.min_samples,
        seed=config.seed,
        scale_min_cluster_size=config.subsample_scales_min_cluster_size,
        single_cluster_min_resultant=config.single_cluster_min_resultant,
    )


# ----------------------------------------------------------------------------------------------------------------
# assignment


@torch.no_grad()
def assign_candidates(
    features: Tensor, candidates: Tensor, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
) -> Tuple[Tensor, Tensor]:
    """Nearest candidate by cosine of each feature, in row blocks (no full [N, C] matrix).

    Args:
        features: [N, D] features (per-Gaussian or mask averages; any device).
        candidates: [C, D] candidates (normalised here).
        chunk_elements: about this many entries of the [rows, C] cosine block at once (memory only).
    Returns:
        (ids [N] long in [0, C), best_cosine [N]) on ``features``' device; when C == 0, ids are all -1 and
        best_cosine all -inf. A zero feature has cosine 0 with every candidate (id 0).
    """
    num_points = features.shape[0]
    device = features.device
    dtype = features.dtype if features.is_floating_point() else torch.float32
    if candidates is None or candidates.shape[0] == 0:
        return (
            torch.full((num_points,), -1, dtype=torch.long, device=device),
            torch.full((num_points,), -math.inf, dtype=dtype, device=device),
        )
    if candidates.shape[-1] != features.shape[-1]:
        raise ValueError(f"candidates {tuple(candidates.shape)} and features {tuple(features.shape)} differ in D")
    unit_candidates = F.normalize(candidates.to(device, dtype), dim=-1)  # [C, D]
    ids = torch.empty(num_points, dtype=torch.long, device=device)
    best = torch.empty(num_points, dtype=dtype, device=device)
    rows = _rows_per_chunk(unit_candidates.shape[0], chunk_elements)
    for begin in range(0, num_points, rows):
        end = min(begin + rows, num_points)
        cosine = F.normalize(features[begin:end].to(dtype), dim=-1) @ unit_candidates.T  # [R, C]
        best[begin:end], ids[begin:end] = cosine.max(dim=1)
    return ids, best


# ----------------------------------------------------------------------------------------------------------------
# losses


def gfl_losses(
    gaussian_features: Tensor,
    candidates: Optional[Tensor],
    margin: float,
    positive_threshold: float,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Tuple[Tensor, Tensor]:
    """GFL positive and negative terms of one level (unweighted).

    c_i = argmax_c cos(f_i, g_c); pos = -mean_i [cos(f_i, g_{c_i}) > positive_threshold] cos(f_i, g_{c_i});
    neg = mean_i (1/C) sum_{c != c_i} [cos(f_i, g_c) > margin] cos(f_i, g_c). The argmax and the indicators are
    not differentiated; the candidates are constants (detached). Exact, computed as dot products of the unit
    features with targets built blockwise without gradients.

    Args:
        gaussian_features: [N, D_l] per-Gaussian features of the level (f[:, :coarse_dim] or all of f).
        candidates: [C, D_l] candidates of the level (normalised here), or None.
        margin: tau^l of the negative term.
        positive_threshold: cosine above which a Gaussian is pulled to its nearest candidate (0.9).
        chunk_elements: about this many entries of a [rows, C] cosine block at once (memory only).
    Returns:
        (pos, neg) scalars; both a graph-connected 0 when C <= 1 or N == 0.
    """
    num_points = gaussian_features.shape[0]
    num_candidates = 0 if candidates is None else int(candidates.shape[0])
    if num_candidates <= 1 or num_points == 0:
        zero = graph_zero(gaussian_features)
        return zero, zero.clone()
    if candidates.shape[-1] != gaussian_features.shape[-1]:
        raise ValueError(
            f"candidates {tuple(candidates.shape)} and features {tuple(gaussian_features.shape)} differ in D"
        )
    unit = F.normalize(gaussian_features, dim=-1)  # [N, D] differentiable
    unit_candidates = F.normalize(candidates.detach().to(unit.device, unit.dtype), dim=-1)  # [C, D]
    with torch.no_grad():
        positive_target = torch.empty_like(unit)  # [N, D]: g_{c_i} where the indicator holds, else 0
        negative_target = torch.empty_like(unit)  # [N, D]: sum_{c != c_i, cos > margin} g_c
        rows = _rows_per_chunk(num_candidates, chunk_elements)
        for begin in range(0, num_points, rows):
            end = min(begin + rows, num_points)
            cosine = unit[begin:end].detach() @ unit_candidates.T  # [R, C]
            best, nearest = cosine.max(dim=1)  # [R], [R]
            pulled = (best > positive_threshold).to(unit.dtype)[:, None]  # [R, 1]
            positive_target[begin:end] = unit_candidates[nearest] * pulled
            pushed = cosine > margin  # [R, C]
            pushed.scatter_(1, nearest[:, None], False)
            negative_target[begin:end] = pushed.to(unit.dtype) @ unit_candidates
    positive = -(unit * positive_target).sum() / num_points
    negative = (unit * negative_target).sum() / (num_points * num_candidates)
    return positive, negative


def gfl_level_losses(
    features: Tensor,
    coarse_candidates: Optional[Tensor],
    fine_candidates: Optional[Tensor],
    coarse_dim: int,
    coarse_margin: float,
    fine_margin: float,
    positive_threshold: float,
    max_gaussians: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Dict[str, Tensor]:
    """GFL terms at both levels: coarse on ``features[:, :coarse_dim]``, fine on all channels.

    Args:
        features: [N, D] per-Gaussian features (D = 24).
        coarse_candidates: [Cc, coarse_dim] or None (None / Cc <= 1: coarse terms are 0).
        fine_candidates: [Cf, D] or None.
        coarse_dim: channels of the coarse feature (12).
        coarse_margin: tau^c (0.5).
        fine_margin: tau^f (0.75).
        positive_threshold: 0.9.
        max_gaussians: use M = max_gaussians Gaussians drawn uniformly with replacement (the same for both levels);
            None or <= 0, or >= N: all Gaussians.
        generator: optional torch.Generator for that draw (its device is used to draw).
        chunk_elements: memory only.
    Returns:
        {"gfl_pos_coarse", "gfl_neg_coarse", "gfl_pos_fine", "gfl_neg_fine"}: unweighted scalars.
    """
    num_points = features.shape[0]
    if max_gaussians is not None and 0 < int(max_gaussians) < num_points:
        rand_device = generator.device if generator is not None else features.device
        chosen = torch.randint(num_points, (int(max_gaussians),), generator=generator, device=rand_device)
        features = features[chosen.to(features.device)]  # [M, D]
    pos_coarse, neg_coarse = gfl_losses(
        level_channels(features, "coarse", coarse_dim), coarse_candidates, coarse_margin, positive_threshold,
        chunk_elements,
    )
    pos_fine, neg_fine = gfl_losses(features, fine_candidates, fine_margin, positive_threshold, chunk_elements)
    return {
        "gfl_pos_coarse": pos_coarse,
        "gfl_neg_coarse": neg_coarse,
        "gfl_pos_fine": pos_fine,
        "gfl_neg_fine": neg_fine,
    }


def gfl_loss(terms: Dict[str, Tensor], loss_weight: float) -> Tensor:
    """loss_weight * (sum over levels of pos + neg) from ``gfl_level_losses`` (the weighted L_GFL)."""
    return loss_weight * (
        terms["gfl_pos_coarse"] + terms["gfl_neg_coarse"] + terms["gfl_pos_fine"] + terms["gfl_neg_fine"]
    )
