"""One random street: its layout, colours, sky and ground, sensor noise, road and markings,
buildings, trees, lamps, signs and fences, and (through movers.py) its traffic and people. Every
random draw of a scene happens here or in movers.py, in one fixed order, so a seed gives the same
scene; camera.py films it.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator

import cv2
import numpy as np

from .camera import _FAR, _Camera, film
from .geometry import (
    _BLOCK,
    _FENCE,
    _GROUND,
    _LINE,
    _MARKING,
    _OBJECT,
    BUILDING,
    FENCE,
    PAVEMENT,
    POLE,
    ROAD,
    SIGN,
    SKY,
    TREE,
    Color,
    _disc,
    _Item,
    _item,
    _mix,
    _Part,
    _poly,
    _quad_x,
    _quad_y,
    _quad_z,
    _shade,
)

_NOISE_PAD = 16  # the sensor-noise field is this much larger than the frame; clips slide it per frame


class _World:
    """One random street: every random draw of its scenery happens here, in a fixed order, and then
    its traffic and people's in movers.py (synthetic/__init__.py's `_street` adds them); `render`
    films it with camera.py."""

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

    # -- filming

    def render(self, t: float, noise_at: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        """The frame and mask at time t (seconds), with the sensor noise field slid to `noise_at`."""
        frame, mask = film(self.items, self.camera, self.speed * t, t, self.base, self.base_mask)
        (h, w), (oy, ox) = self.size, noise_at
        cv2.add(frame, self.noise_pos[oy : oy + h, ox : ox + w], dst=frame)
        cv2.subtract(frame, self.noise_neg[oy : oy + h, ox : ox + w], dst=frame)
        return frame, mask
