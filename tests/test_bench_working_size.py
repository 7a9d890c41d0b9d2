"""benchmarks/bench_working_size.py: its per-image scores have known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_working_size import segment_scores  # noqa: E402


def test_segment_scores_known_answers():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:8, 2:8] = True  # 36 pixels
    ids = np.full((10, 10), -1, dtype=np.int32)
    ids[2:8, 2:5] = 0  # 18 pixels, all inside the object
    ids[2:8, 5:9] = 1  # 24 pixels, 18 inside: mostly inside
    ids[0, :] = 2  # 10 pixels outside
    scores = segment_scores(ids, gt)
    assert scores["segments"] == 3
    assert scores["best_iou"] == pytest.approx(0.5)  # segment 0: 18 / 36; segment 1: 18 / (24 + 36 - 18)
    assert scores["best_biou"] < scores["best_iou"]  # half the square's contour is missing
    assert scores["union_iou"] == pytest.approx(36 / 42)  # segments 0 and 1: 42 pixels holding the 36
    empty = segment_scores(np.full((10, 10), -1, dtype=np.int32), gt)
    assert empty["segments"] == 0 and empty["best_iou"] == 0.0 and empty["union_iou"] == 0.0
