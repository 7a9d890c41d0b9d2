"""clickgs_ns: Click-Gaussian (ECCV 2024) as a nerfstudio method plugin.

The package is laid out in the direction the data flows, each layer importing only those before it (checked by
``lint-imports``): ``io`` (files) -> ``render`` -> ``data`` (SAM masks, datamanager) -> ``method`` (model,
losses, GFL, pipeline) -> ``segment`` (selection, export, evaluation) -> ``app`` (API, CLI, viewer).

Kept import-light: nerfstudio imports every plugin's config when any ``ns-*`` command starts.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: Modules of the flat layout (before 0.2), as their runs' config.yml files name them -> where they live now.
#: ``clickgs_ns.pipeline`` maps to the pipeline the preset trains now (with the viewer's click controls).
LEGACY_MODULES = {
    "clickgs_ns.io_utils": "clickgs_ns.io.atomic",
    "clickgs_ns.ply": "clickgs_ns.io.ply",
    "clickgs_ns.masks": "clickgs_ns.io.id_maps",
    "clickgs_ns.splat_io": "clickgs_ns.app.legacy",
    "clickgs_ns.rendering": "clickgs_ns.render",
    "clickgs_ns.sam_masks": "clickgs_ns.data.sam_masks",
    "clickgs_ns.datamanager": "clickgs_ns.data.datamanager",
    "clickgs_ns.synth": "clickgs_ns.data.synth",
    "clickgs_ns.model": "clickgs_ns.method.model",
    "clickgs_ns.losses": "clickgs_ns.method.losses",
    "clickgs_ns.gfl": "clickgs_ns.method.gfl",
    "clickgs_ns.lifting": "clickgs_ns.method.lifting",
    "clickgs_ns.pipeline": "clickgs_ns.app.legacy",
    "clickgs_ns.trainer": "clickgs_ns.method.trainer",
    "clickgs_ns.schedulers": "clickgs_ns.method.schedulers",
    "clickgs_ns.selection": "clickgs_ns.segment.selection",
    "clickgs_ns.export": "clickgs_ns.segment.export",
    "clickgs_ns.evaluate": "clickgs_ns.segment.evaluate",
    "clickgs_ns.feature_maps": "clickgs_ns.segment.feature_maps",
    "clickgs_ns.scene": "clickgs_ns.app.legacy",
    "clickgs_ns.api": "clickgs_ns.app.api",
    "clickgs_ns.cli": "clickgs_ns.app.cli",
    "clickgs_ns.viewer": "clickgs_ns.app.viewer",
}


class _LegacyModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as the module that replaced it, so that runs saved before the package had
    layers (their config.yml names classes by module path) still load."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in LEGACY_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module) -> None:
        pass


if not any(isinstance(finder, _LegacyModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_LegacyModuleFinder())


def __getattr__(name: str):
    """``clickgs_ns.load`` (the scripting API, ``clickgs_ns.app.api.load``), imported on first use."""
    if name == "load":
        from clickgs_ns.app.api import load

        return load
    raise AttributeError(f"module 'clickgs_ns' has no attribute {name!r}")
