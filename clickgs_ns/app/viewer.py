"""Click segmentation in nerfstudio's viewer (``ns-viewer --load-config CONFIG``, or ``ns-train`` with the viewer):
the preset's pipeline, whose model carries the click controls.

``ClickGaussianViewerPipeline`` is the click-gaussian pipeline (``clickgs_ns.method.pipeline``) with
``attach_viewer_controls`` applied to its model: the controls (``viewer_controls.ClickViewerControls``, a GUI
over ``viewer_state.ClickViewerState``, which clicks through ``clickgs_ns.segment.selection.Segmenter``) become
``model.click_segmentation``, where nerfstudio's viewer finds them, and the model's eval renders ask them for the
display mode through ``model.display_hook``. A run's config.yml names the config class of this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Type

from clickgs_ns.app.viewer_controls import ClickViewerControls
from clickgs_ns.method.pipeline import ClickGaussianPipeline, ClickGaussianPipelineConfig
from clickgs_ns.segment.selection import SelectionConfig


def attach_viewer_controls(model: Any, config: Optional[SelectionConfig] = None) -> ClickViewerControls:
    """Give ``model`` the click controls: nerfstudio's viewer finds them at ``model.click_segmentation``, and
    the model's eval renders ask them for the display mode through ``model.display_hook``."""
    controls = ClickViewerControls(model, config)
    model.click_segmentation = controls
    model.display_hook = controls.render_state
    return controls


class ClickGaussianViewerPipeline(ClickGaussianPipeline):
    """The click-gaussian pipeline with the viewer's click controls on its model (the preset's pipeline)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        attach_viewer_controls(self.model)


@dataclass
class ClickGaussianViewerPipelineConfig(ClickGaussianPipelineConfig):
    """``ClickGaussianPipelineConfig`` whose pipeline carries the viewer's click controls."""

    _target: Type = field(default_factory=lambda: ClickGaussianViewerPipeline)
