"""Tests of clickgs_ns/levels.py: the level's names, its check, its channels and its state's names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clickgs_ns.levels import (
    LEVELS,
    check_level,
    fine_only_channels,
    level_channels,
    level_dim,
    level_state,
    state_name,
)


def test_check_level_names_the_levels():
    assert [check_level(level) for level in LEVELS] == ["coarse", "fine"]
    with pytest.raises(ValueError, match="coarse, fine.*'object'"):
        check_level("object")


def test_level_channels_split_a_feature_into_its_levels():
    features = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)  # [B, H, D] with D = 5
    coarse = level_channels(features, "coarse", coarse_dim=2)
    assert coarse.shape == (2, 3, 2) and torch.equal(coarse, features[..., :2])
    assert level_channels(features, "fine", coarse_dim=2) is features
    assert torch.equal(fine_only_channels(features, 2), features[..., 2:])
    assert torch.equal(torch.cat([coarse, fine_only_channels(features, 2)], dim=-1), features)
    coarse[0, 0, 0] = -1.0  # a view: the model's render outputs share the rendered map's memory
    assert float(features[0, 0, 0]) == -1.0
    assert level_channels(np.ones((4, 5)), "coarse", 2).shape == (4, 2)  # numpy arrays too
    with pytest.raises(ValueError, match="level must be one of"):
        level_channels(features, "Coarse", 2)


def test_level_dim_and_state_names():
    assert (level_dim("coarse", 12, 24), level_dim("fine", 12, 24)) == (12, 24)
    assert state_name("fine", "segment_labels") == "fine_segment_labels"
    with pytest.raises(ValueError, match="state must be one of candidates, labels, segment_labels"):
        state_name("fine", "features")

    class Model:
        coarse_labels = torch.tensor([0, -1])

    assert torch.equal(level_state(Model(), "coarse", "labels"), torch.tensor([0, -1]))
    assert level_state(Model(), "fine", "labels") is None
