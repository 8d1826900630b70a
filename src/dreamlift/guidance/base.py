"""One interface for every denoiser that can guide SDS.

A :class:`GuidanceBackend` is a frozen, text-conditioned eps-predictor plus the two
conversions SDS needs around it:

- ``encode_images``: rendered images (B, 3, H, W) in [0, 1] -> the denoiser's clean
  sample x0 (pixels in [-1, 1] for the built-in prior and DeepFloyd IF, VAE latents for
  Stable Diffusion). It is differentiable: the SDS gradient flows back through it into
  the renderer (for latent SDS, through the VAE encoder, as in Latent-NeRF / threestudio).
- ``encode_text``: a list of prompts -> the backend's conditioning for that batch.

and one query, ``predict_eps(x_t, t, cond)``, which never builds a graph (the SDS
gradient skips the U-Net Jacobian: DreamFusion, eq. 3 -> 4). The SDS algorithm itself
(timesteps, noise, classifier-free guidance, weighting) is written once, in
:mod:`dreamlift.guidance.sds`, for all backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from ..diffusion import NoiseSchedule

__all__ = ["GuidanceBackend"]


class GuidanceBackend(ABC):
    """A frozen text-to-image denoiser that SDS queries."""

    name: str = "backend"
    resolution: int
    """Side of the square image the renderer should produce for this denoiser."""
    schedule: NoiseSchedule
    """The denoiser's training noise schedule (its alphas_cumprod)."""
    device: torch.device

    def check_prompt(self, prompt: str) -> None:
        """Raise DreamliftError when this backend cannot serve ``prompt`` (default: any prompt is fine)."""

    def conditioning_text(self, prompt: str) -> str:
        """The text the denoiser is actually conditioned on for ``prompt`` (default: the prompt itself)."""
        return prompt

    def conditioning_note(self, prompt: str) -> str | None:
        """One line telling the user why ``conditioning_text(prompt)`` differs from the prompt, or None."""
        return None

    @abstractmethod
    def encode_text(self, prompts: list[str]) -> Any:
        """Conditioning for a batch of prompts (an empty string is the unconditional prompt)."""

    @abstractmethod
    def encode_images(self, images: Tensor) -> Tensor:
        """Differentiable map from images (B, 3, H, W) in [0, 1] to the denoiser's x0 (B, C, h, w)."""

    @abstractmethod
    def predict_eps(self, x_t: Tensor, t: Tensor, cond: Any) -> Tensor:
        """eps_hat(x_t, t, cond), (B, C, h, w), computed without autograd; t is (B,) long."""

    def at_cameras(self, cond: Any, cams) -> Any:
        """``cond`` (n B rows: n blocks of B, e.g. conditional then unconditional) told the B cameras ``cams``
        (a ``render.camera.CameraSample``) that its images are seen from, for a camera-aware denoiser (a built-in
        prior trained with ``--unet-camera``). Default: ``cond`` unchanged (the denoiser knows no camera)."""
        return cond

    def freeze_prompts(self, prompts: list[str]) -> None:
        """Encode ``prompts`` (every text a run will send) once and free the text encoder where it is worth it
        (DeepFloyd IF's T5-XXL: about 9.5 GB in fp16); encode_text then serves only those prompts. Default:
        nothing to free."""

    def sample_images(self, prompts: list[str], n_per_prompt: int, seed: int = 0, steps: int | None = None) -> Tensor:
        """Sample ``n_per_prompt`` images per prompt, (len(prompts) * n, 3, H, W) in [0, 1], prompt-major, in
        ``steps`` sampling steps (None: the backend's default).

        Optional (the area prior uses it); backends that cannot sample cheaply raise NotImplementedError.
        """
        raise NotImplementedError

    def decode(self, x0: Tensor) -> Tensor:
        """Inverse of ``encode_images`` for previews: x0 -> images (B, 3, H, W) in [0, 1]."""
        return ((x0 + 1) / 2).clamp(0, 1)
