"""Click to segment: the one selection core shared by the viewer, the Python API and the CLI.

docs/method.md, section 6: a click at pixel p of a view takes the rendered feature F^l_p at level l, picks the
global candidate c* = argmax_c cos(F^l_p, g_c^l) and selects the Gaussians whose own candidate is c*
(c_i^l == c*). Each Gaussian's candidate id is precomputed (``assign_candidates``), so a click costs one pixel's
feature plus one comparison over N labels. Where the click matches no candidate well (or there are none), the
fallback selects the Gaussians whose own feature is close to F^l_p, and the result says so. What renders the
clicked pixel (a 1 x 1 render) refines this: it picks among the matching candidates, and where the best match
renders none of the pixel and Gaussians of no candidate do, the fallback's query is their feature
(``select_by_feature``).

Layers, from the bottom:

- pure functions on tensors: ``level_features``, ``select_by_feature``,
  ``segment_everything``, ``render_selection_alpha``;
- ``SelectionState``: the current selection [N] bool with add / subtract / replace, undo and clear;
- ``Segmenter``: a thin object over a loaded model (duck-typed) that caches the per-level normalised features,
  candidate labels and the last render, explicitly invalidated by ``refresh()``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Literal, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from clickgs_ns.levels import LEVELS, Level, check_level, level_channels, level_state
from clickgs_ns.method.gfl import assign_candidates
from clickgs_ns.method.lifting import click_labels, feature_convergence
from clickgs_ns.render import rasterize, splat_inputs
from clickgs_ns.render.cameras import camera_key, camera_size, crop_camera, pixel_camera, view_inputs

if TYPE_CHECKING:  # nerfstudio is heavy to import; only the type is needed here
    from nerfstudio.cameras.cameras import Cameras

Mode = Literal["add", "subtract", "replace"]
MODES: Tuple[str, ...] = ("add", "subtract", "replace")


def check_mode(mode: Any) -> str:
    """``mode`` if it is one of ``MODES``; else a ValueError that lists them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


@dataclass
class SelectionConfig:
    """Thresholds of click selection and of "segment everything" (docs/method.md, section 6)."""

    candidate_min_cosine: float = 0.75
    """A click whose pixel feature has cosine below this with every global candidate matches none of them well:
    the click falls back to feature similarity. Also, in ``segment_everything``, Gaussians whose best candidate
    cosine is below this get no segment (-1)."""
    fallback_min_cosine: float = 0.9
    """Fallback selection: Gaussians whose own (level) feature has cosine above this with the clicked pixel's
    feature. Also the cluster radius (cosine) of the candidate-free ``segment_everything`` fallback."""
    min_labelled_share: float = 0.5
    """A click's pixel says which of the candidates matching its feature it shows (``shown_candidate``) when
    labelled Gaussians give at least this share of its rendering weight: most of what renders it is known. Below,
    the best feature match is taken, as in the paper (a feature that matches nothing still takes the candidate that
    renders most of the pixel). A majority, not a tuned value."""
    pixel_decides: bool = True
    """Whether what renders the clicked pixel may decide the candidate (``min_labelled_share``, and a feature that
    matches no candidate); False: the paper's rule, the best feature match only (bench_accuracy's "all departures
    off" row)."""
    background_alpha: float = 0.5
    """A click on a pixel whose rendered accumulation (alpha) is below this hits empty background."""
    max_history: int = 32
    """Undo steps kept by ``SelectionState`` (each holds one [N] bool mask)."""
    cluster_max_samples: int = 20000
    """Candidate-free ``segment_everything``: Gaussians sampled (deterministically) to find the clusters."""
    cluster_min_size: int = 5
    """Candidate-free ``segment_everything``: clusters with fewer sampled members are dropped."""
    weak_segment_share: float = 0.15
    """A candidate whose confident labels cover less than this share of its "segment everything" Gaussians is
    selected by the latter (``lifting.click_labels``); 0 = always by the confident labels. Such a candidate is a
    surface whose rendered features never became confident (the ground: 2-5% of its Gaussians confident on the
    development scenes), which confident labels would select in scattered bits. Objects sit at 28% and above
    there: at 0.5 some of theirs counted as weak (4 of garden06's 19), and clicks on them took the ground around
    the object with it (garden06 fine mIoU 0.735 at 0.5, 0.815 at 0.15; clutter09 coarse 0.829, 0.882)."""
    converged_cosine: float = 0.9
    """A Gaussian's feature has converged when its cosine with its nearest candidate exceeds this."""
    min_convergence: float = 0.03
    """Clicks warn when less than this share of the Gaussians (weighted by opacity) has converged: random features
    score about 0, and with view-vote labels accurate runs were measured from 5% up (floor and background
    Gaussians that contribute little to any pixel never converge, and need not)."""


@dataclass
class ClickResult:
    """What one click selected, and why."""

    mask: Tensor
    """[N] bool: the Gaussians this click selects (before it is combined with the current selection)."""
    candidate: Optional[int]
    """Id of the matched global candidate c*, or None (fallback or background)."""
    cosine: float
    """cos(query, g_{c*}); the best candidate cosine when the fallback was used; nan without candidates."""
    used_fallback: bool
    """Whether the selection came from per-Gaussian feature similarity instead of a candidate label."""
    message: str
    """One line for a status bar or a log: what happened, in words."""
    num_selected: int
    """Gaussians in ``mask``."""
    level: str = ""
    """"coarse" or "fine"."""
    hit_background: bool = False
    """The click hit empty background (accumulation below ``background_alpha``): nothing selected."""
    pixel: Optional[Tuple[int, int]] = None
    """(column, row) of the clicked pixel in the rendered view, when the click came from a view."""
    total_selected: Optional[int] = None
    """Size of the whole selection after this click was applied (set by ``Segmenter``)."""
    seconds: float = 0.0
    """Wall time of the whole click (render included)."""
    render_seconds: float = 0.0
    """Part of ``seconds`` spent rendering the view's features (0 when a cached render was reused)."""


RENDER_OUTPUTS = ("coarse_features", "fine_features", "accumulation", "depth")
"""The outputs of a render that clicks read (``Segmenter.remember_render``)."""


@dataclass
class PixelSample:
    """What a view shows at one pixel (``Segmenter.pixel_sample``)."""

    coarse_features: Tensor
    """[coarse_dim] rendered coarse feature."""
    fine_features: Tensor
    """[feature_dim] rendered fine feature."""
    alpha: float
    """Accumulated opacity."""
    depth: float
    """Rendered expected z-depth (nan when the render has none)."""
    column: int
    row: int
    camera: "Cameras"
    """The view clicked, [1]."""
    source: str
    """Where the values came from: "cached view", "render" or "window render"."""
    render_seconds: float = 0.0
    """Seconds spent rendering for this sample (0 for a cached view)."""

    def features(self, level: str) -> Tensor:
        """The rendered feature of ``level``."""
        return self.coarse_features if check_level(level) == "coarse" else self.fine_features


@dataclass
class Segmentation:
    """A whole-scene instance labelling at one level ("segment everything")."""

    labels: Tensor
    """[N] long: segment id of each Gaussian, -1 for none."""
    num_segments: int
    """Ids run over 0 .. num_segments - 1 (candidate ids may leave some of them empty)."""
    used_fallback: bool
    """No global candidates: segments come from clustering the Gaussians' own features."""
    message: str
    """What was done, in words."""


# ------------------------------------------------------------------------------------------------ pure functions
def labels_origin(saved: bool, method: Optional[str]) -> str:
    """How a level's click labels were made, in words for reports.

    Args:
        saved: the labels are the model's saved ones (``LevelData.saved``), not computed on loading.
        method: the run's ``pipeline.model.labelling.method`` (``labelling_method``), None when not recorded.
    """
    if not saved:
        return "nearest candidate (computed on loading: the run saved no labels)"
    if method == "view_vote":
        return "saved (lifted from the training views)"
    if method == "nearest_feature":
        return "saved (each Gaussian's nearest candidate: labelling.method nearest_feature)"
    if method is None:
        return "saved (the run's config does not say how: no labelling.method)"
    return f"saved (labelling.method {method})"


def labelling_method(model: Any) -> Optional[str]:
    """The run's ``pipeline.model.labelling.method`` (how its saved labels were made), None when its config has
    none."""
    labelling = getattr(getattr(model, "config", None), "labelling", None)
    method = getattr(labelling, "method", None)
    return method if isinstance(method, str) else None


def level_features(features: Tensor, level: Level, coarse_dim: int) -> Tensor:
    """Unit-length per-Gaussian features [N, D] of ``level``: the first ``coarse_dim`` channels of ``features``
    [N, 24] for "coarse", all of them for "fine"."""
    selected = level_channels(features, level, coarse_dim)
    return torch.nn.functional.normalize(selected.detach().float(), dim=-1)


def select_by_feature(
    query: Tensor,
    gaussian_labels: Tensor,
    candidates: Tensor,
    level_features: Tensor,
    config: SelectionConfig = SelectionConfig(),
    pixel_shares: Optional[Callable[[], Optional[Tensor]]] = None,
    unclaimed_feature: Optional[Callable[[], Optional[Tensor]]] = None,
) -> ClickResult:
    """Select the Gaussians that a pixel feature ``query`` points at.

    The candidates that match the feature are those with cos(query, g_c) >= ``candidate_min_cosine``. The click
    selects ``gaussian_labels == c*`` (one comparison over N) for c* chosen as follows. When ``pixel_shares`` (each
    candidate's share of the clicked pixel's rendering weight) says what renders most of the pixel
    (``min_labelled_share``), the pixel decides which matching candidate it shows: the one that renders most of it
    (a pixel's feature blends the features of what renders it, and can match a candidate that is not there at
    all), or, when no matching candidate renders it, the candidate that renders most of it (``shown_candidate``).
    Otherwise c* = argmax_c cos(query, g_c) as in the paper, if it matches and it renders some of the pixel (or
    nothing says what renders it); a feature that matches nothing takes the candidate that renders most of the
    pixel. Failing all of that, when C == 0, or when no Gaussian carries c* (a candidate that no view's vote gave a
    Gaussian), it falls back to cos(level_features, query) > ``fallback_min_cosine`` and the message says so. Where
    the best match renders none of the pixel and Gaussians of no candidate render most of it (an object that no
    candidate holds, whose blend with its surroundings matches the surroundings), the fallback's query is the
    feature of those Gaussians (``unclaimed_feature``), not the blend.

    Args:
        query: [D] rendered feature of the clicked pixel (any length; normalised here).
        gaussian_labels: [N] long, each Gaussian's candidate id (``assign_candidates``).
        candidates: [C, D] global candidates (C may be 0).
        level_features: [N, D] unit per-Gaussian features (used only by the fallback).
        pixel_shares: optional, called once when C > 0: [C] each candidate's share of the clicked pixel's
            rendering weight (``candidate_shares``), or None when the model cannot say.
        unclaimed_feature: optional, called at most once: [D] the feature of the Gaussians of no candidate that
            render the clicked pixel (``unclaimed_pixel_feature``), or None when none does or the model cannot say.
    """
    query = query.detach().float().reshape(-1).to(level_features.device)
    norm = float(query.norm())
    if not math.isfinite(norm) or norm < 1e-8:
        mask = torch.zeros(level_features.shape[0], dtype=torch.bool, device=level_features.device)
        return ClickResult(mask, None, math.nan, False, "The clicked pixel has no feature (zero or non-finite): "
                           "nothing selected.", 0)
    query = query / norm
    if candidates.shape[0] == 0:
        reason = "There are no global candidates at this level (GFL has not run)"
        return select_similar_features(query, level_features, config, reason, math.nan)
    result, reason, best_cos, fallback_query = select_candidate(query, gaussian_labels, candidates, config,
                                                                pixel_shares, unclaimed_feature)
    if result is not None:
        return result
    return select_similar_features(fallback_query, level_features, config, reason, best_cos)


def shown_candidate(cosines: Tensor, shares: Tensor, min_cosine: float) -> Tuple[int, bool]:
    """The candidate a pixel shows, from each candidate's cosine [C] with the pixel's feature and share [C] of its
    rendering weight (some share > 0): the matching one (cosine >= ``min_cosine``) that renders most of the pixel,
    else the one that renders most of it. Returns (the candidate, whether it matches the feature)."""
    matching_shares = torch.where(cosines >= min_cosine, shares.to(cosines), torch.zeros_like(cosines))  # [C]
    if float(matching_shares.max()) > 0:
        return int(matching_shares.argmax()), True
    return int(shares.argmax()), False


def select_candidate(
    query: Tensor,
    gaussian_labels: Tensor,
    candidates: Tensor,
    config: SelectionConfig,
    pixel_shares: Optional[Callable[[], Optional[Tensor]]] = None,
    unclaimed_feature: Optional[Callable[[], Optional[Tensor]]] = None,
) -> Tuple[Optional[ClickResult], str, float, Tensor]:
    """The Gaussians of the candidate a unit ``query`` [D] points at (``select_by_feature`` without its fallback):
    among the candidates it matches (cos >= ``candidate_min_cosine``) the one the clicked pixel shows
    (``shown_candidate``, when ``pixel_shares`` says what renders most of the pixel: ``min_labelled_share``), else
    the best match, unless it renders none of the pixel while Gaussians of no candidate render most of it; a
    feature that matches nothing takes the candidate that renders most of the pixel. Returns (the result, or None
    when nothing is selected; why not, in words; the best cosine; the unit query [D] to fall back on: ``query``, or
    the feature of those unclaimed Gaussians (``unclaimed_feature``) instead of the blend).

    Args:
        gaussian_labels: [N] long candidate ids; candidates: [C, D], C >= 1.
    """
    cos = torch.nn.functional.normalize(candidates.detach().float().to(query.device), dim=-1) @ query  # [C]
    best_cos, best_id = (float(v) for v in cos.max(dim=0))
    matches = best_cos >= config.candidate_min_cosine
    shares = pixel_shares() if pixel_shares is not None else None  # [C] or None
    labelled = float(shares.sum()) if shares is not None else 0.0
    if labelled > 0 and (labelled >= config.min_labelled_share or not matches):
        candidate, matches = shown_candidate(cos, shares, config.candidate_min_cosine)
        share = f"whose Gaussians render {100 * float(shares[candidate]):.0f}% of the clicked pixel"
    elif matches:
        candidate, share = int(best_id), ""
        if shares is not None and float(shares[candidate]) == 0 and unclaimed_feature is not None:
            unclaimed = unclaimed_feature()
            if unclaimed is not None:  # what renders most of the pixel is none of the candidates
                return None, (f"The best match (global candidate {candidate}, cos {best_cos:.2f}) renders none of "
                              "the clicked pixel, which Gaussians of no candidate render"), best_cos, unclaimed
    else:
        return None, (f"The click matches no global candidate well (best: {int(best_id)}, cos {best_cos:.2f} < "
                      f"{config.candidate_min_cosine:g})"), best_cos, query
    reason = "" if matches else (
        f"The click matches no global candidate that renders the clicked pixel (best match: {int(best_id)}, "
        f"cos {best_cos:.2f}; matching needs cos >= {config.candidate_min_cosine:g})")
    result = _candidate_result(gaussian_labels, candidate, float(cos[candidate]), share, reason)
    if result is None:
        reason = f"The click points at global candidate {candidate} (cos {float(cos[candidate]):.2f}), which no " \
                 "Gaussian carries"
    return result, reason, best_cos, query


def _candidate_result(gaussian_labels: Tensor, candidate: int, cosine: float, why: str = "",
                      reason: str = "") -> Optional[ClickResult]:
    """The Gaussians [N] carrying ``candidate``, with the message of a click that selected it (None when no
    Gaussian carries it)."""
    mask = gaussian_labels == candidate
    count = int(mask.sum())
    if count == 0:
        return None
    what = f"global candidate {candidate} (cos {cosine:.2f}" + (f"), {why}." if why else ").")
    message = f"{reason}: selected {count} Gaussians, {what}" if reason else f"Selected {count} Gaussians: {what}"
    return ClickResult(mask, candidate, cosine, False, message, count)


def select_similar_features(query: Tensor, level_features: Tensor, config: SelectionConfig, reason: str,
                            best_cos: float) -> ClickResult:
    """``select_by_feature``'s fallback: the Gaussians whose own unit feature [N, D] has cosine above
    ``fallback_min_cosine`` with the unit ``query`` [D]; the message starts with ``reason`` (why no candidate)."""
    mask = (level_features @ query) > config.fallback_min_cosine  # [N]
    count = int(mask.sum())
    message = (f"{reason}: fell back to feature similarity (cos > {config.fallback_min_cosine:g}), "
               f"selected {count} Gaussians.")
    if count == 0:
        message = f"{reason}, and no Gaussian's own feature is close to the click (cos > " \
                  f"{config.fallback_min_cosine:g}): nothing selected."
    return ClickResult(mask, None, best_cos, True, message, count)


def candidate_shares(gaussian_labels: Tensor, gaussians: Tensor, weights: Tensor, num_candidates: int) -> Tensor:
    """Each candidate's share [C] of a pixel's rendering weight: the weights (alpha_i T_i) of the Gaussians that
    render the pixel summed by their label, over their total (unlabelled Gaussians count in the total only); zeros
    when nothing renders it.

    Args:
        gaussian_labels: [N] long in [-1, num_candidates).
        gaussians: [M] long, the Gaussians that render the pixel; weights: [M] their weights.
    """
    labels = gaussian_labels[gaussians.to(gaussian_labels.device)]  # [M]
    per_label = torch.zeros(num_candidates + 1, dtype=torch.float64, device=labels.device).index_add_(
        0, labels + 1, weights.to(labels.device).double())  # [C + 1]: "none" first
    total = float(per_label.sum())
    return per_label[1:] / total if total > 0 else per_label[1:]


def unclaimed_pixel_feature(gaussian_labels: Tensor, gaussians: Tensor, weights: Tensor,
                            level_features: Tensor) -> Optional[Tensor]:
    """The unit feature [D] of what renders a pixel without a candidate: the mean of the unit features
    ``level_features`` [N, D] of the Gaussians labelled -1 in ``gaussian_labels`` [N] among ``gaussians`` [M] that
    render it, weighted by their ``weights`` [M] (alpha_i T_i); None when none of them renders it. Unlike the
    rendered feature it leaves out the labelled Gaussians that the pixel blends in."""
    gaussians = gaussians.to(gaussian_labels.device)
    unclaimed = gaussian_labels[gaussians] < 0  # [M]
    unclaimed_weights = weights.to(level_features)[unclaimed.to(weights.device)]  # [U]
    if unclaimed_weights.numel() == 0 or float(unclaimed_weights.sum()) <= 0:
        return None
    feature = unclaimed_weights @ level_features[gaussians[unclaimed]]  # [D]
    norm = float(feature.norm())
    return feature / norm if norm > 1e-8 else None


def leader_clusters(features: Tensor, min_cosine: float, max_samples: int, min_size: int) -> Tensor:
    """Cluster centres [K, D] (unit) of ``features`` [N, D] (unit) by greedy leader clustering of a sample.

    Deterministic: a fixed-seed sample of at most ``max_samples`` rows is visited in order; the first unassigned
    row leads a cluster of every unassigned row with cosine above ``min_cosine`` to it; a centre is the
    normalised mean of its members. Clusters with fewer than ``min_size`` members are dropped.
    """
    n = features.shape[0]
    if n == 0:
        return features.new_zeros(0, features.shape[1])
    generator = torch.Generator().manual_seed(0)
    sample_ids = torch.randperm(n, generator=generator)[:max_samples].to(features.device)
    sample = features[sample_ids].float()  # [M, D]
    unassigned = torch.ones(sample.shape[0], dtype=torch.bool, device=features.device)
    centres: List[Tensor] = []
    while bool(unassigned.any()):
        leader = int(torch.argmax(unassigned.to(torch.uint8)))
        members = unassigned & ((sample @ sample[leader]) > min_cosine)
        members[leader] = True
        unassigned &= ~members
        if int(members.sum()) >= min_size:
            centres.append(torch.nn.functional.normalize(sample[members].mean(dim=0), dim=-1))
    if not centres:
        return features.new_zeros(0, features.shape[1])
    return torch.stack(centres)


def segment_everything(
    level_features: Tensor, candidates: Tensor, config: SelectionConfig = SelectionConfig()
) -> Segmentation:
    """Whole-scene instance ids at one level: each Gaussian's global candidate (no cap on their number).

    With candidates: ids 0 .. C-1 are candidate ids, c_i = argmax_c cos(f_i, g_c), and Gaussians whose best
    cosine is below ``candidate_min_cosine`` get -1. Without (C == 0): the Gaussians' own features are clustered
    (``leader_clusters`` with radius ``fallback_min_cosine``), ids are ordered by cluster size (0 = largest) and
    Gaussians within that radius of no cluster get -1.

    Args:
        level_features: [N, D] unit per-Gaussian features of one level.
        candidates: [C, D] global candidates of that level.
    """
    if candidates.shape[0] > 0:
        ids, best = assign_candidates(level_features, candidates)
        ids[best < config.candidate_min_cosine] = -1
        unlabelled = int((ids < 0).sum())
        return Segmentation(ids, int(candidates.shape[0]), False,
                            f"{candidates.shape[0]} segments (global candidates); {unlabelled} Gaussians match none "
                            f"(cos < {config.candidate_min_cosine:g}) and are labelled -1.")
    centres = leader_clusters(level_features, config.fallback_min_cosine, config.cluster_max_samples,
                              config.cluster_min_size)
    ids, best = assign_candidates(level_features, centres)
    ids[best <= config.fallback_min_cosine] = -1
    sizes = torch.bincount(ids[ids >= 0], minlength=centres.shape[0])  # [K]
    order = torch.argsort(sizes, descending=True, stable=True)
    num_segments = int((sizes > 0).sum())
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(order.numel(), device=order.device)
    labels = torch.where(ids >= 0, new_id[ids.clamp(min=0)], ids)
    unlabelled = int((labels < 0).sum())
    return Segmentation(labels, num_segments, True,
                        f"No global candidates at this level (GFL has not run): clustered the Gaussians' own "
                        f"features instead (cos > {config.fallback_min_cosine:g}) into {num_segments} segment(s); "
                        f"{unlabelled} Gaussians fit none and are labelled -1.")


def render_selection_alpha(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    mask: Tensor,
    camera: "Cameras",
    backend: str = "auto",
    rasterize_mode: str = "classic",
) -> Tensor:
    """Accumulated opacity [H, W] of the selected Gaussians alone, seen by ``camera`` [1].

    Args:
        means: [N, 3]; quats: [N, 4] (wxyz); scales: [N, 3] (log); opacities: [N] or [N, 1] (logit): the splat's
            stored fields (``render.splat_inputs``) in the camera's (nerfstudio training) frame.
        mask: [N] bool selection.
        camera: nerfstudio Cameras of one view; the result has its resolution.
    """
    height, width = camera_size(camera)
    mask = mask.to(means.device)
    if not bool(mask.any()):
        return means.new_zeros(height, width)
    with torch.no_grad():
        selected = splat_inputs(*(field[mask].detach() for field in (means, quats, scales, opacities)))
        view = view_inputs(camera, means.device)
        _, alpha, _ = rasterize(
            **selected,
            colors=means.new_ones(selected["means"].shape[0], 1),
            viewmats=view["viewmats"][:1],
            Ks=view["Ks"][:1],
            width=width,
            height=height,
            rasterize_mode=rasterize_mode,  # type: ignore[arg-type]
            backend=backend,  # type: ignore[arg-type]
        )
    return alpha[0, ..., 0]


def selection_mask(model: Any, selection: Tensor, camera: "Cameras", threshold: float = 0.5) -> np.ndarray:
    """[H, W] bool at ``camera``'s resolution: where the selected Gaussians [N] bool of ``model`` alone accumulate
    opacity above ``threshold`` (``render_selection_alpha``)."""
    params = model.gauss_params
    alpha = render_selection_alpha(
        params["means"], params["quats"], params["scales"], params["opacities"], selection, camera,
        backend=getattr(model.config, "render_backend", "auto"),
        rasterize_mode=getattr(model.config, "rasterize_mode", "classic"),
    )
    return (alpha > threshold).cpu().numpy()


# ------------------------------------------------------------------------------------------------ selection state
class SelectionState:
    """The current selection [N] bool, changed by add / subtract / replace, with undo."""

    def __init__(self, num_gaussians: int, device: Union[str, torch.device] = "cpu", max_history: int = 32):
        self.mask = torch.zeros(num_gaussians, dtype=torch.bool, device=device)
        """[N] bool: the selected Gaussians."""
        self.history: List[Tensor] = []
        """Earlier masks, most recent last (at most ``max_history``)."""
        self.max_history = max_history

    @property
    def num_gaussians(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_selected(self) -> int:
        return int(self.mask.sum())

    def _push(self) -> None:
        self.history.append(self.mask.clone())
        del self.history[: max(0, len(self.history) - self.max_history)]

    def apply(self, result: Union[ClickResult, Tensor], mode: Mode = "add") -> Tensor:
        """Combine a click's mask (or a [N] bool mask) with the selection; returns the new selection [N]."""
        check_mode(mode)
        mask = result.mask if isinstance(result, ClickResult) else result
        if mask.shape != self.mask.shape:
            raise ValueError(f"The mask covers {mask.shape[0]} Gaussians; the selection has {self.num_gaussians}")
        mask = mask.to(device=self.mask.device, dtype=torch.bool)
        self._push()
        if mode == "add":
            self.mask = self.mask | mask
        elif mode == "subtract":
            self.mask = self.mask & ~mask
        else:
            self.mask = mask.clone()
        return self.mask

    def clear(self) -> None:
        """Select nothing (undoable)."""
        self._push()
        self.mask = torch.zeros_like(self.mask)

    def undo(self) -> bool:
        """Go back one step; False when there is nothing to undo."""
        if not self.history:
            return False
        self.mask = self.history.pop()
        return True


# ------------------------------------------------------------------------------------------------ segmenter
@dataclass
class LevelData:
    """One level's cached tensors."""

    features: Tensor
    """[N, D] unit per-Gaussian features."""
    candidates: Tensor
    """[C, D] global candidates (C may be 0)."""
    labels: Tensor
    """[N] long candidate id of each Gaussian (-1 when C == 0, or for a Gaussian that belongs to no segment)."""
    segment_labels: Tensor
    """[N] long: the "segment everything" labels (``labels`` filled from every pixel near a candidate), which say
    what renders a pixel where the click labels leave Gaussians out."""
    saved: bool = False
    """``labels`` are the model's saved labels (lifted from the training views at the end of training), not the
    nearest candidate of each Gaussian's own feature."""
    convergence: float = math.nan
    """Opacity-weighted share of Gaussians whose own feature has cosine > 0.9 with its nearest candidate."""


class Segmenter:
    """Click segmentation over one model: the object the viewer, the API and the CLI share.

    ``model`` is duck-typed: ``.click_features`` [N, F], ``.config.coarse_dim``, optional ``.coarse_candidates``
    [Cc, coarse_dim] / ``.fine_candidates`` [Cf, F], and ``get_outputs_for_camera(camera)`` returning
    ``coarse_features`` [H, W, coarse_dim], ``fine_features`` [H, W, F] and ``accumulation`` [H, W, 1].
    Per-level features and labels, the last render and "segment everything" are cached: call ``refresh()``
    after the model changes (training steps, new candidates).
    """

    def __init__(self, model: Any, config: Optional[SelectionConfig] = None):
        self.model = model
        self.config = config or SelectionConfig()
        self.state = SelectionState(self.num_gaussians, self.model.click_features.device, self.config.max_history)
        self._levels: Dict[str, LevelData] = {}
        self._segmentations: Dict[str, Segmentation] = {}
        self._render_key: Optional[Tensor] = None
        self._render: Optional[Dict[str, Tensor]] = None

    @property
    def num_gaussians(self) -> int:
        return int(self.model.click_features.shape[0])

    @property
    def selection(self) -> Tensor:
        """[N] bool current selection."""
        return self.state.mask

    def refresh(self) -> None:
        """Drop every cache; a changed number of Gaussians also starts an empty selection."""
        self._levels.clear()
        self._segmentations.clear()
        self.forget_render()
        if self.num_gaussians != self.state.num_gaussians:
            self.state = SelectionState(self.num_gaussians, self.model.click_features.device, self.config.max_history)

    def level_data(self, level: str) -> LevelData:
        """Normalised features, candidates and labels of ``level`` (computed once until ``refresh()``)."""
        check_level(level)
        if level not in self._levels:
            features = level_features(self.model.click_features, level, self.model.config.coarse_dim)
            candidates = level_state(self.model, level, "candidates")
            if candidates is None:
                candidates = features.new_zeros(0, features.shape[1])
            candidates = torch.nn.functional.normalize(candidates.detach().float().to(features.device), dim=-1)
            if candidates.shape[0] > 0 and candidates.shape[1] != features.shape[1]:
                raise ValueError(f"The model's {level} candidates have {candidates.shape[1]} channels, its {level} "
                                 f"features {features.shape[1]}")
            saved = level_state(self.model, level, "labels")
            use_saved = (saved is not None and saved.shape == (features.shape[0],) and candidates.shape[0] > 0
                         and bool((saved >= 0).any()) and int(saved.max()) < candidates.shape[0])
            labels = saved.to(features.device).long() if use_saved else assign_candidates(features, candidates)[0]
            segment_labels = level_state(self.model, level, "segment_labels")
            if use_saved and segment_labels is not None and segment_labels.shape == labels.shape:
                segment_labels = segment_labels.to(labels.device).long()
                labels = click_labels(labels, segment_labels, candidates.shape[0], self.config.weak_segment_share)
            else:
                segment_labels = labels
            opacities = getattr(self.model, "opacities", None)
            weights = (torch.sigmoid(opacities.detach().float()).reshape(-1) if opacities is not None
                       else features.new_ones(features.shape[0]))
            convergence = feature_convergence(features, candidates, weights, self.config.converged_cosine)
            self._levels[level] = LevelData(features, candidates, labels, segment_labels, use_saved, convergence)
        return self._levels[level]

    def render(self, camera: "Cameras") -> Tuple[Dict[str, Tensor], float]:
        """The view's outputs (reused while the camera stays the same, ``remember_render``) and the seconds spent
        rendering."""
        cached = self.remembered_render(camera)
        if cached is not None:
            return cached, 0.0
        start = time.perf_counter()
        outputs = self.render_outputs(camera)
        self.remember_render(camera, outputs)
        return self._render, time.perf_counter() - start  # type: ignore[return-value]

    def render_outputs(self, camera: "Cameras") -> Dict[str, Tensor]:
        """A fresh eval render of ``camera`` [1] (not remembered): every output of the model's render."""
        outputs = self.model.get_outputs_for_camera(camera)
        missing = [name for name in ("coarse_features", "fine_features", "accumulation") if name not in outputs]
        if missing:
            raise RuntimeError(f"The model's render has no {missing} (it renders them in eval mode only): call "
                               "model.eval() before clicking, or pass the pixel feature to click_feature().")
        return outputs

    def remember_render(self, camera: "Cameras", outputs: Dict[str, Any]) -> None:
        """Keep references (no copies) to a render of ``camera``: both levels' feature maps [H, W, D], the
        accumulation and the depth [H, W, 1] when it has one. Clicks at the same camera read them instead of
        rendering (the viewer hands its renders over here); ``refresh()`` forgets them."""
        self._render = {name: outputs[name] for name in RENDER_OUTPUTS if outputs.get(name) is not None}
        self._render_key = camera_key(camera)

    def forget_render(self) -> None:
        """Drop the remembered render (``remember_render``)."""
        self._render_key, self._render = None, None

    def remembered_size(self) -> Optional[Tuple[int, int]]:
        """(H, W) of the remembered render, None when there is none."""
        return None if self._render is None else tuple(self._render["accumulation"].shape[:2])  # type: ignore

    def remembered_render(self, camera: "Cameras") -> Optional[Dict[str, Tensor]]:
        """The remembered render when it shows exactly ``camera``, else None."""
        if self._render is None or self._render_key is None or not torch.equal(camera_key(camera), self._render_key):
            return None
        return self._render

    def pixel_sample(self, camera: "Cameras", column: int, row: int, window: Optional[int] = None) -> PixelSample:
        """What ``camera`` [1] shows at pixel (``column``, ``row``): from the remembered render of this camera,
        else from a render of the whole view (remembered), or, with a ``window`` smaller than the view, of a
        ``window`` x ``window`` crop around the pixel only (``crop_camera``; its cost does not grow with the view's
        size; not remembered)."""
        outputs, x, y, seconds = self.remembered_render(camera), column, row, 0.0
        source = "cached view"
        if window is not None and window >= max(camera_size(camera)):
            window = None  # the window holds the whole view: render the view itself, and remember it
        if outputs is None and window is None:
            (outputs, seconds), source = self.render(camera), "render"
        elif outputs is None:
            start = time.perf_counter()
            crop, x, y = crop_camera(camera, column, row, window)
            with torch.no_grad():  # the model's own render: its crop box (a viewer's) stays as it is
                outputs, source = self.model.get_outputs(crop.to(self.model.click_features.device)), "window render"
            seconds = time.perf_counter() - start
        height, width = outputs["accumulation"].shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"Pixel ({column}, {row}) lies outside the {width}x{height} view")
        depth = outputs.get("depth")
        return PixelSample(outputs["coarse_features"][y, x], outputs["fine_features"][y, x],
                           float(outputs["accumulation"][y, x].reshape(-1)[0]),
                           float(depth[y, x].reshape(-1)[0]) if depth is not None else math.nan, column, row, camera,
                           source, seconds)

    def click(self, camera: "Cameras", x: float, y: float, level: Level = "coarse", mode: Mode = "add",
              window: Optional[int] = None) -> ClickResult:
        """Click pixel (x right, y down; pixel i covers [i, i + 1)) of ``camera`` [1] and update the selection; the
        pixel is read as ``pixel_sample`` reads it (``window``: the side of the crop rendered when no render of the
        camera is remembered; None renders the whole view)."""
        start = time.perf_counter()
        check_level(level)
        sample = self.pixel_sample(camera, int(math.floor(x)), int(math.floor(y)), window)
        result = self.click_sample(sample, level, mode)
        result.seconds = time.perf_counter() - start
        return result

    def click_sample(self, sample: PixelSample, level: Level = "coarse", mode: Mode = "add") -> ClickResult:
        """Select by what a view shows at one pixel (``pixel_sample``) and update the selection; a weak feature
        selects what renders under the pixel (``pixel_weights``)."""
        result = self.click_feature(sample.features(level), level, mode, sample.alpha, (sample.column, sample.row),
                                    lambda: self.pixel_weights(sample.camera, sample.column, sample.row))
        result.render_seconds = sample.render_seconds
        return result

    def click_feature(self, query: Tensor, level: Level = "coarse", mode: Mode = "add", alpha: float = math.inf,
                      pixel: Optional[Tuple[int, int]] = None,
                      pixel_weights: Optional[Callable[[], Optional[Tuple[Tensor, Tensor]]]] = None) -> ClickResult:
        """Select by an already rendered pixel: its feature ``query`` [D] of ``level`` and its accumulation
        ``alpha``, and update the selection. A pixel below ``background_alpha`` is empty background: nothing
        changes. ``pixel`` (column, row) is only reported; ``pixel_weights`` as ``select_by_feature`` takes it."""
        start = time.perf_counter()
        check_level(level)
        check_mode(mode)
        if alpha < self.config.background_alpha:
            where = "" if pixel is None else f" at pixel ({pixel[0]}, {pixel[1]})"
            mask = torch.zeros(self.num_gaussians, dtype=torch.bool, device=self.model.click_features.device)
            result = ClickResult(mask, None, math.nan, False,
                                 f"Clicked empty background{where} (accumulation {alpha:.2f} < "
                                 f"{self.config.background_alpha:g}): selection unchanged.", 0, hit_background=True)
        else:
            result = self._select(query, level, mode, pixel_weights)
        result.level, result.pixel = level, pixel
        result.total_selected = self.state.num_selected
        result.seconds = time.perf_counter() - start
        return result

    def pixel_weights(self, camera: "Cameras", column: int, row: int) -> Optional[Tuple[Tensor, Tensor]]:
        """The Gaussians [M] that render pixel (``column``, ``row``) of ``camera`` [1] and their rendering weights
        [M] (alpha_i T_i), or None for a model that cannot say (one without ``label_votes``)."""
        label_votes = getattr(self.model, "label_votes", None)
        if label_votes is None:
            return None
        votes = label_votes(pixel_camera(camera, column, row), torch.zeros(1, 1, 1, dtype=torch.long), 1)
        return votes.keys // votes.num_labels, votes.weights

    def _select(self, query: Tensor, level: str, mode: str,
                pixel_weights: Optional[Callable[[], Optional[Tuple[Tensor, Tensor]]]] = None) -> ClickResult:
        data = self.level_data(level)
        if query.reshape(-1).shape[0] != data.features.shape[1]:
            raise ValueError(f"A {level} query has {data.features.shape[1]} channels, got {query.reshape(-1).shape[0]}")

        @functools.cache  # the pixel's 1 x 1 render, made once when asked
        def under_pixel() -> Optional[Tuple[Tensor, Tensor]]:
            ask = pixel_weights is not None and self.config.pixel_decides
            return pixel_weights() if ask else None  # type: ignore[misc]

        def pixel_shares() -> Optional[Tensor]:
            weights = under_pixel()
            return None if weights is None else candidate_shares(data.segment_labels, *weights,
                                                                 data.candidates.shape[0])

        def unclaimed_feature() -> Optional[Tensor]:
            weights = under_pixel()
            return None if weights is None else unclaimed_pixel_feature(data.segment_labels, *weights, data.features)

        result = select_by_feature(query, data.labels, data.candidates, data.features, self.config, pixel_shares,
                                   unclaimed_feature)
        if data.convergence < self.config.min_convergence:
            result.message += (f" Warning: the {level} features have not converged ({100 * data.convergence:.0f}% of "
                               f"the Gaussians, weighted by opacity, lie within cos {self.config.converged_cosine:g} "
                               "of a candidate): train the feature stage longer.")
        if result.num_selected > 0:
            self.state.apply(result, mode)
        else:
            result.message += " Selection unchanged."
        return result

    def labels_origin(self, level: Level) -> str:
        """How the labels that clicks at ``level`` select were made, in words (``labels_origin``)."""
        return labels_origin(self.level_data(level).saved, labelling_method(self.model))

    def segment_everything(self, level: Level = "coarse") -> Segmentation:
        """Whole-scene instance labels at ``level`` (cached until ``refresh()``)."""
        if level not in self._segmentations:
            data = self.level_data(level)
            if data.saved:
                labels = level_state(self.model, level, "segment_labels")
                if labels is None or labels.shape != data.labels.shape or not bool((labels >= 0).any()):
                    labels = data.labels  # no segment labels (a model without them, or none lifted): the click labels
                labels = labels.to(data.labels.device).long()
                unlabelled = int((labels < 0).sum())
                method = labelling_method(self.model)
                how, why = {
                    "view_vote": ("labels lifted from the training views",
                                  "that no training view shows near a candidate"),
                    "nearest_feature": ("each Gaussian's nearest candidate", "without a candidate"),
                }.get(method or "", ("the run's saved labels", "without a saved label"))
                self._segmentations[level] = Segmentation(
                    labels, int(data.candidates.shape[0]), False,
                    f"{data.candidates.shape[0]} segments (global candidates, {how}); {unlabelled} Gaussians {why} "
                    "are labelled -1.")
            else:
                self._segmentations[level] = segment_everything(data.features, data.candidates, self.config)
        return self._segmentations[level]

    def convergence_summary(self) -> str:
        """One line on how far the features converged (``LevelData.convergence``), for status lines and reports."""
        parts = []
        for level in LEVELS:
            share = self.level_data(level).convergence
            parts.append(f"{level} {100 * share:.0f}%" if math.isfinite(share) else f"{level} n/a (no candidates)")
        return f"Features converged (opacity-weighted, cos > {self.config.converged_cosine:g}): {', '.join(parts)}."

    def clear(self) -> None:
        self.state.clear()

    def undo(self) -> bool:
        return self.state.undo()
