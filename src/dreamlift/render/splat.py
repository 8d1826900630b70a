"""Differentiable 3D Gaussian splatting in pure PyTorch (Kerbl et al. 2023), no CUDA kernels.

Each Gaussian i has a centre mu_i, a rotation R_i (unit quaternion, w first), scales s_i,
an opacity o_i and a colour (spherical harmonics). Its 3D covariance is

    Sigma = R S S^T R^T,   S = diag(s)                                    (3DGS eq. 6)

For a camera with world-to-camera rotation W and the perspective Jacobian J of the pixel
projection at the centre (EWA splatting, Zwicker et al. 2002, eq. 31; 3DGS eq. 5)

    Sigma' = J W Sigma W^T J^T + 0.3 I        (the 0.3 px^2 low-pass filter of graphdeco's code)
    conic  = Sigma'^-1,   radius = ceil(3 sqrt(lambda_max(Sigma')))

and a pixel centre p at offset d = p - mu' from the projected centre receives

    alpha = min(0.99, o exp(-1/2 d^T conic d)),   skipped when alpha < 1/255.

Pixels composite front to back in order of camera depth, C = sum_i c_i alpha_i T_i with
T_i = prod_{j<i} (1 - alpha_j), and stop before the Gaussian that would take T below 1e-4
(graphdeco's forward.cu constants). Everything runs over the sparse list of (Gaussian,
pixel) pairs inside each Gaussian's 3-sigma square, never over a dense N x H x W tensor:
pairs are sorted by pixel then depth, and the transmittance is a segmented cumulative sum
of log(1 - alpha) within each pixel's run of pairs. Plain autograd gives the gradients.

Camera conventions are ``dreamlift.render.camera``'s (OpenGL: the camera looks along -z,
+x right, +y up, image row 0 at the top, rays through pixel centres, f = (H/2) / tan(fov_y/2)),
so a pixel's ray from :func:`camera_rays` passes through the pixel this module projects to.
Shading and compositing over the background are ``dreamlift.render.volume``'s, per Gaussian
instead of per sample; the output is the same :class:`RenderOutput`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import Camera, Light
from .volume import RenderOutput, Shading

__all__ = ["SH_C0", "Projection", "quaternion_to_matrix", "covariance", "eval_sh", "project_gaussians",
           "rasterize", "render_gaussians", "ALPHA_MIN", "ALPHA_MAX", "TRANSMITTANCE_MIN", "LOW_PASS"]

#: 3DGS's compositing constants (graphdeco-inria diff-gaussian-rasterization, forward.cu).
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
TRANSMITTANCE_MIN = 1e-4
#: Variance in px^2 added to the projected covariance (a low-pass filter of one pixel's width).
LOW_PASS = 0.3
#: Footprint half-width in standard deviations of the larger axis.
FOOTPRINT_SIGMAS = 3.0

# Real spherical-harmonic constants in graphdeco's convention (utils/sh_utils.py).
SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
          1.445305721320277, -0.5900435899266435)


def quaternion_to_matrix(quats: Tensor) -> Tensor:
    """Rotation matrices of quaternions (w, x, y, z), normalised here, (N, 4) -> (N, 3, 3)."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def covariance(log_scales: Tensor, quats: Tensor) -> Tensor:
    """Sigma = R S S^T R^T from log-scales (N, 3) and quaternions (N, 4) -> (N, 3, 3)."""
    m = quaternion_to_matrix(quats) * log_scales.exp()[..., None, :]  # R S: column k scaled by s_k
    return m @ m.transpose(-1, -2)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Real spherical harmonics up to ``degree`` (0..3) in graphdeco's convention.

    Args:
        sh: (..., (degree + 1)^2, 3) coefficients per colour channel.
        dirs: (..., 3) unit directions (from the camera to the Gaussian, as graphdeco).
    Returns:
        (..., 3) sum_k Y_k(dir) sh_k, without the +0.5 offset.
    """
    if not 0 <= degree <= 3 or sh.shape[-2] < (degree + 1) ** 2:
        raise ValueError(f"degree {degree} needs {(degree + 1) ** 2} coefficients, got {sh.shape[-2]}")
    out = SH_C0 * sh[..., 0, :]
    if degree == 0:
        return out
    x, y, z = (dirs[..., i:i + 1] for i in range(3))  # each (..., 1)
    out = out - _SH_C1 * y * sh[..., 1, :] + _SH_C1 * z * sh[..., 2, :] - _SH_C1 * x * sh[..., 3, :]
    if degree == 1:
        return out
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    c2 = _SH_C2
    out = (out + c2[0] * xy * sh[..., 4, :] + c2[1] * yz * sh[..., 5, :] + c2[2] * (2 * zz - xx - yy) * sh[..., 6, :]
           + c2[3] * xz * sh[..., 7, :] + c2[4] * (xx - yy) * sh[..., 8, :])
    if degree == 2:
        return out
    c3 = _SH_C3
    return (out + c3[0] * y * (3 * xx - yy) * sh[..., 9, :] + c3[1] * xy * z * sh[..., 10, :]
            + c3[2] * y * (4 * zz - xx - yy) * sh[..., 11, :] + c3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[..., 12, :]
            + c3[4] * x * (4 * zz - xx - yy) * sh[..., 13, :] + c3[5] * z * (xx - yy) * sh[..., 14, :]
            + c3[6] * x * (xx - 3 * yy) * sh[..., 15, :])


def _sh_degree(sh: Tensor) -> int:
    k = sh.shape[-2]
    degree = math.isqrt(k) - 1
    if (degree + 1) ** 2 != k or not 0 <= degree <= 3:
        raise ValueError(f"sh must have 1, 4, 9 or 16 coefficients per channel, got {k}")
    return degree


@dataclass
class Projection:
    """N Gaussians seen by B cameras, in pixel units (x right from the left edge, y down from the top)."""

    means2d: Tensor
    """(B, N, 2) projected centres; pixel (row i, column j) has its centre at (j + 0.5, i + 0.5)."""
    conics: Tensor
    """(B, N, 3) the inverse 2D covariance as (a, b, c) of [[a, b], [b, c]]."""
    cov2d: Tensor
    """(B, N, 2, 2) J W Sigma W^T J^T + 0.3 I."""
    depths: Tensor
    """(B, N) depth along the camera's viewing axis (-z in the camera frame)."""
    radii: Tensor
    """(B, N) long, footprint half-width ceil(3 sqrt(lambda_max)) in pixels (0 where culled)."""
    visible: Tensor
    """(B, N) bool: in front of the near plane, footprint non-empty and inside the image."""


def _focal(camera: Camera, like: Tensor) -> tuple[Tensor, Tensor]:
    """(tan(fov_y / 2), f) per camera, (B,) each, with f = (H/2) / tan(fov_y / 2)."""
    tan_half = torch.tan(torch.deg2rad(camera.fov_y_deg.to(like)) / 2)
    return tan_half, (camera.height / 2) / tan_half


def project_gaussians(means: Tensor, covariances: Tensor, camera: Camera, near: float = 0.2) -> Projection:
    """EWA projection of N Gaussians into B cameras (see the module docstring).

    Args:
        means: (N, 3) world centres. covariances: (N, 3, 3) world covariances.
        camera: a batched Camera (B cameras). near: Gaussians with depth <= near are culled (graphdeco: 0.2).
    """
    H, W = camera.height, camera.width
    c2w = camera.c2w.to(means)
    rot, pos = c2w[:, :3, :3], c2w[:, :3, 3]  # (B, 3, 3) columns right, up, back; (B, 3)
    p = (means[None] - pos[:, None]) @ rot  # (B, N, 3) camera frame: rot^T (mu - pos) as rows
    x, y, z = p[..., 0], p[..., 1], -p[..., 2]  # z > 0 in front of the camera
    in_front = z > near
    z = torch.where(in_front, z, torch.ones_like(z))  # culled ones: finite values, no NaN in backward
    tan_half, f = _focal(camera, means)  # (B,)
    f = f[:, None]
    u = W / 2 + f * x / z  # (B, N)
    v = H / 2 - f * y / z
    # The Jacobian of (u, v) w.r.t. camera coordinates (x, y, z_cam = -z), with x/z and y/z clamped to
    # 1.3x the field of view as graphdeco does, so Gaussians far off-screen do not get huge footprints.
    lim_y = 1.3 * tan_half[:, None]
    lim_x = lim_y * (W / H)
    tx = torch.maximum(torch.minimum(x / z, lim_x), -lim_x) * z
    ty = torch.maximum(torch.minimum(y / z, lim_y), -lim_y) * z
    zero = torch.zeros_like(z)
    jac = torch.stack([f / z, zero, f * tx / z**2, zero, -f / z, -f * ty / z**2], -1).reshape(*z.shape, 2, 3)
    t = jac @ rot.transpose(-1, -2)[:, None]  # (B, N, 2, 3) J W, with W = rot^T
    cov2d = t @ covariances[None] @ t.transpose(-1, -2)  # (B, N, 2, 2)
    cov2d = cov2d + LOW_PASS * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 1]
    det = a * c - b * b
    ok = in_front & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], -1)  # (B, N, 3)
    with torch.no_grad():
        lam = 0.5 * (a + c) + torch.sqrt((0.5 * (a - c)) ** 2 + b * b)  # larger eigenvalue of cov2d
        radii = torch.ceil(FOOTPRINT_SIGMAS * lam.clamp_min(0).sqrt()).long()
        ok = ok & (u + radii > 0) & (u - radii < W) & (v + radii > 0) & (v - radii < H)
        radii = torch.where(ok, radii, torch.zeros_like(radii))
    return Projection(torch.stack([u, v], -1), conics, cov2d, z, radii, ok)


@dataclass
class _Pairs:
    """The (camera, Gaussian, pixel) pairs that composite, sorted by pixel then depth; P of them."""

    cg: Tensor
    """(P,) long, camera * N + Gaussian."""
    pixel: Tensor
    """(P,) long, camera * H * W + row * W + column."""
    weight: Tensor
    """(P,) alpha_i T_i."""


def _enumerate_pairs(proj: Projection, H: int, W: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every pixel whose centre lies in a visible Gaussian's footprint square -> cg, rows, cols (P,) long."""
    cg = proj.visible.reshape(-1).nonzero().squeeze(1)  # (M,)
    uv = proj.means2d.detach().reshape(-1, 2)[cg]
    r = proj.radii.reshape(-1)[cg].to(uv)
    # pixel centres j + 0.5 within [u - r, u + r], clipped to the image
    j0 = torch.ceil(uv[:, 0] - r - 0.5).clamp(0, W - 1).long()
    j1 = torch.floor(uv[:, 0] + r - 0.5).clamp(0, W - 1).long()
    i0 = torch.ceil(uv[:, 1] - r - 0.5).clamp(0, H - 1).long()
    i1 = torch.floor(uv[:, 1] + r - 0.5).clamp(0, H - 1).long()
    bw, bh = (j1 - j0 + 1).clamp_min(0), (i1 - i0 + 1).clamp_min(0)
    counts = bw * bh  # (M,)
    owner = torch.repeat_interleave(torch.arange(cg.numel(), device=cg.device), counts)  # (P,)
    local = torch.arange(owner.numel(), device=cg.device) - (torch.cumsum(counts, 0) - counts)[owner]
    cols = j0[owner] + local % bw[owner]
    rows = i0[owner] + local // bw[owner]
    return cg[owner], rows, cols


def _composite_weights(proj: Projection, opacities: Tensor, H: int, W: int) -> _Pairs:
    """alpha_i T_i of every pair that survives 3DGS's thresholds, sorted by pixel then depth."""
    B, N = proj.radii.shape
    cg, rows, cols = _enumerate_pairs(proj, H, W)
    uv = proj.means2d.reshape(-1, 2)[cg]  # (P, 2)
    dx = cols.to(uv) + 0.5 - uv[:, 0]
    dy = rows.to(uv) + 0.5 - uv[:, 1]
    a, b, c = proj.conics.reshape(-1, 3)[cg].unbind(-1)
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = (opacities[cg % N] * power.exp()).clamp(max=ALPHA_MAX)  # clamp: no gradient where capped, as graphdeco
    with torch.no_grad():
        keep = ((power <= 0) & (alpha >= ALPHA_MIN)).nonzero().squeeze(1)
    cg, alpha = cg[keep], alpha[keep]
    pixel = (cg // N) * (H * W) + rows[keep] * W + cols[keep]
    with torch.no_grad():  # one sort on (pixel, depth rank); ties in depth keep the Gaussians' order
        rank = torch.empty_like(proj.depths, dtype=torch.long)  # (B, N) depth rank within each camera
        order = torch.argsort(proj.depths.detach(), dim=1, stable=True)
        rank.scatter_(1, order, torch.arange(N, device=rank.device).expand(B, N))
        key = pixel * N + rank.reshape(-1)[cg]
        order = torch.argsort(key)
    cg, pixel, alpha = cg[order], pixel[order], alpha[order]
    if cg.numel() == 0:
        return _Pairs(cg, pixel, alpha)
    # Segmented exclusive cumulative sum of log(1 - alpha) per pixel. The running sum is in float64:
    # over all pixels it grows large, and the per-pixel difference must keep float32's precision.
    log_t = torch.log1p(-alpha).double()
    excl = torch.cumsum(log_t, 0) - log_t  # exclusive, over all pairs
    with torch.no_grad():
        first = torch.ones_like(pixel, dtype=torch.bool)
        first[1:] = pixel[1:] != pixel[:-1]
        idx = torch.arange(pixel.numel(), device=pixel.device)
        start = torch.cummax(torch.where(first, idx, torch.zeros_like(idx)), 0).values  # first pair of my pixel
    log_trans = (excl - excl[start]).to(alpha.dtype)  # log T_i
    with torch.no_grad():  # stop before the pair that would take T below 1e-4 (T only decreases)
        kept = ((log_trans + log_t.to(alpha.dtype)) >= math.log(TRANSMITTANCE_MIN)).nonzero().squeeze(1)
    return _Pairs(cg[kept], pixel[kept], alpha[kept] * log_trans[kept].exp())


def _normals(log_scales: Tensor, quats: Tensor, means: Tensor, cam_pos: Tensor) -> Tensor:
    """Each Gaussian's shortest axis, turned towards each camera, (B, N, 3)."""
    rot = quaternion_to_matrix(quats)  # (N, 3, 3), columns are the axes
    shortest = log_scales.detach().argmin(-1)  # (N,)
    axis = torch.gather(rot, 2, shortest[:, None, None].expand(-1, 3, 1))[..., 0]  # (N, 3)
    to_cam = cam_pos[:, None] - means[None]  # (B, N, 3)
    facing = (axis[None] * to_cam).sum(-1, keepdim=True) >= 0
    return torch.where(facing, axis[None], -axis[None])


def _gaussian_features(means: Tensor, log_scales: Tensor, quats: Tensor, sh: Tensor, camera: Camera,
                       light: Light | None, shading: Shading, want_normals: bool):
    """Per (camera, Gaussian) albedo (B, N, 3), Lambertian shade (B, N, 1) or None (albedo shading), normals
    (B, N, 3) or None, and distance from the camera (B, N, 1)."""
    B = len(camera)
    cam_pos = camera.c2w[:, :3, 3].to(means)  # (B, 3)
    view = means[None] - cam_pos[:, None]  # (B, N, 3) camera -> Gaussian
    dist = view.norm(dim=-1, keepdim=True)  # (B, N, 1)
    dirs = view / dist.clamp_min(1e-12)
    albedo = (eval_sh(_sh_degree(sh), sh[None].expand(B, -1, -1, -1), dirs) + 0.5).clamp_min(0.0)  # (B, N, 3)
    normals = _normals(log_scales, quats, means, cam_pos) if shading != "albedo" or want_normals else None
    shade = None
    if shading != "albedo":
        lpos = light.position.to(means).reshape(-1, 3).expand(B, 3)
        amb = light.ambient.to(means).reshape(-1).expand(B)[:, None, None]  # (B, 1, 1)
        to_l = lpos[:, None] - means[None]
        to_l = to_l / to_l.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        shade = amb + (1.0 - amb) * (normals * to_l).sum(-1, keepdim=True).clamp_min(0.0)  # (B, N, 1)
    return albedo, shade, normals, dist


def _colour(albedo: Tensor, shade: Tensor | None, shading: Shading, textureless_albedo: str | Tensor) -> Tensor | None:
    """Per (camera, Gaussian) colour (B, N, 3) of a shading, or None for textureless "mean" (each image's mean
    albedo, known only after compositing)."""
    if shading == "albedo":
        return albedo
    if shading == "lambertian":
        return shade * albedo
    if isinstance(textureless_albedo, Tensor):
        return shade * textureless_albedo.to(albedo).reshape(-1, 3).expand(albedo.shape[0], 3)[:, None]
    return shade.expand(-1, -1, 3) if textureless_albedo == "white" else None


#: Use gsplat's CUDA rasteriser for CUDA tensors where gsplat is installed (tests turn it off to compare).
USE_GSPLAT = True


def _gsplat_rasterization():
    """``gsplat.rasterization``, or None where gsplat is not installed (or does not import)."""
    try:
        from gsplat import rasterization
    except Exception:  # not installed, or built for another torch / CUDA: the PyTorch path serves
        return None
    return rasterization


def opencv_cameras(camera: Camera, like: Tensor) -> tuple[Tensor, Tensor]:
    """Our OpenGL cameras as OpenCV ones (x right, y down, z forward), as gsplat takes them: world-to-camera
    matrices (B, 4, 4) and pinhole intrinsics K (B, 3, 3) with the principal point at the image centre, so
    K (R x + t) / z is the pixel position :func:`project_gaussians` gives."""
    B, H, W = len(camera), camera.height, camera.width
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=like.dtype, device=like.device))
    viewmats = flip @ torch.linalg.inv(camera.c2w.to(like))  # (B, 4, 4)
    _, f = _focal(camera, like)
    Ks = torch.zeros(B, 3, 3, dtype=like.dtype, device=like.device)
    Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = f, f, W / 2, H / 2, 1.0
    return viewmats, Ks


def _rasterize_gsplat(rasterization, means, log_scales, quats, opacity_logits, camera, albedo, shade, normals, dist,
                      shading, textureless_albedo, background, near, on_projection) -> RenderOutput:
    """The same image as the PyTorch path, composited by gsplat's CUDA kernels (same EWA projection, 0.3 px
    low-pass, 3-sigma footprint and 3DGS constants). Our features are gsplat's per-camera colours
    (C, N, D); cameras go over as OpenCV world-to-camera matrices (y down, z forward) and pinhole K."""
    B, H, W = len(camera), camera.height, camera.width
    viewmats, Ks = opencv_cameras(camera, means)
    first = _colour(albedo, shade, shading, textureless_albedo)
    if first is None:  # "mean": composite the albedo and the shade; the image is shade x the image's mean albedo
        first = albedo
    feats = torch.cat([first, dist] + ([normals] if normals is not None else [])
                      + ([shade] if shade is not None else []), -1)  # (B, N, D)
    out, alpha, meta = rasterization(means, quats, log_scales.exp(), torch.sigmoid(opacity_logits), feats, viewmats,
                                     Ks, W, H, near_plane=near, eps2d=LOW_PASS, packed=False, render_mode="RGB",
                                     rasterize_mode="classic")  # (B, H, W, D), (B, H, W, 1)
    if on_projection is not None:
        radii = meta["radii"] if meta["radii"].ndim == 2 else meta["radii"].amax(-1)
        on_projection(Projection(meta["means2d"], meta["conics"], None, meta["depths"], radii, radii > 0))
    out, alpha = out.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)  # (B, D, H, W), (B, 1, H, W)
    rgb = out[:, :3]
    if shading == "textureless" and isinstance(textureless_albedo, str) and textureless_albedo == "mean":
        with torch.no_grad():
            den = alpha.sum((2, 3))  # (B, 1)
            plain = torch.where(den > 1e-6, rgb.sum((2, 3)) / den.clamp_min(1e-6), torch.ones_like(den).expand(B, 3))
        rgb = out[:, -1:] * plain[:, :, None, None]
    bg = torch.ones(3, dtype=means.dtype, device=means.device) if background is None else background.to(means)
    rgb = rgb + (1.0 - alpha) * bg.reshape(-1, 3).expand(B, 3)[:, :, None, None]
    normal = out[:, 4:7] if normals is not None else None
    zero = torch.zeros((), dtype=means.dtype, device=means.device)
    return RenderOutput(rgb, alpha, out[:, 3:4], normal, zero, torch.zeros(0, dtype=means.dtype, device=means.device))


def rasterize(means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh: Tensor, camera: Camera,
              light: Light | None = None, shading: Shading = "albedo", background: Tensor | None = None,
              want_normals: bool = False, textureless_albedo: str | Tensor = "white",
              near: float = 0.2, on_projection=None) -> RenderOutput:
    """Render N Gaussians from a batch of B cameras (see the module docstring).

    Args:
        means: (N, 3) centres. log_scales: (N, 3). quats: (N, 4) w first (normalised here).
        opacity_logits: (N,), opacity = sigmoid. sh: (N, (d + 1)^2, 3) colour coefficients, d in 0..3;
            colour = max(0, 0.5 + sum_k Y_k(view dir) sh_k) (graphdeco: 0.5 + C0 f_dc at degree 0).
        camera: batched, B cameras. light: one point light per camera (lambertian / textureless).
        shading: "albedo" c = a; "lambertian" c = a (k + (1 - k) max(0, n . l)); "textureless" the same
            with a plain albedo (``textureless_albedo``: "white", "mean" = each image's detached mean
            rendered colour, or a (3,) / (B, 3) colour), as ``render_nerf``. n and l per Gaussian: its
            normal (below) and the unit vector from its centre to the light.
        background: (3,) or (B, 3) colour in [0, 1] (default white).
        want_normals: composite normals even for albedo shading.
        near: Gaussians whose depth is <= near are culled.
        on_projection: called with the :class:`Projection` before compositing (densification keeps its
            ``means2d`` to read the view-space positional gradient after the backward pass).

    Normals are each Gaussian's shortest axis (a flat Gaussian's normal), flipped to face the camera,
    composited like colour. The alternative, normals from the rendered depth's gradient, needs a
    depth image first and a second pass, shades a whole pixel with one normal, and is noisy where
    translucent Gaussians overlap at different depths; the axis is per Gaussian, exact for the thin
    discs Gaussians become on a surface, and gives plain autograd gradients to the rotation. A round
    (isotropic) Gaussian has no shortest axis: it gets the first of its equal axes.

    Returns:
        RenderOutput: rgb (B, 3, H, W) composited over the background; opacity (B, 1, H, W) sum of
        weights (<= 1 - 1e-4 by the early stop); depth (B, 1, H, W) sum of weights times the distance from
        the camera to each Gaussian's centre (0 where empty, as volume.py's expected ray distance);
        normal (B, 3, H, W) or None; orientation: 0 (normals face the camera by construction, so the
        orientation penalty sum w max(0, n . d)^2 is 0 at each Gaussian's centre); weights (P,): alpha_i T_i
        of the P (Gaussian, pixel) pairs that composited (not volume.py's dense (rays, samples) layout).
    """
    if not camera.is_batched:
        raise ValueError("rasterize expects a batched Camera")
    if shading not in ("albedo", "lambertian", "textureless"):
        raise ValueError(f"unknown shading {shading!r} (albedo, lambertian or textureless)")
    if not isinstance(textureless_albedo, Tensor) and textureless_albedo not in ("white", "mean"):
        raise ValueError(f"unknown textureless_albedo {textureless_albedo!r} (white, mean or a colour)")
    if shading != "albedo" and light is None:
        raise ValueError(f"{shading} shading needs a light")
    B, H, W, N = len(camera), camera.height, camera.width, means.shape[0]
    dtype, device = means.dtype, means.device
    albedo, shade, normals, dist = _gaussian_features(means, log_scales, quats, sh, camera, light, shading,
                                                      want_normals)
    need_n = normals is not None
    if means.is_cuda and USE_GSPLAT and (fast := _gsplat_rasterization()) is not None:
        return _rasterize_gsplat(fast, means, log_scales, quats, opacity_logits, camera, albedo, shade, normals,
                                 dist, shading, textureless_albedo, background, near, on_projection)

    proj = project_gaussians(means, covariance(log_scales, quats), camera, near)
    if on_projection is not None:
        on_projection(proj)
    pairs = _composite_weights(proj, torch.sigmoid(opacity_logits), H, W)
    img_of = pairs.pixel // (H * W)  # (P,) the image of each pair
    w = pairs.weight[:, None]  # (P, 1)
    colour = _colour(albedo, shade, shading, textureless_albedo)
    if colour is None:  # "mean": each image's weighted mean albedo, detached
        with torch.no_grad():
            num = torch.zeros(B, 3, dtype=dtype, device=device).index_add_(
                0, img_of, w * albedo.reshape(-1, 3)[pairs.cg])
            den = torch.zeros(B, 1, dtype=dtype, device=device).index_add_(0, img_of, w)
            plain = torch.where(den > 1e-6, num / den.clamp_min(1e-6), torch.ones_like(num))
        colour = shade * plain[:, None]
    feats = [colour, dist] + ([normals] if need_n else [])
    feat = torch.cat(feats, -1).reshape(B * N, -1)[pairs.cg]  # (P, C)
    acc = torch.zeros(B * H * W, feat.shape[1] + 1, dtype=dtype, device=device)
    acc = acc.index_add(0, pairs.pixel, torch.cat([w * feat, w], -1))  # (B*H*W, C + 1)

    def img(x: Tensor) -> Tensor:  # (B*H*W, C) -> (B, C, H, W)
        return x.reshape(B, H, W, -1).permute(0, 3, 1, 2)

    opacity = acc[:, -1:]
    bg = torch.ones(3, dtype=dtype, device=device) if background is None else background.to(means)
    bg = bg.reshape(-1, 3).expand(B, 3)[torch.arange(B * H * W, device=device) // (H * W)]  # (B*H*W, 3)
    rgb = acc[:, :3] + (1.0 - opacity) * bg
    normal = img(acc[:, 4:7]) if need_n else None
    orientation = torch.zeros((), dtype=dtype, device=device)
    return RenderOutput(img(rgb), img(opacity), img(acc[:, 3:4]), normal, orientation, pairs.weight)


def render_gaussians(gaussians, camera: Camera, light: Light | None = None, shading: Shading = "albedo",
                     background: Tensor | None = None, want_normals: bool = False,
                     textureless_albedo: str | Tensor = "white", near: float = 0.2) -> RenderOutput:
    """Render a :class:`dreamlift.scene.gaussians.Gaussians` from a batch of B cameras (see :func:`rasterize`)."""
    g = gaussians
    return rasterize(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh, camera, light, shading, background,
                     want_normals, textureless_albedo, near)
