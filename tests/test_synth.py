"""The procedural scene generator: files, determinism, ground truth, SAM-like masks, nerfstudio loading."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
from PIL import Image

from clickgs_ns.io.id_maps import read_id_maps
from clickgs_ns.io.ply import read_gaussian_ply
from clickgs_ns.synth import (
    SynthConfig,
    generate_scene,
    sam_like_id_maps,
)

def id_map_disagreement(pred: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of pixels where an id map disagrees with a ground-truth map, up to relabelling.

    Each predicted id is matched to the ground-truth id it overlaps most and vice versa; a pixel agrees when both
    are -1, or when its predicted and ground-truth ids are each other's match. Pixels where either map has an id
    count. Returns 0 for identical maps up to a bijective relabelling.

    Args:
        pred, gt: integer [H, W] maps, -1 = no id.
    """
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    counted = (pred >= 0) | (gt >= 0)
    if not counted.any():
        return 0.0
    both = (pred >= 0) & (gt >= 0)
    pairs, overlap = np.unique(np.stack([pred[both], gt[both]], axis=1), axis=0, return_counts=True)
    best_gt: Dict[int, Tuple[int, int]] = {}
    best_pred: Dict[int, Tuple[int, int]] = {}
    for (p, g), count in zip(pairs.tolist(), overlap.tolist()):
        if count > best_gt.get(p, (-1, 0))[1]:
            best_gt[p] = (g, count)
        if count > best_pred.get(g, (-1, 0))[1]:
            best_pred[g] = (p, count)
    matched = {(p, g) for p, (g, _) in best_gt.items() if best_pred[g][0] == p}
    agree = np.zeros(len(pred), dtype=bool)
    if matched:
        matched_arr = np.array(sorted(matched))
        key = pred.astype(np.int64) * (int(gt.max()) + 2) + gt
        matched_keys = matched_arr[:, 0].astype(np.int64) * (int(gt.max()) + 2) + matched_arr[:, 1]
        agree = both & np.isin(key, matched_keys)
    return float(1.0 - agree[counted].sum() / counted.sum())


# ------------------------------------------------------------------------------------------------------------------
# Evaluation prompts
# ------------------------------------------------------------------------------------------------------------------


SMALL = SynthConfig(num_gaussians=1200, num_views=6, image_width=80, image_height=60, num_seed_points=300)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Scenes of the small config: seed 0 twice, seed 1, and seed 0 with clean masks."""
    root = tmp_path_factory.mktemp("synth")
    return {
        "a": generate_scene(SMALL, root / "a"),
        "a_again": generate_scene(SMALL, root / "a_again"),
        "b": generate_scene(dataclasses.replace(SMALL, seed=1), root / "b"),
        "clean": generate_scene(dataclasses.replace(SMALL, mask_noise=0.0), root / "clean"),
    }


def _relabel_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the id maps are equal up to a bijective relabelling of their non-negative ids (-1 stays -1)."""
    if not np.array_equal(a < 0, b < 0):
        return False
    pairs = np.unique(np.stack([a[a >= 0], b[b >= 0]], 1), axis=0)
    return len(pairs) == len(np.unique(a[a >= 0])) == len(np.unique(b[b >= 0]))


def test_files_and_shapes(scenes):
    scene = scenes["a"]
    root = scene.root
    for name in ("transforms.json", "scene.ply", "scene_labels.npz", "sparse_pc.ply", "scene.json"):
        assert (root / name).is_file(), name
    assert len(scene.image_paths) == len(scene.gt_paths) == len(scene.mask_paths) == SMALL.num_views
    assert scene.mask_paths[0] == root / "clickgs_masks" / "frame_00000.npz"
    for image_path, gt_path, mask_path in zip(scene.image_paths, scene.gt_paths, scene.mask_paths):
        image = Image.open(image_path)
        assert image.mode == "RGB" and image.size == (SMALL.image_width, SMALL.image_height)
        with np.load(gt_path) as gt:
            assert gt["coarse"].dtype == gt["fine"].dtype == np.int32
            assert gt["coarse"].shape == gt["fine"].shape == (SMALL.image_height, SMALL.image_width)
            assert (gt["coarse"] >= 0).mean() > 0.2 and (gt["coarse"] < 0).any()
        coarse, fine = read_id_maps(mask_path)
        assert coarse.shape == (SMALL.image_height, SMALL.image_width)
    # The background shows the configured colour.
    corner = np.asarray(Image.open(scene.image_paths[0]))[0, 0]
    np.testing.assert_array_equal(corner, np.round(np.asarray(SMALL.background) * 255))

    ply = read_gaussian_ply(scene.scene_ply_path)
    labels = np.load(scene.labels_path)
    assert ply.num_gaussians == scene.num_gaussians == len(labels["object_id"])
    assert ply.sh_degree == 0
    np.testing.assert_array_equal(ply.extra["object_id"], labels["object_id"])
    np.testing.assert_array_equal(ply.extra["part_id"], labels["part_id"])
    np.testing.assert_array_equal(labels["part_to_object"][labels["part_id"]], labels["object_id"])
    assert scene.num_objects == SMALL.num_objects + 1 and labels["object_names"][0] == "ground"
    assert len(labels["part_names"]) == scene.num_parts == len(labels["part_to_object"])
    assert np.bincount(labels["part_to_object"]).max() >= 2, "objects have several parts"
    assert np.abs(ply.means).max() <= 1.0 + 1e-6 and ply.means[:, 2].min() >= -1e-3
    assert np.allclose(1 / (1 + np.exp(-ply.opacities)), SMALL.opacity, atol=1e-5)

    meta = json.loads((root / "scene.json").read_text())
    assert meta["seed"] == 0 and meta["part_names"] == list(labels["part_names"])
    assert meta["config"]["num_views"] == SMALL.num_views and meta["num_gaussians"] == scene.num_gaussians


def test_deterministic_given_seed(scenes):
    a, again, b = scenes["a"], scenes["a_again"], scenes["b"]
    for name in ("scene.ply", "sparse_pc.ply", "transforms.json", "scene_labels.npz"):
        assert (a.root / name).read_bytes() == (again.root / name).read_bytes(), name
    for paths in ("image_paths", "mask_paths", "gt_paths"):
        for p, q in zip(getattr(a, paths), getattr(again, paths)):
            assert p.read_bytes() == q.read_bytes(), p
    assert any(
        not np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))
        for p, q in zip(a.image_paths, b.image_paths)
    )
    assert any(not np.array_equal(read_id_maps(p)[0], read_id_maps(q)[0]) for p, q in zip(a.mask_paths, b.mask_paths))


def test_clean_masks_are_ground_truth_relabelled(scenes):
    clean, noisy = scenes["clean"], scenes["a"]
    for gt_path, mask_path, noisy_mask_path in zip(clean.gt_paths, clean.mask_paths, noisy.mask_paths):
        with np.load(gt_path) as gt:
            coarse, fine = read_id_maps(mask_path)
            assert _relabel_equal(coarse, gt["coarse"]) and _relabel_equal(fine, gt["fine"])
            assert not np.array_equal(coarse, gt["coarse"]), "ids are relabelled randomly"
            assert id_map_disagreement(coarse, gt["coarse"]) == id_map_disagreement(fine, gt["fine"]) == 0.0
    # Mask noise does not change the scene or its renders.
    for p, q in zip(clean.image_paths, noisy.image_paths):
        assert p.read_bytes() == q.read_bytes()


def test_noise_grows_with_mask_noise(scenes):
    gts = [np.load(p) for p in scenes["a"].gt_paths]
    disagreement = []
    for noise in (0.0, 0.3, 1.0):
        config = dataclasses.replace(SMALL, mask_noise=noise)
        values = []
        for view, gt in enumerate(gts):
            for seed in range(3):
                coarse, fine = sam_like_id_maps(gt["coarse"], gt["fine"], config, np.random.default_rng([seed, view]))
                values.append(id_map_disagreement(coarse, gt["coarse"]) + id_map_disagreement(fine, gt["fine"]))
        disagreement.append(float(np.mean(values)))
    assert disagreement[0] == 0.0
    assert disagreement[0] < disagreement[1] < disagreement[2]
    assert disagreement[2] > 0.1


def test_noisy_masks_keep_levels_consistent(scenes):
    config = dataclasses.replace(SMALL, mask_noise=1.0)
    for view, gt_path in enumerate(scenes["a"].gt_paths):
        with np.load(gt_path) as gt:
            coarse, fine = sam_like_id_maps(gt["coarse"], gt["fine"], config, np.random.default_rng(view))
        assert np.array_equal(coarse < 0, fine < 0)
        pairs = np.unique(np.stack([fine[fine >= 0], coarse[coarse >= 0]], 1), axis=0)
        assert len(pairs) == len(np.unique(pairs[:, 0])), "a fine segment lies inside one coarse segment"
        assert (coarse >= 0).any()
    # Each noise kind alone at full strength changes the masks.
    with np.load(scenes["a"].gt_paths[0]) as gt:
        gt_coarse, gt_fine = gt["coarse"], gt["fine"]
    off = dict(object_merge_prob=0.0, part_split_prob=0.0, segment_drop_prob=0.0, boundary_flip_prob=0.0,
               holes_per_view=0.0, small_segment_area_px=0)
    for kind, value in [("part_split_prob", 1.0), ("segment_drop_prob", 1.0), ("boundary_flip_prob", 1.0),
                        ("holes_per_view", 5.0), ("object_merge_prob", 1.0)]:
        config = dataclasses.replace(SMALL, mask_noise=1.0, **{**off, kind: value})
        coarse, fine = sam_like_id_maps(gt_coarse, gt_fine, config, np.random.default_rng(0))
        changed = id_map_disagreement(coarse, gt_coarse) + id_map_disagreement(fine, gt_fine)
        assert changed > 0, kind


def test_ground_truth_agrees_with_gaussian_labels(scenes):
    """Project Gaussian centres with transforms.json (OpenGL camera-to-world) and look their labels up."""
    scene = scenes["a"]
    transforms = json.loads(scene.transforms_path.read_text())
    ply = read_gaussian_ply(scene.scene_ply_path)
    labels = np.load(scene.labels_path)
    K = np.array([[transforms["fl_x"], 0, transforms["cx"]], [0, transforms["fl_y"], transforms["cy"]], [0, 0, 1]])
    w, h = transforms["w"], transforms["h"]
    fine_hits, object_hits, object_trials, occluded_trials = [], 0, 0, 0
    for frame, gt_path in zip(transforms["frames"], scene.gt_paths):
        c2w_opencv = np.asarray(frame["transform_matrix"]) @ np.diag([1.0, -1.0, -1.0, 1.0])
        w2c = np.linalg.inv(c2w_opencv)
        cam = ply.means @ w2c[:3, :3].T + w2c[:3, 3]
        assert (cam[:, 2] > 0).all(), "the whole scene is in front of every camera"
        uv = cam @ K.T
        u, v = uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2]
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        with np.load(gt_path) as gt:
            # A point z-buffer: each centre covers its pixel's 3x3 neighbourhood; the front-most centre on a pixel
            # should carry the part the ground truth shows there.
            offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
            index = np.tile(np.flatnonzero(inside), len(offsets))
            pu = np.concatenate([u[inside].astype(int) + dx for dx, _ in offsets])
            pv = np.concatenate([v[inside].astype(int) + dy for _, dy in offsets])
            keep = (pu >= 0) & (pu < w) & (pv >= 0) & (pv < h)
            index, pixel = index[keep], (pv * w + pu)[keep]
            order = np.argsort(cam[index, 2], kind="stable")
            _, first = np.unique(pixel[order], return_index=True)
            front, front_pixel = index[order][first], pixel[order][first]
            fine_hits.append(gt["fine"].ravel()[front_pixel] == labels["part_id"][front])
            # The ground-truth object under the projected centre of each big part is that part's object, unless
            # the object shown there has Gaussians in front of the centre (occlusion).
            for part in range(1, len(labels["part_to_object"])):
                members = labels["part_id"] == part
                if members.sum() < 0.5 * len(ply.means) / len(labels["part_to_object"]):
                    continue
                centre = cam[members].mean(0) @ K.T
                cu, cv = centre[0] / centre[2], centre[1] / centre[2]
                on_part = (np.abs(u - cu) < 2) & (np.abs(v - cv) < 2) & members
                if not (0 <= cu < w and 0 <= cv < h and on_part.any()):
                    continue  # outside the image, or a centre between the pieces of a part (table legs)
                object_trials += 1
                shown = gt["coarse"][int(cv), int(cu)]
                near = (np.abs(u - cu) < 2) & (np.abs(v - cv) < 2) & (labels["object_id"] == shown)
                if shown == labels["part_to_object"][part]:
                    object_hits += 1
                elif shown >= 0 and near.any() and cam[near, 2].min() < cam[members, 2].mean():
                    occluded_trials += 1
    assert object_trials > 10 and object_hits / object_trials > 0.6
    assert object_hits + occluded_trials == object_trials


def test_nerfstudio_dataparser_loads_the_dataset(scenes):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    scene = scenes["a"]
    outputs = NerfstudioDataParserConfig(data=scene.root, load_3D_points=True).setup().get_dataparser_outputs("train")
    assert 0 < len(outputs.image_filenames) <= SMALL.num_views
    assert all(Path(p).is_file() for p in outputs.image_filenames)
    assert int(outputs.cameras.width[0]) == SMALL.image_width and int(outputs.cameras.height[0]) == SMALL.image_height
    points = outputs.metadata["points3D_xyz"].numpy()
    assert points.shape == (SMALL.num_seed_points, 3)
    # The seed points are the dataset-frame points moved by the dataparser's transform and scale.
    from plyfile import PlyData

    seed = PlyData.read(str(scene.sparse_pc_path))["vertex"].data
    xyz = np.stack([seed["x"], seed["y"], seed["z"]], 1).astype(np.float64)
    transform = outputs.dataparser_transform.numpy().astype(np.float64)
    expected = (xyz @ transform[:, :3].T + transform[:, 3]) * outputs.dataparser_scale
    np.testing.assert_allclose(points, expected, atol=1e-4)
    rgb = outputs.metadata["points3D_rgb"].numpy()
    np.testing.assert_array_equal(rgb, np.stack([seed["red"], seed["green"], seed["blue"]], 1))


def test_prompts_file_clicks_inside_and_targets_are_ground_truth(scenes):
    from clickgs_ns.segment.evaluate import load_prompts, read_mask_png
    from clickgs_ns.synth import train_view_indices
    from nerfstudio.data.utils.dataparsers_utils import get_train_eval_split_fraction

    scene = scenes["a"]
    assert scene.prompts_path == scene.root / "prompts.json"
    assert scene.prompts_path.read_bytes() == scenes["a_again"].prompts_path.read_bytes(), "deterministic"
    prompts = load_prompts(scene.prompts_path)  # the format clickgs eval reads
    assert len(prompts) == scene.num_prompts == json.loads((scene.root / "scene.json").read_text())["num_prompts"]
    assert {p.level for p in prompts} == {"coarse", "fine"}
    labels = np.load(scene.labels_path)
    names = {"coarse": list(labels["object_names"]), "fine": list(labels["part_names"])}
    assert "ground" not in [p.extra["segment"] for p in prompts]
    expected_train = get_train_eval_split_fraction(list(range(SMALL.num_views)), 0.9)[0].tolist()
    assert train_view_indices(SMALL.num_views, 0.9) == expected_train
    frames = [f"images/frame_{i:05d}.png" for i in range(SMALL.num_views)]
    for prompt in prompts:
        segment_id = names[prompt.level].index(prompt.extra["segment"])
        click_view = frames.index(prompt.image)
        assert click_view in expected_train, "clicks go in training views"
        with np.load(scene.gt_paths[click_view]) as gt:
            x, y = (int(v) for v in prompt.xy)
            assert gt[prompt.level][y, x] == segment_id, "the click lies on its segment"
            assert (gt[prompt.level][y - 1 : y + 2, x - 1 : x + 2] == segment_id).all(), "well inside it"
        assert SMALL.prompt_min_targets <= len(prompt.targets) <= SMALL.prompt_max_targets
        target_views = [frames.index(t.image) for t in prompt.targets]
        assert click_view not in target_views and len(set(target_views)) == len(target_views)
        for target, view in zip(prompt.targets, target_views):
            with np.load(scene.gt_paths[view]) as gt:
                truth = gt[prompt.level] == segment_id
            np.testing.assert_array_equal(read_mask_png(target.mask), truth)
            assert truth.sum() >= SMALL.prompt_min_target_area * truth.size


# ------------------------------------------------------------------------------------------------ the room family
def test_voronoi_patches_partition_the_region():
    import numpy as np

    from clickgs_ns.synth import voronoi_patches

    region = np.zeros((20, 30), dtype=bool)
    region[5:, :] = True
    patches = voronoi_patches(region, 4, np.random.default_rng(0))
    assert 1 <= len(patches) <= 4
    stacked = np.stack(patches).astype(int)
    assert (stacked.sum(axis=0) == region).all(), "every region pixel in exactly one patch, nothing outside"
    assert voronoi_patches(np.zeros((3, 3), dtype=bool), 4, np.random.default_rng(0)) == []


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from clickgs_ns.synth import room_config

    config = room_config(num_views=10, image_width=80, image_height=60, num_gaussians=6000, num_seed_points=500,
                         prompt_train_fraction=0.8)
    return generate_scene(config, tmp_path_factory.mktemp("room")), config


def test_room_floor_segments_change_from_view_to_view(room):
    scene, config = room
    overlaps = []
    for gt_path, mask_path in zip(scene.gt_paths[:4], scene.mask_paths[:4]):
        gt = np.load(gt_path)["coarse"]
        coarse, fine = read_id_maps(mask_path)
        floor = gt == 0
        floor_ids = set(np.unique(coarse[floor & (coarse >= 0)]).tolist())
        assert len(floor_ids) >= 3, "the floor is cut into several coarse patches"
        assert len(np.unique(fine[floor & (fine >= 0)])) > len(floor_ids), "and into more fine ones"
        overlaps.append(floor_ids)
    assert all(not (a & b) for i, a in enumerate(overlaps) for b in overlaps[i + 1 :]), \
        "no floor segment id is shared by two views"


def test_room_has_a_textured_floor_walls_seven_objects_and_held_out_targets(room):
    scene, config = room
    labels = np.load(scene.labels_path)
    assert len(labels["object_names"]) == 8 and "chair" in labels["object_names"].tolist()
    gaussians = read_gaussian_ply(scene.scene_ply_path)
    ground = labels["object_id"] == 0
    means = gaussians.means[ground]
    assert means[:, 2].max() > 0.9 * config.wall_height, "walls rise along the edges"
    floor_rgb = 0.5 + 0.28209479 * gaussians.features_dc.reshape(-1, 3)[ground][means[:, 2] < 1e-3]
    assert floor_rgb.mean(axis=1).std() > 0.1, "checkerboard: two clearly different floor colours"
    prompts = json.loads(scene.prompts_path.read_text())
    from clickgs_ns.synth import train_view_indices

    train = {f"images/frame_{i:05d}.png" for i in train_view_indices(10, 0.8)}
    assert prompts and all(p["click"]["image"] in train for p in prompts)
    assert all(t["image"] not in train for p in prompts for t in p["targets"]), "targets are held-out views"


def test_a_scene_segment_in_the_masks_leaves_objects_their_own_coarse_ids(scenes):
    """SAM's whole-scene segment (scene_segment_prob): it covers the ground and every object, but the objects keep
    their own coarse ids (scene_segments.SceneSegmentRule); without the option the masks are unchanged."""
    off = dict(object_merge_prob=0.0, part_split_prob=0.0, segment_drop_prob=0.0, boundary_flip_prob=0.0,
               holes_per_view=0.0, small_segment_area_px=0, mask_noise=1.0)
    with_scene = dataclasses.replace(SMALL, scene_segment_prob=1.0, **off)
    checked = 0
    for view, gt_path in enumerate(scenes["a"].gt_paths):
        with np.load(gt_path) as gt:
            gt_coarse, gt_fine = gt["coarse"], gt["fine"]
        plain = sam_like_id_maps(gt_coarse, gt_fine, dataclasses.replace(SMALL, **off), np.random.default_rng(view))
        coarse, fine = sam_like_id_maps(gt_coarse, gt_fine, with_scene, np.random.default_rng(view))
        if (gt_coarse >= 0).mean() <= 0.5:
            continue  # the rule needs the scene to cover over half the view
        checked += 1
        objects = gt_coarse >= 1  # the ground is object 0
        assert _relabel_equal(coarse[objects], plain[0][objects]), "objects keep their coarse segments"
        scene_id = set(np.unique(coarse[gt_coarse >= 0])) - set(np.unique(plain[0][gt_coarse >= 0]))
        assert len(scene_id) <= 1 and _relabel_equal(fine, plain[1])
    assert checked >= 2
