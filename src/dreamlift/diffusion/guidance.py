"""Classifier-free guidance (Ho & Salimans 2022), with ONE convention for all of dreamlift.

    out = out_uncond + s * (out_cond - out_uncond)

s = 0 gives the unconditional prediction, s = 1 the conditional one, and s > 1
extrapolates away from the unconditional prediction (DreamFusion uses s = 100 for
SDS; image sampling typically uses s in 3..10). Some papers write the same thing as
(1 + w) * cond - w * uncond; that is this formula with s = 1 + w. dreamlift always
means ``s`` here, everywhere a ``guidance_scale`` appears.

Because the four prediction targets (eps, x0, v, mu) are affine functions of one
another for fixed (x_t, t) and the two weights (1 - s, s) sum to one, guiding in any
of them gives the same result once converted: the convention is parametrisation-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["cfg_combine", "guided_denoiser", "ConditionalModel", "Denoiser", "Cond", "map_cond", "batch_size"]

# model(x_t (B, ...), t (B,) long, cond) -> prediction (B, ...); cond is a (B, ...) tensor or a
# dataclass of (B, ...) tensors such as the prior's TextEmbedding.
ConditionalModel = Callable[[Tensor, Tensor, Any], Tensor]
# denoiser(x_t (B, ...), t (B,) long) -> prediction (B, ...)
Denoiser = Callable[[Tensor, Tensor], Tensor]


def cfg_combine(out_uncond: Tensor, out_cond: Tensor, scale: float) -> Tensor:
    """out_uncond + scale * (out_cond - out_uncond): the convention above."""
    return out_uncond + scale * (out_cond - out_uncond)


Cond = Any  # a Tensor (B, ...), or a dataclass whose fields are (B, ...) tensors (e.g. TextEmbedding)


def map_cond(fn: Callable[..., Tensor], *conds: Cond) -> Cond:
    """Apply ``fn`` to a tensor condition, or field by field to dataclass conditions."""
    first = conds[0]
    if isinstance(first, Tensor):
        return fn(*conds)
    if dataclasses.is_dataclass(first):
        return dataclasses.replace(
            first, **{f.name: fn(*(getattr(c, f.name) for c in conds)) for f in dataclasses.fields(first)})
    raise TypeError(f"a condition must be a Tensor or a dataclass of tensors, got {type(first).__name__}")


def batch_size(cond: Cond) -> int:
    """B of a tensor or dataclass condition."""
    if isinstance(cond, Tensor):
        return cond.shape[0]
    return getattr(cond, dataclasses.fields(cond)[0].name).shape[0]


def _expand_one(null: Tensor, cond: Tensor) -> Tensor:
    """Broadcast a null condition of shape (B, ...), (1, ...) or (...) to cond's (B, ...)."""
    if null.shape == cond.shape:
        return null
    if null.shape == cond.shape[1:] or (null.ndim == cond.ndim and null.shape[0] == 1 and null.shape[1:] == cond.shape[1:]):
        return null.reshape(1, *cond.shape[1:]).expand_as(cond)
    raise ValueError(f"unconditional input of shape {tuple(null.shape)} does not match condition {tuple(cond.shape)}")


def _expand_like(null: Cond, cond: Cond) -> Cond:
    return map_cond(_expand_one, null, cond)


def guided_denoiser(
    model: ConditionalModel, cond: Cond, uncond: Cond | None = None, scale: float = 1.0
) -> Denoiser:
    """Wrap a conditional model into a denoiser(x_t, t) with classifier-free guidance.

    The conditional and unconditional passes run as one batch of 2B.

    Args:
        model: model(x_t, t, cond) -> prediction.
        cond: (B, ...) condition per sample: a tensor or a dataclass of tensors.
        uncond: the null condition, (B, ...), (1, ...) or cond.shape[1:] (per field for a
            dataclass); needed unless scale == 1.
        scale: the guidance scale s.
    """
    if scale != 1.0 and uncond is None:
        raise ValueError("classifier-free guidance with scale != 1 needs an unconditional input")
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    null = _expand_like(uncond, cond)
    if scale == 0.0:
        return lambda x, t: model(x, t, null)

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        both = map_cond(lambda a, b: torch.cat([a, b]), null, cond)  # (2B, ...)
        out = model(torch.cat([x, x]), torch.cat([t, t]), both)
        out_uncond, out_cond = out.chunk(2)
        return cfg_combine(out_uncond, out_cond, scale)

    return denoise
