"""benchmarks/cache.py: the keys that decide whether a benchmark reuses a scene, splat or run from an earlier run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cache import code_fingerprint, is_cached, mark_cached, run_key, source_files  # noqa: E402


@pytest.fixture
def sources(tmp_path):
    """A small source tree (a package folder and a script) with an unrelated file beside it."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("STEPS = 3000\n")
    (package / "sub" / "loss.py").write_text("def loss(x):\n    return x\n")
    script = tmp_path / "bench.py"
    script.write_text("print('bench')\n")
    (tmp_path / "notes.txt").write_text("unrelated\n")
    (tmp_path / "other.py").write_text("unrelated = True\n")
    return tmp_path, [package, script]


def test_fingerprint_is_stable_when_recomputed(sources):
    root, paths = sources
    first = code_fingerprint(paths, root=root)
    assert code_fingerprint(paths, root=root) == first
    assert code_fingerprint(list(reversed(paths)), root=root) == first  # order of the paths does not matter
    assert len(first) == 40 and int(first, 16) >= 0


@pytest.mark.parametrize("changed", ["pkg/model.py", "pkg/sub/loss.py", "bench.py", "pkg/__init__.py"])
def test_fingerprint_changes_with_any_source_file(sources, changed):
    root, paths = sources
    before = code_fingerprint(paths, root=root)
    path = root / changed
    path.write_text(path.read_text() + "# edited\n")
    after = code_fingerprint(paths, root=root)
    assert after != before
    path.write_text(path.read_text().replace("# edited\n", ""))
    assert code_fingerprint(paths, root=root) == before  # content decides, not modification times


def test_fingerprint_changes_when_a_source_file_is_added_removed_or_renamed(sources):
    root, paths = sources
    before = code_fingerprint(paths, root=root)
    new = root / "pkg" / "extra.py"
    new.write_text("")
    assert code_fingerprint(paths, root=root) != before
    new.unlink()
    assert code_fingerprint(paths, root=root) == before
    (root / "pkg" / "model.py").rename(root / "pkg" / "model2.py")
    assert code_fingerprint(paths, root=root) != before


def test_fingerprint_ignores_unrelated_files(sources):
    root, paths = sources
    before = code_fingerprint(paths, root=root)
    (root / "notes.txt").write_text("changed\n")
    (root / "other.py").write_text("unrelated = False\n")
    (root / "pkg" / "README.md").write_text("not a .py file\n")
    cache = root / "pkg" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-310.py").write_text("bytecode stand-in\n")
    assert code_fingerprint(paths, root=root) == before


def test_fingerprint_does_not_depend_on_where_the_tree_lies(sources, tmp_path_factory):
    root, paths = sources
    copy = tmp_path_factory.mktemp("copy")
    for path in source_files(paths):
        target = copy / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert code_fingerprint([copy / "pkg", copy / "bench.py"], root=copy) == code_fingerprint(paths, root=root)


def test_a_missing_source_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        code_fingerprint([tmp_path / "nowhere.py"], root=tmp_path)


FLAGS = {"rgb_steps": 3000, "feature_steps": 500, "noise": [0.5, 1.0], "scene": {"seed": 0, "mask_noise": 1.0},
         "ns_train": ["--pipeline.model.gfl.enabled", "False"], "init_checkpoint": "abc123", "skip": False}


def test_run_key_is_short_and_stable():
    key = run_key("f" * 40, FLAGS)
    assert len(key) == 12 and int(key, 16) >= 0
    assert run_key("f" * 40, dict(reversed(list(FLAGS.items())))) == key  # key order does not matter
    assert run_key("f" * 40, {**FLAGS, "noise": (0.5, 1.0)}) == key  # a tuple is the list it holds


@pytest.mark.parametrize("name, value", [
    ("rgb_steps", 3001), ("feature_steps", 1000), ("noise", [0.5]), ("noise", [1.0, 0.5]),
    ("scene", {"seed": 1, "mask_noise": 1.0}), ("scene", {"seed": 0, "mask_noise": 0.5}),
    ("ns_train", ["--pipeline.model.gfl.enabled", "True"]), ("ns_train", []), ("init_checkpoint", "abc124"),
    ("skip", True), ("new_flag", 1),
])
def test_run_key_changes_with_any_flag(name, value):
    assert run_key("f" * 40, {**FLAGS, name: value}) != run_key("f" * 40, FLAGS)


def test_run_key_changes_with_the_code():
    assert run_key("e" * 40, FLAGS) != run_key("f" * 40, FLAGS)


def test_run_key_refuses_flags_without_a_stable_text():
    with pytest.raises(TypeError):
        run_key("f" * 40, {"model": object()})


def test_key_file_marks_a_finished_artefact(tmp_path):
    key = run_key("f" * 40, FLAGS)
    assert not is_cached(tmp_path, key)  # nothing written yet: an unfinished artefact
    mark_cached(tmp_path, key, "f" * 40, {**FLAGS, "data": tmp_path})
    assert is_cached(tmp_path, key)
    assert not is_cached(tmp_path, run_key("f" * 40, {**FLAGS, "rgb_steps": 1}))
    (tmp_path / "cache_key.json").write_text("{broken")
    assert not is_cached(tmp_path, key)


def test_bench_accuracy_fingerprints_what_trains():
    import bench_accuracy
    from cache import TRAINING_SOURCES

    files = set(source_files(bench_accuracy.SOURCES))
    expected = set(source_files(TRAINING_SOURCES))
    assert expected and expected <= files
    assert (ROOT / "clickgs_ns" / "data" / "synth.py").resolve() in files  # the scenes themselves
    assert (ROOT / "method_configs" / "click_gaussian.py").resolve() in files
    assert (ROOT / "clickgs_ns" / "segment" / "selection.py").resolve() not in files  # scores are recomputed
    assert (ROOT / "benchmarks" / "bench_accuracy.py").resolve() in files
    assert (ROOT / "benchmarks" / "cache.py").resolve() in files


CLICK_TIME_MODULES = ("clickgs_ns/segment/", "clickgs_ns/app/api.py", "clickgs_ns/app/cli.py",
                      "clickgs_ns/app/legacy.py", "clickgs_ns/app/__init__.py")
"""Modules a training process may import without them entering a trained run's key (``TRAINING_SOURCES``): the
selection core that the viewer's click controls call on a click, the command-line and Python front ends, and the
app package's docstring."""


def test_training_sources_hold_everything_a_training_process_runs():
    """``ns-train click-gaussian`` loads the preset (method_configs) and through it the method, the datamanager and
    the viewer pipeline; every module of this project it imports is in ``TRAINING_SOURCES`` unless it runs only at
    click time. A new module that training imports must enter the key, or cached splats would outlive its
    changes."""
    import subprocess

    from cache import TRAINING_SOURCES

    code = ("import sys, method_configs.click_gaussian, clickgs_ns.method.trainer\n"
            "print('\\n'.join(sorted(m.__file__ for m in list(sys.modules.values())\n"
            "      if m.__name__.startswith(('clickgs_ns', 'method_configs')) and getattr(m, '__file__', None))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [Path(line).resolve() for line in loaded.stdout.split()]
    assert any(f.match("clickgs_ns/method/model.py") for f in files) and any(f.match("segment/*.py") for f in files)
    keyed = set(source_files(TRAINING_SOURCES))
    outside = [f.relative_to(ROOT).as_posix() for f in files if f not in keyed]
    assert outside and all(name.startswith(CLICK_TIME_MODULES) for name in outside), outside
    assert ROOT / "clickgs_ns" / "method" / "lifting.py" in keyed  # the labels clicks select are made in training
