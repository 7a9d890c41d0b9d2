"""The dataset writer: ``generate_scene(SynthConfig(), OUT)`` builds, renders and writes a synthetic scene.

It renders the Gaussians from a ring of cameras and writes a nerfstudio dataset to OUT::

    transforms.json            OPENCV intrinsics, camera-to-world poses (OpenGL), ply_file_path: sparse_pc.ply
    images/frame_00000.png     8-bit RGB renders on a plain background
    sparse_pc.ply              seed points for splatfacto (Gaussian centres with their colours)
    scene.ply                  the Gaussians as a standard 3DGS ply, extra int properties object_id, part_id
    scene_labels.npz           int32 object_id [N], part_id [N], part_to_object [P]; object_names, part_names
    gt/frame_00000.npz         ground-truth int32 maps coarse (object id) and fine (part id) [H, W], -1 = background
    clickgs_masks/frame_00000.npz  SAM-like masks derived from the ground truth (see ``mask_noise.sam_like_id_maps``)
    prompts.json               click prompts with ground-truth target masks for ``clickgs eval`` (``make_prompts``)
    prompts/*.png              the prompts' target masks (255 = the segment)
    scene.json                 metadata: the config, names, counts

Everything is deterministic given ``SynthConfig.seed``: three numpy Generators spawned from one SeedSequence, for
the geometry, the seed points and the masks (one more spawned per view); the rendering itself uses no randomness.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from clickgs_ns.io.atomic import atomic_path, atomic_write_text
from clickgs_ns.io.id_maps import mask_path_for_image, write_id_maps
from clickgs_ns.io.ply import write_gaussian_ply, write_point_cloud_ply
from clickgs_ns.synth.config import SynthConfig
from clickgs_ns.synth.geometry import SynthGaussians, build_gaussians
from clickgs_ns.synth.mask_noise import sam_like_id_maps
from clickgs_ns.synth.prompts import make_prompts, prompt_masks, train_view_indices
from clickgs_ns.synth.views import intrinsics, render_views, ring_camera_to_worlds

GENERATOR = "clickgs_ns.synth"
"""The generator's name in scene.json."""
SH_C0 = 0.28209479177387814
"""Degree-0 SH basis constant: rgb = 0.5 + SH_C0 * features_dc."""


@dataclass
class SynthScene:
    """What ``generate_scene`` wrote."""

    root: Path
    """The dataset folder."""
    transforms_path: Path
    scene_ply_path: Path
    labels_path: Path
    sparse_pc_path: Path
    metadata_path: Path
    image_paths: List[Path]
    gt_paths: List[Path]
    mask_paths: List[Path]
    num_gaussians: int
    num_objects: int
    """Objects including the ground."""
    num_parts: int
    object_names: List[str]
    part_names: List[str]
    prompts_path: Path
    """prompts.json: click prompts with ground-truth target masks (format: ``clickgs_ns.segment.evaluate``)."""
    num_prompts: int = 0


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` as a compressed .npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _save_png(path: Path, image: np.ndarray) -> None:
    """Write ``image`` ([H, W] or [H, W, 3] uint8) as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def write_prompts(gaussians: SynthGaussians, camera_to_worlds: np.ndarray, gt_coarse: np.ndarray,
                  gt_fine: np.ndarray, image_files: Sequence[str], config: SynthConfig,
                  out_dir: Path) -> Tuple[Path, int]:
    """Write ``prompts.json`` and ``prompts/*.png`` into ``out_dir`` from the ground truth; returns the path of
    prompts.json and the number of prompts.

    Args:
        camera_to_worlds: [C, 4, 4]; gt_coarse, gt_fine: [C, H, W] int32 object and part ids (-1 = background).
    """
    segments = prompt_masks(gaussians, camera_to_worlds, gt_coarse, gt_fine, config)
    click_views = train_view_indices(len(image_files), config.prompt_train_fraction)
    prompts, masks = make_prompts(segments, image_files, click_views, config)
    for path, mask in masks.items():
        _save_png(out_dir / path, mask)
    prompts_path = out_dir / "prompts.json"
    atomic_write_text(prompts_path, json.dumps(prompts, indent=1))
    return prompts_path, len(prompts)


def write_gaussians(gaussians: SynthGaussians, out_dir: Path) -> Tuple[Path, Path]:
    """Write the Gaussians as ``scene.ply`` (with their object and part ids) and their labels as
    ``scene_labels.npz``; returns both paths."""
    features_dc = (gaussians.rgb - 0.5) / SH_C0
    scene_ply_path = out_dir / "scene.ply"
    write_gaussian_ply(
        scene_ply_path, gaussians.means, gaussians.scales, gaussians.quats, gaussians.opacities, features_dc,
        None, extra={"object_id": gaussians.object_id, "part_id": gaussians.part_id},
    )
    labels_path = out_dir / "scene_labels.npz"
    _save_npz(
        labels_path, object_id=gaussians.object_id, part_id=gaussians.part_id,
        part_to_object=gaussians.part_to_object, object_names=np.array(gaussians.object_names),
        part_names=np.array(gaussians.part_names),
    )
    return scene_ply_path, labels_path


def write_seed_points(gaussians: SynthGaussians, config: SynthConfig, rng: np.random.Generator,
                      out_dir: Path) -> Tuple[Path, int]:
    """Write ``sparse_pc.ply``: ``num_seed_points`` Gaussian centres drawn without repeats (kept in Gaussian order)
    with their colours; returns its path and the number of points."""
    n = len(gaussians.means)
    seed_index = np.sort(rng.choice(n, size=min(config.num_seed_points, n), replace=False))
    sparse_pc_path = out_dir / "sparse_pc.ply"
    write_point_cloud_ply(
        sparse_pc_path, gaussians.means[seed_index], (gaussians.rgb[seed_index] * 255).round().astype(np.uint8)
    )
    return sparse_pc_path, int(len(seed_index))


def write_views(images: np.ndarray, gt_coarse: np.ndarray, gt_fine: np.ndarray, camera_to_worlds: np.ndarray,
                config: SynthConfig, masks_seq: np.random.SeedSequence,
                out_dir: Path) -> Tuple[List[Path], List[Path], List[Path], List[Dict]]:
    """Write every view's image, ground truth and SAM-like masks (each view's from its own Generator, spawned
    from ``masks_seq``).

    Args:
        images: [C, H, W, 3] uint8; gt_coarse, gt_fine: [C, H, W] int32; camera_to_worlds: [C, 4, 4].

    Returns:
        image_paths, gt_paths, mask_paths, and the views' transforms.json frames.
    """
    image_paths, gt_paths, mask_paths, frames = [], [], [], []
    view_rngs = [np.random.default_rng(s) for s in masks_seq.spawn(len(camera_to_worlds))]
    for index, (image, coarse, fine, view_rng) in enumerate(zip(images, gt_coarse, gt_fine, view_rngs)):
        name = f"frame_{index:05d}"
        image_path = out_dir / "images" / f"{name}.png"
        _save_png(image_path, image)
        gt_path = out_dir / "gt" / f"{name}.npz"
        _save_npz(gt_path, coarse=coarse, fine=fine)
        mask_path = mask_path_for_image(image_path, out_dir)
        write_id_maps(mask_path, *sam_like_id_maps(coarse, fine, config, view_rng))
        image_paths.append(image_path)
        gt_paths.append(gt_path)
        mask_paths.append(mask_path)
        frames.append({
            "file_path": f"images/{name}.png",
            "transform_matrix": [[round(float(v), 8) for v in row] for row in camera_to_worlds[index]],
        })
    return image_paths, gt_paths, mask_paths, frames


def write_transforms(frames: List[Dict], config: SynthConfig, out_dir: Path) -> Path:
    """Write ``transforms.json``: the intrinsics, the seed points' file and the ``frames``; returns its path."""
    fx, fy, cx, cy = intrinsics(config)
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": config.image_width, "h": config.image_height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "ply_file_path": "sparse_pc.ply",
        "frames": frames,
    }
    transforms_path = out_dir / "transforms.json"
    atomic_write_text(transforms_path, json.dumps(transforms, indent=2))
    return transforms_path


def scene_metadata(config: SynthConfig, gaussians: SynthGaussians, num_views: int, num_seed_points: int,
                   num_prompts: int) -> Dict:
    """scene.json's content: the generator, the config, names and counts."""
    return {
        "generator": GENERATOR,
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "object_names": gaussians.object_names,
        "part_names": gaussians.part_names,
        "part_to_object": gaussians.part_to_object.tolist(),
        "num_gaussians": len(gaussians.means),
        "num_objects": len(gaussians.object_names),
        "num_parts": len(gaussians.part_names),
        "num_views": num_views,
        "num_seed_points": num_seed_points,
        "num_prompts": num_prompts,
        "gaussians_per_part": np.bincount(gaussians.part_id, minlength=len(gaussians.part_names)).tolist(),
    }


def generate_scene(config: SynthConfig, out_dir: Path) -> SynthScene:
    """Build, render and write a synthetic scene as a nerfstudio dataset in ``out_dir`` (see the module doc).

    Files of an earlier scene in ``out_dir`` are overwritten; frames beyond this config's ``num_views`` are not
    removed (use a fresh folder).
    """
    out_dir = Path(out_dir)
    geometry_seq, seed_points_seq, masks_seq = np.random.SeedSequence(config.seed).spawn(3)
    gaussians = build_gaussians(config, np.random.default_rng(geometry_seq))
    scene_ply_path, labels_path = write_gaussians(gaussians, out_dir)
    sparse_pc_path, num_seed_points = write_seed_points(gaussians, config, np.random.default_rng(seed_points_seq),
                                                        out_dir)
    camera_to_worlds = ring_camera_to_worlds(config)
    images, gt_coarse, gt_fine = render_views(gaussians, camera_to_worlds, config)
    image_paths, gt_paths, mask_paths, frames = write_views(images, gt_coarse, gt_fine, camera_to_worlds, config,
                                                            masks_seq, out_dir)
    transforms_path = write_transforms(frames, config, out_dir)
    prompts_path, num_prompts = write_prompts(gaussians, camera_to_worlds, gt_coarse, gt_fine,
                                              [frame["file_path"] for frame in frames], config, out_dir)
    metadata = scene_metadata(config, gaussians, len(camera_to_worlds), num_seed_points, num_prompts)
    metadata_path = out_dir / "scene.json"
    atomic_write_text(metadata_path, json.dumps(metadata, indent=2))
    n = len(gaussians.means)
    return SynthScene(
        root=out_dir, transforms_path=transforms_path, scene_ply_path=scene_ply_path, labels_path=labels_path,
        sparse_pc_path=sparse_pc_path, metadata_path=metadata_path, image_paths=image_paths, gt_paths=gt_paths,
        mask_paths=mask_paths, num_gaussians=n, num_objects=len(gaussians.object_names),
        num_parts=len(gaussians.part_names), object_names=list(gaussians.object_names),
        part_names=list(gaussians.part_names), prompts_path=prompts_path, num_prompts=num_prompts,
    )
