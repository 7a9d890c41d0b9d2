"""Known-answer tests of the pure GFL parts: mask averages, HDBSCAN candidates, assignment and the GFL losses."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clickgs_ns.method.gfl import (
    ClusterResult,
    GFLConfig,
    assign_candidates,
    cluster_candidates,
    cluster_level_candidates,
    gfl_level_losses,
    gfl_loss,
    gfl_losses,
    mask_average_features,
    min_cluster_size_for,
)

DIM = 24


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _blobs(num_blobs: int, per_blob: int, sigma: float, seed: int, num_noise: int = 0):
    """Unit vectors around ``num_blobs`` random unit centres in 24-D, plus uniform noise on the sphere."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(num_blobs, DIM)))
    labels = np.repeat(np.arange(num_blobs), per_blob)
    points = _unit(centres[labels] + sigma * rng.normal(size=(len(labels), DIM)))
    if num_noise:
        points = np.concatenate([points, _unit(rng.normal(size=(num_noise, DIM)))])
        labels = np.concatenate([labels, np.full(num_noise, -1)])
    return torch.from_numpy(points).float(), torch.from_numpy(centres).float(), torch.from_numpy(labels)


def _match_cosines(candidates: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """For each centre, the best cosine with any candidate."""
    return (F.normalize(centres, dim=-1) @ F.normalize(candidates, dim=-1).T).max(dim=1).values


# ----------------------------------------------------------------------------------------------------------------
# config


def test_config_defaults_and_min_cluster_size():
    config = GFLConfig()
    assert (config.enabled, config.start_step, config.update_every, config.loss_weight) == (True, 2000, 250, 10.0)
    assert (config.positive_threshold, config.coarse_cluster_epsilon, config.fine_cluster_epsilon) == (0.9, 1e-2, 1e-3)
    assert (config.min_cluster_size_fraction, config.min_cluster_size_floor, config.min_samples) == (0.05, 2, None)
    assert (config.max_cluster_points, config.min_mask_pixels, config.render_batch_views) == (5000, 1, 8)
    assert (config.loss_num_gaussians, config.seed) == (100000, 0)
    assert min_cluster_size_for(0, config) == 2
    assert min_cluster_size_for(12, config) == 2  # round(0.6) = 1 < floor
    assert min_cluster_size_for(50, config) == 3  # 2.5 rounds half up
    assert min_cluster_size_for(100, config) == 5
    assert min_cluster_size_for(300, config) == 15
    assert min_cluster_size_for(100, GFLConfig(min_cluster_size_floor=8)) == 8


# ----------------------------------------------------------------------------------------------------------------
# mask averages


def _hand_map():
    # feature at (r, c) = [3 r + c, 1]
    grid = torch.arange(9, dtype=torch.float32).reshape(3, 3)
    feature_map = torch.stack([grid, torch.ones(3, 3)], dim=-1)  # [3, 3, 2]
    ids = torch.tensor([[0, 0, -1], [2, 2, 2], [5, -1, 0]], dtype=torch.int16)
    return feature_map, ids


def test_mask_average_known_answer():
    feature_map, ids = _hand_map()
    averages, counts = mask_average_features(feature_map, ids)
    # id 0: pixels 0, 1, 8 -> 3; id 2: pixels 3, 4, 5 -> 4; id 5: pixel 6 -> 6
    assert torch.allclose(averages, torch.tensor([[3.0, 1.0], [4.0, 1.0], [6.0, 1.0]]))
    assert counts.tolist() == [3, 3, 1] and counts.dtype == torch.long

    averages, counts = mask_average_features(feature_map, ids.to(torch.int64), min_pixels=2)
    assert torch.allclose(averages, torch.tensor([[3.0, 1.0], [4.0, 1.0]]))
    assert counts.tolist() == [3, 3]

    averages, counts = mask_average_features(feature_map, torch.full((3, 3), -1, dtype=torch.int32))
    assert averages.shape == (0, 2) and counts.shape == (0,)


# ----------------------------------------------------------------------------------------------------------------
# assignment


def test_assign_known_answer_and_chunking():
    candidates = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    features = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, -0.5], [3.0, 4.0]])
    ids, best = assign_candidates(features, candidates)
    assert ids.tolist() == [0, 1, 2, 1]
    expected = torch.tensor([2 / math.hypot(2, 0.1), 3 / math.hypot(0.1, 3), 1 / math.hypot(1, 0.5), 0.8])
    assert torch.allclose(best, expected, atol=1e-6)

    generator = torch.Generator().manual_seed(0)
    many = torch.randn(5000, DIM, generator=generator)
    cands = torch.randn(7, DIM, generator=generator)
    ids_big, best_big = assign_candidates(many, cands)
    ids_small, best_small = assign_candidates(many, cands, chunk_elements=700)  # 100 rows per block
    brute = F.normalize(many, dim=-1) @ F.normalize(cands, dim=-1).T
    assert torch.equal(ids_big, brute.argmax(dim=1)) and torch.equal(ids_big, ids_small)
    assert torch.allclose(best_big, brute.max(dim=1).values, atol=1e-6) and torch.allclose(best_big, best_small)


def test_assign_without_candidates():
    ids, best = assign_candidates(torch.randn(5, 3), torch.zeros(0, 3))
    assert ids.tolist() == [-1] * 5 and bool(torch.isinf(best).all())


# ----------------------------------------------------------------------------------------------------------------
# losses


def _reference_gfl(features, candidates, margin, threshold):
    """Direct transcription of docs/method.md, section 4 (full [N, C] matrix)."""
    cosine = F.normalize(features, dim=-1) @ F.normalize(candidates.detach(), dim=-1).T  # [N, C]
    nearest = cosine.detach().argmax(dim=1)
    own = cosine.gather(1, nearest[:, None]).squeeze(1)
    positive = -torch.where(own.detach() > threshold, own, torch.zeros_like(own)).mean()
    others = torch.ones_like(cosine, dtype=torch.bool).scatter(1, nearest[:, None], False)
    keep = others & (cosine.detach() > margin)
    negative = (torch.where(keep, cosine, torch.zeros_like(cosine)).sum(dim=1) / candidates.shape[0]).mean()
    return positive, negative


def test_gfl_losses_known_answer():
    candidates = torch.eye(3)
    s95, s85 = math.sqrt(1 - 0.95**2), math.sqrt(1 - 0.85**2)  # 0.312, 0.527
    near = torch.tensor([[0.95, s95, 0.0]])  # cos 0.95 with g0, 0.312 with g1
    far = torch.tensor([[0.85, s85, 0.0]])  # cos 0.85 with g0, 0.527 with g1

    pos, neg = gfl_losses(near, candidates, margin=0.5, positive_threshold=0.9)
    assert pos.item() == pytest.approx(-0.95, abs=1e-6) and neg.item() == pytest.approx(0.0, abs=1e-7)
    pos, neg = gfl_losses(3.0 * far, candidates, margin=0.5, positive_threshold=0.9)  # scale-invariant
    assert pos.item() == pytest.approx(0.0, abs=1e-7) and neg.item() == pytest.approx(s85 / 3, abs=1e-6)
    pos, neg = gfl_losses(far, candidates, margin=0.6, positive_threshold=0.9)  # 0.527 below the margin
    assert neg.item() == pytest.approx(0.0, abs=1e-7)
    pos, neg = gfl_losses(far, candidates, margin=0.2, positive_threshold=0.8)  # both terms on, 1/C not 1/(C-1)
    assert pos.item() == pytest.approx(-0.85, abs=1e-6) and neg.item() == pytest.approx(s85 / 3, abs=1e-6)
    pos, neg = gfl_losses(torch.cat([near, far]), candidates, margin=0.5, positive_threshold=0.9)
    assert pos.item() == pytest.approx(-0.95 / 2, abs=1e-6) and neg.item() == pytest.approx(s85 / 6, abs=1e-6)


def test_gfl_losses_match_reference_values_and_gradients():
    generator = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(6, DIM, generator=generator), dim=-1)
    base = centres[torch.randint(6, (400,), generator=generator)]
    sigma = torch.where(torch.arange(400) < 200, 0.05, 0.2)[:, None]  # half above the 0.9 threshold
    features = (base + sigma * torch.randn(400, DIM, generator=generator)).requires_grad_(True)
    candidates = (2.0 * centres).requires_grad_(True)
    for chunk in (10**9, 13):  # one block, and blocks of 2 rows
        pos, neg = gfl_losses(features, candidates, margin=0.3, positive_threshold=0.9, chunk_elements=chunk)
        grad_both = torch.autograd.grad(pos + neg, features)[0]
        ref_pos, ref_neg = _reference_gfl(features, candidates, margin=0.3, threshold=0.9)
        ref_grad = torch.autograd.grad(ref_pos + ref_neg, features)[0]
        assert pos.item() == pytest.approx(ref_pos.item(), abs=1e-6) and pos.item() < 0
        assert neg.item() == pytest.approx(ref_neg.item(), abs=1e-6) and neg.item() > 0
        assert torch.allclose(grad_both, ref_grad, atol=1e-6)
    pos, neg = gfl_losses(features, candidates, margin=0.3, positive_threshold=0.9)
    (pos + neg).backward()
    assert candidates.grad is None and features.grad is not None


@pytest.mark.parametrize("num_candidates", [0, 1])
def test_gfl_losses_degenerate_are_graph_connected_zeros(num_candidates):
    features = torch.randn(10, 4, requires_grad=True)
    candidates = F.normalize(torch.randn(num_candidates, 4), dim=-1)
    pos, neg = gfl_losses(features, candidates, margin=0.5, positive_threshold=0.9)
    assert pos.item() == 0.0 and neg.item() == 0.0
    (pos + neg).backward()
    assert features.grad is not None and not torch.isnan(features.grad).any() and features.grad.abs().sum() == 0
    pos, neg = gfl_losses(features, None, margin=0.5, positive_threshold=0.9)
    assert pos.item() == 0.0 and neg.item() == 0.0
    empty = torch.zeros(0, 4, requires_grad=True)
    pos, neg = gfl_losses(empty, torch.eye(4), margin=0.5, positive_threshold=0.9)
    assert pos.item() == 0.0 and neg.item() == 0.0 and pos.requires_grad


def test_gfl_level_losses_levels_and_subset():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(300, DIM, generator=generator, requires_grad=True)
    coarse = F.normalize(features[:4, :12].detach(), dim=-1)
    fine = F.normalize(features[:5].detach(), dim=-1)
    terms = gfl_level_losses(features, coarse, fine, 12, 0.5, 0.75, 0.9)
    assert set(terms) == {"gfl_pos_coarse", "gfl_neg_coarse", "gfl_pos_fine", "gfl_neg_fine"}
    pos_c, neg_c = gfl_losses(features[:, :12], coarse, 0.5, 0.9)
    pos_f, neg_f = gfl_losses(features, fine, 0.75, 0.9)
    for key, value in zip(terms, (pos_c, neg_c, pos_f, neg_f)):
        assert terms[key].item() == pytest.approx(value.item(), abs=1e-7)
    assert terms["gfl_pos_coarse"].item() < 0 and terms["gfl_pos_fine"].item() < 0  # 4 / 5 Gaussians are at cos 1
    grad = torch.autograd.grad(terms["gfl_pos_coarse"] + terms["gfl_neg_coarse"], features)[0]
    assert grad[:, 12:].abs().sum() == 0 and grad[:, :12].abs().sum() > 0
    total = gfl_loss(terms, 10.0)
    assert total.item() == pytest.approx(10.0 * sum(v.item() for v in terms.values()), rel=1e-6)

    # subset: deterministic with a generator; the coarse level without candidates stays 0
    a = gfl_level_losses(features, None, fine, 12, 0.5, 0.75, 0.9, max_gaussians=50,
                         generator=torch.Generator().manual_seed(3))
    b = gfl_level_losses(features, None, fine, 12, 0.5, 0.75, 0.9, max_gaussians=50,
                         generator=torch.Generator().manual_seed(3))
    assert all(a[k].item() == b[k].item() for k in a) and a["gfl_pos_coarse"].item() == 0.0
    full = gfl_level_losses(features, coarse, fine, 12, 0.5, 0.75, 0.9, max_gaussians=10**6)
    assert all(full[k].item() == terms[k].item() for k in terms)


# ----------------------------------------------------------------------------------------------------------------
# clustering


def test_three_blobs_with_noise():
    points, centres, _ = _blobs(3, 200, sigma=0.03, seed=0, num_noise=30)
    result = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2)
    assert isinstance(result, ClusterResult)
    assert result.status == "ok", result.message
    assert result.candidates.shape == (3, DIM) and result.candidates.dtype == torch.float32
    assert torch.allclose(result.candidates.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert bool((_match_cosines(result.candidates, centres) > 0.99).all())
    assert result.num_points == result.num_points_clustered == 630
    assert int(result.sizes.sum()) + result.num_noise == 630 and result.num_noise >= 25
    assert "3 clusters" in result.message


def test_all_noise_gives_no_clusters():
    points = torch.from_numpy(_unit(np.random.default_rng(0).normal(size=(100, DIM)))).float()
    result = cluster_candidates(points, min_cluster_size=20, epsilon=1e-2)
    assert result.status == "no_clusters", result.message
    assert result.candidates.shape == (0, DIM) and result.num_noise == 100 and "noise" in result.message


def test_one_blob_gives_single_cluster():
    points, centres, _ = _blobs(1, 300, sigma=0.05, seed=1)
    result = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2)
    assert result.status == "single_cluster", result.message
    assert result.candidates.shape == (1, DIM)
    assert float(_match_cosines(result.candidates, centres)[0]) > 0.99
    assert "GFL should be off" in result.message
    # the concentration check can be switched off
    assert cluster_candidates(points, 10, 1e-2, single_cluster_min_resultant=None).status == "no_clusters"


def test_too_few_points_and_bad_rows():
    points, _, _ = _blobs(1, 3, sigma=0.01, seed=2)
    result = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2)
    assert result.status == "too_few_points" and result.candidates.shape == (0, DIM)
    assert cluster_candidates(torch.zeros(0, DIM), 2, 1e-2).status == "too_few_points"

    blobs, centres, _ = _blobs(2, 100, sigma=0.02, seed=3)
    bad = torch.cat([blobs, torch.zeros(5, DIM), torch.full((2, DIM), float("nan"))])
    result = cluster_candidates(bad, min_cluster_size=1, epsilon=1e-2)
    assert result.status == "ok" and result.num_points == 200 and result.min_cluster_size == 2
    assert "7 of 207 rows dropped" in result.message
    assert bool((_match_cosines(result.candidates, centres) > 0.99).all())


def test_subsampled_150k_points_and_determinism():
    points, centres, labels = _blobs(4, 37500, sigma=0.05, seed=4)
    begin = time.perf_counter()
    result = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2, max_points=5000, seed=0)
    cluster_seconds = time.perf_counter() - begin
    ids, best = assign_candidates(points, result.candidates)
    print(f"\nclustering 150,000 points (subsample 5,000): {cluster_seconds:.2f} s; "
          f"assignment: {time.perf_counter() - begin - cluster_seconds:.2f} s; {result.message}")
    assert result.status == "ok", result.message
    assert result.num_points == 150000 and result.num_points_clustered == 5000
    assert result.candidates.shape[0] == 4 and bool((_match_cosines(result.candidates, centres) > 0.99).all())
    assert cluster_seconds < 10.0
    # every blob maps to one candidate
    for blob in range(4):
        assert torch.unique(ids[labels == blob]).numel() == 1
    assert bool((best > 0.8).all())

    again = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2, max_points=5000, seed=0)
    assert torch.equal(again.candidates, result.candidates) and torch.equal(again.sizes, result.sizes)
    other = cluster_candidates(points, min_cluster_size=10, epsilon=1e-2, max_points=5000, seed=1)
    assert other.candidates.shape[0] == 4

    scaled = cluster_candidates(points, 300, 1e-2, max_points=5000, scale_min_cluster_size=True)
    assert scaled.min_cluster_size == 10 and scaled.status == "ok"


def test_cluster_level_candidates_uses_config():
    points, _, _ = _blobs(3, 60, sigma=0.03, seed=5)
    config = GFLConfig()
    coarse = cluster_level_candidates(points, num_views=100, level="coarse", config=config)
    fine = cluster_level_candidates(points, num_views=100, level="fine", config=config)
    assert coarse.epsilon == 1e-2 and fine.epsilon == 1e-3 and coarse.min_cluster_size == 5
    assert coarse.status == "ok" and coarse.num_candidates == 3
    with pytest.raises(ValueError):
        cluster_level_candidates(points, 100, "middle", config)
