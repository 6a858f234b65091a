"""Filming the synthetic world: a pinhole camera projects the items' points to fixed-point pixels,
and each part is drawn once into the frame and, with the same pixel coordinates and no
anti-aliasing, once into the mask, so the labels are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import _DISC, _POLY, _RING, _Item, _Part, _points

_NEAR = 1.0  # metres: surfaces are clipped here, compact objects nearer than this are dropped
_FAR = 250.0  # metres: draw distance
_DETAIL = 160.0  # metres: compact objects beyond this are a few pixels and are skipped
_SHIFT = 3  # sub-pixel bits for OpenCV drawing: smooth motion without anti-aliasing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class _Camera:
    """A pinhole camera above the road, looking down it (along +Z)."""

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


def film(
    items: list[_Item], camera: _Camera, cam_z: float, t: float, base: np.ndarray, base_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The frame and mask of `items` at time t seen by `camera` at road position cam_z, drawn over
    copies of the sky-and-ground `base` and `base_mask`: layer by layer, far to near in a layer."""
    visible = []
    for it in items:
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
    uv = camera.project(np.concatenate([points for _, _, points in batches]), shift)
    frame, mask = base.copy(), base_mask.copy()
    at = 0
    for parts, dz, _ in batches:
        for part in parts:
            _draw(frame, mask, part, uv[at : at + part.count].reshape(part.shape), dz, camera.f)
            at += part.count
    return frame, mask


def _draw(frame: np.ndarray, mask: np.ndarray, part: _Part, uv: np.ndarray, dz: float, focal: float) -> None:
    if part.kind == _POLY:
        cv2.fillPoly(frame, uv, part.color, cv2.LINE_8, _SHIFT)
        if part.cls is not None:
            cv2.fillPoly(mask, uv, part.cls, cv2.LINE_8, _SHIFT)
        return
    scale = focal / max(part.depth + dz, _NEAR)
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
