"""Noise schedules for DDPM (Ho et al. 2020) and improved DDPM (Nichol & Dhariwal 2021).

Index convention (the one used throughout ``dreamlift.diffusion``)
------------------------------------------------------------------
The DDPM paper numbers the noising steps t = 1, ..., T. Here they are stored
zero-based, as in diffusers: array index ``i = t - 1`` runs over 0, ..., T-1, so

    betas[i]           = beta_{i+1}
    alphas[i]          = alpha_{i+1} = 1 - beta_{i+1}
    alphas_cumprod[i]  = abar_{i+1}  = prod_{s <= i+1} alpha_s
    alphas_cumprod_prev[i] = abar_i, with abar_0 = 1 (the clean data).

A model is always called with the zero-based index, and "x_t at index i" means
x_{i+1} in the paper. ``x_{-1}`` is the clean sample x_0 of the paper.

All schedule arrays are kept in float64 and cast to the data's dtype when they
are gathered, so 1000-step products do not lose precision in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..transfer import to_device

__all__ = ["NoiseSchedule", "linear_betas", "cosine_betas", "gather"]


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Betas rising linearly from ``beta_start`` to ``beta_end`` (DDPM paper, section 4).

    The paper uses T = 1000, beta_1 = 1e-4, beta_T = 0.02. For other T the endpoints
    are kept (not rescaled), as in diffusers' ``beta_schedule="linear"``.

    Returns:
        betas: float64 tensor of shape (num_steps,).
    """
    _check_steps(num_steps)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17).

    abar(t) = f(t) / f(0) with f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2, and
    beta_t = 1 - abar(t) / abar(t-1), clipped to ``max_beta`` to avoid the
    singularity at t = T (the paper clips at 0.999).

    Returns:
        betas: float64 tensor of shape (num_steps,).
    """
    _check_steps(num_steps)

    def f(u: float) -> float:
        return math.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2

    betas = [min(1.0 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete variance schedule and every quantity derived from it.

    Build one with :meth:`linear`, :meth:`cosine` or :meth:`from_betas`. Fields are
    float64 tensors of shape (T,), indexed zero-based (see the module docstring).
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    posterior_variance: Tensor

    @classmethod
    def from_betas(cls, betas: Tensor | list[float]) -> "NoiseSchedule":
        """Derive a schedule from any betas with 0 < beta_t < 1 (DDPM eq. 4, 6, 7)."""
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().clone()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("every beta must be finite and strictly between 0 and 1")
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        # beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t   (DDPM eq. 7); 0 at index 0.
        posterior_variance = (1.0 - abar_prev) / (1.0 - abar) * betas
        return cls(betas, alphas, abar, abar_prev, posterior_variance)

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """The DDPM paper's linear schedule (see :func:`linear_betas`)."""
        return cls.from_betas(linear_betas(num_steps, beta_start, beta_end))

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Improved DDPM's cosine schedule (see :func:`cosine_betas`)."""
        return cls.from_betas(cosine_betas(num_steps, s, max_beta))

    @classmethod
    def named(cls, name: str, num_steps: int = 1000) -> "NoiseSchedule":
        """``"linear"`` or ``"cosine"`` with their papers' default parameters."""
        makers = {"linear": cls.linear, "cosine": cls.cosine}
        if name not in makers:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(makers)}")
        return makers[name](num_steps)

    @property
    def num_steps(self) -> int:
        """T, the number of noising steps."""
        return self.betas.numel()

    def snr(self) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t), shape (T,)."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    def check_index(self, t: Tensor | int) -> None:
        """Raise a clear error if any timestep index lies outside [0, T-1]."""
        t = torch.as_tensor(t)
        if t.is_floating_point():
            raise TypeError("timestep indices must be integers")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise IndexError(f"timestep index out of range [0, {self.num_steps - 1}]: {t.tolist()}")


def gather(values: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
    """Pick ``values[t]`` and shape it to broadcast against ``like``.

    Args:
        values: (T,) schedule array.
        t: int, 0-d tensor, or (B,) integer tensor of zero-based indices.
        like: the (B, ...) tensor the result will multiply.

    Returns:
        A tensor of ``like``'s dtype and device: 0-d for a scalar t, else (B, 1, ..., 1).
    """
    t = torch.as_tensor(t, device=values.device)
    out = to_device(values[t], like.device, like.dtype)  # a CPU t with GPU data: no host sync
    if out.ndim == 0:
        return out
    return out.reshape(out.shape[0], *([1] * (like.ndim - 1)))
