"""Conversions between the four things a denoiser may predict.

Given x_t at index t, each of these determines the others exactly:

    eps  the noise in x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps        (DDPM eq. 4)
    x0   the clean sample x_0
    v    sqrt(abar_t) eps - sqrt(1 - abar_t) x_0       (Salimans & Ho 2022, section 4)
    mu   the posterior mean mu_q(x_t, x_0) = c0 x_0 + ct x_t               (DDPM eq. 7)
         = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)           (DDPM eq. 11)

So a model trained to predict any one of them can be used through any other:
``convert(pred, "v", "eps", x_t, t, schedule)``. All maps are affine in the
prediction for fixed (x_t, t), which is why classifier-free guidance gives the same
result whichever of them it is applied to (see ``guidance.py``).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from .process import posterior_mean_coefs
from .schedule import NoiseSchedule, gather

__all__ = ["Prediction", "PREDICTIONS", "check_prediction", "to_x0_eps", "from_x0_eps", "convert"]

Prediction = Literal["eps", "x0", "v", "mu"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


def check_prediction(kind: str) -> str:
    """Return ``kind`` if it names a prediction target, else raise a clear ValueError."""
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {kind!r}; choose one of {list(PREDICTIONS)}")
    return kind


def to_x0_eps(
    schedule: NoiseSchedule, pred: Tensor, kind: Prediction, x_t: Tensor, t: Tensor | int
) -> tuple[Tensor, Tensor]:
    """Recover (x0, eps) from a prediction of type ``kind`` at (x_t, t).

    Args:
        pred, x_t: (B, ...) tensors of the same shape.
        t: int or (B,) zero-based indices.

    Returns:
        (x0, eps), each (B, ...).
    """
    check_prediction(kind)
    schedule.check_index(t)
    abar = gather(schedule.alphas_cumprod, t, x_t)
    sa, sn = torch.sqrt(abar), torch.sqrt(1.0 - abar)
    if kind == "eps":
        eps = pred
        x0 = (x_t - sn * eps) / sa
    elif kind == "x0":
        x0 = pred
        eps = (x_t - sa * x0) / sn
    elif kind == "v":
        # x_t = sa x0 + sn eps and v = sa eps - sn x0, with sa^2 + sn^2 = 1: a rotation.
        x0 = sa * x_t - sn * pred
        eps = sn * x_t + sa * pred
    else:  # mu: invert eq. 7 for x0 and eq. 11 for eps.
        c0, ct = posterior_mean_coefs(schedule, t, x_t)
        beta = gather(schedule.betas, t, x_t)
        alpha = gather(schedule.alphas, t, x_t)
        x0 = (pred - ct * x_t) / c0
        eps = (x_t - torch.sqrt(alpha) * pred) * sn / beta
    return x0, eps


def from_x0_eps(
    schedule: NoiseSchedule, x0: Tensor, eps: Tensor, kind: Prediction, x_t: Tensor, t: Tensor | int
) -> Tensor:
    """The quantity of type ``kind`` implied by (x0, eps) at (x_t, t).

    This is also the regression target of Algorithm 1 for a model of that type.
    """
    check_prediction(kind)
    schedule.check_index(t)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    abar = gather(schedule.alphas_cumprod, t, x_t)
    if kind == "v":
        return torch.sqrt(abar) * eps - torch.sqrt(1.0 - abar) * x0
    # mu by eq. 11, which needs only eps and x_t (and equals eq. 7 when x_t is consistent).
    beta = gather(schedule.betas, t, x_t)
    alpha = gather(schedule.alphas, t, x_t)
    return (x_t - beta / torch.sqrt(1.0 - abar) * eps) / torch.sqrt(alpha)


def convert(
    schedule: NoiseSchedule, pred: Tensor, src: Prediction, dst: Prediction, x_t: Tensor, t: Tensor | int
) -> Tensor:
    """Convert a prediction of type ``src`` into type ``dst`` at (x_t, t)."""
    check_prediction(dst)
    if src == dst:
        check_prediction(src)
        return pred
    x0, eps = to_x0_eps(schedule, pred, src, x_t, t)
    return from_x0_eps(schedule, x0, eps, dst, x_t, t)
