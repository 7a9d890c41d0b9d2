"""Names of the flat layout (before 0.2) that no single new module holds, for runs and scripts that use them
(``clickgs_ns.LEGACY_MODULES``): ``clickgs_ns.pipeline``, ``clickgs_ns.splat_io`` and ``clickgs_ns.scene``."""

from clickgs_ns.app.viewer import ClickGaussianViewerPipeline as ClickGaussianPipeline
from clickgs_ns.app.viewer import ClickGaussianViewerPipelineConfig as ClickGaussianPipelineConfig
from clickgs_ns.io.splat_files import SplatParams, load_splat_checkpoint, load_splat_ply
from clickgs_ns.method.pipeline import SELECTION_ENV
from clickgs_ns.render.transform import transform_splat
from clickgs_ns.segment.run import LoadedRun as ClickScene
from clickgs_ns.segment.run import load_run as load

__all__ = ["ClickGaussianPipeline", "ClickGaussianPipelineConfig", "ClickScene", "SELECTION_ENV", "SplatParams", "load",
           "load_splat_checkpoint", "load_splat_ply", "transform_splat"]
