"""3D Gaussians (Kerbl et al. 2023): the parameters, DreamGaussian's initialisation, and the field they define.

Parameters, stored as graphdeco-inria stores them (so the .ply is a plain dump of them):

- ``means``          (N, 3) centres, world units;
- ``log_scales``     (N, 3) log of the standard deviations along the Gaussian's own axes;
- ``quats``          (N, 4) rotations as quaternions, w first (normalised where used);
- ``opacity_logits`` (N,)   opacity = sigmoid(logit);
- ``sh``             (N, (d + 1)^2, 3) spherical-harmonic colour coefficients, d = 0..3;
                     the view-independent colour is 0.5 + C0 sh[:, 0] (graphdeco's SH2RGB).

Initialisation follows DreamGaussian (Tang et al. 2023, ``gs_renderer.py``): centres uniform in
a ball of radius 0.5, colour sh_0 ~ U(0, 1/255) (nearly mid-grey), identity rotations, opacity 0.1,
and every scale the root-mean-square distance to the 3 nearest centres (graphdeco's distCUDA2).

As a field (for marching cubes, IoU and colour scores, as DreamGaussian extracts meshes), the
Gaussians define at a world point x

    density(x) = sum_i o_i exp(-1/2 m_i(x)^2),   m_i(x)^2 = (x - mu_i)^T Sigma_i^-1 (x - mu_i),
    albedo(x)  = sum_i w_i c_i / sum_i w_i,      w_i = o_i exp(-1/2 m_i(x)^2),  c_i = max(0, 0.5 + C0 sh_i0),

each kernel cut off beyond 3 standard deviations (m_i > 3), as the rasteriser cuts its footprint,
so a point meets only the few Gaussians near it: both are sums over sparse (point, Gaussian) pairs
found through a uniform grid of cells, never a dense points x Gaussians table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn as nn
from torch import Tensor

from ..config import DreamliftError, option
from ..render.splat import SH_C0, covariance

__all__ = ["GaussiansConfig", "Gaussians", "MAX_SH_DEGREE"]

#: The highest spherical-harmonic degree of the colour (graphdeco's 3).
MAX_SH_DEGREE = 3
#: Kernels are cut off beyond this many standard deviations (density, albedo).
_CUTOFF_SIGMAS = 3.0


@dataclass
class GaussiansConfig:
    """The Gaussians' count, colour model and initialisation."""

    count: int = option(4096, "Gaussians at the start", low=1)
    sh_degree: int = option(0, "spherical-harmonic degree of the colour, 0 (one colour) to 3", low=0,
                            high=3)
    init_radius: float = option(0.5, "radius of the ball the first centres fill, world units")
    init_shape: Literal["ball", "silhouettes"] | None = option(
        None, "where the first centres lie: the ball of --gaussians-init-radius, or 'silhouettes': an ellipsoid "
              "of the ball's volume in the object's proportions, from the area prior's samples (image-to-3d: "
              "the reference's mask and the prior's side views; the ball without them) (default: ball for "
              "generate, silhouettes for image-to-3d)")
    init_opacity: float = option(0.1, "opacity of every Gaussian at the start, in (0, 1)")
    densify_every: int = option(50, "steps between densification and pruning", low=1)
    densify_from: float = option(0.1, "fraction of the run at which densification starts", low=0, high=1)
    densify_until: float = option(0.6, "fraction of the run at which densification stops", low=0, high=1)
    densify_fraction: float = option(0.05, "share of the visible Gaussians, largest view-space gradient first, "
                                           "cloned or split each time",
                                     low=0, high=1)
    split_scale: float = option(0.02, "Gaussians wider than this (largest sd, world units) split in two, narrower"
                                      " ones are cloned", low=1e-6)
    prune_opacity: float = option(0.01, "Gaussians below this opacity are removed when densifying", low=0, high=1)
    prune_scale: float = option(0.3, "Gaussians wider than this (largest sd, world units) are removed when "
                                     "densifying", low=1e-6)
    max_count: int = option(20000, "hard cap on the number of Gaussians", low=1)
    filter_scale: float = option(0.047, "sd of the 3D filter that widens every Gaussian in the outputs, world "
                                        "units (0: none)", low=0)
    position_lr_scale: float | None = option(
        None, "the positions' learning rate relative to --lr (default: 6 for generate, 0.1 for image-to-3d)",
        low=1e-6, high=100)
    position_lr_final: float = option(0.02, "the positions' learning rate at the last step relative to the first "
                                            "(exponential decay)",
                                      low=1e-6, high=1)

    def filled(self, **defaults) -> GaussiansConfig:
        """This config with each unset (None) field in ``defaults`` set to its value there: a command's own defaults
        (``init_shape``, ``position_lr_scale``) that a value given by the user overrides."""
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def validate(self) -> None:
        if self.count < 1:
            raise DreamliftError(f"the number of Gaussians must be at least 1, got {self.count}")
        if not 0 <= self.sh_degree <= MAX_SH_DEGREE:
            raise DreamliftError(f"the spherical-harmonic degree must be 0, 1, 2 or 3, got {self.sh_degree}")
        if not self.init_radius > 0:
            raise DreamliftError(f"init_radius must be positive, got {self.init_radius}")
        if not 0 < self.init_opacity < 1:
            raise DreamliftError(f"init_opacity must lie strictly between 0 and 1, got {self.init_opacity}")
        if self.count > self.max_count:
            raise DreamliftError(f"--gaussians-count {self.count} exceeds --gaussians-max-count {self.max_count}")
        if self.densify_from > self.densify_until:
            raise DreamliftError("--gaussians-densify-from must not be after --gaussians-densify-until")


class Gaussians(nn.Module):
    """N anisotropic 3D Gaussians with colour (see the module docstring); every tensor is a Parameter."""

    def __init__(self, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh: Tensor):
        super().__init__()
        n = means.shape[0]
        k = sh.shape[1] if sh.ndim == 3 else -1
        expected = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,)}
        for name, t in zip(expected, (means, log_scales, quats, opacity_logits)):
            if tuple(t.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(t.shape)}")
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3 or k not in (1, 4, 9, 16):
            raise ValueError(f"sh must have shape ({n}, (degree + 1)^2, 3) with degree 0..3, got {tuple(sh.shape)}")
        self.means = nn.Parameter(means.detach().clone())
        self.log_scales = nn.Parameter(log_scales.detach().clone())
        self.quats = nn.Parameter(quats.detach().clone())
        self.opacity_logits = nn.Parameter(opacity_logits.detach().clone())
        self.sh = nn.Parameter(sh.detach().clone())

    @classmethod
    def initialise(cls, cfg: GaussiansConfig = GaussiansConfig(),
                   generator: torch.Generator | None = None) -> Gaussians:
        """DreamGaussian's start: ``cfg.count`` Gaussians uniform in a ball of radius ``cfg.init_radius``."""
        cfg.validate()
        n = cfg.count
        # uniform in the ball: direction from cos(theta) ~ U(-1, 1), phi ~ U(0, 2 pi); radius r cbrt(U)
        phi = torch.rand(n, generator=generator) * 2 * math.pi
        cos_t = torch.rand(n, generator=generator) * 2 - 1
        r = cfg.init_radius * torch.rand(n, generator=generator).pow(1.0 / 3.0)
        sin_t = (1 - cos_t**2).clamp_min(0).sqrt()
        means = torch.stack([r * sin_t * phi.cos(), r * sin_t * phi.sin(), r * cos_t], -1)
        sh = torch.zeros(n, (cfg.sh_degree + 1) ** 2, 3)
        sh[:, 0] = torch.rand(n, 3, generator=generator) / 255.0
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        logit = math.log(cfg.init_opacity / (1 - cfg.init_opacity))
        return cls(means, _knn_log_scale(means)[:, None].expand(n, 3), quats, torch.full((n,), logit), sh)

    # ----------------------------------------------------------------------------- activations
    @property
    def count(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> Tensor:
        """(N, 3) standard deviations along the Gaussians' axes."""
        return self.log_scales.exp()

    @property
    def rotations(self) -> Tensor:
        """(N, 4) unit quaternions, w first."""
        return self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @property
    def opacity(self) -> Tensor:
        """(N,) opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    #: Standard deviation of the isotropic 3D filter (world units); GaussianScene sets it from its config.
    filter_scale: float = 0.0

    @property
    def filtered_log_scales(self) -> Tensor:
        """(N, 3) log standard deviations widened by the 3D filter: log sqrt(s^2 + filter_scale^2). Sigma + f^2 I
        has Sigma's axes and eigenvalues s_k^2 + f^2, so the filtered Gaussian is again one Gaussian.

        The filter applies in eval mode only (``module.eval()``: exports and scoring). Optimised at 32 px, a
        Gaussian far thinner than a pixel still covers one, widened by the rasteriser's 0.3 px^2 low-pass, so
        SDS is content with sparse sub-pixel specks that read as solid at 32 px, but as speckle in a 96 px
        turntable and as a porous field in 3D (on suite calib-v1 the unfiltered field held 14-60% of the true
        volume at the surface level). The filter is that low-pass taken back into 3D at the training cameras'
        distance, so the outputs keep what the renders showed. Applied in training as well, it made shapes
        worse (docs/decisions/gaussians-3d-filter.md)."""
        if self.filter_scale <= 0 or self.training:
            return self.log_scales
        return 0.5 * torch.logaddexp(2 * self.log_scales, torch.full_like(self.log_scales, 2 * math.log(self.filter_scale)))

    def covariances(self) -> Tensor:
        """(N, 3, 3) world covariances R S S^T R^T of the filtered scales."""
        return covariance(self.filtered_log_scales, self.quats)

    def colours(self) -> Tensor:
        """(N, 3) view-independent colours max(0, 0.5 + C0 sh_0) (the degree-0 term)."""
        return (0.5 + SH_C0 * self.sh[:, 0]).clamp_min(0.0)

    # ----------------------------------------------------------------------------- the field
    def density(self, points: Tensor) -> Tensor:
        """Sum of opacity-weighted Gaussian kernels at world points (M, 3) -> (M,), >= 0."""
        return self._field(points, with_colour=False)[0]

    def albedo(self, points: Tensor) -> Tensor:
        """Kernel-weighted mean colour at world points (M, 3) -> (M, 3); 0.5 grey where no Gaussian reaches."""
        density, colour = self._field(points, with_colour=True)
        return torch.where(density[:, None] > 1e-12, colour / density.clamp_min(1e-12)[:, None],
                           torch.full_like(colour, 0.5))

    @torch.no_grad()
    def density_grid(self, resolution: int, bound: float, budget: int = 1 << 23) -> Tensor:
        """:meth:`density` on the (R, R, R) grid of ``export.mesh.extract_mesh`` (sample ``i`` at ``-bound + i * 2 *
        bound / (R - 1)``), each Gaussian splatted over the grid points of its own 3-sigma box.

        The same sum as :meth:`density` at those points, but a kernel's box is a dense block of the grid, so its
        quadratic form comes from outer sums of per-axis offsets instead of one gather per (point, Gaussian)
        pair. Gaussians are taken in order of box width, in blocks of at most ``budget`` padded grid points."""
        r, step = resolution, 2.0 * bound / (resolution - 1)
        cov = self.covariances()
        inv = torch.linalg.inv(cov)
        extent = _CUTOFF_SIGMAS * cov.diagonal(dim1=-2, dim2=-1).sqrt()
        lo = torch.ceil((self.means - extent + bound) / step).long().clamp(0, r)  # first grid index in the box
        hi = torch.floor((self.means + extent + bound) / step).long().clamp(-1, r - 1)  # last
        size = (hi - lo + 1).clamp_min(0)  # (N, 3)
        volume = torch.zeros(r**3, dtype=self.means.dtype, device=self.means.device)
        order = size.amax(-1).argsort()
        order = order[size[order].prod(-1) > 0]  # boxes that hold a grid point
        opacity = self.opacity
        start = 0
        while start < len(order):
            # the largest block of Gaussians whose padded boxes fit the budget (sizes grow along `order`)
            cap = size[order[start:]].amax(-1)  # non-decreasing: the widest side so far bounds each padded box
            fits = torch.arange(1, len(cap) + 1, device=cap.device) * cap.pow(3) <= budget
            count = max(1, int(fits.long().cumprod(0).sum()))
            g = order[start:start + count]
            start += count
            dims = size[g].amax(0).tolist()
            axes = []
            for k in range(3):
                offset = torch.arange(dims[k], device=volume.device)
                index = lo[g, k, None] + offset  # (B, n_k)
                ok = offset < size[g, k, None]
                axes.append((index.clamp(max=r - 1), ok, (index * step - bound).to(volume.dtype) - self.means[g, k, None]))
            (ix, okx, dx), (iy, oky, dy), (iz, okz, dz) = axes
            q = inv[g]
            x, y, z = dx[:, :, None, None], dy[:, None, :, None], dz[:, None, None, :]
            m2 = (q[:, 0, 0, None, None, None] * x * x + q[:, 1, 1, None, None, None] * y * y
                  + q[:, 2, 2, None, None, None] * z * z + 2 * q[:, 0, 1, None, None, None] * x * y
                  + 2 * q[:, 0, 2, None, None, None] * x * z + 2 * q[:, 1, 2, None, None, None] * y * z)
            inside = okx[:, :, None, None] & oky[:, None, :, None] & okz[:, None, None, :] & (m2 <= _CUTOFF_SIGMAS**2)
            w = torch.where(inside, opacity[g, None, None, None] * torch.exp(-0.5 * m2), torch.zeros_like(m2))
            flat = (ix[:, :, None, None] * r + iy[:, None, :, None]) * r + iz[:, None, None, :]
            volume.index_add_(0, flat.reshape(-1), w.reshape(-1))
        return volume.reshape(r, r, r)

    def _field(self, points: Tensor, with_colour: bool, chunk: int = 1 << 16) -> tuple[Tensor, Tensor | None]:
        """sum_i w_i and (optionally) sum_i w_i c_i over sparse (point, Gaussian) pairs, (M,), (M, 3)."""
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (M, 3), got {tuple(points.shape)}")
        points = points.to(self.means)
        cov = self.covariances()
        inv = torch.linalg.inv(cov)  # (N, 3, 3), symmetric: its six distinct entries, off-diagonal ones doubled
        # one row per Gaussian, gathered once per pair: centre (3), quadratic form (6), opacity (1)[, colour (3)]
        columns = [self.means, inv[:, 0, 0, None], inv[:, 1, 1, None], inv[:, 2, 2, None], 2 * inv[:, 0, 1, None],
                   2 * inv[:, 0, 2, None], 2 * inv[:, 1, 2, None], self.opacity[:, None]]
        table = torch.cat(columns + ([self.colours()] if with_colour else []), -1)  # (N, 10 or 13)
        grid = _CellGrid(self.means.detach(), _CUTOFF_SIGMAS * cov.detach().diagonal(dim1=-2, dim2=-1).sqrt())
        density = torch.zeros(points.shape[0], dtype=points.dtype, device=points.device)
        colour = torch.zeros(points.shape[0], 3, dtype=points.dtype, device=points.device) if with_colour else None
        for s in range(0, points.shape[0], chunk):
            p = points[s:s + chunk]
            pi, gi = grid.pairs(p.detach())
            row = table.index_select(0, gi)  # (Q, 10 or 13)
            d = p.index_select(0, pi) - row[:, :3]  # (Q, 3)
            x, y, z = d.unbind(-1)
            m2 = (row[:, 3] * x * x + row[:, 4] * y * y + row[:, 5] * z * z
                  + row[:, 6] * x * y + row[:, 7] * x * z + row[:, 8] * y * z)  # d^T Sigma^-1 d
            w = torch.where(m2 <= _CUTOFF_SIGMAS**2, row[:, 9] * torch.exp(-0.5 * m2), torch.zeros_like(m2))
            density = density.index_add(0, pi + s, w)
            if with_colour:
                colour = colour.index_add(0, pi + s, w[:, None] * row[:, 10:])
        return density, colour


def _knn_log_scale(means: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    """log sqrt(mean squared distance to the k nearest other centres), (N, 3) -> (N,) (graphdeco's distCUDA2)."""
    n = means.shape[0]
    if n <= k:  # too few neighbours: a size from the spread of the points, or 0.01 for one point
        spread = (means - means.mean(0)).norm(dim=-1).max().item() if n > 1 else 0.0
        return torch.full((n,), math.log(max(spread, 0.01)))
    out = []
    for s in range(0, n, chunk):
        d2 = torch.cdist(means[s:s + chunk], means).pow(2)  # (c, N)
        nearest = d2.topk(k + 1, dim=1, largest=False).values[:, 1:]  # drop the point itself
        out.append(nearest.mean(1).clamp_min(1e-7))
    return 0.5 * torch.cat(out).log()


class _CellGrid:
    """A uniform grid of cubic cells listing the Gaussians whose 3-sigma box overlaps each cell."""

    _MAX_CELLS_PER_AXIS = 128

    def __init__(self, means: Tensor, extent: Tensor):
        # extent (N, 3): half-widths of each Gaussian's axis-aligned 3-sigma box (3 sqrt(Sigma_kk) exactly bounds
        # the 3-sigma ellipsoid). Cell side: a quarter of the median box width. A point is paired with every
        # Gaussian listed in its cell, so a cell as wide as the boxes pairs it with up to (1 + 1)^3 = 8x as many
        # Gaussians as reach it; a quarter-width cell with (1 + 1/4)^3 ~ 2x, for a typical Gaussian listed in
        # (4 + 1)^3 = 125 cells.
        lo_box, hi_box = means - extent, means + extent
        self.origin = lo_box.min(0).values
        span = (hi_box.max(0).values - self.origin).max().item()
        side = max(0.5 * extent.median().item(), span / self._MAX_CELLS_PER_AXIS, 1e-6)
        self.side = side
        self.dims = torch.clamp(torch.ceil((hi_box.max(0).values - self.origin) / side).long(), min=1)  # (3,)
        lo = ((lo_box - self.origin) / side).floor().long().clamp_min(0)
        hi = torch.minimum(((hi_box - self.origin) / side).floor().long(), self.dims - 1)
        size = (hi - lo + 1).clamp_min(1)  # (N, 3)
        counts = size.prod(-1)
        owner = torch.repeat_interleave(torch.arange(means.shape[0], device=means.device), counts)
        local = torch.arange(owner.numel(), device=means.device) - (torch.cumsum(counts, 0) - counts)[owner]
        sx, sy = size[owner, 0], size[owner, 1]
        cell = lo[owner] + torch.stack([local % sx, (local // sx) % sy, local // (sx * sy)], -1)
        cid = self._cell_id(cell)
        order = torch.argsort(cid)
        self.gaussian = owner[order]  # Gaussians sorted by cell
        n_cells = int(self.dims.prod())
        self.count = torch.bincount(cid, minlength=n_cells)  # (cells,)
        self.start = torch.cumsum(self.count, 0) - self.count

    def _cell_id(self, cell: Tensor) -> Tensor:
        return (cell[:, 2] * self.dims[1] + cell[:, 1]) * self.dims[0] + cell[:, 0]

    def pairs(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(point, Gaussian) index pairs for points (M, 3): every Gaussian listed in the point's cell."""
        cell = ((points - self.origin) / self.side).floor().long()
        inside = ((cell >= 0) & (cell < self.dims)).all(-1)
        pts = inside.nonzero().squeeze(1)
        cid = self._cell_id(cell[pts])
        counts = self.count[cid]
        owner = torch.repeat_interleave(torch.arange(pts.numel(), device=points.device), counts)
        local = torch.arange(owner.numel(), device=points.device) - (torch.cumsum(counts, 0) - counts)[owner]
        return pts[owner], self.gaussian[self.start[cid][owner] + local]
