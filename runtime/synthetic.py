"""Synthetic driving scenes with exact CamVid labels, drawn with numpy and OpenCV.

The tests need driving frames with pixel-exact labels (to train tiny models and check the whole
pipeline) and `roadseg demo` needs a clip to play, but the project ships no data. This module draws
them: a straight street seen from a car, with road and lane markings, pavements, buildings with
windows, sky, trees, poles, signs, fences, cars, pedestrians and bicyclists, in the 11 CamVid
classes of `card.CAMVID_CLASSES`. Colours, sizes and layout are random per seed, so class is not a
function of colour, yet a small CNN learns it.

The world is 3-D (metres: X to the right, Y up, Z forward, filmed by a pinhole camera looking down
the road) and every visible surface is one polygon, disc or thick line drawn once into the frame and,
with the same pixel coordinates and no anti-aliasing, once into the mask, so labels are exact.
Texture-only details (windows, markings, shadows, lights) are drawn into the frame alone, inside
the surface they belong to. A clip moves the camera forward through the same world: markings and
houses slide past, cars drive, people walk.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .card import CAMVID_CLASSES
from .errors import UsageError

_CLS = {name: i for i, name in enumerate(CAMVID_CLASSES)}
SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE = (_CLS[n] for n in ("Sky", "Building", "Pole", "Road", "Pavement", "Tree"))
SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = (_CLS[n] for n in ("SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"))

_NEAR = 1.0  # metres: surfaces are clipped here, compact objects nearer than this are dropped
_FAR = 250.0  # metres: draw distance
_DETAIL = 160.0  # metres: compact objects beyond this are a few pixels and are skipped
_SHIFT = 3  # sub-pixel bits for OpenCV drawing: smooth motion without anti-aliasing
_ONE = 1 << _SHIFT
_NOISE_PAD = 16  # the sensor-noise field is this much larger than the frame; clips slide it per frame

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


@dataclass(frozen=True)
class _Camera:
    f: float  # focal length, pixels
    cx: float  # column of the vanishing point
    cy: float  # row of the horizon
    height: float  # metres above the road
    x: float  # lateral position, metres
    side: float  # +1 drive on the right, -1 the mirrored world (drive on the left)

    def project(self, pts: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """World points [N, 3], each shifted by dz [N] along Z -> fixed-point pixels [N, 2] (int32, _SHIFT bits)."""
        z = np.maximum(pts[:, 2] + dz, _NEAR)
        uv = np.empty((len(pts), 2))
        uv[:, 0] = self.cx + (self.side * self.f) * (pts[:, 0] - self.x) / z
        uv[:, 1] = self.cy + self.f * (self.height - pts[:, 1]) / z
        return np.rint(uv * _ONE).astype(np.int32)


# ---------------------------------------------------------------- geometry (metres)


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


# ---------------------------------------------------------------- animated people


@dataclass(frozen=True)
class _Walker:
    """A pedestrian at lateral x, walking along Z (cadence > 0) or standing."""

    x: float
    height: float
    phase: float
    cadence: float  # strides per second
    towards: bool  # faces the camera
    skin: Color
    hair: Color
    top: Color
    legs: Color

    def __call__(self, t: float) -> list[_Part]:
        x, h, k = self.x, self.height, self.height / 1.75
        swing = 0.16 * h * math.sin(self.phase + 2.0 * math.pi * self.cadence * t) if self.cadence else 0.0
        hip, shoulder, head = 0.52 * h, 0.81 * h, 0.925 * h
        parts = [
            _line(self.legs, PEDESTRIAN, 0.14 * k, (x - 0.1 * k, hip, 0.0), (x - 0.1 * k, 0.04, swing)),
            _line(self.legs, PEDESTRIAN, 0.14 * k, (x + 0.1 * k, hip, 0.0), (x + 0.1 * k, 0.04, -swing)),
            _poly(self.top, PEDESTRIAN, _quad_z(0.0, x - 0.2 * k, x + 0.2 * k, hip - 0.05, shoulder + 0.05)),
            _line(
                self.top, PEDESTRIAN, 0.09 * k, (x - 0.23 * k, shoulder, 0.0), (x - 0.26 * k, 0.47 * h, -0.7 * swing)
            ),
            _line(self.top, PEDESTRIAN, 0.09 * k, (x + 0.23 * k, shoulder, 0.0), (x + 0.26 * k, 0.47 * h, 0.7 * swing)),
            _disc(self.hair, PEDESTRIAN, (x, head + 0.015 * k, 0.0), 0.115 * k),
        ]
        if self.towards:
            parts.append(_disc(self.skin, PEDESTRIAN, (x, head - 0.015 * k, -0.01), 0.1 * k))
        return parts


@dataclass(frozen=True)
class _Rider:
    """A bicyclist at lateral x riding along Z, seen from the side at an angle."""

    x: float
    phase: float
    cadence: float  # pedal turns per second
    frame: Color
    tyre: Color
    top: Color
    legs: Color
    helmet: Color

    def __call__(self, t: float) -> list[_Part]:
        x, r = self.x, 0.34
        a = self.phase + 2.0 * math.pi * self.cadence * t
        rear, front, crank = (x, r, -0.52), (x, r, 0.52), (x, 0.3, -0.05)
        seat, head_tube, hip, shoulder = (x, 0.92, -0.22), (x, 0.86, 0.36), (x, 1.0, -0.22), (x, 1.45, 0.1)
        hand = (x, 1.0, 0.42)
        parts = [_Part(_RING, _circle_x(x, r, z, r)[None], self.tyre, BICYCLIST, 0.05) for z in (-0.52, 0.52)]
        parts.append(_line(self.frame, BICYCLIST, 0.04, rear, crank, head_tube, front))
        parts.append(_line(self.frame, BICYCLIST, 0.04, rear, seat, head_tube, (x, 1.0, 0.4)))
        parts.append(_line(self.frame, BICYCLIST, 0.04, crank, seat))
        for phase in (a, a + math.pi):
            pedal = (x, 0.3 - 0.17 * math.cos(phase), -0.05 + 0.17 * math.sin(phase))
            knee = (x, (hip[1] + pedal[1]) / 2 + 0.08, (hip[2] + pedal[2]) / 2 + 0.22)
            parts.append(_line(self.legs, BICYCLIST, 0.13, hip, knee, pedal))
        parts.append(_line(self.top, BICYCLIST, 0.32, hip, shoulder))
        parts.append(_line(self.top, BICYCLIST, 0.09, shoulder, hand))
        parts.append(_disc(self.helmet, BICYCLIST, (x, 1.64, 0.18), 0.13))
        return parts


# ---------------------------------------------------------------- the world


class _World:
    """One random street (all random draws happen here) and the renderer that films it."""

    def __init__(self, seed: int, size: tuple[int, int], duration: float):
        h, w = size
        rng = self.rng = np.random.default_rng(seed)
        self.size = (h, w)
        self.light = rng.uniform(0.75, 1.1)
        self.speed = rng.uniform(6.0, 12.0)  # camera, m/s

        self.lane = rng.uniform(3.1, 3.8)
        self.lanes = 1 if rng.random() < 0.7 else 2  # per direction
        self.bike = rng.uniform(1.2, 1.6)  # cycle lane beside the traffic lanes, both sides
        self.park = rng.uniform(2.0, 2.4) if rng.random() < 0.5 else 0.0
        self.half = self.lanes * self.lane + self.bike + self.park  # road from -half to +half
        self.walk = rng.uniform(2.5, 5.0)  # pavement width
        self.line = self.half + self.walk  # building line
        self.z_lo, self.z_hi = -40.0, self.speed * duration + _FAR + 20.0
        self.duration = duration

        self.camera = _Camera(
            f=w * rng.uniform(0.75, 0.95),
            cx=w * (0.5 + rng.uniform(-0.03, 0.03)),
            cy=h * rng.uniform(0.38, 0.47),
            height=rng.uniform(1.3, 1.7),
            x=(int(rng.integers(self.lanes)) + 0.5) * self.lane,
            side=1.0 if rng.random() < 0.5 else -1.0,
        )
        self.road = self.hsv(rng.uniform(0, 360), rng.uniform(0, 0.1), rng.uniform(0.28, 0.5))
        self.pavement = self.hsv(rng.uniform(0, 50), rng.uniform(0.03, 0.25), rng.uniform(0.45, 0.75))
        self.base, self.base_mask = self._sky_and_ground()
        self.noise_pos, self.noise_neg = self._noise()

        self.items: list[_Item] = []
        self._road()
        for s in (-1.0, 1.0):
            self._buildings(s)
            self._pavement_objects(s)
        self._traffic()
        self._people()

    # -- colours

    def hsv(self, h: float, s: float, v: float) -> Color:
        r, g, b = colorsys.hsv_to_rgb((h % 360) / 360, min(max(s, 0.0), 1.0), min(max(v * self.light, 0.0), 1.0))
        return (int(b * 255), int(g * 255), int(r * 255))

    def jitter(self, c: Color, amount: float) -> Color:
        """`c` made lighter or darker by up to `amount`, with a slight tint."""
        d = self.rng.uniform(-amount, amount)
        b, g, r = (int(min(max(v + d + self.rng.uniform(-2, 2), 0), 255)) for v in c)
        return (b, g, r)

    def any_colour(self) -> Color:
        """Paint for cars and clothes: often grey/black/white, otherwise any hue."""
        rng = self.rng
        if rng.random() < 0.4:
            return self.hsv(0, rng.uniform(0, 0.08), rng.uniform(0.08, 0.95))
        return self.hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.9))

    def stations(self, first: float, gap_lo: float, gap_hi: float, keep: float = 1.0) -> Iterator[float]:
        """Positions along Z from `first` to the world's end, `gap_lo..gap_hi` apart; each kept with p=keep
        except the first, so every scene has at least one near the start."""
        z = first
        yield z
        while True:
            z += self.rng.uniform(gap_lo, gap_hi)
            if z > self.z_hi:
                return
            if self.rng.random() < keep:
                yield z

    # -- static layers

    def _sky_and_ground(self) -> tuple[np.ndarray, np.ndarray]:
        rng, (h, w), cy = self.rng, self.size, self.camera.cy
        if rng.random() < 0.6:  # clear
            hue = rng.uniform(200, 225)
            top = self.hsv(hue, rng.uniform(0.35, 0.65), rng.uniform(0.75, 1.0))
            low = self.hsv(hue, rng.uniform(0.05, 0.2), rng.uniform(0.9, 1.05))
            clouds = int(rng.integers(0, 6))
        else:  # overcast
            hue = rng.uniform(190, 230)
            top = self.hsv(hue, rng.uniform(0, 0.1), rng.uniform(0.6, 0.85))
            low = self.hsv(hue, rng.uniform(0, 0.06), rng.uniform(0.8, 1.0))
            clouds = int(rng.integers(3, 9))
        k = np.clip(np.arange(h, dtype=np.float32) / cy, 0, 1)[:, None, None] ** 0.8
        sky = (np.array(top, np.float32) * (1 - k) + np.array(low, np.float32) * k).astype(np.uint8)
        frame = np.ascontiguousarray(np.broadcast_to(sky, (h, w, 3)))
        for _ in range(clouds):
            centre = (int(rng.uniform(0, w)), int(rng.uniform(0, 0.75 * cy)))
            axes = (int(w * rng.uniform(0.05, 0.2)), int(h * rng.uniform(0.015, 0.05)))
            cv2.ellipse(frame, centre, axes, 0, 0, 360, _mix(top, (255, 255, 255), rng.uniform(0.4, 0.8)), -1)
        frame = cv2.GaussianBlur(frame, (0, 0), max(1.0, w / 90))
        mask = np.full((h, w), SKY, np.uint8)
        row = math.ceil(cy)
        frame[row:] = _shade(self.pavement, 0.85)
        mask[row:] = PAVEMENT  # ground beyond the building line, seen through gaps
        return frame, mask

    def _noise(self) -> tuple[np.ndarray, np.ndarray]:
        """Grey sensor noise, blotchy low-frequency dirt and a vignette, as saturating add/subtract fields."""
        rng, (h, w) = self.rng, self.size
        hp, wp = h + _NOISE_PAD, w + _NOISE_PAD
        fine = rng.standard_normal((hp, wp), dtype=np.float32) * rng.uniform(2, 6)
        grid = rng.standard_normal((max(2, hp // 24), max(2, wp // 24)), dtype=np.float32) * rng.uniform(3, 9)
        yy, xx = np.ogrid[0:hp, 0:wp]
        r2 = ((yy - hp / 2) / (hp / 2)) ** 2 + ((xx - wp / 2) / (wp / 2)) ** 2
        dirt = fine + cv2.resize(grid, (wp, hp), interpolation=cv2.INTER_CUBIC) - rng.uniform(4, 15) * r2
        pos, neg = cv2.convertScaleAbs(np.maximum(dirt, 0)), cv2.convertScaleAbs(np.minimum(dirt, 0))
        return cv2.merge([pos, pos, pos]), cv2.merge([neg, neg, neg])

    # -- road

    def _road(self) -> None:
        rng, half, add = self.rng, self.half, self.items.append
        z = self.z_lo
        while z < self.z_hi:  # asphalt patches
            n = rng.uniform(6, 30)
            patch = _poly(self.jitter(self.road, 7), ROAD, _quad_y(0, -half, half, z, z + n))
            add(_item(_GROUND, [patch], compact=False))
            z += n
        kerb = _shade(self.pavement, 1.18)
        for s in (-1.0, 1.0):
            z = self.z_lo
            while z < self.z_hi:  # paving patches, under the building setbacks too
                n = rng.uniform(10, 40)
                quad = _quad_y(0, s * (half + 0.25), s * (self.line + 4), z, z + n)
                add(_item(_GROUND, [_poly(self.jitter(self.pavement, 6), PAVEMENT, quad)], compact=False))
                z += n
            top = _quad_y(0, s * half, s * (half + 0.25), self.z_lo, self.z_hi)
            face = _quad_x(s * half, 0, 0.12, self.z_lo, self.z_hi)
            add(_item(_GROUND, [_poly(kerb, PAVEMENT, top), _poly(_shade(kerb, 0.85), PAVEMENT, face)], compact=False))
            gap = rng.uniform(1.5, 3.0)
            slabs = [
                np.array([[s * (half + 0.25), 0, z], [s * self.line, 0, z]])
                for z in np.arange(self.z_lo, self.z_hi, gap)
            ]
            add(_item(_MARKING, [_Part(_LINE, np.stack(slabs), _shade(self.pavement, 0.8), None)], compact=False))

        paint = self.hsv(0, rng.uniform(0, 0.05), rng.uniform(0.75, 0.95))
        centre = self.hsv(rng.uniform(40, 50), 0.8, 0.85) if rng.random() < 0.3 else paint
        period, dash = rng.uniform(8, 12), rng.uniform(2.5, 4)
        starts = np.arange(self.z_lo, self.z_hi, period)

        def dashes(x: float, width: float) -> list[np.ndarray]:
            return [_quad_y(0, x - width / 2, x + width / 2, z, z + dash) for z in starts]

        def solid(x: float, width: float) -> np.ndarray:
            return _quad_y(0, x - width / 2, x + width / 2, self.z_lo, self.z_hi)

        marks = (
            [_poly(centre, None, *dashes(0.0, 0.12))]
            if self.lanes == 1
            else [
                _poly(centre, None, solid(-0.1, 0.1), solid(0.1, 0.1)),
                _poly(paint, None, *dashes(-self.lane, 0.12), *dashes(self.lane, 0.12)),
            ]
        )
        edge = self.lanes * self.lane
        if rng.random() < 0.4:  # tinted cycle lanes
            tint = self.hsv(rng.choice([5, 120]), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.5))
            lanes = [_quad_y(0, s * edge, s * (edge + self.bike), self.z_lo, self.z_hi) for s in (-1.0, 1.0)]
            marks.append(_poly(tint, None, *lanes))
        marks.append(_poly(paint, None, solid(-edge, 0.12), solid(edge, 0.12)))
        if rng.random() < 0.4:  # zebra crossings
            for z in self.stations(rng.uniform(12, 60), 120, 250):
                stripes = [_quad_y(0, x, x + 0.5, z, z + 3) for x in np.arange(-self.half + 0.3, self.half - 0.5, 1.0)]
                marks.append(_poly(_shade(paint, 0.95), None, *stripes))
        add(_item(_MARKING, marks, compact=False))

    # -- buildings and roadside

    def _buildings(self, s: float) -> None:
        rng = self.rng
        z = self.z_lo
        while z < self.z_hi:
            if rng.random() < 0.15:  # a gap with a big tree
                gap = rng.uniform(6, 14)
                self._tree(s * (self.line + rng.uniform(1.5, 4)), z + gap / 2, rng.uniform(2, 3.5), _BLOCK)
                z += gap
                continue
            length = rng.uniform(8, 28)
            self.items.append(self._building(s, z, length))
            z += length

    def _building(self, s: float, z0: float, length: float) -> _Item:
        rng = self.rng
        kind = rng.integers(5)
        if kind == 0:  # brick
            wall = self.hsv(rng.uniform(5, 20), rng.uniform(0.45, 0.7), rng.uniform(0.35, 0.6))
        elif kind == 1:  # stone, beige
            wall = self.hsv(rng.uniform(25, 45), rng.uniform(0.15, 0.4), rng.uniform(0.55, 0.85))
        elif kind == 2:  # white, grey
            wall = self.hsv(0, rng.uniform(0, 0.08), rng.uniform(0.5, 0.9))
        elif kind == 3:  # painted
            wall = self.hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.5), rng.uniform(0.5, 0.85))
        else:  # glass, blue-grey
            wall = self.hsv(rng.uniform(190, 220), rng.uniform(0.15, 0.35), rng.uniform(0.35, 0.6))
        floor = rng.uniform(2.9, 3.5)
        floors = int(rng.integers(1, 7)) if rng.random() < 0.9 else int(rng.integers(7, 10))
        height = floors * floor + rng.uniform(0.5, 2.0)
        xi = self.line + (rng.uniform(0, 2.5) if rng.random() < 0.5 else 0.0)
        xo = xi + rng.uniform(8, 16)
        z1 = z0 + length
        glass = self.hsv(rng.uniform(190, 230), rng.uniform(0.1, 0.4), rng.uniform(0.15, 0.45))
        lit = self.hsv(rng.uniform(190, 230), rng.uniform(0.05, 0.2), rng.uniform(0.5, 0.75))
        col = rng.uniform(2.2, 4.0)
        win_w, win_h = col * rng.uniform(0.35, 0.7), floor * rng.uniform(0.35, 0.55)
        dark: list[np.ndarray] = []
        light: list[np.ndarray] = []
        first = 0 if rng.random() < 0.6 else 1  # the ground floor is a shop front otherwise
        cols = int(length / col)
        margin = (length - cols * col) / 2
        for f in range(first, floors):
            y0 = f * floor + 0.35 * floor
            for c in range(cols):
                zc = z0 + margin + (c + 0.5) * col
                quad = _quad_x(s * xi, y0, y0 + win_h, zc - win_w / 2, zc + win_w / 2)
                (light if rng.random() < 0.25 else dark).append(quad)
            for c in range(int((xo - xi) / col)):
                xc = xi + (c + 0.5) * col
                quad = _quad_z(z0, s * (xc - win_w / 2), s * (xc + win_w / 2), y0, y0 + win_h)
                (light if rng.random() < 0.25 else dark).append(quad)
        parts = [
            _poly(_shade(wall, 0.75), BUILDING, _quad_z(z0, s * xi, s * xo, 0, height)),
            _poly(wall, BUILDING, _quad_x(s * xi, 0, height, z0, z1)),
            _poly(_shade(wall, 0.7), None, _quad_x(s * xi, height - 0.45, height, z0, z1)),
        ]
        if first:
            parts.append(_poly(glass, None, _quad_x(s * xi, 0.3, 0.8 * floor, z0 + 0.6, z1 - 0.6)))
        parts += [_poly(glass, None, *dark)] if dark else []
        parts += [_poly(lit, None, *light)] if light else []
        return _item(_BLOCK, parts, compact=False)

    def _tree(self, x: float, z: float, r: float, layer: int) -> None:
        rng = self.rng
        green = (
            (rng.uniform(25, 45), rng.uniform(0.4, 0.8))
            if rng.random() < 0.15
            else (rng.uniform(70, 140), rng.uniform(0.35, 0.8))
        )
        v = rng.uniform(0.22, 0.5)
        trunk_h, trunk_w = rng.uniform(1.8, 3.2) + r * 0.3, rng.uniform(0.18, 0.35)
        parts = [
            _poly(
                self.hsv(rng.uniform(15, 35), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4)),
                TREE,
                _quad_z(0.0, x - trunk_w / 2, x + trunk_w / 2, 0, trunk_h + r * 0.5),
            )
        ]
        yc = trunk_h + r * 0.8
        blobs = []
        for _ in range(int(rng.integers(5, 10))):
            rb = r * rng.uniform(0.45, 0.7)
            off = (r - rb) * rng.uniform(-1, 1, 3)
            blobs.append((off[2], (x + off[0], yc + off[1] * 0.8, off[2]), rb))
        for _, centre, rb in sorted(blobs, reverse=True):  # far blobs first
            parts.append(
                _disc(self.hsv(green[0] + rng.uniform(-8, 8), green[1], v * rng.uniform(0.7, 1.3)), TREE, centre, rb)
            )
        self.items.append(_item(layer, parts, z))

    def _pavement_objects(self, s: float) -> None:
        rng, half = self.rng, self.half
        room = self.line - half - 0.6  # pavement width a tree canopy may use
        density = rng.uniform(0.2, 0.9)
        for z in self.stations(self.z_lo + rng.uniform(0, 10), 8, 25, keep=density):
            r = min(rng.uniform(1.2, 2.8), room / 2)
            self._tree(s * (self.line - 0.4 - r * rng.uniform(0.5, 1.0)), z, r, _OBJECT)
        if rng.random() < 0.85:  # street lamps
            pole = self.hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.25, 0.6))
            for z in self.stations(self.z_lo + rng.uniform(0, 30), 18, 35):
                x, h, arm = s * (half + 0.45), rng.uniform(6, 9), s * rng.uniform(0.8, 1.5)
                parts = [
                    _poly(pole, POLE, _quad_z(0, x - 0.08, x + 0.08, 0, h)),
                    _poly(pole, POLE, _quad_z(0, min(x, x - arm), max(x, x - arm), h - 0.15, h)),
                    _poly(_shade(pole, 0.8), POLE, _quad_z(-0.01, x - arm - 0.25, x - arm + 0.25, h - 0.35, h - 0.1)),
                ]
                self.items.append(_item(_OBJECT, parts, z))
        for z in self.stations(rng.uniform(10, 45), 30, 90):
            self._sign(s * (half + 0.35), z)
        if rng.random() < 0.55:  # fences at the back of the pavement
            colour = self.hsv(
                *(
                    (rng.uniform(20, 35), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.55))
                    if rng.random() < 0.5
                    else (rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.3, 0.85))
                )
            )
            x = s * (self.line - 0.05)
            for z in self.stations(rng.uniform(-5, 40), 30, 90):
                n, h = rng.uniform(10, 40), rng.uniform(0.9, 1.6)
                step = rng.uniform(0.25, 2.0)
                slats = [_quad_x(x, 0, h, zs, zs + step * 0.3) for zs in np.arange(z, z + n - step * 0.3, step)]
                parts = [
                    _poly(colour, FENCE, _quad_x(x, 0, h, z, z + n)),
                    _poly(_shade(colour, 0.7), None, *slats, _quad_x(x, h - 0.08, h, z, z + n)),
                ]
                self.items.append(_item(_FENCE, parts, compact=False))

    def _sign(self, x: float, z: float) -> None:
        rng = self.rng
        pole = self.hsv(0, rng.uniform(0, 0.1), rng.uniform(0.35, 0.7))
        white = self.hsv(0, 0.02, 0.95)
        kind = rng.integers(4)
        h = rng.uniform(2.2, 3.0)
        parts = [_poly(pole, POLE, _quad_z(0, x - 0.05, x + 0.05, 0, h + 0.2))]
        if kind == 0:  # round: red ring or blue disc
            r = rng.uniform(0.3, 0.4)
            outer = self.hsv(0, 0.85, 0.8) if rng.random() < 0.6 else self.hsv(220, 0.8, 0.7)
            parts += [_disc(outer, SIGN, (x, h + r, -0.02), r), _disc(white, None, (x, h + r, -0.03), r * 0.72)]
        elif kind == 1:  # warning triangle
            tri = np.array([[x - 0.45, h, -0.02], [x + 0.45, h, -0.02], [x, h + 0.78, -0.02]])
            inner = (tri - [x, h + 0.26, 0]) * [0.7, 0.7, 1] + [x, h + 0.26, -0.01]
            parts += [_poly(self.hsv(0, 0.85, 0.8), SIGN, tri), _poly(white, None, inner)]
        elif kind == 2:  # direction board
            face = self.hsv(rng.choice([120, 220, 50]), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.85))
            w, hb = rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.7)
            parts += [
                _poly(face, SIGN, _quad_z(-0.02, x - w, x + w, h, h + hb)),
                _poly(white, None, _quad_z(-0.03, x - w + 0.06, x + w - 0.06, h + hb / 2 - 0.04, h + hb / 2 + 0.04)),
            ]
        else:  # traffic light
            box = self.hsv(0, 0, rng.uniform(0.08, 0.2))
            parts.append(_poly(box, SIGN, _quad_z(-0.02, x - 0.17, x + 0.17, h, h + 0.85)))
            on = int(rng.integers(3))
            for i, hue in enumerate((0, 40, 130)):  # red, amber, green from the top
                c = self.hsv(hue, 0.9, 1.0) if i == on else self.hsv(hue, 0.6, 0.25)
                parts.append(_disc(c, None, (x, h + 0.69 - 0.27 * i, -0.03), 0.09))
        self.items.append(_item(_OBJECT, parts, z))

    # -- traffic and people

    def _car(self, x: float, z: float, vz: float, rear: bool) -> None:
        rng, cam_x = self.rng, self.camera.x
        paint = self.any_colour()
        length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9)
        body = rng.uniform(0.9, 1.05)
        roof = body + rng.uniform(0.4, 0.55)
        x0, x1 = x - width / 2, x + width / 2
        xs = x0 if x > cam_x else x1  # the side the camera sees
        inset = 0.1 if x > cam_x else -0.1
        c0 = length * (rng.uniform(0.2, 0.3) if rear else rng.uniform(0.32, 0.42))
        c1 = c0 + length * rng.uniform(0.42, 0.52)
        tyre, glass = (
            self.hsv(0, 0, rng.uniform(0.05, 0.12)),
            self.hsv(rng.uniform(190, 230), 0.3, rng.uniform(0.1, 0.25)),
        )
        lamp = self.hsv(0, 0.9, 0.75) if rear else self.hsv(50, 0.2, 0.95)
        cabin_side = np.array(
            [
                [xs + inset, body, c0 - 0.35],
                [xs + inset, roof, c0],
                [xs + inset, roof, c1],
                [xs + inset, body, c1 + 0.45],
            ]
        )
        pane = cabin_side + [[0, 0.06, 0.15], [0, -0.06, 0.08], [0, -0.06, -0.08], [0, 0.06, -0.2]]
        cx0, cx1 = x0 + 0.08, x1 - 0.08
        screen = np.array([[cx0, body, c0 - 0.35], [cx1, body, c0 - 0.35], [cx1, roof, c0], [cx0, roof, c0]])
        parts = [
            _poly(_shade(self.road, 0.45), None, _quad_y(0.01, x0 - 0.15, x1 + 0.15, -0.15, length + 0.1)),
            _poly(tyre, CAR, _circle_x(xs, 0.33, 0.8, 0.33), _circle_x(xs, 0.33, length - 0.8, 0.33)),
            _poly(tyre, CAR, _quad_z(0.6, x0 + 0.05, x0 + 0.3, 0, 0.4), _quad_z(0.6, x1 - 0.3, x1 - 0.05, 0, 0.4)),
            _poly(_shade(paint, 0.85), CAR, _quad_x(xs, 0.25, body, 0, length)),
            _poly(_shade(paint, 1.12), CAR, _quad_y(body, x0, x1, 0, length)),
            _poly(_shade(paint, 0.85), CAR, cabin_side),
            _poly(glass, None, pane),
            _poly(paint, CAR, screen),
            _poly(
                glass,
                None,
                screen + [[0.08, 0.05, 0.05], [-0.08, 0.05, 0.05], [-0.08, -0.05, -0.02], [0.08, -0.05, -0.02]],
            ),
            _poly(_shade(paint, 1.05), CAR, _quad_y(roof, cx0, cx1, c0, c1)),
            _poly(paint, CAR, _quad_z(0, x0, x1, 0.25, body)),
            _poly(_shade(paint, 0.55), None, _quad_z(0, x0, x1, 0.25, 0.45)),
            _poly(
                lamp,
                None,
                _quad_z(0, x0 + 0.08, x0 + 0.35, body - 0.25, body - 0.1),
                _quad_z(0, x1 - 0.35, x1 - 0.08, body - 0.25, body - 0.1),
            ),
        ]
        self.items.append(_item(_OBJECT, parts, z, vz))

    def _traffic(self) -> None:
        rng, lane, end = self.rng, self.lane, self.z_hi + 14.0 * self.duration
        for k in range(self.lanes):  # with the camera: one speed per lane, so no car catches another
            x = (k + 0.5) * lane
            mine = abs(x - self.camera.x) < 0.1
            v = self.speed + (rng.uniform(0.0, 2.5) if mine else rng.uniform(-3.0, 3.0))
            first = rng.uniform(12, 30) if mine else rng.uniform(-30, 40)
            if not mine or rng.random() < 0.85:
                for z in self.stations(first, 15, 60, keep=0.7):
                    self._car(x + rng.uniform(-0.3, 0.3), z, v, rear=True)
            x = -(k + 0.5) * lane  # oncoming
            v = -rng.uniform(8, 14)
            z = rng.uniform(20, 70)
            while z < end:
                self._car(x + rng.uniform(-0.3, 0.3), z, v, rear=False)
                z += rng.uniform(15, 70)
        if self.park:
            for s in (-1.0, 1.0):
                fill = rng.uniform(0.3, 0.9)
                for z in self.stations(self.z_lo + rng.uniform(0, 6), 5.5, 8, keep=fill):
                    self._car(s * (self.half - self.park / 2), z, 0.0, rear=s > 0)

    def _people(self) -> None:
        rng = self.rng
        for s in (-1.0, 1.0):
            density = rng.uniform(0.3, 1.0)
            first = rng.uniform(8, 25) if s > 0 else self.z_lo + rng.uniform(0, 10)
            for z in self.stations(first, 6, 30, keep=density):
                walking = rng.random() < 0.7
                towards = rng.random() < 0.5
                walker = _Walker(
                    x=s * rng.uniform(self.half + 0.7, self.line - 0.5),
                    height=rng.uniform(1.5, 1.9),
                    phase=rng.uniform(0, 2 * math.pi),
                    cadence=rng.uniform(0.8, 1.1) if walking else 0.0,
                    towards=towards,
                    skin=self.hsv(rng.uniform(15, 35), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.9)),
                    hair=self.hsv(rng.uniform(15, 40), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.6)),
                    top=self.any_colour(),
                    legs=self.any_colour(),
                )
                vz = (-1.0 if towards else 1.0) * rng.uniform(1.0, 1.6) if walking else 0.0
                self.items.append(_Item(_OBJECT, z, -0.4, 0.4, [], None, vz, pose=walker))
        x = self.lanes * self.lane + self.bike / 2
        for z in self.stations(rng.uniform(10, 35), 40, 120, keep=0.6 if rng.random() < 0.8 else 0.0):
            rider = _Rider(
                x=x,
                phase=rng.uniform(0, 2 * math.pi),
                cadence=rng.uniform(0.9, 1.4),
                frame=self.any_colour(),
                tyre=self.hsv(0, 0, rng.uniform(0.05, 0.15)),
                top=self.any_colour(),
                legs=self.any_colour(),
                helmet=self.any_colour(),
            )
            self.items.append(_Item(_OBJECT, z, -0.9, 0.9, [], None, rng.uniform(3.5, 6.0), pose=rider))

    # -- rendering

    def render(self, t: float, noise_at: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        cam_z = self.speed * t
        visible = []
        for it in self.items:
            dz = it.z + it.vz * t - cam_z
            near = dz + it.z_min
            if near > _FAR or dz + it.z_max < _NEAR or (it.compact and not _NEAR <= near <= _DETAIL):
                continue
            visible.append((it.layer, -near, dz, it))
        visible.sort(key=lambda v: (v[0], v[1]))
        # one projection for every point of the frame, then draw part by part from its slice
        batches = []
        for _, _, dz, it in visible:
            parts = it.pose(t) if it.pose else it.parts
            points = _points(parts) if it.points is None else it.points
            batches.append((parts, dz, points))
        shift = np.repeat([dz for _, dz, _ in batches], [len(points) for _, _, points in batches])
        uv = self.camera.project(np.concatenate([points for _, _, points in batches]), shift)
        frame, mask = self.base.copy(), self.base_mask.copy()
        at = 0
        for parts, dz, _ in batches:
            for part in parts:
                self._draw(frame, mask, part, uv[at : at + part.count].reshape(part.shape), dz)
                at += part.count
        (h, w), (oy, ox) = self.size, noise_at
        cv2.add(frame, self.noise_pos[oy : oy + h, ox : ox + w], dst=frame)
        cv2.subtract(frame, self.noise_neg[oy : oy + h, ox : ox + w], dst=frame)
        return frame, mask

    def _draw(self, frame: np.ndarray, mask: np.ndarray, part: _Part, uv: np.ndarray, dz: float) -> None:
        if part.kind == _POLY:
            cv2.fillPoly(frame, uv, part.color, cv2.LINE_8, _SHIFT)
            if part.cls is not None:
                cv2.fillPoly(mask, uv, part.cls, cv2.LINE_8, _SHIFT)
            return
        scale = self.camera.f / max(part.depth + dz, _NEAR)
        if part.kind == _DISC:
            centre, r = (int(uv[0]), int(uv[1])), round(part.size * scale * _ONE)
            cv2.circle(frame, centre, r, part.color, -1, cv2.LINE_8, _SHIFT)
            if part.cls is not None:
                cv2.circle(mask, centre, r, part.cls, -1, cv2.LINE_8, _SHIFT)
            return
        closed, thick = part.kind == _RING, max(1, round(part.size * scale))
        cv2.polylines(frame, uv, closed, part.color, thick, cv2.LINE_8, _SHIFT)
        if part.cls is not None:
            cv2.polylines(mask, uv, closed, part.cls, thick, cv2.LINE_8, _SHIFT)


# ---------------------------------------------------------------- public API


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise UsageError(f"synthetic frames must be at least 16x16 pixels, not {h}x{w}")
    return h, w


def make_scene(seed: int, size: tuple[int, int] = (360, 480)) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene: (frame uint8 [H, W, 3] BGR, mask uint8 [H, W] CamVid class ids).

    The same seed gives identical arrays; every pixel has a class in 0..10."""
    return _World(seed, _check_size(size), duration=0.0).render(0.0)


class SyntheticClip:
    """A clip of a camera driving down one random street; frames are drawn on demand.

    `clip[i]` is deterministic and equals the i-th item of `iter(clip)`; both give (frame, mask)
    as `make_scene` does."""

    def __init__(self, num_frames: int = 120, size: tuple[int, int] = (360, 480), seed: int = 0, fps: float = 30.0):
        if num_frames < 1 or not fps > 0:
            raise UsageError(f"a synthetic clip needs at least 1 frame and fps > 0, not {num_frames} at {fps}")
        self._n = int(num_frames)
        self._fps = float(fps)
        self._world = _World(seed, _check_size(size), duration=(self._n - 1) / self._fps)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self._world.size

    @property
    def fps(self) -> float:
        return self._fps

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = index + self._n if index < 0 else index
        if not 0 <= i < self._n:
            raise IndexError(f"frame {index} is outside a clip of {self._n} frames")
        noise_at = ((7 * i) % _NOISE_PAD, (13 * i) % _NOISE_PAD)
        return self._world.render(i / self._fps, noise_at)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(self._n):
            yield self[i]


def make_dataset(root: str | Path, n_train: int, n_val: int, size: tuple[int, int] = (360, 480), seed: int = 0) -> Path:
    """Write a CamVid-layout folder of synthetic scenes under `root` and return it:
    train/, trainannot/, val/, valannot/ (BGR PNG frames, 8-bit class-id PNG masks) and
    train.txt, val.txt with lines "train/synth_00000.png trainannot/synth_00000.png"."""
    root = Path(root)
    for split_id, (split, count) in enumerate((("train", n_train), ("val", n_val))):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            scene_seed = int(np.random.SeedSequence([seed, split_id, i]).generate_state(1)[0])
            frame, mask = make_scene(scene_seed, size)
            name = f"synth_{i:05d}.png"
            for path, image in ((root / split / name, frame), (root / f"{split}annot" / name, mask)):
                if not cv2.imwrite(str(path), image):
                    raise OSError(f"could not write {path}")
            lines.append(f"{split}/{name} {split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root
