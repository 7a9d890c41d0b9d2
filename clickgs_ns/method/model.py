"""ClickGaussianModel: splatfacto with a two-level feature per Gaussian, trained in two stages.

Steps ``[0, feature_start_step)`` are splatfacto's RGB stage (densification included). From
``feature_start_step`` on, geometry, opacity and colour are frozen and only ``gauss_params["click_features"]``
([N, 24]: coarse = first 12 channels, fine = all 24) is optimised with the losses of ``clickgs_ns.method.losses``.
Starting from an existing splat (``init_ply`` or ``init_checkpoint``) skips the RGB stage.

Rendering goes through ``clickgs_ns.render.rasterize``: gsplat on CUDA, the project's torch rasterizer on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Protocol, Tuple, Type, Union

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.models.base_model import Model
from nerfstudio.models.splatfacto import (
    SplatfactoModel,
    SplatfactoModelConfig,
    RGB2SH,
    num_sh_bases,
    random_quat_tensor,
)
from nerfstudio.utils.colors import get_color
from nerfstudio.utils.colormaps import apply_pca_colormap
from nerfstudio.utils.rich_utils import CONSOLE

from clickgs_ns.io.splat_files import SPLAT_KEYS
from clickgs_ns.levels import LEVELS, fine_only_channels, level_channels, level_dim, level_state, state_name
from clickgs_ns.method.gfl import GFLConfig, assign_candidates, gfl_level_losses, gfl_loss
from clickgs_ns.method.lifting import (
    LabellingConfig,
    MergedCandidates,
    SparseVotes,
    add_votes,
    coalesce_votes,
    feature_convergence,
    fill_unlabelled,
    gaussian_votes,
    labels_per_pass,
    member_label_maps,
    pixel_label_maps,
    vote_labels,
)
from clickgs_ns.method.losses import FeatureLossConfig, build_knn_index, feature_stage_losses, nearest_neighbours
from clickgs_ns.render import eval_sh, get_viewmat, rasterize, rasterize_label_weights, splat_inputs, uses_gsplat
from clickgs_ns.render.cameras import view_inputs

LABEL_BUFFERS = tuple(state_name(level, state) for state in ("labels", "segment_labels") for level in LEVELS)
"""Per-Gaussian [N] long buffers: the candidate a click selects each Gaussian by, per level, and its segment in
"segment everything" (-1: none)."""

class DisplayHook(Protocol):
    """What a viewer may change in an eval render (``get_outputs``); the viewer layer implements it
    (``clickgs_ns.app.viewer_state.ClickViewerState``) and the model never imports it."""

    def filter_params(self, params: Dict[str, Tensor], crop_ids: Optional[Tensor]
                      ) -> Tuple[Dict[str, Tensor], Optional[Tensor]]:
        """The rows to draw ([M] of each parameter) and their model indices [M] (None: all rows)."""

    def empty_outputs(self, model: Any, camera: Cameras) -> Dict[str, Tensor]:
        """Outputs when no Gaussian is left to draw."""

    def recolor(self, colors: Tensor, rows: Optional[Tensor]) -> Tensor:
        """RGB [M, 3] to draw instead of ``colors`` [M, 3]."""

    def finish_outputs(self, camera: Cameras, outputs: Dict[str, Any]) -> Dict[str, Any]:
        """The render's outputs as the viewer shows them."""


def views_by_size(cameras: Cameras, batch_size: int, max_pixels: Optional[int] = None) -> List[Tensor]:
    """Indices of ``cameras`` in batches [B] long of at most ``batch_size`` views of one image size, and of at most
    ``max_pixels`` pixels in all (but at least one view)."""
    sizes = torch.stack([cameras.height.view(-1), cameras.width.view(-1)], dim=-1)  # [V, 2]
    batches: List[Tensor] = []
    for size in sizes.unique(dim=0):
        views = max(1, int(batch_size))
        if max_pixels is not None:
            views = max(1, min(views, int(max_pixels) // int(size[0] * size[1])))
        batches.extend(torch.nonzero((sizes == size).all(dim=-1)).view(-1).split(views))
    return batches


def init_features(num_gaussians: int, feature_dim: int, coarse_dim: int, std: float,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Initial per-Gaussian features [N, feature_dim]: N(0, std^2), then each half normalised to unit length."""
    features = torch.randn(num_gaussians, feature_dim, generator=generator) * std
    coarse = torch.nn.functional.normalize(level_channels(features, "coarse", coarse_dim), dim=-1)
    fine_only = torch.nn.functional.normalize(fine_only_channels(features, coarse_dim), dim=-1)
    return torch.cat([coarse, fine_only], dim=-1)


def seed_splat(means: Tensor, seed_rgb: Optional[Tensor], sh_degree: int) -> Dict[str, Tensor]:
    """Splatfacto's initial splat from seed points ``means`` [N, 3] with colours ``seed_rgb`` [N, 3] in [0, 1]
    (None: random): isotropic scales of the mean distance to the 3 nearest neighbours, random rotations, opacity
    0.1. Features are left to ``ClickGaussianModel.set_gaussians``."""
    num_points = means.shape[0]
    distances, _ = nearest_neighbours(means, 3)  # [N, 3]
    avg_dist = distances.mean(dim=-1, keepdim=True).clamp_min(1e-7)  # [N, 1]
    features_dc = torch.rand(num_points, 3)
    if seed_rgb is not None:
        features_dc = RGB2SH(seed_rgb) if sh_degree > 0 else torch.logit(seed_rgb, eps=1e-10)
    return {
        "means": means,
        "scales": torch.log(avg_dist.repeat(1, 3)),
        "quats": random_quat_tensor(num_points),
        "features_dc": features_dc,
        "features_rest": torch.zeros(num_points, num_sh_bases(sh_degree) - 1, 3),
        "opacities": torch.logit(0.1 * torch.ones(num_points, 1)),
    }


def densification_strategy(config: "ClickGaussianModelConfig", num_train_views: int) -> Any:
    """gsplat's ``DefaultStrategy`` with splatfacto's densification settings of ``config``; refinement stops by the
    feature stage (the splat is frozen from then on)."""
    from gsplat.strategy import DefaultStrategy

    return DefaultStrategy(
        prune_opa=config.cull_alpha_thresh,
        grow_grad2d=config.densify_grad_thresh,
        grow_scale3d=config.densify_size_thresh,
        grow_scale2d=config.split_screen_size,
        prune_scale3d=config.cull_scale_thresh,
        prune_scale2d=config.cull_screen_size,
        refine_scale2d_stop_iter=config.stop_screen_size_at,
        refine_start_iter=config.warmup_length,
        refine_stop_iter=min(config.stop_split_at, config.feature_start_step),
        reset_every=config.reset_alpha_every * config.refine_every,
        refine_every=config.refine_every,
        pause_refine_after_reset=num_train_views + config.refine_every,
        absgrad=config.use_absgrad,
        revised_opacity=False,
        verbose=True,
    )


def make_lpips() -> Optional[torch.nn.Module]:
    """LPIPS for eval metrics when its AlexNet weights are already in the torch hub cache, else None.

    splatfacto builds LPIPS unconditionally, which downloads weights; this plugin must work offline.
    """
    from torchvision.models import AlexNet_Weights

    weights_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.DEFAULT.url).name
    if not weights_file.exists():
        return None
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(normalize=True)


@dataclass
class ClickGaussianModelConfig(SplatfactoModelConfig):
    """Splatfacto plus Click-Gaussian's two-level features (docs/method.md, section 1)."""

    _target: Type = field(default_factory=lambda: ClickGaussianModel)
    feature_dim: int = 24
    """Channels of each Gaussian's feature; the fine feature is all of them."""
    coarse_dim: int = 12
    """Leading channels that form the coarse feature."""
    feature_init_std: float = 0.1
    """Std of the initial features, before each half is normalised."""
    rgb_stage_steps: int = 30000
    """Length of the RGB (splatfacto) stage when no existing splat is given."""
    feature_stage_steps: int = 3000
    """Length of the feature stage."""
    init_ply: Optional[Path] = None
    """A standard 3DGS .ply in the dataset's coordinate frame: skips the RGB stage."""
    init_checkpoint: Optional[Path] = None
    """A splatfacto (or click-gaussian) checkpoint .ckpt of this dataset: skips the RGB stage."""
    render_backend: Literal["auto", "torch", "gsplat"] = "auto"
    """auto: gsplat on CUDA, the project's torch rasterizer on CPU."""
    losses: FeatureLossConfig = field(default_factory=FeatureLossConfig)
    """Feature-stage losses (docs/method.md, section 3)."""
    gfl: GFLConfig = field(default_factory=GFLConfig)
    """Global Feature-guided Learning (docs/method.md, section 4)."""
    labelling: LabellingConfig = field(default_factory=LabellingConfig)
    """The per-Gaussian labels that clicks select, computed at the end of training (clickgs_ns/method/lifting.py)."""

    @property
    def feature_start_step(self) -> int:
        """First step of the feature stage."""
        return 0 if (self.init_ply is not None or self.init_checkpoint is not None) else self.rgb_stage_steps

    @property
    def gfl_start_step(self) -> int:
        """First step (of the whole run) at which GFL candidates are computed and its loss is on."""
        return self.feature_start_step + self.gfl.start_step

    @property
    def total_steps(self) -> int:
        """Steps of the whole run, both stages."""
        return self.feature_start_step + self.feature_stage_steps


class ClickGaussianModel(SplatfactoModel):
    """Splatfacto with per-Gaussian two-level features for click segmentation."""

    config: ClickGaussianModelConfig

    def populate_modules(self) -> None:
        # splatfacto's populate_modules hard-codes .cuda() and downloads LPIPS weights: this one does neither.
        # (Like splatfacto's, it does not call Model.populate_modules: a ray collider has no use here.)
        cfg = self.config
        if not 0 < cfg.coarse_dim < cfg.feature_dim:
            raise ValueError(f"coarse_dim ({cfg.coarse_dim}) must lie strictly between 0 and feature_dim "
                             f"({cfg.feature_dim})")
        if self.seed_points is not None and not cfg.random_init:
            means = self.seed_points[0].float()
            seed_rgb = self.seed_points[1].float() / 255 if self.seed_points[1].shape[0] > 0 else None
        else:
            means = (torch.rand((cfg.num_random, 3)) - 0.5) * cfg.random_scale
            seed_rgb = None
        self.gauss_params = torch.nn.ParameterDict()
        self.set_gaussians(seed_splat(means, seed_rgb, cfg.sh_degree))
        self.camera_optimizer = cfg.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")

        from pytorch_msssim import SSIM
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self.lpips = make_lpips()
        self.step = 0
        self.crop_box = None
        if cfg.background_color == "random":
            self.background_color = torch.tensor([0.1490, 0.1647, 0.2157])  # viser's background, as splatfacto
        else:
            self.background_color = get_color(cfg.background_color)
        if cfg.use_bilateral_grid:
            from nerfstudio.model_components.lib_bilagrid import BilateralGrid

            self.bil_grids = BilateralGrid(
                num=self.num_train_data, grid_X=cfg.grid_shape[0], grid_Y=cfg.grid_shape[1], grid_W=cfg.grid_shape[2]
            )
        self.strategy = densification_strategy(cfg, self.num_train_data)
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self.spatial_knn: Optional[Tensor] = None  # [M, K + 1], built at the first feature step
        # GFL global candidates per level (unit vectors) and each Gaussian's candidate id: saved in checkpoints.
        for level in LEVELS:
            self.register_buffer(state_name(level, "candidates"),
                                 torch.zeros(0, level_dim(level, cfg.coarse_dim, cfg.feature_dim)))
        # Whether the labels are those the end of training computes (``labelling.method``), not GFL's interim ones.
        self.register_buffer("labels_final", torch.tensor(False))
        self.display_hook: Optional[Callable[[], Optional[DisplayHook]]] = None
        """Filled by the viewer layer (``clickgs_ns.app.viewer.attach_viewer_controls``): returns the viewer's
        display state for an eval render, or None for a plain render."""

    # ----------------------------------------------------------------------------------------------- state
    @property
    def click_features(self) -> Tensor:
        """Per-Gaussian click features [N, feature_dim] (the first ``coarse_dim`` channels: the coarse level); not
        to be confused with the SH colour parameters ``features_dc`` / ``features_rest``."""
        return self.gauss_params["click_features"]

    @property
    def in_feature_stage(self) -> bool:
        return self.step >= self.config.feature_start_step

    def level_features(self, features: Tensor, level: str) -> Tensor:
        """The channels [..., D_l] of per-Gaussian or rendered ``features`` [..., feature_dim] that ``level`` reads
        (``levels.level_channels`` with this model's ``coarse_dim``)."""
        return level_channels(features, level, self.config.coarse_dim)

    @property
    def has_candidates(self) -> bool:
        """Whether GFL has produced global candidates at either level."""
        return self.coarse_candidates.shape[0] > 0 or self.fine_candidates.shape[0] > 0

    def set_candidates(self, coarse_candidates: Tensor, fine_candidates: Tensor) -> None:
        """Replace the global candidates [Cc, coarse_dim], [Cf, feature_dim] and relabel every Gaussian."""
        self.coarse_candidates = coarse_candidates.detach().float().to(self.device)
        self.fine_candidates = fine_candidates.detach().float().to(self.device)
        self.update_labels()
        self.labels_final = torch.tensor(False, device=self.device)

    @torch.no_grad()
    def update_labels(self) -> None:
        """Each Gaussian's nearest global candidate at each level (-1 without candidates)."""
        features = self.click_features.detach()
        for level in LEVELS:
            labels = assign_candidates(self.level_features(features, level), level_state(self, level, "candidates"))[0]
            setattr(self, state_name(level, "labels"), labels)
            setattr(self, state_name(level, "segment_labels"), labels)

    def feature_convergence(self, min_cosine: float = 0.9) -> Dict[str, float]:
        """Per level, the opacity-weighted share of Gaussians whose own feature has cosine above ``min_cosine``
        with its nearest global candidate (nan without candidates)."""
        weights = torch.sigmoid(self.opacities.detach()).reshape(-1)
        features = self.click_features.detach()
        return {level: feature_convergence(self.level_features(features, level), level_state(self, level, "candidates"),
                                           weights, min_cosine) for level in LEVELS}

    def label_votes(self, cameras: Cameras, label_maps: Tensor, num_labels: int) -> SparseVotes:
        """Rendering weight that each Gaussian gives to the pixels of each label in ``cameras`` (one size), for label
        maps [B, H, W] or [B, H, W, K] long in [0, num_labels): one forward pass of the torch rasterizer
        (``rasterize_label_weights``), or gradients through gsplat's kernels (``lifting.gaussian_votes``)."""
        label_maps = label_maps.to(self.device)
        if uses_gsplat(self.config.render_backend, self.means):
            channels = labels_per_pass(label_maps.shape[0] * label_maps.shape[1] * label_maps.shape[2],
                                       self.config.labelling.vote_pass_megabytes)
            return gaussian_votes(lambda colors: self.render_colors(cameras, colors)[0], label_maps, num_labels,
                                  self.num_points, channels)
        gaussians, labels, weights = rasterize_label_weights(
            label_maps=label_maps, rasterize_mode=self.config.rasterize_mode, **self.frozen_splat_view(cameras))
        return coalesce_votes(gaussians * num_labels + labels, weights, self.num_points, num_labels)

    @torch.no_grad()
    def candidate_label_maps(self, cameras: Cameras, segment_ids: Optional[Tensor] = None,
                             merged: Optional[Dict[str, MergedCandidates]] = None) -> Tensor:
        """Per-pixel labels [B, H, W, 5] of ``cameras`` (one size), in the label ranges of ``label_columns``:
        coarse (cosine >= ``min_cosine``), coarse confident (>= ``confident_cosine``), fine, fine confident (the
        last label of each range means "none", ``pixel_label_maps``), and "seen" (one label, every pixel: what
        each Gaussian weighs in the views, ``lifting.hardly_seen``). -1: no vote.

        Args:
            segment_ids: optional [B, H, W, 2] integer, per level the SAM segment ids (-1 where no mask covers the
                pixel): uncovered pixels vote "none", or nothing where the view's masks missed their candidate
                (``missed_segment_votes``).
            merged: optional, per level the model's candidates with the clusters they were merged from
                (``lifting.MergedCandidates``): with ``labelling.confident_near_cluster``, a pixel is confident for
                the candidate of its nearest cluster (``member_label_maps``).
        """
        from clickgs_ns.method.lifting import missed_segment_votes  # here: see unoccluded_weights

        cfg = self.config.labelling
        feature_maps, alphas = self.render_features(cameras)  # [B, H, W, D], [B, H, W, 1]
        columns = self.label_columns()
        maps = []
        for index, level in enumerate(LEVELS):
            level_ids = None if segment_ids is None else segment_ids[..., index]
            candidates = level_state(self, level, "candidates")
            abstain = level_ids is not None and cfg.abstain_where_missed
            covered = None if level_ids is None or abstain else level_ids >= 0
            level_features = self.level_features(feature_maps, level)
            for confident in (False, True):
                if confident and merged is not None and cfg.confident_near_cluster:
                    labels = member_label_maps(level_features, alphas, merged[level], cfg.min_alpha,
                                               cfg.confident_cosine, covered)
                else:
                    labels = pixel_label_maps(level_features, alphas, candidates, cfg.min_alpha,
                                              cfg.confident_cosine if confident else cfg.min_cosine, covered)
                if abstain:
                    labels = missed_segment_votes(labels, level_ids, candidates.shape[0])
                maps.append(torch.where(labels >= 0, labels + columns[len(maps)], -1))
        maps.append(torch.full_like(maps[0], columns[len(maps)]))  # "seen"
        return torch.stack(maps, dim=-1)

    def label_columns(self) -> List[int]:
        """Start of each label range of ``candidate_label_maps`` (coarse, coarse confident, fine, fine confident,
        seen), then the total: each level's ranges hold its candidates plus "none"; "seen" holds one label."""
        num_coarse, num_fine = self.coarse_candidates.shape[0] + 1, self.fine_candidates.shape[0] + 1
        fine_end = 2 * num_coarse + 2 * num_fine
        return [0, num_coarse, 2 * num_coarse, 2 * num_coarse + num_fine, fine_end, fine_end + 1]

    def unoccluded_weights(self, cameras: Cameras) -> Tensor:
        """[N] float64: what each Gaussian would weigh in ``cameras`` (any sizes) with nothing in front of it
        (``lifting.unoccluded_weights``), summed over them."""
        from clickgs_ns.method import lifting  # here: see lift_labels

        cfg = self.config.labelling
        total = torch.zeros(self.num_points, dtype=torch.float64, device=self.device)  # [N]
        for batch in views_by_size(cameras, cfg.render_batch_views, cfg.render_batch_pixels):
            total += lifting.unoccluded_weights(**self.frozen_splat_view(cameras[batch]))
        return total

    def lift_labels(self, cameras: Cameras, segment_ids: Optional[Callable[[Tensor], Tensor]] = None,
                    merged: Optional[Dict[str, MergedCandidates]] = None) -> Dict[str, int]:
        """Label every Gaussian with the candidate that receives most of its rendered weight over ``cameras`` (the
        training views; clickgs_ns/method/lifting.py). Returns the number of labelled Gaussians per level.

        Args:
            segment_ids: optional, maps camera indices [B] to [B, H, W, 2] integer, per level the SAM segment ids
                (-1 where no mask covers the pixel; what those vote: ``labelling.use_mask_coverage``).
            merged: optional, per level the model's candidates with the clusters they were merged from
                (``candidate_label_maps``).
        """
        from clickgs_ns.method.lifting import hardly_seen, nearest_seen, neighbour_labels  # here: see unoccluded_weights

        cfg = self.config.labelling
        columns = self.label_columns()
        votes: Optional[SparseVotes] = None
        for batch in views_by_size(cameras, cfg.render_batch_views, cfg.render_batch_pixels):
            ids = segment_ids(batch) if (segment_ids is not None and cfg.use_mask_coverage) else None
            batch_votes = self.label_votes(cameras[batch], self.candidate_label_maps(cameras[batch], ids, merged),
                                           columns[-1])
            votes = add_votes(votes, batch_votes)
        assert votes is not None, "no training views"
        hidden = hardly_seen(votes, columns[4], columns[5], self.unoccluded_weights(cameras), cfg.min_visibility)
        neighbours = nearest_seen(self.means, hidden, cfg.hidden_neighbours)
        coarse, coarse_confident, fine, fine_confident = (
            neighbour_labels(vote_labels(votes, first, stop, cfg.min_weight), hidden, neighbours)
            for first, stop in zip(columns[:4], columns[1:5]))
        self.coarse_labels, self.fine_labels = coarse_confident, fine_confident
        self.coarse_segment_labels = fill_unlabelled(self.coarse_labels, coarse)
        self.fine_segment_labels = fill_unlabelled(self.fine_labels, fine)
        return {"coarse": int((self.coarse_labels >= 0).sum()), "fine": int((self.fine_labels >= 0).sum())}

    def set_gaussians(self, params: Dict[str, Tensor], labels: Optional[Dict[str, Tensor]] = None) -> None:
        """Make ``params`` (the six splatfacto entries, optionally ``click_features``) the splat: the one place that
        creates the Gaussians' parameters. SH bands up to the model's degree are padded with zeros, missing or
        misshaped click features initialised (``initial_click_features``); the label buffers (``LABEL_BUFFERS``)
        take ``labels`` or -1.

        Only before the optimizers are built, or on a loaded model (no optimizer follows new parameters).
        """
        missing = [k for k in SPLAT_KEYS if k not in params]
        if missing:
            raise ValueError(f"The splat to start from lacks {missing}")
        num_points = params["means"].shape[0]
        params["features_rest"] = self._padded_sh(params["features_rest"].reshape(num_points, -1, 3))
        features = params.get("click_features")
        if features is None or features.shape != (num_points, self.config.feature_dim):
            params["click_features"] = self.initial_click_features(num_points)
        device = next((param.device for param in self.gauss_params.values()), torch.device("cpu"))
        for name in SPLAT_KEYS + ("click_features",):
            self.gauss_params[name] = Parameter(params[name].detach().float().to(device))
        for name in LABEL_BUFFERS:
            value = (labels or {}).get(name)
            value = torch.full((num_points,), -1, dtype=torch.long) if value is None else value.long()
            self.register_buffer(name, value.to(device))
        self.spatial_knn = None

    def initial_click_features(self, num_points: int) -> Tensor:
        """Click features [num_points, feature_dim] for Gaussians that have none (``init_features``)."""
        return init_features(num_points, self.config.feature_dim, self.config.coarse_dim, self.config.feature_init_std)

    def _padded_sh(self, rest: Tensor) -> Tensor:
        """``features_rest`` [N, K' - 1, 3] padded with zeros to the model's SH degree [N, K - 1, 3]."""
        num_rest = num_sh_bases(self.config.sh_degree) - 1
        if rest.shape[1] > num_rest:
            raise ValueError(f"The splat to start from has SH degree {round((rest.shape[1] + 1) ** 0.5) - 1}, above "
                             f"the model's {self.config.sh_degree}: set --pipeline.model.sh-degree to match.")
        return torch.cat([rest, rest.new_zeros(rest.shape[0], num_rest - rest.shape[1], 3)], dim=1)

    def load_state_dict(self, dict, **kwargs):  # type: ignore  # noqa: A002
        """Resize the Gaussians in place to the checkpoint's count, then load.

        splatfacto swaps in new Parameter objects here, which leaves the already built optimizers stepping
        stale tensors when a run resumes (nerfstudio #3554); changing ``.data`` keeps every reference valid.
        """
        self.step = self.config.total_steps
        num_points = dict["gauss_params.means"].shape[0]
        for name, param in self.gauss_params.items():
            param.data = torch.zeros((num_points,) + param.shape[1:], device=param.device, dtype=param.dtype)
        if "gauss_params.click_features" not in dict:  # a plain splatfacto checkpoint
            CONSOLE.log("Checkpoint has no click-gaussian features: initialising them.")
            dict["gauss_params.click_features"] = self.initial_click_features(num_points)
        dict.setdefault("labels_final", torch.tensor(True))  # a splatfacto checkpoint: no labels left to lift
        for name in ("coarse_candidates", "fine_candidates") + LABEL_BUFFERS:
            buffer = getattr(self, name)
            if name in dict:  # buffers take the checkpoint's sizes
                setattr(self, name, torch.zeros_like(dict[name], dtype=buffer.dtype, device=buffer.device))
            elif name.endswith("labels"):
                dict[name] = torch.full((num_points,), -1, dtype=torch.long)
            else:
                dict[name] = buffer.new_zeros((0,) + buffer.shape[1:])
        self.spatial_knn = None
        return Model.load_state_dict(self, dict, **kwargs)

    def get_gaussian_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_gaussian_param_groups()
        groups["click_features"] = [self.gauss_params["click_features"]]
        return groups

    def _get_downscale_factor(self) -> int:
        if self.training and self.in_feature_stage:
            return 1  # the id maps are at the training resolution
        return super()._get_downscale_factor()

    def step_post_backward(self, step: int) -> None:
        if self.in_feature_stage:
            return  # geometry is frozen: no densification
        super().step_post_backward(step)

    # ---------------------------------------------------------------------------------------------- render
    def _sh_degree_to_use(self) -> int:
        if self.in_feature_stage:
            return self.config.sh_degree
        return min(self.step // self.config.sh_degree_interval, self.config.sh_degree)

    def _colors_for_camera(self, features_dc: Tensor, features_rest: Tensor, means: Tensor,
                           camera_to_world: Tensor) -> Tensor:
        """View-dependent RGB [N, 3] of each Gaussian seen from the camera centre of ``camera_to_world`` [1, 3, 4]."""
        if self.config.sh_degree == 0:
            return torch.sigmoid(features_dc)
        coeffs = torch.cat([features_dc[:, None, :], features_rest], dim=1)  # [N, K, 3]
        degree = self._sh_degree_to_use()
        dirs = torch.nn.functional.normalize(means - camera_to_world[0, :3, 3], dim=-1)  # [N, 3]
        return torch.clamp_min(eval_sh(degree, dirs, coeffs[:, : (degree + 1) ** 2]) + 0.5, 0.0)

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:
        """Render one camera [1]. RGB stage: splatfacto's outputs. Feature stage (training): the rendered features
        [H, W, feature_dim] of the frozen splat. Eval: RGB, depth and both levels' feature maps in one call, as the
        viewer's display mode (``display_hook``) has them."""
        if not isinstance(camera, Cameras):
            CONSOLE.log("ClickGaussianModel.get_outputs called without a camera")
            return {}
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"
        feature_training = self.training and self.in_feature_stage
        rgb_training = self.training and not feature_training
        camera_to_world = (
            self.camera_optimizer.apply_to_camera(camera) if rgb_training else camera.camera_to_worlds
        )  # [1, 3, 4]
        # The viewer's display mode (clickgs_ns.app.viewer_state): None until the viewer is used, and never in training.
        display = None if self.training or self.display_hook is None else self.display_hook()
        params, rows = self._params_to_draw(display)
        if params is None or params["means"].shape[0] == 0:
            if display is not None and params is not None:
                return display.empty_outputs(self, camera)
            return self.get_empty_outputs(int(camera.width.item()), int(camera.height.item()), self.background_color)
        if feature_training:  # frozen splat: only the features receive gradients
            params = {name: (value if name == "click_features" else value.detach()) for name, value in params.items()}
            colors = params["click_features"]  # [N, 24]: every feature channel in one rasterizer call
        else:
            colors = self._colors_for_camera(params["features_dc"], params["features_rest"], params["means"],
                                             camera_to_world.detach())  # [N, 3]
            if display is not None:  # highlight / segment colours
                colors = display.recolor(colors, rows)
            if not self.training:
                colors = torch.cat([colors, params["click_features"]], dim=-1)  # [N, 3 + 24]
        render_mode = "RGB" if feature_training else (
            "RGB+ED" if (not self.training or self.config.output_depth_during_training) else "RGB")
        render, alpha = self._rasterize(params, colors, camera, camera_to_world, render_mode, rgb_training)
        if feature_training:
            return {"features": render, "accumulation": alpha}
        outputs = self._rgb_outputs(render, alpha, camera, render_mode, rgb_training)
        if display is not None:  # PCA display, and the feature maps kept for clicks
            outputs = display.finish_outputs(camera, outputs)
        return outputs

    def _params_to_draw(self, display: Optional[DisplayHook]
                        ) -> Tuple[Optional[Dict[str, Tensor]], Optional[Tensor]]:
        """The Gaussians an eval render draws: all, or those inside the crop box (None when it holds none), then
        the display mode's filter. Returns (params, rows): rows [M] are their model indices (None: all rows)."""
        params = {name: self.gauss_params[name] for name in SPLAT_KEYS + ("click_features",)}
        crop_ids = None
        if self.crop_box is not None and not self.training:
            crop_ids = self.crop_box.within(params["means"]).squeeze()
            if crop_ids.sum() == 0:
                return None, None
            params = {name: value[crop_ids] for name, value in params.items()}
        if display is None:
            return params, None
        return display.filter_params(params, crop_ids)

    def _rasterize(self, params: Dict[str, Tensor], colors: Tensor, camera: Cameras, camera_to_world: Tensor,
                   render_mode: str, rgb_training: bool) -> Tuple[Tensor, Tensor]:
        """``colors`` [N, X] of the Gaussians ``params`` seen by ``camera`` [1] at the current downscale:
        render [H, W, X(+1 depth)] and alpha [H, W, 1]; in the RGB stage, the densification statistics too."""
        scale_factor = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / scale_factor)
        K = camera.get_intrinsics_matrices().to(self.device)
        width, height = int(camera.width.item()), int(camera.height.item())
        self.last_size = (height, width)
        camera.rescale_output_resolution(scale_factor)
        render, alpha, info = rasterize(
            **splat_inputs(params["means"], params["quats"], params["scales"], params["opacities"]),
            colors=colors,
            viewmats=get_viewmat(camera_to_world),
            Ks=K,
            width=width,
            height=height,
            near_plane=0.01,
            far_plane=1e10,
            render_mode=render_mode,
            absgrad=self.strategy.absgrad and rgb_training,
            rasterize_mode=self.config.rasterize_mode,
            backend=self.config.render_backend,
        )
        if rgb_training:
            self.info = info
            self.strategy.step_pre_backward(self.gauss_params, self.optimizers, self.strategy_state, self.step, info)
        return render[0], alpha[0]

    def _rgb_outputs(self, render: Tensor, alpha: Tensor, camera: Cameras, render_mode: str,
                     rgb_training: bool) -> Dict[str, Union[Tensor, List]]:
        """splatfacto's outputs of a render [H, W, 3 (+ features) (+ depth)]: rgb over the background, depth,
        accumulation; in eval also ``coarse_features`` [H, W, coarse_dim] and ``fine_features`` [H, W, D]."""
        height, width = alpha.shape[:2]
        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and rgb_training:
            if camera.metadata is not None and "cam_idx" in camera.metadata:
                rgb = self._apply_bilateral_grid(rgb[None], camera.metadata["cam_idx"], height, width)[0]
        outputs: Dict[str, Union[Tensor, List]] = {"rgb": rgb, "accumulation": alpha}
        if render_mode == "RGB+ED":
            depth = render[..., -1:]
            outputs["depth"] = torch.where(alpha > 0, depth, depth.detach().max())
        else:
            outputs["depth"] = None  # type: ignore
        if not self.training:
            features = render[..., 3 : 3 + self.config.feature_dim]
            for level in LEVELS:
                outputs[f"{level}_features"] = self.level_features(features, level)
            background = background.expand(height, width, 3)
        outputs["background"] = background
        return outputs

    @torch.no_grad()
    def render_features(self, cameras: Cameras) -> Tuple[Tensor, Tensor]:
        """Feature maps [C, H, W, feature_dim] and alphas [C, H, W, 1] of C cameras of one size, in one
        rasterizer call (no crop box, no selection: the whole splat)."""
        return self.render_colors(cameras, self.click_features)

    def render_colors(self, cameras: Cameras, colors: Tensor) -> Tuple[Tensor, Tensor]:
        """Any per-Gaussian colours [N, X] rendered by C cameras of one size: [C, H, W, X] and alphas [C, H, W, 1];
        the frozen splat (no gradient to its geometry), differentiable in ``colors``."""
        return rasterize(colors=colors, rasterize_mode=self.config.rasterize_mode, backend=self.config.render_backend,
                         **self.frozen_splat_view(cameras))[:2]

    def frozen_splat_view(self, cameras: Cameras) -> Dict[str, Any]:
        """The rasterizer's inputs for the frozen splat (activated, detached) seen by C cameras of one size: means,
        quats, scales, opacities, viewmats, Ks, width, height."""
        return dict(**splat_inputs(self.means.detach(), self.quats.detach(), self.scales.detach(),
                                   self.opacities.detach()), **view_inputs(cameras, self.device))

    # ---------------------------------------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        if "features" not in outputs:
            return super().get_metrics_dict(outputs, batch)
        return {"gaussian_count": self.num_points}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        if "features" not in outputs:
            return super().get_loss_dict(outputs, batch, metrics_dict)
        for key in ("coarse_ids", "fine_ids"):
            if key not in batch:
                raise KeyError(f"The batch has no '{key}': train click-gaussian with its datamanager, which attaches "
                               "the SAM id maps (clickgs_ns.data.datamanager.ClickGaussianDataManagerConfig).")
        rendered = outputs["features"]
        if batch["coarse_ids"].shape != rendered.shape[:2]:
            raise ValueError(f"Id maps {tuple(batch['coarse_ids'].shape)} do not match the rendered features "
                             f"{tuple(rendered.shape[:2])}")
        if self.spatial_knn is None:
            self.spatial_knn = build_knn_index(
                self.means.detach().cpu(), self.config.losses.spatial_num_neighbours,
                max_points=self.config.losses.spatial_num_gaussians,
            ).to(self.device)
        loss_dict, terms = feature_stage_losses(
            rendered, batch["coarse_ids"], batch["fine_ids"], self.click_features, self.spatial_knn, self.config.losses,
            self.config.coarse_dim,
        )
        if self.gfl_active:
            gfl_terms = gfl_level_losses(
                self.click_features, self.coarse_candidates, self.fine_candidates, self.config.coarse_dim,
                self.config.losses.coarse_margin, self.config.losses.fine_margin, self.config.gfl.positive_threshold,
                max_gaussians=self.config.gfl.loss_num_gaussians or None,
            )
            loss_dict["gfl_loss"] = gfl_loss(gfl_terms, self.config.gfl.loss_weight)
            terms.update(gfl_terms)
        if metrics_dict is not None:
            metrics_dict.update({name: value.detach() for name, value in terms.items()})
        return loss_dict

    @property
    def gfl_active(self) -> bool:
        """GFL's loss is on: enabled, past its start step, and with candidates to learn from."""
        return self.config.gfl.enabled and self.step >= self.config.gfl_start_step and self.has_candidates

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt_rgb = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        predicted_rgb = outputs["rgb"]
        gt_chw = torch.moveaxis(gt_rgb, -1, 0)[None, ...]
        predicted_chw = torch.moveaxis(predicted_rgb, -1, 0)[None, ...]
        metrics_dict = {
            "psnr": float(self.psnr(gt_chw, predicted_chw).item()),
            "ssim": float(self.ssim(gt_chw, predicted_chw)),
        }
        if self.lpips is not None:
            metrics_dict["lpips"] = float(self.lpips(gt_chw, predicted_chw))
        images_dict = {"img": torch.cat([gt_rgb, predicted_rgb], dim=1)}
        if "coarse_features" in outputs:
            images_dict["features_pca"] = torch.cat(
                [apply_pca_colormap(outputs["coarse_features"]), apply_pca_colormap(outputs["fine_features"])], dim=1
            )
        return metrics_dict, images_dict
