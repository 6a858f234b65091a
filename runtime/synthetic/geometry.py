"""The synthetic world's scene model, in metres (X to the right, Y up, Z forward): parts (a polygon,
disc or thick line, with a colour and the CamVid class it is labelled with, or none for texture
drawn into the frame alone), items (parts that move together, in a draw layer), the primitives the
street is built from, and colour helpers. Nothing here draws or makes a random choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from roadseg.core.card import CAMVID_CLASSES

_CLS = {name: i for i, name in enumerate(CAMVID_CLASSES)}
SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE = (_CLS[n] for n in ("Sky", "Building", "Pole", "Road", "Pavement", "Tree"))
SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = (_CLS[n] for n in ("SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"))

_POLY, _DISC, _LINE, _RING = range(4)
# draw order: ground, ground markings, buildings, fences, then objects far to near
_GROUND, _MARKING, _BLOCK, _FENCE, _OBJECT = range(5)

Color = tuple[int, int, int]


@dataclass
class _Part:
    kind: int
    pts: np.ndarray  # POLY [k, n, 3] (k polygons); DISC [3] centre; LINE/RING [k, n, 3] polylines
    color: Color  # BGR
    cls: int | None  # None: frame only (texture inside a surface already labelled)
    size: float = 0.0  # metres: DISC radius, LINE/RING width
    depth: float = field(init=False)  # mean local Z: sets a disc's radius and a line's width in pixels
    shape: tuple[int, ...] = field(init=False)  # of its projected points
    count: int = field(init=False)  # number of points

    def __post_init__(self) -> None:
        self.depth = float(self.pts[..., 2].mean())
        self.shape = self.pts.shape[:-1] + (2,)
        self.count = self.pts.size // 3


def _points(parts: list[_Part]) -> np.ndarray:
    """All points of `parts`, [N, 3], in part order."""
    return np.concatenate([p.pts.reshape(-1, 3) for p in parts])


@dataclass
class _Item:
    layer: int
    z: float  # world Z of the item's local origin at t = 0
    z_min: float  # local Z extent, for culling and depth order
    z_max: float
    parts: list[_Part]
    points: np.ndarray | None  # _points(parts), None for posed items
    vz: float = 0.0  # m/s along the road
    compact: bool = True  # dropped as a whole at the near plane (else its surfaces are clipped)
    pose: Callable[[float], list[_Part]] | None = None  # animated parts at time t, replaces `parts`


def _quad_x(x: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
    """A vertical rectangle in the plane X = x (a wall along the road)."""
    return np.array([[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]], dtype=np.float64)


def _quad_z(z: float, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """A vertical rectangle in the plane Z = z (facing the camera)."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)


def _quad_y(y: float, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    """A horizontal rectangle at height y (ground, roofs)."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], dtype=np.float64)


def _circle_x(x: float, y: float, z: float, r: float, n: int = 14) -> np.ndarray:
    """A circle in the plane X = x (a wheel seen from the side)."""
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([np.full(n, x), y + r * np.sin(a), z + r * np.cos(a)], axis=-1)


def _poly(color: Color, cls: int | None, *polys: np.ndarray) -> _Part:
    return _Part(_POLY, np.stack(polys).astype(np.float64), color, cls)


def _disc(color: Color, cls: int | None, centre: tuple[float, float, float], r: float) -> _Part:
    return _Part(_DISC, np.array(centre, dtype=np.float64), color, cls, r)


def _line(color: Color, cls: int | None, width: float, *points: tuple[float, float, float]) -> _Part:
    return _Part(_LINE, np.array([points], dtype=np.float64), color, cls, width)


def _item(layer: int, parts: list[_Part], z: float = 0.0, vz: float = 0.0, compact: bool = True) -> _Item:
    points = _points(parts)
    return _Item(layer, z, float(points[:, 2].min()), float(points[:, 2].max()), parts, points, vz, compact)


def _shade(c: Color, k: float) -> Color:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def _mix(a: Color, b: Color, k: float) -> Color:
    return (int(a[0] + (b[0] - a[0]) * k), int(a[1] + (b[1] - a[1]) * k), int(a[2] + (b[2] - a[2]) * k))
