"""The forward (noising) process and its posterior (DDPM, section 2).

All functions take zero-based timestep indices ``t`` (see ``schedule.py``): an int
for the whole batch or a (B,) integer tensor, one per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .schedule import NoiseSchedule, gather

__all__ = [
    "q_step",
    "q_sample",
    "q_mean_variance",
    "posterior_mean",
    "posterior_mean_coefs",
    "posterior_variance",
    "posterior_terms",
]


def q_step(schedule: NoiseSchedule, x_prev: Tensor, t: Tensor | int, noise: Tensor | None = None) -> Tensor:
    """One forward step q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)  (DDPM eq. 2).

    Args:
        x_prev: (B, ...) the sample at the previous index (the clean data when t = 0).
        t: index of the step being taken.
        noise: (B, ...) standard normal noise; drawn if None.

    Returns:
        x_t: (B, ...).
    """
    schedule.check_index(t)
    if noise is None:
        noise = torch.randn_like(x_prev)
    beta = gather(schedule.betas, t, x_prev)
    return torch.sqrt(1.0 - beta) * x_prev + torch.sqrt(beta) * noise


def q_mean_variance(schedule: NoiseSchedule, x0: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)  (DDPM eq. 4).

    Returns:
        mean: (B, ...); variance: broadcastable to (B, ...).
    """
    schedule.check_index(t)
    abar = gather(schedule.alphas_cumprod, t, x0)
    return torch.sqrt(abar) * x0, 1.0 - abar


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor | int, noise: Tensor | None = None) -> Tensor:
    """Sample x_t in closed form: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (DDPM eq. 4).

    This is what diffusers calls ``add_noise``.

    Args:
        x0: (B, ...) clean data.
        t: int or (B,) indices.
        noise: (B, ...) eps ~ N(0, I); drawn if None.
    """
    schedule.check_index(t)
    if noise is None:
        noise = torch.randn_like(x0)
    abar = gather(schedule.alphas_cumprod, t, x0)
    return torch.sqrt(abar) * x0 + torch.sqrt(1.0 - abar) * noise


def posterior_mean_coefs(schedule: NoiseSchedule, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The two coefficients of the posterior mean (DDPM eq. 7).

    mu_q(x_t, x_0) = c0 * x_0 + ct * x_t with
        c0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
        ct = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t).
    At index 0 (the paper's t = 1), c0 = 1 and ct = 0: the posterior is x_0 itself.
    """
    schedule.check_index(t)
    abar = gather(schedule.alphas_cumprod, t, like)
    abar_prev = gather(schedule.alphas_cumprod_prev, t, like)
    c0, ct, _ = posterior_terms(abar, abar_prev)
    return c0, ct


def posterior_terms(abar: Tensor, abar_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Posterior coefficients between any two noise levels abar < abar_prev.

    For a jump from level abar (= abar_t) back to abar_prev (= abar_s, s < t), the
    forward jump has alpha = abar / abar_prev and beta = 1 - alpha, and
    q(x_s | x_t, x_0) = N(c0 x_0 + ct x_t, var I) with DDPM eq. 7's coefficients:
        c0 = sqrt(abar_prev) beta / (1 - abar),  ct = sqrt(alpha) (1 - abar_prev) / (1 - abar),
        var = (1 - abar_prev) / (1 - abar) beta.
    With s = t - 1 this is exactly eq. 7; with s < t - 1 it is the "respaced"
    posterior used for sampling with fewer steps (improved DDPM, section 4).

    Returns:
        (c0, ct, var), each of the inputs' broadcast shape.
    """
    alpha = abar / abar_prev
    beta = 1.0 - alpha
    c0 = torch.sqrt(abar_prev) * beta / (1.0 - abar)
    ct = torch.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar)
    var = (1.0 - abar_prev) / (1.0 - abar) * beta
    return c0, ct, var


def posterior_mean(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor | int) -> Tensor:
    """mu_q(x_t, x_0), the mean of q(x_{t-1} | x_t, x_0)  (DDPM eq. 7)."""
    c0, ct = posterior_mean_coefs(schedule, t, x_t)
    return c0 * x0 + ct * x_t


def posterior_variance(schedule: NoiseSchedule, t: Tensor | int, like: Tensor) -> Tensor:
    """beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, the variance of q(x_{t-1} | x_t, x_0).

    It is 0 at index 0, where the posterior collapses onto x_0.
    """
    schedule.check_index(t)
    return gather(schedule.posterior_variance, t, like)
