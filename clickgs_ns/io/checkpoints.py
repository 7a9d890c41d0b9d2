"""nerfstudio checkpoints written atomically.

nerfstudio's Trainer writes ``nerfstudio_models/step-NNNNNNNNN.ckpt`` in place: a process killed while writing
leaves a truncated checkpoint that the next resume fails on. Here the file is written beside the checkpoint folder
(nerfstudio parses the name of every file inside it as a step) and renamed into place once complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch


def save_checkpoint_atomic(state: Dict[str, Any], path: Path) -> None:
    """``torch.save(state, path)``, atomically: ``path`` is either as it was or the complete new checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent.parent)
    os.close(fd)
    try:
        torch.save(state, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
