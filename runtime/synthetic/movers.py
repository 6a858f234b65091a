"""What moves in the synthetic world: cars (with the camera, oncoming, parked), pedestrians and
bicyclists, placed by the street's random generator, and the people's animated poses (a walker's
swinging legs and arms, a rider's pedals) as functions of time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .geometry import (
    _OBJECT,
    _RING,
    BICYCLIST,
    CAR,
    PEDESTRIAN,
    Color,
    _circle_x,
    _disc,
    _Item,
    _item,
    _line,
    _Part,
    _poly,
    _quad_x,
    _quad_y,
    _quad_z,
    _shade,
)

if TYPE_CHECKING:
    from .street import _World


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


def _car(world: _World, x: float, z: float, vz: float, rear: bool) -> None:
    """A car at lateral x, road position z, speed vz; seen from behind (rear) or from the front."""
    rng, cam_x = world.rng, world.camera.x
    paint = world.any_colour()
    length, width = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9)
    body = rng.uniform(0.9, 1.05)
    roof = body + rng.uniform(0.4, 0.55)
    x0, x1 = x - width / 2, x + width / 2
    xs = x0 if x > cam_x else x1  # the side the camera sees
    inset = 0.1 if x > cam_x else -0.1
    c0 = length * (rng.uniform(0.2, 0.3) if rear else rng.uniform(0.32, 0.42))
    c1 = c0 + length * rng.uniform(0.42, 0.52)
    tyre, glass = (
        world.hsv(0, 0, rng.uniform(0.05, 0.12)),
        world.hsv(rng.uniform(190, 230), 0.3, rng.uniform(0.1, 0.25)),
    )
    lamp = world.hsv(0, 0.9, 0.75) if rear else world.hsv(50, 0.2, 0.95)
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
        _poly(_shade(world.road, 0.45), None, _quad_y(0.01, x0 - 0.15, x1 + 0.15, -0.15, length + 0.1)),
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
    world.items.append(_item(_OBJECT, parts, z, vz))


def add_traffic(world: _World) -> None:
    """Cars with the camera (one speed per lane), oncoming, and parked in the parking lanes."""
    rng, lane, end = world.rng, world.lane, world.z_hi + 14.0 * world.duration
    for k in range(world.lanes):  # with the camera: one speed per lane, so no car catches another
        x = (k + 0.5) * lane
        mine = abs(x - world.camera.x) < 0.1
        v = world.speed + (rng.uniform(0.0, 2.5) if mine else rng.uniform(-3.0, 3.0))
        first = rng.uniform(12, 30) if mine else rng.uniform(-30, 40)
        if not mine or rng.random() < 0.85:
            for z in world.stations(first, 15, 60, keep=0.7):
                _car(world, x + rng.uniform(-0.3, 0.3), z, v, rear=True)
        x = -(k + 0.5) * lane  # oncoming
        v = -rng.uniform(8, 14)
        z = rng.uniform(20, 70)
        while z < end:
            _car(world, x + rng.uniform(-0.3, 0.3), z, v, rear=False)
            z += rng.uniform(15, 70)
    if world.park:
        for s in (-1.0, 1.0):
            fill = rng.uniform(0.3, 0.9)
            for z in world.stations(world.z_lo + rng.uniform(0, 6), 5.5, 8, keep=fill):
                _car(world, s * (world.half - world.park / 2), z, 0.0, rear=s > 0)


def add_people(world: _World) -> None:
    """Pedestrians on both pavements, walking or standing, and bicyclists in the cycle lane."""
    rng = world.rng
    for s in (-1.0, 1.0):
        density = rng.uniform(0.3, 1.0)
        first = rng.uniform(8, 25) if s > 0 else world.z_lo + rng.uniform(0, 10)
        for z in world.stations(first, 6, 30, keep=density):
            walking = rng.random() < 0.7
            towards = rng.random() < 0.5
            walker = _Walker(
                x=s * rng.uniform(world.half + 0.7, world.line - 0.5),
                height=rng.uniform(1.5, 1.9),
                phase=rng.uniform(0, 2 * math.pi),
                cadence=rng.uniform(0.8, 1.1) if walking else 0.0,
                towards=towards,
                skin=world.hsv(rng.uniform(15, 35), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.9)),
                hair=world.hsv(rng.uniform(15, 40), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.6)),
                top=world.any_colour(),
                legs=world.any_colour(),
            )
            vz = (-1.0 if towards else 1.0) * rng.uniform(1.0, 1.6) if walking else 0.0
            world.items.append(_Item(_OBJECT, z, -0.4, 0.4, [], None, vz, pose=walker))
    x = world.lanes * world.lane + world.bike / 2
    for z in world.stations(rng.uniform(10, 35), 40, 120, keep=0.6 if rng.random() < 0.8 else 0.0):
        rider = _Rider(
            x=x,
            phase=rng.uniform(0, 2 * math.pi),
            cadence=rng.uniform(0.9, 1.4),
            frame=world.any_colour(),
            tyre=world.hsv(0, 0, rng.uniform(0.05, 0.15)),
            top=world.any_colour(),
            legs=world.any_colour(),
            helmet=world.any_colour(),
        )
        world.items.append(_Item(_OBJECT, z, -0.9, 0.9, [], None, rng.uniform(3.5, 6.0), pose=rider))
