"""A full-image datamanager that attaches each training image's SAM id maps (coarse and fine).

The maps are read from the dataset's ``clickgs_masks/`` folder (format: ``clickgs_ns.io.id_maps``), checked against
the image's full resolution, resized with nearest neighbour to the training resolution, undistorted exactly as
nerfstudio undistorts the image when the camera has lens distortion (``undistort_ids``), and stored compactly
(the smallest integer type that holds the image's ids) next to the cached image as ``coarse_ids``/``fine_ids``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Tuple, Type

import numpy as np
import torch

from nerfstudio.cameras.cameras import CameraType
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from clickgs_ns.data.sam_masks import SamMaskConfig
from clickgs_ns.io.id_maps import (
    MaskFileError,
    compact_ids,
    mask_path_for_image,
    read_id_maps,
    renumber_ids,
    resize_ids_nearest,
)
from clickgs_ns.io.images import full_resolution_path, full_resolution_size


def opencv_camera(camera_type: int, intrinsics: np.ndarray, distortion: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A nerfstudio camera's K [3, 3] and distortion [6] (k1, k2, k3, k4, p1, p2) as nerfstudio hands them to OpenCV:
    K with pixel centres at integers, and the coefficients in OpenCV's order (fisheye: k1..k4; perspective:
    k1, k2, p1, p2, k3, k4, 0, 0)."""
    K = intrinsics.astype(np.float64).copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    if camera_type == CameraType.FISHEYE.value:
        return K, distortion[:4].astype(np.float64)
    d = distortion.astype(np.float64)
    return K, np.array([d[0], d[1], d[4], d[5], d[2], d[3], 0.0, 0.0])


def undistort_ids(ids: np.ndarray, camera_type: int, intrinsics: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """An id map [H, W] of a distorted image, undistorted as nerfstudio's FullImageDatamanager undistorts the image
    (nerfstudio 1.1.5 ``_undistort_image``: the same new camera matrix, remap and crop) but with nearest-neighbour
    sampling, so that ids stay ids; pixels that map outside the source are -1.

    Args:
        ids: [H, W] integer ids at the camera's resolution.
        camera_type: nerfstudio ``CameraType`` value (PERSPECTIVE or FISHEYE).
        intrinsics: [3, 3] the camera's K before undistortion.
        distortion: [6] nerfstudio's distortion parameters (k1, k2, k3, k4, p1, p2).
    Returns:
        [H', W'] int32, the size of the undistorted image.
    """
    import cv2

    K, params = opencv_camera(camera_type, intrinsics, distortion)
    size = (ids.shape[1], ids.shape[0])
    source = ids.astype(np.float32)  # cv2.remap has no int32; ids below 2^24 are exact
    if camera_type == CameraType.PERSPECTIVE.value:
        if distortion[3] != 0:
            raise MaskFileError("nerfstudio cannot undistort images with the 4th radial parameter k4 (OPENCV "
                                "distortion): reprocess the data with another camera model")
        new_K, (x, y, w, h) = cv2.getOptimalNewCameraMatrix(K, params, size, 0)
        maps = cv2.initUndistortRectifyMap(K, params, None, new_K, size, cv2.CV_32FC1)
        undistorted = cv2.remap(source, *maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
        undistorted = undistorted[y : y + h, x : x + w]
    elif camera_type == CameraType.FISHEYE.value:
        new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(K, params, size, np.eye(3), balance=0)
        maps = cv2.fisheye.initUndistortRectifyMap(K, params, np.eye(3), new_K, size, cv2.CV_32FC1)
        undistorted = cv2.remap(source, *maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    else:
        raise MaskFileError(f"Cameras of type {CameraType(camera_type).name} with distortion are not supported by "
                            "click-gaussian: reprocess the data as PERSPECTIVE (OPENCV) or FISHEYE.")
    return np.rint(undistorted).astype(np.int32)


def has_distortion(distortion) -> bool:
    """Whether nerfstudio distortion parameters ([..., 6] or None) are anything but zero."""
    return distortion is not None and bool(torch.any(distortion != 0))


def undistort_pixels(pixels: np.ndarray, camera_type: int, intrinsics: np.ndarray,
                     distortion: np.ndarray) -> np.ndarray:
    """Where points [M, 2] (x, y; nerfstudio's pixel coordinates, centres at +0.5) of a distorted image lie in the
    pinhole image of the same intrinsics [3, 3] (no crop): the lens model undone, as ``undistort_ids`` does."""
    import cv2

    K, params = opencv_camera(camera_type, intrinsics, distortion)
    points = (np.asarray(pixels, np.float64) - 0.5).reshape(-1, 1, 2)
    if camera_type == CameraType.FISHEYE.value:
        pinhole = cv2.fisheye.undistortPoints(points, K, params, P=K)
    else:
        pinhole = cv2.undistortPoints(points, K, params, P=K)
    return pinhole.reshape(-1, 2) + 0.5


class ClickGaussianDataset(InputDataset):
    """An InputDataset whose items carry ``coarse_ids`` and ``fine_ids`` [H, W] (int16 or int32, -1 = none)."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0,
                 data_root: Path = Path("."), load_id_maps: bool = True):
        super().__init__(dataparser_outputs, scale_factor)
        self.data_root = Path(data_root)
        self.load_id_maps = load_id_maps

    def mask_path(self, image_idx: int) -> Path:
        return mask_path_for_image(self._dataparser_outputs.image_filenames[image_idx], self.data_root)

    def get_metadata(self, data: Dict) -> Dict:
        if not self.load_id_maps:
            return {}
        image_idx = data["image_idx"]
        image_path = self._dataparser_outputs.image_filenames[image_idx]
        mask_path = self.mask_path(image_idx)
        coarse, fine = read_id_maps(mask_path)
        expected = full_resolution_size(image_path, self.data_root)
        if coarse.shape != expected:
            raise MaskFileError(
                f"Mask file {mask_path} is {coarse.shape[1]}x{coarse.shape[0]} (WxH) but its image {image_path} is "
                f"{expected[1]}x{expected[0]} at full resolution; masks must be made at the image's full resolution."
            )
        height, width = data["image"].shape[:2]
        return {
            "coarse_ids": torch.from_numpy(compact_ids(renumber_ids(resize_ids_nearest(coarse, (height, width))))),
            "fine_ids": torch.from_numpy(compact_ids(renumber_ids(resize_ids_nearest(fine, (height, width))))),
        }


@dataclass
class ClickGaussianDataManagerConfig(FullImageDatamanagerConfig):
    """FullImageDatamanager plus the SAM id maps of every training image."""

    _target: Type = field(default_factory=lambda: ClickGaussianDataManager)
    cache_images_type: Literal["uint8", "float32"] = "uint8"
    sam: SamMaskConfig = field(default_factory=SamMaskConfig)
    """SAM settings: with ``sam.sam_checkpoint`` set, missing or stale masks are computed before training."""


class ClickGaussianDataManager(FullImageDatamanager[ClickGaussianDataset]):
    """Training images come with ``coarse_ids`` and ``fine_ids``; eval images do not need masks."""

    config: ClickGaussianDataManagerConfig

    def __init__(self, config: ClickGaussianDataManagerConfig, device="cpu", test_mode="val", **kwargs):
        super().__init__(config, device=device, test_mode=test_mode, **kwargs)
        if test_mode != "inference":
            self.ensure_masks()

    def ensure_masks(self) -> None:
        """Make sure every training image has its id maps: compute missing or stale ones with SAM when a
        checkpoint is configured, else stop with an error that gives both ways forward."""
        from clickgs_ns.data.sam_masks import (
            compute_masks,
            failed_images_message,
            mask_cache_status,
            missing_or_stale_masks,
        )

        images = [full_resolution_path(p, self.data_root) for p in self.train_dataset.image_filenames]
        missing = missing_or_stale_masks(self.data_root, images, self.config.sam)
        if not missing:
            return
        if self.config.sam.sam_checkpoint is not None:
            report = compute_masks(self.data_root, missing, self.config.sam)
            if report.failed:
                raise MaskFileError(failed_images_message(report.failed, "ns-train"))
            return
        shown = "; ".join(mask_cache_status(p, mask_path_for_image(p, self.data_root), None).reason for p in missing[:3])
        raise MaskFileError(
            f"{len(missing)} of {len(images)} training images have no valid SAM masks ({shown}). Either give a "
            "SAM checkpoint so that they are computed before training (--pipeline.datamanager.sam.sam-checkpoint "
            "PATH, or run `clickgs masks --data DATA --sam-checkpoint PATH` first), or provide masks from any other "
            "tool in the documented format (clickgs_masks/NAME.npz with int32 'coarse' and 'fine' maps)."
        )

    @property
    def data_root(self) -> Path:
        data = Path(self.config.dataparser.data)
        return data.parent if data.is_file() else data

    def create_train_dataset(self) -> ClickGaussianDataset:
        return ClickGaussianDataset(
            dataparser_outputs=self.train_dataparser_outputs,
            scale_factor=self.config.camera_res_scale_factor,
            data_root=self.data_root,
            load_id_maps=self.test_mode != "inference",
        )

    def create_eval_dataset(self) -> ClickGaussianDataset:
        return ClickGaussianDataset(
            dataparser_outputs=self.dataparser.get_dataparser_outputs(split=self.test_split),
            scale_factor=self.config.camera_res_scale_factor,
            data_root=self.data_root,
            load_id_maps=False,
        )

    def _load_images(self, split: Literal["train", "eval"],
                     cache_images_device: Literal["cpu", "gpu"]) -> List[Dict[str, torch.Tensor]]:
        # "cpu" caching pins memory, which needs a CUDA driver; on a CPU device the device *is* the CPU.
        if torch.device(self.device).type == "cpu":
            cache_images_device = "gpu"
        cameras = self.train_dataset.cameras if split == "train" else None
        distorted = (cameras is not None and self.train_dataset.load_id_maps
                     and has_distortion(cameras.distortion_params))
        if distorted:  # nerfstudio replaces the intrinsics while it undistorts the images: keep the originals
            intrinsics = cameras.get_intrinsics_matrices().clone()
        cached = super()._load_images(split, cache_images_device)
        if distorted:
            for idx, data in enumerate(cached):
                self.undistort_id_maps(data, idx, intrinsics[idx])
        return cached

    def undistort_id_maps(self, data: Dict[str, torch.Tensor], idx: int, intrinsics: torch.Tensor) -> None:
        """Undistort training view ``idx``'s id maps in ``data`` as its image was (``undistort_ids``)."""
        camera = self.train_dataset.cameras[idx]
        if not has_distortion(camera.distortion_params):
            return
        for key in ("coarse_ids", "fine_ids"):
            ids = undistort_ids(data[key].numpy(), int(camera.camera_type.item()), intrinsics.numpy(),
                                camera.distortion_params.numpy())
            data[key] = torch.from_numpy(compact_ids(renumber_ids(ids)))
        if data["coarse_ids"].shape != data["image"].shape[:2]:
            raise MaskFileError(
                f"Image {self.train_dataset.image_filenames[idx]} was undistorted to {tuple(data['image'].shape[:2])} "
                f"but its id maps to {tuple(data['coarse_ids'].shape)}: please report this with the camera's model."
            )

    def id_maps(self, image_idx: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Coarse and fine id maps [H, W] of training image ``image_idx`` (at the training resolution)."""
        data = self.cached_train[image_idx]
        return data["coarse_ids"], data["fine_ids"]

