"""Selection files: a selection of Gaussians saved as ``.npy`` (a bool mask [N] or integer indices [M]).

Written by the viewer's Export button, ``clickgs segment`` and the Python API; read by them and by the pipeline
when ``ns-export`` runs with ``CLICKGS_SELECTION``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clickgs_ns.io.atomic import atomic_path


def save_selection(path: Path, mask: Tensor) -> None:
    """Save a selection [N] bool as a .npy bool array (the model's count travels with it)."""
    mask = torch.as_tensor(mask).cpu()
    if mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError(f"A selection is a bool tensor [N], got {mask.dtype} {list(mask.shape)}")
    with atomic_path(Path(path)) as tmp:
        np.save(tmp, mask.numpy())


def load_selection(path: Path, num_gaussians: int) -> Tensor:
    """A selection [N] bool from a .npy of a bool mask [N] or of Gaussian indices (any integer type)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Selection file {path} does not exist")
    array = np.load(path, allow_pickle=False)
    if array.dtype == np.bool_:
        if array.shape != (num_gaussians,):
            raise ValueError(f"{path} holds a selection of {array.size} Gaussians (shape {list(array.shape)}); "
                             f"the model has {num_gaussians}: it was saved for another model or checkpoint.")
        return torch.from_numpy(array.copy())
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise ValueError(f"{path} must hold a bool mask [N] or integer indices [M], got {array.dtype} "
                         f"{list(array.shape)}")
    if array.size and (array.min() < 0 or array.max() >= num_gaussians):
        raise ValueError(f"{path} holds Gaussian indices in [{array.min()}, {array.max()}]; the model has "
                         f"{num_gaussians} Gaussians: it was saved for another model or checkpoint.")
    mask = torch.zeros(num_gaussians, dtype=torch.bool)
    mask[torch.from_numpy(array.astype(np.int64))] = True
    return mask
