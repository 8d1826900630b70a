"""Training: Algorithm 1 of DDPM, generalised to any prediction target.

    repeat
        x_0 ~ q(x_0);  t ~ Uniform({1, ..., T});  eps ~ N(0, I)
        gradient step on || target - model(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2
    until converged

With ``prediction="eps"`` the target is eps, which is the paper's L_simple (eq. 14).
For classifier-free guidance the condition is replaced by a null condition with
probability ``cond_drop_prob`` (Ho & Salimans 2022), so one network learns both the
conditional and the unconditional model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .guidance import Cond, ConditionalModel, _expand_like, batch_size, map_cond
from .process import q_sample
from .schedule import NoiseSchedule, gather
from .targets import Prediction, check_prediction, from_x0_eps

__all__ = ["diffusion_loss", "drop_condition"]


def drop_condition(cond: Cond, null_cond: Cond, prob: float, generator: torch.Generator | None = None) -> Cond:
    """Replace each sample's condition by ``null_cond`` with probability ``prob``.

    Args:
        cond: (B, ...) conditions (class indices or embeddings), or a dataclass of such tensors
            (every field of a sample is replaced together).
        null_cond: the null condition, (B, ...), (1, ...) or cond.shape[1:] (per field).

    Returns:
        conditions of the same kind, fresh tensors.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"cond_drop_prob must lie in [0, 1], got {prob}")
    drop = torch.rand(batch_size(cond), generator=generator, device="cpu") < prob  # (B,)

    def one(c: Tensor, n: Tensor) -> Tensor:
        n = _expand_like(n.to(c.device, c.dtype), c)
        return torch.where(drop.to(c.device).reshape(-1, *([1] * (c.ndim - 1))), n, c)

    return map_cond(one, cond, null_cond)


def diffusion_loss(
    model: ConditionalModel,
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    prediction: Prediction = "eps",
    cond: Cond | None = None,
    null_cond: Cond | None = None,
    cond_drop_prob: float = 0.0,
    t_weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One Monte-Carlo estimate of the Algorithm 1 objective.

    Args:
        model: model(x_t (B, ...), t (B,) long, cond) -> prediction of type ``prediction``.
        x0: (B, ...) clean training data.
        prediction: what the model predicts: "eps" (the paper), "x0", "v" or "mu".
        cond: (B, ...) condition passed to the model, a tensor or a dataclass of tensors
            (None for an unconditional model).
        null_cond: the null condition used by caption dropout.
        cond_drop_prob: probability of replacing a sample's condition by ``null_cond``.
        t_weights: optional (T,) weight per timestep index (e.g. min-SNR weighting).
        generator: CPU generator for t, eps and the dropout mask (reproducible training).

    Returns:
        The scalar loss: per-sample mean squared error, weighted by t_weights[t], averaged.
    """
    check_prediction(prediction)
    if cond_drop_prob > 0.0 and (cond is None or null_cond is None):
        raise ValueError("caption dropout needs both cond and null_cond")
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (b,), generator=generator).to(x0.device)  # (B,)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)  # (B, ...)
    x_t = q_sample(schedule, x0, t, eps)
    if cond is not None and cond_drop_prob > 0.0:
        cond = drop_condition(cond, null_cond, cond_drop_prob, generator)
    pred = model(x_t, t, cond)
    target = from_x0_eps(schedule, x0, eps, prediction, x_t, t)
    per_sample = (pred - target).pow(2).flatten(1).mean(dim=1)  # (B,)
    if t_weights is not None:
        if t_weights.shape != (schedule.num_steps,):
            raise ValueError(f"t_weights must have shape ({schedule.num_steps},), got {tuple(t_weights.shape)}")
        per_sample = per_sample * gather(t_weights, t, per_sample)
    return per_sample.mean()
