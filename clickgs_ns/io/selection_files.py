"""Selection files: a selection of Gaussians saved as ``.npy`` (a bool mask [N] or integer indices [M]).

Written by the viewer's Export button, ``clickgs segment`` and the Python API; read by them, by the viewer's Load
selection button (``latest_selection`` gives its default: the run folder's newest) and by the pipeline when
``ns-export`` runs with ``CLICKGS_SELECTION``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from clickgs_ns.io.atomic import atomic_path


def save_selection(path: Path, mask: Tensor) -> None:
    """Save a selection [N] bool as a .npy bool array (the model's count travels with it) at exactly ``path``,
    whatever its suffix."""
    mask = torch.as_tensor(mask).cpu()
    if mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError(f"A selection is a bool tensor [N], got {mask.dtype} {list(mask.shape)}")
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as file:
        np.save(file, mask.numpy())  # to a file object: numpy adds no ".npy" to the temporary name


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


def selection_size(path: Path) -> Optional[int]:
    """N when ``path`` is a .npy holding a bool mask [N] (as ``save_selection`` writes it), else None: export sidecars
    (``<stem>.labels.npy``: int32 labels), temporary files of a writer at work (``.NAME...``) and anything unreadable
    are not selections. Reads the file's header only."""
    path = Path(path)
    if path.suffix != ".npy" or path.name.startswith(".") or path.name.endswith(".labels.npy"):
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return int(array.shape[0]) if array.dtype == np.bool_ and array.ndim == 1 else None


def latest_selection(folder: Path, num_gaussians: Optional[int] = None) -> Optional[Path]:
    """The most recently written selection file under ``folder`` (subfolders included), None when there is none.

    Args:
        num_gaussians: only selections of this many Gaussians (a run's count); None: any.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.rglob("*.npy"):
        size = selection_size(path) if path.is_file() else None
        if size is not None and (num_gaussians is None or size == num_gaussians):
            found.append(path)
    return max(found, key=lambda path: path.stat().st_mtime, default=None)
