"""Per-Gaussian segment labels lifted from the rendered views ("view-vote" labelling), and the helpers around it.

The paper labels each Gaussian with the global candidate nearest to its own feature (c_i = argmax_c cos(f_i, g_c),
docs/method.md, section 5). On splats trained from seed points most Gaussians are fuzzy, densified,
half hidden or nearly transparent: the rendered feature maps are clean (alpha blending averages the features of
many Gaussians) while many of the Gaussians' own features never converge, and the nearest-candidate rule scatters
those over every candidate. This module labels the Gaussians by what the views show instead:

1. every training view's rendered feature map gets a per-pixel label, the nearest candidate of each pixel's
   feature (``pixel_label_maps``); pixels the splat does not cover, that no SAM mask covers (their features were
   never trained) or whose feature is near no candidate vote "none";
2. each Gaussian collects, per label, the rendering weight w = alpha_i T_i it contributes to the pixels of that
   label over all training views (on the CPU one forward pass of the torch rasterizer,
   ``render.rasterize_label_weights``; through gsplat, ``gaussian_votes``: d(sum_p F_p[label_p]) / d colour_i = the
   Gaussian's weight per label, only the labels a batch shows rendered, a bounded number of channels per pass); the
   sums are kept sparse, ``SparseVotes``, so that memory does not grow with the number of labels;
3. its label is the one with the largest weight (``vote_labels``); Gaussians that no training view sees, or whose
   weight falls mostly on pixels that vote "none", get -1. What a click selects is voted by confident pixels
   only (feature cosine > 0.95 to the candidate); "segment everything" fills the Gaussians that this leaves out
   with the vote of every pixel near a candidate (cosine > 0.75; ``fill_unlabelled``).

Near-duplicate candidates (HDBSCAN often splits one object into several clusters whose centres have cosine
0.99) are merged first (``merge_candidates``), where the views show them in the same SAM segments
(``group_sharing``): two neighbouring objects can be as close in feature, but their pixels lie in different
segments. ``feature_convergence`` measures how far the Gaussians' own features
have converged to the candidates: the opacity-weighted share with cosine above a threshold to their nearest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Literal, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from clickgs_ns.method.gfl import assign_candidates


@dataclass
class LabellingConfig:
    """How the per-Gaussian labels that clicks select are computed at the end of training (module doc)."""

    method: Literal["view_vote", "nearest_feature"] = "view_vote"
    """"view_vote": each Gaussian takes the candidate label that receives most of its rendered weight over the
    training views (this project's default; README, "How a click becomes a selection"). "nearest_feature": the
    paper's rule, the candidate nearest to the Gaussian's own feature."""
    min_alpha: float = 0.5
    """Pixels whose rendered accumulation is below this vote "none"."""
    min_cosine: float = 0.75
    """Pixels whose feature has cosine below this with every candidate vote "none" (features no mask trained)."""
    confident_cosine: float = 0.95
    """What a click selects is voted by confident pixels only: those whose feature has cosine above this with their
    nearest candidate; the others vote "none". Rendered features blend across an object's edge and over features
    that never converged: such pixels are near some candidate but not confidently, and if they voted the object
    would spill onto what surrounds it (measured: coarse mIoU 0.87 with all pixels above ``min_cosine``, 0.94 with
    confident ones). "Segment everything" fills the Gaussians that no confident pixel labels with the vote of all
    pixels above ``min_cosine``."""
    confident_near_cluster: bool = True
    """Where the last clustering merged clusters into one candidate (``merge_candidates``), a pixel is confident for
    it where its feature has cosine above ``confident_cosine`` with any of those clusters, not only with their mean
    (``member_label_maps``): the mean of clusters spread over one object lies between them, nearer to few of its
    pixels than each cluster is to its own."""
    use_mask_coverage: bool = True
    """Pixels that no SAM mask of that level covers (id -1) vote "none": nothing trained their features (sky,
    background, what SAM missed), so whatever candidate they happen to be near says nothing; but the ground or
    backdrop that no mask covers, whose features the spatial term drew towards the objects on it, must not take
    their labels. Except where a view's masks missed a candidate (``abstain_where_missed``)."""
    abstain_where_missed: bool = True
    """With ``use_mask_coverage``: where a view's masks missed a candidate (they cover less than half of its pixels,
    and no segment is mostly its pixels), its uncovered pixels there vote nothing instead of "none"
    (``missed_segment_votes``). SAM misses small objects in most views (a 16 x 16 prompt grid;
    ``small_segment_area_px`` in the synthetic scenes), and those views' "none" outvoted the views that segment
    such an object, which then had no click labels (a click on it selected 1 Gaussian). Where the masks found the
    object, the uncovered pixels of its candidate are the ground around it, and vote "none" as before (development
    scenes: docs/benchmarks.md, "Objects the masks miss")."""
    min_weight: float = 1e-4
    """Gaussians whose rendering weight summed over all training views is below this (never seen) get -1."""
    min_visibility: float = 0.01
    """Gaussians whose rendering weight summed over the training views is below this share of what they would weigh
    unoccluded (``unoccluded_weights``) do not take their own votes: the views hardly see them, so whatever labels
    those views show says nothing about them (they take their seen neighbours', ``hidden_neighbours``). They lie
    buried under a surface (floor Gaussians below the ground's visible layer) or hidden behind one, and the few
    pixels where their weight is not quite zero lie on whatever covers them. A selection renders only its own
    Gaussians, so buried ones that took the label of the object standing on them showed as a halo on the floor
    around it (development scenes: their weight 0.001-0.04 pixels, the object's own 13-21). 0 lets every Gaussian
    some view sees take its own votes (``min_weight``). Chosen on the development scenes (docs/benchmarks.md,
    "Buried Gaussians")."""
    hidden_neighbours: int = 16
    """The hardly seen Gaussians (``min_visibility``) take the most common label of this many nearest seen ones
    (``nearest_seen``, ``neighbour_labels``): the inside of an object takes the object's label, a buried floor
    Gaussian the floor's. A selection renders its own Gaussians alone: without its inside, an object shows through
    wherever its surface's own Gaussians are thin, and an export is a shell. 0 leaves them unlabelled (-1). Chosen
    on the development scenes (docs/benchmarks.md, "Hidden Gaussians")."""
    merge_cosine: float = 0.97
    """At the end of training, global candidates of one level whose cosine exceeds this are merged into one (their
    size-weighted mean) before labelling: HDBSCAN often splits one object into several near-identical clusters
    (cosine 0.99), which would split its selection. Values above 1 disable merging (the fine level's; the coarse
    level's: ``coarse_merge_cosine``). Not applied during GFL: there a merge of two still-close objects would be
    trained in (measured: lower mIoU)."""
    coarse_merge_cosine: Optional[float] = 0.75
    """``merge_cosine`` of the coarse level (None: ``merge_cosine``). ``min_cosine``, the method's own "near a
    candidate": at the coarse level the last clustering splits one object into several clusters far more often
    than two objects share one (a real capture's brick: its main cluster and seven more at cosine 0.86-0.96, sharing
    0.76-0.98 of their segments with it), and the segment test (``merge_min_shared``) keeps two objects apart. With
    ``confident_near_cluster`` the merged candidate keeps each cluster's confident pixels. The fine level keeps
    ``merge_cosine``: there the masks merge an object's parts in most views (a flower's stem and leaves: cosine
    0.962, sharing 0.72). Development split: docs/benchmarks.md, "Near any cluster"."""
    merge_min_shared: float = 0.7
    """Two candidates above ``merge_cosine`` merge only where the training views show them in the same SAM segments:
    more than this share of their pixels (the smaller one's, view by view) lies in segments that hold both
    (``group_sharing``). Once a candidate has merged, its whole group is tested: a small cluster between two objects
    (the averages of segments that merge them) shares segments with each, the two objects as wholes do not.
    One object's duplicate clusters lie in that object's segments (DTU's house, coarse clusters above 0.97:
    0.87-1.00); two neighbouring objects whose features drew close lie in their own segments and share only the
    views whose masks merge them (0.44-0.69 on a development clutter scene, where cosine alone chained two objects
    into one candidate: coarse mIoU 0.630, with this test 0.756). Values <= 0 merge by cosine alone."""
    render_batch_views: int = 4
    """Training views rendered per voting pass (memory only; same result)."""
    render_batch_pixels: int = 1 << 21
    """At most this many pixels per batch of views (memory only; views of 1920x1080 go one at a time)."""
    vote_pass_megabytes: float = 256.0
    """Through gsplat (CUDA), memory for the label channels of one voting render: the labels a batch of views shows
    are rendered as many at a time as fit [B, H, W, labels] float32 in this budget (memory only; same labels). The
    CPU path needs no such budget (one pass, ``render.rasterize_label_weights``)."""

    def level_merge_cosine(self, level: str) -> float:
        """The merge threshold of ``level`` ("coarse" or "fine"): ``coarse_merge_cosine`` or ``merge_cosine``."""
        if level == "coarse" and self.coarse_merge_cosine is not None:
            return self.coarse_merge_cosine
        return self.merge_cosine


def segment_label_pixels(labels: Tensor, segment_ids: Tensor, num_labels: int) -> Tensor:
    """[S, num_labels] long: pixels of each label in each SAM segment of one view (S = largest id + 1; 0 rows
    without segments). Labels outside [0, num_labels) and pixels no segment covers are not counted.

    Args:
        labels: [H, W] long pixel labels.
        segment_ids: [H, W] integer SAM segment ids, -1 where no segment covers the pixel.
    """
    ids = segment_ids.to(labels.device, torch.long)
    counted = (ids >= 0) & (labels >= 0) & (labels < num_labels)
    num_segments = int(ids.max()) + 1 if ids.numel() else 0
    if num_segments <= 0 or num_labels <= 0:
        return torch.zeros(max(num_segments, 0), max(num_labels, 0), dtype=torch.long, device=labels.device)
    pixels = torch.bincount(ids[counted] * num_labels + labels[counted], minlength=num_segments * num_labels)
    return pixels.view(num_segments, num_labels)


class SegmentPixels(NamedTuple):
    """Pixels of each candidate in each SAM segment of the training views (``segment_pixels``): what
    ``group_sharing`` asks of two groups of candidates."""

    counts: Tensor
    """[R, C] float64: one row per (view, segment) that holds a candidate's pixel, pixels per candidate."""
    views: Tensor
    """[R] long: the view of each row, in [0, V)."""
    num_views: int


def segment_pixels(label_maps: Tensor, segment_ids: Tensor, num_candidates: int, first_view: int = 0) -> SegmentPixels:
    """``SegmentPixels`` of the views ``label_maps`` [B, H, W] (long in [0, C], C meaning "none"; ``pixel_label_maps``)
    with their SAM segment ids [B, H, W] of the same level (-1 where no segment covers the pixel); the views are
    numbered from ``first_view``. Concatenate the views' with ``concat_segment_pixels``."""
    rows, views = [], []
    for offset, (labels, ids) in enumerate(zip(label_maps, segment_ids.to(label_maps.device))):  # [H, W] each
        pixels = segment_label_pixels(labels, ids, num_candidates).double()  # [S, C]: "none" (C) left out
        pixels = pixels[pixels.sum(dim=1) > 0]
        rows.append(pixels)
        views.append(torch.full((pixels.shape[0],), first_view + offset, dtype=torch.long, device=pixels.device))
    counts = torch.cat(rows) if rows else torch.zeros(0, num_candidates, dtype=torch.float64, device=label_maps.device)
    views_tensor = torch.cat(views) if views else torch.zeros(0, dtype=torch.long, device=label_maps.device)
    return SegmentPixels(counts, views_tensor, first_view + label_maps.shape[0])


def concat_segment_pixels(parts: List[SegmentPixels], num_candidates: int) -> SegmentPixels:
    """One ``SegmentPixels`` of several, whose views are numbered apart (``segment_pixels``' ``first_view``)."""
    if not parts:
        return SegmentPixels(torch.zeros(0, num_candidates, dtype=torch.float64), torch.zeros(0, dtype=torch.long), 0)
    return SegmentPixels(torch.cat([part.counts for part in parts]), torch.cat([part.views for part in parts]),
                         max(part.num_views for part in parts))


def group_sharing(pixels: SegmentPixels, first: Tensor, second: Tensor) -> float:
    """How much the pixels of two groups of candidates lie in the same SAM segments: summed over views and segments,
    min(pixels of the first group in the segment, pixels of the second) over, summed over views, min(the first's
    pixels inside segments, the second's). 1 for groups that every view shows in the same segments, 0 for two that
    never share one.

    Args:
        pixels: ``segment_pixels`` of the training views.
        first, second: [C] bool, the candidates of each group.
    """
    first_pixels = pixels.counts[:, first.to(pixels.counts.device)].sum(dim=1)  # [R]
    second_pixels = pixels.counts[:, second.to(pixels.counts.device)].sum(dim=1)
    shared = torch.minimum(first_pixels, second_pixels).sum()
    per_view = torch.zeros(2, pixels.num_views, dtype=torch.float64, device=pixels.counts.device)
    per_view[0].index_add_(0, pixels.views, first_pixels)
    per_view[1].index_add_(0, pixels.views, second_pixels)
    present = per_view.amin(dim=0).sum()
    return float(shared / present.clamp_min(1.0))


class MergedCandidates(NamedTuple):
    """One level's candidates after ``merge_candidates``, with the clusters they were merged from."""

    candidates: Tensor
    """[C', D] unit candidates, ordered by their first member."""
    sizes: Tensor
    """[C'] summed cluster sizes."""
    group: Tensor
    """[C] long: the merged candidate of each cluster."""
    clusters: Tensor
    """[C, D] the clusters as clustered (unit): the members of each merged candidate."""


def unmerged_candidates(candidates: Tensor, sizes: Tensor) -> MergedCandidates:
    """``MergedCandidates`` of ``candidates`` [C, D] (unit) that nothing merged: each its own group."""
    return MergedCandidates(candidates, sizes, torch.arange(candidates.shape[0], device=candidates.device), candidates)


def merge_candidates(candidates: Tensor, sizes: Tensor, min_cosine: float, pixels: Optional[SegmentPixels] = None,
                     min_shared: float = 0.0) -> MergedCandidates:
    """Merge candidates [C, D] whose cosine exceeds ``min_cosine``, transitively; given ``pixels``, two groups join
    only where the views show the two groups, as wholes, in the same segments (``group_sharing`` above
    ``min_shared``).

    The pairs above ``min_cosine`` are taken from the closest down (ties by index), and each joins its two groups
    unless the segment test fails for them. Testing the groups, not the pair, keeps a chain from running through a
    small cluster that lies between two objects (the mask averages of segments that merge two neighbours): the
    cluster shares segments with each, but the two objects, as wholes, do not share theirs.

    Args:
        candidates: [C, D] candidates (any length; normalised here).
        sizes: [C] cluster sizes, the weights of the merged mean.
        min_cosine: merge threshold.
        pixels: optional ``segment_pixels`` of the training views, with the candidates' pixel labels.
        min_shared: groups whose ``group_sharing`` is not above this stay apart.

    Returns:
        ``MergedCandidates``: merged [C', D] unit candidates (ordered by their first member), merged sizes [C'],
        ``group`` [C] long, the merged index of each input candidate, and the input candidates, normalised.
    """
    count = candidates.shape[0]
    unit = F.normalize(candidates.detach().float(), dim=-1)
    group = torch.arange(count, device=candidates.device)
    if count > 1:
        cosines = unit @ unit.T  # [C, C]
        first, second = torch.triu_indices(count, count, offset=1, device=unit.device)
        pair_cosines = cosines[first, second]
        close = pair_cosines > min_cosine
        first, second, pair_cosines = first[close], second[close], pair_cosines[close]
        order = torch.argsort(-pair_cosines, stable=True)
        for a, b in zip(first[order].tolist(), second[order].tolist()):
            group_a, group_b = int(group[a]), int(group[b])
            if group_a == group_b:
                continue
            if pixels is not None and group_sharing(pixels, group == group_a, group == group_b) <= min_shared:
                continue
            group[group == max(group_a, group_b)] = min(group_a, group_b)
    roots, group = torch.unique(group, return_inverse=True)
    weights = sizes.detach().float().clamp_min(1e-12).to(unit.device)
    summed = unit.new_zeros(roots.shape[0], unit.shape[1]).index_add_(0, group, unit * weights[:, None])
    merged_sizes = sizes.new_zeros(roots.shape[0]).to(unit.device).index_add_(0, group, sizes.to(unit.device))
    return MergedCandidates(F.normalize(summed, dim=-1).to(candidates.dtype), merged_sizes, group,
                            unit.to(candidates.dtype))


@torch.no_grad()
def pixel_label_maps(feature_maps: Tensor, alphas: Tensor, candidates: Tensor, min_alpha: float,
                     min_cosine: float = -1.0, covered: Optional[Tensor] = None) -> Tensor:
    """Nearest candidate of each pixel's rendered feature: [B, H, W] long in [0, C], where C means "none"
    (accumulation below ``min_alpha``, cosine to the nearest candidate below ``min_cosine``, outside ``covered``,
    or no candidates). Pixels are compared with the candidates in row blocks (``gfl.assign_candidates``): no
    [B, H, W, C] tensor.

    Args:
        feature_maps: [B, H, W, D] rendered features of one level.
        alphas: [B, H, W, 1] rendered accumulation.
        candidates: [C, D] candidates of that level.
        covered: optional [B, H, W] bool, the pixels that may vote (say, those a mask covers).
    """
    count = candidates.shape[0]
    voting = alphas[..., 0] >= min_alpha  # [B, H, W]
    if covered is not None:
        voting = voting & covered.to(voting.device)
    if count == 0:
        return torch.full(voting.shape, 0, dtype=torch.long, device=feature_maps.device)
    nearest, best = assign_candidates(feature_maps.reshape(-1, feature_maps.shape[-1]).float(), candidates.float())
    nearest, best = nearest.view(voting.shape), best.view(voting.shape)  # [B, H, W]
    return torch.where(voting & (best >= min_cosine), nearest, count)


@torch.no_grad()
def member_label_maps(feature_maps: Tensor, alphas: Tensor, merged: MergedCandidates, min_alpha: float,
                      min_cosine: float, covered: Optional[Tensor] = None) -> Tensor:
    """``pixel_label_maps`` that tests each pixel against the clusters a candidate was merged from: [B, H, W] long
    in [0, C'], the merged candidate of the pixel's nearest cluster, C' ("none") where that cluster's cosine is below
    ``min_cosine`` (or as ``pixel_label_maps`` says). A merged candidate's mean lies between its clusters, so a
    pixel that sits on one of them can be far from the mean; this keeps such pixels the candidate's.

    Args:
        feature_maps: [B, H, W, D] rendered features of one level.
        alphas: [B, H, W, 1] rendered accumulation.
        merged: the level's ``MergedCandidates``.
        covered: optional [B, H, W] bool, the pixels that may vote.
    """
    count = merged.candidates.shape[0]
    nearest = pixel_label_maps(feature_maps, alphas, merged.clusters, min_alpha, min_cosine, covered)  # [B, H, W]
    to_group = torch.cat([merged.group.to(nearest.device), nearest.new_full((1,), count)])  # [C + 1]: "none" last
    return to_group[nearest]


def found_candidates(label_maps: Tensor, segment_ids: Tensor, count: int) -> Tensor:
    """[B, count + 1] bool: the candidates that a view's SAM masks found: they cover most of the candidate's pixels
    in the view, or the candidate holds most of the pixels of one of its segments ("none", the last column,
    never).

    Args:
        label_maps: [B, H, W] long in [0, count], ``count`` = "none" (``pixel_label_maps``).
        segment_ids: [B, H, W] integer SAM segment ids of the same level, -1 where no mask covers the pixel.
    """
    found = torch.zeros(label_maps.shape[0], count + 1, dtype=torch.bool, device=label_maps.device)
    for view, (labels, ids) in enumerate(zip(label_maps, segment_ids.to(label_maps.device))):
        pixels = segment_label_pixels(labels, ids, count + 1)  # [S, C + 1]
        if pixels.shape[0] == 0:
            continue
        holds_most = (2 * pixels > pixels.sum(dim=1, keepdim=True)).any(dim=0)  # [C + 1]
        mostly_covered = 2 * pixels.sum(dim=0) > torch.bincount(labels.reshape(-1), minlength=count + 1)
        found[view] = holds_most | mostly_covered
    found[:, count] = False
    return found


def missed_segment_votes(label_maps: Tensor, segment_ids: Tensor, count: int) -> Tensor:
    """``label_maps`` [B, H, W] (in [0, count], ``count`` = "none") with what the pixels that no SAM mask covers
    vote: "none", except the pixels of a candidate that the view's masks missed (``found_candidates``), which vote
    nothing (-1): a view whose masks hold no segment of an object says nothing about it. Where the masks found the
    object, the uncovered pixels of its candidate are the ground or backdrop around it, and vote "none".

    Args:
        segment_ids: [B, H, W] integer SAM segment ids of the same level, -1 where no mask covers the pixel.
    Returns:
        [B, H, W] long in [-1, count].
    """
    segment_ids = segment_ids.to(label_maps.device)
    missed = ~found_candidates(label_maps, segment_ids, count).gather(1, label_maps.flatten(1)).view_as(label_maps)
    uncovered = torch.where(missed & (label_maps < count), -1, count)
    return torch.where(segment_ids >= 0, label_maps, uncovered)


class SparseVotes(NamedTuple):
    """The rendering weight each Gaussian gives to the pixels of each label, summed over views, for the (Gaussian,
    label) pairs with a non-zero weight: a dense [N, L] vote matrix would grow with the labels (L = 4 ranges of
    candidates plus "none", and "seen"), this grows with the pairs a splat actually shows (a few per Gaussian)."""

    keys: Tensor
    """[E] long, sorted and unique: gaussian * num_labels + label."""
    weights: Tensor
    """[E] float64: the summed weights."""
    num_gaussians: int
    num_labels: int


def coalesce_votes(keys: Tensor, weights: Tensor, num_gaussians: int, num_labels: int) -> SparseVotes:
    """Sum the ``weights`` [E] of equal ``keys`` [E] (gaussian * num_labels + label) into ``SparseVotes``."""
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    summed = torch.zeros(unique_keys.shape[0], dtype=torch.float64, device=keys.device)
    summed.index_add_(0, inverse, weights.to(torch.float64))
    return SparseVotes(unique_keys, summed, num_gaussians, num_labels)


def add_votes(total: Optional[SparseVotes], more: SparseVotes) -> SparseVotes:
    """The sum of two ``SparseVotes`` of one splat and label set (``more`` when ``total`` is None: nothing yet)."""
    if total is None:
        return more
    return coalesce_votes(torch.cat([total.keys, more.keys]), torch.cat([total.weights, more.weights]),
                          total.num_gaussians, total.num_labels)


def gaussian_votes(render: Callable[[Tensor], Tensor], label_maps: Tensor, num_labels: int,
                   num_gaussians: int, labels_per_pass: int) -> SparseVotes:
    """Rendering weight that each Gaussian gives to the pixels of each label in a batch of views.

    The weight of Gaussian i at pixel p is alpha_i T_i, the factor of its colour in the pixel, so for the colours
    c = 0 [N, X] the gradient of sum_p render(c)_p[label_p] with respect to c is the weight per label. Only the
    U labels the batch shows are rendered, ``labels_per_pass`` channels per render, so memory is bounded by
    [B, H, W, labels_per_pass] and [N, labels_per_pass] whatever the number of labels (no one-hot).

    Args:
        render: maps colours [N, X] to rendered images [B, H, W, X] (differentiably, no background).
        label_maps: [B, H, W] long labels in [0, L), or [B, H, W, K]: K labels per pixel (say one per level, in
            disjoint ranges of [0, L)), each voted for with the full weight; -1: no vote.
        num_labels: L.
        num_gaussians: N.
        labels_per_pass: channels per render.
    """
    label_maps = label_maps if label_maps.dim() == 4 else label_maps[..., None]  # [B, H, W, K]
    shown = torch.unique(label_maps)  # [U] sorted
    shown = shown[shown >= 0]
    compact = torch.where(label_maps >= 0, torch.searchsorted(shown, label_maps), -1)  # [B, H, W, K] in [-1, U)
    keys: List[Tensor] = []
    weights: List[Tensor] = []
    for first in range(0, shown.shape[0], max(1, labels_per_pass)):
        count = min(max(1, labels_per_pass), shown.shape[0] - first)
        local = compact - first
        inside = (local >= 0) & (local < count)  # [B, H, W, K]
        colors = torch.zeros(num_gaussians, count, device=label_maps.device, requires_grad=True)
        with torch.enable_grad():
            rendered = render(colors)  # [B, H, W, count]
            picked = rendered.gather(-1, local.clamp(0, count - 1))  # [B, H, W, K]
            picked.masked_fill(~inside, 0.0).sum().backward()
        assert colors.grad is not None
        rows, columns = torch.nonzero(colors.grad, as_tuple=True)  # [E]
        keys.append(rows * num_labels + shown[first + columns])
        weights.append(colors.grad[rows, columns])
    if not keys:
        keys, weights = [label_maps.new_zeros(0)], [torch.zeros(0, device=label_maps.device)]
    return coalesce_votes(torch.cat(keys), torch.cat(weights), num_gaussians, num_labels)


def vote_labels(votes: SparseVotes, first: int, stop: int, min_weight: float) -> Tensor:
    """Labels [N] long from the label range [first, stop) of ``votes``, whose last label (stop - 1) means "none":
    the label with the most weight (the smallest one on ties), as an index into the range; -1 where that is "none"
    or the Gaussian's total weight in the range is below ``min_weight``."""
    gaussians, labels = votes.keys // votes.num_labels, votes.keys % votes.num_labels  # [E]
    inside = (labels >= first) & (labels < stop)
    gaussians, labels, weights = gaussians[inside], labels[inside] - first, votes.weights[inside]
    none = stop - first - 1
    total = weights.new_zeros(votes.num_gaussians).index_add_(0, gaussians, weights)  # [N]
    best = weights.new_full((votes.num_gaussians,), -1.0).scatter_reduce_(0, gaussians, weights, "amax")  # [N]
    is_best = weights == best[gaussians]
    best_label = labels.new_full((votes.num_gaussians,), none).scatter_reduce_(
        0, gaussians[is_best], labels[is_best], "amin")  # [N]
    return torch.where((best_label == none) | (total < min_weight), -1, best_label)


def total_weights(votes: SparseVotes, first: int, stop: int) -> Tensor:
    """[N] float64: each Gaussian's weight summed over the labels [first, stop) of ``votes`` (one range covers every
    pixel once, "none" included: there, its whole rendering weight)."""
    gaussians, labels = votes.keys // votes.num_labels, votes.keys % votes.num_labels  # [E]
    inside = (labels >= first) & (labels < stop)
    return votes.weights.new_zeros(votes.num_gaussians).index_add_(0, gaussians[inside], votes.weights[inside])


def unoccluded_weights(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
                       width: int, height: int) -> Tensor:
    """[N] float64: the rendering weight each Gaussian would have in C views of one size if nothing covered it, summed
    over the views: opacity times the integral of its projected 2D Gaussian, 2 pi sqrt(det cov2d), in pixels, for
    every view whose image it overlaps (``render.projection.project_gaussians``; the 0.3 pixel blur included, the
    part beyond the image's edge not taken off). Its rendering weight over those views divided by this is the share
    of it that the views see.

    Args:
        means [N, 3], quats [N, 4], scales [N, 3] (activated), opacities [N] (activated): the splat.
        viewmats [C, 4, 4], Ks [C, 3, 3]: world-to-camera matrices and intrinsics of the views.
    """
    from clickgs_ns.render.projection import project_gaussians  # here: the RGB stage's cache key hashes imports

    radii, _, _, conics, _ = project_gaussians(means, quats, scales, viewmats, Ks, width, height)  # [C, N], [C, N, 3]
    conic_det = (conics[..., 0] * conics[..., 2] - conics[..., 1] ** 2).double()  # [C, N]: 1 / det(cov2d)
    area = 2 * torch.pi / conic_det.clamp_min(1e-30).sqrt()  # [C, N]
    return (torch.where(radii > 0, area, 0.0) * opacities.double()[None]).sum(dim=0)  # [N]


def hardly_seen(votes: SparseVotes, first: int, stop: int, unoccluded: Tensor, min_visibility: float) -> Tensor:
    """[N] bool: the Gaussians whose rendering weight (``total_weights`` of the labels [first, stop) of ``votes``) is
    below ``min_visibility`` times what they would weigh unoccluded (``unoccluded_weights`` [N], over the same
    views): buried under a surface or hidden behind one (``LabellingConfig.min_visibility``)."""
    return total_weights(votes, first, stop) < min_visibility * unoccluded.to(votes.weights.device)


def nearest_seen(means: Tensor, hidden: Tensor, k: int, chunk: int = 1 << 16) -> Tensor:
    """[H, k] long: for each of the H hidden Gaussians (``hidden`` [N] bool), the indices of its ``k`` nearest
    Gaussians (by mean [N, 3]) that are not hidden, nearest first (fewer than ``k`` seen ones: all of them; none at
    all: [H, 0]). Queried ``chunk`` hidden Gaussians at a time (memory)."""
    from scipy.spatial import cKDTree  # here: the RGB stage's cache key hashes imports

    seen = torch.nonzero(~hidden).squeeze(-1)  # [S]
    k = min(k, int(seen.shape[0]))
    queries = means.detach()[hidden].double().cpu().numpy()  # [H, 3]
    if k == 0 or not len(queries):
        return seen.new_zeros(len(queries), k)
    tree = cKDTree(means.detach()[seen].double().cpu().numpy())
    nearest = [torch.from_numpy(tree.query(queries[start:start + chunk], k=k)[1].reshape(-1, k))
               for start in range(0, len(queries), chunk)]
    return seen[torch.cat(nearest).to(seen.device)]


def neighbour_labels(labels: Tensor, hidden: Tensor, neighbours: Tensor, chunk: int = 1 << 16) -> Tensor:
    """``labels`` [N] with each hidden Gaussian's (``hidden`` [N] bool, H of them) replaced by the most common label
    of its ``neighbours`` [H, k] (``nearest_seen``; -1 counts as a label; on ties, the nearest one's); -1 where it
    has none. ``chunk`` hidden Gaussians at a time (memory: [chunk, k, k])."""
    if neighbours.shape[0] == 0 or neighbours.shape[1] == 0:  # nothing hidden, or nothing seen
        return torch.where(hidden, -1, labels)
    common = []
    for start in range(0, neighbours.shape[0], chunk):
        near = labels[neighbours[start:start + chunk]]  # [B, k]
        counts = (near[:, :, None] == near[:, None, :]).sum(dim=-1, dtype=torch.int32)  # [B, k]: how many share it
        common.append(near.gather(1, counts.argmax(dim=-1, keepdim=True)).squeeze(-1))  # the nearest of the commonest
    return labels.index_put((torch.nonzero(hidden).squeeze(-1),), torch.cat(common))


def fill_unlabelled(labels: Tensor, fallback: Tensor) -> Tensor:
    """``labels`` [N] with every -1 replaced by ``fallback`` [N]."""
    return torch.where(labels >= 0, labels, fallback)


def click_labels(labels: Tensor, segment_labels: Tensor, num_candidates: int, min_share: float) -> Tensor:
    """What a click selects by [N]: ``labels`` (confident votes), except for candidates that the confident votes
    give less than ``min_share`` of the Gaussians that "segment everything" gives them (``segment_labels``): a
    surface whose rendered features never became confident (a floor whose SAM segments changed from view to view)
    would otherwise be selected in scattered bits; those candidates are selected by their segment labels.

    Args:
        labels, segment_labels: [N] long in [-1, num_candidates).
    """
    confident = torch.bincount(labels[labels >= 0], minlength=num_candidates)[:num_candidates]  # [C]
    segments = torch.bincount(segment_labels[segment_labels >= 0], minlength=num_candidates)[:num_candidates]
    weak = confident < min_share * segments  # [C]
    from_segments = (labels < 0) & (segment_labels >= 0) & weak[segment_labels.clamp(min=0)]
    return torch.where(from_segments, segment_labels, labels)


def feature_convergence(level_features: Tensor, candidates: Tensor, weights: Tensor, min_cosine: float = 0.9) -> float:
    """Weighted share of Gaussians whose own feature has cosine above ``min_cosine`` with its nearest candidate
    (nan without candidates or weight).

    Args:
        level_features: [N, D] per-Gaussian features of one level (any length).
        candidates: [C, D] candidates of that level.
        weights: [N] non-negative weights (the Gaussians' opacities).
    """
    if candidates.shape[0] == 0 or level_features.shape[0] == 0:
        return float("nan")
    _, best = assign_candidates(level_features.detach().float(), candidates.detach().float())
    weights = weights.detach().float().reshape(-1).to(best.device)
    total = float(weights.sum())
    if total <= 0:
        return float("nan")
    return float((weights * (best > min_cosine)).sum()) / total


def labels_per_pass(num_pixels: int, megabytes: float) -> int:
    """Label channels per voting render of ``num_pixels`` (B * H * W) pixels within ``megabytes``: the render, its
    gradient and the gather's gradient are each [B, H, W, labels] float32."""
    return max(1, int(megabytes * 2**20 // (3 * 4 * max(1, num_pixels))))
