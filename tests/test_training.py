"""End to end on the CPU: the nerfstudio method, both stages, starting from a .ply, resuming, bad masks."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_trainer_config, train

BIN = Path(sys.executable).parent


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def test_method_is_registered_and_splatfacto_still_works():
    result = run(BIN / "ns-train", "click-gaussian", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for option in ("--pipeline.model.init-ply", "--pipeline.model.feature-stage-steps",
                   "--pipeline.model.losses.coarse-margin", "--pipeline.datamanager.sam.sam-checkpoint"):
        assert option in result.stdout
    splatfacto = run(BIN / "ns-train", "splatfacto", "--help")
    assert splatfacto.returncode == 0 and "--pipeline.model.sh-degree" in splatfacto.stdout


def test_preset_restates_no_default_of_the_method():
    """A changed default in a config class must reach the preset users train with."""
    from clickgs_ns.data.datamanager import ClickGaussianDataManagerConfig
    from clickgs_ns.method.model import ClickGaussianModelConfig
    from method_configs.click_gaussian import click_gaussian_config

    config = click_gaussian_config()
    assert config.pipeline.model == ClickGaussianModelConfig()
    datamanager = config.pipeline.datamanager
    assert datamanager.dataparser.load_3D_points  # the seed points: the one change from the defaults
    datamanager.dataparser.load_3D_points = False
    assert datamanager == ClickGaussianDataManagerConfig()
    assert config.max_num_iterations == config.pipeline.model.total_steps


def test_cpu_preset_is_registered_beside_click_gaussian():
    result = run(BIN / "ns-train", "click-gaussian-cpu", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for option in ("--pipeline.model.feature-stage-steps", "--pipeline.model.gfl.start-step", "--machine.device-type"):
        assert option in result.stdout


def _with_model(config, **changes):
    """``config`` with its model's fields changed (built again, so its __post_init__ checks run)."""
    model = dataclasses.replace(config.pipeline.model, **changes)
    return dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, model=model))


def test_cpu_preset_is_the_readme_cpu_schedule_and_nothing_else():
    from method_configs.click_gaussian import click_gaussian_config, click_gaussian_cpu_config

    cpu = click_gaussian_cpu_config()
    model = cpu.pipeline.model
    assert cpu.machine.device_type == "cpu" and cpu.vis == "tensorboard"
    assert (model.rgb_stage_steps, model.feature_stage_steps, model.num_downscales) == (1000, 400, 0)
    assert model.losses.num_sampled_pixels == 2048
    assert (model.gfl.enabled, model.gfl.start_step, model.gfl.update_every) == (True, 200, 100)
    assert cpu.max_num_iterations == 1400 and cpu.optimizers["means"]["scheduler"].max_steps == 1000
    assert (cpu.steps_per_eval_image, cpu.steps_per_eval_all_images, cpu.steps_per_save) == (500, 100000, 500)

    gpu = click_gaussian_config()
    default = gpu.pipeline.model
    back = _with_model(cpu, rgb_stage_steps=default.rgb_stage_steps, feature_stage_steps=default.feature_stage_steps,
                       num_downscales=default.num_downscales, losses=default.losses, gfl=default.gfl)
    back = dataclasses.replace(back, method_name=gpu.method_name, machine=gpu.machine, vis=gpu.vis,
                               steps_per_eval_image=gpu.steps_per_eval_image, steps_per_save=gpu.steps_per_save,
                               steps_per_eval_all_images=gpu.steps_per_eval_all_images)
    assert back == gpu, "the cpu preset states only what differs from click-gaussian"


@pytest.mark.parametrize("steps", [3, 10, 400, 3000])
def test_gfl_of_the_cpu_preset_runs_inside_any_feature_stage(steps):
    from method_configs.click_gaussian import click_gaussian_cpu_config, gfl_inside_feature_stage

    gfl = gfl_inside_feature_stage(steps)
    assert 0 < gfl.start_step < steps - 1 and gfl.update_every >= 1
    config = _with_model(click_gaussian_cpu_config(), feature_stage_steps=steps, gfl=gfl)  # not refused
    assert config.max_num_iterations == 1000 + steps


def test_contradictory_flags_are_refused_naming_the_fix():
    import yaml

    from method_configs.click_gaussian import click_gaussian_cpu_config

    cpu = click_gaussian_cpu_config()
    with pytest.raises(ValueError, match=r"--max-num-iterations 5000 contradicts the run length, 1400 steps "
                                         r".*--pipeline\.model\.rgb-stage-steps and --pipeline\.model\.feature-stage"):
        dataclasses.replace(cpu, max_num_iterations=5000)
    assert dataclasses.replace(cpu, max_num_iterations=1400).max_num_iterations == 1400, "its own length agrees"
    assert _with_model(cpu, rgb_stage_steps=50).max_num_iterations == 450, "changed stages set the run length"
    with pytest.raises(ValueError, match=r"--max-num-iterations 5000 .*400 steps \(feature-stage-steps\)"):
        dataclasses.replace(_with_model(cpu, init_ply=Path("scene.ply")), max_num_iterations=5000)

    for steps in (150, 200, 201):  # GFL's start (200) at or past the feature stage's end or its last step
        with pytest.raises(ValueError, match=rf"--pipeline\.model\.gfl\.start-step 200 is not before the last "
                                             rf"step of the feature stage \(--pipeline\.model\.feature-stage-steps "
                                             rf"{steps}\).*--pipeline\.model\.gfl\.start-step {steps // 2}"):
            _with_model(cpu, feature_stage_steps=steps)
    assert _with_model(cpu, feature_stage_steps=202).max_num_iterations == 1202
    assert _with_model(cpu, feature_stage_steps=150, gfl=dataclasses.replace(cpu.pipeline.model.gfl, enabled=False))
    assert _with_model(cpu, feature_stage_steps=0).max_num_iterations == 1000, "an RGB-only run has no GFL to time"

    saved = yaml.dump(cpu).replace("feature_stage_steps: 400", "feature_stage_steps: 150")
    assert yaml.load(saved, Loader=yaml.Loader).pipeline.model.feature_stage_steps == 150, "a saved run still loads"


def test_ns_train_refuses_contradictory_flags(capsys):
    """The checks as ns-train's command line (tyro) runs them: a message naming the fix, nothing trained."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    def parse(*args: str):
        return tyro.cli(AnnotatedBaseConfigUnion, args=["click-gaussian-cpu", *args])

    assert parse("--pipeline.model.feature-stage-steps", "600").max_num_iterations == 1600
    for args, fix in ((["--max-num-iterations", "5000"], "--pipeline.model.rgb-stage-steps"),
                      (["--pipeline.model.feature-stage-steps", "150"], "--pipeline.model.gfl.enabled")):
        with pytest.raises(SystemExit):
            parse(*args)
        captured = capsys.readouterr()
        assert fix in captured.out + captured.err


def test_feature_stage_from_ply_separates_objects(tiny_scene, tmp_path):
    config = make_trainer_config(tiny_scene.root, tmp_path, init_ply=tiny_scene.scene_ply_path,
                                 feature_stage_steps=300)
    config_path = train(config)

    from clickgs_ns.io.splat_files import load_splat_ply
    from clickgs_ns.segment.run import load_run

    scene = load_run(config_path)
    model = scene.model
    labels = np.load(tiny_scene.labels_path)
    objects = torch.from_numpy(labels["object_id"]).long()
    assert model.num_points == len(objects), "the feature stage must not add or remove Gaussians"
    # the splat is frozen and moved into nerfstudio's frame: scales differ by the dataparser scale only
    ply = load_splat_ply(tiny_scene.scene_ply_path)
    scale = float(scene.pipeline.datamanager.train_dataparser_outputs.dataparser_scale)
    torch.testing.assert_close(model.scales.detach(), ply["scales"] + np.log(scale), atol=1e-5, rtol=0)

    coarse = torch.nn.functional.normalize(model.click_features.detach()[:, :12], dim=-1)
    generator = torch.Generator().manual_seed(0)
    i, j = (torch.randint(len(coarse), (40000,), generator=generator) for _ in range(2))
    cosine = (coarse[i] * coarse[j]).sum(-1)
    same = objects[i] == objects[j]
    same_mean, different_mean = cosine[same].mean().item(), cosine[~same].mean().item()
    print(f"coarse cosine: same object {same_mean:.3f}, different objects {different_mean:.3f}")
    assert different_mean < config.pipeline.model.losses.coarse_margin
    assert same_mean > 0.8

    outputs = scene.render(0)
    assert outputs["coarse_features"].shape == (72, 96, 12) and outputs["fine_features"].shape == (72, 96, 24)
    result = run(BIN / "clickgs", "render-features", "--load-config", config_path, "--output-dir", tmp_path / "pca")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "pca").glob("*.png"))) == len(scene.image_paths) == 11  # 90% train split


def test_ns_train_runs_both_stages_and_resumes(tiny_scene, tmp_path):
    common = ["--data", tiny_scene.root, "--output-dir", tmp_path, "--timestamp", "run", "--machine.device-type",
              "cpu", "--vis", "tensorboard", "--pipeline.model.rgb-stage-steps", "60",
              "--pipeline.model.num-downscales", "0", "--pipeline.model.warmup-length", "10",
              "--pipeline.model.refine-every", "10", "--pipeline.model.losses.num-sampled-pixels", "512",
              "--pipeline.model.gfl.enabled", "False",
              "--steps-per-save", "20", "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000"]
    first = run(BIN / "ns-train", "click-gaussian", *common, "--pipeline.model.feature-stage-steps", "10")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = tmp_path / tiny_scene.root.name / "click-gaussian" / "run"
    checkpoint = torch.load(run_dir / "nerfstudio_models" / "step-000000069.ckpt", map_location="cpu")  # weights_only
    state = checkpoint["pipeline"]
    num_points = state["_model.gauss_params.means"].shape[0]
    assert state["_model.gauss_params.click_features"].shape == (num_points, 24)
    assert num_points != 400, "the RGB stage densifies or prunes the seed points"

    resumed = run(BIN / "ns-train", "click-gaussian", *common, "--pipeline.model.feature-stage-steps", "20",
                  "--load-dir", run_dir / "nerfstudio_models")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    final = torch.load(run_dir / "nerfstudio_models" / "step-000000079.ckpt", map_location="cpu")["pipeline"]
    geometry_keys = [k for k in final if k.startswith("_model.gauss_params.") and not k.endswith(".click_features")]
    for key in geometry_keys:  # frozen in the feature stage
        torch.testing.assert_close(final[key], state[key])
    assert not torch.equal(final["_model.gauss_params.click_features"], state["_model.gauss_params.click_features"])


def _copy_scene(scene, tmp_path) -> Path:
    root = tmp_path / "scene"
    shutil.copytree(scene.root, root)
    return root


def test_missing_masks_stop_with_both_ways_forward(tiny_scene, tmp_path):
    from clickgs_ns.io.id_maps import MaskFileError

    root = _copy_scene(tiny_scene, tmp_path)
    (root / "clickgs_masks" / "frame_00003.npz").unlink()
    config = make_trainer_config(root, tmp_path / "out", init_ply=root / "scene.ply", feature_stage_steps=1)
    with pytest.raises(MaskFileError, match=r"frame_00003\.npz.*sam-checkpoint.*documented format"):
        config.pipeline.setup(device="cpu")


def test_wrongly_sized_mask_names_both_sizes(tiny_scene, tmp_path):
    from clickgs_ns.io.id_maps import MaskFileError, write_id_maps

    root = _copy_scene(tiny_scene, tmp_path)
    write_id_maps(root / "clickgs_masks" / "frame_00002.npz", np.zeros((10, 20)), np.zeros((10, 20)))
    config = make_trainer_config(root, tmp_path / "out", init_ply=root / "scene.ply", feature_stage_steps=1)
    with pytest.raises(MaskFileError, match=r"frame_00002\.npz is 20x10 \(WxH\) but .*frame_00002.png is 96x72"):
        config.pipeline.setup(device="cpu")


def test_id_maps_follow_the_training_resolution(tiny_scene, tmp_path):
    config = make_trainer_config(tiny_scene.root, tmp_path, init_ply=tiny_scene.scene_ply_path, feature_stage_steps=1)
    config.pipeline.datamanager.camera_res_scale_factor = 0.5
    pipeline = config.pipeline.setup(device="cpu")
    camera, batch = pipeline.datamanager.next_train(0)
    assert batch["coarse_ids"].shape == batch["image"].shape[:2] == (36, 48)
    assert batch["coarse_ids"].dtype == torch.int8  # a handful of segments, renumbered, fit the smallest type
    from clickgs_ns.io.id_maps import renumber_ids

    index = camera.metadata["cam_idx"]
    full = np.load(tiny_scene.mask_paths[index])["coarse"]
    np.testing.assert_array_equal(batch["coarse_ids"].numpy(), renumber_ids(full[1::2, 1::2]))
