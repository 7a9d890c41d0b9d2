"""Real captures with lens distortion: the id maps are undistorted exactly as nerfstudio undistorts the images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from clickgs_ns.io.id_maps import mask_path_for_image, read_id_maps, write_id_maps
from clickgs_ns.lens import undistort_ids
from conftest import make_trainer_config, train

PERSPECTIVE_DISTORTION = np.array([-0.25, 0.06, 0.0, 0.0, 0.002, -0.001], np.float32)  # k1 k2 k3 k4 p1 p2
FISHEYE_DISTORTION = np.array([0.05, -0.02, 0.01, 0.0, 0.0, 0.0], np.float32)  # k1..k4


def stripes(height: int = 60, width: int = 80) -> np.ndarray:
    """An id map of 16 blocks [H, W] int32."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return (rows * 4 // height * 4 + cols * 4 // width).astype(np.int32)


def nerfstudio_undistorted(ids: np.ndarray, camera_type, distortion: np.ndarray, K: np.ndarray) -> np.ndarray:
    """The id map encoded as an image and undistorted by nerfstudio's own code (bilinear)."""
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.datamanagers.full_images_datamanager import _undistort_image

    height, width = ids.shape
    camera = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=float(K[0, 0]), fy=float(K[1, 1]),
                     cx=float(K[0, 2]), cy=float(K[1, 2]), width=width, height=height,
                     distortion_params=torch.from_numpy(distortion)[None], camera_type=camera_type)[0]
    image = np.stack([ids * 15, ids * 15, ids * 15], -1).astype(np.float32)
    _, undistorted, _ = _undistort_image(camera, distortion.copy(), {}, image, K.copy())
    return undistorted[..., 0] / 15


@pytest.mark.parametrize("kind", ["perspective", "fisheye"])
def test_undistort_ids_matches_nerfstudios_image_undistortion(kind):
    from nerfstudio.cameras.cameras import CameraType

    ids = stripes()
    K = np.array([[70.0, 0, 40.0], [0, 70.0, 30.0], [0, 0, 1]])
    camera_type = CameraType.PERSPECTIVE if kind == "perspective" else CameraType.FISHEYE
    distortion = PERSPECTIVE_DISTORTION if kind == "perspective" else FISHEYE_DISTORTION
    reference = nerfstudio_undistorted(ids, camera_type, distortion, K)
    ours = undistort_ids(ids, camera_type.value, K, distortion)
    assert ours.shape == reference.shape and ours.dtype == np.int32
    assert ours.shape != ids.shape or kind == "fisheye", "the perspective crop changes the size"
    interior = np.abs(reference - np.round(reference)) < 1e-3  # away from the blended block borders
    assert interior.mean() > 0.8
    agree = ours[interior] == np.round(reference[interior]).astype(np.int32)
    assert agree.mean() > 0.995, agree.mean()
    assert set(np.unique(ours)) <= set(np.unique(ids)) | {-1}, "ids stay ids (no blends)"


# ------------------------------------------------------------------------------------------------ a distorted dataset
def distort(array: np.ndarray, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """What a lens with OPENCV ``distortion`` (nerfstudio's order) would have recorded of the pinhole ``array``
    [H, W, ...] of camera K: each distorted pixel takes the nearest pinhole pixel it sees."""
    height, width = array.shape[:2]
    K_cv = K.copy()
    K_cv[:2, 2] -= 0.5
    params = np.array([distortion[0], distortion[1], distortion[4], distortion[5], distortion[2]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    points = np.stack([u.ravel(), v.ravel()], -1)[:, None]
    pinhole = cv2.undistortPoints(points, K_cv, params, P=K_cv)[:, 0]  # [H*W, 2] pinhole pixel coordinates
    columns = np.clip(np.rint(pinhole[:, 0]), 0, width - 1).astype(int)
    rows = np.clip(np.rint(pinhole[:, 1]), 0, height - 1).astype(int)
    return array[rows, columns].reshape(array.shape)


@pytest.fixture(scope="module")
def distorted_scene(tiny_scene, tmp_path_factory):
    """The tiny synthetic scene as a camera with barrel distortion records it: images, SAM masks and ground truth
    distorted, transforms.json with k1, k2, p1, p2 (nerfstudio's OPENCV model)."""
    root = tmp_path_factory.mktemp("distorted") / "scene"
    shutil.copytree(tiny_scene.root, root)
    transforms = json.loads((root / "transforms.json").read_text())
    K = np.array([[transforms["fl_x"], 0, transforms["cx"]], [0, transforms["fl_y"], transforms["cy"]], [0, 0, 1]])
    d = PERSPECTIVE_DISTORTION
    transforms.update(k1=float(d[0]), k2=float(d[1]), p1=float(d[4]), p2=float(d[5]))
    (root / "transforms.json").write_text(json.dumps(transforms))
    for image_path in sorted((root / "images").glob("*.png")):
        Image.fromarray(distort(np.asarray(Image.open(image_path)), K, d)).save(image_path)
        mask_path = mask_path_for_image(image_path, root)
        coarse, fine = read_id_maps(mask_path)
        write_id_maps(mask_path, distort(coarse, K, d), distort(fine, K, d))
    prompts = json.loads((root / "prompts.json").read_text())
    for prompt in prompts:  # the clicks and the ground-truth masks as the distorted photos show them
        prompt["click"]["xy"] = [float(v) for v in distort_point(prompt["click"]["xy"], K, d)]
        for target in prompt["targets"]:
            mask_path = root / target["mask"]
            Image.fromarray(distort(np.asarray(Image.open(mask_path)), K, d)).save(mask_path)
    (root / "prompts.json").write_text(json.dumps(prompts))
    return root, K


def distort_point(xy, K: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """Where the lens puts pinhole pixel ``xy`` (nerfstudio's pixel coordinates) of camera K."""
    K_cv = K.copy()
    K_cv[:2, 2] -= 0.5
    ray = np.linalg.solve(K_cv, np.array([xy[0] - 0.5, xy[1] - 0.5, 1.0]))
    params = np.array([distortion[0], distortion[1], distortion[4], distortion[5], distortion[2]])
    pixel, _ = cv2.projectPoints(ray[None], np.zeros(3), np.zeros(3), K_cv, params)
    return pixel[0, 0] + 0.5


def test_distorted_dataset_id_maps_follow_the_undistorted_images(distorted_scene, tiny_scene, tmp_path):
    root, K = distorted_scene
    config = make_trainer_config(root, tmp_path)
    datamanager = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    cached = datamanager.cached_train  # loads and undistorts (lazily, as in training)
    cameras = datamanager.train_dataset.cameras
    assert int(cameras.width[0]) < 96 and int(cameras.height[0]) < 72, "nerfstudio undistorted and cropped"
    for index, data in enumerate(cached):
        assert data["coarse_ids"].shape == data["fine_ids"].shape == data["image"].shape[:2]
        # Against the ground truth: the pinhole SAM map, seen through the undistorted camera (new K, crop).
        name = Path(datamanager.train_dataset.image_filenames[index]).name
        pinhole, _ = read_id_maps(mask_path_for_image(tiny_scene.root / "images" / name, tiny_scene.root))
        fx, fy, cx, cy = (float(getattr(cameras, key)[index]) for key in ("fx", "fy", "cx", "cy"))
        v, u = np.mgrid[0:data["image"].shape[0], 0:data["image"].shape[1]] + 0.5
        columns = np.clip(np.floor((u - cx) / fx * K[0, 0] + K[0, 2]), 0, 95).astype(int)
        rows = np.clip(np.floor((v - cy) / fy * K[1, 1] + K[1, 2]), 0, 71).astype(int)
        truth = pinhole[rows, columns]
        ours = data["coarse_ids"].numpy()
        pairs, counts = np.unique(np.stack([ours.ravel(), truth.ravel()]), axis=1, return_counts=True)
        best = {}
        for (mine, theirs), count in zip(pairs.T.tolist(), counts.tolist()):
            if count > best.get(mine, (None, 0))[1]:
                best[mine] = (theirs, count)
        agreement = sum(count for _, count in best.values()) / ours.size
        assert agreement > 0.95, (name, agreement)


def test_distorted_dataset_trains_clicks_and_scores(distorted_scene, tiny_scene, tmp_path):
    """Features trained on the undistorted views; clicks given in the distorted photos' pixels; predicted masks
    compared with ground truth in the distorted photos: as good as on the pinhole scene."""
    from clickgs_ns.app.api import load
    from clickgs_ns.segment.evaluate import evaluate_prompts, load_prompts
    from clickgs_ns.segment.selection import selection_mask
    from clickgs_ns.segment.views import full_resolution_camera, photo_pixels_in_pinhole, photo_selection_mask

    root, _ = distorted_scene
    config = make_trainer_config(root, tmp_path, init_ply=tiny_scene.scene_ply_path, feature_stage_steps=200)
    scene = load(train(config))
    view = scene.views.get("images/frame_00000.png")
    assert view.distortion is not None and view.full_size == (72, 96)
    objects = torch.from_numpy(np.load(tiny_scene.labels_path)["object_id"]).long()
    prompts = load_prompts(root / "prompts.json")
    distorted = evaluate_prompts(scene, prompts, root / "prompts.json")["summary"]
    pinhole_config = make_trainer_config(tiny_scene.root, tmp_path / "pinhole", init_ply=tiny_scene.scene_ply_path,
                                         feature_stage_steps=200)
    pinhole = evaluate_prompts(load(train(pinhole_config)), load_prompts(tiny_scene.prompts_path),
                               tiny_scene.prompts_path)["summary"]
    for level in ("coarse", "fine"):
        print(f"{level} mIoU: distorted {distorted[level]['mIoU']:.3f}, pinhole {pinhole[level]['mIoU']:.3f}")
        assert distorted[level]["mIoU"] > max(0.6, pinhole[level]["mIoU"] - 0.08)
    prompt = next(p for p in prompts if p.level == "coarse")
    result = scene.click(scene.views.get(prompt.image).index, *prompt.xy, level="coarse")
    selected = objects[result.mask.cpu()]
    majority = torch.mode(selected).values
    assert (selected == majority).float().mean() > 0.8 and int(majority) != 0, "one object, not the ground"
    # the photo's corner lies outside the pinhole frame (barrel distortion): clicked on a grown canvas, not refused
    _, _, inside = photo_pixels_in_pinhole(view, view.camera, *view.full_size)
    assert not inside[0], "the corner is outside the pinhole frame"
    corner = scene.click(view.index, 0.5, 0.5, level="coarse")
    assert corner.pixel == (0, 0), "the photo's corner lands on the grown canvas's corner"
    # masks in the photo: the pinhole frame's pixels as before, and the border beyond it rendered too
    camera = full_resolution_camera(view.camera, view.full_size)
    everything = torch.ones(scene.num_gaussians, dtype=torch.bool)
    mask = photo_selection_mask(scene.model, everything, view, camera)
    row, column, inside = photo_pixels_in_pinhole(view, camera, *view.full_size)
    framed = (selection_mask(scene.model, everything, camera)[row, column] & inside).reshape(view.full_size)
    assert (mask >= framed).all() and mask.sum() > framed.sum()


def test_labels_of_a_distorted_run_are_lifted_again_as_its_training_lifted_them(distorted_scene, tiny_scene, tmp_path):
    """``clickgs lift-labels`` on a saved run with lens distortion: its views must be rendered at the size of their
    undistorted, cropped images, as in training (it once rendered them at the photo's size and failed)."""
    from clickgs_ns.segment.run import lift_saved_labels

    root, _ = distorted_scene
    config = make_trainer_config(root, tmp_path, init_ply=tiny_scene.scene_ply_path, feature_stage_steps=8)
    config_path = train(config)
    (checkpoint_path,) = (config_path.parent / "nerfstudio_models").glob("*.ckpt")
    names = [f"_model.{level}_{what}" for level in ("coarse", "fine") for what in ("labels", "segment_labels")]
    trained = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["pipeline"]
    assert any((trained[name] >= 0).any() for name in names)
    checkpoint, _ = lift_saved_labels(config_path)
    assert checkpoint == checkpoint_path
    relabelled = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    for name in names:
        assert torch.equal(relabelled[name], trained[name]), name


@pytest.mark.parametrize("kind", ["perspective", "fisheye"])
def test_photo_canvas_holds_every_pixel_of_a_barrel_distorted_photo(kind):
    from nerfstudio.cameras.cameras import CameraType, Cameras

    from clickgs_ns.segment.views import View, photo_canvas, photo_pixels, photo_pixels_in_pinhole

    distortion = PERSPECTIVE_DISTORTION if kind == "perspective" else FISHEYE_DISTORTION
    camera_type = CameraType.PERSPECTIVE if kind == "perspective" else CameraType.FISHEYE
    camera = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=50.0, fy=50.0, cx=40.0, cy=30.0, width=80, height=60,
                     camera_type=camera_type)
    view = View("images/a.png", "train", 0, camera, (60, 80), torch.from_numpy(distortion), camera_type.value)
    _, _, inside = photo_pixels_in_pinhole(view, camera, 60, 80)
    if kind == "perspective":
        assert not inside.all(), "barrel distortion: the photo's corners lie outside the pinhole frame"
    canvas, row, column, inside = photo_canvas(view, camera, 60, 80)
    assert inside.all()
    # the canvas is the same camera with more image around it: every photo pixel keeps its ray
    shift = (canvas.cx - camera.cx).item(), (canvas.cy - camera.cy).item()
    assert shift[0] >= 0 and shift[1] >= 0 and (canvas.fx == camera.fx).all()
    assert int(canvas.width) >= 80 + shift[0] and int(canvas.height) >= 60 + shift[1]
    points = photo_pixels(view, camera, 60, 80)
    np.testing.assert_array_equal(column, np.floor(points[:, 0] + shift[0]).astype(int))
    np.testing.assert_array_equal(row, np.floor(points[:, 1] + shift[1]).astype(int))
