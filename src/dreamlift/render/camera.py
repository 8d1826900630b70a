"""Pinhole cameras, ray generation, and the camera / light distributions used for training.

Conventions
-----------
World frame: right-handed, +y up, objects face +z (see ``dreamlift.world.objects``).

Camera frame (OpenGL / NeRF convention): the camera looks along its local -z, +x is right
on the image, +y is up on the image. ``c2w`` (camera-to-world, 4x4) has columns
(right, up, back, position), so ``world = c2w[:3, :3] @ local + c2w[:3, 3]``.
Image row 0 is the top of the image; rays go through pixel centres.

Spherical camera placement: a camera at (azimuth a, elevation e, distance d) sits at
``d * (cos e sin a, sin e, cos e cos a)`` and looks at the origin. Azimuth 0 is the front
view (camera on the +z axis), azimuth increases towards +x (90 = seen from the +x side),
elevation is degrees above the horizontal plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Camera", "camera_rays", "look_at", "spherical_to_position", "CameraSample", "CameraDistribution",
    "Light", "LightDistribution", "view_word", "OVERHEAD_ELEVATION_DEG", "FRONT_HALF_ANGLE_DEG",
    "BACK_HALF_ANGLE_DEG",
]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera, or a batch of B of them sharing one image size."""

    c2w: Tensor
    """Camera-to-world transforms, (4, 4) or (B, 4, 4), float32."""
    fov_y_deg: Tensor
    """Vertical field of view in degrees, () or (B,)."""
    height: int
    """Image height in pixels."""
    width: int
    """Image width in pixels."""

    def __post_init__(self) -> None:
        if self.c2w.shape[-2:] != (4, 4) or self.c2w.ndim not in (2, 3):
            raise ValueError(f"c2w must have shape (4, 4) or (B, 4, 4), got {tuple(self.c2w.shape)}")
        if self.fov_y_deg.shape != self.c2w.shape[:-2]:
            raise ValueError(f"fov_y_deg shape {tuple(self.fov_y_deg.shape)} does not match c2w batch {tuple(self.c2w.shape[:-2])}")
        if not bool(((self.fov_y_deg > 0) & (self.fov_y_deg < 180)).all()):
            raise ValueError("fov_y_deg must lie in (0, 180) degrees")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")

    @property
    def is_batched(self) -> bool:
        return self.c2w.ndim == 3

    @property
    def position(self) -> Tensor:
        """Camera centres, (3,) or (B, 3)."""
        return self.c2w[..., :3, 3]

    def __len__(self) -> int:
        if not self.is_batched:
            raise TypeError("an unbatched Camera has no length")
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Camera:
        """Select cameras from a batch (an int gives an unbatched camera)."""
        if not self.is_batched:
            raise TypeError("cannot index an unbatched Camera")
        return Camera(self.c2w[index], self.fov_y_deg[index], self.height, self.width)


def camera_rays(camera: Camera) -> tuple[Tensor, Tensor]:
    """Rays through the pixel centres of a camera.

    Returns:
        origins: (H, W, 3), or (B, H, W, 3) for a batched camera: the camera centre.
        directions: same shape, unit length, in world space.
    """
    H, W = camera.height, camera.width
    c2w = camera.c2w.float()
    tan_half = torch.tan(torch.deg2rad(camera.fov_y_deg.float()) / 2)[..., None, None]  # (..., 1, 1)
    aspect = W / H
    j = (torch.arange(W, dtype=torch.float32) + 0.5) / W * 2 - 1  # (W,) -1 left .. 1 right
    i = 1 - (torch.arange(H, dtype=torch.float32) + 0.5) / H * 2  # (H,) 1 top .. -1 bottom
    x = j[None, :] * tan_half * aspect  # (..., H, W) via broadcast
    y = i[:, None] * tan_half
    x, y = torch.broadcast_tensors(x, y)
    local = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (..., H, W, 3)
    rot = c2w[..., None, None, :3, :3]  # (..., 1, 1, 3, 3)
    dirs = (rot @ local[..., None])[..., 0]  # (..., H, W, 3)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[..., None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def look_at(eye: Tensor, target: Tensor | None = None, up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> Tensor:
    """Camera-to-world matrices for cameras at ``eye`` looking at ``target`` (default the origin).

    Args:
        eye: (B, 3) camera positions. target: (B, 3) or None.
    Returns:
        c2w: (B, 4, 4). When the view direction is (anti)parallel to ``up`` (straight
        overhead), -z is used as the up hint instead, so the image's up points to the back.
    """
    eye = eye.float()
    target = torch.zeros_like(eye) if target is None else target.float().expand_as(eye)
    back = eye - target
    back = back / back.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # (B, 3), camera +z
    up_t = eye.new_tensor(up).expand_as(eye)
    right = torch.linalg.cross(up_t, back, dim=-1)
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt = eye.new_tensor((0.0, 0.0, -1.0)).expand_as(eye)
        right = torch.where(degenerate[:, None], torch.linalg.cross(alt, back, dim=-1), right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.eye(4).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, back, eye
    return c2w


def spherical_to_position(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor) -> Tensor:
    """Positions d (cos e sin a, sin e, cos e cos a) for tensors of shape (B,) -> (B, 3)."""
    a, e = torch.deg2rad(azimuth_deg.float()), torch.deg2rad(elevation_deg.float())
    d = distance.float()
    return torch.stack([d * e.cos() * a.sin(), d * e.sin(), d * e.cos() * a.cos()], dim=-1)


@dataclass(frozen=True)
class CameraSample:
    """A batch of cameras looking at the origin together with their spherical parameters."""

    camera: Camera
    """The batched camera (B cameras)."""
    azimuth_deg: Tensor
    """(B,) azimuth in degrees, 0 = front (+z), increasing towards +x."""
    elevation_deg: Tensor
    """(B,) elevation above the horizontal, degrees."""
    distance: Tensor
    """(B,) distance from the origin."""

    @staticmethod
    def from_spherical(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor, fov_y_deg: Tensor,
                       height: int, width: int) -> CameraSample:
        """Cameras on spheres around the origin, all looking at it. All inputs (B,)."""
        eye = spherical_to_position(azimuth_deg, elevation_deg, distance)
        camera = Camera(look_at(eye), fov_y_deg.float(), height, width)
        return CameraSample(camera, azimuth_deg.float(), elevation_deg.float(), distance.float())


def _check_range(name: str, r: tuple[float, float], lo: float = -math.inf, hi: float = math.inf) -> None:
    if len(r) != 2 or not (lo <= r[0] <= r[1] <= hi):
        raise ValueError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {r}")


def _uniform(r: tuple[float, float], n: int, generator: torch.Generator | None) -> Tensor:
    return r[0] + (r[1] - r[0]) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class CameraDistribution:
    """Random cameras on a sphere around the origin, looking at it.

    Each parameter is drawn uniformly (elevation uniform in degrees, not in area). The
    defaults suit 64x64 renders of objects inside the unit sphere: at the nearest distance
    and narrowest field of view the whole unit sphere is still in frame (asin(1/3.0) =
    19.5 deg < 20 deg), and at the farthest and widest it still spans ~60% of the frame height.
    """

    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    """Azimuth range in degrees; 0 = front view from +z, increasing towards +x."""
    elevation_deg: tuple[float, float] = (-10.0, 70.0)
    """Elevation range in degrees above the horizontal (above 60 counts as "overhead")."""
    distance: tuple[float, float] = (3.0, 3.6)
    """Distance range from the origin, in object radii (must exceed 1)."""
    fov_y_deg: tuple[float, float] = (40.0, 50.0)
    """Vertical field-of-view range in degrees."""

    def __post_init__(self) -> None:
        _check_range("azimuth_deg", self.azimuth_deg)
        _check_range("elevation_deg", self.elevation_deg, -90.0, 90.0)
        _check_range("distance", self.distance, 1.0 + 1e-6)
        _check_range("fov_y_deg", self.fov_y_deg, 1e-3, 179.0)

    def sample(self, n: int, generator: torch.Generator | None = None, height: int = 64,
               width: int | None = None) -> CameraSample:
        """``n`` random cameras with images of ``height`` x ``width`` (default square)."""
        az = _uniform(self.azimuth_deg, n, generator)
        el = _uniform(self.elevation_deg, n, generator)
        dist = _uniform(self.distance, n, generator)
        fov = _uniform(self.fov_y_deg, n, generator)
        return CameraSample.from_spherical(az, el, dist, fov, height, width or height)

    def orbit(self, n: int, elevation_deg: float = 15.0, distance: float | None = None,
              fov_y_deg: float | None = None, height: int = 64, width: int | None = None) -> CameraSample:
        """A deterministic turntable: ``n`` azimuths 0, 360/n, ... at one elevation and distance.

        ``distance`` and ``fov_y_deg`` default to the middle of this distribution's ranges.
        """
        if n < 1:
            raise ValueError(f"orbit needs n >= 1, got {n}")
        distance = sum(self.distance) / 2 if distance is None else distance
        fov_y_deg = sum(self.fov_y_deg) / 2 if fov_y_deg is None else fov_y_deg
        az = torch.arange(n, dtype=torch.float32) * (360.0 / n)
        full = lambda v: torch.full((n,), float(v))  # noqa: E731
        return CameraSample.from_spherical(az, full(elevation_deg), full(distance), full(fov_y_deg),
                                           height, width or height)


@dataclass(frozen=True)
class Light:
    """A point light with an ambient term, or a batch of B of them."""

    position: Tensor
    """Light positions, (3,) or (B, 3), world space."""
    ambient: Tensor
    """Ambient fraction in [0, 1], () or (B,): shading = albedo * (ambient + (1 - ambient) * max(0, n.l))."""


@dataclass(frozen=True)
class LightDistribution:
    """Random point lights placed around the camera (as in DreamFusion).

    The light sits at the camera's azimuth plus a uniform offset, the camera's elevation plus a
    uniform offset (clamped to [-89, 89]), at a random distance, so the visible side is mostly lit.
    """

    azimuth_offset_deg: tuple[float, float] = (-60.0, 60.0)
    """Offset of the light's azimuth from the camera's, degrees."""
    elevation_offset_deg: tuple[float, float] = (0.0, 45.0)
    """Offset of the light's elevation from the camera's, degrees (positive: from above)."""
    distance: tuple[float, float] = (3.0, 6.0)
    """Distance of the light from the origin."""
    ambient: tuple[float, float] = (0.25, 0.45)
    """Range of the ambient fraction."""

    def __post_init__(self) -> None:
        _check_range("azimuth_offset_deg", self.azimuth_offset_deg)
        _check_range("elevation_offset_deg", self.elevation_offset_deg)
        _check_range("distance", self.distance, 1.0 + 1e-6)
        _check_range("ambient", self.ambient, 0.0, 1.0)

    def sample(self, cameras: CameraSample, generator: torch.Generator | None = None) -> Light:
        """One light per camera of ``cameras`` -> Light with position (B, 3), ambient (B,)."""
        n = cameras.azimuth_deg.shape[0]
        az = cameras.azimuth_deg + _uniform(self.azimuth_offset_deg, n, generator)
        el = (cameras.elevation_deg + _uniform(self.elevation_offset_deg, n, generator)).clamp(-89.0, 89.0)
        pos = spherical_to_position(az, el, _uniform(self.distance, n, generator))
        return Light(pos, _uniform(self.ambient, n, generator))


#: Above this elevation (degrees) a view is "overhead", whatever its azimuth.
OVERHEAD_ELEVATION_DEG = 60.0
#: |azimuth| <= this (degrees, after wrapping to (-180, 180]) is a "front" view.
FRONT_HALF_ANGLE_DEG = 45.0
#: |azimuth| >= 180 - this is a "back" view; anything between front and back is "side".
BACK_HALF_ANGLE_DEG = 45.0


def view_word(azimuth_deg: float, elevation_deg: float) -> str:
    """The DreamFusion view word for a camera: "overhead", "front", "side" or "back".

    "overhead" if elevation > 60; otherwise, with the azimuth wrapped to (-180, 180],
    "front" if |azimuth| <= 45, "back" if |azimuth| >= 135, else "side".
    """
    if elevation_deg > OVERHEAD_ELEVATION_DEG:
        return "overhead"
    a = -((-float(azimuth_deg) + 180.0) % 360.0 - 180.0)  # wrap to (-180, 180]
    if abs(a) <= FRONT_HALF_ANGLE_DEG:
        return "front"
    if abs(a) >= 180.0 - BACK_HALF_ANGLE_DEG:
        return "back"
    return "side"
