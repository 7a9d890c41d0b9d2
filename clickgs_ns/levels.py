"""The two feature levels, coarse (objects) and fine (their parts): their names, the check, the channels of a
feature each level reads and the names of each level's per-Gaussian state. The one owner of the level; every other
module asks it.

A Gaussian's click feature f [D] (``feature_dim``, 24) carries both levels: the coarse feature is its first
``coarse_dim`` channels (12), the fine feature the whole vector, i.e. the coarse channels followed by the channels
only the fine level reads (``fine_only_channels``). Rendered feature maps [..., D] split the same way.

Each level has three per-Gaussian tensors on the model, named ``{level}_{state}`` (``level_state``): its global
candidates [C, D_l], each Gaussian's candidate label [N] and its segment label [N] (``LEVEL_STATES``).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Tuple, TypeVar

Level = Literal["coarse", "fine"]
LEVELS: Tuple[str, ...] = ("coarse", "fine")
"""The two feature levels: objects (coarse id maps, the first ``coarse_dim`` feature channels) and their parts
(fine id maps, every channel). Every level name in the package is checked against this."""

LEVEL_STATES: Tuple[str, ...] = ("candidates", "labels", "segment_labels")
"""Per-level state the model holds as buffers named ``{level}_{state}``: global candidates [C, D_l], candidate
labels [N] and segment labels [N] (-1: none)."""

Array = TypeVar("Array")  # a torch Tensor or a numpy array: anything sliced with [..., a:b]


def check_level(level: str) -> str:
    """``level`` if it names a feature level, else a ValueError that lists the levels."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return level


def level_channels(features: Array, level: str, coarse_dim: int) -> Array:
    """The channels [..., D_l] of ``features`` [..., D] that ``level`` reads: the first ``coarse_dim`` for "coarse",
    all D for "fine" (a view, not a copy)."""
    check_level(level)
    return features[..., :coarse_dim] if level == "coarse" else features  # type: ignore[index]


def fine_only_channels(features: Array, coarse_dim: int) -> Array:
    """The channels [..., D - coarse_dim] that only the fine level reads (the paper's f-bar)."""
    return features[..., coarse_dim:]  # type: ignore[index]


def level_dim(level: str, coarse_dim: int, feature_dim: int) -> int:
    """D_l: how many channels ``level`` reads."""
    return coarse_dim if check_level(level) == "coarse" else feature_dim


def state_name(level: str, state: str) -> str:
    """The model attribute that holds ``state`` (one of ``LEVEL_STATES``) of ``level``: "coarse_labels", ..."""
    if state not in LEVEL_STATES:
        raise ValueError(f"state must be one of {', '.join(LEVEL_STATES)}, got {state!r}")
    return f"{check_level(level)}_{state}"


def level_state(model: Any, level: str, state: str) -> Optional[Any]:
    """``model``'s ``state`` tensor of ``level`` (``state_name``), None when the model has none."""
    return getattr(model, state_name(level, state), None)
