"""Object catalogues: templates of objects made of parts, parts made of surface primitives.

Each object is made of 1-4 parts with clearly different colours and shapes (snowman = body + head, mushroom = stem
+ cap, ...), so that the object (coarse) and part (fine) segmentations differ. Templates stand on z = 0 in their
local frame, z up; ``geometry`` places, scales and turns them. Catalogues by name: ``CATALOGUES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

@dataclass(frozen=True)
class Primitive:
    """A surface in an object's local frame (z up, the object stands on z = 0)."""

    kind: str
    """ellipsoid | upper_ellipsoid | disk | cylinder | frustum | box | rect."""
    center: Tuple[float, float, float]
    """Centre (ellipsoid, disk, box, rect) or centre of the base (cylinder, frustum)."""
    size: Tuple[float, ...]
    """ellipsoid: radii (3); disk: (radius, +1 facing up or -1 down); cylinder: (radius, height), side only;
    frustum: (bottom radius, top radius, height), side only; box: full extents (3); rect: extents (x, y), up."""


@dataclass(frozen=True)
class PartTemplate:
    """A part of an object template: one colour, one or more primitives."""

    name: str
    color: Tuple[float, float, float]
    primitives: Tuple[Primitive, ...]


@dataclass(frozen=True)
class ObjectTemplate:
    """An object template: its parts, in part-id order."""

    name: str
    parts: Tuple[PartTemplate, ...]


def primitive(kind: str, center: Sequence[float], *size: float) -> Primitive:
    """A ``Primitive`` from plain numbers: ``center`` and ``size`` become float tuples."""
    return Primitive(kind, tuple(float(c) for c in center), tuple(float(s) for s in size))  # type: ignore[arg-type]


_p = primitive
"""Short name of ``primitive`` for the catalogue tables below."""


OBJECT_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("snowman", (
        PartTemplate("body", (0.72, 0.80, 0.97), (_p("ellipsoid", (0, 0, 0.15), 0.15, 0.15, 0.15),)),
        PartTemplate("head", (0.97, 0.50, 0.08), (_p("ellipsoid", (0, 0, 0.37), 0.095, 0.095, 0.095),)),
    )),
    ObjectTemplate("mushroom", (
        PartTemplate("stem", (0.93, 0.86, 0.64), (_p("cylinder", (0, 0, 0), 0.05, 0.2),)),
        PartTemplate("cap", (0.85, 0.10, 0.10), (
            _p("upper_ellipsoid", (0, 0, 0.18), 0.19, 0.19, 0.12), _p("disk", (0, 0, 0.18), 0.19, -1))),
    )),
    ObjectTemplate("table", (
        PartTemplate("top", (0.62, 0.37, 0.16), (_p("box", (0, 0, 0.29), 0.44, 0.30, 0.04),)),
        PartTemplate("legs", (0.14, 0.14, 0.17), tuple(
            _p("cylinder", (sx * 0.19, sy * 0.12, 0), 0.024, 0.27) for sx in (-1, 1) for sy in (-1, 1))),
    )),
    ObjectTemplate("lamp", (
        PartTemplate("base", (0.10, 0.20, 0.62), (
            _p("cylinder", (0, 0, 0), 0.12, 0.03), _p("disk", (0, 0, 0.03), 0.12, 1))),
        PartTemplate("pole", (0.62, 0.62, 0.66), (_p("cylinder", (0, 0, 0.03), 0.025, 0.29),)),
        PartTemplate("shade", (0.98, 0.86, 0.16), (
            _p("frustum", (0, 0, 0.30), 0.15, 0.07, 0.15), _p("disk", (0, 0, 0.45), 0.07, 1))),
    )),
    ObjectTemplate("tree", (
        PartTemplate("trunk", (0.36, 0.20, 0.08), (_p("cylinder", (0, 0, 0), 0.045, 0.17),)),
        PartTemplate("crown", (0.10, 0.55, 0.20), (
            _p("frustum", (0, 0, 0.15), 0.19, 0.0, 0.45), _p("disk", (0, 0, 0.15), 0.19, -1))),
    )),
    ObjectTemplate("chair", (
        PartTemplate("seat", (0.20, 0.45, 0.30), (_p("box", (0, 0, 0.2), 0.26, 0.26, 0.035),)),
        PartTemplate("legs", (0.85, 0.85, 0.80), tuple(
            _p("cylinder", (sx * 0.11, sy * 0.11, 0), 0.014, 0.185) for sx in (-1, 1) for sy in (-1, 1))),
        PartTemplate("back", (0.95, 0.55, 0.35), (
            _p("box", (0, -0.12, 0.33), 0.26, 0.025, 0.12),
            *(_p("cylinder", (sx * 0.11, -0.12, 0.215), 0.012, 0.06) for sx in (-1, 1)))),
    )),
    ObjectTemplate("gift", (
        PartTemplate("box", (0.75, 0.15, 0.72), (_p("box", (0, 0, 0.10), 0.28, 0.28, 0.20),)),
        PartTemplate("lid", (0.15, 0.76, 0.82), (_p("box", (0, 0, 0.225), 0.31, 0.31, 0.05),)),
    )),
)
"""Object templates; parts differ in colour and shape (the "household" catalogue)."""

OUTDOOR_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("bench", (
        PartTemplate("seat", (0.60, 0.32, 0.12), (_p("box", (0, 0, 0.17), 0.44, 0.16, 0.03),)),
        PartTemplate("legs", (0.18, 0.18, 0.20), tuple(
            _p("cylinder", (sx * 0.18, sy * 0.055, 0), 0.022, 0.155) for sx in (-1, 1) for sy in (-1, 1))),
        PartTemplate("back", (0.95, 0.75, 0.45), (_p("box", (0, -0.075, 0.29), 0.44, 0.025, 0.10),)),
    )),
    ObjectTemplate("streetlight", (
        PartTemplate("base", (0.55, 0.25, 0.55), (
            _p("cylinder", (0, 0, 0), 0.07, 0.04), _p("disk", (0, 0, 0.04), 0.07, 1))),
        PartTemplate("pole", (0.40, 0.42, 0.45), (_p("cylinder", (0, 0, 0.04), 0.022, 0.44),)),
        PartTemplate("lantern", (1.00, 0.95, 0.60), (_p("ellipsoid", (0, 0, 0.54), 0.07, 0.07, 0.08),)),
    )),
    ObjectTemplate("signpost", (
        PartTemplate("post", (0.55, 0.55, 0.58), (_p("cylinder", (0, 0, 0), 0.022, 0.40),)),
        PartTemplate("sign", (0.10, 0.45, 0.85), (_p("box", (0, 0, 0.45), 0.30, 0.02, 0.18),)),
    )),
    ObjectTemplate("flower", (
        PartTemplate("pot", (0.78, 0.42, 0.25), (
            _p("frustum", (0, 0, 0), 0.08, 0.10, 0.11), _p("disk", (0, 0, 0.11), 0.10, 1))),
        PartTemplate("stem", (0.25, 0.60, 0.15), (_p("cylinder", (0, 0, 0.11), 0.022, 0.24),)),
        PartTemplate("bloom", (0.95, 0.30, 0.60), (_p("ellipsoid", (0, 0, 0.38), 0.085, 0.085, 0.05),)),
        PartTemplate("leaves", (0.55, 0.85, 0.25), (
            _p("ellipsoid", (0.065, 0, 0.22), 0.06, 0.02, 0.012),
            _p("ellipsoid", (-0.065, 0, 0.27), 0.06, 0.02, 0.012))),
    )),
    ObjectTemplate("parasol", (
        PartTemplate("base", (0.35, 0.25, 0.20), (
            _p("cylinder", (0, 0, 0), 0.09, 0.03), _p("disk", (0, 0, 0.03), 0.09, 1))),
        PartTemplate("pole", (0.92, 0.92, 0.85), (_p("cylinder", (0, 0, 0.03), 0.02, 0.40),)),
        PartTemplate("canopy", (0.15, 0.70, 0.65), (
            _p("frustum", (0, 0, 0.38), 0.26, 0.02, 0.10), _p("disk", (0, 0, 0.38), 0.26, -1))),
    )),
    ObjectTemplate("stool", (
        PartTemplate("seat", (0.55, 0.15, 0.45), (
            _p("cylinder", (0, 0, 0.25), 0.13, 0.035), _p("disk", (0, 0, 0.285), 0.13, 1),
            _p("disk", (0, 0, 0.25), 0.13, -1))),
        PartTemplate("legs", (0.75, 0.75, 0.70), tuple(
            _p("cylinder", (0.09 * math.cos(a), 0.09 * math.sin(a), 0), 0.02, 0.25)
            for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3))),
    )),
    ObjectTemplate("fence", (
        PartTemplate("posts", (0.45, 0.30, 0.15), tuple(
            _p("box", (x, 0, 0.15), 0.04, 0.04, 0.30) for x in (-0.22, 0.0, 0.22))),
        PartTemplate("rails", (0.90, 0.88, 0.75), tuple(
            _p("box", (0, 0.03, z), 0.52, 0.02, 0.04) for z in (0.10, 0.23))),
    )),
)
"""The "outdoor" catalogue: objects with thin parts (legs, poles, stems, posts, rails: a few pixels wide at 160x120)
and flat seats and signs."""

SMALL_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("ball", (
        PartTemplate("ball", (0.95, 0.80, 0.10), (_p("ellipsoid", (0, 0, 0.05), 0.05, 0.05, 0.05),)),)),
    ObjectTemplate("cup", (
        PartTemplate("body", (0.30, 0.55, 0.90), (
            _p("cylinder", (0, 0, 0), 0.04, 0.08), _p("disk", (0, 0, 0.075), 0.04, 1))),
        PartTemplate("handle", (0.90, 0.55, 0.15), (_p("box", (0.05, 0, 0.045), 0.02, 0.015, 0.05),)),
    )),
    ObjectTemplate("can", (
        PartTemplate("body", (0.85, 0.10, 0.20), (_p("cylinder", (0, 0, 0), 0.035, 0.10),)),
        PartTemplate("lid", (0.70, 0.70, 0.74), (_p("disk", (0, 0, 0.10), 0.035, 1),)),
    )),
    ObjectTemplate("pawn", (
        PartTemplate("body", (0.20, 0.20, 0.60), (
            _p("frustum", (0, 0, 0), 0.045, 0.018, 0.08), _p("disk", (0, 0, 0), 0.045, -1))),
        PartTemplate("head", (0.95, 0.65, 0.20), (_p("ellipsoid", (0, 0, 0.10), 0.03, 0.03, 0.03),)),
    )),
    ObjectTemplate("cube", (PartTemplate("cube", (0.40, 0.75, 0.95), (_p("box", (0, 0, 0.045), 0.09, 0.09, 0.09),)),)),
    ObjectTemplate("apple", (
        PartTemplate("fruit", (0.80, 0.15, 0.10), (_p("ellipsoid", (0, 0, 0.045), 0.05, 0.05, 0.045),)),
        PartTemplate("stem", (0.35, 0.22, 0.08), (_p("cylinder", (0, 0, 0.085), 0.006, 0.025),)),
    )),
)
"""The "small" catalogue (``SynthConfig.num_small_objects``): objects about 0.1 across."""

CATALOGUES: Dict[str, Tuple[ObjectTemplate, ...]] = {
    "household": OBJECT_CATALOGUE, "outdoor": OUTDOOR_CATALOGUE, "small": SMALL_CATALOGUE,
}
"""Object catalogues by name (``SynthConfig.catalogues``)."""


def catalogue_templates(names: Sequence[str]) -> Tuple[ObjectTemplate, ...]:
    """The templates of the named catalogues (``CATALOGUES``), pooled in order."""
    unknown = [name for name in names if name not in CATALOGUES]
    if unknown or not names:
        raise ValueError(f"unknown or no object catalogues {list(names)}; known: {', '.join(CATALOGUES)}")
    return tuple(template for name in names for template in CATALOGUES[name])
