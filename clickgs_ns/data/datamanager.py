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

import torch

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
from clickgs_ns.lens import has_distortion, undistort_ids


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
        from clickgs_ns.data.mask_cache import mask_cache_status, missing_or_stale_masks
        from clickgs_ns.data.sam_masks import compute_masks, failed_images_message

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

