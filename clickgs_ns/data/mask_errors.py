"""The errors and the warning of SAM mask runs (``clickgs masks``, and the datamanager before training).

In a module of their own because every step of a run raises them: loading the model (``sam_models``), the cache and
its shards (``mask_cache``) and the run over a dataset (``sam_masks``).
"""

from __future__ import annotations


class SamCheckpointError(FileNotFoundError):
    """The SAM checkpoint file is missing (this project never downloads weights)."""


class MaskRunError(ValueError):
    """A user-facing problem with a mask run's inputs (dataset folder, shard, checkpoint)."""


class ImageDecodeError(MaskRunError):
    """An image file that cannot be read or decoded."""


class MaskCacheWarning(UserWarning):
    """A cached mask file was unusable (and is recomputed), an image had no SAM segment, or an image could not be
    decoded (and is skipped)."""
