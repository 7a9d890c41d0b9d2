"""benchmarks/bench_scale.py at a tiny size: its synthetic id maps match the splat, each stage of a run measures
in-process, the table comes from fresh processes, and a stage that runs out of memory is reported as not fitting."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_scale  # noqa: E402

TINY = dict(gaussians=3000, views=2, candidates=16, size="64x36", idmap_views=3, gfl_views=3, sampled_pixels=512,
            vote_pass_megabytes=256.0, device="cpu", threads=None, labels_out=None)


def test_id_maps_label_pixels_as_the_rendered_features_do():
    model, c2w = bench_scale.synthetic_model(20000, 1, 100)
    rendered = model.candidate_label_maps(bench_scale.cameras_of(c2w, 160, 90))[0, ..., 0]  # [H, W], 100 = none
    coarse, fine = (torch.from_numpy(ids) for ids in bench_scale.synthetic_id_maps(c2w[0], 160, 90, 10))
    shown = (rendered < 100) & (coarse >= 0)
    assert shown.float().mean() > 0.8
    assert (rendered[shown] == coarse[shown]).float().mean() > 0.8, "the id maps show the splat's cells"
    assert torch.equal(fine // 2, coarse), "each fine segment is half of a coarse one"


WHAT_EACH_STAGE_DID = {
    "idmaps": "held: ",
    "feature_step": "gfl_loss",  # the feature stage with GFL's loss on
    "gfl": " coarse and ",
    "click": " Gaussians selected",
    "everything": " segments",
    "export": "1 .ply file(s), 3000 Gaussians",  # the whole splat
    "export_segments": " .ply file(s), 3000 Gaussians",
}
"""A part of each stage's note that says it did its work on the TINY scene."""


@pytest.mark.parametrize("stage", list(WHAT_EACH_STAGE_DID))
def test_stage_measures_time_and_memory(stage, tmp_path, capsys):
    args = argparse.Namespace(stage=stage, stage_views=None, masks_dir=None, **TINY)
    args.stage_views = bench_scale.stage_views(args, stage)
    if stage in bench_scale.MASK_STAGES:
        width, height = bench_scale.size_of(args.size)
        args.masks_dir = bench_scale.write_synthetic_dataset(tmp_path / "data", args.stage_views, width, height, 4)
    bench_scale.run_stage(args)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "does_not_fit" not in result, result
    assert result["seconds"] > 0 and result["gib"] >= 0 and result["gpu_gib"] is None
    assert WHAT_EACH_STAGE_DID[stage] in result["note"], result["note"]
    assert not result["note"].startswith("0 "), f"the stage found nothing to work on: {result['note']}"


def test_table_comes_from_fresh_processes():
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--gaussians", "2000", "--candidates",
               "16", "--sizes", "64x36", "--idmap-views", "3", "--stages", "idmaps", "everything"]
    lines = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert lines[0].startswith("# ") and "CPUs" in lines[0] and "torch threads" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith(("| stage", "| ---"))]
    assert [row[0] for row in rows] == ["| " + bench_scale.STAGE_TITLES["idmaps"],
                                        "| " + bench_scale.STAGE_TITLES["everything"]]
    assert all(float(row[3]) >= 0 for row in rows), "every row has its seconds (not failed, not does not fit)"


def test_a_stage_out_of_memory_does_not_fit(capsys, monkeypatch):
    def too_big(args, device):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 29000000000 bytes.")

    monkeypatch.setitem(bench_scale.STAGE_FUNCTIONS, "gfl", too_big)
    bench_scale.run_stage(argparse.Namespace(stage="gfl", threads=None, device="cpu"))
    result = json.loads(capsys.readouterr().out.strip())
    assert "not enough memory" in result["does_not_fit"]
    assert "| does not fit |" in bench_scale.table_row("gfl", "1920x1080", 200, result)
    assert not bench_scale.is_out_of_memory(RuntimeError("shape mismatch")), "other errors are not memory"
    assert bench_scale.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 27.00 GiB"))


def test_a_bare_memory_error_does_not_fit(capsys, monkeypatch):
    def too_big(args, device):
        raise MemoryError()  # what Python raises without a message

    monkeypatch.setitem(bench_scale.STAGE_FUNCTIONS, "gfl", too_big)
    bench_scale.run_stage(argparse.Namespace(stage="gfl", threads=None, device="cpu"))
    assert json.loads(capsys.readouterr().out.strip())["does_not_fit"] == "MemoryError: "


def test_memory_sampling_stops_when_the_stage_fails():
    def too_big():
        raise MemoryError()

    before = threading.active_count()
    with pytest.raises(MemoryError):
        bench_scale.peak_rss(too_big)
    assert threading.active_count() == before, "the 2 ms RSS sampler outlived the failed stage"
