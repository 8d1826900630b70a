"""Stable Diffusion as an SDS guide: latent SDS through the VAE encoder (Latent-NeRF / threestudio style).

Renders (B, 3, R, R) in [0, 1], R = vae_scale_factor * unet.config.sample_size (512 for SD 1.x/2.x
base), are mapped to [-1, 1] and encoded by the VAE into latents x0 = scaling_factor * (mean of
q(z | x) - shift_factor): (B, 4, R/8, R/8). The encoder stays in the autograd graph, so the SDS
gradient w(t) (eps^ - eps) on the latents reaches the renderer through the VAE encoder's Jacobian.
The latent distribution's *mean* is used rather than a sample, so encoding is deterministic and
the only randomness of an SDS step is (t, eps).

Components are loaded one by one (no pipeline, safety checker or feature extractor), offline
by default: see :mod:`dreamlift.guidance._hub` for the policy and ``DREAMLIFT_ALLOW_DOWNLOAD``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DreamliftError
from ..diffusion import convert
from ._hub import (Compiled, ModelSource, PromptCache, channels_last, default_dtype, diffusers_kwargs,
                   prediction_from_config, schedule_from_config, split_learned_variance, transformers_dtype)
from .base import GuidanceBackend

__all__ = ["StableDiffusionGuidance", "DEFAULT_SD_MODEL"]

DEFAULT_SD_MODEL = "stabilityai/stable-diffusion-2-1-base"
SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_LONGEST_VIEW_SUFFIX = ", overhead view"  # what sds.view_prompts may append


class StableDiffusionGuidance(GuidanceBackend):
    """A frozen Stable Diffusion U-Net, VAE and CLIP text encoder for latent SDS.

    Args:
        model: a hub id already in the local cache, or a folder in the diffusers
            StableDiffusionPipeline layout (unet/ vae/ text_encoder/ tokenizer/ scheduler/).
        device: where the models run.
        dtype: the models' dtype; default float16 on CUDA, float32 elsewhere. ``encode_images``
            and ``predict_eps`` return float32 whatever it is.
        compile: run the U-Net and the VAE encoder through ``torch.compile`` (``Compiled``: compiled at the
            first step, eager if that fails). On CUDA both are stored channels-last either way.

    Attributes:
        prediction: what the U-Net predicts ("eps", "v" or "x0", from the scheduler config's
            prediction_type); ``predict_eps`` converts it to eps with the model's schedule.
        max_tokens: L, the CLIP token length every prompt is padded to (tokenizer.model_max_length).
    """

    name = "stable-diffusion"

    def __init__(self, model: str | os.PathLike = DEFAULT_SD_MODEL, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, compile: bool = False):
        self.device = torch.device(device)
        self.dtype = default_dtype(self.device, dtype)
        source = ModelSource(model, "Stable Diffusion", SD_SUBFOLDERS)
        self.model_name = source.name
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        # Cheapest first, so a model that is not there fails before any weights are read.
        config = source.load_scheduler_config()
        self.schedule = schedule_from_config(config)
        self.prediction = prediction_from_config(config)
        source.check_model_type(CLIPTextModel, "text_encoder")
        self.tokenizer = source.load(CLIPTokenizer.from_pretrained, "tokenizer")
        self.text_encoder = source.load_model(CLIPTextModel, "text_encoder", **transformers_dtype(self.dtype))
        self.vae = source.load_model(AutoencoderKL, "vae", **diffusers_kwargs(self.dtype))
        self.unet = source.load_model(UNet2DConditionModel, "unet", **diffusers_kwargs(self.dtype))
        for module in (self.text_encoder, self.vae, self.unet):
            module.eval().requires_grad_(False).to(self.device)
        channels_last(self.vae, self.unet)
        self._unet = Compiled(self.unet, "the U-Net") if compile else None
        self._encoder = Compiled(self.vae.encoder, "the VAE encoder") if compile else None

        latent_channels = int(self.vae.config.latent_channels)
        if int(self.unet.config.in_channels) != latent_channels:
            raise source.fail(f"the U-Net takes {self.unet.config.in_channels} channels but the VAE makes "
                              f"{latent_channels}")
        if int(self.unet.config.cross_attention_dim) != int(self.text_encoder.config.hidden_size):
            raise source.fail(f"the U-Net attends to {self.unet.config.cross_attention_dim}-d text but the text "
                              f"encoder gives {self.text_encoder.config.hidden_size}-d")
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        sample_size = self.unet.config.sample_size
        sample_size = sample_size if isinstance(sample_size, int) else int(sample_size[0])
        self.resolution = self.vae_scale_factor * sample_size
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.shift_factor = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        self.max_tokens = min(int(self.tokenizer.model_max_length),
                              int(self.text_encoder.config.max_position_embeddings))
        self._use_mask = bool(getattr(self.text_encoder.config, "use_attention_mask", False))
        self._text = PromptCache(self._encode_uncached)

    def __repr__(self) -> str:
        return (f"StableDiffusionGuidance({self.model_name!r}, resolution={self.resolution}, "
                f"prediction={self.prediction!r}, device={str(self.device)!r}, dtype={self.dtype})")

    def _token_count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, truncation=False)["input_ids"])

    def check_prompt(self, prompt: str) -> None:
        """Reject empty prompts and prompts that CLIP would truncate once a view suffix is appended."""
        if not prompt.strip():
            raise DreamliftError("the prompt is empty")
        n = self._token_count(prompt + _LONGEST_VIEW_SUFFIX)
        if n > self.max_tokens:
            raise DreamliftError(f"the prompt is too long for Stable Diffusion's text encoder ({n} tokens with a view "
                                 f"suffix, at most {self.max_tokens}); shorten it")

    def _encode_uncached(self, prompts: list[str]) -> Tensor:
        batch = self.tokenizer(prompts, padding="max_length", max_length=self.max_tokens, truncation=True,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device) if self._use_mask else None
        return self.text_encoder(ids, attention_mask=mask)[0]  # last hidden state (n, L, D)

    def encode_text(self, prompts: list[str]) -> Tensor:
        """CLIP last hidden states (B, L, D), L = max_tokens, in the model dtype; cached per prompt."""
        return self._text(list(prompts))

    def encode_images(self, images: Tensor) -> Tensor:
        """Latents (B, 4, R/f, R/f) float32 of images (B, 3, H, W) in [0, 1]; differentiable w.r.t. the images.

        Images of another size are resized bilinearly (no antialiasing) to the model resolution R.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        R = self.resolution
        if images.shape[-2:] != (R, R):
            images = F.interpolate(images, size=(R, R), mode="bilinear", align_corners=False, antialias=False)
        x = (images * 2.0 - 1.0).to(self.device, self.dtype)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        moments = (self._encoder or self.vae.encoder)(x)  # diffusers' AutoencoderKL.encode, with the encoder compiled where asked
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        mean = moments[:, : moments.shape[1] // 2]  # the diagonal Gaussian's mean (its log-variance is the rest)
        return ((mean - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def predict_eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """eps_hat (B, 4, h, w) for latents x_t (B, 4, h, w), t (B,) long, cond (B, L, D); no autograd."""
        x_t = x_t.to(self.device)
        t = t.to(self.device)
        out = (self._unet or self.unet)(x_t.to(self.dtype), t, encoder_hidden_states=cond.to(self.device, self.dtype)).sample
        out = split_learned_variance(out.float(), x_t.shape[1])
        if self.prediction != "eps":
            out = convert(self.schedule, out, self.prediction, "eps", x_t.float(), t)
        return out.to(x_t.dtype)

    @torch.no_grad()
    def decode(self, x0: Tensor) -> Tensor:
        """VAE-decoded previews (B, 3, R, R) float32 in [0, 1] of latents x0 (B, 4, h, w)."""
        z = x0.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        return ((self.vae.decode(z).sample.float() + 1.0) / 2.0).clamp(0, 1)
