"""Existing splats as a starting point: standard 3DGS .ply files and splatfacto checkpoints, read as
splatfacto parameters (``SplatParams``). Moving them into nerfstudio's training frame is
``clickgs_ns.render.transform.transform_splat``.

Checkpoints are read with ``torch.load(weights_only=True)`` (``load_checkpoint``): torch's restricted unpickler,
which builds tensors, numbers and containers and never runs code named by the file. nerfstudio's Trainer saves
``{"step": int, "pipeline": state_dict, "optimizers": {name: state_dict}, "schedulers": {name: state_dict},
"scalers": dict}``: tensors, dicts, lists, tuples, numbers, strings and None, plus numpy scalars where its stock
scheduler computed learning rates with numpy (clickgs_ns/method/schedulers.py), which are allowed here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, List

import torch
from torch import Tensor

from clickgs_ns.io.ply import read_gaussian_ply

SplatParams = Dict[str, Tensor]
"""Splatfacto's parameters: means [N,3], scales [N,3] (log), quats [N,4] (wxyz), features_dc [N,3] (SH DC),
features_rest [N,K-1,3], opacities [N,1] (logit); optionally click_features [N,D]."""

SPLAT_KEYS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")
"""The keys of a splat's geometry and colour: the parameters a 3DGS .ply holds."""


def load_splat_ply(path: Path) -> SplatParams:
    """A standard 3DGS .ply as splatfacto parameters (in the .ply's own frame)."""
    ply = read_gaussian_ply(Path(path))
    tensor = lambda array: torch.as_tensor(array, dtype=torch.float32)  # noqa: E731
    return {
        "means": tensor(ply.means),
        "scales": tensor(ply.scales),
        "quats": tensor(ply.quats),
        "features_dc": tensor(ply.features_dc),
        "features_rest": tensor(ply.features_rest).reshape(len(ply.means), -1, 3),
        "opacities": tensor(ply.opacities).reshape(-1, 1),
    }


class CheckpointLoadError(ValueError):
    """A checkpoint that cannot be loaded safely (it holds more than tensors, numbers and containers) or at all."""


def numpy_scalar_globals() -> List[Any]:
    """What ``weights_only`` loading needs to rebuild numpy scalars of numeric types (a learning rate saved as
    numpy.float64): numpy's scalar constructor, under its numpy 1 and numpy 2 names, and the numeric dtypes. It
    makes a number from a dtype and its bytes; object dtypes are not allowed."""
    import numpy as np
    from numpy._core.multiarray import scalar  # numpy >= 1.26 (numpy.core.multiarray in numpy 1 pickles)

    dtypes = [type(np.dtype(code)) for code in "?bhilqBHILQefdFD"]
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype, *dtypes]


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """A nerfstudio checkpoint's contents, read with ``torch.load(weights_only=True)`` (module doc) on the CPU.

    Raises CheckpointLoadError naming the file when it holds anything else (an object whose class the file names:
    loading it would run code) or is not a readable torch checkpoint.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = unpickler_reason(err)
        raise CheckpointLoadError(
            f"Checkpoint {path} cannot be loaded safely: it holds more than tensors, numbers and containers, and "
            f"loading it would run code named by the file ({detail or err}). Only if you trust "
            "the file, keep its weights in a new one: python -c \"import torch; s = torch.load('IN.ckpt', "
            "weights_only=False); torch.save({'step': s['step'], 'pipeline': dict(s['pipeline'])}, 'OUT.ckpt')\" "
            "and give OUT.ckpt."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointLoadError(f"Checkpoint {path} is not a readable torch checkpoint ({err}); it may be "
                                  "truncated: give another step-*.ckpt of the run.") from err
    if not isinstance(state, dict):
        raise CheckpointLoadError(f"Checkpoint {path} holds a {type(state).__name__}, not a nerfstudio checkpoint "
                                  "(a dict with 'pipeline').")
    return state


def unpickler_reason(err: Exception) -> str:
    """The line of torch's weights-only refusal that names what the file holds ("... GLOBAL module.name ..." or
    "Can only build ... but got <class ...>"), or "" when there is none."""
    for line in str(err).splitlines():
        if "GLOBAL" in line or "Can only build" in line:
            return line.replace("WeightsUnpickler error:", "").strip().rstrip(".")
    return ""


def load_splat_checkpoint(path: Path) -> SplatParams:
    """The Gaussians of a splatfacto or click-gaussian checkpoint (.ckpt), in nerfstudio's training frame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist; give the path of a step-*.ckpt file "
                                "from a splatfacto run's nerfstudio_models/ folder.")
    state = load_checkpoint(path)
    prefix = "_model.gauss_params."
    params = {key[len(prefix):]: value for key, value in state.get("pipeline", {}).items() if key.startswith(prefix)}
    if "means" not in params:
        raise ValueError(f"Checkpoint {path} holds no Gaussians ({prefix}means is missing): is it a splatfacto run?")
    return params
