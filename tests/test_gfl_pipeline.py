"""GFL inside the pipeline: candidates from rendered views, model state, degenerate clustering, resume."""

from __future__ import annotations

import dataclasses

import torch

from clickgs_ns.method.gfl import GFLConfig
from clickgs_ns.method.lifting import group_sharing
from conftest import make_trainer_config


def _pipeline(scene, tmp_path, **gfl):
    config = make_trainer_config(scene.root, tmp_path, init_ply=scene.scene_ply_path, feature_stage_steps=10,
                                 gfl=GFLConfig(start_step=2, update_every=4, **gfl))
    return config.pipeline.setup(device="cpu")


def _ground_truth_features(scene, model) -> torch.Tensor:
    """Features that separate the scene's objects (coarse half) and parts (fine half); returns the object ids."""
    import numpy as np

    parts = torch.from_numpy(np.load(scene.labels_path)["part_id"]).long()
    objects = torch.from_numpy(np.load(scene.labels_path)["object_id"]).long()
    generator = torch.Generator().manual_seed(0)
    coarse = torch.nn.functional.normalize(torch.randn(int(objects.max()) + 1, 12, generator=generator), dim=-1)
    fine = torch.nn.functional.normalize(torch.randn(int(parts.max()) + 1, 12, generator=generator), dim=-1)
    model.gauss_params["click_features"].data = torch.cat([coarse[objects], fine[parts]], dim=-1)
    return objects


def test_update_gives_candidates_and_labels(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    objects = _ground_truth_features(tiny_scene, model)  # so that clustering has something to find
    assert not model.has_candidates and not model.gfl_active
    merged = pipeline.update_global_candidates(step=2)
    counts = {level: len(level_merged.candidates) for level, level_merged in merged.items()}
    assert counts["coarse"] >= 3 and counts["fine"] >= counts["coarse"]
    for level_merged in merged.values():  # without merging, each cluster is its own candidate
        assert torch.equal(level_merged.clusters, level_merged.candidates)
        assert torch.equal(level_merged.group, torch.arange(len(level_merged.candidates)))
    assert model.coarse_candidates.shape == (counts["coarse"], 12)
    torch.testing.assert_close(model.coarse_candidates.norm(dim=-1), torch.ones(counts["coarse"]))
    # every Gaussian of one object carries that object's candidate, and different objects differ
    labels = model.coarse_labels
    assert labels.shape == objects.shape and (labels >= 0).all()
    purity = [torch.mode(labels[objects == o]).values for o in objects.unique()]
    assert len(set(int(p) for p in purity)) == len(purity)
    model.step = 2
    assert model.gfl_active


def test_finish_labels_lifts_each_object_to_one_label_and_fills_segments(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    objects = _ground_truth_features(tiny_scene, model)
    labelled = pipeline.finish_labels(step=9)
    labels, segments = model.coarse_labels, model.coarse_segment_labels
    assert labelled["coarse"] == int((labels >= 0).sum()) > 0.5 * len(labels)
    for obj in objects.unique():
        members = labels[(objects == obj) & (labels >= 0)]
        majority = torch.mode(members).values
        assert (members == majority).float().mean() > 0.97, f"object {int(obj)}: one label for its Gaussians"
    majorities = {int(torch.mode(labels[(objects == o) & (labels >= 0)]).values) for o in objects.unique()}
    assert len(majorities) == len(objects.unique()), "and different objects get different labels"
    assert torch.equal(segments[labels >= 0], labels[labels >= 0]) and (segments >= 0).sum() >= (labels >= 0).sum()
    # the paper's rule is one flag away
    pipeline.config.model.labelling.method = "nearest_feature"
    pipeline.finish_labels(step=9)
    assert (model.coarse_labels >= 0).all(), "nearest feature: every Gaussian has a nearest candidate"


def _with_a_duplicate(features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """One candidate per id (a member's feature) [K, D], then a near copy of the first: [K + 1, D]."""
    candidates = torch.stack([features[ids == i][0] for i in ids.unique()])
    duplicate = torch.nn.functional.normalize(candidates[0] + 0.05 * candidates[1], dim=-1)
    return torch.cat([candidates, duplicate[None]])


def test_merging_joins_one_objects_duplicates_and_keeps_objects_that_the_masks_separate(tiny_scene, tmp_path):
    import numpy as np

    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    objects = _ground_truth_features(tiny_scene, model)
    parts = torch.from_numpy(np.load(tiny_scene.labels_path)["part_id"]).long()
    features = model.click_features.detach()
    candidates = {"coarse": _with_a_duplicate(features[:, :12], objects), "fine": _with_a_duplicate(features, parts)}
    sizes = {level: torch.ones(len(c)) for level, c in candidates.items()}
    pixels = pipeline.candidate_segment_pixels(candidates)
    for level, level_pixels in pixels.items():
        count = len(candidates[level])
        assert level_pixels.num_views == len(pipeline.datamanager.train_dataset)
        member = torch.eye(count, dtype=torch.bool)  # [K + 1, K + 1]: each candidate alone
        assert group_sharing(level_pixels, member[0], member[-1]) > 0.9, (
            f"{level}: the duplicate's pixels lie in the first one's segments")
        others = [group_sharing(level_pixels, member[a], member[b]) for a in range(count - 1) for b in range(a)]
        assert max(others) < 0.3, f"{level}: different objects (parts) lie in different segments"
    labelling = pipeline.config.model.labelling
    labelling.merge_cosine = labelling.coarse_merge_cosine = -1.0  # every pair is close by cosine: the segments decide
    merged = {level: m.candidates for level, m in pipeline.merged_candidates(candidates, sizes).items()}
    for level, level_merged in merged.items():
        assert level_merged.shape[0] == len(candidates[level]) - 1, f"{level}: one candidate per object (part)"
        unit = torch.nn.functional.normalize(candidates[level], dim=-1)
        torch.testing.assert_close(level_merged[0], torch.nn.functional.normalize(unit[0] + unit[-1], dim=-1))
        torch.testing.assert_close(level_merged[1:], unit[1:-1])  # the others as they were
    pipeline.config.model.labelling.merge_min_shared = 0.0
    by_cosine = pipeline.merged_candidates(candidates, sizes)
    assert by_cosine["coarse"].candidates.shape[0] == by_cosine["fine"].candidates.shape[0] == 1, (
        "by cosine alone, everything merges")


def test_candidates_round_trip_through_a_checkpoint(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    model.set_candidates(torch.nn.functional.normalize(torch.randn(5, 12), dim=-1),
                         torch.nn.functional.normalize(torch.randn(7, 24), dim=-1))
    state = {key: value.clone() for key, value in pipeline.state_dict().items()}
    fresh = _pipeline(tiny_scene, tmp_path / "fresh")
    assert not fresh.model.has_candidates
    fresh.load_state_dict(state)
    for name in ("coarse_candidates", "fine_candidates", "coarse_labels", "fine_labels"):
        assert torch.equal(getattr(fresh.model, name), getattr(model, name)), name
    assert fresh.model.fine_candidates.shape == (7, 24)


def test_degenerate_clustering_warns_and_training_goes_on(tiny_scene, tmp_path, capsys):
    pipeline = _pipeline(tiny_scene, tmp_path, min_cluster_size_floor=100000)
    merged = pipeline.update_global_candidates(step=2)
    assert {level: len(level_merged.candidates) for level, level_merged in merged.items()} == {"coarse": 0, "fine": 0}
    assert "contrastive loss alone" in capsys.readouterr().out
    model = pipeline.model
    model.train()
    model.step = 5
    camera, batch = pipeline.datamanager.next_train(5)
    loss_dict = model.get_loss_dict(model(camera), batch, {})
    assert "gfl_loss" not in loss_dict and torch.isfinite(sum(loss_dict.values()))


def test_resumed_run_past_the_start_recomputes_missing_candidates(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    calls = []
    pipeline.update_global_candidates = lambda step: calls.append(step)  # type: ignore[method-assign]
    pipeline.gfl_step(1)  # before the start: nothing
    pipeline.gfl_step(3)  # off schedule, but no candidates yet (a resumed run): compute now
    assert calls == [3]
    pipeline.model.set_candidates(torch.ones(2, 12), torch.ones(2, 24))
    pipeline.gfl_step(5)  # off schedule and has candidates: nothing
    pipeline.gfl_step(6)  # on schedule
    assert calls == [3, 6]


def test_gfl_loss_joins_the_feature_loss(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    model.set_candidates(torch.nn.functional.normalize(torch.randn(4, 12), dim=-1),
                         torch.nn.functional.normalize(torch.randn(6, 24), dim=-1))
    model.train()
    model.step = 3
    camera, batch = pipeline.datamanager.next_train(3)
    metrics = {}
    loss_dict = model.get_loss_dict(model(camera), batch, metrics)
    assert "gfl_loss" in loss_dict and {"gfl_pos_coarse", "gfl_neg_fine"} <= set(metrics)
    expected = model.config.gfl.loss_weight * sum(metrics[k] for k in
                                                  ("gfl_pos_coarse", "gfl_neg_coarse", "gfl_pos_fine", "gfl_neg_fine"))
    torch.testing.assert_close(loss_dict["gfl_loss"].detach(), expected)
    loss_dict["gfl_loss"].backward()
    assert model.click_features.grad is not None and model.means.grad is None


def _dense_reference_labels(model, cameras, segment_ids):
    """The labels as lifting computed them before it was made sparse: one render of every label per batch of views,
    a one-hot [B, H, W, 4, L] and a dense [N, L] vote matrix; returns (labels, second-best margin) per range."""
    from clickgs_ns.method.model import views_by_size

    columns = model.label_columns()
    votes = torch.zeros(model.num_points, columns[-1])
    for batch in views_by_size(cameras, 4):
        label_maps = model.candidate_label_maps(cameras[batch], segment_ids(batch))
        colors = torch.zeros(model.num_points, columns[-1], requires_grad=True)
        rendered = model.render_colors(cameras[batch], colors)[0]
        one_hot = torch.nn.functional.one_hot(label_maps.clamp_min(0), columns[-1]) * (label_maps >= 0)[..., None]
        (rendered * one_hot.sum(dim=-2).float()).sum().backward()  # -1: no vote
        votes += colors.grad
    results = []
    for first, stop in zip(columns[:4], columns[1:5]):  # the levels' ranges ("seen" last)
        block = votes[:, first:stop]
        top = block.topk(2, dim=1).values
        best = block.argmax(dim=1)
        labels = torch.where((best == stop - first - 1) | (block.sum(dim=1) < model.config.labelling.min_weight), -1,
                             best)
        results.append((labels, (top[:, 0] - top[:, 1]) / top[:, 0].clamp_min(1e-12)))
    return results


def test_sparse_lifting_gives_the_labels_of_the_dense_one_in_bounded_passes(tiny_scene, tmp_path):
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    _ground_truth_features(tiny_scene, model)
    cameras = pipeline.datamanager.train_dataset.cameras
    pipeline.update_global_candidates(step=9, merge=True)
    reference = _dense_reference_labels(model, cameras, pipeline.mask_ids)
    model.config.labelling.min_visibility = 0.0  # the dense reference below votes without it
    # a budget of one label channel per pass at 96x72 with 4 views: every label rendered on its own
    model.config.labelling.vote_pass_megabytes = 4 * 3 * 4 * 96 * 72 / 2**20
    model.lift_labels(cameras, pipeline.mask_ids)
    from clickgs_ns.method.lifting import fill_unlabelled

    (coarse, coarse_margin), (confident, confident_margin), (fine, fine_margin), (fine_confident, fine_confident_margin) \
        = reference
    expected = {
        "coarse_labels": (confident, confident_margin),
        "coarse_segment_labels": (fill_unlabelled(confident, coarse), torch.minimum(confident_margin, coarse_margin)),
        "fine_labels": (fine_confident, fine_confident_margin),
        "fine_segment_labels": (fill_unlabelled(fine_confident, fine), torch.minimum(fine_confident_margin, fine_margin)),
    }
    for name, (labels, margin) in expected.items():
        assert (labels >= 0).sum() > 0.3 * len(labels), name
        clear = margin > 1e-4  # a near-tie may go either way with another summation order
        assert clear.float().mean() > 0.99, name
        assert torch.equal(getattr(model, name)[clear], labels[clear]), name


def test_a_view_whose_masks_missed_everything_says_nothing_where_they_missed(tiny_scene, tmp_path):
    """SAM missed everything in every training view but the first: there the pixels of every candidate vote
    nothing, so the Gaussians that the first view labels keep most of their labels (the other views' pixels near
    no candidate still vote "none"); without ``abstain_where_missed`` every uncovered pixel votes "none", and those
    misses outvote the one view."""
    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    _ground_truth_features(tiny_scene, model)
    cameras = pipeline.datamanager.train_dataset.cameras
    pipeline.update_global_candidates(step=9, merge=True)
    model.config.labelling.min_visibility = 0.0  # which Gaussians count as hidden depends on the views counted

    def first_view_only(indices):  # [B] -> [B, H, W, 2]
        first = (indices == 0).to(pipeline.device)[:, None, None, None]
        return torch.where(first, pipeline.mask_ids(indices), -1)

    model.lift_labels(cameras[:1], pipeline.mask_ids)
    first_view_labels = model.coarse_labels.clone()
    first_view_shows = first_view_labels >= 0
    assert first_view_shows.sum() > 100
    labelled = {}
    for abstain in (True, False):
        model.config.labelling.abstain_where_missed = abstain
        model.lift_labels(cameras, first_view_only)
        labels = model.coarse_labels[first_view_shows]
        labelled[abstain] = (labels >= 0).float().mean()
        assert torch.equal(labels[labels >= 0], first_view_labels[first_view_shows][labels >= 0]), \
            "the candidates' votes come from the first view alone"
    assert labelled[True] > 0.3 and labelled[False] < 0.02  # measured: 0.44 and 0.004


def test_a_merged_candidate_is_confident_near_each_of_its_clusters(tiny_scene, tmp_path):
    """Two objects' coarse clusters merged into one candidate: their mean is far from both (orthogonal features:
    cosine 0.71), so by the mean no pixel of either is confident and a click on them selects nothing; near its
    clusters (``confident_near_cluster``, the clusters passed by ``finish_labels``) both objects are labelled."""
    from clickgs_ns.method.lifting import merge_candidates

    pipeline = _pipeline(tiny_scene, tmp_path)
    model = pipeline.model
    objects = _ground_truth_features(tiny_scene, model)
    cameras = pipeline.datamanager.train_dataset.cameras
    merged = pipeline.update_global_candidates(step=9, merge=True)
    model.config.labelling.min_visibility = 0.0
    clusters = merged["coarse"].candidates
    near = model.coarse_labels  # each Gaussian's nearest cluster: the ground-truth features are the clusters
    first, second = int(torch.mode(near[objects == 0]).values), int(torch.mode(near[objects == 1]).values)
    assert first != second
    joined = clusters.clone()
    joined[second] = clusters[first]  # the two clusters above any threshold: merged
    pair = merge_candidates(joined, torch.ones(len(clusters)), min_cosine=0.999)
    assert len(pair.candidates) == len(clusters) - 1
    merged_label = int(pair.group[first])
    candidates = pair.candidates.clone()
    candidates[merged_label] = torch.nn.functional.normalize(clusters[first] + clusters[second], dim=-1)
    both = merged | {"coarse": pair._replace(candidates=candidates, clusters=clusters)}  # a merge of the two objects
    model.set_candidates(candidates, merged["fine"].candidates)
    on_both = (objects == 0) | (objects == 1)
    labelled = {}
    for near_cluster in (False, True):
        model.config.labelling.confident_near_cluster = near_cluster
        model.lift_labels(cameras, pipeline.mask_ids, both)
        labelled[near_cluster] = (model.coarse_labels[on_both] == merged_label).float().mean()
    assert labelled[False] < 0.05 and labelled[True] > 0.5, labelled
