"""The guidance backends by name, and one function to load any of them.

``BACKENDS`` maps each name to a constructor ``(model, device, allow_out_of_world, rewrite_unknown_words,
compile) -> GuidanceBackend``
that imports its module only when called, so naming the built-in backend never imports the
Stable Diffusion or DeepFloyd code (nor loads diffusers' pipelines).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..config import DreamliftError
from .base import GuidanceBackend

__all__ = ["BACKENDS", "load_backend", "DEFAULT_MODELS", "builtin_model_path"]

Constructor = Callable[[str | None, torch.device | str, bool, bool, bool], GuidanceBackend]


def _builtin(model: str | None, device: torch.device | str, allow_out_of_world: bool,
             rewrite_unknown_words: bool, compile: bool) -> GuidanceBackend:  # (a 32-px U-Net: nothing to compile)
    from .builtin import BuiltinGuidance

    return BuiltinGuidance(builtin_model_path(model), device, allow_out_of_world, rewrite_unknown_words)


def builtin_model_path(model: str | None):
    """The built-in backend's ``model``: None (the shipped prior), ``camera`` (the shipped camera-aware prior,
    ``dreamlift/prior/weights/camera``; a folder of that name is ``./camera``) or an exported prior folder."""
    if model == "camera":
        from ..prior.model import SHIPPED_WEIGHTS

        return SHIPPED_WEIGHTS / "camera"
    return model


def is_shipped_model(model: str | None) -> bool:
    """Whether the built-in ``model`` is one of the shipped priors (their vocabulary is the world's, so a
    prompt's unknown words are rewritten; another exported prior may have other captions)."""
    return model is None or model == "camera"


def _stable_diffusion(model: str | None, device: torch.device | str, allow_out_of_world: bool,
                      rewrite_unknown_words: bool, compile: bool) -> GuidanceBackend:
    from .stable_diffusion import DEFAULT_SD_MODEL, StableDiffusionGuidance

    return StableDiffusionGuidance(model or DEFAULT_SD_MODEL, device, compile=compile)


def _deepfloyd(model: str | None, device: torch.device | str, allow_out_of_world: bool,
               rewrite_unknown_words: bool, compile: bool) -> GuidanceBackend:
    from .deepfloyd import DEFAULT_IF_MODEL, DeepFloydGuidance

    return DeepFloydGuidance(model or DEFAULT_IF_MODEL, device, compile=compile)


BACKENDS: dict[str, Constructor] = {
    "builtin": _builtin,
    "stable-diffusion": _stable_diffusion,
    "deepfloyd-if": _deepfloyd,
}
"""name -> constructor(model, device, allow_out_of_world, rewrite_unknown_words, compile); model None means the
backend's default; allow_out_of_world and rewrite_unknown_words only matter to the built-in prior, compile
(``torch.compile`` of the denoiser) only to the diffusers backends."""

DEFAULT_MODELS: dict[str, str] = {
    "builtin": "the shipped prior (dreamlift/prior/weights); camera: the shipped camera-aware one",
    "stable-diffusion": "stabilityai/stable-diffusion-2-1-base",
    "deepfloyd-if": "DeepFloyd/IF-I-XL-v1.0",
}
"""What ``model=None`` loads, for help texts."""


def load_backend(name: str, model: str | None = None, device: torch.device | str = "cpu",
                 allow_out_of_world: bool = False, rewrite_unknown_words: bool = True,
                 compile: bool = False) -> GuidanceBackend:
    """Load the guidance backend ``name`` ("builtin", "stable-diffusion" or "deepfloyd-if").

    Args:
        model: builtin: an exported prior folder (None: the shipped weights); stable-diffusion and
            deepfloyd-if: a local diffusers folder or a cached hub id (None: DEFAULT_MODELS[name]).
            Nothing is downloaded unless DREAMLIFT_ALLOW_DOWNLOAD=1.
        device: where the backend runs (the diffusers backends default to float16 on CUDA).
        allow_out_of_world: builtin only: accept prompts outside the prior's world.
        rewrite_unknown_words: builtin only: condition on the nearest world caption when the prompt has
            words no training caption used (``dreamlift.prior.vocabulary``).
        compile: stable-diffusion and deepfloyd-if: run the denoiser through ``torch.compile``.

    Raises:
        DreamliftError: an unknown name, or a model that cannot be loaded.
    """
    if name not in BACKENDS:
        raise DreamliftError(f"unknown guidance backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name](model, device, allow_out_of_world, rewrite_unknown_words, compile)
