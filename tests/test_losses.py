"""Tests of clickgs_ns/method/losses.py on small hand-made inputs whose answers are computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clickgs_ns.method.losses import (
    FeatureLossConfig,
    build_knn_index,
    contrastive_loss,
    contrastive_losses,
    feature_stage_losses,
    norm2d_loss,
    norm3d_loss,
    sample_pixels,
    spatial_loss,
)

SMALL = FeatureLossConfig(negative_normalisation="negative_pairs")
"""L_neg as the paper's mean over different-id pairs; with SMALL_COARSE_DIM, on 4-d features."""
SMALL_COARSE_DIM = 2
"""4-d features: coarse = [:2], fbar = [2:]."""


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def _ids(values, dtype=torch.long):
    return torch.tensor(values, dtype=dtype)


def _unit2(cos: float):
    """A 2-d unit vector at cosine ``cos`` from (1, 0)."""
    return [cos, math.sqrt(1 - cos * cos)]


def _naive_contrastive(features, coarse_ids, fine_ids, config, cd):
    """Reference: explicit P x P matrices, diagonal excluded, sub-margin pairs counted in the denominator."""
    out = {}
    levels = {
        "coarse": (features[:, :cd], features[:, :cd], coarse_ids, config.coarse_margin),
        "fine": (features, torch.cat([features[:, :cd].detach(), features[:, cd:]], -1), fine_ids, config.fine_margin),
    }
    for name, (pos_feat, neg_feat, ids, margin) in levels.items():
        valid = ids >= 0
        eye = torch.eye(len(ids), dtype=torch.bool)
        both = valid[:, None] & valid[None, :] & ~eye
        same = both & (ids[:, None] == ids[None, :])
        diff = both & (ids[:, None] != ids[None, :])
        pos_sim = F.normalize(pos_feat, dim=-1) @ F.normalize(pos_feat, dim=-1).T
        neg_sim = F.normalize(neg_feat, dim=-1) @ F.normalize(neg_feat, dim=-1).T
        hinge = torch.where(neg_sim.detach() > margin, neg_sim, torch.zeros_like(neg_sim))
        out[f"pos_{name}"] = -(pos_sim[same].sum() / same.sum()) if same.any() else pos_sim.sum() * 0
        out[f"neg_{name}"] = (hinge[diff].sum() / diff.sum()) if diff.any() else neg_sim.sum() * 0
    return out


# ------------------------------------------------------------------------------------------------ config


def test_config_defaults_match_method():
    config = FeatureLossConfig()
    assert config.num_sampled_pixels == 10000
    assert config.coarse_margin == 0.5 and config.fine_margin == 0.75
    assert config.negative_weight == 0.1 and config.cross_object_negative_weight == 1.0
    assert config.norm3d_weight == 0.2 and config.norm2d_weight == 0.2 and config.spatial_weight == 0.5
    assert config.coarse_norm_target == 1.0 and config.fine_norm_target == pytest.approx(math.sqrt(2))
    assert config.spatial_num_gaussians == 100000 and config.spatial_num_neighbours == 5
    assert config.importance_sampling is True
    assert config.negative_normalisation == "positive_pairs", "this project's departure (README)"


# ------------------------------------------------------------------------------------------------ contrastive


def test_contrastive_exact_orthogonal_identical():
    # coarse: two groups with identical features inside, orthogonal across; fine: every pixel its own segment
    features = _t([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]])
    terms = contrastive_losses(features, _ids([0, 0, 1, 1]), _ids([0, 1, 2, 3]), SMALL, SMALL_COARSE_DIM)
    assert terms["pos_coarse"].item() == pytest.approx(-1.0)  # 4 ordered same pairs, all cos 1
    assert terms["neg_coarse"].item() == pytest.approx(0.0)  # 8 ordered different pairs, all cos 0
    assert terms["pos_fine"].item() == 0.0  # no pair with equal fine ids (diagonal excluded)
    # fine cosines: pixels sharing the coarse half: 0.5 (<= 0.75 -> 0), others 0.5 or 0 -> all contribute 0
    assert terms["neg_fine"].item() == pytest.approx(0.0)


def test_positive_mean_excludes_diagonal():
    # three pixels, one segment: a=(1,0), b=(0,1), c=(1,1)/sqrt2 -> cos ab=0, ac=bc=1/sqrt2
    features = _t([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]])
    terms = contrastive_losses(features, _ids([4, 4, 4]), _ids([-1, -1, -1]), SMALL, SMALL_COARSE_DIM)
    assert terms["pos_coarse"].item() == pytest.approx(-(2 * (1 / math.sqrt(2))) / 3, abs=1e-6)
    assert terms["pos_fine"].item() == 0.0 and terms["neg_fine"].item() == 0.0


def test_coarse_margin():
    below = _t([[1, 0, 0, 0], _unit2(0.4) + [0, 0]])
    above = _t([[1, 0, 0, 0], _unit2(0.6) + [0, 0]])
    ids = _ids([0, 1])
    assert contrastive_losses(below, ids, ids, SMALL, SMALL_COARSE_DIM)["neg_coarse"].item() == 0.0
    above_margin = contrastive_losses(above, ids, ids, SMALL, SMALL_COARSE_DIM)["neg_coarse"]
    assert above_margin.item() == pytest.approx(0.6, abs=1e-6)


def test_negative_denominator_counts_pairs_below_margin():
    # p0, p1 at cos 0.6 (above 0.5), p2 orthogonal to both: 6 ordered different pairs, 2 contribute 0.6 each
    features = _t([[1, 0, 0, 0], _unit2(0.6) + [0, 0], [0, 0, 1, 0]])
    ids = _ids([0, 1, 2])
    terms = contrastive_losses(features, ids, _ids([-1, -1, -1]), SMALL, SMALL_COARSE_DIM)
    assert terms["neg_coarse"].item() == pytest.approx(2 * 0.6 / 6, abs=1e-6)


def test_fine_margin():
    # same coarse half, fine halves chosen so that the full fine cosine is 0.7 (below 0.75) or 0.8 (above)
    for fine_cos, expected in ((0.7, 0.0), (0.8, 0.8)):
        # |f| = sqrt2 for both; cos = (1 + c) / 2 with c the cosine of the fbar halves
        c = 2 * fine_cos - 1
        features = _t([[1, 0, 1, 0], [1, 0] + _unit2(c)])
        terms = contrastive_losses(features, _ids([0, 0]), _ids([0, 1]), SMALL, SMALL_COARSE_DIM)
        assert terms["neg_fine"].item() == pytest.approx(expected, abs=1e-6)


def test_fine_negative_stops_coarse_gradient():
    features = _t([[1, 0, 1, 0], [1, 0, 0.9, 0.1]]).requires_grad_(True)
    coarse, fine = _ids([0, 0]), _ids([0, 1])
    neg_fine = contrastive_losses(features, coarse, fine, SMALL, SMALL_COARSE_DIM)["neg_fine"]
    assert neg_fine.item() > 0.75
    (grad,) = torch.autograd.grad(neg_fine, features)
    assert torch.equal(grad[:, :2], torch.zeros_like(grad[:, :2]))
    assert grad[:, 2:].abs().sum() > 0

    # the fine positive term does reach the coarse half
    features2 = _t([[1, 0, 1, 0], [0.5, 0.7, 0.2, 0.9]]).requires_grad_(True)
    pos_fine = contrastive_losses(features2, coarse, _ids([3, 3]), SMALL, SMALL_COARSE_DIM)["pos_fine"]
    (grad2,) = torch.autograd.grad(pos_fine, features2)
    assert grad2[:, :2].abs().sum() > 0 and grad2[:, 2:].abs().sum() > 0


def test_unlabelled_pixels_ignored_per_level():
    base = _t([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]])
    extra = torch.cat([base, _t([[0.3, -0.9, 0.5, 0.5]])])
    coarse, fine = _ids([0, 0, 1]), _ids([5, 6, 5])
    ref = contrastive_losses(base, coarse, fine, SMALL, SMALL_COARSE_DIM)
    # extra pixel unlabelled at the coarse level only: coarse terms unchanged, fine terms change
    got = contrastive_losses(extra, _ids([0, 0, 1, -1]), _ids([5, 6, 5, 6]), SMALL, SMALL_COARSE_DIM)
    assert got["pos_coarse"].item() == pytest.approx(ref["pos_coarse"].item())
    assert got["neg_coarse"].item() == pytest.approx(ref["neg_coarse"].item())
    assert got["pos_fine"].item() != pytest.approx(ref["pos_fine"].item())
    # unlabelled at both levels: nothing changes
    got = contrastive_losses(extra, _ids([0, 0, 1, -1]), _ids([5, 6, 5, -1]), SMALL, SMALL_COARSE_DIM)
    for key in ref:
        assert got[key].item() == pytest.approx(ref[key].item())


@pytest.mark.parametrize(
    "coarse, fine",
    [([-1, -1, -1], [-1, -1, -1]), ([0, 1, 2], [0, 1, 2]), ([3, 3, 3], [3, 3, 3]), ([0, -1, -1], [-1, 0, -1])],
)
def test_empty_pair_sets_give_zero_without_nan(coarse, fine):
    features = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    terms = contrastive_losses(features, _ids(coarse), _ids(fine), SMALL, SMALL_COARSE_DIM)
    total = contrastive_loss(terms, SMALL.negative_weight)
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(features.grad).all()
    if coarse == [-1, -1, -1] or coarse == [0, -1, -1]:
        assert all(v.item() == 0.0 for v in terms.values())
        assert torch.equal(features.grad, torch.zeros_like(features))


def test_contrastive_with_no_pixels():
    features = torch.zeros(0, 4, requires_grad=True)
    terms = contrastive_losses(features, _ids([]), _ids([]), SMALL, SMALL_COARSE_DIM)
    assert all(v.item() == 0.0 for v in terms.values())
    contrastive_loss(terms, 0.1).backward()


@pytest.mark.parametrize("chunk_rows", [1, 3, 64])
def test_contrastive_matches_naive_reference(chunk_rows):
    gen = torch.Generator().manual_seed(1)
    config = FeatureLossConfig(coarse_margin=0.1, fine_margin=0.2, pair_chunk_rows=chunk_rows,
                               negative_normalisation="negative_pairs")
    features = torch.randn(23, 6, generator=gen).requires_grad_(True)
    coarse = torch.randint(-1, 3, (23,), generator=gen).to(torch.int16)
    fine = torch.randint(-1, 6, (23,), generator=gen).to(torch.int32) * 100000
    fine[fine < 0] = -1
    got = contrastive_losses(features, coarse, fine, config, 3)
    ref = _naive_contrastive(features, coarse.long(), fine.long(), config, 3)
    for key in ref:
        assert got[key].item() == pytest.approx(ref[key].item(), abs=1e-5), key
        (g_got,) = torch.autograd.grad(got[key], features, retain_graph=True)
        (g_ref,) = torch.autograd.grad(ref[key], features, retain_graph=True)
        torch.testing.assert_close(g_got, g_ref, atol=1e-5, rtol=1e-4)


def test_contrastive_loss_combination():
    terms = {k: torch.tensor(v) for k, v in dict(pos_coarse=-0.5, pos_fine=-0.25, neg_coarse=0.4, neg_fine=0.2).items()}
    assert contrastive_loss(terms, 0.1).item() == pytest.approx(-0.75 + 0.1 * 0.6)


# ------------------------------------------------------------------------------------------------ norms


def test_norm3d_exact():
    # [2,0 | 0,0]: (2-1)^2 + (0-1)^2 = 2 ; [0.6,0.8 | 3,4]: 0 + (5-1)^2 = 16 ; mean 9
    features = _t([[2, 0, 0, 0], [0.6, 0.8, 3, 4]])
    assert norm3d_loss(features, 2).item() == pytest.approx(9.0)
    assert norm3d_loss(_t([[1, 0, 0, 1]]), 2).item() == pytest.approx(0.0)
    assert norm3d_loss(torch.zeros(0, 4), 2).item() == 0.0


def test_norm2d_exact():
    # [1,0,1,0]: 0 + 0 ; [0,0,0,0]: 1 + 2 = 3 ; [3,4,0,0]: 16 + (5 - sqrt2)^2
    features = _t([[1, 0, 1, 0], [0, 0, 0, 0], [3, 4, 0, 0]])
    expected = (0 + 3 + 16 + (5 - math.sqrt(2)) ** 2) / 3
    assert norm2d_loss(features, 2, 1.0, math.sqrt(2)).item() == pytest.approx(expected, rel=1e-6)
    assert norm2d_loss(torch.zeros(0, 4), 2, 1.0, math.sqrt(2)).item() == 0.0


# ------------------------------------------------------------------------------------------------ spatial


def test_spatial_identical_features():
    features = _t([[0.3, -1, 2, 0.5]]).repeat(6, 1)
    knn = build_knn_index(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), 3)
    assert spatial_loss(features, knn).item() == pytest.approx(-1.0)


def test_spatial_hand_made_knn():
    features = _t([[1, 0], [0, 1], [1, 1]])
    # anchor 0 with neighbours 1, 2: cos 0 and 1/sqrt2
    assert spatial_loss(features, _ids([[0, 1, 2]])).item() == pytest.approx(-(1 / math.sqrt(2)) / 2)
    # anchors 0 and 1: cosines 0, 1/sqrt2, 0, 1/sqrt2
    assert spatial_loss(features, _ids([[0, 1, 2], [1, 0, 2]])).item() == pytest.approx(-(2 / math.sqrt(2)) / 4)
    assert spatial_loss(features, _ids([[0]])).item() == 0.0


def test_knn_index_known_neighbours():
    means = _t([[0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0], [15, 0, 0]])
    knn = build_knn_index(means, 2)
    expected = _ids([[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 2, 1], [4, 3, 2]])
    assert knn.dtype == torch.long and torch.equal(knn, expected)


def test_knn_index_subset_and_small_n():
    gen = torch.Generator().manual_seed(0)
    means = _t([[0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0], [15, 0, 0]])
    full = {int(r[0]): r for r in build_knn_index(means, 2)}
    sub = build_knn_index(means, 2, max_points=3, generator=gen)
    assert sub.shape == (3, 3) and len(set(sub[:, 0].tolist())) == 3
    for row in sub:
        assert torch.equal(row, full[int(row[0])])
    assert build_knn_index(means[:3], 5).shape == (3, 3)  # K' = N - 1
    assert build_knn_index(means[:1], 5).shape == (1, 1)
    assert build_knn_index(means[:0], 5).shape == (0, 1)
    assert spatial_loss(torch.randn(1, 4), build_knn_index(means[:1], 5)).item() == 0.0


def test_knn_index_excludes_self_with_duplicates():
    means = torch.zeros(6, 3)
    knn = build_knn_index(means, 2)
    assert knn.shape == (6, 3)
    for row in knn:
        assert int(row[0]) not in row[1:].tolist()


# ------------------------------------------------------------------------------------------------ sampling


def test_importance_sampling_balances_small_and_large_masks():
    coarse = torch.full((40, 40), -1, dtype=torch.int32)
    coarse.view(-1)[:1000] = 7  # large mask
    coarse.view(-1)[1500:1510] = 123456  # small mask
    fine = torch.full((40, 40), -1, dtype=torch.int16)
    gen = torch.Generator().manual_seed(0)
    pixels = sample_pixels(coarse, fine, 20000, generator=gen)
    in_small = ((pixels >= 1500) & (pixels < 1510)).float().mean().item()
    assert abs(in_small - 0.5) < 0.03
    uniform = sample_pixels(coarse, fine, 20000, generator=gen, importance=False)
    in_small_uniform = ((uniform >= 1500) & (uniform < 1510)).float().mean().item()
    assert abs(in_small_uniform - 10 / 1010) < 0.005


def test_importance_sampling_probabilities():
    # coarse [0,0,1,-1], fine [-1,5,5,-1]: weights 1/2, 1/2+1/2, 1+1/2, 0 -> probabilities 1/6, 1/3, 1/2, 0
    pixels = sample_pixels(_ids([0, 0, 1, -1]), _ids([-1, 5, 5, -1]), 60000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(pixels, minlength=4).float() / 60000
    torch.testing.assert_close(freq, torch.tensor([1 / 6, 1 / 3, 1 / 2, 0.0]), atol=0.01, rtol=0)


@pytest.mark.parametrize("importance", [True, False])
def test_sampling_never_returns_unlabelled(importance):
    gen = torch.Generator().manual_seed(3)
    coarse = torch.randint(-1, 4, (30, 20), generator=gen)
    fine = torch.randint(-1, 9, (30, 20), generator=gen)
    coarse[:10] = -1
    fine[:10] = -1
    pixels = sample_pixels(coarse, fine, 5000, generator=gen, importance=importance)
    assert pixels.shape == (5000,) and pixels.dtype == torch.long
    labelled = (coarse.view(-1) >= 0) | (fine.view(-1) >= 0)
    assert labelled[pixels].all()
    # flat and [H, W] inputs give the same samples
    again = sample_pixels(coarse.view(-1), fine.view(-1), 5000, torch.Generator().manual_seed(9), importance)
    same = sample_pixels(coarse, fine, 5000, torch.Generator().manual_seed(9), importance)
    assert torch.equal(again, same)


def test_sampling_nothing_labelled():
    empty = torch.full((5, 5), -1, dtype=torch.int16)
    for importance in (True, False):
        pixels = sample_pixels(empty, empty, 100, importance=importance)
        assert pixels.shape == (0,) and pixels.dtype == torch.long


# ------------------------------------------------------------------------------------------------ everything


def test_feature_stage_losses_weights_match_config():
    gen = torch.Generator().manual_seed(0)
    config = FeatureLossConfig(
        num_sampled_pixels=50, negative_weight=0.3, cross_object_negative_weight=0.8, norm3d_weight=0.7,
        norm2d_weight=0.11, spatial_weight=1.3, coarse_margin=-1.0, fine_margin=-1.0,
    )
    rendered = torch.randn(6, 7, 6, generator=gen, requires_grad=True)
    gaussians = torch.randn(20, 6, generator=gen, requires_grad=True)
    knn = build_knn_index(torch.randn(20, 3, generator=gen), 3)
    coarse = torch.randint(-1, 3, (6, 7), generator=gen).to(torch.int16)
    fine = torch.randint(-1, 5, (6, 7), generator=gen).to(torch.int32)
    weighted, terms = feature_stage_losses(rendered, coarse, fine, gaussians, knn, config, 3, gen)
    assert set(weighted) == {"contrastive_loss", "norm3d_loss", "norm2d_loss", "spatial_loss"}
    assert set(terms) == {"pos_coarse", "pos_fine", "neg_coarse", "neg_fine", "neg_fine_cross", "norm3d", "norm2d",
                          "spatial"}
    assert all(v.item() != 0.0 for v in terms.values())
    expected_total = (
        terms["pos_coarse"] + terms["pos_fine"] + 0.3 * (terms["neg_coarse"] + terms["neg_fine"])
        + 0.5 * terms["neg_fine_cross"]
        + 0.7 * terms["norm3d"] + 0.11 * terms["norm2d"] + 1.3 * terms["spatial"]
    )
    assert sum(weighted.values()).item() == pytest.approx(expected_total.item(), rel=1e-6)
    assert weighted["spatial_loss"].item() == pytest.approx(1.3 * terms["spatial"].item())
    assert terms["spatial"].item() == pytest.approx(spatial_loss(gaussians, knn).item())
    assert terms["norm3d"].item() == pytest.approx(norm3d_loss(gaussians, 3).item())
    sum(weighted.values()).backward()
    assert rendered.grad.abs().sum() > 0 and gaussians.grad.abs().sum() > 0


def test_feature_stage_losses_unlabelled_view_and_bad_shapes():
    config = FeatureLossConfig(num_sampled_pixels=10)
    rendered = torch.randn(3, 4, 4, requires_grad=True)
    gaussians = torch.randn(5, 4, requires_grad=True)
    empty = torch.full((3, 4), -1, dtype=torch.int16)
    weighted, terms = feature_stage_losses(rendered, empty, empty, gaussians, None, config, 2)
    assert weighted["contrastive_loss"].item() == 0.0 and terms["norm2d"].item() == 0.0
    assert terms["spatial"].item() == 0.0
    total = sum(weighted.values())
    assert torch.isfinite(total)
    total.backward()
    with pytest.raises(ValueError):
        feature_stage_losses(rendered, torch.zeros(4, 3, dtype=torch.long), empty, gaussians, None, config, 2)


def test_gradient_descent_separates_two_groups():
    torch.manual_seed(0)
    config = FeatureLossConfig(num_sampled_pixels=64, spatial_num_neighbours=3)
    height, width = 4, 8
    group = torch.zeros(height, width, dtype=torch.int32)
    group[:, width // 2 :] = 1
    # each pixel's "rendered" feature is one Gaussian's feature; Gaussians of a group sit near each other
    features = torch.nn.Parameter(0.1 * torch.randn(height * width, 24))
    means = torch.randn(height * width, 3) + 100.0 * group.view(-1, 1).float()
    knn = build_knn_index(means, config.spatial_num_neighbours)
    optimizer = torch.optim.Adam([features], lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        weighted, _ = feature_stage_losses(
            features.view(height, width, 24), group, group, features, knn, config, 12, generator=gen
        )
        optimizer.zero_grad()
        sum(weighted.values()).backward()
        optimizer.step()
    with torch.no_grad():
        labels = group.view(-1)
        same = labels[:, None] == labels[None, :]
        for sl, margin in ((slice(0, 12), config.coarse_margin), (slice(0, 24), config.fine_margin)):
            unit = F.normalize(features[:, sl], dim=-1)
            cos = unit @ unit.T
            assert cos[same].min() > 0.9
            assert cos[~same].max() < margin


def test_positive_pairs_normalisation_weighs_each_pair_the_same_in_both_terms():
    import dataclasses

    from clickgs_ns.method.losses import pair_counts

    # ids 0, 0, 1, 2: 2 same-id ordered pairs, 16 - (4 + 1 + 1) = 10 different-id ones
    assert pair_counts(_ids([0, 0, 1, 2, -1])) == (2, 10)
    # p0, p1 same segment; p2 at cos 0.6 to p0 (active), p3 opposite p0 (inactive)
    features = _t([[1, 0, 0, 0], [1, 0, 0, 0], _unit2(0.6) + [0, 0], [-1, 0, 0, 0]])
    ids = _ids([0, 0, 1, 2])
    paper = contrastive_losses(features, ids, _ids([-1] * 4), SMALL, SMALL_COARSE_DIM)
    # p1 is identical to p0: (p1,p2), (p2,p1) are active too -> 4 active pairs of 0.6 over 10 negative pairs
    assert paper["neg_coarse"].item() == pytest.approx(4 * 0.6 / 10, abs=1e-6)
    balanced = contrastive_losses(features, ids, _ids([-1] * 4),
                                  dataclasses.replace(SMALL, negative_normalisation="positive_pairs"), SMALL_COARSE_DIM)
    assert balanced["neg_coarse"].item() == pytest.approx(4 * 0.6 / 2, abs=1e-6), "divided by the 2 same-id pairs"
    assert balanced["pos_coarse"].item() == pytest.approx(paper["pos_coarse"].item())
    with pytest.raises(ValueError, match="negative_normalisation"):
        contrastive_losses(features, ids, ids, dataclasses.replace(SMALL, negative_normalisation="sum"),
                           SMALL_COARSE_DIM)


def test_cross_object_fine_negatives_are_the_part_across_coarse_segments():
    from clickgs_ns.method.losses import negative_mean_cosine

    features = _t([[1, 0, 1, 0], [1, 0.1, 1, 0], [1, 0.2, 0, 1], [0.9, 0.2, 0, 1], [1, 0.3, 1, 1]])
    fine = _ids([0, 0, 1, 1, 2])
    total = negative_mean_cosine(features, fine, 0.5, 2)
    assert negative_mean_cosine(features, fine, 0.5, 2, groups=_ids([0, 0, 0, 0, 0])).item() == 0.0
    assert negative_mean_cosine(features, fine, 0.5, 2, groups=_ids([0, 0, 1, 1, 2])).item() == pytest.approx(
        total.item())
    part = negative_mean_cosine(features, fine, 0.5, 2, groups=_ids([0, 0, 0, 0, 1]))  # only pairs with pixel 4
    assert 0 < part.item() < total.item()
    terms = {"pos_coarse": torch.tensor(-1.0), "pos_fine": torch.tensor(-1.0), "neg_coarse": torch.tensor(0.5),
             "neg_fine": torch.tensor(0.4), "neg_fine_cross": torch.tensor(0.3)}
    assert contrastive_loss(terms, 0.1, 1.0).item() == pytest.approx(-2.0 + 0.05 + 0.04 + 0.9 * 0.3)
    assert contrastive_loss(terms, 0.1).item() == pytest.approx(-2.0 + 0.09)
