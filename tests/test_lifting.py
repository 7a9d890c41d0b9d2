"""Known-answer tests of the view-vote labelling (clickgs_ns.method.lifting), candidate merging, the convergence figure,
and the selection core's use of the saved labels."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from clickgs_ns.method.lifting import (
    SparseVotes,
    add_votes,
    coalesce_votes,
    concat_segment_pixels,
    feature_convergence,
    fill_unlabelled,
    found_candidates,
    gaussian_votes,
    group_sharing,
    labels_per_pass,
    member_label_maps,
    merge_candidates,
    missed_segment_votes,
    nearest_seen,
    neighbour_labels,
    pixel_label_maps,
    segment_label_pixels,
    segment_pixels,
    total_weights,
    unoccluded_weights,
    vote_labels,
)
from clickgs_ns.render import rasterize
from clickgs_ns.segment.selection import SelectionConfig, Segmenter


def unit(x) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_merge_candidates_joins_near_duplicates_transitively_and_keeps_the_rest():
    a = unit([1.0, 0.0, 0.0])
    a2 = unit([1.0, 0.05, 0.0])  # cos(a, a2) = 0.9988
    a3 = unit([1.0, 0.10, 0.0])  # cos(a2, a3) = 0.9988, cos(a, a3) = 0.995
    b = unit([0.0, 1.0, 0.0])
    candidates = torch.stack([a, b, a2, a3])
    merged, sizes, group, _ = merge_candidates(candidates, torch.tensor([10, 5, 30, 60]), min_cosine=0.998)
    assert group.tolist() == [0, 1, 0, 0], "a3 joins a through a2 (transitively)"
    assert sizes.tolist() == [100, 5]
    expected = unit(10 * a + 30 * a2 + 60 * a3)
    assert torch.allclose(merged[0], expected, atol=1e-6) and torch.allclose(merged[1], b)
    same, _, group, _ = merge_candidates(candidates, torch.ones(4), min_cosine=2.0)
    assert group.tolist() == [0, 1, 2, 3] and torch.allclose(same, candidates, atol=1e-6), "above 1: no merging"
    empty, empty_sizes, _, _ = merge_candidates(torch.zeros(0, 3), torch.zeros(0), 0.9)
    assert empty.shape == (0, 3) and empty_sizes.shape == (0,)


def test_each_level_merges_from_its_own_threshold():
    from clickgs_ns.method.lifting import LabellingConfig

    labelling = LabellingConfig()
    assert (labelling.level_merge_cosine("coarse"), labelling.level_merge_cosine("fine")) == (0.75, 0.97)
    labelling.coarse_merge_cosine = None
    assert labelling.level_merge_cosine("coarse") == labelling.merge_cosine == 0.97


def test_segment_label_pixels_counts_each_label_per_segment():
    labels = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])  # 3 = "none" of candidates 0..2
    ids = torch.tensor([[0, 0, 0, 1], [0, 0, 1, -1]], dtype=torch.int8)  # -1: no segment
    assert segment_label_pixels(labels, ids, 3).tolist() == [[3, 2, 0], [0, 0, 2]], "'none' and id -1 left out"
    assert segment_label_pixels(labels, ids, 4).tolist() == [[3, 2, 0, 0], [0, 0, 2, 0]], "'none' counted"
    assert segment_label_pixels(torch.tensor([[-1, 0]]), torch.tensor([[0, 0]]), 2).tolist() == [[1, 0]]
    assert segment_label_pixels(labels, torch.full_like(ids, -1), 3).shape == (0, 3), "no segment: no rows"


def _share(pixels, first, second, count):
    return group_sharing(pixels, torch.isin(torch.arange(count), torch.tensor(first)),
                         torch.isin(torch.arange(count), torch.tensor(second)))


def test_group_sharing_counts_pixels_two_groups_show_in_the_same_segments():
    # one view, 2 x 4 pixels; candidates 0, 1, 2 and "none" (3); segment ids -1 (none), 0, 1
    labels = torch.tensor([[[0, 0, 1, 2], [0, 1, 2, 3]]])
    ids = torch.tensor([[[0, 0, 0, 1], [0, 0, 1, -1]]])
    pixels = segment_pixels(labels, ids, num_candidates=3)
    # segment 0 holds 0: 3 pixels, 1: 2; segment 1 holds 2: 2 pixels; the "none" pixel and id -1 count nowhere
    assert pixels.counts.tolist() == [[3, 2, 0], [0, 0, 2]] and pixels.views.tolist() == [0, 0]
    assert _share(pixels, [0], [1], 3) == 2 / 2, "all of 1's pixels lie in 0's segment"
    assert _share(pixels, [0], [2], 3) == 0.0 and _share(pixels, [1], [2], 3) == 0.0
    assert _share(pixels, [0, 1], [2], 3) == 0.0
    twice = concat_segment_pixels([pixels, segment_pixels(labels, ids, 3, first_view=1)], 3)
    assert twice.num_views == 2 and twice.views.tolist() == [0, 0, 1, 1]
    assert _share(twice, [0], [1], 3) == 1.0, "summed over views"
    # a second view shows 0 and 1 in different segments: 1's 2 pixels shared of 4 present
    apart = segment_pixels(torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[[0, 0, 1, 1]]]), 3, first_view=1)
    assert _share(concat_segment_pixels([pixels, apart], 3), [0], [1], 3) == 2 / 4
    high_ids = torch.where(ids >= 0, ids + 100, ids).to(torch.int8)  # segments 100, 101: 101 * 3 overflows int8
    assert torch.equal(segment_pixels(labels, high_ids, 3).counts, pixels.counts), "id maps in their smallest type"
    empty = segment_pixels(torch.full((1, 2, 2), 3), torch.full((1, 2, 2), -1), 3)
    assert empty.counts.shape == (0, 3) and _share(empty, [0], [1], 3) == 0.0
    assert concat_segment_pixels([], 3).counts.shape == (0, 3)


def test_merge_candidates_keeps_close_candidates_apart_that_the_views_show_in_different_segments():
    a, a2, a3 = unit([1.0, 0.0, 0.0]), unit([1.0, 0.05, 0.0]), unit([1.0, 0.10, 0.0])  # a chain at cosine 0.9988
    candidates = torch.stack([a, a2, a3])
    # one view: a and a2 in segment 0, a3 alone in segment 1
    pixels = segment_pixels(torch.tensor([[[0, 0, 1, 1, 2, 2]]]), torch.tensor([[[0, 0, 0, 0, 1, 1]]]), 3)
    _, sizes, group, _ = merge_candidates(candidates, torch.tensor([1, 1, 1]), 0.998, pixels, min_shared=0.7)
    assert group.tolist() == [0, 0, 1] and sizes.tolist() == [2, 1], "the chain a-a2-a3 is cut where a3 starts"
    _, _, by_cosine, _ = merge_candidates(candidates, torch.tensor([1, 1, 1]), 0.998)
    assert by_cosine.tolist() == [0, 0, 0]


def test_merge_candidates_does_not_chain_two_objects_through_a_cluster_between_them():
    # two objects (0 and 2) and a small cluster between them (1), close to both, as the mask averages of segments
    # that merge the two neighbours make it; cos(0, 1) = cos(1, 2) = 0.9988 > cos(0, 2) = 0.995
    candidates = torch.stack([unit([1.0, -0.05, 0.0]), unit([1.0, 0.0, 0.0]), unit([1.0, 0.05, 0.0])])
    # view 0: one segment holds both objects, and the cluster's pixels between them; views 1 and 2: each object in
    # its own segment, and no pixel near the cluster
    labels = torch.tensor([[0] * 4 + [1] * 2 + [2] * 4, [0] * 5 + [2] * 5, [0] * 5 + [2] * 5])[:, None]  # [3, 1, 10]
    ids = torch.tensor([[0] * 10, [0] * 5 + [1] * 5, [0] * 5 + [1] * 5])[:, None]
    pixels = segment_pixels(labels, ids, 3)
    assert _share(pixels, [0], [1], 3) == 1.0 and _share(pixels, [1], [2], 3) == 1.0, "the cluster: with both"
    assert _share(pixels, [0, 1], [2], 3) == 4 / 14, "the two objects, as groups, share one view in three"
    _, sizes, group, _ = merge_candidates(candidates, torch.ones(3), 0.998, pixels, min_shared=0.7)
    assert group.tolist() == [0, 0, 1] and sizes.tolist() == [2, 1], "the cluster joins one object, not both"
    _, _, by_cosine, _ = merge_candidates(candidates, torch.ones(3), 0.998)
    assert by_cosine.tolist() == [0, 0, 0], "by cosine alone, one chain"


def test_pixel_label_maps_nearest_candidate_and_none_where_uncovered():
    candidates = torch.eye(3)[:2]  # [2, 3]
    features = torch.tensor([[[[0.9, 0.1, 0.0], [0.2, 0.8, 0.3]], [[0.0, 0.0, 1.0], [1.0, 1.1, 0.0]]]])  # [1, 2, 2, 3]
    alphas = torch.tensor([[[[0.9], [0.6]], [[0.7], [0.4]]]])
    labels = pixel_label_maps(features, alphas, candidates, min_alpha=0.5)
    assert labels.tolist() == [[[0, 1], [0, 2]]], "(1, 1) is uncovered: label C = 2 ('none'); (1, 0) ties -> 0"
    assert pixel_label_maps(features, alphas, torch.zeros(0, 3), 0.5).eq(0).all(), "no candidates: all 'none' (0)"


def dense(votes: SparseVotes) -> torch.Tensor:
    """The [N, L] vote matrix of sparse votes."""
    matrix = torch.zeros(votes.num_gaussians * votes.num_labels, dtype=torch.float64)
    matrix[votes.keys] = votes.weights
    return matrix.view(votes.num_gaussians, votes.num_labels).float()


def sparse(matrix: torch.Tensor) -> SparseVotes:
    """Sparse votes of an [N, L] vote matrix."""
    rows, columns = torch.nonzero(matrix, as_tuple=True)
    return coalesce_votes(rows * matrix.shape[1] + columns, matrix[rows, columns], *matrix.shape)


@pytest.mark.parametrize("per_pass", [1, 2, 64])
def test_gaussian_votes_are_the_rendering_weights_per_label(per_pass):
    # A linear "renderer" with known weights w[p, i]: render(c)[p] = sum_i w[p, i] c_i.
    weights = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.0, 0.7], [0.3, 0.3, 0.3]])  # [P=3 pixels, N=3 Gaussians]
    labels = torch.tensor([[[0, 1, 1]]])  # [B=1, H=1, W=3]

    def render(colors):  # [N, L] -> [1, 1, 3, L]
        return (weights @ colors)[None, None]

    votes = gaussian_votes(render, labels, num_labels=2, num_gaussians=3, labels_per_pass=per_pass)
    expected = torch.tensor([[0.5, 0.1 + 0.3], [0.2, 0.3], [0.0, 0.7 + 0.3]])
    assert torch.allclose(dense(votes), expected)
    assert votes.keys.tolist() == [0, 1, 2, 3, 5], "only the non-zero (Gaussian, label) pairs are kept"
    two_levels = torch.stack([labels, labels + 3], dim=-1)  # [1, 1, 3, 2]: a second level in labels 3..4
    votes = gaussian_votes(render, two_levels, num_labels=5, num_gaussians=3, labels_per_pass=per_pass)
    assert torch.allclose(dense(votes), torch.cat([expected, torch.zeros(3, 1), expected], dim=1)), \
        "label 2 is never shown: no pass renders it"
    abstaining = torch.tensor([[[0, -1, 1]]])  # the middle pixel votes for nothing
    votes = gaussian_votes(render, abstaining, num_labels=2, num_gaussians=3, labels_per_pass=per_pass)
    assert torch.allclose(dense(votes), torch.tensor([[0.5, 0.3], [0.2, 0.3], [0.0, 0.3]]))


def test_add_votes_sums_equal_pairs_and_keeps_the_others():
    first = sparse(torch.tensor([[0.5, 0.0], [0.0, 0.25]]))
    second = sparse(torch.tensor([[0.5, 1.0], [0.0, 0.0]]))
    total = add_votes(first, second)
    assert total.keys.tolist() == [0, 1, 3] and total.weights.tolist() == [1.0, 1.0, 0.25]


def test_labels_per_pass_fit_the_budget():
    assert labels_per_pass(1920 * 1080, 256.0) == 10, "256 MiB / (3 buffers x 4 bytes x 2.07 MP)"
    assert labels_per_pass(96 * 72, 256.0) > 400, "a small view renders every label at once"
    assert labels_per_pass(10**9, 1.0) == 1


def test_gaussian_votes_through_the_rasterizer_follow_occlusion():
    """Two Gaussians on the optical axis, the front one opaque: the back one gets (almost) no weight, and each
    Gaussian's weight goes to the label of the pixels it covers."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0], [1.2, 0.0, 3.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(3, 1)
    scales = torch.tensor([[0.3], [0.15], [0.15]]).repeat(1, 3)  # on screen: sigma 3, 0.75 and 1 pixels
    opacities = torch.tensor([0.99, 0.99, 0.99])
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[20.0, 0.0, 16.0], [0.0, 20.0, 16.0], [0.0, 0.0, 1.0]]])
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[..., 20:] = 1  # label 1 from x = 20 on (the third Gaussian projects to x = 16 + 20 * 1.2 / 3 = 24)

    def render(colors):
        return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 32, 32, backend="torch")[0]

    votes = dense(gaussian_votes(render, labels, num_labels=2, num_gaussians=3, labels_per_pass=1))
    assert votes[0, 0] > 1.0 and votes[0, 0] > 5 * votes[0, 1], "the front Gaussian sits in label 0"
    assert votes[1].sum() < 0.05 * votes[0].sum(), "the occluded one is (almost) never seen"
    assert votes[2, 1] > 5 * votes[2, 0], "the right one sits in label 1"


def test_unoccluded_weights_are_opacity_times_the_projected_area_and_show_what_is_hidden():
    """The same three Gaussians: unoccluded, each would weigh opacity * 2 pi sqrt(det cov2d) pixels (cov2d: its
    projected covariance plus the rasterizer's 0.3 pixel blur; off the axis the projection stretches it by
    1 + x^2 / z^2 along x), zero behind the camera; their actual weight over that is near 1 for the front one and
    near 0 for the one hidden behind it."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 4.0], [1.2, 0.0, 3.0], [0.0, 0.0, -2.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1)
    scales = torch.tensor([[0.3], [0.15], [0.15], [0.3]]).repeat(1, 3)  # on screen: sigma 3, 0.75 and 1 pixels
    opacities = torch.tensor([0.99, 0.99, 0.99, 0.99])
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[20.0, 0.0, 16.0], [0.0, 20.0, 16.0], [0.0, 0.0, 1.0]]])
    unoccluded = unoccluded_weights(means, quats, scales, opacities, viewmats.repeat(2, 1, 1), Ks.repeat(2, 1, 1),
                                    32, 32)  # two views: twice the weight
    variances = [(9.0, 9.0), (0.5625, 0.5625), (1.0 * (1 + 0.4**2), 1.0)]  # (x, y) on screen, pixels^2
    expected = [2 * 0.99 * 2 * math.pi * math.sqrt((vx + 0.3) * (vy + 0.3)) for vx, vy in variances] + [0.0]
    assert unoccluded.tolist() == pytest.approx(expected, rel=1e-5)

    def render(colors):
        return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 32, 32, backend="torch")[0]

    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[..., 20:] = 1
    votes = gaussian_votes(render, labels, num_labels=2, num_gaussians=4, labels_per_pass=2)
    seen = total_weights(votes, 0, 2) / unoccluded_weights(means, quats, scales, opacities, viewmats, Ks, 32, 32)
    assert seen[0] > 0.9 and seen[2] > 0.9 and seen[1] < 0.15, seen  # the back one: behind 88-99% opacity
    assert total_weights(votes, 0, 1).sum() < total_weights(votes, 0, 2).sum(), "a range's total: its labels only"


def test_vote_labels_take_the_heaviest_label_and_leave_unseen_and_uncovered_out():
    votes = torch.tensor([[0.2, 0.9, 0.1], [0.0, 0.0, 0.0], [0.1, 0.0, 0.5], [1e-6, 0.0, 0.0], [0.4, 0.4, 0.0]])
    assert vote_labels(sparse(votes), 0, 3, min_weight=1e-4).tolist() == [1, -1, -1, -1, 0], \
        "heaviest; never seen; mostly on uncovered pixels ('none' column); below min_weight; ties -> first"
    two_ranges = sparse(torch.cat([torch.full((5, 2), 9.0), votes], dim=1))  # a range [0, 2) before it
    assert vote_labels(two_ranges, 2, 5, min_weight=1e-4).tolist() == [1, -1, -1, -1, 0], "labels within the range"
    assert vote_labels(two_ranges, 0, 2, min_weight=1e-4).tolist() == [0] * 5


def test_feature_convergence_is_the_weighted_share_above_the_cosine():
    candidates = torch.eye(2)
    features = unit([[1.0, 0.0], [1.0, 0.2], [1.0, 1.0], [0.0, -1.0]])  # cos to nearest: 1, 0.98, 0.707, 0
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert feature_convergence(features, candidates, weights, 0.9) == pytest.approx(0.3)
    assert feature_convergence(features, candidates, weights, 0.5) == pytest.approx(0.6)
    assert math.isnan(feature_convergence(features, torch.zeros(0, 2), weights))


def test_fill_unlabelled_keeps_labels_and_fills_the_rest():
    assert fill_unlabelled(torch.tensor([2, -1, 0, -1]), torch.tensor([5, 1, 5, -1])).tolist() == [2, 1, 0, -1]


def test_hidden_gaussians_take_the_most_common_label_of_their_nearest_seen_neighbours():
    # seen: three of label 0 around x = 0, two of label 1 around x = 10, one -1 at x = 5.2; hidden at 0.5, 9 and 4.9
    means = torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [-0.3, 0, 0], [10.0, 0, 0], [10.4, 0, 0], [5.2, 0, 0],
                          [0.5, 0, 0], [9.0, 0, 0], [4.9, 0, 0]])
    labels = torch.tensor([0, 0, 0, 1, 1, -1, 1, 0, 0])  # the hidden ones' own votes say nothing
    hidden = torch.tensor([False] * 6 + [True] * 3)
    neighbours = nearest_seen(means, hidden, 3)
    assert neighbours.tolist() == [[1, 0, 2], [3, 4, 5], [5, 1, 0]], "seen ones only, nearest first"
    assert neighbour_labels(labels, hidden, neighbours).tolist() == [0, 0, 0, 1, 1, -1, 0, 1, 0], \
        "majority of the neighbours (a -1 neighbour counts as one vote; seen Gaussians keep theirs)"
    assert torch.equal(nearest_seen(means, hidden, 3, chunk=1), neighbours), "chunks change nothing"
    assert torch.equal(neighbour_labels(labels, hidden, neighbours, chunk=2),
                       neighbour_labels(labels, hidden, neighbours))
    nearest_only = nearest_seen(means, hidden, 1)
    assert neighbour_labels(labels, hidden, nearest_only).tolist()[6:] == [0, 1, -1]
    tie = neighbour_labels(torch.tensor([0, 1, 5]), torch.tensor([False, False, True]), torch.tensor([[1, 0]]))
    assert tie.tolist() == [0, 1, 1], "a tie goes to the nearest"
    none = nearest_seen(means, hidden, 0)
    assert none.shape == (3, 0) and neighbour_labels(labels, hidden, none).tolist()[6:] == [-1, -1, -1]
    assert nearest_seen(means, torch.ones(9, dtype=torch.bool), 4).shape == (9, 0), "nothing seen: no neighbours"
    nothing_hidden = torch.zeros(9, dtype=torch.bool)
    assert nearest_seen(means, nothing_hidden, 4).shape == (0, 4)
    assert torch.equal(neighbour_labels(labels, nothing_hidden, nearest_seen(means, nothing_hidden, 4)), labels)
    assert nearest_seen(means[:7], hidden[:7], 8).shape == (1, 6), "fewer seen than k: all of them"


def fake_model(saved_coarse, num=4, segment_coarse=None):
    features = torch.cat([unit([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * (num - 2)), torch.zeros(num, 2)], dim=1)
    return SimpleNamespace(
        click_features=features, config=SimpleNamespace(coarse_dim=2), opacities=torch.zeros(num, 1),
        coarse_candidates=torch.eye(2), fine_candidates=unit([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]),
        coarse_labels=saved_coarse, fine_labels=torch.full((num,), -1),
        coarse_segment_labels=saved_coarse if segment_coarse is None else segment_coarse,
        fine_segment_labels=torch.full((num,), -1),
    )


def test_segmenter_selects_through_the_saved_labels_and_segments_everything_with_them():
    saved = torch.tensor([1, 0, 1, -1])  # deliberately not each Gaussian's nearest candidate
    segmenter = Segmenter(fake_model(saved, segment_coarse=torch.tensor([1, 0, 1, 0])))
    data = segmenter.level_data("coarse")
    assert data.saved and data.labels.tolist() == [1, 0, 1, -1]
    result = segmenter.click_feature(torch.tensor([0.1, 1.0]), "coarse")
    assert result.mask.tolist() == [True, False, True, False], "candidate 1's saved members"
    everything = segmenter.segment_everything("coarse")
    assert everything.labels.tolist() == [1, 0, 1, 0], "segment everything reads its own (filled) labels"
    fine = segmenter.level_data("fine")
    assert not fine.saved and fine.labels.tolist() == [0, 0, 1, 1], "no saved fine labels: nearest candidate"
    assert data.convergence == pytest.approx(1.0)
    assert segmenter.convergence_summary() == ("Features converged (opacity-weighted, cos > 0.9): coarse 100%, "
                                               "fine 100%.")


def test_segmenter_warns_when_features_have_not_converged():
    model = fake_model(torch.tensor([0, 0, 1, 1]))
    model.click_features[:, :2] = unit([[1.0, 1.0], [1.0, 0.9], [0.8, 1.0], [1.0, 0.0]])  # 1 of 4 within cos 0.9
    config = SelectionConfig(min_convergence=0.5)
    result = Segmenter(model, config).click_feature(torch.tensor([1.0, 0.0]), "coarse")
    assert "have not converged (25%" in result.message and "train the feature stage longer" in result.message
    assert "converged" not in Segmenter(model).click_feature(torch.tensor([1.0, 0.0]), "coarse").message


def test_pixel_label_maps_vote_none_where_no_mask_covers_or_no_candidate_is_near():
    candidates = torch.eye(3)[:2]
    features = unit([[[[1.0, 0.1, 0.0], [0.3, 0.3, 1.0]], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]]])  # [1, 2, 2, 3]
    alphas = torch.ones(1, 2, 2, 1)
    covered = torch.tensor([[[True, True], [True, False]]])
    labels = pixel_label_maps(features, alphas, candidates, 0.5, min_cosine=0.75, covered=covered)
    assert labels.tolist() == [[[0, 2], [1, 2]]], "(0, 1): cos 0.29 to the nearest; (1, 1): no mask covers it"


def test_member_label_maps_are_confident_near_any_cluster_of_a_merged_candidate():
    # clusters a and a2 (cosine 0.8) merged into one candidate, b on its own; the merged mean lies between a and a2
    a, a2, b = unit([1.0, 0.0, 0.0]), unit([0.8, 0.6, 0.0]), unit([0.0, 0.0, 1.0])
    merged = merge_candidates(torch.stack([a, b, a2]), torch.ones(3), min_cosine=0.7)
    assert merged.group.tolist() == [0, 1, 0]
    features = torch.stack([a, a2, b, unit([0.5, 0.5, 0.7])]).view(1, 2, 2, 3)  # [1, 2, 2, 3]
    alphas = torch.ones(1, 2, 2, 1)
    by_mean = pixel_label_maps(features, alphas, merged.candidates, 0.5, min_cosine=0.95)
    assert by_mean.tolist() == [[[2, 2], [1, 2]]], "a and a2 are at cosine 0.95 to their mean: not confident"
    by_cluster = member_label_maps(features, alphas, merged, 0.5, min_cosine=0.95)
    assert by_cluster.tolist() == [[[0, 0], [1, 2]]], "each on its own cluster: confident for the merged candidate"
    covered = torch.tensor([[[True, False], [True, True]]])
    assert member_label_maps(features, alphas, merged, 0.5, 0.95, covered).tolist() == [[[0, 2], [1, 2]]]


def test_click_labels_take_segment_labels_for_weakly_confident_candidates():
    from clickgs_ns.method.lifting import click_labels

    labels = torch.tensor([0, 0, 0, -1, 1, -1, -1, -1])  # candidate 0: 3 confident of 4; candidate 1: 1 of 4
    segments = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert click_labels(labels, segments, 2, 0.5).tolist() == [0, 0, 0, -1, 1, 1, 1, 1], \
        "the edge Gaussian of candidate 0 stays out; the unconfident surface 1 is selected whole"
    assert click_labels(labels, segments, 2, 0.0).tolist() == labels.tolist()


def test_runs_saved_before_segment_labels_segment_everything_with_their_labels():
    model = fake_model(torch.tensor([1, 0, 1, 0]), segment_coarse=torch.full((4,), -1))
    assert Segmenter(model).segment_everything("coarse").labels.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
def test_forward_label_weights_equal_the_colour_gradients(rasterize_mode):
    """``rasterize_label_weights`` (one forward pass, no autograd) gives what the colour gradients through the
    torch rasterizer give: 2 cameras, 2 labels per pixel in disjoint ranges, labels varying pixel by pixel (many
    per subtile), -1 pixels voting for nothing, overlapping and occluding Gaussians."""
    from clickgs_ns.render import rasterize_label_weights

    generator = torch.Generator().manual_seed(3)
    num = 300
    means = torch.rand(num, 3, generator=generator) * torch.tensor([2.0, 1.5, 1.0]) + torch.tensor([-1.0, -0.75, 2.0])
    quats = torch.randn(num, 4, generator=generator)
    scales = torch.rand(num, 3, generator=generator) * 0.08 + 0.01
    opacities = torch.rand(num, generator=generator) * 0.98 + 0.01
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[1, 0, 3] = 0.2
    Ks = torch.tensor([[40.0, 0.0, 24.0], [0.0, 40.0, 20.0], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    first = torch.randint(0, 5, (2, 40, 48), generator=generator)
    first[:, :, 30:] = -1  # voting for nothing
    second = 5 + (torch.arange(48)[None, None, :] // 7).expand(2, 40, 48)  # labels 5..11, 7-pixel stripes
    label_maps = torch.stack([first, second], dim=-1)  # [2, 40, 48, 2]

    gaussians, labels, weights = rasterize_label_weights(means, quats, scales, opacities, viewmats, Ks, 48, 40,
                                                         label_maps, rasterize_mode=rasterize_mode)
    forward = dense(coalesce_votes(gaussians * 13 + labels, weights, num, 13))

    def render(colors):
        return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 48, 40, backend="torch",
                         rasterize_mode=rasterize_mode)[0]

    gradient = dense(gaussian_votes(render, label_maps, 13, num, 64))  # -1 votes for nothing on both paths
    assert forward.sum() > 10.0 and (forward > 0).sum() > num, "many Gaussians vote for several labels"
    torch.testing.assert_close(forward, gradient, rtol=1e-4, atol=1e-6)


def test_missed_segment_votes_abstain_only_where_the_views_masks_missed_the_candidate():
    # one view of 9 pixels, candidates 0 and 1, 2 = "none"; segment 0 is mostly candidate 1 (found), segment 1
    # mostly "none"; candidate 0 holds most of no segment: missed, its uncovered pixels vote nothing (-1); the
    # uncovered pixel of candidate 1 is ground around it ("none"), and an uncovered "none" pixel stays "none"
    labels = torch.tensor([[[0, 0, 0, 0, 1, 1, 1, 1, 2]]])
    ids = torch.tensor([[[0, -1, -1, -1, 0, 0, 1, -1, 1]]])
    assert found_candidates(labels, ids, 2).tolist() == [[False, True, False]]
    assert missed_segment_votes(labels, ids, 2).tolist() == [[[0, -1, -1, -1, 1, 1, 1, 2, 2]]]
    # candidate 0 with a segment of its own in a second view: found there, so its uncovered pixels vote "none"
    two_views = torch.cat([labels, labels])  # [2, 1, 9]
    own_segment = torch.tensor([[[2, 2, -1, -1, 0, 0, 1, -1, 1]]])
    votes = missed_segment_votes(two_views, torch.cat([ids, own_segment]), 2)
    assert votes[1].tolist() == [[0, 0, 2, 2, 1, 1, 1, 2, 2]]
    # a tie is not "most": half of a segment does not find a candidate, nor does covering half of its pixels
    assert found_candidates(torch.tensor([[[0, 1, 0, 1]]]), torch.tensor([[[0, 0, -1, -1]]]), 2).tolist() == \
        [[False, False, False]]
    # most of its pixels covered (here inside a neighbour's segment): found, though it holds no segment
    assert found_candidates(torch.tensor([[[0, 0, 1, 1, 1, 1, 1]]]), torch.tensor([[[0, -1, 0, 0, 0, 0, -1]]]),
                            2).tolist() == [[False, True, False]]
    assert found_candidates(torch.tensor([[[0, 0, 0, 1, 1, 1, 1, 1]]]), torch.tensor([[[0, 0, -1, 0, 0, 0, 0, -1]]]),
                            2).tolist() == [[True, True, False]]
