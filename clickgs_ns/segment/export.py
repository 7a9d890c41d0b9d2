"""Export selected Gaussians as standard 3DGS .ply files in the dataset's own coordinate frame, with labels.

``export_gaussians`` writes one .ply of a selection (``clickgs_ns.io.ply`` format, which every splat viewer opens)
plus two sidecars beside it::

    <stem>.ply            the selected Gaussians, moved back from nerfstudio's training frame into the frame of
                          the dataset (transforms.json) with ``transform_splat(..., inverse=True)``; an extra int32
                          property ``label`` per Gaussian
    <stem>.labels.npy     int32 [M]: the same labels, aligned with the .ply's vertices
    <stem>.export.json    where they came from: ``indices`` [M] of the exported Gaussians in the model, counts,
                          the dataparser transform and scale that were undone

``export_segments`` writes one such .ply per segment id (``segment_<id>.ply``), then ``segments.json`` listing them,
and removes the segment files an earlier export left in the folder. Rows with a non-finite value are dropped (and
counted). Selections are kept as .npy files by ``clickgs_ns.io.selection_files``.

Consistency: every file is written atomically, and the .export.json is the commit marker of its .ply and
.labels.npy: it is removed before they are replaced and written after them, so whenever ``<stem>.export.json``
exists, the .ply and .labels.npy beside it are the ones it describes (a crash in between leaves no .export.json:
export again). ``segments.json`` is likewise removed first and written last in a folder of segments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from clickgs_ns.io.atomic import atomic_paths, atomic_write_text
from clickgs_ns.io.splat_files import SPLAT_KEYS


@dataclass
class ExportResult:
    """What one .ply export wrote."""

    path: Path
    """The .ply file."""
    num_exported: int
    """Gaussians in the file."""
    num_dropped_nonfinite: int
    """Selected Gaussians left out because a parameter was NaN or infinite."""
    indices: Tensor
    """[M] long: index in the model of each exported Gaussian, in file order."""
    labels: Tensor
    """[M] int32: label of each exported Gaussian, in file order."""


SEGMENTS_INDEX = "segments.json"
"""The index ``export_segments`` writes into its folder."""

SEGMENT_FILE = re.compile(r"segment_\d+\.ply")
"""The name of a .ply that ``export_segments`` writes."""


def sidecar_paths(path: Path) -> Dict[str, Path]:
    """The sidecar files of the export ``path`` (``<stem>.ply``): "labels" (.labels.npy) and "json"
    (.export.json)."""
    path = Path(path)
    stem = path.with_suffix("")
    return {"labels": Path(f"{stem}.labels.npy"), "json": Path(f"{stem}.export.json")}


def splat_params(model: Any) -> Dict[str, Tensor]:
    """The model's splat (the six splatfacto tensors, plus ``click_features`` [N, F] when present), detached on the
    CPU."""
    gauss_params = model.gauss_params
    missing = [key for key in SPLAT_KEYS if key not in gauss_params]
    if missing:
        raise ValueError(f"The model has no {missing}: not a splatfacto / click-gaussian model")
    keys = SPLAT_KEYS + (("click_features",) if "click_features" in gauss_params else ())
    return {key: gauss_params[key].detach().float().cpu() for key in keys}


def finite_rows(params: Dict[str, Tensor]) -> Tensor:
    """[N] bool: Gaussians whose every parameter is finite."""
    n = params["means"].shape[0]
    finite = torch.ones(n, dtype=torch.bool)
    for value in params.values():
        finite &= torch.isfinite(value.reshape(n, -1)).all(dim=-1)
    return finite


def dataset_frame(datamanager: Any) -> Tuple[Optional[Tensor], float]:
    """The dataparser's ``transform`` [3, 4] and ``scale`` of a run (its datamanager), which map the dataset's frame
    (transforms.json) to nerfstudio's training frame; (None, 1.0) when the run has none (exports then stay in the
    training frame)."""
    outputs = getattr(datamanager, "train_dataparser_outputs", None)
    if outputs is None:
        return None, 1.0
    return outputs.dataparser_transform, float(outputs.dataparser_scale)


def to_dataset_frame(params: Dict[str, Tensor], dataparser_transform: Optional[Tensor],
                     dataparser_scale: float) -> Dict[str, Tensor]:
    """Move ``params`` from nerfstudio's training frame back to the dataset's frame (identity when
    ``dataparser_transform`` is None)."""
    from clickgs_ns.render import transform_splat

    if dataparser_transform is None:
        return dict(params)
    transform = torch.as_tensor(dataparser_transform, dtype=torch.float32).reshape(-1, 4)[:3].cpu()
    return transform_splat(params, transform, float(dataparser_scale), inverse=True)


def _as_mask(mask: Optional[Tensor], num_gaussians: int) -> Tensor:
    if mask is None:
        return torch.ones(num_gaussians, dtype=torch.bool)
    mask = torch.as_tensor(mask).cpu()
    if mask.dtype != torch.bool or mask.shape != (num_gaussians,):
        raise ValueError(f"mask must be a bool tensor [{num_gaussians}], got {mask.dtype} {list(mask.shape)}")
    return mask


def _write(rows: Dict[str, Tensor], model_indices: Tensor, labels: Tensor, path: Path, num_model_gaussians: int,
           num_dropped: int, dataparser_transform: Optional[Tensor], dataparser_scale: float,
           include_features: bool) -> ExportResult:
    """Write Gaussians ``rows`` (already in the dataset frame) with their ``labels`` [M] and sidecars."""
    from clickgs_ns.io.ply import write_gaussian_ply

    path = Path(path)
    m = int(rows["means"].shape[0])
    labels = labels.to(torch.int32).cpu()
    extra = {"label": labels.numpy()}
    if include_features:
        if "click_features" not in rows:
            raise ValueError(f"Cannot write {path} with features: the model has no click_features (not a "
                             "click-gaussian model); export without include_features.")
        for channel in range(rows["click_features"].shape[1]):
            extra[f"feature_{channel}"] = rows["click_features"][:, channel].numpy()
    sidecars = sidecar_paths(path)
    with atomic_paths([path, sidecars["labels"]]) as (ply_tmp, labels_tmp):
        write_gaussian_ply(ply_tmp, rows["means"], rows["scales"], rows["quats"], rows["opacities"].reshape(-1),
                           rows["features_dc"], rows["features_rest"].reshape(m, -1, 3), extra=extra)
        np.save(labels_tmp, labels.numpy())
        sidecars["json"].unlink(missing_ok=True)  # the commit marker goes before its files change (module doc)
    transform = None if dataparser_transform is None else \
        torch.as_tensor(dataparser_transform, dtype=torch.float64).reshape(-1, 4)[:3].tolist()
    info = {
        "ply": path.name,
        "labels_file": sidecars["labels"].name,
        "frame": "dataset" if dataparser_transform is not None else "training",
        "dataparser_transform": transform,
        "dataparser_scale": float(dataparser_scale),
        "num_exported": m,
        "num_model_gaussians": int(num_model_gaussians),
        "num_dropped_nonfinite": int(num_dropped),
        "indices": model_indices.tolist(),
    }
    atomic_write_text(sidecars["json"], json.dumps(info))  # last: the commit marker
    return ExportResult(path, m, int(num_dropped), model_indices, labels)


EXPORT_KINDS = ("selection", "inverse", "segments")
"""What an export of a selection writes (``exported_gaussians``): the selection, everything but it (the scene with
the object removed), or every Gaussian (each labelled by its segment)."""


class NothingToExport(ValueError):
    """An export of ``kind`` that would write no Gaussian."""

    def __init__(self, kind: str, in_crop_box: bool = False):
        empty = {"selection": "the selection is empty", "inverse": "everything is selected",
                 "segments": "the splat is empty"}[kind]
        super().__init__(f"Nothing to export: {empty}{' inside the crop box' if in_crop_box else ''}.")
        self.kind = kind


def exported_gaussians(selection: Tensor, kind: str, inside: Optional[Tensor] = None) -> Tuple[Tensor, int]:
    """The Gaussians [N] bool an export of ``kind`` (``EXPORT_KINDS``) writes for the ``selection`` [N] bool,
    limited to ``inside`` [N] bool (a crop box; None: none), and how many the crop box left out. A
    ``NothingToExport`` when that is no Gaussian."""
    if kind not in EXPORT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(EXPORT_KINDS)}, got {kind!r}")
    wanted = {"selection": selection, "inverse": ~selection, "segments": torch.ones_like(selection)}[kind]
    exported = wanted if inside is None else wanted & inside
    if not bool(exported.any()):
        raise NothingToExport(kind, inside is not None)
    return exported, int(wanted.sum()) - int(exported.sum())


def export_gaussians(
    model: Any,
    mask: Optional[Tensor],
    path: Path,
    dataparser_transform: Optional[Tensor],
    dataparser_scale: float = 1.0,
    labels: Optional[Tensor] = None,
    include_features: bool = False,
) -> ExportResult:
    """Write the selected Gaussians as a standard 3DGS .ply in the dataset's frame, with sidecars (module doc).

    Args:
        model: has ``gauss_params`` with means [N,3], scales [N,3] (log), quats [N,4] (wxyz), features_dc [N,3],
            features_rest [N,K-1,3], opacities [N,1] (logit), optionally click_features [N,F].
        mask: [N] bool selection; None exports every Gaussian.
        path: the .ply to write.
        dataparser_transform: [3, 4] (or [4, 4]) ``dataparser_transform`` of the run; None keeps the training frame.
        dataparser_scale: ``dataparser_scale`` of the run.
        labels: [N] int label per model Gaussian; None labels every exported Gaussian 0.
        include_features: also write the per-Gaussian click features as float properties ``feature_0`` ...
            ``feature_<F-1>`` (an error when the model has none).
    """
    params = splat_params(model)
    n = params["means"].shape[0]
    mask = _as_mask(mask, n)
    if labels is not None and tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
    selected = torch.nonzero(mask).squeeze(-1)
    subset = to_dataset_frame({key: value[selected] for key, value in params.items()}, dataparser_transform,
                              dataparser_scale)
    keep = finite_rows(subset)
    subset_labels = torch.zeros(len(selected), dtype=torch.int32) if labels is None else labels.cpu()[selected]
    return _write({key: value[keep] for key, value in subset.items()}, selected[keep], subset_labels[keep], path,
                  n, int((~keep).sum()), dataparser_transform, dataparser_scale, include_features)


def export_segments(
    model: Any,
    labels: Tensor,
    out_dir: Path,
    dataparser_transform: Optional[Tensor],
    dataparser_scale: float = 1.0,
    min_gaussians: int = 1,
    include_features: bool = False,
) -> List[ExportResult]:
    """One .ply per segment id >= 0 of ``labels`` [N] (``segment_<id>.ply`` in ``out_dir``), plus
    ``segments.json`` listing them. Segments with fewer than ``min_gaussians`` finite Gaussians are skipped.
    The segment files of an earlier export into ``out_dir`` that this one does not rewrite are removed
    (``earlier_segment_files``); no other file is touched."""
    params = splat_params(model)
    n = params["means"].shape[0]
    labels = torch.as_tensor(labels).cpu().long()
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
    world = to_dataset_frame(params, dataparser_transform, dataparser_scale)
    finite = finite_rows(world)
    out_dir = Path(out_dir)
    (out_dir / SEGMENTS_INDEX).unlink(missing_ok=True)  # the folder's commit marker goes first (module doc)
    ids: Sequence[int] = torch.unique(labels[labels >= 0]).tolist()
    width = max(4, len(str(max(ids, default=0))))
    results: List[ExportResult] = []
    for segment in ids:
        in_segment = labels == segment
        indices = torch.nonzero(in_segment & finite).squeeze(-1)
        if len(indices) < max(min_gaussians, 1):
            continue
        path = out_dir / f"segment_{segment:0{width}d}.ply"
        rows = {key: value[indices] for key, value in world.items()}
        results.append(_write(rows, indices, labels[indices], path, n, int((in_segment & ~finite).sum()),
                              dataparser_transform, dataparser_scale, include_features))
    written = {r.path.name for r in results}
    for stale in earlier_segment_files(out_dir):
        if stale.name not in written:
            for file in (stale, *sidecar_paths(stale).values()):
                file.unlink(missing_ok=True)
    index = {"num_model_gaussians": n, "num_unlabelled": int((labels < 0).sum()),
             "segments": [{"id": int(r.labels[0]), "ply": r.path.name, "num_gaussians": r.num_exported}
                          for r in results]}
    atomic_write_text(out_dir / SEGMENTS_INDEX, json.dumps(index, indent=1))
    return results


def earlier_segment_files(out_dir: Path) -> List[Path]:
    """The segment .ply files that an export wrote into ``out_dir``: named ``segment_<digits>.ply`` and described by
    their own .export.json (which names that .ply). Files named so by anything else (no .export.json, or one about
    another file) are not listed."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for path in sorted(out_dir.glob("segment_*.ply")):
        if not SEGMENT_FILE.fullmatch(path.name):
            continue
        try:
            info = json.loads(sidecar_paths(path)["json"].read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("ply") == path.name:
            found.append(path)
    return found
