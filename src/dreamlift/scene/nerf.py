"""A NeRF in pure PyTorch for score distillation on a CPU.

Field: position x in [-bound, bound]^3 -> multi-resolution dense feature grids (L levels,
resolutions spaced geometrically from ``base_resolution`` to ``max_resolution``, trilinear
lookups with ``F.grid_sample``; the dense analogue of Instant-NGP's hash encoding, which
at these resolutions fits in memory without hashing) -> a small MLP -> density and albedo.
With ``encoding="hash"`` the grids are Instant-NGP's hash encoding instead (``scene.hashgrid``:
16 levels up to 4096 cells, 2^19 rows a level, levels added coarse to fine over the run), the
field for guidance at 512 px (the sd and if presets).

- density  sigma(x) = exp(min(h_0(x) + b(x), 15)), with Magic3D's spatial density bias
  b(x) = lambda (1 - |x| / c), so a random initialisation starts as a soft ball of
  radius about c instead of fog (DreamFusion/Magic3D "density blob"). The bias stays for
  the whole run, so it is also a prior on size and shape. Magic3D's lambda = 10, c = 0.5
  (``MAGIC3D_BLOB``, the default when nothing else holds the size) pulls objects towards a
  ball of half the world's radius; weaker, wider biases (lambda 2, c 1) free wide and tall
  objects (a dumbbell: IoU 0.04 -> 0.67) but alone let compact ones swell (a car: 0.63 ->
  0.25; docs/decisions/area-prior.md). ``dreamlift generate`` therefore uses the weak
  bias only together with its area prior (``dreamlift.guidance.silhouette``), which holds
  the size the text implies.
- albedo   a(x) = sigmoid(h_{1:4}(x)).
- normals  n(x) = -grad log sigma / |grad log sigma| by forward finite differences of
  the pre-activation (half the finest voxel), as DreamFusion derives normals from the
  density gradient; finite differences avoid double backward through grid_sample.

An :class:`OccupancyGrid` (Instant-NGP) of coarse cells records where density is
non-negligible; the renderer evaluates the field only at samples in occupied cells, which
is what makes empty space cheap on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..config import DreamliftError, option
from ..transfer import to_device
from .base import Representation

__all__ = ["NeRFConfig", "NeRF", "NeRFScene", "OccupancyGrid", "FieldOutput", "MAGIC3D_BLOB"]

#: Magic3D's density bias (lambda, c): the default wherever nothing else holds the object's size.
MAGIC3D_BLOB = (10.0, 0.5)


@dataclass
class NeRFConfig:
    """The NeRF's encoding, MLP and initialisation."""

    levels: int = option(3, "hash-grid levels")
    base_resolution: int = option(8, "cells per side of the coarsest grid")
    max_resolution: int = option(32, "cells per side of the finest grid")
    features: int = option(4, "features per grid level")
    hidden: int = option(32, "width of the MLP's hidden layer")
    bound: float = option(1.0, "half side of the cube the field fills, world units")
    blob_density: float | None = option(None, "density bias at the centre, lambda in lambda (1 - |x| / c) "
                                              "(default: 2 with the area prior, else 10)")
    blob_radius: float | None = option(None, "radius c where the density bias reaches zero (default: 1 with the "
                                             "area prior, else 0.5)")
    occupancy_resolution: int = option(32, "cells per side of the occupancy grid")
    encoding: Literal["dense", "hash"] | None = option(
        None, "dense: the levels above as dense grids; hash: Instant-NGP's hash grid (the hash_ settings), for "
              "512-px guidance (default: hash for the sd and if presets, else dense)")
    compact: Literal["auto", "on", "off"] = option(
        "auto", "evaluate only samples in occupied cells (on: least work; a GPU waits once a step) or every sample, "
                "empty ones masked (off); auto: on for a CPU, off for a GPU")
    hash_levels: int = option(16, "hash grid: levels (Instant-NGP, threestudio: 16)", low=1, high=32)
    hash_features: int = option(2, "hash grid: features per level", low=1, high=16)
    hash_table_log2: int = option(19, "hash grid: log2 of the table size per level (threestudio: 19)", low=4, high=24)
    hash_base_resolution: int = option(16, "hash grid: cells per side of the coarsest level", low=2, high=8192)
    hash_max_resolution: int = option(4096, "hash grid: cells per side of the finest level (threestudio: 4096)",
                                      low=2, high=8192)
    hash_start_level: int = option(8, "hash grid, coarse to fine: levels read at the start (threestudio: 8)",
                                   low=1, high=32)
    hash_start: float = option(0.2, "hash grid: fraction of the run before levels are added (threestudio: 2000 of "
                                    "10000 steps)", low=0, high=1)
    hash_every: float = option(0.05, "hash grid: fraction of the run between added levels (threestudio: 500 of "
                                     "10000 steps)", low=1e-6, high=1)

    def validate(self) -> None:
        if self.levels < 1 or self.features < 1 or self.hidden < 1:
            raise DreamliftError("the NeRF needs at least one level, feature and hidden unit")
        if not 2 <= self.base_resolution <= self.max_resolution <= 512:
            raise DreamliftError(f"need 2 <= base_resolution <= max_resolution <= 512, got "
                                 f"{self.base_resolution}, {self.max_resolution}")
        if self.hash_base_resolution > self.hash_max_resolution:
            raise DreamliftError(f"need hash_base_resolution <= hash_max_resolution, got "
                                 f"{self.hash_base_resolution}, {self.hash_max_resolution}")
        if not self.bound > 0 or not (self.blob_radius is None or self.blob_radius > 0):
            raise DreamliftError("bound and blob_radius must be positive")

    def with_blob(self, density: float, radius: float) -> NeRFConfig:
        """A copy whose unset (None) blob settings take these values."""
        return replace(self, blob_density=density if self.blob_density is None else self.blob_density,
                       blob_radius=radius if self.blob_radius is None else self.blob_radius)


@dataclass
class FieldOutput:
    """The field at N points."""

    density: Tensor
    """(N,) sigma >= 0."""
    albedo: Tensor
    """(N, 3) in [0, 1]."""
    log_density: Tensor
    """(N,) pre-activation log sigma (before clamping), for normals."""


class NeRF(nn.Module):
    """Density and albedo field (see the module docstring)."""

    def __init__(self, cfg: NeRFConfig = NeRFConfig()):
        super().__init__()
        cfg.validate()
        self.cfg = cfg = cfg.with_blob(*MAGIC3D_BLOB)
        self.hash = None
        if cfg.encoding == "hash":
            from .hashgrid import HashEncoding

            self.hash = HashEncoding(cfg.hash_levels, cfg.hash_features, cfg.hash_table_log2,
                                     cfg.hash_base_resolution, cfg.hash_max_resolution)
            self.hash.set_active(cfg.hash_start_level)
            self.resolutions = self.hash.resolutions
            self.grids = nn.ParameterList()
            width = self.hash.out_features
        else:
            L = cfg.levels
            growth = (cfg.max_resolution / cfg.base_resolution) ** (1.0 / max(L - 1, 1))
            self.resolutions = [int(round(cfg.base_resolution * growth**i)) for i in range(L)]
            # Instant-NGP initialises its tables with U(-1e-4, 1e-4): the MLP starts from ~constant input.
            self.grids = nn.ParameterList(
                [nn.Parameter(torch.empty(1, cfg.features, r, r, r).uniform_(-1e-4, 1e-4)) for r in self.resolutions])
            width = L * cfg.features
        self.mlp = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 4))
        self.occupancy = OccupancyGrid(cfg.occupancy_resolution, cfg.bound)
        # A multiplier of the density bias that a run may fade to 0 (generate's --blob-fade); saved with the
        # weights, so a checkpoint's field is the field that was scored and exported.
        self.register_buffer("blob_scale", torch.ones(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the bias could fade have no blob_scale: their bias is the full one.
        state_dict.setdefault(prefix + "blob_scale", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.mlp[0].weight.device

    def encode(self, x: Tensor) -> Tensor:
        """(N, 3) points -> (N, L * F) grid features (trilinear; dense grids: zero outside the bound)."""
        if self.hash is not None:
            return self.hash((x / self.cfg.bound + 1.0) * 0.5)
        g = (x / self.cfg.bound).reshape(1, -1, 1, 1, 3)  # (1, N, 1, 1, 3) in [-1, 1]
        feats = [F.grid_sample(grid, g, mode="bilinear", padding_mode="zeros", align_corners=True)
                 for grid in self.grids]  # each (1, F, N, 1, 1)
        return torch.cat(feats, dim=1)[0, :, :, 0, 0].T  # (N, L * F)

    def density_bias(self, x: Tensor) -> Tensor:
        """Magic3D's bias lambda (1 - |x| / c), times ``blob_scale`` (1 unless faded), (N,)."""
        return self.blob_scale * self.cfg.blob_density * (1.0 - x.norm(dim=-1) / self.cfg.blob_radius)

    def forward(self, x: Tensor) -> FieldOutput:
        """Field at points x (N, 3)."""
        h = self.mlp(self.encode(x))  # (N, 4)
        log_sigma = h[:, 0] + self.density_bias(x)
        return FieldOutput(torch.exp(log_sigma.clamp(max=15.0)), torch.sigmoid(h[:, 1:]), log_sigma)

    def density(self, x: Tensor) -> Tensor:
        """sigma at x (N, 3) -> (N,); zero outside the bound's sphere is NOT imposed here."""
        return self.forward(x).density

    def normals(self, x: Tensor, log_sigma: Tensor) -> Tensor:
        """Outward unit normals -grad log sigma / |.| at x (N, 3), by forward differences -> (N, 3)."""
        finest = self.resolutions[-1] if self.hash is None else self.hash.finest_active_resolution()
        h = self.cfg.bound / finest  # half the finest voxel read (grid spacing is 2 bound / res)
        offsets = torch.eye(3, device=x.device) * h  # (3, 3)
        shifted = (x[:, None, :] + offsets[None]).reshape(-1, 3)  # (3N, 3)
        h_out = self.mlp(self.encode(shifted))[:, 0] + self.density_bias(shifted)
        grad = (h_out.reshape(-1, 3) - log_sigma[:, None]) / h  # (N, 3)
        return -grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class OccupancyGrid(nn.Module):
    """Coarse cells in [-bound, bound]^3 flagged where density may be non-negligible (Instant-NGP).

    ``update`` evaluates the field at a jittered point in every cell, keeps an exponential
    moving maximum of the density (decay 0.95 per update, as Instant-NGP), and marks cells whose
    value exceeds ``threshold`` (dilated by one cell, so surfaces can grow).
    """

    def __init__(self, resolution: int, bound: float):
        super().__init__()
        self.resolution, self.bound = resolution, bound
        self.register_buffer("value", torch.full((resolution,) * 3, math.inf))  # everything occupied at first
        self.register_buffer("mask", torch.ones((resolution,) * 3, dtype=torch.bool))

    def cell_index(self, x: Tensor) -> Tensor:
        """(N, 3) points -> (N, 3) long cell indices (clamped to the grid)."""
        idx = ((x / self.bound + 1) * 0.5 * self.resolution).floor().long()
        return idx.clamp(0, self.resolution - 1)

    def lookup(self, x: Tensor) -> Tensor:
        """(N, 3) -> (N,) bool: inside the bound and in an occupied cell."""
        i = self.cell_index(x)
        inside = (x.abs() <= self.bound).all(dim=-1)
        return inside & self.mask[i[:, 0], i[:, 1], i[:, 2]]

    @torch.no_grad()
    def update(self, density_fn, threshold: float, generator: torch.Generator | None = None,
               decay: float = 0.95, chunk: int = 65536) -> None:
        """Re-evaluate every cell (with no host sync on a GPU: the jitter is queued from pinned memory)."""
        R = self.resolution
        ar = torch.arange(R, dtype=torch.float32)
        idx = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), dim=-1).reshape(-1, 3)  # (R^3, 3)
        pts = ((idx + torch.rand(idx.shape, generator=generator)) / R * 2 - 1) * self.bound
        pts = to_device(pts, self.value.device)
        dens = torch.cat([density_fn(pts[i:i + chunk]) for i in range(0, len(pts), chunk)]).reshape(R, R, R)
        value = torch.where(torch.isinf(self.value), dens, torch.maximum(self.value * decay, dens))
        self.value.copy_(value)
        occ = (value > threshold).float()[None, None]
        self.mask.copy_(F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0)

    def occupied_fraction(self) -> float:
        """The fraction of cells flagged occupied (read back from the device)."""
        return float(self.mask.float().mean())


class NeRFScene(NeRF, Representation):
    """The NeRF as a :class:`~dreamlift.scene.base.Representation`: volume rendering (``render.volume``), an
    occupancy-grid update every ``occupancy_every`` steps before a step, and the density bias fading over the
    first ``blob_fade`` of the run after it. Its state dict is the NeRF's."""

    def __init__(self, cfg: NeRFConfig = NeRFConfig(), num_samples: int = 48, occupancy_every: int = 16,
                 occupancy_density: float = 0.5, blob_fade: float = 0.0):
        super().__init__(cfg)
        self.bound = self.cfg.bound
        self.num_samples, self.occupancy_every, self.occupancy_density = num_samples, occupancy_every, occupancy_density
        self.blob_fade = blob_fade

    @classmethod
    def from_config(cls, config: dict) -> NeRFScene:
        get = lambda key, default: default if config.get(key) is None else config[key]  # noqa: E731 (unresolved: None)
        return cls(NeRFConfig(**config["nerf"]), num_samples=int(get("num_samples", 48)),
                   occupancy_every=int(get("occupancy_every", 16)),
                   occupancy_density=float(get("occupancy_density", 0.5)), blob_fade=float(get("blob_fade", 0.0)))

    def render(self, camera, light, shading: str, *, generator: torch.Generator | None = None,
               num_samples: int | None = None, textureless_albedo="white", want_normals: bool = False,
               background: Tensor | None = None):
        from ..render.volume import render_nerf

        compact = {"auto": None, "on": True, "off": False}[self.cfg.compact]
        return render_nerf(self, camera, light, shading, background, num_samples or self.num_samples, generator,
                           want_normals=want_normals, textureless_albedo=textureless_albedo, compact=compact)

    def albedo(self, points: Tensor) -> Tensor:
        return self.forward(points).albedo

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]

    def before_step(self, step: int, progress: float, generator: torch.Generator) -> None:
        if self.hash is not None:  # coarse to fine: a level more every hash_every of the run after hash_start
            cfg = self.cfg
            self.hash.set_active(cfg.hash_start_level + int(max(progress - cfg.hash_start, 0.0) / cfg.hash_every + 1e-9))
        if step % self.occupancy_every == 0:
            self.occupancy.update(self.density, self.occupancy_density, generator)

    def after_step(self, step: int, progress: float, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator) -> None:
        # The bias for the next step: 1 - progress / blob_fade, floored at 0 (a fresh field starts at 1, the fade
        # at progress 0, and a resumed one loads the scale saved with it).
        if self.blob_fade > 0:
            self.blob_scale.fill_(max(0.0, 1.0 - progress / self.blob_fade))
