"""Ground-truth renderer of world objects: batched sphere tracing + Lambertian shading.

The renderer is split in two passes so that one geometry pass can be shaded in many colours:

1. :func:`trace_geometry` (expensive): rays are clipped to the bounding sphere, then only the
   still-active rays are marched (sphere tracing, Hart 1996) for at most ``max_steps`` steps;
   hits get a normal (SDF gradient by the tetrahedron rule) and the id of the nearest part.
2. :func:`shade` (cheap): albedo from a per-part colour table, Lambertian point light,
   ``rgb = albedo * (ambient + (1 - ambient) * max(0, n . l))``, composited over the constant
   background ``BACKGROUND_RGB``.

:func:`render_object` does both for one :class:`WorldObject`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..render.camera import Camera, Light, camera_rays
from .colours import BACKGROUND_RGB
from .objects import BOUND_RADIUS, Shape, WorldObject

__all__ = ["RenderConfig", "Geometry", "RenderResult", "sphere_trace", "trace_geometry", "shade", "render_object"]


@dataclass(frozen=True)
class RenderConfig:
    """Settings of the sphere tracer."""

    max_steps: int = 48
    """Largest number of sphere-tracing steps per ray."""
    hit_eps: float = 2e-3
    """A ray hits when the SDF at its tip is below this (object radii; a 64 px pixel is ~0.04)."""
    final_eps: float = 1e-2
    """Rays still marching after ``max_steps`` count as hits if the SDF is below this (grazing rays)."""
    normal_eps: float = 1e-3
    """Step of the finite-difference normal."""
    bound_radius: float = BOUND_RADIUS + 1e-2
    """Rays are clipped to this sphere around the origin before marching."""
    background: tuple[float, float, float] = BACKGROUND_RGB
    """Background colour (RGB in [0, 1])."""

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.hit_eps <= 0 or self.final_eps < self.hit_eps or self.normal_eps <= 0:
            raise ValueError(f"invalid RenderConfig: {self}")


@dataclass(frozen=True)
class Geometry:
    """What a geometry pass sees, per pixel; leading dims (B, H, W) or (H, W)."""

    mask: Tensor
    """(..., H, W) bool: the ray hit the object."""
    depth: Tensor
    """(..., H, W) distance along the ray to the hit (0 on the background)."""
    points: Tensor
    """(..., H, W, 3) world-space hit points (0 on the background)."""
    normal: Tensor
    """(..., H, W, 3) unit world-space normals (0 on the background)."""
    part_id: Tensor
    """(..., H, W) long: index of the part hit (0 on the background)."""


@dataclass(frozen=True)
class RenderResult:
    """A shaded render; leading dims (B, H, W) or (H, W)."""

    rgb: Tensor
    """(..., H, W, 3) float in [0, 1], composited over the background."""
    mask: Tensor
    """(..., H, W) bool foreground."""
    depth: Tensor
    """(..., H, W) distance along the ray (not z-depth); 0 on the background."""
    normal: Tensor
    """(..., H, W, 3) unit world-space normal; 0 on the background."""


def sphere_trace(shape: Shape, origins: Tensor, dirs: Tensor, config: RenderConfig = RenderConfig()) -> tuple[Tensor, Tensor]:
    """March rays against ``shape.sdf``.

    Args:
        origins, dirs: (R, 3) ray origins and unit directions.
    Returns:
        t: (R,) distance along each ray to the hit (meaningless where no hit).
        hit: (R,) bool.
    """
    # Clip to the bounding sphere |o + t d| = r: t = -b -/+ sqrt(b^2 - c), b = o.d, c = |o|^2 - r^2.
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - config.bound_radius ** 2
    disc = b * b - c
    root = disc.clamp_min(0.0).sqrt()
    t = (-b - root).clamp_min(0.0)
    t_far = -b + root
    hit = torch.zeros_like(b, dtype=torch.bool)

    idx = (disc > 0).nonzero().squeeze(1)  # active rays
    o, d, t_a, tf = origins[idx], dirs[idx], t[idx], t_far[idx]
    for step in range(config.max_steps):
        if idx.numel() == 0:
            break
        dist = shape.sdf(o + t_a[:, None] * d)  # (A,)
        t_a = t_a + dist
        eps = config.final_eps if step == config.max_steps - 1 else config.hit_eps
        done = dist < eps
        escaped = t_a > tf
        finished = done | escaped
        if finished.any():
            hit_now = done & ~escaped
            t[idx[hit_now]] = t_a[hit_now]
            hit[idx[hit_now]] = True
            keep = ~finished
            idx, o, d, t_a, tf = idx[keep], o[keep], d[keep], t_a[keep], tf[keep]
    return t, hit


# Tetrahedron offsets for normals (iq, "normals for an SDF"): n = sum_k k f(p + h k).
_TETRA = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


def trace_geometry(shape: Shape, camera: Camera, config: RenderConfig = RenderConfig()) -> Geometry:
    """The geometry pass for one camera or a batch of B cameras (see :class:`Geometry`)."""
    origins, dirs = camera_rays(camera)  # (..., H, W, 3)
    lead = dirs.shape[:-1]
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    t, hit = sphere_trace(shape, o, d, config)

    hit_idx = hit.nonzero().squeeze(1)
    p = o[hit_idx] + t[hit_idx, None] * d[hit_idx]  # (M, 3)
    offsets = _TETRA * config.normal_eps  # (4, 3)
    f = shape.sdf((p[:, None, :] + offsets).reshape(-1, 3)).reshape(-1, 4)  # (M, 4)
    n = f @ _TETRA  # (M, 3)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # A ray that grazes a sharp edge within hit_eps can stop just past it and see the far
    # side's normal (n . d > 0). Such a hit sees the surface edge-on: drop the normal's
    # component along the ray.
    along = (n * d[hit_idx]).sum(-1, keepdim=True).clamp_min(0.0)  # (M, 1)
    n = n - along * d[hit_idx]
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    R = o.shape[0]
    points = torch.zeros(R, 3)
    normal = torch.zeros(R, 3)
    part_id = torch.zeros(R, dtype=torch.long)
    depth = torch.zeros(R)
    points[hit_idx], normal[hit_idx], depth[hit_idx] = p, n, t[hit_idx]
    part_id[hit_idx] = shape.part_ids(p)
    return Geometry(hit.reshape(lead), depth.reshape(lead), points.reshape(*lead, 3),
                    normal.reshape(*lead, 3), part_id.reshape(lead))


def shade(geometry: Geometry, part_albedo: Tensor, light: Light,
          background: tuple[float, float, float] = BACKGROUND_RGB) -> Tensor:
    """Lambertian shading of a geometry pass.

    Args:
        geometry: leading dims (B, H, W) or (H, W).
        part_albedo: (P, 3) one colour table, or (B, P, 3) one per image.
        light: position (3,) / (B, 3), ambient () / (B,).
    Returns:
        rgb: (..., H, W, 3) in [0, 1].
    """
    batched = geometry.mask.ndim == 3
    mask, pts, nrm, pid = geometry.mask, geometry.points, geometry.normal, geometry.part_id
    if not batched:  # add a batch dimension of 1
        mask, pts, nrm, pid = mask[None], pts[None], nrm[None], pid[None]
    B = mask.shape[0]
    table = part_albedo.float().expand(B, -1, -1) if part_albedo.ndim == 2 else part_albedo.float()  # (B, P, 3)
    albedo = torch.gather(table, 1, pid.reshape(B, pid[0].numel(), 1).expand(-1, -1, 3)).reshape(*pid.shape, 3)
    pos = light.position.float().reshape(-1, 3).expand(B, 3)[:, None, None, :]  # (B, 1, 1, 3)
    amb = light.ambient.float().reshape(-1).expand(B)[:, None, None, None]  # (B, 1, 1, 1)
    to_light = pos - pts
    to_light = to_light / to_light.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    lambert = (nrm * to_light).sum(-1, keepdim=True).clamp_min(0.0)  # (B, H, W, 1)
    lit = albedo * (amb + (1.0 - amb) * lambert)
    rgb = torch.where(mask[..., None], lit, torch.tensor(background)).clamp(0.0, 1.0)
    return rgb if batched else rgb[0]


def render_object(obj: WorldObject, camera: Camera, light: Light, config: RenderConfig = RenderConfig()) -> RenderResult:
    """Render one object from one camera or a batch of B cameras (one light per camera).

    Returns a :class:`RenderResult` with leading dims (B, H, W) or (H, W), matching ``camera``.
    """
    geometry = trace_geometry(obj.shape, camera, config)
    rgb = shade(geometry, obj.shape.part_albedo(obj.rgb), light, config.background)
    return RenderResult(rgb, geometry.mask, geometry.depth, geometry.normal)
