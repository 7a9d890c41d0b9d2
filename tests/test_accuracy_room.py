"""End-to-end click accuracy on a small scene of the "room" family, the way a user gets it: the splat trained from
the dataset's seed points through the RGB stage (densified, fuzzy, partly hidden Gaussians), noisy SAM-like masks
whose floor segments change from view to view, clicks in training views scored on held-out views only.
(benchmarks/bench_accuracy.py is the full-size version of this test.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from clickgs_ns.method.gfl import GFLConfig
from conftest import make_trainer_config, train

COARSE_FLOOR = 0.80
"""Coarse mIoU with the view-vote labels: observed 0.921 (mBIoU 0.761); the run is seeded as ns-train seeds it."""
FINE_FLOOR = 0.80
"""Fine mIoU with the view-vote labels: observed 0.929 (mBIoU 0.825)."""


@pytest.fixture(scope="module")
def room_run(tmp_path_factory):
    from clickgs_ns.synth import generate_scene, room_config

    root = tmp_path_factory.mktemp("room_accuracy")
    scene = generate_scene(room_config(num_views=20, image_width=96, image_height=72, num_gaussians=10000,
                                       num_seed_points=2000, prompt_train_fraction=0.8), root / "scene")
    config = make_trainer_config(scene.root, root / "outputs", rgb_stage_steps=600, feature_stage_steps=300,
                                 gfl=GFLConfig(start_step=100, update_every=50))
    config.pipeline.datamanager.dataparser.train_split_fraction = 0.8  # the split the prompts were made for
    return scene, train(config)


def evaluate(config_path: Path, scene, nearest_feature: bool = False):
    from clickgs_ns.app.api import load
    from clickgs_ns.segment.evaluate import evaluate_prompts, load_prompts

    loaded = load(config_path)
    if nearest_feature:
        loaded.model.update_labels()  # the paper's rule: each Gaussian's nearest candidate
        loaded.refresh()
    return loaded, evaluate_prompts(loaded, load_prompts(scene.prompts_path), scene.prompts_path)


def test_view_vote_labels_reach_the_floors(room_run):
    scene, config_path = room_run
    loaded, report = evaluate(config_path, scene)
    summary = report["summary"]
    print(f"room: coarse mIoU {summary['coarse']['mIoU']:.3f} mBIoU {summary['coarse']['mBIoU']:.3f}, fine mIoU "
          f"{summary['fine']['mIoU']:.3f} mBIoU {summary['fine']['mBIoU']:.3f}; {report['convergence_summary']}")
    assert report["labels"] == {"coarse": "saved (lifted from the training views)",
                                "fine": "saved (lifted from the training views)"}
    assert summary["coarse"]["num_prompts"] >= 4 and summary["fine"]["num_prompts"] >= 4
    assert {t["split"] for r in report["prompts"] for t in r["targets"]} == {"eval"}, "held-out targets only"
    assert summary["coarse"]["mIoU"] > COARSE_FLOOR and summary["fine"]["mIoU"] > FINE_FLOOR
    everything = loaded.segmentation("coarse")
    # -1 only for Gaussians that no training view shows near a candidate: here those of the plain white background,
    # which no mask covers (observed: 75-83% of the Gaussians get a segment; the share varies with the run's torch
    # threads, which the trainer picks by the machine's load)
    assert (everything.labels >= 0).float().mean() > 0.65 and "no training view shows" in everything.message


def test_view_vote_labels_beat_the_nearest_feature_rule(room_run):
    scene, config_path = room_run
    _, vote = evaluate(config_path, scene)
    _, nearest = evaluate(config_path, scene, nearest_feature=True)
    print(f"nearest-feature labels: coarse {nearest['summary']['coarse']['mIoU']:.3f}, fine "
          f"{nearest['summary']['fine']['mIoU']:.3f}")
    assert vote["summary"]["all"]["mIoU"] > nearest["summary"]["all"]["mIoU"] + 0.05
