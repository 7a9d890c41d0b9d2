"""Procedural scenes with ground truth, for tests, the demo and benchmarks (``clickgs synth``).

``generate_scene(SynthConfig(), OUT)`` builds a few objects on a ground plane out of 3D Gaussians, each object made
of parts with clearly different colours and shapes, renders them from a ring of cameras and writes a nerfstudio
dataset with ground-truth object (coarse) and part (fine) maps, SAM-like masks and evaluation prompts. Everything is
deterministic given ``SynthConfig.seed``.

The modules, in the order the data flows:

- ``config``: ``SynthConfig``, the scene families (``FAMILY_PRESETS``, ``family_config``, ``room_config``) and the
  fixed dev and test scenes (``test_set_configs``).
- ``catalogues``: object templates made of parts made of surface primitives.
- ``geometry``: objects placed on the ground and sampled as labelled Gaussians (``build_gaussians``).
- ``views``: ring cameras, rendered images, ground-truth maps and silhouettes (``render_views``).
- ``mask_noise``: SAM-like two-level masks derived from a view's ground truth (``sam_like_id_maps``).
- ``prompts``: click prompts with target views and masks (``make_prompts``).
- ``writer``: the dataset on disk (``generate_scene``).

Kept import-light: the names of ``config`` (plain Python) are imported here, the others (numpy, torch, the
rasterizer) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from clickgs_ns.synth.config import (
    CLUTTER_PRESET,
    FAMILY_PRESETS,
    GARDEN_PRESET,
    GROUND_COLOR,
    MASK_NOISE_MODELS,
    PROMPT_EVERY_PART,
    PROMPT_TARGET_MASKS,
    ROOM_PRESET,
    TEST_SET_SCENES,
    TEST_SET_SEEDS,
    SynthConfig,
    family_config,
    room_config,
    scaled_to_objects,
    test_set_configs,
)

if TYPE_CHECKING:
    from clickgs_ns.synth.catalogues import CATALOGUES, SMALL_CATALOGUE, catalogue_templates
    from clickgs_ns.synth.geometry import SynthGaussians, build_gaussians
    from clickgs_ns.synth.mask_noise import background_patches, sam_like_id_maps, voronoi_patches
    from clickgs_ns.synth.prompts import click_pixel, make_prompts, target_mask_kind, train_view_indices
    from clickgs_ns.synth.views import intrinsics, render_silhouettes, render_views, ring_camera_to_worlds
    from clickgs_ns.synth.writer import SynthScene, generate_scene, write_prompts

_LAZY = {
    "CATALOGUES": "catalogues", "SMALL_CATALOGUE": "catalogues", "catalogue_templates": "catalogues",
    "SynthGaussians": "geometry", "build_gaussians": "geometry",
    "intrinsics": "views", "render_silhouettes": "views", "render_views": "views", "ring_camera_to_worlds": "views",
    "background_patches": "mask_noise", "sam_like_id_maps": "mask_noise", "voronoi_patches": "mask_noise",
    "click_pixel": "prompts", "make_prompts": "prompts", "target_mask_kind": "prompts",
    "train_view_indices": "prompts",
    "SynthScene": "writer", "generate_scene": "writer", "write_prompts": "writer",
}
"""The public names of the modules that import numpy or torch -> their module, imported on first use."""

__all__ = [
    "CLUTTER_PRESET", "FAMILY_PRESETS", "GARDEN_PRESET", "GROUND_COLOR", "MASK_NOISE_MODELS", "PROMPT_EVERY_PART",
    "PROMPT_TARGET_MASKS", "ROOM_PRESET", "TEST_SET_SCENES", "TEST_SET_SEEDS", "SynthConfig", "family_config",
    "room_config", "scaled_to_objects", "test_set_configs",
    "CATALOGUES", "SMALL_CATALOGUE", "catalogue_templates",
    "SynthGaussians", "build_gaussians",
    "intrinsics", "render_silhouettes", "render_views", "ring_camera_to_worlds",
    "background_patches", "sam_like_id_maps", "voronoi_patches",
    "click_pixel", "make_prompts", "target_mask_kind", "train_view_indices",
    "SynthScene", "generate_scene", "write_prompts",
]


def __getattr__(name: str):
    """The names of ``_LAZY``, imported from their module on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
