"""The built-in prior as an SDS guide: pixel space, offline, the default backend."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DreamliftError
from ..prior.text_encoder import TextEmbedding
from .base import GuidanceBackend

__all__ = ["AREA_SAMPLE_STEPS", "BuiltinGuidance", "pixel_x0"]

# DDIM steps of the area samples when the caller names none: the count --area-scale's 0.67 was calibrated at.
# generate chooses per representation (generate.DEFAULT_AREA_STEPS: 10 for the NeRF, whose IoU did not move, with
# the scale 0.62 dividing out the blurrier samples' 1.07x larger areas; docs/decisions/area-scale.md).
AREA_SAMPLE_STEPS = 25


def pixel_x0(images: Tensor, resolution: int) -> Tensor:
    """Renders (B, 3, H, W) in [0, 1] -> a pixel-space prior's x0 (B, 3, R, R) in [-1, 1], area-averaged to its
    resolution (the priors were trained on 64x64 renders area-downsampled to 32x32). Differentiable."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[-1] != resolution or images.shape[-2] != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    return images * 2.0 - 1.0


class BuiltinGuidance(GuidanceBackend):
    """dreamlift's shipped prior (``path=None``) or another exported prior folder.

    Images are area-averaged to the prior's resolution (it was trained on 64x64 renders
    area-downsampled to 32x32, so rendering at 2x and averaging matches its data) and
    mapped to [-1, 1].
    """

    name = "builtin"

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu",
                 allow_out_of_world: bool = False, rewrite_unknown_words: bool = True):
        from ..prior.model import BuiltinPrior

        self.prior = BuiltinPrior(path, device=device, rewrite_unknown_words=rewrite_unknown_words)
        self.device = self.prior.device
        self.schedule = self.prior.schedule
        self.resolution = self.prior.resolution
        self.allow_out_of_world = allow_out_of_world
        self._scope = None

    def check_prompt(self, prompt: str) -> None:
        if not prompt.strip():
            raise DreamliftError("the prompt is empty")
        if self.allow_out_of_world:
            return
        from ..prior.scope import PromptScope

        self._scope = self._scope or PromptScope(self.prior.encoder)
        result = self._scope.check(prompt)
        if not result.in_world:
            raise DreamliftError(self._scope.message(result))

    def conditioning_text(self, prompt: str) -> str:
        """The caption the prior is conditioned on for ``prompt`` (``dreamlift.prior.vocabulary``)."""
        return self.prior.rewrite(prompt).text

    def conditioning_note(self, prompt: str) -> str | None:
        rewrite = self.prior.rewrite(prompt)
        return rewrite.note() if rewrite.changed else None

    def encode_text(self, prompts: list[str]) -> TextEmbedding:
        # The empty prompt (the unconditional input) is never rewritten; the encoder caches per prompt.
        return self.prior.encode(prompts)

    def encode_images(self, images: Tensor) -> Tensor:
        return pixel_x0(images, self.resolution)

    @property
    def camera_aware(self) -> bool:
        """Whether the prior takes each view's camera (``UNetConfig.camera``)."""
        return self.prior.unet_config.camera

    def at_cameras(self, cond: TextEmbedding, cams):
        if not self.camera_aware:
            return cond
        from ..prior.unet import camera_features, with_camera

        camera = camera_features(cams.azimuth_deg, cams.elevation_deg, cams.distance)  # (B, 4)
        rows = cond.pooled.shape[0]
        if rows % camera.shape[0]:
            raise ValueError(f"{rows} condition rows for {camera.shape[0]} cameras")
        from ..transfer import to_device

        return with_camera(cond, to_device(camera.repeat(rows // camera.shape[0], 1), self.device))

    def predict_eps(self, x_t: Tensor, t: Tensor, cond: TextEmbedding) -> Tensor:
        return self.prior.predict_eps(x_t, t, cond)

    def sample_images(self, prompts: list[str], n_per_prompt: int, seed: int = 0, steps: int | None = None) -> Tensor:
        """DDIM, ``steps`` steps (None: AREA_SAMPLE_STEPS), guidance 3 (the prior's own default scale): cheap samples
        for the area prior."""
        return self.prior.sample(prompts, n_per_prompt, steps=AREA_SAMPLE_STEPS if steps is None else steps,
                                 guidance_scale=3.0, seed=seed, method="ddim", eta=0.0)
