"""Image metrics for novel views: PSNR, SSIM, and a result's held-out views against the true object's.

SSIM is Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity"):
an 11 x 11 Gaussian window of sigma 1.5, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1, population
(co)variances, averaged over the pixels where the window fits and over the channels
(tests/unit/evaluate/test_views.py checks it against scikit-image's ``structural_similarity``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "held_out_cameras", "held_out_light", "novel_view_scores"]


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of images (B, C, H, W) in [0, 1], one per image (B,)."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return (-10.0 * torch.log10(mse.clamp_min(1e-12))).float()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # (size, size)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity of images (B, C, H, W) in [0, 1], one per image (B,) (see the module docstring)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) images of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    c = a.shape[1]
    w = _gaussian_window(window, sigma).to(a.device)[None, None].expand(c, 1, -1, -1)
    x, y = a.double(), b.double()
    blur = lambda z: F.conv2d(z, w, groups=c)  # noqa: E731  valid: only where the window fits
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def held_out_cameras(ref_azimuth: float, n: int = 8, elevation: float = 15.0, size: int = 64):
    """``n - 1`` cameras round the object at ``elevation``, every 360 / n degrees from the reference's azimuth,
    the reference's own left out: the views an image-to-3D result is scored on. -> CameraSample."""
    from ..render.camera import CameraSample

    az = torch.tensor([ref_azimuth + 360.0 * k / n for k in range(1, n)])
    full = lambda v: torch.full((n - 1,), float(v))  # noqa: E731
    return CameraSample.from_spherical(az, full(elevation), full(3.3), full(45.0), size, size)


def held_out_light(cams):
    """A fixed light per camera: 30 degrees round and 30 up from it, 4.5 radii out, ambient 0.35."""
    from ..render.camera import Light, spherical_to_position

    n = cams.azimuth_deg.shape[0]
    pos = spherical_to_position(cams.azimuth_deg + 30.0, (cams.elevation_deg + 30.0).clamp(-89, 89),
                                torch.full((n,), 4.5))
    return Light(pos, torch.full((n,), 0.35))


@torch.no_grad()
def novel_view_scores(scene, obj, ref_azimuth: float, n: int = 8, size: int = 64) -> dict:
    """PSNR and SSIM of a representation's Lambertian renders against the true object's, at the held-out
    cameras (``held_out_cameras``) and lights (``held_out_light``). -> {"psnr", "ssim", "views"}."""
    from ..world.render import render_object

    cams = held_out_cameras(ref_azimuth, n, size=size)
    light = held_out_light(cams)
    truth = render_object(obj, cams.camera, light).rgb.permute(0, 3, 1, 2).clamp(0, 1)  # (V, 3, S, S)
    was = scene.training
    scene.eval()
    try:
        out = scene.render(cams.camera, light, "lambertian")
    finally:
        scene.train(was)
    pred = out.rgb.float().clamp(0, 1).cpu()
    p, s = psnr(pred, truth), ssim(pred, truth)
    finite = lambda v: float(v) if math.isfinite(float(v)) else None  # noqa: E731
    return {"psnr": finite(p.mean()), "ssim": finite(s.mean()), "views": n - 1}
