"""A small set of signed distance functions (SDFs) and CSG operators, batched in torch.

Every primitive takes points ``p`` of shape (N, 3) and returns distances of shape (N,):
negative inside, positive outside, zero on the surface. Primitives are centred at the
origin; place them with :func:`translate` and :func:`rotate_x` / :func:`rotate_y` /
:func:`rotate_z`, which transform the *query points* (the inverse of the object's motion).

The formulas are Inigo Quilez's ("distance functions",
https://iquilezles.org/articles/distfunctions/). Primitives are exact Euclidean
distances; union (min) of exact SDFs is exact outside and a bound inside; intersection,
subtraction and smooth union give lower bounds of the true distance, which is all sphere
tracing needs (it never oversteps) and keeps the zero level set exact.

All functions follow the dtype and device of ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "sphere", "box", "round_box", "capped_cylinder", "torus", "capped_cone", "capsule",
    "plane",
    "union", "intersect", "subtract", "smooth_union",
    "translate", "rotate_x", "rotate_y", "rotate_z",
]

Vec3 = Sequence[float]


# ----------------------------------------------------------------------------- primitives


def sphere(p: Tensor, radius: float) -> Tensor:
    """Sphere of ``radius`` at the origin. p: (N, 3) -> (N,)."""
    return p.norm(dim=-1) - radius


def box(p: Tensor, half: Vec3) -> Tensor:
    """Axis-aligned box with half-extents ``half`` = (hx, hy, hz). p: (N, 3) -> (N,)."""
    q = p.abs() - p.new_tensor(half)  # (N, 3)
    outside = q.clamp_min(0.0).norm(dim=-1)
    inside = q.amax(dim=-1).clamp_max(0.0)
    return outside + inside


def round_box(p: Tensor, half: Vec3, radius: float) -> Tensor:
    """Box with half-extents ``half`` whose edges are rounded by ``radius`` (outer size kept)."""
    core = [h - radius for h in half]
    if min(core) < 0:
        raise ValueError(f"round_box radius {radius} is larger than a half-extent of {tuple(half)}")
    return box(p, core) - radius


def capped_cylinder(p: Tensor, radius: float, half_height: float) -> Tensor:
    """Solid cylinder along the y axis, |y| <= half_height, x^2 + z^2 <= radius^2."""
    d = torch.stack([p[:, [0, 2]].norm(dim=-1) - radius, p[:, 1].abs() - half_height], dim=-1)  # (N, 2)
    return d.amax(dim=-1).clamp_max(0.0) + d.clamp_min(0.0).norm(dim=-1)


def torus(p: Tensor, major: float, minor: float) -> Tensor:
    """Torus lying in the xz plane (axis y): ring radius ``major``, tube radius ``minor``."""
    q = torch.stack([p[:, [0, 2]].norm(dim=-1) - major, p[:, 1]], dim=-1)  # (N, 2)
    return q.norm(dim=-1) - minor


def capped_cone(p: Tensor, half_height: float, r_bottom: float, r_top: float) -> Tensor:
    """Truncated cone along y: radius ``r_bottom`` at y = -h, ``r_top`` at y = +h (iq's sdCappedCone).

    ``r_top = 0`` gives a cone with its apex at y = +h.
    """
    h = half_height
    qx = p[:, [0, 2]].norm(dim=-1)  # (N,) distance from the axis
    qy = p[:, 1]
    k1x, k1y = r_top, h
    k2x, k2y = r_top - r_bottom, 2.0 * h
    rad = torch.where(qy < 0.0, torch.full_like(qy, r_bottom), torch.full_like(qy, r_top))
    cax = qx - torch.minimum(qx, rad)
    cay = qy.abs() - h
    k2_sq = k2x * k2x + k2y * k2y
    s = (((k1x - qx) * k2x + (k1y - qy) * k2y) / k2_sq).clamp(0.0, 1.0)
    cbx = qx - k1x + k2x * s
    cby = qy - k1y + k2y * s
    sign = torch.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0).to(p.dtype)
    return sign * torch.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby).sqrt()


def capsule(p: Tensor, a: Vec3, b: Vec3, radius: float) -> Tensor:
    """Capsule: all points within ``radius`` of the segment from ``a`` to ``b``."""
    a_t, b_t = p.new_tensor(a), p.new_tensor(b)
    pa, ba = p - a_t, b_t - a_t  # (N, 3), (3,)
    h = ((pa @ ba) / (ba @ ba)).clamp(0.0, 1.0)  # (N,)
    return (pa - h[:, None] * ba).norm(dim=-1) - radius


def plane(p: Tensor, normal: Vec3, offset: float) -> Tensor:
    """Half-space {x : n.x <= offset} for a unit ``normal`` (normalised here); exact distance."""
    n = p.new_tensor(normal)
    n = n / n.norm()
    return p @ n - offset


# ----------------------------------------------------------------------------- operators


def union(*distances: Tensor) -> Tensor:
    """Union of shapes: the elementwise minimum of their distances."""
    out = distances[0]
    for d in distances[1:]:
        out = torch.minimum(out, d)
    return out


def intersect(*distances: Tensor) -> Tensor:
    """Intersection of shapes: the elementwise maximum of their distances (a bound)."""
    out = distances[0]
    for d in distances[1:]:
        out = torch.maximum(out, d)
    return out


def subtract(d_keep: Tensor, d_remove: Tensor) -> Tensor:
    """``keep`` minus ``remove``: max(d_keep, -d_remove) (a bound)."""
    return torch.maximum(d_keep, -d_remove)


def smooth_union(d1: Tensor, d2: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum with blend radius ``k`` (iq, "smooth minimum")."""
    h = (0.5 + 0.5 * (d2 - d1) / k).clamp(0.0, 1.0)
    return d2 + (d1 - d2) * h - k * h * (1.0 - h)


# ----------------------------------------------------------------------------- transforms


def translate(p: Tensor, offset: Vec3) -> Tensor:
    """Query points for a shape moved by ``offset``: p - offset. (N, 3) -> (N, 3)."""
    return p - p.new_tensor(offset)


def _rotate(p: Tensor, degrees: float, i: int, j: int) -> Tensor:
    # The shape is rotated by +degrees in the (i, j) plane, so the query point is rotated
    # by -degrees: p_i' = c p_i + s p_j, p_j' = -s p_i + c p_j.
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    out = p.clone()
    out[:, i] = c * p[:, i] + s * p[:, j]
    out[:, j] = -s * p[:, i] + c * p[:, j]
    return out


def rotate_x(p: Tensor, degrees: float) -> Tensor:
    """Query points for a shape rotated by ``degrees`` about +x (right-handed; +y goes to +z at 90)."""
    return _rotate(p, degrees, 1, 2)


def rotate_y(p: Tensor, degrees: float) -> Tensor:
    """Query points for a shape rotated by ``degrees`` about +y (+z goes to +x at 90)."""
    return _rotate(p, degrees, 2, 0)


def rotate_z(p: Tensor, degrees: float) -> Tensor:
    """Query points for a shape rotated by ``degrees`` about +z (+x goes to +y at 90)."""
    return _rotate(p, degrees, 0, 1)
