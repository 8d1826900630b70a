"""Volume rendering of a NeRF with DreamFusion's shading.

For a ray r(s) = o + s d crossing the bounding sphere between s_near and s_far, N
stratified samples s_i with spacing delta, the standard quadrature (Max 1995; Mildenhall
et al. 2020, eq. 3):

    alpha_i = 1 - exp(-sigma_i delta_i),   T_i = prod_{j<i} (1 - alpha_j),   w_i = alpha_i T_i
    C = sum_i w_i c_i + (1 - sum_i w_i) c_bg

Shading (DreamFusion, section 3.1), with a point light at l and ambient fraction k:

    albedo:       c = a
    lambertian:   c = a (k + (1 - k) max(0, n . (l - x)/|l - x|))
    textureless:  c = (k + (1 - k) max(0, n . ...)) (white albedo: geometry only)

which is the world renderer's formula (``dreamlift.world.render.shade``), so a NeRF of a
world object renders like the prior's training images. The orientation loss of Ref-NeRF /
DreamFusion, sum_i w_i max(0, n_i . d)^2, is computed here because it needs per-sample
normals and weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..transfer import to_device
from .camera import Camera, Light, camera_rays

__all__ = ["RenderOutput", "Shading", "SHADINGS", "render_nerf", "ray_sphere"]

Shading = Literal["albedo", "lambertian", "textureless"]
SHADINGS: tuple[str, ...] = ("albedo", "lambertian", "textureless")


@dataclass
class RenderOutput:
    """A batch of rendered images (B, C, H, W)."""

    rgb: Tensor
    """(B, 3, H, W) in [0, 1], composited over the background."""
    opacity: Tensor
    """(B, 1, H, W) sum of weights, in [0, 1]."""
    depth: Tensor
    """(B, 1, H, W) expected distance along the ray (0 where empty)."""
    normal: Tensor | None
    """(B, 3, H, W) composited world-space normals (None when shading needed none)."""
    orientation: Tensor
    """Scalar orientation loss, mean over rays of sum_i w_i max(0, n_i . d)^2 (0 without normals)."""
    weights: Tensor
    """(B*H*W, N) compositing weights."""


def ray_sphere(origins: Tensor, dirs: Tensor, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances of unit rays (R, 3) through a sphere at the origin -> near, far, hit (R,)."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(0.0)
    far = (-b + root).clamp_min(0.0)
    return near, far, hit & (far > near)


def _plain_albedo(spec: str | Tensor, albedo: Tensor, w_eval: Tensor, sample_img: Tensor, B: int,
                  device) -> Tensor:
    """The uniform albedo of each image's textureless shading, (B, 3) ("mean" or a colour; see ``render_nerf``)."""
    if isinstance(spec, Tensor):
        return to_device(spec, device).reshape(-1, 3).expand(B, 3)
    with torch.no_grad():  # "mean": the view's weighted mean albedo, detached
        wm = w_eval[:, None]  # (M, 1) weight of each evaluated sample
        num = torch.zeros(B, 3, device=device).index_add_(0, sample_img, wm * albedo)
        den = torch.zeros(B, 1, device=device).index_add_(0, sample_img, wm)
        return torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.ones_like(num))


def render_nerf(field, camera: Camera, light: Light | None = None, shading: Shading = "albedo",
                background: Tensor | None = None, num_samples: int = 48, generator: torch.Generator | None = None,
                use_occupancy: bool = True, want_normals: bool = False,
                textureless_albedo: str | Tensor = "white", compact: bool | None = None) -> RenderOutput:
    """Render a :class:`dreamlift.scene.nerf.NeRF` from a batch of B cameras.

    Args:
        light: one point light per camera (needed for lambertian / textureless).
        background: (3,) or (B, 3) colour in [0, 1] (default white, the prior's background).
        generator: jitter of the stratified samples; None puts samples at the bin centres.
        use_occupancy: samples in cells the occupancy grid flags empty have no density.
        want_normals: compute normals even for albedo shading.
        textureless_albedo: the uniform albedo of textureless shading: "white" (DreamFusion), "mean"
            (each image's own mean rendered albedo, detached: geometry-only gradients in colours the
            prior has seen), or a (3,) / (B, 3) colour.
        compact: evaluate the field only at the samples that can have density (inside the sphere, in an
            occupied cell), gathered into one list. That is the least work, but the list's length is data the
            host must read: on a GPU, a wait for every queued kernel. With ``compact=False`` every sample is
            evaluated and the others' density is multiplied by zero: the same image, more field work, no wait.
            Default (None): compact on the CPU, not on a GPU.
    """
    if not camera.is_batched:
        raise ValueError("render_nerf expects a batched Camera")
    if not isinstance(textureless_albedo, Tensor) and textureless_albedo not in ("white", "mean"):
        raise ValueError(f"unknown textureless_albedo {textureless_albedo!r} (white, mean or a colour)")
    B, H, W = len(camera), camera.height, camera.width
    device = field.device
    compact = device.type == "cpu" if compact is None else compact
    origins, dirs = camera_rays(camera)  # (B, H, W, 3)
    o, d = to_device(origins.reshape(-1, 3), device), to_device(dirs.reshape(-1, 3), device)  # (R, 3)
    R, N = o.shape[0], num_samples
    bound = field.cfg.bound
    near, far, hit = ray_sphere(o, d, bound)  # sphere of radius bound: all of the field that matters
    # (drawn on the generator's device: a GPU run's render generator draws there, with no host-to-device copy)
    u = (torch.rand(R, N, generator=generator, device=generator.device).to(device) if generator is not None
         else torch.full((R, N), 0.5, device=device))
    delta = ((far - near) / N)[:, None]  # (R, 1)
    s = near[:, None] + (torch.arange(N, device=device)[None] + u) * delta  # (R, N)
    pts = o[:, None, :] + s[..., None] * d[:, None, :]  # (R, N, 3)

    active = hit[:, None].expand(R, N)
    if use_occupancy:
        active = active & field.occupancy.lookup(pts.reshape(-1, 3)).reshape(R, N)
    flat = active.reshape(-1)

    def pick(x: Tensor) -> Tensor:  # (R * N, ...) -> (M, ...): the samples evaluated
        return x[flat] if compact else x

    def spread(v: Tensor) -> Tensor:  # (M, ...) -> (R * N, ...), zero where no sample was evaluated
        if not compact:
            return v
        mask = flat.reshape(-1, *([1] * (v.ndim - 1))).expand(R * N, *v.shape[1:])
        return torch.zeros(R * N, *v.shape[1:], device=device, dtype=v.dtype).masked_scatter(mask, v)

    p = pick(pts.reshape(-1, 3))  # (M, 3)
    out = field(p)
    need_n = shading != "albedo" or want_normals
    density = out.density if compact else out.density * flat
    sigma = spread(density).reshape(R, N)

    alpha = 1.0 - torch.exp(-sigma * delta)  # (R, N)
    trans = torch.cumprod(torch.cat([torch.ones(R, 1, device=device), 1.0 - alpha + 1e-10], dim=1), dim=1)[:, :-1]
    w = alpha * trans  # (R, N)

    normal_img, orient = None, torch.zeros((), device=device)
    if need_n:
        if torch.is_grad_enabled():
            n = field.normals(p, out.log_density)  # (M, 3)
        else:
            # No gradients wanted (exports, previews): only samples that show in the image need a normal; the
            # others (compositing weight <= 1e-4, together at most N * 1e-4 of a pixel) are shaded as if unlit.
            n = torch.zeros_like(p)
            shows = pick(w.reshape(-1)) > 1e-4  # (M,)
            n[shows] = field.normals(p[shows], out.log_density[shows])
        normals = spread(n).reshape(R, N, 3)
        facing = (normals * d[:, None, :]).sum(-1).clamp_min(0.0)  # (R, N) > 0: normal faces away from camera
        orient = (w.detach() * facing**2).sum(-1).mean()  # DreamFusion stops gradients through w here
        normal_img = (w[..., None] * normals).sum(1)  # (R, 3)
    if shading == "albedo":
        colour = out.albedo
    else:
        if light is None:
            raise ValueError(f"{shading} shading needs a light")
        lpos = to_device(light.position.reshape(-1, 3), device).expand(B, 3)  # (B, 3)
        amb = to_device(light.ambient.reshape(-1), device).expand(B)  # (B,)
        ray_img = torch.arange(R, device=device) // (H * W)  # (R,) which image a ray belongs to
        sample_img = pick(ray_img[:, None].expand(R, N).reshape(-1))  # (M,)
        to_l = lpos[sample_img] - p
        to_l = to_l / to_l.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        lam = (n * to_l).sum(-1).clamp_min(0.0)[:, None]  # (M, 1)
        k = amb[sample_img][:, None]
        shade = k + (1.0 - k) * lam
        if shading == "lambertian":
            colour = shade * out.albedo
        elif isinstance(textureless_albedo, str) and textureless_albedo == "white":
            colour = shade.expand(-1, 3)
        else:
            colour = shade * _plain_albedo(textureless_albedo, out.albedo, pick(w.reshape(-1)), sample_img, B,
                                           device)[sample_img]
    rgb_s = spread(colour)
    rgb = (w[..., None] * rgb_s.reshape(R, N, 3)).sum(1)  # (R, 3)
    opacity = w.sum(-1, keepdim=True)  # (R, 1)
    bg = torch.ones(3, device=device) if background is None else to_device(background, device)
    bg = bg.reshape(-1, 3).expand(B, 3)[torch.arange(R, device=device) // (H * W)]  # (R, 3)
    rgb = rgb + (1.0 - opacity) * bg
    depth = (w * s).sum(-1, keepdim=True)

    def img(x: Tensor) -> Tensor:  # (R, C) -> (B, C, H, W)
        return x.reshape(B, H, W, -1).permute(0, 3, 1, 2)

    return RenderOutput(img(rgb), img(opacity), img(depth), None if normal_img is None else img(normal_img), orient, w)
