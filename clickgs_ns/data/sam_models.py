"""SAM models: their official checkpoints (never downloaded), the packages that build them (segment-anything,
MobileSAM, SAM 2.1), and their automatic mask generator with a ``SamMaskConfig``'s settings (``build_sam_generator``).

Heavy imports (torch, segment_anything, mobile_sam, sam2) happen inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Tuple

from clickgs_ns.data.mask_errors import MaskRunError, SamCheckpointError

if TYPE_CHECKING:
    from clickgs_ns.data.sam_masks import SamMaskConfig

SAM_CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_t": "mobile_sam.pt",
    "sam2.1_hiera_t": "sam2.1_hiera_tiny.pt",
    "sam2.1_hiera_s": "sam2.1_hiera_small.pt",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus.pt",
    "sam2.1_hiera_l": "sam2.1_hiera_large.pt",
}
"""The official checkpoint file of each model type (vit_t: MobileSAM's TinyViT)."""

SAM_CHECKPOINTS_PAGE = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
MOBILE_SAM_PAGE = "https://github.com/ChaoningZhang/MobileSAM (weights/mobile_sam.pt)"
SAM2_PAGE = "https://github.com/facebookresearch/sam2#sam-21-checkpoints"

SAM2_CONFIGS = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
"""SAM 2.1 models: the hydra config of Meta's ``sam2`` package for each."""
SAM2_INSTALL = ("SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2>=1.1' (PyPI has only its source; "
                "without SAM2_BUILD_CUDA=0 it compiles an optional CUDA extension)")

GENERATOR_FIXED_SETTINGS = {
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "output_mode": "binary_mask",
}
"""segment-anything generator settings this project does not expose; recorded in every file's settings."""


def resolve_device(device: str) -> str:
    """``device`` with "auto" replaced by "cuda" when a GPU is usable, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_checkpoint(config: SamMaskConfig) -> Path:
    """``config.sam_checkpoint`` if it is an existing file; otherwise SamCheckpointError saying where to get one."""
    official = ", ".join(f"{model}: {name}" for model, name in SAM_CHECKPOINT_FILES.items())
    page = (MOBILE_SAM_PAGE if config.sam_model == "vit_t" else SAM2_PAGE if config.sam_model in SAM2_CONFIGS
            else SAM_CHECKPOINTS_PAGE)
    how = (
        f"This project does not download weights: download the official checkpoint yourself "
        f"from {page} ({official}; {SAM_CHECKPOINT_FILES[config.sam_model]} for "
        f"{config.sam_model}) and pass its path "
        f"with --sam-checkpoint PATH (and --sam-model if it is not vit_h)."
    )
    if config.sam_checkpoint is None:
        raise SamCheckpointError(f"No SAM checkpoint given. {how}")
    path = Path(config.sam_checkpoint).expanduser()
    if not path.is_file():
        state = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise SamCheckpointError(f"SAM checkpoint {path} {state}. {how}")
    return path


def _import_optional(module: str, model: str, extra: str, how: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MaskRunError(f"--sam-model {model} needs the optional extra {extra}: {how}. ({err})") from err


def sam_package(sam_model: str) -> Any:
    """The package that builds ``sam_model``: ``segment_anything`` (vit_h/l/b), MobileSAM's ``mobile_sam`` (vit_t,
    the extra ``mobilesam``) or Meta's ``sam2`` (sam2.1_hiera_*, the extra ``sam2``)."""
    if sam_model in SAM2_CONFIGS:
        return _import_optional("sam2.build_sam", sam_model, "sam2", SAM2_INSTALL)
    if sam_model == "vit_t":
        return _import_optional("mobile_sam", sam_model, "mobilesam",
                                "pip install -e '.[mobilesam]' (it installs mobilesam-mirror and timm)")
    import segment_anything

    return segment_anything


def load_sam(config: SamMaskConfig, checkpoint: Path) -> Any:
    """The model ``config.sam_model`` with the weights of ``checkpoint`` (on the CPU); a checkpoint of another model
    type is a MaskRunError that names both."""
    package = sam_package(config.sam_model)
    try:
        if config.sam_model in SAM2_CONFIGS:
            return package.build_sam2(SAM2_CONFIGS[config.sam_model], ckpt_path=str(checkpoint), device="cpu")
        return package.sam_model_registry[config.sam_model](checkpoint=str(checkpoint))
    except (RuntimeError, KeyError) as err:
        raise MaskRunError(
            f"SAM checkpoint {checkpoint} does not fit the model type {config.sam_model} (the official file for "
            f"{config.sam_model} is {SAM_CHECKPOINT_FILES[config.sam_model]}); set --sam-model to the "
            f"checkpoint's type. ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from err


def generator_class(sam_model: str) -> Tuple[Any, Any]:
    """(the automatic mask generator class, the model class it takes) of ``sam_model``'s package."""
    if sam_model in SAM2_CONFIGS:
        generator = _import_optional("sam2.automatic_mask_generator", sam_model, "sam2", SAM2_INSTALL)
        base = _import_optional("sam2.modeling.sam2_base", sam_model, "sam2", SAM2_INSTALL)
        return generator.SAM2AutomaticMaskGenerator, base.SAM2Base
    package = sam_package(sam_model)
    return package.SamAutomaticMaskGenerator, package.modeling.Sam


def build_sam_generator(config: SamMaskConfig, sam: Any = None) -> Any:
    """The model's automatic mask generator with ``config``'s settings, on ``config.device``: this project's fast
    one for the SAM 1 family when ``config.generator`` is "fast", else the model package's own (segment-anything's,
    MobileSAM's or SAM 2's).

    Args:
        config: the settings; ``config.sam_checkpoint`` is loaded as ``config.sam_model`` unless ``sam`` is given.
        sam: an already-built model of ``config.sam_model``'s package to use instead of loading the checkpoint (it is
            moved to ``config.device`` in place).
    """
    checkpoint = checked_checkpoint(config) if sam is None else None
    Generator, Model = generator_class(config.sam_model)
    if config.generator == "fast" and config.sam_model not in SAM2_CONFIGS:
        from clickgs_ns.data.sam_fast import FastSamMaskGenerator as Generator  # imports torch: only when used
    if sam is None:
        sam = load_sam(config, checkpoint)
    elif not isinstance(sam, Model):
        raise TypeError(f"sam must be a {Model.__module__}.{Model.__name__}, got {type(sam).__name__}")
    sam = sam.to(resolve_device(config.device)).eval()
    return Generator(
        sam,
        points_per_side=config.points_per_side,
        points_per_batch=config.points_per_batch,
        pred_iou_thresh=config.pred_iou_thresh,
        stability_score_thresh=config.stability_score_thresh,
        min_mask_region_area=config.min_mask_region_area,
        **GENERATOR_FIXED_SETTINGS,
    )
