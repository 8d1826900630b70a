"""A multi-resolution hash encoding in pure PyTorch (Müller et al. 2022, "Instant Neural Graphics Primitives").

L levels of grids whose resolutions grow geometrically, N_l = floor(N_min * b^l) with
b = exp((ln N_max - ln N_min) / (L - 1)). A point u in [0, 1]^3 falls in the cell of level l whose corners are
floor(u N_l) + {0, 1}^3; each corner's F features are read from that level's table and blended trilinearly, and
the L blends are concatenated (L * F features). A level whose (N_l + 1)^3 vertices fit in the table size T
indexes its vertices one to one; finer levels hash them,

    h(v) = (v_x * 1  XOR  v_y * 2654435761  XOR  v_z * 805459861) mod T      (T a power of two),

and let the MLP after the encoding resolve the collisions. Tables start at U(-1e-4, 1e-4), as the paper's.

Coarse to fine (threestudio's ProgressiveBandHashGrid): only the first ``active`` levels are read and the rest
give zeros, so a run can start smooth and add detail; ``set_active`` changes it (a buffer: it is saved with the
weights). This is the field's encoding, written for clarity and the GPU's gathers; tinycudann is not used (it
does not install here)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["HashEncoding", "PRIMES", "level_resolutions"]

PRIMES = (1, 2654435761, 805459861)
"""The paper's per-axis primes (the first is 1, for coherence along x)."""


def level_resolutions(levels: int, base: int, finest: int) -> list[int]:
    """N_l = floor(N_min b^l), b = exp((ln N_max - ln N_min) / (L - 1)), for l = 0 .. L-1."""
    if levels == 1:
        return [base]
    growth = math.exp((math.log(finest) - math.log(base)) / (levels - 1))
    return [int(math.floor(base * growth**level + 1e-6)) for level in range(levels)]


class HashEncoding(nn.Module):
    """(N, 3) points in [0, 1]^3 -> (N, levels * features), see the module docstring.

    Args:
        levels, features: L and F.
        log2_table: log2 of the table size T per level (Instant-NGP: 14-24; threestudio: 19).
        base_resolution, max_resolution: N_min and N_max.
    """

    def __init__(self, levels: int = 16, features: int = 2, log2_table: int = 19, base_resolution: int = 16,
                 max_resolution: int = 2048):
        super().__init__()
        self.levels, self.features, self.table_size = levels, features, 1 << log2_table
        self.resolutions = level_resolutions(levels, base_resolution, max_resolution)
        sizes = [min(self.table_size, (r + 1) ** 3) for r in self.resolutions]
        self.hashed = [(r + 1) ** 3 > self.table_size for r in self.resolutions]
        self.sizes = sizes
        self.register_buffer("offsets", torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()]), persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), features).uniform_(-1e-4, 1e-4))
        self.register_buffer("active", torch.tensor(levels))
        self._active = levels  # the buffer's value on the host, so a forward on a GPU never has to read it back
        corners = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])  # (8, 3): x, y, z bits
        self.register_buffer("corners", corners, persistent=False)

    @property
    def out_features(self) -> int:
        return self.levels * self.features

    def set_active(self, n: int) -> None:
        """Read only the first ``n`` levels (1 <= n <= levels); the others give zeros."""
        self._active = max(1, min(self.levels, int(n)))
        self.active.fill_(self._active)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "active" in state_dict:  # loading is the one time the host reads the buffer
            self._active = int(state_dict[prefix + "active"])

    def finest_active_resolution(self) -> int:
        return self.resolutions[self._active - 1]

    def vertex_index(self, level: int, vertex: Tensor) -> Tensor:
        """(..., 3) long vertex coordinates of ``level`` -> (...,) rows of the flat table."""
        r = self.resolutions[level]
        if self.hashed[level]:
            h = vertex[..., 0] * PRIMES[0] ^ vertex[..., 1] * PRIMES[1] ^ vertex[..., 2] * PRIMES[2]
            local = h & (self.table_size - 1)
        else:  # one to one: (N_l + 1)^3 vertices fit
            local = (vertex[..., 0] * (r + 1) + vertex[..., 1]) * (r + 1) + vertex[..., 2]
        return local + self.offsets[level]

    def corners_of(self, level: int, u: Tensor) -> tuple[Tensor, Tensor]:
        """The 8 table rows (N, 8) of the cell of ``level`` around each point u (N, 3) in [0, 1]^3, and their
        trilinear weights (N, 8)."""
        r = self.resolutions[level]
        pos = u * r
        cell = pos.floor().clamp(max=r - 1)  # a point at u = 1 uses the last cell
        frac = pos - cell  # (N, 3) in [0, 1]
        vertex = cell.long()[:, None, :] + self.corners[None]  # (N, 8, 3)
        weight = torch.where(self.corners[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)
        return self.vertex_index(level, vertex), weight

    def reference(self, u: Tensor) -> Tensor:
        """The same encoding through plain autograd, which keeps every level's rows and weights for the backward
        pass: what ``forward`` is tested and measured against."""
        u = u.clamp(0.0, 1.0)
        out = [u.new_zeros(u.shape[0], self.features)] * self.levels
        for level in range(self._active):
            rows, weight = self.corners_of(level, u)
            out[level] = (self.table[rows] * weight[..., None]).sum(1)
        return torch.cat(out, dim=-1)

    def forward(self, u: Tensor) -> Tensor:
        """Features (N, levels * features) of points u (N, 3) in [0, 1]^3 (clamped to it). The table gets
        gradients; the points do not (a NeRF's normals are finite differences)."""
        if u.requires_grad:
            raise ValueError("the hash encoding gives no gradient to its points")
        return _Lookup.apply(self.table, u.clamp(0.0, 1.0), self)


class _Lookup(torch.autograd.Function):
    """Every active level's trilinear blend, sum_c w_c table[row_c], concatenated (inactive levels give zeros).

    Autograd would keep each level's (N, 8) rows and weights for the backward pass: about 1.5 KB a point over 16
    levels, which a 64 x 64 x 512-sample render with its normals (8.4M points) cannot afford. Here the forward
    keeps only the points, and the backward recomputes the rows and weights from them, level by level, adding
    into one gradient of the table (index_add_: no sort, no host sync on a GPU), as Instant-NGP's fused kernels
    recompute rather than store."""

    @staticmethod
    def forward(ctx, table: Tensor, u: Tensor, enc: HashEncoding) -> Tensor:
        ctx.save_for_backward(u)
        ctx.enc, ctx.active = enc, enc._active
        F_ = enc.features
        out = u.new_zeros(u.shape[0], enc.levels * F_, dtype=table.dtype)
        for level in range(ctx.active):
            rows, weight = enc.corners_of(level, u)
            corner = table.index_select(0, rows.reshape(-1)).reshape(*rows.shape, F_)  # (N, 8, F)
            out[:, level * F_:(level + 1) * F_] = (corner * weight[..., None]).sum(1)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (u,) = ctx.saved_tensors
        enc = ctx.enc
        F_ = enc.features
        grad_table = torch.zeros_like(enc.table)
        for level in range(ctx.active):
            rows, weight = enc.corners_of(level, u)
            g = weight[..., None] * grad_out[:, None, level * F_:(level + 1) * F_]  # (N, 8, F)
            grad_table.index_add_(0, rows.reshape(-1), g.reshape(-1, F_).to(grad_table.dtype))
        return grad_table, None, None
