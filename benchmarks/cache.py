"""Cache keys for benchmark artefacts (generated scenes, trained splats, feature runs) kept between runs.

An artefact is reused only when its key matches: the key hashes the content of the source files that can change
it (``code_fingerprint``) together with every flag and setting that produced it (``run_key``). Benchmarks put the
key in the artefact's folder name and also store it in ``KEY_FILE`` inside that folder, written last, as the
artefact's commit marker (``is_cached`` / ``mark_cached``): a folder of a killed run, of other code or of other
flags is never reused.

The hashing is ``clickgs_ns.data.sam_masks``' (``file_sha1``, ``settings_fingerprint``: sha1 of canonical JSON),
the same the SAM mask cache keys its files with.

Usage (from a script in benchmarks/)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cache import PROJECT_ROOT, code_fingerprint, run_key
    code_fp = code_fingerprint([PROJECT_ROOT / "clickgs_ns", PROJECT_ROOT / "method_configs", Path(__file__)])
    key = run_key(code_fp, {"steps": 3000, "scene": scene_key})
"""

from __future__ import annotations

import dataclasses
import json
import platform
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, Dict, Iterable, List, Optional, Sequence

from clickgs_ns.data.sam_masks import file_sha1, settings_fingerprint
from clickgs_ns.io.atomic import atomic_write_text

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_SOURCES = [PROJECT_ROOT / "clickgs_ns" / layer for layer in ("io", "render", "data", "method")] + [
    PROJECT_ROOT / "clickgs_ns" / "__init__.py", PROJECT_ROOT / "clickgs_ns" / "app" / "viewer.py",
    PROJECT_ROOT / "method_configs", PROJECT_ROOT / "pyproject.toml"]
"""The source an ``ns-train click-gaussian`` run executes: the layers up to ``clickgs_ns.method``, the preset's
pipeline (``app/viewer.py``: the method's pipeline with click controls attached) and the presets. ``clickgs_ns.segment``
and the rest of ``app`` (clicks, scores, export, the CLI) run on a finished run and do not enter a trained run's key,
so that changing how clicks select re-scores cached splats instead of retraining them; tests/test_bench_cache.py
checks that a training process imports nothing else of this project that it calls."""
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


def code_fingerprint(paths: Iterable[Path], root: Optional[Path] = None) -> str:
    """sha1 (hex) of the content of the source files ``paths`` (files, or folders: their .py files), each named by its
    path relative to ``root`` (default: the project root; absolute where outside it), so that it does not depend on
    where the checkout lies. Files not among ``paths`` do not enter it."""
    root = Path(root).resolve() if root is not None else PROJECT_ROOT
    contents = {}
    for path in source_files(paths):
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        contents[name] = file_sha1(path)
    return settings_fingerprint({"files": contents})


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


def is_cached(directory: Path, key: str) -> bool:
    """Whether ``directory`` holds a finished artefact of ``key`` (its ``KEY_FILE`` says so)."""
    try:
        stored = json.loads((Path(directory) / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stored, dict) and stored.get("key") == key


def mark_cached(directory: Path, key: str, code_fp: str, flags: Dict[str, Any]) -> None:
    """Write ``directory``'s ``KEY_FILE`` (atomically, once the artefact is complete): the key, and the code
    fingerprint and flags it was made from, so that the folder says how it was made."""
    text = json.dumps({"key": key, "code": code_fp, "flags": _canonical(flags)}, indent=1, sort_keys=True)
    atomic_write_text(Path(directory) / KEY_FILE, text + "\n")
