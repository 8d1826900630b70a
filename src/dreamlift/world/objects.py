"""Objects of the world: a coloured shape made of parts, with exact ground-truth queries.

Canonical frame (shared by every object, camera and renderer of dreamlift)
-------------------------------------------------------------------------
Right-handed, +y up, the object's front faces +z (the glTF convention), +x is the
object's left side seen from the object / the viewer's right seen from the front.
Every object is centred near the origin and lies inside the unit sphere |x| <= 1
(so the cube [-1, 1]^3 holds it); ``BOUND_RADIUS`` names that radius.

A :class:`Shape` is the geometry of a category: a tuple of :class:`Part`, each with its own
SDF and either a fixed colour (a carrot nose is orange) or ``None``, meaning "the object's
named colour". The object's SDF is the union (minimum) of its parts' SDFs, and the part
that attains the minimum at a point gives that point its colour. A :class:`WorldObject` is
a shape plus one colour name; colour never changes geometry, which the dataset renderer
exploits (one geometry pass, many colours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .colours import RGB, colour_rgb

__all__ = ["BOUND_RADIUS", "Part", "Shape", "WorldObject", "sdf_gradient"]

#: Every object lies inside the sphere of this radius around the origin.
BOUND_RADIUS = 1.0


@dataclass(frozen=True)
class Part:
    """One part of a shape."""

    name: str
    """Human-readable name, e.g. "handle"."""
    sdf: Callable[[Tensor], Tensor]
    """Signed distance of the part: points (N, 3) -> (N,)."""
    colour: RGB | None = None
    """Fixed RGB albedo of the part, or None to take the object's named colour."""


@dataclass(frozen=True)
class Shape:
    """The geometry of one category: parts in the canonical frame."""

    category: str
    """Category name, e.g. "mug"."""
    parts: tuple[Part, ...]
    """The parts; the first is the main body."""
    front: str | None = None
    """What marks the front (+z side) of a front-facing category, or None when front and back look alike."""

    def part_sdfs(self, points: Tensor) -> Tensor:
        """Signed distance to each part. points (N, 3) -> (N, P)."""
        _check_points(points)
        return torch.stack([part.sdf(points) for part in self.parts], dim=-1)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance to the shape (union of parts). points (N, 3) -> (N,)."""
        _check_points(points)
        out = self.parts[0].sdf(points)
        for part in self.parts[1:]:
            out = torch.minimum(out, part.sdf(points))
        return out

    def part_ids(self, points: Tensor) -> Tensor:
        """Index of the nearest part (the one defining the surface there). points (N, 3) -> (N,) long."""
        return self.part_sdfs(points).argmin(dim=-1)

    def part_albedo(self, rgb: RGB) -> Tensor:
        """Albedo table (P, 3) for this shape painted in the named colour ``rgb``."""
        return torch.tensor([p.colour if p.colour is not None else rgb for p in self.parts], dtype=torch.float32)

    @property
    def is_front_facing(self) -> bool:
        """Whether the front view differs from the back view by design."""
        return self.front is not None


@dataclass(frozen=True)
class WorldObject:
    """A shape painted in a named colour: the ground truth for one prompt such as "a red mug"."""

    shape: Shape
    """The geometry."""
    colour: str
    """The colour name (a key of ``COLOURS``)."""

    def __post_init__(self) -> None:
        colour_rgb(self.colour)  # validates the name

    @property
    def category(self) -> str:
        return self.shape.category

    @property
    def rgb(self) -> RGB:
        """The RGB albedo of the named colour."""
        return colour_rgb(self.colour)

    def sdf(self, points: Tensor) -> Tensor:
        """Signed distance, negative inside. points (N, 3) -> (N,)."""
        return self.shape.sdf(points)

    def occupancy(self, points: Tensor) -> Tensor:
        """Whether each point is inside the object. points (N, 3) -> (N,) bool."""
        return self.shape.sdf(points) < 0.0

    def albedo(self, points: Tensor) -> Tensor:
        """RGB albedo of the part nearest to each point. points (N, 3) -> (N, 3) float32."""
        table = self.shape.part_albedo(self.rgb)  # (P, 3)
        return table[self.shape.part_ids(points)]

    def surface_samples(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points on the surface, each within 1e-4 of the zero level set. -> (n, 3) float32.

        Points drawn uniformly in a thin shell (|sdf| < 0.05) around the surface are projected
        onto it by Newton steps p <- p - sdf(p) grad / |grad|^2 (in float64). The result is
        close to, but not exactly, uniform in surface area.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        found: list[Tensor] = []
        total, rounds = 0, 0
        while total < n:
            rounds += 1
            if rounds > 100:
                raise RuntimeError(f"could not sample the surface of {self.category}")
            p = torch.rand(max(4 * n, 4096), 3, generator=generator, dtype=torch.float64) * 2 - 1
            p = p[self.sdf(p).abs() < 0.05]
            for _ in range(12):
                d = self.sdf(p)
                g = sdf_gradient(self.sdf, p)
                p = p - (d / g.pow(2).sum(-1).clamp_min(1e-12))[:, None] * g
            ok = (self.sdf(p).abs() < 1e-4) & (p.norm(dim=-1) <= BOUND_RADIUS)
            found.append(p[ok])
            total += int(ok.sum())
        return torch.cat(found)[:n].float()


def sdf_gradient(sdf: Callable[[Tensor], Tensor], points: Tensor, h: float = 1e-4) -> Tensor:
    """Gradient of an SDF by central differences. points (N, 3) -> (N, 3) (not normalised)."""
    offsets = torch.eye(3, dtype=points.dtype) * h  # (3, 3)
    shifted = torch.cat([points[:, None] + offsets, points[:, None] - offsets], dim=1)  # (N, 6, 3)
    d = sdf(shifted.reshape(-1, 3)).reshape(-1, 2, 3)  # (N, +/-, xyz)
    return (d[:, 0] - d[:, 1]) / (2 * h)


def _check_points(points: Tensor) -> None:
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(points.shape)}")
