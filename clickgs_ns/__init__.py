"""clickgs_ns: Click-Gaussian (ECCV 2024) as a nerfstudio method plugin.

The package is laid out in the direction the data flows, each layer importing only those before it (checked by
``lint-imports``): ``levels`` (the two feature levels) -> ``io`` (files) -> ``render`` (rasterizer, cameras,
lens) -> ``data`` (SAM masks, datamanager) -> ``method`` (model, losses, GFL, pipeline) -> ``segment`` (selection,
export, evaluation) | ``synth`` (synthetic scenes) -> ``app`` (API, CLI, viewer). docs/architecture.md walks
through them.

Kept import-light: nerfstudio imports every plugin's config when any ``ns-*`` command starts.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    """``clickgs_ns.load`` (the scripting API, ``clickgs_ns.app.api.load``), imported on first use."""
    if name == "load":
        from clickgs_ns.app.api import load

        return load
    raise AttributeError(f"module 'clickgs_ns' has no attribute {name!r}")
