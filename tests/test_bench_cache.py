"""benchmarks/cache.py: the keys that decide whether a benchmark reuses a scene, splat or run from an earlier run."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cache import code_fingerprint, code_text, is_cached, mark_cached, run_key, source_files  # noqa: E402


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
    path.write_text(path.read_text() + "edited = 1\n")
    after = code_fingerprint(paths, root=root)
    assert after != before
    path.write_text(path.read_text().replace("edited = 1\n", ""))
    assert code_fingerprint(paths, root=root) == before  # content decides, not modification times


def test_fingerprint_ignores_comments_docstrings_and_layout(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(MODULE)
    before = code_fingerprint([path], root=tmp_path)
    reworded = ('"""A module docstring."""\n' + MODULE.replace("STEPS = 3000", "STEPS = 3000  # a comment\n"
                '"""What STEPS is (an attribute docstring)."""').replace("    def render(self, x):\n",
                '    def render(self, x):\n        """Render."""\n\n'))
    path.write_text(reworded)
    assert code_fingerprint([path], root=tmp_path) == before
    path.write_text(MODULE.replace("STEPS = 3000", "STEPS = '3000'"))  # a string that is a value, not a docstring
    assert code_fingerprint([path], root=tmp_path) != before


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


def test_an_artefact_made_while_the_sources_changed_is_not_filed_under_a_key(tmp_path, monkeypatch):
    """The commands a benchmark starts import the sources as they are then: an artefact finished after an edit
    is not marked (it is made again on the next run), and no figure is printed."""
    import cache

    assert cache.checkout_digest() == cache.CHECKOUT_AT_START, "nothing edited the sources since the import"
    key = run_key("f" * 40, FLAGS)
    monkeypatch.setattr(cache, "CHECKOUT_AT_START", "the sources before an edit")
    with pytest.raises(RuntimeError, match=rf"sources changed while this benchmark ran, so {tmp_path} \(key {key}\)"):
        mark_cached(tmp_path, key, "f" * 40, FLAGS)
    assert not is_cached(tmp_path, key) and not (tmp_path / "cache_key.json").exists()
    with pytest.raises(RuntimeError, match="so the figures above would not come from the code its key names"):
        cache.check_checkout_unchanged("the figures above")


MODULE = """import functools

STEPS = 3000


@functools.lru_cache()
def loss(x):
    return x * 2


class Model:
    scale = 1.0

    def render(self, x):
        return x

    def lift(self, x):
        def inner(y):
            return y
        return inner(x)
"""


def test_code_text_cuts_exactly_the_named_definitions(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(MODULE)
    text = code_text(path, ["loss", "Model.lift"]).decode()
    assert "def loss" not in text and "lru_cache" not in text  # its decorator goes with it
    assert "def lift" not in text and "def inner" not in text
    assert "STEPS = 3000" in text and "scale = 1.0" in text and "def render(self, x):" in text
    assert code_text(path).decode() == ast.unparse(ast.parse(MODULE))


def test_fingerprint_without_definitions_ignores_only_their_bodies(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(MODULE)
    skip = {"module.py": ["loss", "Model.lift"]}
    before = code_fingerprint([path], root=tmp_path, without_definitions=skip)
    assert before != code_fingerprint([path], root=tmp_path)
    path.write_text(MODULE.replace("return x * 2", "return x * 3").replace("return y", "return -y"))
    assert code_fingerprint([path], root=tmp_path, without_definitions=skip) == before
    for changed in (MODULE.replace("STEPS = 3000", "STEPS = 2000"), MODULE.replace("scale = 1.0", "scale = 2.0"),
                    MODULE.replace("        return x\n\n    def lift", "        return -x\n\n    def lift")):
        path.write_text(changed)
        assert code_fingerprint([path], root=tmp_path, without_definitions=skip) != before


def test_fingerprint_without_definitions_refuses_names_it_cannot_find(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(MODULE)
    with pytest.raises(ValueError, match="Model.fit"):
        code_fingerprint([path], root=tmp_path, without_definitions={"module.py": ["Model.fit"]})
    with pytest.raises(ValueError, match="other.py"):
        code_fingerprint([path], root=tmp_path, without_definitions={"other.py": ["loss"]})


def test_bench_accuracy_fingerprints_what_trains():
    import bench_accuracy
    from cache import FEATURE_STAGE_FUNCTIONS, LABEL_STAGE_DEFINITIONS, TRAINING_SOURCES

    codes = bench_accuracy.code_keys()
    assert codes.labels == code_fingerprint(TRAINING_SOURCES)
    assert len({codes.rgb_stage, codes.feature_stage, codes.labels}) == 3
    files = set(source_files(TRAINING_SOURCES))
    assert (ROOT / "clickgs_ns" / "synth" / "writer.py").resolve() in files  # the scenes themselves
    assert (ROOT / "method_configs" / "click_gaussian.py").resolve() in files
    assert (ROOT / "clickgs_ns" / "segment" / "selection.py").resolve() not in files  # scores are recomputed
    assert {(ROOT / name).resolve() for name in [*FEATURE_STAGE_FUNCTIONS, *LABEL_STAGE_DEFINITIONS]} <= files


def traced_calls(run, stop_at: str = ""):
    """``run()`` under a profiler: every Python function called, as (file, qualified name) with the file relative
    to the project root where it lies inside; with ``stop_at`` (a qualified name), only the calls before it."""
    import threading

    called = set()
    stopped = []

    def profile(frame, event, arg):
        if event != "call" or stopped:
            return
        code = frame.f_code
        if code.co_qualname == stop_at:
            stopped.append(code)
            return
        path = Path(code.co_filename)
        called.add((path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else code.co_filename,
                    code.co_qualname))

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return called


def project_reads(config_class, monkeypatch) -> set:
    """From now on (the test's end undoes it), every field of a ``config_class`` instance that this project's code
    reads, as (file, function, field), into the returned set; reads by other code (nerfstudio printing or saving
    the config, ``dataclasses``) are not counted."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    package = ROOT / "clickgs_ns"
    reads = set()
    plain = object.__getattribute__

    def recording(self, name):
        if name in fields:
            caller = sys._getframe(1).f_code
            if Path(caller.co_filename).is_relative_to(package):
                reads.add((Path(caller.co_filename).relative_to(ROOT).as_posix(), caller.co_qualname, name))
        return plain(self, name)

    monkeypatch.setattr(config_class, "__getattribute__", recording)
    return reads


def test_project_reads_sees_a_setting_that_the_project_reads(monkeypatch):
    """The recorder of the RGB-stage test can fail: a feature-stage loss of this project reads its settings."""
    import torch

    from clickgs_ns.method.losses import FeatureLossConfig, contrastive_losses

    reads = project_reads(FeatureLossConfig, monkeypatch)
    ids = torch.tensor([0, 0, 1, 1])
    contrastive_losses(torch.randn(4, 24), ids, ids, FeatureLossConfig(), 12)
    assert ("clickgs_ns/method/losses.py", "contrastive_losses", "coarse_margin") in reads
    assert not any(name == "num_sampled_pixels" for *_, name in reads)


def stage_functions(*tables):
    return {(name, function) for table in tables for name, functions in table.items() for function in functions}


def test_an_rgb_stage_run_calls_no_feature_or_label_stage_function(tiny_scene, tmp_path, monkeypatch):
    """``cache.FEATURE_STAGE_FUNCTIONS`` and ``LABEL_STAGE_DEFINITIONS`` stay out of the RGB-stage key because an
    RGB-stage run (as bench_accuracy trains its splats: ``feature_stage_steps=0``) never calls them and reads no
    setting of ``FeatureLossConfig`` (whose defaults are left out too): traced here from the seed points through
    splitting, duplicating and pruning and an opacity reset, to its last checkpoint."""
    from cache import FEATURE_STAGE_FUNCTIONS, LABEL_STAGE_DEFINITIONS
    from clickgs_ns.method.losses import FeatureLossConfig
    from conftest import make_trainer_config, train

    # thresholds that make gsplat's strategy split, duplicate and prune at step 30 and reset opacities at step 40
    config = make_trainer_config(tiny_scene.root, tmp_path, rgb_stage_steps=50, feature_stage_steps=0,
                                 warmup_length=5, refine_every=10, reset_alpha_every=4, densify_grad_thresh=1e-9,
                                 cull_alpha_thresh=0.2)
    loss_settings_read = project_reads(FeatureLossConfig, monkeypatch)
    called = traced_calls(lambda: train(config))
    assert not loss_settings_read, sorted(loss_settings_read)
    assert ("clickgs_ns/method/model.py", "ClickGaussianModel._rasterize") in called  # the tracer saw the run
    densified = {function for path, function in called if path.endswith("gsplat/strategy/ops.py")}
    assert {"split", "duplicate", "remove", "reset_opa"} <= densified, densified
    assert ("clickgs_ns/method/losses.py", "nearest_neighbours") in called  # the RGB stage seeds features by it
    outside = stage_functions(FEATURE_STAGE_FUNCTIONS, LABEL_STAGE_DEFINITIONS) & called
    assert not outside, sorted(outside)


def test_training_calls_no_label_stage_function_before_its_end_and_relabelling_gives_its_labels(tiny_scene,
                                                                                                 tmp_path,
                                                                                                 monkeypatch):
    """``cache.LABEL_STAGE_DEFINITIONS`` stay out of a trained run's key because training calls none of them before
    ``finish_labels`` (traced through a feature stage with GFL); and ``cache.lift_labels_stage`` on that run, which
    relabels it with ``clickgs lift-labels`` as a cached run whose labels' code changed, gives the labels that the
    end of training saved: relabelling a cached run is the same as training it anew."""
    import torch
    import yaml

    from cache import FEATURE_STAGE_FUNCTIONS, LABEL_STAGE_DEFINITIONS, LABELS_KEY_FILE, is_cached, lift_labels_stage
    from clickgs_ns.method.gfl import GFLConfig
    from conftest import make_trainer_config, train

    config = make_trainer_config(tiny_scene.root, tmp_path, init_ply=tiny_scene.scene_ply_path,
                                 feature_stage_steps=12, gfl=GFLConfig(start_step=4, update_every=4))
    # the same threads in training and in the relabelling process, however busy the machine (sums in another
    # order differ in their last bits, and so would the candidates)
    config.cpu_threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(config.cpu_threads))
    config_path = []
    before_end = traced_calls(lambda: config_path.append(train(config)), stop_at="ClickGaussianPipeline.finish_labels")
    assert ("clickgs_ns/method/pipeline.py", "ClickGaussianPipeline.update_global_candidates") in before_end  # GFL
    assert stage_functions(FEATURE_STAGE_FUNCTIONS) & before_end
    inside = stage_functions(LABEL_STAGE_DEFINITIONS) & before_end
    assert not inside, sorted(inside)

    run_dir = config_path[0].parent
    (checkpoint,) = (run_dir / "nerfstudio_models").glob("*.ckpt")
    names = [f"_model.{level}_{what}" for level in ("coarse", "fine") for what in ("candidates", "labels",
                                                                                   "segment_labels")]
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert all((trained[name] >= 0).any() for name in names if "segment_labels" in name)  # labels to compare
    seconds, reused = lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], False,
                                        tmp_path / "lift_labels.log")
    assert not reused and seconds > 0 and is_cached(run_dir, cache_run_key("other labels code"), LABELS_KEY_FILE)
    relabelled = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    for name in names:
        assert torch.equal(relabelled[name], trained[name]), name
    assert lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], False,
                             tmp_path / "again.log") == (0.0, True)

    # a benchmark's --labelling: other settings key other labels, relabel in place, and back without them
    variant = {"method": "nearest_feature"}
    seconds, reused = lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], False,
                                        tmp_path / "variant.log", variant)
    assert not reused and seconds > 0
    saved = yaml.load(config_path[0].read_text(), Loader=yaml.Loader)
    assert saved.pipeline.model.labelling.method == "nearest_feature"
    varied = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert not all(torch.equal(varied[name], trained[name]) for name in names)
    assert lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], False,
                             tmp_path / "variant_again.log", variant) == (0.0, True)
    seconds, reused = lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], False,
                                        tmp_path / "back.log")
    assert not reused and is_cached(run_dir, cache_run_key("other labels code"), LABELS_KEY_FILE)
    back = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    for name in names:
        assert torch.equal(back[name], trained[name]), name
    # trained just now, its end lifted the defaults' labels: a variant relabels it all the same
    seconds, reused = lift_labels_stage(run_dir, config_path[0], "trained", "other labels code", [], True,
                                        tmp_path / "fresh.log", variant)
    assert not reused and seconds > 0
    variant_key = run_key("other labels code", {"run": "trained", "labelling": variant})
    assert is_cached(run_dir, variant_key, LABELS_KEY_FILE)


def test_a_benchmarks_labelling_settings_are_checked_and_written_one_way(tmp_path):
    """``cache.parse_labelling`` (a benchmark's ``--labelling``): each value as its field takes it, written one way
    (one variant, one labels key), defaults left out; the ns-train options it becomes, under a run's own."""
    import yaml

    from cache import labelling_args, labelling_flags, labelling_note, parse_labelling, with_current_labelling
    from clickgs_ns.method.lifting import LabellingConfig
    from conftest import make_trainer_config

    settings = parse_labelling(["coarse-merge-cosine=.97", "method=nearest_feature", "confident_near_cluster=false",
                                "min_cosine=0.75"])  # min_cosine's default
    assert settings == {"coarse_merge_cosine": "0.97", "method": "nearest_feature", "confident_near_cluster": "False"}
    assert parse_labelling(["coarse_merge_cosine=None"]) == {"coarse_merge_cosine": "None"}
    assert labelling_args({"coarse_merge_cosine": "0.97"}) == ["--pipeline.model.labelling.coarse-merge-cosine", "0.97"]
    assert labelling_flags(labelling_args(settings)) == settings
    assert labelling_note(settings) == (" [labelling coarse_merge_cosine=0.97, confident_near_cluster=False, "
                                        "method=nearest_feature]") and labelling_note({}) == ""
    for bad, says in [("no_such=1", "coarse_merge_cosine"), ("method=nearest", "view_vote, nearest_feature"),
                      ("min_cosine=high", "min_cosine=high"), ("confident_near_cluster=yes", "True or False"),
                      ("merge_cosine", "NAME=VALUE"), ("min_cosine=None", "None")]:
        with pytest.raises(SystemExit, match=says):
            parse_labelling([bad])
    with pytest.raises(SystemExit, match="twice"):
        parse_labelling(["min_cosine=0.5", "min-cosine=0.6"])

    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(make_trainer_config(tmp_path / "data", tmp_path / "out")))
    own = ["--pipeline.model.labelling.method", "view_vote"]  # the run's own option wins over the variant's
    with_current_labelling(path, [*labelling_args(settings), *own])
    saved = yaml.load(path.read_text(), Loader=yaml.Loader).pipeline.model.labelling
    assert saved == LabellingConfig(coarse_merge_cosine=0.97, confident_near_cluster=False, method="view_vote")
    with_current_labelling(path, labelling_args({"coarse_merge_cosine": "None"}))
    assert yaml.load(path.read_text(), Loader=yaml.Loader).pipeline.model.labelling.coarse_merge_cosine is None


def test_labelling_settings_are_read_only_at_the_end_of_training():
    """``LabellingConfig`` is among ``LABEL_STAGE_DEFINITIONS`` (its defaults do not enter a trained run's key), so no
    training source may read it outside those definitions: every ``.labelling`` attribute and every use of the name
    lies inside one, but for the model config's field that holds it."""
    import ast

    from cache import LABEL_STAGE_DEFINITIONS, TRAINING_SOURCES

    outside = []
    for path in source_files(TRAINING_SOURCES):
        if path.suffix != ".py":  # pyproject.toml
            continue
        name = path.relative_to(ROOT).as_posix()
        label_stage = set(LABEL_STAGE_DEFINITIONS.get(name, ()))

        def visit(node, qualname):
            for child in ast.iter_child_nodes(node):
                inner = qualname
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = f"{qualname}.{child.name}" if qualname else child.name
                    if inner in label_stage:
                        continue
                uses = ((isinstance(child, ast.Attribute) and child.attr == "labelling")
                        or (isinstance(child, ast.Name) and child.id == "LabellingConfig"))
                if uses and qualname != "ClickGaussianModelConfig":
                    outside.append(f"{name}:{child.lineno} in {qualname or 'the module'}")
                visit(child, inner)

        visit(ast.parse(path.read_text()), "")
    assert not outside, outside


def test_a_relabelled_run_gets_this_codes_labelling_settings_with_its_own_options(tmp_path):
    import yaml

    from cache import labelling_flags, with_current_labelling
    from clickgs_ns.method.lifting import LabellingConfig
    from conftest import make_trainer_config

    args = ["--vis", "tensorboard", "--pipeline.model.labelling.merge-cosine", "2.0",
            "--pipeline.model.labelling.use-mask-coverage=False", "--pipeline.model.labelling.method", "view_vote"]
    assert labelling_flags(args) == {"merge_cosine": "2.0", "use_mask_coverage": "False", "method": "view_vote"}
    config = make_trainer_config(tmp_path / "data", tmp_path / "out")
    config.pipeline.model.labelling = LabellingConfig(min_weight=123.0, min_cosine=0.5)  # as an older version saved
    path = tmp_path / "config.yml"
    path.write_text(yaml.dump(config))
    with_current_labelling(path, args)
    run = yaml.load(path.read_text(), Loader=yaml.Loader)
    expected = LabellingConfig(merge_cosine=2.0, use_mask_coverage=False)
    assert run.pipeline.model.labelling == expected and expected != LabellingConfig()
    assert run.pipeline.datamanager.data == tmp_path / "data" and run.timestamp == "test"  # the rest as it was
    with pytest.raises(AttributeError):
        with_current_labelling(path, ["--pipeline.model.labelling.no-such-setting", "1"])


def cache_run_key(labels_fp: str) -> str:
    return run_key(labels_fp, {"run": "trained"})


CLICK_TIME_MODULES = ("clickgs_ns/segment/", "clickgs_ns/app/api.py", "clickgs_ns/app/cli.py",
                      "clickgs_ns/app/__init__.py")
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
