"""Sampling: ancestral DDPM (Algorithm 2) and DDIM (Song et al. 2021).

Both samplers walk a decreasing list of zero-based timestep indices. A step goes
from index t to index t_prev < t (t_prev = -1 means "the clean sample", abar = 1).
With every index visited (t_prev = t - 1) the DDPM step is exactly Algorithm 2:

    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z

which equals the posterior mean mu_q(x_t, x0_hat) (eq. 7) with x0_hat recovered from
eps_theta, plus noise. The two standard variances (DDPM section 3.2) are
``"fixed_small"``: sigma_t^2 = beta_tilde_t, and ``"fixed_large"``: sigma_t^2 = beta_t.
No noise is added on the final step. With fewer steps, the DDPM step uses the
respaced schedule between the two visited levels (improved DDPM, section 4).

DDIM (eq. 12 of Song et al.) with parameter eta:

    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z,
    sigma  = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)

eta = 0 is the deterministic DDIM sampler; eta = 1 has the respaced DDPM variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .guidance import Denoiser
from .process import posterior_terms
from .schedule import NoiseSchedule
from .targets import Prediction, check_prediction, to_x0_eps

__all__ = ["StepOutput", "ddpm_step", "ddim_step", "timesteps", "sample", "Variance", "Spacing"]

Variance = Literal["fixed_small", "fixed_large"]
Spacing = Literal["trailing", "leading", "linspace"]


@dataclass
class StepOutput:
    """The result of one reverse step: x at t_prev, and the x0 estimate it used."""

    prev_sample: Tensor  # (B, ...)
    pred_x0: Tensor  # (B, ...)


def _levels(schedule: NoiseSchedule, t: int, t_prev: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """abar at index t and at index t_prev (1 for t_prev = -1), as 0-d tensors of like's dtype."""
    if not -1 <= t_prev < t < schedule.num_steps:
        raise IndexError(f"need -1 <= t_prev < t < {schedule.num_steps}, got t={t}, t_prev={t_prev}")
    abar = schedule.alphas_cumprod[t]
    abar_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones((), dtype=torch.float64)
    return abar.to(like), abar_prev.to(like)


def _x0_eps(
    schedule: NoiseSchedule, model_output: Tensor, prediction: str, x_t: Tensor, t: int, clip_x0: float | None
) -> tuple[Tensor, Tensor]:
    """(x0, eps) implied by the model's output; with clipping, eps is made consistent with the clamped x0."""
    x0, eps = to_x0_eps(schedule, model_output, prediction, x_t, t)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        _, eps = to_x0_eps(schedule, x0, "x0", x_t, t)
    return x0, eps


def _noise_like(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if noise is not None:
        return noise
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)


def ddpm_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: int,
    x_t: Tensor,
    *,
    t_prev: int | None = None,
    prediction: Prediction = "eps",
    variance: Variance = "fixed_small",
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
) -> StepOutput:
    """One ancestral step of Algorithm 2, from index t to t_prev (default t - 1).

    Args:
        model_output: (B, ...) the model's prediction at (x_t, t), of type ``prediction``.
        x_t: (B, ...) current sample.
        variance: "fixed_small" (beta_tilde) or "fixed_large" (beta).
        noise: (B, ...) the z of Algorithm 2; drawn from ``generator`` if None.
        clip_x0: clamp the x0 estimate to [-clip_x0, clip_x0] before taking the mean.
    """
    check_prediction(prediction)
    if variance not in ("fixed_small", "fixed_large"):
        raise ValueError(f"unknown variance {variance!r}; choose 'fixed_small' or 'fixed_large'")
    t_prev = t - 1 if t_prev is None else t_prev
    abar, abar_prev = _levels(schedule, t, t_prev, x_t)
    x0, _ = _x0_eps(schedule, model_output, prediction, x_t, t, clip_x0)
    c0, ct, var_small = posterior_terms(abar, abar_prev)
    mean = c0 * x0 + ct * x_t  # mu_q(x_t, x0_hat), DDPM eq. 7
    if t_prev < 0:  # the last step returns the mean (Algorithm 2: z = 0 when t = 1)
        return StepOutput(mean, x0)
    var = var_small if variance == "fixed_small" else 1.0 - abar / abar_prev
    return StepOutput(mean + torch.sqrt(var) * _noise_like(x_t, noise, generator), x0)


def ddim_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: int,
    t_prev: int,
    x_t: Tensor,
    *,
    prediction: Prediction = "eps",
    eta: float = 0.0,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
) -> StepOutput:
    """One DDIM step from index t to t_prev (Song et al. 2021, eq. 12).

    Args:
        model_output: (B, ...) the model's prediction at (x_t, t), of type ``prediction``.
        eta: 0 for deterministic DDIM, 1 for the DDPM-like variance.
        clip_x0: clamp the x0 estimate; eps is then recomputed from the clamped x0.
    """
    check_prediction(prediction)
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    abar, abar_prev = _levels(schedule, t, t_prev, x_t)
    x0, eps = _x0_eps(schedule, model_output, prediction, x_t, t, clip_x0)
    sigma = eta * torch.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    direction = torch.sqrt(torch.clamp(1.0 - abar_prev - sigma**2, min=0.0)) * eps
    prev = torch.sqrt(abar_prev) * x0 + direction
    if eta > 0 and t_prev >= 0:
        prev = prev + sigma * _noise_like(x_t, noise, generator)
    return StepOutput(prev, x0)


def timesteps(num_train_steps: int, num_steps: int, spacing: Spacing = "trailing") -> list[int]:
    """A decreasing list of ``num_steps`` zero-based indices to visit when sampling.

    "trailing" starts at T-1 (where x_T ~ N(0, I) holds) and is the default;
    "leading" and "linspace" follow diffusers' spacings of the same names
    (Lin et al. 2024, table 2, compares them).
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"sampling steps must lie in [1, {num_train_steps}], got {num_steps}")
    T, k = num_train_steps, num_steps
    if spacing == "trailing":
        ts = torch.arange(T, 0, -T / k, dtype=torch.float64).round().long() - 1
    elif spacing == "leading":
        ts = (torch.arange(k) * (T // k)).flip(0)
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, k, dtype=torch.float64).round().long().flip(0)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose 'trailing', 'leading' or 'linspace'")
    return ts.tolist()


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    *,
    method: Literal["ddpm", "ddim"] = "ddim",
    steps: int | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "eps",
    eta: float = 0.0,
    variance: Variance = "fixed_small",
    clip_x0: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    x_T: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw samples by running a reverse chain from x_T ~ N(0, I).

    Args:
        denoiser: denoiser(x_t (B, ...), t (B,) long) -> prediction; wrap a conditional model
            with :func:`guided_denoiser` for text conditioning and classifier-free guidance.
        shape: (B, ...) of the samples.
        method: "ddpm" (Algorithm 2) or "ddim".
        steps: number of reverse steps; default all T for "ddpm", 50 for "ddim".
        generator: CPU generator; fixes x_T and every z, so a seed fixes the result.

    Returns:
        (B, ...) samples.
    """
    if method not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {method!r}; choose 'ddpm' or 'ddim'")
    steps = steps if steps is not None else (schedule.num_steps if method == "ddpm" else min(50, schedule.num_steps))
    ts = timesteps(schedule.num_steps, steps, spacing)
    x = x_T.to(device, dtype) if x_T is not None else torch.randn(shape, generator=generator, dtype=dtype).to(device)
    iterator = ts
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ts, desc=f"{method} sampling", leave=False)
    for i, t in enumerate(iterator):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out = denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        if method == "ddpm":
            x = ddpm_step(schedule, out, t, x, t_prev=t_prev, prediction=prediction, variance=variance,
                          generator=generator, clip_x0=clip_x0).prev_sample
        else:
            x = ddim_step(schedule, out, t, t_prev, x, prediction=prediction, eta=eta,
                          generator=generator, clip_x0=clip_x0).prev_sample
    return x
