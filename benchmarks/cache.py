"""Cache keys for benchmark artefacts (generated scenes, trained splats, feature runs) kept between runs.

An artefact is reused only when its key matches: the key hashes the content of the source files that can change
it (``code_fingerprint``) together with every flag and setting that produced it (``run_key``). Benchmarks put the
key in the artefact's folder name and also store it in ``KEY_FILE`` inside that folder, written last, as the
artefact's commit marker (``is_cached`` / ``mark_cached``): a folder of a killed run, of other code or of other
flags is never reused.

Training has two stages (docs/method.md): the RGB stage trains the splat, the feature stage its click features,
GFL and the labels. An RGB-stage artefact is keyed by ``rgb_stage_fingerprint``: the training sources with the
definitions that only the feature stage uses (``FEATURE_STAGE_FUNCTIONS``: its functions and the losses' settings)
left out, so that changing GFL, the losses, their settings or label lifting retrains the feature stage from the
cached splat instead of the splat too; tests/test_bench_cache.py traces an RGB-stage run and checks that it uses
none of them.

The hashing is ``clickgs_ns.data.mask_cache``'s (``file_sha1``, ``settings_fingerprint``: sha1 of canonical JSON),
the same the SAM mask cache keys its files with; a Python file enters by its code (``code_text``: comments and
docstrings do not count).

Usage (from a script in benchmarks/)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cache import PROJECT_ROOT, code_fingerprint, run_key
    code_fp = code_fingerprint([PROJECT_ROOT / "clickgs_ns", PROJECT_ROOT / "method_configs", Path(__file__)])
    key = run_key(code_fp, {"steps": 3000, "scene": scene_key})
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
import time
import typing
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from clickgs_ns.data.mask_cache import file_sha1, settings_fingerprint
from clickgs_ns.io.atomic import atomic_write_text

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_SOURCES = [PROJECT_ROOT / "clickgs_ns" / layer for layer in ("io", "render", "data", "method", "synth")] + [
    PROJECT_ROOT / "clickgs_ns" / name for name in ("__init__.py", "levels.py", "lens.py")] + [
    PROJECT_ROOT / "clickgs_ns" / "app" / name for name in ("viewer.py", "viewer_controls.py", "viewer_state.py")] + [
    PROJECT_ROOT / "method_configs", PROJECT_ROOT / "pyproject.toml"]
"""The source an ``ns-train click-gaussian`` run executes: the layers up to ``clickgs_ns.method`` with the levels and the lens, the
preset's pipeline (``app/viewer.py``: the method's pipeline with the viewer's click controls attached, and the
controls' modules) and the presets, and the synthetic scenes the benchmarks train on (``clickgs_ns.synth``).
``clickgs_ns.segment`` and the rest of ``app`` (clicks, scores, export, the CLI) run on a finished run and do not
enter a trained run's key, so that changing how clicks select re-scores cached splats instead of retraining them;
tests/test_bench_cache.py checks that a training process imports nothing else of this project that it calls."""
FEATURE_STAGE_FUNCTIONS: Dict[str, Sequence[str]] = {
    "clickgs_ns/method/gfl.py": (
        "_rows_per_chunk", "min_cluster_size_for", "mask_average_features", "ClusterResult.num_candidates",
        "_hdbscan_min_cluster_size", "_usable_unit_rows", "_subsample_points", "_too_few_points_outcome",
        "_hdbscan_outcome", "_cluster_means", "_labels_outcome", "_all_noise_outcome", "_cluster_result",
        "cluster_candidates", "cluster_level_candidates", "assign_candidates", "gfl_losses", "gfl_level_losses",
        "gfl_loss"),
    "clickgs_ns/method/lifting.py": ("feature_convergence", "MergedCandidates", "unmerged_candidates"),
    "clickgs_ns/method/losses.py": (
        "graph_zero", "_safe_mean", "_unit", "_segment_counts", "sample_pixels", "positive_mean_cosine",
        "negative_mean_cosine", "contrastive_losses", "pair_counts", "contrastive_loss", "norm3d_loss", "norm2d_loss",
        "build_knn_index", "spatial_loss", "feature_stage_losses", "FeatureLossConfig"),
    "clickgs_ns/method/model.py": (
        "ClickGaussianModel.has_candidates", "ClickGaussianModel.set_candidates", "ClickGaussianModel.update_labels",
        "ClickGaussianModel.feature_convergence", "ClickGaussianModel.render_features",
        "ClickGaussianModel.render_colors", "ClickGaussianModel.gfl_active"),
    "clickgs_ns/method/pipeline.py": (
        "ClickGaussianPipeline.rendered_training_views", "ClickGaussianPipeline.mask_averages",
        "ClickGaussianPipeline.update_global_candidates", "ClickGaussianPipeline.finish_labels_after_checkpoint"),
}
"""Per source file (relative to the project root), the definitions (qualified names: ``Class.method``) that the
feature stage uses and the RGB stage does not: GFL's clustering and loss, the feature losses and their settings
(``FeatureLossConfig``), the feature render. Their source does not enter ``rgb_stage_fingerprint``; everything else
of those files does (module-level code, class bodies, the other config defaults, every other function, any function
added later). tests/test_bench_cache.py trains an RGB stage under a tracer and checks that none of the functions is
called and that no setting of ``FeatureLossConfig`` is read; a name that is not in its file is an error when a key
is computed, so that a renamed function cannot drop out unnoticed."""
LABEL_STAGE_DEFINITIONS: Dict[str, Sequence[str]] = {
    "clickgs_ns/method/lifting.py": (
        "LabellingConfig", "SegmentPixels", "segment_pixels", "concat_segment_pixels", "group_sharing",
        "merge_candidates", "pixel_label_maps", "coalesce_votes", "add_votes", "gaussian_votes",
        "vote_labels", "total_weights", "unoccluded_weights", "hardly_seen", "nearest_seen", "neighbour_labels",
        "fill_unlabelled", "click_labels", "labels_per_pass", "segment_label_pixels", "found_candidates",
        "missed_segment_votes", "member_label_maps"),
    "clickgs_ns/method/model.py": (
        "ClickGaussianModel.label_votes", "ClickGaussianModel.candidate_label_maps", "ClickGaussianModel.label_columns",
        "ClickGaussianModel.unoccluded_weights", "ClickGaussianModel.lift_labels"),
    "clickgs_ns/method/pipeline.py": (
        "ClickGaussianPipeline.finish_labels",
        "ClickGaussianPipeline.mask_ids", "ClickGaussianPipeline.candidate_segment_pixels",
        "ClickGaussianPipeline.merged_candidates"),
}
"""The definitions that only the end of training uses, once the features are trained and saved: the functions of the
last clustering's merge and of the lifting of the labels that clicks select (``ClickGaussianPipeline.finish_labels``,
which ``clickgs lift-labels`` runs on a saved run), and their settings (``LabellingConfig``). Their source enters
neither stage's key: a trained run is relabelled with ``clickgs lift-labels`` when the labels' code changed
(``lift_labels_stage``). tests/test_bench_cache.py traces a training run and checks that none of these functions is
called before ``finish_labels``, and reads the training sources to check that the settings are read only inside
them."""
LABELS_KEY_FILE = "labels_key.json"
"""Beside ``KEY_FILE`` in a trained run's folder: the key (``labels_key``) of the code its saved labels were lifted by."""
SOURCE_SUFFIXES = (".py",)
"""Files of these kinds are taken from a folder given to ``code_fingerprint``."""
KEY_LENGTH = 12
"""Hex digits of a run key (48 bits)."""
KEY_FILE = "cache_key.json"


def source_files(paths: Iterable[Path], suffixes: Sequence[str] = SOURCE_SUFFIXES) -> List[Path]:
    """``paths`` with each folder replaced by the files under it whose names end with ``suffixes`` (``__pycache__``
    skipped), sorted and without repeats. A path that does not exist is an error, not an empty contribution."""
    files = set()
    for path in map(Path, paths):
        if path.is_dir():
            files.update(p.resolve() for p in path.rglob("*")
                         if p.is_file() and p.name.endswith(tuple(suffixes)) and "__pycache__" not in p.parts)
        elif path.is_file():
            files.add(path.resolve())
        else:
            raise FileNotFoundError(f"no such source file or folder: {path}")
    return sorted(files)


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
STATEMENT_LISTS = ("body", "orelse", "finalbody")


def _is_string_statement(node: ast.AST) -> bool:
    """A statement that is a bare string: a docstring, or an attribute's docstring after it (no effect on running)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def code_text(path: Path, qualnames: Sequence[str] = ()) -> bytes:
    """The code of the Python file ``path`` as ``ast.unparse`` writes it: without comments, docstrings (and the bare
    strings that document attributes) and the definitions (functions or classes, decorators included) named
    ``qualnames`` (``name`` or ``Class.name``, as ``__qualname__`` has them). Rewording a docstring or a comment, or
    adding or removing a listed definition, leaves it unchanged. A name that the file does not define is a
    ValueError."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    found = set()

    def strip(node: ast.AST, prefix: str) -> None:
        for field in STATEMENT_LISTS:
            statements = getattr(node, field, None)
            if not isinstance(statements, list) or not all(isinstance(s, ast.stmt) for s in statements):
                continue
            kept = []
            for child in statements:
                name = prefix + child.name if isinstance(child, DEFINITIONS) else None
                if name in qualnames:
                    found.add(name)
                elif not _is_string_statement(child):
                    kept.append(child)
            setattr(node, field, kept or ([ast.Pass()] if field == "body" else []))
        for child in ast.iter_child_nodes(node):
            inner = prefix + child.name + "." if isinstance(child, ast.ClassDef) else prefix + "<nested>."
            strip(child, inner if isinstance(child, DEFINITIONS) else prefix)

    strip(tree, "")
    missing = sorted(set(qualnames) - found)
    if missing:
        raise ValueError(f"{path} defines no {', '.join(missing)}: update cache.FEATURE_STAGE_FUNCTIONS or "
                         "LABEL_STAGE_DEFINITIONS")
    return ast.unparse(tree).encode()


def code_fingerprint(paths: Iterable[Path], root: Optional[Path] = None,
                     without_definitions: Mapping[str, Sequence[str]] = {}) -> str:
    """sha1 (hex) of the content of the source files ``paths`` (files, or folders: their .py files), each named by its
    path relative to ``root`` (default: the project root; absolute where outside it), so that it does not depend on
    where the checkout lies: of a Python file its code (``code_text``: comments and docstrings do not count), of
    any other file its bytes. Files not among ``paths`` do not enter it. ``without_definitions`` maps such a name to
    definitions (functions, classes) of that file whose source is left out; every name it holds must be among the
    files."""
    root = Path(root).resolve() if root is not None else PROJECT_ROOT
    contents = {}
    for path in source_files(paths):
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        if path.suffix == ".py":
            contents[name] = hashlib.sha1(code_text(path, without_definitions.get(name, ()))).hexdigest()
        else:
            contents[name] = file_sha1(path)
    unknown = sorted(set(without_definitions) - set(contents))
    if unknown:
        raise ValueError(f"definitions to leave out of files that are not among the sources: {', '.join(unknown)}")
    return settings_fingerprint({"files": contents})


def _merged(*tables: Mapping[str, Sequence[str]]) -> Dict[str, List[str]]:
    merged: Dict[str, List[str]] = {}
    for table in tables:
        for name, functions in table.items():
            merged.setdefault(name, []).extend(functions)
    return merged


def rgb_stage_fingerprint(root: Optional[Path] = None) -> str:
    """``code_fingerprint`` of ``TRAINING_SOURCES`` without ``FEATURE_STAGE_FUNCTIONS`` and ``LABEL_STAGE_DEFINITIONS``:
    the key of what an RGB-stage run (``--pipeline.model.feature-stage-steps 0``) executes, and of the synthetic
    scenes it trains on."""
    return code_fingerprint(TRAINING_SOURCES, root, _merged(FEATURE_STAGE_FUNCTIONS, LABEL_STAGE_DEFINITIONS))


def training_fingerprint(root: Optional[Path] = None) -> str:
    """``code_fingerprint`` of ``TRAINING_SOURCES`` without ``LABEL_STAGE_DEFINITIONS``: the key of a run's trained
    splat and features (both stages), not of the labels lifted at its end (``labels_fingerprint``)."""
    return code_fingerprint(TRAINING_SOURCES, root, LABEL_STAGE_DEFINITIONS)


def labels_fingerprint(root: Optional[Path] = None) -> str:
    """``code_fingerprint`` of all of ``TRAINING_SOURCES``: the key of the labels lifted at the end of training."""
    return code_fingerprint(TRAINING_SOURCES, root)


NS_TRAIN_FLAGS = ["--machine.device-type", "cpu", "--vis", "tensorboard", "--pipeline.model.num-downscales", "0",
                  "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
                  "--steps-per-save", "1000000"]
"""Flags of every ``ns-train`` run of bench_accuracy.py and bench_real.py, before its own: the CPU, no viewer,
full-resolution training, no evaluation or intermediate checkpoints (they are among each run's keyed flags)."""


class CodeKeys(NamedTuple):
    """The code fingerprints that key the artefacts of bench_accuracy.py and bench_real.py."""

    rgb_stage: str
    """Scenes and RGB-stage splats: ``cache.rgb_stage_fingerprint`` (the training sources without the functions
    that only the feature stage and the end of training call)."""
    feature_stage: str
    """Feature runs: ``cache.training_fingerprint`` (without the functions that only the end of training calls)."""
    labels: str
    """The labels saved in a feature run: ``cache.labels_fingerprint`` (every training source); a run whose labels
    other code lifted is relabelled by ``clickgs lift-labels`` (``cache.lift_labels_stage``)."""


def code_keys() -> CodeKeys:
    """This checkout's ``CodeKeys``. The selection and scoring code is in none: scores are recomputed on every
    run. Nor are the benchmark scripts and this file: what they decide about an artefact is among its flags (a
    scene's ``SynthConfig``, the ns-train flags, the keys of the artefacts it is made from, the environment)."""
    return CodeKeys(rgb_stage_fingerprint(), training_fingerprint(), labels_fingerprint())


def environment() -> Dict[str, str]:
    """Versions of Python and of the installed packages that train and score the benchmarks (not source files of
    this project, so not in ``code_fingerprint``; put them among a run's flags)."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "nerfstudio", "gsplat", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _canonical(value: Any) -> Any:
    """``value`` in JSON types: paths as POSIX strings, tuples as lists, dataclasses as dicts; anything else JSON
    cannot write is an error (never its repr, which may differ between runs)."""
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a cache flag must be JSON-like, got {type(value).__name__}: {value!r}")


def run_key(code_fp: str, flags: Dict[str, Any]) -> str:
    """Short hex key (``KEY_LENGTH`` digits) of an artefact made by the code ``code_fp`` with ``flags`` (every
    setting that decides it, including the keys of the artefacts it is made from)."""
    return settings_fingerprint({"code": code_fp, "flags": _canonical(flags)})[:KEY_LENGTH]


def is_cached(directory: Path, key: str, key_file: str = KEY_FILE) -> bool:
    """Whether ``directory`` holds a finished artefact of ``key`` (its ``key_file`` says so)."""
    try:
        stored = json.loads((Path(directory) / key_file).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stored, dict) and stored.get("key") == key


CHECKOUT_SOURCES = [PROJECT_ROOT / "clickgs_ns", PROJECT_ROOT / "method_configs", PROJECT_ROOT / "benchmarks",
                    PROJECT_ROOT / "pyproject.toml"]
"""Every source that a benchmark and the commands it starts execute (trained or not)."""


def checkout_digest() -> str:
    """sha1 (hex) of the bytes of ``CHECKOUT_SOURCES``: any edit changes it, comments included."""
    return settings_fingerprint({path.as_posix(): file_sha1(path) for path in source_files(CHECKOUT_SOURCES)})


CHECKOUT_AT_START = checkout_digest()
"""The sources when this process started (imported this module): the code its artefacts and figures come from."""


def check_checkout_unchanged(what: str) -> None:
    """A RuntimeError when a source of the checkout changed since this process started: ``what`` (an artefact about
    to be filed under its key, or figures about to be printed) would then come from two versions of the code (the
    commands a benchmark starts import the sources as they are when they start)."""
    if checkout_digest() != CHECKOUT_AT_START:
        raise RuntimeError(f"The project's sources changed while this benchmark ran, so {what} would not come from "
                           "the code its key names. Run it again on a checkout that nobody edits meanwhile (e.g. one "
                           "made by `git worktree add`); what it finished before the change stays cached.")


def mark_cached(directory: Path, key: str, code_fp: str, flags: Dict[str, Any], key_file: str = KEY_FILE) -> None:
    """Write ``directory``'s ``key_file`` (atomically, once the artefact is complete): the key, and the code
    fingerprint and flags it was made from, so that the folder says how it was made. Refused when the checkout's
    sources changed while the artefact was being made (``check_checkout_unchanged``)."""
    check_checkout_unchanged(f"{directory} (key {key})")
    text = json.dumps({"key": key, "code": code_fp, "flags": _canonical(flags)}, indent=1, sort_keys=True)
    atomic_write_text(Path(directory) / key_file, text + "\n")


LABELLING_PREFIX = "--pipeline.model.labelling."
"""The ns-train options that set ``LabellingConfig`` (``--pipeline.model.labelling.NAME VALUE``)."""


def labelling_flags(ns_train_args: Sequence[str]) -> Dict[str, str]:
    """The ``--pipeline.model.labelling.NAME VALUE`` (or ``=VALUE``) options among ``ns_train_args``: {field: value}."""
    flags = {}
    for index, arg in enumerate(ns_train_args):
        if arg.startswith(LABELLING_PREFIX):
            name, _, value = arg[len(LABELLING_PREFIX):].partition("=")
            flags[name.replace("-", "_")] = value if value else ns_train_args[index + 1]
    return flags


def labelling_value(name: str, value: str) -> Any:
    """``value`` (text) as ``LabellingConfig``'s field ``name`` takes it: a bool from True/False/true/false/1/0, a
    Literal one of its choices, "None" where the field may be None, else its type's. An unknown ``name`` is an
    AttributeError; a value the field does not take, a ValueError."""
    from clickgs_ns.method.lifting import LabellingConfig

    hints = typing.get_type_hints(LabellingConfig)
    if name not in hints:
        raise AttributeError(f"LabellingConfig has no setting {name!r}")
    hint, default = hints[name], getattr(LabellingConfig(), name)
    choices = typing.get_args(hint)
    if value == "None" and type(None) in choices:
        return None
    if typing.get_origin(hint) is typing.Literal:
        if value not in choices:
            raise ValueError(f"{name} is one of {', '.join(map(str, choices))}")
        return value
    if isinstance(default, bool):
        if value not in ("True", "true", "1", "False", "false", "0"):
            raise ValueError(f"{value!r} is not a bool (True or False)")
        return value in ("True", "true", "1")
    kind = type(default) if default is not None else next(c for c in choices if c is not type(None))
    return kind(value)


def parse_labelling(settings: Sequence[str]) -> Dict[str, str]:
    """A benchmark's ``--labelling NAME=VALUE ...``: {field: value} (NAME as ``LabellingConfig`` names its field, with
    dashes or underscores), each value written as its parsed value prints (``.97`` -> ``0.97``, ``true`` ->
    ``True``), settings equal to their default left out, so that one variant has one key. An unknown name, a name
    given twice or a value the field does not take is a SystemExit that names it and the way forward."""
    from clickgs_ns.method.lifting import LabellingConfig

    defaults = LabellingConfig()
    names = sorted(field.name for field in dataclasses.fields(LabellingConfig))
    parsed, seen = {}, set()
    for setting in settings:
        name, equals, value = setting.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or not value:
            raise SystemExit(f"--labelling {setting!r}: write NAME=VALUE, e.g. coarse_merge_cosine=0.97")
        if name not in names:
            raise SystemExit(f"--labelling {setting!r}: LabellingConfig has no setting {name!r}; its settings: "
                             f"{', '.join(names)}")
        if name in seen:
            raise SystemExit(f"--labelling {setting!r}: {name} is given twice; give it once")
        seen.add(name)
        try:
            typed = labelling_value(name, value)
        except ValueError as error:
            raise SystemExit(f"--labelling {setting!r}: {error}") from None
        if typed != getattr(defaults, name):
            parsed[name] = str(typed)
    return parsed


def labelling_args(labelling: Mapping[str, str]) -> List[str]:
    """The ns-train options that set ``labelling`` ({field: value}): the inverse of ``labelling_flags``."""
    return [arg for name, value in labelling.items() for arg in (LABELLING_PREFIX + name.replace("_", "-"), value)]


def labelling_note(labelling: Mapping[str, str]) -> str:
    """`` [labelling NAME=VALUE, ...]`` for a benchmark's summary lines when ``labelling`` overrides the defaults."""
    return f" [labelling {', '.join(f'{k}={v}' for k, v in sorted(labelling.items()))}]" if labelling else ""


def with_current_labelling(config: Path, ns_train_args: Sequence[str]) -> None:
    """Rewrite the labelling settings in a run's ``config.yml`` to those ``ns-train click-gaussian ns_train_args``
    saves with this code: ``LabellingConfig``'s defaults, with the options ``ns_train_args`` sets
    (``labelling_flags``; of one setting given twice, the later). A run keeps the settings it was trained with,
    defaults included; relabelled for this code, it must get this code's."""
    import yaml

    from clickgs_ns.method.lifting import LabellingConfig

    labelling = LabellingConfig()
    for name, value in labelling_flags(ns_train_args).items():
        setattr(labelling, name, labelling_value(name, value))  # an unknown name: AttributeError
    run = yaml.load(Path(config).read_text(), Loader=yaml.Loader)
    run.pipeline.model.labelling = labelling
    atomic_write_text(Path(config), yaml.dump(run))


def lift_labels_stage(run_dir: Path, config: Path, train_key: str, labels_fp: str, ns_train_args: Sequence[str],
                      trained_now: bool, log: Path, labelling: Optional[Mapping[str, str]] = None
                      ) -> Tuple[float, bool]:
    """Make the labels saved in the trained run ``run_dir`` (its ``config``, trained as ``train_key`` by ns-train
    with ``ns_train_args``) those that the labels' code ``labels_fp`` lifts, with the labelling settings
    ``labelling`` ({field: value}, ``parse_labelling``) on top of the defaults where given (a benchmark's
    ``--labelling``: a variant of the labels without retraining; the run's own options win over it). A run trained
    just now without ``labelling`` lifted them at its end with this code; an older one whose ``LABELS_KEY_FILE``
    names other code or other settings gets this code's labelling settings (``with_current_labelling``) and is
    relabelled in place by ``clickgs lift-labels`` (the user's command for it; its output in ``log``). Returns the
    seconds spent and whether the saved labels were reused."""
    settings: Dict[str, Any] = {"run": train_key}
    if labelling:  # the defaults' key is the one it always was
        settings["labelling"] = dict(sorted(labelling.items()))
    key = run_key(labels_fp, settings)
    if trained_now and not labelling:
        mark_cached(run_dir, key, labels_fp, settings, LABELS_KEY_FILE)
        return 0.0, False
    if not trained_now and is_cached(run_dir, key, LABELS_KEY_FILE):
        return 0.0, True
    started = time.perf_counter()
    (Path(run_dir) / LABELS_KEY_FILE).unlink(missing_ok=True)  # until relabelled: neither the old labels nor these
    with_current_labelling(config, [*labelling_args(labelling or {}), *ns_train_args])
    with open(log, "w") as out:
        code = subprocess.call([str(Path(sys.executable).parent / "clickgs"), "lift-labels", "--load-config",
                                str(config)], stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise SystemExit(f"clickgs lift-labels failed ({code}); see {log}")
    mark_cached(run_dir, key, labels_fp, settings, LABELS_KEY_FILE)
    return time.perf_counter() - started, False
