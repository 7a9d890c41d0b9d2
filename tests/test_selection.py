"""Tests of click selection (clickgs_ns.segment.selection), export (clickgs_ns.segment.export) and the scripting API
(clickgs_ns.app.api), on hand-made tensors, a fake model with hand-made render maps and the CPU renderer."""

from __future__ import annotations

import dataclasses

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData

from clickgs_ns.app.api import ClickGaussianScene
from clickgs_ns.io.selection_files import load_selection, save_selection
from clickgs_ns.render.cameras import crop_camera, pixel_camera
from clickgs_ns.segment.export import export_gaussians, export_segments, sidecar_paths
from clickgs_ns.segment.run import LoadedRun
from clickgs_ns.segment.selection import (
    ClickResult,
    SelectionConfig,
    SelectionState,
    Segmenter,
    candidate_shares,
    level_features,
    render_selection_alpha,
    segment_everything,
    select_by_feature,
    shown_candidate,
    selection_mask,
    unclaimed_pixel_feature,
)

COARSE_DIM = 12
FEATURE_DIM = 24


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def basis(i: int, dim: int) -> torch.Tensor:
    v = torch.zeros(dim)
    v[i] = 1.0
    return v


def make_camera(width: int = 8, height: int = 6, focal: float = 10.0):
    """One nerfstudio camera at the origin looking down -z (OpenGL), [1]."""
    from nerfstudio.cameras.cameras import Cameras, CameraType

    return Cameras(
        camera_to_worlds=torch.eye(4)[None, :3, :], fx=focal, fy=focal, cx=width / 2, cy=height / 2,
        width=width, height=height, camera_type=CameraType.PERSPECTIVE,
    )


class FakeModel:
    """Duck-typed ClickGaussianModel: three groups of Gaussians with distinct features and a hand-made render.

    Group g (g = 0, 1, 2) has feature e_g in both halves; coarse and fine candidates are e_0, e_1, e_2.
    The render's left 3 columns are background (accumulation 0); elsewhere column c shows group (c - 3) % 3.
    """

    def __init__(self, group_sizes=(5, 3, 2), with_candidates: bool = True, width: int = 8, height: int = 6):
        self.groups = torch.cat([torch.full((n,), g) for g, n in enumerate(group_sizes)])
        n = len(self.groups)
        coarse = torch.stack([basis(int(g), COARSE_DIM) for g in self.groups])
        self.click_features = torch.cat([coarse, coarse], dim=-1)  # [N, 24]
        self.config = SimpleNamespace(coarse_dim=COARSE_DIM, render_backend="torch", rasterize_mode="classic")
        k = 3 if with_candidates else 0
        self.coarse_candidates = torch.stack([basis(g, COARSE_DIM) for g in range(3)])[:k]
        self.fine_candidates = unit(torch.cat([self.coarse_candidates, self.coarse_candidates], dim=-1))
        self.width, self.height = width, height
        self.render_calls = 0
        self.gauss_params = {
            "means": torch.randn(n, 3, generator=torch.Generator().manual_seed(1)),
            "scales": torch.full((n, 3), -2.0),
            "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
            "features_dc": torch.rand(n, 3, generator=torch.Generator().manual_seed(2)),
            "features_rest": torch.zeros(n, 3, 3),
            "opacities": torch.zeros(n, 1),
            "click_features": self.click_features,
        }

    def get_outputs_for_camera(self, camera):
        self.render_calls += 1
        columns = torch.arange(self.width)
        group = (columns - 3) % 3
        coarse_row = torch.stack([basis(int(g), COARSE_DIM) for g in group]) * 0.8  # alpha-blended: not unit
        coarse = coarse_row[None].expand(self.height, -1, -1)
        accumulation = (columns >= 3).float()[None, :, None].expand(self.height, -1, 1)
        return {"coarse_features": coarse, "fine_features": torch.cat([coarse, coarse], dim=-1),
                "accumulation": accumulation, "rgb": torch.zeros(self.height, self.width, 3)}


# ------------------------------------------------------------------------------------------------ pure functions
def test_level_features_takes_the_level_channels_normalised():
    features = torch.arange(2 * FEATURE_DIM, dtype=torch.float32).reshape(2, FEATURE_DIM) + 1
    coarse = level_features(features, "coarse", COARSE_DIM)
    fine = level_features(features, "fine", COARSE_DIM)
    assert coarse.shape == (2, COARSE_DIM) and fine.shape == (2, FEATURE_DIM)
    torch.testing.assert_close(coarse, unit(features[:, :COARSE_DIM]))
    torch.testing.assert_close(fine.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="level"):
        level_features(features, "medium", COARSE_DIM)


def test_select_by_feature_picks_the_candidate_label():
    candidates = torch.eye(3, 4)  # e_0, e_1, e_2 in R^4
    labels = torch.tensor([0, 1, 1, 2, 1, 0])
    features = unit(torch.eye(4)[labels])
    query = torch.tensor([0.1, 2.0, 0.2, 0.0])  # close to e_1, not unit length
    result = select_by_feature(query, labels, candidates, features)
    assert isinstance(result, ClickResult)
    assert result.candidate == 1 and not result.used_fallback
    assert torch.equal(result.mask, labels == 1)
    assert result.num_selected == 3
    assert result.cosine == pytest.approx(2.0 / math.sqrt(0.01 + 4 + 0.04), abs=1e-6)
    assert "candidate 1" in result.message


def test_select_by_feature_falls_back_when_no_candidate_matches_and_says_so():
    candidates = torch.eye(3, 4)
    labels = torch.tensor([0, 1, 2, 0])
    features = unit(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0.05, 0, 0, 1]]))
    query = torch.tensor([0.0, 0.0, 0.0, 1.0])  # cos 0 with every candidate
    result = select_by_feature(query, labels, candidates, features, SelectionConfig(fallback_min_cosine=0.9))
    assert result.used_fallback and result.candidate is None
    assert torch.equal(result.mask, torch.tensor([False, False, True, True]))
    assert "matches no global candidate" in result.message and "fell back" in result.message
    # no candidates at all: fallback too, with its own reason
    result = select_by_feature(query, labels, candidates[:0], features)
    assert result.used_fallback and "no global candidates" in result.message
    assert math.isnan(result.cosine) and result.num_selected == 2


def test_candidate_shares_are_each_labels_share_of_the_pixels_weight():
    labels = torch.tensor([0, 1, 1, -1, 2])
    gaussians, weights = torch.tensor([0, 1, 2, 3]), torch.tensor([0.3, 0.2, 0.2, 0.3])
    shares = candidate_shares(labels, gaussians, weights, 3)
    assert shares.tolist() == pytest.approx([0.3, 0.4, 0.0]), "unlabelled weight counts in the total only"
    assert candidate_shares(labels, torch.tensor([3]), torch.tensor([0.9]), 3).tolist() == [0, 0, 0], "only unlabelled"
    assert candidate_shares(labels, torch.tensor([], dtype=torch.long), torch.tensor([]), 3).tolist() == [0, 0, 0]


def test_shown_candidate_is_the_matching_one_the_pixel_renders_most():
    cosines = torch.tensor([0.79, 0.76, 0.69, 0.95])
    shares = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64)
    assert shown_candidate(cosines, shares, 0.75) == (1, True), "the best match (0) is not under the pixel"
    assert shown_candidate(cosines, torch.tensor([0.3, 0.6, 0.1, 0.0]), 0.75) == (1, True)
    assert shown_candidate(cosines, torch.tensor([0.0, 0.0, 0.7, 0.0]), 0.75) == (2, False), "no match renders it"


def test_a_click_selects_the_matching_candidate_that_its_pixel_shows():
    candidates = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 2])
    features = candidates[labels]
    # a blend that matches 0 best (cos 0.94) and 1 well too (0.84), on a pixel that 1 renders and 0 does not
    blended = unit(torch.tensor([0.95, 0.35, 0.0]))
    weak_feature = unit(torch.tensor([1.0, -1.0, 1.0]))  # cos 0.58, -0.12, 0.58: matches nothing well
    asked = []

    def under_pixel():
        asked.append(True)
        return torch.tensor([0.0, 0.7, 0.1], dtype=torch.float64)

    without = select_by_feature(blended, labels, candidates, features)
    assert without.candidate == 0, "without the pixel's weights: the best feature match"
    result = select_by_feature(blended, labels, candidates, features, pixel_shares=under_pixel)
    assert result.candidate == 1 and result.mask.tolist() == [False, False, True, False] and not result.used_fallback
    assert "render 70% of the clicked pixel" in result.message and len(asked) == 1
    # a feature that matches nothing well: the candidate that renders most of the pixel
    weak = select_by_feature(weak_feature, labels, candidates, features, pixel_shares=under_pixel)
    assert weak.candidate == 1 and "matches no global candidate that renders the clicked pixel" in weak.message
    # labelled Gaussians give under half of the pixel's weight: it does not say what it shows; the feature decides
    mostly_unknown = lambda: torch.tensor([0.0, 0.03, 0.0], dtype=torch.float64)  # noqa: E731
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=mostly_unknown).candidate == 0
    assert select_by_feature(weak_feature, labels, candidates, features, pixel_shares=mostly_unknown).candidate == 1, \
        "a feature that matches nothing still takes what renders the pixel"
    # nothing labelled under the pixel: the feature decides (a strong match), or the old fallback (a weak one)
    nothing = lambda: torch.zeros(3, dtype=torch.float64)  # noqa: E731
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=nothing).candidate == 0
    fallback = select_by_feature(weak_feature, labels, candidates, features, pixel_shares=nothing)
    assert fallback.used_fallback and fallback.candidate is None
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=lambda: None).candidate == 0


def test_unclaimed_pixel_feature_is_the_weighted_mean_of_the_unlabelled_gaussians_under_it():
    features = unit(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    labels = torch.tensor([0, -1, -1, 2])
    gaussians, weights = torch.tensor([0, 1, 2, 3]), torch.tensor([0.5, 0.3, 0.1, 0.1])
    # Gaussians 1 and 2 have no candidate: 0.3 * e_y + 0.1 * e_z, normalised; the labelled 0 and 3 are left out
    expected = unit(torch.tensor([0.0, 0.3, 0.1]))
    assert torch.allclose(unclaimed_pixel_feature(labels, gaussians, weights, features), expected, atol=1e-6)
    assert unclaimed_pixel_feature(labels, torch.tensor([0, 3]), torch.tensor([0.5, 0.5]), features) is None
    assert unclaimed_pixel_feature(labels, torch.tensor([], dtype=torch.long), torch.tensor([]), features) is None


def test_a_best_match_that_renders_none_of_an_unclaimed_pixel_is_not_what_was_clicked():
    """A small object without a candidate, on the ground: its pixel blends it with the ground, so the rendered
    feature matches the ground's candidate (cos 0.80), which renders none of the pixel. The click takes the
    feature of what does render it (no candidate's Gaussians) and selects what is like that, not the ground."""
    candidates = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # ground, another object
    labels = torch.tensor([0, 0, 0, 1, -1, -1])
    features = unit(torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0.2, 0, 1.0], [0.1, 0, 1.0]]))
    blended = unit(torch.tensor([1.0, 0.0, 0.75]))  # cos 0.80 with the ground
    under_pixel = (torch.tensor([4, 5]), torch.tensor([0.6, 0.3]))  # only the two unlabelled Gaussians render it
    shares = lambda: candidate_shares(labels, *under_pixel, 2)  # noqa: E731: zeros, nothing labelled under it
    unclaimed = lambda: unclaimed_pixel_feature(labels, *under_pixel, features)  # noqa: E731

    paper = select_by_feature(blended, labels, candidates, features, pixel_shares=shares)
    assert paper.candidate == 0 and paper.num_selected == 3, "without the unclaimed feature: the ground"
    result = select_by_feature(blended, labels, candidates, features, pixel_shares=shares, unclaimed_feature=unclaimed)
    assert result.used_fallback and result.mask.tolist() == [False] * 4 + [True, True]
    assert "renders none of the clicked pixel" in result.message
    # where the best match renders some of the pixel, or nothing says what renders it, the feature decides as before
    some = lambda: torch.tensor([0.1, 0.0], dtype=torch.float64)  # noqa: E731
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=some,
                             unclaimed_feature=unclaimed).candidate == 0
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=lambda: None,
                             unclaimed_feature=unclaimed).candidate == 0
    assert select_by_feature(blended, labels, candidates, features, pixel_shares=shares,
                             unclaimed_feature=lambda: None).candidate == 0


def test_pixel_camera_sees_one_pixel_of_the_camera():
    camera = make_camera(width=8, height=6, focal=10.0)
    one = pixel_camera(camera, 5, 2)
    assert (int(one.width), int(one.height)) == (1, 1)
    ray = one.generate_rays(camera_indices=0).directions.reshape(-1)
    full = camera.generate_rays(camera_indices=0).directions[2, 5]
    assert torch.allclose(ray, full, atol=1e-6), "the same ray as the pixel's centre"


def test_crop_camera_holds_the_pixel_and_its_rays_clamped_to_the_image():
    camera = make_camera(width=8, height=6, focal=10.0)
    full = camera.generate_rays(camera_indices=0).directions  # [6, 8, 3]
    for (column, row), expected in {(5, 2): (2, 2), (0, 0): (0, 0), (7, 5): (3, 3)}.items():
        crop, crop_column, crop_row = crop_camera(camera, column, row, size=4)
        assert (int(crop.width), int(crop.height), crop_column, crop_row) == (4, 4, *expected)
        rays = crop.generate_rays(camera_indices=0).directions  # [4, 4, 3]
        left, top = column - crop_column, row - crop_row
        assert torch.allclose(rays, full[top : top + 4, left : left + 4], atol=1e-6), "the same rays as the image's"
    whole, column, row = crop_camera(camera, 5, 2, size=64)  # a crop larger than the image: the image
    assert (int(whole.width), int(whole.height), column, row) == (8, 6, 5, 2)


def test_select_by_feature_falls_back_when_no_gaussian_carries_the_matched_candidate():
    candidates = torch.eye(3, 4)
    labels = torch.tensor([0, 0, 2, 2])  # candidate 1 got no Gaussian (no view's vote went to it)
    features = unit(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0.1], [0, 0, 1, 0], [0, 0.9, 0, 0.1]]))
    query = torch.tensor([0.0, 1.0, 0.0, 0.0])  # cos 1 with candidate 1
    result = select_by_feature(query, labels, candidates, features, SelectionConfig(fallback_min_cosine=0.9))
    assert result.used_fallback and result.candidate is None and result.cosine == pytest.approx(1.0)
    assert torch.equal(result.mask, torch.tensor([False, True, False, True]))
    assert "candidate 1" in result.message and "no Gaussian carries" in result.message


def test_select_by_feature_fallback_that_selects_nothing_says_so():
    features = unit(torch.eye(4)[:3])
    result = select_by_feature(torch.tensor([0.0, 0, 0, 1]), torch.full((3,), -1), torch.zeros(0, 4), features)
    assert result.num_selected == 0 and "nothing selected" in result.message


def test_selection_state_add_subtract_replace_undo_clear():
    state = SelectionState(5)
    a = torch.tensor([True, True, False, False, False])
    b = torch.tensor([False, True, True, False, False])
    state.apply(a)
    state.apply(b, mode="add")
    assert state.mask.tolist() == [True, True, True, False, False]
    state.apply(a, mode="subtract")  # a negative click
    assert state.mask.tolist() == [False, False, True, False, False]
    state.apply(a, mode="replace")
    assert torch.nonzero(state.mask).squeeze(-1).tolist() == [0, 1]
    state.clear()
    assert state.num_selected == 0
    assert state.undo() and torch.nonzero(state.mask).squeeze(-1).tolist() == [0, 1]  # clear is undoable
    assert state.undo() and torch.nonzero(state.mask).squeeze(-1).tolist() == [2]
    assert state.undo() and state.undo() and torch.nonzero(state.mask).squeeze(-1).tolist() == [0, 1]
    assert state.undo() and state.num_selected == 0
    assert not state.undo()
    with pytest.raises(ValueError, match="mode"):
        state.apply(a, mode="xor")
    with pytest.raises(ValueError, match="covers 3 Gaussians"):
        state.apply(torch.ones(3, dtype=torch.bool))


def test_selection_state_history_is_bounded():
    state = SelectionState(2, max_history=3)
    for _ in range(10):
        state.apply(torch.tensor([True, False]), mode="replace")
    assert len(state.history) == 3


def test_segment_everything_with_candidates_labels_and_unmatched():
    candidates = torch.eye(4)[:3]
    features = unit(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.1], [0, 0, 0, 1], [0, 1, 0, 0]]))
    segmentation = segment_everything(features, candidates)
    assert segmentation.labels.tolist() == [0, 1, 2, -1, 1]  # the 4th matches nothing (cos 0)
    assert segmentation.num_segments == 3 and not segmentation.used_fallback


def test_segment_everything_without_candidates_clusters_and_says_so():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(24)[:3]
    sizes = (50, 30, 20)
    groups = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    features = unit(centres[groups] + 0.02 * torch.randn(len(groups), 24, generator=generator))
    segmentation = segment_everything(features, torch.zeros(0, 24), SelectionConfig(cluster_min_size=2))
    assert segmentation.used_fallback and "No global candidates" in segmentation.message
    assert segmentation.num_segments == 3
    assert torch.equal(segmentation.labels, groups)  # ids ordered by size: the biggest group is 0
    again = segment_everything(features, torch.zeros(0, 24), SelectionConfig(cluster_min_size=2))
    assert torch.equal(again.labels, segmentation.labels)  # deterministic


# ------------------------------------------------------------------------------------------------ segmenter
def test_segmenter_click_selects_the_clicked_group_and_reuses_the_render():
    model = FakeModel()
    segmenter = Segmenter(model)
    camera = make_camera()
    result = segmenter.click(camera, x=4.5, y=2.0, level="coarse")  # column 4 shows group 1
    assert result.candidate == 1 and not result.used_fallback and not result.hit_background
    assert torch.equal(result.mask, model.groups == 1) and result.num_selected == 3
    assert result.pixel == (4, 2) and result.level == "coarse" and result.total_selected == 3
    assert result.seconds >= result.render_seconds > 0
    result = segmenter.click(camera, x=5.0, y=0.0, level="fine")  # group 2, same camera: no re-render
    assert model.render_calls == 1 and result.render_seconds == 0.0
    assert torch.equal(segmenter.selection, model.groups >= 1)
    segmenter.click(camera, x=4.0, y=0.0, mode="subtract")  # negative click on group 1
    assert torch.equal(segmenter.selection, model.groups == 2)
    assert segmenter.undo() and torch.equal(segmenter.selection, model.groups >= 1)
    segmenter.clear()
    assert not bool(segmenter.selection.any())
    moved = make_camera(focal=11.0)
    segmenter.click(moved, 3.0, 1.0)
    assert model.render_calls == 2


def test_segmenter_background_click_says_so_and_changes_nothing():
    model = FakeModel()
    segmenter = Segmenter(model)
    segmenter.click(make_camera(), 3.0, 0.0)  # group 0
    before = segmenter.selection.clone()
    result = segmenter.click(make_camera(), 1.0, 1.0, mode="replace")  # background column
    assert result.hit_background and result.num_selected == 0 and result.candidate is None
    assert "background" in result.message
    assert torch.equal(segmenter.selection, before)
    with pytest.raises(ValueError, match="outside"):
        segmenter.click(make_camera(), 8.0, 1.0)


def test_segmenter_without_candidates_falls_back_and_refresh_sees_new_candidates():
    model = FakeModel(with_candidates=False)
    segmenter = Segmenter(model)
    result = segmenter.click(make_camera(), 3.0, 0.0)
    assert result.used_fallback and "no global candidates" in result.message
    assert torch.equal(result.mask, model.groups == 0)
    model.coarse_candidates = torch.eye(COARSE_DIM)[:3]
    segmenter.refresh()
    result = segmenter.click_feature(torch.eye(COARSE_DIM)[2], level="coarse")
    assert result.candidate == 2 and not result.used_fallback
    assert torch.equal(segmenter.selection, model.groups != 1)  # the selection survived refresh()
    with pytest.raises(ValueError, match="channels"):
        segmenter.click_feature(torch.ones(5), level="fine")


def test_segmenter_segment_everything_is_the_candidate_labelling():
    model = FakeModel()
    segmentation = Segmenter(model).segment_everything("fine")
    assert torch.equal(segmentation.labels, model.groups)



@pytest.mark.parametrize("method, expected", [
    ("view_vote", "saved (lifted from the training views)"),
    ("nearest_feature", "saved (each Gaussian's nearest candidate: labelling.method nearest_feature)"),
    (None, "saved (the run's config does not say how: no labelling.method)"),
])
def test_eval_report_says_how_the_saved_labels_were_made(method, expected):
    from clickgs_ns.segment.evaluate import evaluate_prompts

    model = FakeModel()
    model.coarse_labels = model.groups.clone()  # saved coarse labels; no fine ones
    if method is not None:
        model.config.labelling = SimpleNamespace(method=method)
    scene = SimpleNamespace(views=None, model=model, segmenter=Segmenter(model))
    report = evaluate_prompts(scene, [], Path("prompts.json"))
    assert report["labels"] == {"coarse": expected,
                                "fine": "nearest candidate (computed on loading: the run saved no labels)"}
    message = scene.segmenter.segment_everything("coarse").message
    assert ("lifted from the training views" in message) == (method == "view_vote")


# ------------------------------------------------------------------------------------------------ rendering
def test_render_selection_alpha_renders_only_the_selected_gaussians():
    camera = make_camera(width=16, height=16, focal=16.0)
    means = torch.tensor([[-0.5, 0.0, -2.0], [0.5, 0.0, -2.0]])  # left and right of centre, in front (-z)
    quats = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    scales = torch.full((2, 3), math.log(0.15))
    opacities = torch.full((2, 1), 5.0)
    alpha = render_selection_alpha(means, quats, scales, opacities, torch.tensor([True, False]), camera,
                                   backend="torch")
    assert alpha.shape == (16, 16)
    left, right = alpha[8, 4], alpha[8, 12]  # x = -0.5 at depth 2 -> column 8 - 4
    assert left > 0.5 and right < 1e-3
    none = render_selection_alpha(means, quats, scales, opacities, torch.zeros(2, dtype=torch.bool), camera)
    assert not bool(none.any())


# ------------------------------------------------------------------------------------------------ export
def rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_export_round_trip_in_the_dataset_frame(tmp_path: Path):
    model = FakeModel()
    n = len(model.groups)
    generator = torch.Generator().manual_seed(3)
    dataset_means = torch.randn(n, 3, generator=generator)
    rotation, translation, scale = rotation_z(0.7), torch.tensor([0.3, -1.0, 2.0]), 0.25
    transform = torch.cat([rotation, translation[:, None]], dim=1)  # [3, 4]
    model.gauss_params["means"] = scale * (dataset_means @ rotation.T + translation)  # the training frame
    mask = model.groups != 1
    mask[0] = False
    labels = torch.arange(n) * 10
    path = tmp_path / "out" / "object.ply"
    result = export_gaussians(model, mask, path, transform, scale, labels=labels)

    vertices = PlyData.read(str(path))["vertex"].data
    names = vertices.dtype.names
    for name in ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                 "rot_0", "rot_1", "rot_2", "rot_3", "f_rest_0", "label"]:
        assert name in names
    assert vertices["label"].dtype == np.int32
    expected = torch.nonzero(mask).squeeze(-1)
    assert len(vertices) == int(mask.sum()) == result.num_exported
    assert torch.equal(result.indices, expected)
    positions = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    np.testing.assert_allclose(positions, dataset_means[expected].numpy(), atol=1e-5)
    np.testing.assert_allclose(vertices["scale_0"], (model.gauss_params["scales"][expected, 0] - math.log(scale))
                               .numpy(), atol=1e-5)  # sizes back in dataset units
    sidecars = sidecar_paths(path)
    npy_labels = np.load(sidecars["labels"])
    assert npy_labels.dtype == np.int32
    np.testing.assert_array_equal(npy_labels, vertices["label"])
    np.testing.assert_array_equal(npy_labels, labels[expected].numpy())
    info = json.loads(sidecars["json"].read_text())
    assert info["indices"] == expected.tolist() and info["num_model_gaussians"] == n
    assert info["frame"] == "dataset" and not list(path.parent.glob(".*tmp*"))  # no temporary files left


def test_export_drops_non_finite_gaussians(tmp_path: Path):
    model = FakeModel()
    model.gauss_params["means"] = model.gauss_params["means"].clone()
    model.gauss_params["means"][2, 1] = float("nan")
    model.gauss_params["opacities"] = model.gauss_params["opacities"].clone()
    model.gauss_params["opacities"][4] = float("inf")
    result = export_gaussians(model, None, tmp_path / "all.ply", None)
    assert result.num_dropped_nonfinite == 2
    assert PlyData.read(str(tmp_path / "all.ply"))["vertex"].count == len(model.groups) - 2
    assert 2 not in result.indices.tolist() and 4 not in result.indices.tolist()
    assert (np.load(sidecar_paths(tmp_path / "all.ply")["labels"]) == 0).all()


def test_export_segments_writes_one_ply_per_segment(tmp_path: Path):
    model = FakeModel()
    labels = model.groups.clone()
    labels[0] = -1
    results = export_segments(model, labels, tmp_path / "segments", None)
    assert [r.num_exported for r in results] == [4, 3, 2]
    for r, segment in zip(results, range(3)):
        vertices = PlyData.read(str(r.path))["vertex"].data
        assert (vertices["label"] == segment).all()
        assert torch.equal(r.indices, torch.nonzero(labels == segment).squeeze(-1))
    index = json.loads((tmp_path / "segments" / "segments.json").read_text())
    assert [s["id"] for s in index["segments"]] == [0, 1, 2] and index["num_unlabelled"] == 1


def test_export_include_features_writes_the_click_features(tmp_path: Path):
    model = FakeModel()
    mask = model.groups == 1
    export_gaussians(model, mask, tmp_path / "object.ply", None, include_features=True)
    vertices = PlyData.read(str(tmp_path / "object.ply"))["vertex"].data
    features = np.stack([vertices[f"feature_{c}"] for c in range(FEATURE_DIM)], axis=1)
    np.testing.assert_allclose(features, model.click_features[mask].numpy())
    assert f"feature_{FEATURE_DIM}" not in vertices.dtype.names
    del model.gauss_params["click_features"]
    with pytest.raises(ValueError, match="no click_features"):
        export_gaussians(model, mask, tmp_path / "other.ply", None, include_features=True)


def export_files(path: Path):
    """(.ply vertex count, .labels.npy length, .export.json's num_exported or None when there is none)."""
    sidecars = sidecar_paths(path)
    info = json.loads(sidecars["json"].read_text()) if sidecars["json"].exists() else None
    return (PlyData.read(str(path))["vertex"].count, len(np.load(sidecars["labels"])),
            None if info is None else info["num_exported"])


def test_an_export_that_fails_midway_never_leaves_a_mismatched_set(tmp_path: Path, monkeypatch):
    import clickgs_ns.segment.export as export_module

    model = FakeModel()
    path = tmp_path / "object.ply"
    export_gaussians(model, model.groups == 0, path, None)
    assert export_files(path) == (5, 5, 5)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:  # fails after the new .ply is written, before its labels
        patch.setattr(export_module.np, "save", crash)
        with pytest.raises(OSError, match="disk full"):
            export_gaussians(model, model.groups == 1, path, None)
    assert export_files(path) == (5, 5, 5), "the earlier export is untouched"
    with monkeypatch.context() as patch:  # fails after the .ply and labels, before the .export.json
        patch.setattr(export_module, "atomic_write_text", crash)
        with pytest.raises(OSError, match="disk full"):
            export_gaussians(model, model.groups == 1, path, None)
    assert export_files(path) == (3, 3, None), "no .export.json: the commit marker says the export is incomplete"
    export_gaussians(model, model.groups == 1, path, None)
    assert export_files(path) == (3, 3, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["object.export.json", "object.labels.npy", "object.ply"]


def test_export_segments_removes_the_segments_of_an_earlier_export_only(tmp_path: Path):
    model = FakeModel()
    out = tmp_path / "segments"
    export_segments(model, model.groups, out, None)
    mine = ["segment_0000", "segment_0001", "segment_0002"]
    assert {p.stem.split(".")[0] for p in out.glob("segment_*")} == set(mine)
    unrelated = {"segment_0007.ply": b"a user's file", "notes.txt": b"notes", "segment_0008.ply": b"another",
                 "segment_0008.export.json": json.dumps({"ply": "elsewhere.ply"}).encode(), "segment_x.ply": b""}
    for name, data in unrelated.items():
        (out / name).write_bytes(data)
    merged = torch.where(model.groups == 2, torch.tensor(1), model.groups)  # segment 2 is gone
    results = export_segments(model, merged, out, None)
    assert [r.path.name for r in results] == ["segment_0000.ply", "segment_0001.ply"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{stem}{suffix}" for stem in mine[:2] for suffix in (".ply", ".labels.npy",
                                                                                   ".export.json")]
                           + ["segments.json", *unrelated])
    assert export_files(out / "segment_0001.ply") == (5, 5, 5)
    assert [s["ply"] for s in json.loads((out / "segments.json").read_text())["segments"]] == [
        "segment_0000.ply", "segment_0001.ply"]


def test_save_and_load_selection_and_count_mismatch(tmp_path: Path):
    mask = torch.tensor([True, False, True, False])
    save_selection(tmp_path / "sel.npy", mask)
    assert torch.equal(load_selection(tmp_path / "sel.npy", 4), mask)
    with pytest.raises(ValueError, match="the model has 5"):
        load_selection(tmp_path / "sel.npy", 5)
    np.save(tmp_path / "indices.npy", np.array([0, 2], dtype=np.int32))
    assert torch.equal(load_selection(tmp_path / "indices.npy", 4), mask)
    with pytest.raises(ValueError, match="the model has 2"):
        load_selection(tmp_path / "indices.npy", 2)
    np.save(tmp_path / "floats.npy", np.zeros(4))
    with pytest.raises(ValueError, match="bool mask"):
        load_selection(tmp_path / "floats.npy", 4)
    save_selection(tmp_path / "no_suffix", mask)  # exactly the path given: no 0-byte file beside a "....tmp.npy"
    assert torch.equal(load_selection(tmp_path / "no_suffix", 4), mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floats.npy", "indices.npy", "no_suffix", "sel.npy"]


# ------------------------------------------------------------------------------------------------ api
def fake_scene(model: FakeModel, data_root: Path, full_scale: int = 2):
    """A LoadedRun of ``model``: one camera at half the full image resolution (images_2/ vs images/)."""
    camera = make_camera(width=model.width, height=model.height)
    for folder, factor in (("images", full_scale), ("images_2", 1)):
        (data_root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (model.width * factor, model.height * factor)).save(data_root / folder / "frame.png")
    dataset = SimpleNamespace(data_root=data_root, image_filenames=[data_root / "images_2" / "frame.png"],
                              cameras=camera)
    outputs = SimpleNamespace(dataparser_transform=torch.eye(4)[:3], dataparser_scale=0.5)
    datamanager = SimpleNamespace(train_dataset=dataset, train_dataparser_outputs=outputs)
    return LoadedRun(pipeline=SimpleNamespace(model=model, datamanager=datamanager), config_path=data_root, step=0)


def test_api_click_maps_full_resolution_pixels_and_exports(tmp_path: Path):
    model = FakeModel()
    scene = ClickGaussianScene(fake_scene(model, tmp_path / "data"))
    assert scene.full_resolution_size(0) == (12, 16)
    result = scene.click(0, x=9, y=3)  # full-res column 9 -> camera column 4: group 1
    assert result.pixel == (4, 1) and result.candidate == 1
    assert torch.equal(scene.selection, model.groups == 1)
    result = scene.click(0, x=2, y=3)  # camera column 1: background
    assert result.hit_background
    with pytest.raises(ValueError, match="outside"):
        scene.click(0, x=16, y=0)
    with pytest.raises(IndexError):
        scene.click(1, x=0, y=0)

    export = scene.export(tmp_path / "sel.ply")
    assert export.indices.tolist() == torch.nonzero(model.groups == 1).squeeze(-1).tolist()
    assert scene.export(tmp_path / "object").path == tmp_path / "object.ply"  # the suffix added, as for selections
    with pytest.raises(ValueError, match=r"sel\.npy: a splat is exported as a \.ply file"):
        scene.export(tmp_path / "sel.npy")
    vertices = PlyData.read(str(tmp_path / "sel.ply"))["vertex"].data
    np.testing.assert_allclose(vertices["x"], model.gauss_params["means"][model.groups == 1, 0].numpy() / 0.5,
                               atol=1e-5)
    assert (vertices["label"] == 1).all()  # "segment everything" id at the coarse level
    assert torch.equal(scene.segment_everything("coarse"), model.groups)

    scene.save_selection(tmp_path / "sel.npy")
    assert scene.save_selection(tmp_path / "named") == tmp_path / "named.npy"  # numpy's suffix rule, not a 0-byte file
    assert torch.equal(load_selection(tmp_path / "named.npy", model.groups.numel()), model.groups == 1)
    assert not (tmp_path / "named").exists() and not list(tmp_path.glob(".*tmp*"))
    scene.clear()
    assert not bool(scene.selection.any())
    with pytest.raises(ValueError, match="Nothing to export: the selection is empty. Click first"):
        scene.export(tmp_path / "empty.ply")
    assert scene.undo() and torch.equal(scene.selection, model.groups == 1)
    scene.clear()
    scene.load_selection(tmp_path / "sel.npy")
    assert torch.equal(scene.selection, model.groups == 1)


def test_clickgs_segment_checks_every_click_before_rendering_and_an_index_that_names_a_photo(tmp_path: Path,
                                                                                                capsys):
    """``clickgs segment``: a click outside its photo stops the command before any click renders; an integer that
    is both a training view's index and another photo's name is refused with both readings."""
    from clickgs_ns.app.cli import apply_click, click_target, parse_click_args

    model = FakeModel()
    scene = ClickGaussianScene(fake_scene(model, tmp_path / "data"))  # one training view: images_2/frame.png
    good, outside = parse_click_args([["0", "9", "3", "coarse"], ["frame.png", "16", "0", "coarse"]])
    assert click_target(scene, good).key == "images/frame.png"
    with pytest.raises(SystemExit):
        click_target(scene, outside)
    assert "lies outside images/frame.png (16x12)" in capsys.readouterr().out
    assert not bool(scene.selection.any()), "nothing was clicked"
    (zero,) = parse_click_args([["0", "9", "3", "coarse"]])
    scene.views.views["images/0.png"] = dataclasses.replace(scene.views.views["images/frame.png"], key="images/0.png",
                                                            split="eval")  # a held-out photo named 0.png
    with pytest.raises(SystemExit):
        click_target(scene, zero)
    printed = " ".join(capsys.readouterr().out.split())
    assert "0 names the photo images/0.png and is the index of training view 0 (images/frame.png)" in printed, printed
    del scene.views.views["images/0.png"]
    assert apply_click(scene, zero).candidate == 1


def test_api_clicks_a_photo_by_name(tmp_path: Path):
    model = FakeModel()
    scene = ClickGaussianScene(fake_scene(model, tmp_path / "data"))  # trains on images_2/frame.png
    by_index = scene.click(camera_index=0, x=9, y=3)
    for name in ("images/frame.png", "frame.png", "images_2/frame.png", "./images/frame.png", "frame"):
        scene.clear()
        result = scene.click(image=name, x=9, y=3, level="coarse")
        assert result.pixel == by_index.pixel and torch.equal(scene.selection, model.groups == 1), name
    scene.clear()
    scene.click("frame.png", 9, 3)  # the positional form, with a name
    assert torch.equal(scene.selection, model.groups == 1)
    assert scene.view("frame.png") is scene.view(0) is scene.train_view(0)
    with pytest.raises(ValueError, match=r"frame_00099\.png is not a view of the run \(1 views: images/frame\.png\)"):
        scene.click(image="frame_00099.png", x=9, y=3)
    with pytest.raises(TypeError, match="exactly one of them"):
        scene.click(0, x=9, y=3, image="frame.png")
    with pytest.raises(TypeError, match="exactly one of them"):
        scene.click(x=9, y=3)
    with pytest.raises(TypeError, match="x and y"):
        scene.click(image="frame.png")


def test_view_index_finds_photos_of_both_splits_by_name(tmp_path: Path):
    from nerfstudio.cameras.cameras import Cameras

    from clickgs_ns.segment.views import ViewIndex

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    files = {"train": ["frame_00001.png", "frame_00002.png", "frame_00003.jpg"], "eval": ["frame_00003.png"]}

    def dataset(names):
        for name in names:
            Image.new("RGB", (16, 12)).save(root / "images" / name)
        cameras = Cameras(camera_to_worlds=torch.eye(4)[None, :3, :].repeat(len(names), 1, 1), fx=10.0, fy=10.0,
                          cx=4.0, cy=3.0, width=8, height=6)
        return SimpleNamespace(data_root=root, image_filenames=[root / "images" / n for n in names], cameras=cameras)

    views = ViewIndex(SimpleNamespace(train_dataset=dataset(files["train"]), eval_dataset=dataset(files["eval"])))
    assert (views.find("frame_00002.png").split, views.find("images/frame_00002.png").index) == ("train", 1)
    assert views.find("frame_00003.png").split == "eval" and views.find("frame_00003.jpg").split == "train"
    assert views.find("frame_00001").key == "images/frame_00001.png"
    with pytest.raises(ValueError, match=r"frame_00003 could be 2 views \(images/frame_00003\.jpg, "
                                         r"images/frame_00003\.png\): give its path as in transforms\.json"):
        views.find("frame_00003")
    with pytest.raises(ValueError, match=r"frame_00009\.png is not a view of the run \(4 views: images/frame_00001"):
        views.find("frame_00009.png")
    assert [view.summary() for view in views.views.values()] == [
        {"image": f"images/{name}", "split": split, "index": index, "width": 16, "height": 12}
        for split, names in files.items() for index, name in enumerate(names)]


def test_selection_mask_renders_the_selected_gaussians_alone():
    model = FakeModel()
    model.gauss_params["means"] = torch.tensor([[0.0, 0.0, -2.0]]).repeat(len(model.groups), 1)
    model.gauss_params["scales"] = torch.full((len(model.groups), 3), math.log(0.3))
    model.gauss_params["opacities"] = torch.full((len(model.groups), 1), 5.0)
    mask = selection_mask(model, model.groups == 0, make_camera())
    assert mask.shape == (6, 8) and mask.dtype == np.bool_ and bool(mask[3, 4]) and not bool(mask[0, 0])
    assert not selection_mask(model, torch.zeros(len(model.groups), dtype=torch.bool), make_camera()).any()


def test_segmenter_on_the_real_model_and_renderer():
    from nerfstudio.data.scene_box import SceneBox

    from clickgs_ns.method.model import ClickGaussianModelConfig

    torch.manual_seed(0)
    config = ClickGaussianModelConfig(num_random=200, random_init=True, random_scale=2.0, render_backend="torch")
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1,
                         metadata={})
    model.eval()
    n = model.click_features.shape[0]
    left = model.means[:, 0] < 0
    pattern = torch.where(left[:, None], torch.eye(FEATURE_DIM)[0] + torch.eye(FEATURE_DIM)[12],
                          torch.eye(FEATURE_DIM)[1] + torch.eye(FEATURE_DIM)[13])
    model.gauss_params["click_features"].data.copy_(pattern)
    model.gauss_params["opacities"].data.fill_(4.0)
    model.set_candidates(torch.eye(COARSE_DIM)[:2], unit(pattern[[int(torch.nonzero(left)[0]),
                                                                  int(torch.nonzero(~left)[0])]]))
    camera = make_camera(width=48, height=32, focal=30.0)
    camera.camera_to_worlds[0, 2, 3] = 3.0  # 3 units back along +z, looking at the cube
    segmenter = Segmenter(model)
    result = segmenter.click(camera, 19.0, 16.0, level="fine")  # left of centre: x < 0
    assert result.candidate == 0 and torch.equal(result.mask, left), result.message
    result = segmenter.click(camera, 29.0, 16.0, level="coarse")
    assert result.candidate == 1 and result.render_seconds == 0.0
    assert int(segmenter.selection.sum()) == n
    gaussians, weights = segmenter.pixel_weights(camera, 19, 16)
    assert float(weights.sum()) == pytest.approx(float(segmenter.render(camera)[0]["accumulation"][16, 19, 0]),
                                                 abs=2e-3), "the weights of a pixel add up to its accumulation"
    assert bool(left[gaussians[weights.argmax()]]), "left of centre: mostly left Gaussians"
    model.set_candidates(torch.eye(COARSE_DIM)[2:4], model.fine_candidates)  # no coarse candidate matches any pixel
    segmenter.refresh()
    segmenter.clear()
    result = segmenter.click(camera, 19.0, 16.0, level="coarse")
    assert not result.used_fallback and "clicked pixel" in result.message, result.message
    paper = Segmenter(model, SelectionConfig(pixel_decides=False)).click(camera, 19.0, 16.0, level="coarse")
    assert paper.used_fallback and "matches no global candidate well" in paper.message, "the paper: features only"

    # a click reads the pixel from a remembered render (the viewer's), else from a render of the view or of a window
    segmenter.refresh()
    assert segmenter.remembered_size() is None
    window = segmenter.pixel_sample(camera, 24, 16, window=32)
    assert window.source == "window render" and segmenter.remembered_size() is None, "a window is not remembered"
    whole = segmenter.pixel_sample(camera, 24, 16)
    assert whole.source == "render" and segmenter.remembered_size() == (32, 48)
    torch.testing.assert_close(window.fine_features, whole.fine_features, atol=1e-5, rtol=0)
    assert window.alpha == pytest.approx(whole.alpha, abs=1e-5) and window.depth == pytest.approx(whole.depth, 1e-4)
    # a small window is close, not equal: the projection clamps the Jacobian of Gaussians far outside the image
    # (as gsplat does), and a small window leaves more of them outside
    small = segmenter.pixel_sample(camera, 24, 16, window=8)
    torch.testing.assert_close(small.fine_features, whole.fine_features, atol=0.02, rtol=0)
    segmenter.refresh()
    holds_the_view = segmenter.pixel_sample(camera, 24, 16, window=48)
    assert holds_the_view.source == "render" and segmenter.remembered_size() == (32, 48), \
        "a window that holds the whole view renders the view itself, and remembers it"
    torch.testing.assert_close(holds_the_view.fine_features, whole.fine_features, atol=0, rtol=0)
    outputs = {name: torch.zeros(32, 48, dim) for name, dim in
               (("coarse_features", COARSE_DIM), ("fine_features", FEATURE_DIM), ("accumulation", 1))}
    segmenter.remember_render(camera, outputs)
    cached = segmenter.pixel_sample(camera, 19, 16, window=8)
    assert cached.source == "cached view" and cached.alpha == 0.0 and math.isnan(cached.depth)
    with pytest.raises(ValueError, match="outside the 48x32 view"):
        segmenter.pixel_sample(camera, 48, 16)
