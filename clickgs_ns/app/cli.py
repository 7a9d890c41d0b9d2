"""The ``clickgs`` command line: thin layers over the project's modules, one subcommand each."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, List, Literal, NoReturn, Optional, Sequence, Set, Union

import tyro
from typing_extensions import Annotated

from clickgs_ns.data.mask_cache import parse_shard
from clickgs_ns.data.mask_errors import MaskRunError, SamCheckpointError
from clickgs_ns.data.sam_masks import (
    MaskRunReport,
    SamMaskConfig,
    compute_masks,
    dataset_image_paths,
    failed_images_message,
)
from clickgs_ns.io.id_maps import MASKS_DIRNAME, MaskFileError
from clickgs_ns.io.memory import keep_freed_memory
from clickgs_ns.levels import LEVELS, Level, check_level
from clickgs_ns.segment.evaluate import EvalConfig
from clickgs_ns.segment.selection import check_mode
from clickgs_ns.segment.views import pixel_xy
from clickgs_ns.synth import SynthConfig


def options_given(argv: Sequence[str]) -> Set[str]:
    """The field names of the ``--option`` tokens in ``argv`` ("--num-views", "--num_views=24", "--no-ground-plane"
    -> num_views, ground_plane)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            names.update({name, name[3:]} if name.startswith("no_") else {name})
    return names


@dataclass
class Synth:
    """Generate the procedural test scene: a nerfstudio dataset with SAM-like masks, a 3DGS .ply and ground truth."""

    out_dir: tyro.conf.Positional[Path]
    """Folder to write the dataset into."""
    preset: Literal["tabletop", "room", "garden", "clutter"] = "tabletop"
    """Scene family (``synth.FAMILY_PRESETS``): "tabletop" (a few objects on a plain ground, the demo's), "room"
    (textured floor and walls, seven objects with thin parts and occlusions, 40 views, noisy masks with view-local
    floor segments, held-out targets: the accuracy benchmark's), "garden" (outdoor objects with thin legs, poles and
    stems, small objects, masks whose coarse segments split along parts and merge with image neighbours, prompts on
    every visible part) or "clutter" (both catalogues, crowded, small objects). Options given on the command line
    override the preset's values."""
    scene: Annotated[SynthConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SynthConfig)

    def resolved_config(self, given: Collection[str] = ()) -> SynthConfig:
        """``scene`` with the preset's values for every field left at its default, except the fields ``given`` on the
        command line (``--num-views 24`` keeps 24 although it is SynthConfig's default and the preset's is 40)."""
        import dataclasses

        from clickgs_ns.synth import FAMILY_PRESETS

        defaults = SynthConfig()
        return dataclasses.replace(self.scene, **{  # type: ignore[arg-type]
            name: value for name, value in FAMILY_PRESETS[self.preset].items()
            if name not in given and getattr(self.scene, name) == getattr(defaults, name)
        })

    def main(self) -> None:
        import sys

        from clickgs_ns.synth import generate_scene
        from nerfstudio.utils.rich_utils import CONSOLE

        scene = generate_scene(self.resolved_config(options_given(sys.argv[1:])), self.out_dir)
        CONSOLE.print(f"[bold green]Wrote the synthetic scene to {self.out_dir}[/]: {scene}")


@dataclass
class Masks:
    """Compute the SAM masks of a dataset's images once, into DATA/clickgs_masks/ (skips valid cached files).

    Shard over processes or GPUs with --shard K/N; rerun the same command to complete an interrupted run.
    """

    data: Path
    """A nerfstudio dataset folder, or its transforms.json."""
    sam: Annotated[SamMaskConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SamMaskConfig)
    """SAM model and automatic mask generator settings."""
    shard: str = "0/1"
    """K/N: compute only the images i with i % N == K (in sorted order), e.g. 0/2 and 1/2 in two processes."""

    def main(self) -> MaskRunReport:
        from rich.console import Console

        console = Console(stderr=True)
        keep_freed_memory()  # this process only makes masks: reuse freed memory (io.memory)
        try:
            shard = parse_shard(self.shard)
            data_root, images = dataset_image_paths(self.data)
            report = compute_masks(data_root, images, self.sam, shard=shard, progress=True)
        except (MaskRunError, MaskFileError, SamCheckpointError) as err:
            raise SystemExit(f"clickgs masks: {err}") from err
        except KeyboardInterrupt:
            raise SystemExit(
                "clickgs masks: interrupted. Every mask file written is complete; run the same command to continue."
            ) from None
        console.print(
            f"[bold green]Masks of {report.images} images (shard {self.shard}) in {data_root / MASKS_DIRNAME}[/]: "
            f"{report.computed} computed ({report.recomputed_corrupt} replaced unreadable files, "
            f"{report.recomputed_stale} out of date), {report.skipped} already cached, {report.empty} without any "
            f"segment, in {report.seconds:.1f} s."
        )
        if report.warnings:
            console.print(f"[yellow]{len(report.warnings)} warning(s); see above.[/]")
        if report.failed:
            raise SystemExit(failed_images_message(report.failed, "clickgs masks"))
        return report


@dataclass
class RenderFeatures:
    """Render every training view of a run as [RGB | coarse-feature PCA | fine-feature PCA] PNGs."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    output_dir: Path = Path("feature_maps")
    """Folder for the PNGs (one per training view)."""

    def main(self) -> None:
        from clickgs_ns.segment.feature_maps import fit_pca_basis, pca_colors, png_paths, save_png, side_by_side
        from nerfstudio.utils.rich_utils import CONSOLE

        run = load_scene(self.load_config).run
        features = run.model.click_features.detach()
        coarse_basis, fine_basis = (fit_pca_basis(run.model.level_features(features, level)) for level in LEVELS)
        for index, path in enumerate(png_paths(run.image_paths, self.output_dir)):
            outputs = run.render(index)
            alpha = outputs["accumulation"]
            picture = side_by_side([
                outputs["rgb"],
                pca_colors(outputs["coarse_features"], coarse_basis, alpha),
                pca_colors(outputs["fine_features"], fine_basis, alpha),
            ])
            save_png(picture, path)
        CONSOLE.print(f"[bold green]Wrote {len(run.image_paths)} feature maps to {self.output_dir}[/]")


# ------------------------------------------------------------------------------------------------ segment / export
def fail(message: str) -> NoReturn:
    """Print an error (what is wrong and the way forward) and exit with status 2."""
    from nerfstudio.utils.rich_utils import CONSOLE

    CONSOLE.print(f"[bold red]Error:[/] {message}")
    raise SystemExit(2)


def load_scene(config_path: Path):
    """``clickgs_ns.app.api.load`` for the clickgs commands: errors as messages, ``$CLICKGS_SELECTION`` (meant for
    ns-export) ignored with a note, and the load time shown."""
    from clickgs_ns.app.api import ClickGaussianScene
    from clickgs_ns.method.pipeline import SELECTION_ENV
    from clickgs_ns.segment.run import load_run
    from nerfstudio.utils.rich_utils import CONSOLE

    def note(value: str) -> None:
        CONSOLE.print(f"[yellow]Ignoring {SELECTION_ENV}={value}: it is read by ns-export; clickgs commands take "
                      "--selection instead.[/]")

    start = time.perf_counter()
    try:
        scene = ClickGaussianScene(load_run(config_path, on_ignored_selection=note))
    except (FileNotFoundError, TypeError) as err:
        fail(str(err))
    CONSOLE.print(f"Loaded {config_path} (step {scene.run.step}, {scene.num_gaussians} Gaussians, "
                  f"{scene.num_views} training views) in {time.perf_counter() - start:.1f} s")
    return scene


@dataclass
class ClickSpec:
    """One click of ``clickgs segment``: a view (training ``camera_index`` or ``image`` path of either split), a
    full-resolution pixel, a level and a mode."""

    xy: tuple
    level: str
    mode: str = "add"
    camera_index: Optional[int] = None
    image: Optional[str] = None
    token: Optional[str] = field(default=None, compare=False)
    """The view as --click gave it (an integer token may also be a photo's name)."""

    @property
    def where(self) -> str:
        view = f"view {self.camera_index}" if self.image is None else self.image
        return f"{view} ({self.xy[0]:g}, {self.xy[1]:g}) {self.level} {self.mode}"


CLICK_METAVAR = "IMAGE|CAMERA_INDEX X Y LEVEL [add|subtract]"


def parse_click_args(clicks: List[List[str]]) -> List[ClickSpec]:
    """``--click IMAGE|CAMERA_INDEX X Y LEVEL [MODE]`` token lists as ClickSpecs: the view is a photo's name, or a
    training view's index when it is an integer; errors name the click and the token."""
    specs = []
    for number, tokens in enumerate(clicks):
        shown = " ".join(tokens)
        if len(tokens) not in (4, 5):
            fail(f"--click {shown}: expected {CLICK_METAVAR}, e.g. --click frame_00012.png 420 310 coarse")
        try:
            x, y = float(tokens[1]), float(tokens[2])
        except ValueError:
            fail(f"--click {shown}: X and Y must be numbers (a pixel of the full-resolution photo)")
        if not (math.isfinite(x) and math.isfinite(y)):
            fail(f"--click {shown}: X and Y must be finite")
        try:  # a plain integer is a training view's index, anything else a photo's name
            camera_index, image = int(tokens[0]), None
        except ValueError:
            camera_index, image = None, tokens[0]
        spec = ClickSpec((x, y), tokens[3], tokens[4] if len(tokens) == 5 else "add", camera_index=camera_index,
                         image=image, token=tokens[0])
        check_click(spec, f"--click {shown}")
        specs.append(spec)
    return specs


def check_click(spec: ClickSpec, where: str) -> None:
    try:
        check_level(spec.level)
        check_mode(spec.mode)
    except ValueError as err:
        fail(f"{where}: {err}")


def load_clicks_file(path: Path) -> List[ClickSpec]:
    """A clicks JSON file: a list of {"image": "images/NAME.png" or "camera_index": i, "xy": [x, y], "level":
    "coarse"|"fine", "mode": "add"|"subtract"} (mode optional, default add)."""
    path = Path(path)
    if not path.is_file():
        fail(f"Clicks file {path} does not exist.")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fail(f"{path} is not valid JSON in UTF-8 ({err}).")
    if not isinstance(entries, list) or not entries:
        fail(f"{path} must hold a non-empty JSON list of clicks.")
    specs = []
    for index, entry in enumerate(entries):
        where = f"{path}, click {index}"
        if not isinstance(entry, dict):
            fail(f"{where}: must be an object, got {entry!r}")
        try:
            xy = pixel_xy(entry.get("xy"))
        except ValueError as err:
            fail(f"{where}: {err}")
        has_image, has_index = "image" in entry, "camera_index" in entry
        if has_image == has_index:
            fail(f"{where}: give exactly one of 'image' (a path as in transforms.json) and 'camera_index'")
        if has_index and (not isinstance(entry["camera_index"], int) or isinstance(entry["camera_index"], bool)):
            fail(f"{where}: 'camera_index' must be an integer, got {entry['camera_index']!r}")
        if has_image and not isinstance(entry["image"], str):
            fail(f"{where}: 'image' must be a string, got {entry['image']!r}")
        spec = ClickSpec(xy, entry.get("level", "coarse"), entry.get("mode", "add"),
                         camera_index=entry.get("camera_index"), image=entry.get("image"))
        check_click(spec, where)
        specs.append(spec)
    return specs


def click_target(scene: Any, spec: ClickSpec) -> Any:
    """The view (``View``) that a click names, its pixel checked; errors name the click and the way forward."""
    from clickgs_ns.segment.views import check_pixel

    views = scene.views
    if spec.image is not None:
        try:
            view = views.find(spec.image)
        except ValueError as err:
            fail(f"Click {spec.where}: {err}. `clickgs views --load-config {scene.run.config_path}` lists every "
                 "view.")
    else:
        if not 0 <= int(spec.camera_index) < scene.num_views:
            fail(f"Click {spec.where}: camera_index out of range, the run has {scene.num_views} training views "
                 "(0 .. {})".format(scene.num_views - 1))
        view = scene.train_view(spec.camera_index)
        named = photo_named(views, spec.token) if spec.token is not None else None
        if named is not None and named.key != view.key:
            fail(f"Click {spec.where}: {spec.token} names the photo {named.key} and is the index of training view "
                 f"{spec.camera_index} ({view.key}): give the photo's name instead ({named.key} or {view.key}).")
    try:
        check_pixel(view, *spec.xy)
    except ValueError as err:
        fail(f"Click {spec.where}: {err}")
    return view


def photo_named(views: Any, name: str) -> Any:
    """The view whose photo ``name`` names (``ViewIndex.find``), None when none does (or several)."""
    try:
        return views.find(name)
    except ValueError:
        return None


def apply_click(scene: Any, spec: ClickSpec, view: Any = None) -> Any:
    """Make one click on a loaded scene (``ClickGaussianScene``) in ``view`` (default: ``click_target``'s); errors
    name the click."""
    from clickgs_ns.segment.views import click_view

    view = click_target(scene, spec) if view is None else view
    try:
        return click_view(scene.segmenter, view, spec.xy[0], spec.xy[1], spec.level, spec.mode)
    except ValueError as err:
        fail(f"Click {spec.where}: {err}")


@dataclass
class Segment:
    """Click to segment a trained run by script and save the selection ([N] bool .npy) for `clickgs export`."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    output: Path
    """The selection .npy to write."""
    click: Annotated[List[List[str]], tyro.conf.UseAppendAction,
                     tyro.conf.arg(metavar=CLICK_METAVAR)] = field(default_factory=list)
    """One click: the photo (its name as `clickgs views` lists them, e.g. frame_00012.png or images/frame_00012.png,
    train or eval view; an integer is the index of a training view), pixel x y of the full-resolution image, level
    (coarse or fine), and optionally the mode (add, the default, or subtract). Repeat for more clicks, in order."""
    clicks: Optional[Path] = None
    """Instead of --click: a JSON list of {"image": "images/NAME.png" (train or eval view) or "camera_index": i,
    "xy": [x, y], "level": "coarse"|"fine", "mode": "add"|"subtract"}."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        if bool(self.click) == (self.clicks is not None):
            fail(f"Give the clicks either as --click {CLICK_METAVAR} (repeatable) or as --clicks FILE.json, not "
                 "both and not neither.")
        specs = parse_click_args(self.click) if self.click else load_clicks_file(self.clicks)  # type: ignore[arg-type]
        if self.output.suffix != ".npy":
            fail(f"--output {self.output}: a selection is saved as a .npy file (e.g. selection.npy)")
        scene = load_scene(self.load_config)
        targets = [click_target(scene, spec) for spec in specs]  # every click checked before the first renders
        for spec, view in zip(specs, targets):
            result = apply_click(scene, spec, view)
            CONSOLE.print(f"{spec.where}: {result.message} Selection: {result.total_selected} Gaussians. "
                          f"[dim]({1000 * result.seconds:.1f} ms, of which rendering {1000 * result.render_seconds:.1f}"
                          " ms)[/]")
        selection = scene.selection
        start = time.perf_counter()
        scene.save_selection(self.output)
        count = int(selection.sum())
        colour = "green" if count else "yellow"
        CONSOLE.print(f"[bold {colour}]Saved a selection of {count} of {scene.num_gaussians} Gaussians to "
                      f"{self.output}[/] ({1000 * (time.perf_counter() - start):.1f} ms)"
                      + ("" if count else ": nothing is selected, so `clickgs export --selection` will refuse it."))


@dataclass
class Views:
    """List the views of a run, train and eval: each photo's name (what `clickgs segment --click` takes), split,
    index in its split (a training view's index works in --click too) and full-resolution size (the pixels that
    clicks are given in)."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    json: bool = False
    """Print the views as a JSON list of {"image", "split", "index", "width", "height"} (and nothing else on
    stdout), for scripts."""

    def main(self) -> None:
        import contextlib
        import sys

        from nerfstudio.utils.rich_utils import CONSOLE

        with contextlib.redirect_stdout(sys.stderr) if self.json else contextlib.nullcontext():
            scene = load_scene(self.load_config)  # its messages kept off stdout for --json
        summaries = [view.summary() for view in scene.views.views.values()]
        if self.json:
            print(json.dumps(summaries, indent=1))
            return
        CONSOLE.print(views_table(summaries))
        CONSOLE.print("Click one with --click IMAGE X Y LEVEL (X, Y: a pixel of the full-resolution photo), or a "
                      "training view with --click INDEX X Y LEVEL.")


def views_table(summaries: List[dict]) -> Any:
    """``View.summary`` rows as a rich Table."""
    from rich.table import Table

    counts = {split: sum(row["split"] == split for row in summaries) for split in ("train", "eval")}
    table = Table(title=f"{len(summaries)} views ({counts['train']} train, {counts['eval']} eval)")
    for column, justify in (("image", "left"), ("split", "left"), ("index", "right"), ("size (WxH)", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in summaries:
        table.add_row(row["image"], row["split"], str(row["index"]), f"{row['width']}x{row['height']}")
    return table


@dataclass
class Export:
    """Export Gaussians of a run as standard 3DGS .ply files in the dataset's frame, with a label per Gaussian:
    a saved selection (--selection), everything but it (--selection --invert: the scene with the object removed),
    one file per segment (--segment-everything LEVEL), the whole splat labelled by segment (--segment-everything
    LEVEL --single-file), or the whole splat."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    output: Path
    """The .ply to write; a folder with --segment-everything (unless --single-file)."""
    selection: Optional[Path] = None
    """A selection .npy from `clickgs segment` or the viewer (bool [N] or Gaussian indices)."""
    invert: bool = False
    """With --selection: export every Gaussian except the selected ones."""
    segment_everything: Optional[Level] = None
    """Label every Gaussian by its whole-scene segment at this level and write one .ply per segment into the
    --output folder (with segments.json), or with --single-file one .ply with an int32 label per Gaussian."""
    single_file: bool = False
    """With --segment-everything: the whole splat in one .ply, each Gaussian's label its segment id (-1: none)."""
    level: Level = "coarse"
    """Level of the "segment everything" ids written as each Gaussian's label (with --selection or the whole
    splat)."""
    include_features: bool = False
    """Also write each Gaussian's features as float properties feature_0 ... (not with one file per segment)."""
    min_gaussians: int = 1
    """With --segment-everything (one file per segment): skip segments with fewer Gaussians."""

    def check(self) -> None:
        """Refuse contradictory or incomplete options before loading anything."""
        per_segment = self.segment_everything is not None and not self.single_file
        if self.selection is not None and self.segment_everything is not None:
            fail("Give --selection or --segment-everything, not both.")
        if self.invert and self.selection is None:
            fail("--invert exports everything but a selection: give the selection with --selection FILE.npy.")
        if self.single_file and self.segment_everything is None:
            fail("--single-file goes with --segment-everything LEVEL (the whole splat, labelled by segment).")
        if not per_segment and self.output.suffix != ".ply":
            fail(f"--output {self.output}: give a .ply file (or use --segment-everything with a folder)")
        if per_segment and self.output.suffix == ".ply":
            fail(f"--output {self.output}: --segment-everything writes one .ply per segment into a folder; give a "
                 "folder path, or add --single-file for one .ply")
        if self.selection is not None and not self.selection.is_file():
            fail(f"--selection {self.selection} does not exist (write one with `clickgs segment`).")
        if per_segment and self.output.exists() and not self.output.is_dir():
            fail(f"--output {self.output} is a file: --segment-everything writes one .ply per segment into a folder")
        if per_segment and self.include_features:
            fail("--include-features goes with one .ply (--selection, the whole splat, or --segment-everything "
                 "LEVEL --single-file), not with one file per segment.")
        if self.min_gaussians != 1 and not per_segment:
            fail("--min-gaussians skips small segments of --segment-everything LEVEL (one file per segment); it does "
                 "nothing here.")

    def main(self) -> None:
        self.check()
        scene = load_scene(self.load_config)
        start = time.perf_counter()
        if self.segment_everything is not None and not self.single_file:
            self.write_segments(scene, start)
            return
        self.write_one_file(scene, start)

    def write_segments(self, scene: Any, start: float) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        segmentation = scene.segmentation(self.segment_everything)
        results = scene.export_segments(self.output, self.segment_everything, min_gaussians=self.min_gaussians)
        CONSOLE.print(segmentation.message)
        exported = sum(r.num_exported for r in results)
        dropped = sum(r.num_dropped_nonfinite for r in results)
        CONSOLE.print(f"[bold green]Wrote {len(results)} segment .ply files ({exported} Gaussians) to "
                      f"{self.output}[/] in {time.perf_counter() - start:.2f} s"
                      + (f"; left out {dropped} non-finite Gaussians" if dropped else ""))

    def write_one_file(self, scene: Any, start: float) -> None:
        import torch
        from nerfstudio.utils.rich_utils import CONSOLE

        level = self.segment_everything or self.level
        if self.selection is not None:
            try:
                mask = scene.load_selection(self.selection)
            except (ValueError, AttributeError, OSError, EOFError) as err:  # e.g. a .npz, a pickle, a truncated file
                if str(self.selection) in str(err):  # it fits another model, or holds neither a mask nor indices
                    fail(str(err))
                fail(f"--selection {self.selection} cannot be read as a selection .npy ({type(err).__name__}: {err}); "
                     "save it again with `clickgs segment` or the viewer's Export button.")
            what = f"{'everything but ' if self.invert else ''}the selection {self.selection}"
            if not self.invert and not bool(mask.any()):
                fail(f"{self.selection} selects no Gaussian: nothing to export.")
        else:
            mask = torch.ones(scene.num_gaussians, dtype=torch.bool)
            what = "every Gaussian"
        if self.segment_everything is not None:
            CONSOLE.print(scene.segmentation(level).message)
        try:
            result = scene.export(self.output, selection=mask, level=level, include_features=self.include_features,
                                  invert=self.invert)
        except ValueError as err:
            fail(str(err))
        wanted = int((~mask if self.invert else mask).sum())
        CONSOLE.print(f"[bold green]Wrote {result.num_exported} Gaussians ({what}: {wanted} of "
                      f"{scene.num_gaussians}) to {self.output}[/] with labels ({level} segment ids) in "
                      f"{time.perf_counter() - start:.2f} s"
                      + (f"; left out {result.num_dropped_nonfinite} non-finite Gaussians"
                         if result.num_dropped_nonfinite else ""))


@dataclass
class Eval:
    """Evaluate click segmentation on a prompts file (clickgs_ns/segment/evaluate.py): IoU and boundary IoU per prompt,
    mIoU and mBIoU per level; prints a table and writes a JSON report."""

    load_config: Path
    """config.yml of a click-gaussian run."""
    prompts: Path
    """Prompts JSON (a synthetic scene has prompts.json)."""
    output: Optional[Path] = None
    """The JSON report; default: eval_<prompts file name>.json in the run's folder."""
    eval: Annotated[EvalConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=EvalConfig)

    def main(self) -> None:
        from clickgs_ns.segment.evaluate import PromptError, evaluate_prompts, load_prompts, report_table, write_report
        from nerfstudio.utils.rich_utils import CONSOLE

        try:
            prompts = load_prompts(self.prompts)
        except PromptError as err:
            fail(str(err))
        scene = load_scene(self.load_config)
        start = time.perf_counter()
        try:
            report = evaluate_prompts(scene, prompts, self.prompts, self.eval)
        except PromptError as err:
            fail(str(err))
        report["load_config"] = str(self.load_config)
        report["seconds"] = time.perf_counter() - start
        output = self.output or scene.run.config_path.parent / f"eval_{self.prompts.stem}.json"
        write_report(report, output)
        CONSOLE.print(report_table(report))
        CONSOLE.print(f"[bold green]Wrote {output}[/] ({len(prompts)} prompts in {report['seconds']:.1f} s)")


@dataclass
class LiftLabels:
    """(Re)compute the labels that clicks select for a trained run, as the end of training does, and save them in
    its latest checkpoint: finishes a run that stopped while lifting them (its message names this command)."""

    load_config: Path
    """config.yml of a click-gaussian run."""

    def main(self) -> None:
        from clickgs_ns.segment.run import lift_saved_labels
        from nerfstudio.utils.rich_utils import CONSOLE

        start = time.perf_counter()
        try:
            checkpoint, labelled = lift_saved_labels(self.load_config)
        except (FileNotFoundError, TypeError, ValueError) as err:  # ValueError: masks missing or made for other photos
            fail(str(err))
        CONSOLE.print(f"[bold green]Labels lifted and saved in {checkpoint}[/]: {labelled['coarse']} (coarse) and "
                      f"{labelled['fine']} (fine) Gaussians labelled for clicks ({time.perf_counter() - start:.1f} s).")


Commands = Union[
    Annotated[Synth, tyro.conf.subcommand(name="synth")],
    Annotated[Masks, tyro.conf.subcommand(name="masks")],
    Annotated[RenderFeatures, tyro.conf.subcommand(name="render-features")],
    Annotated[Segment, tyro.conf.subcommand(name="segment")],
    Annotated[Views, tyro.conf.subcommand(name="views")],
    Annotated[Export, tyro.conf.subcommand(name="export")],
    Annotated[Eval, tyro.conf.subcommand(name="eval")],
    Annotated[LiftLabels, tyro.conf.subcommand(name="lift-labels")],
]


def entrypoint() -> None:
    """Entry point of the ``clickgs`` console script."""
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(Commands).main()


if __name__ == "__main__":
    entrypoint()
