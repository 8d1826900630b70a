"""DeepFloyd IF stage I as an SDS guide: pixel-space SDS at 64 x 64 (as in threestudio's IF guidance).

Renders (B, 3, H, W) in [0, 1] are resized to the U-Net's sample size (64 for IF-I) and mapped
to [-1, 1]; there is no autoencoder, so x0 is the image itself. The IF U-Net predicts eps and a
learned variance (6 output channels for 3 input channels); SDS only needs eps, the first 3.
Prompts go through IF's own preprocessing without caption cleaning (lower-cased, stripped) and
are encoded by T5 padded to 77 tokens, as ``IFPipeline.encode_prompt`` does.

Loading is offline by default: see :mod:`dreamlift.guidance._hub`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DreamliftError
from ..diffusion import convert
from ._hub import (Compiled, ModelSource, PromptCache, channels_last, default_dtype, diffusers_kwargs, prediction_from_config,
                   schedule_from_config, split_learned_variance, transformers_dtype)
from .base import GuidanceBackend

__all__ = ["DeepFloydGuidance", "DEFAULT_IF_MODEL", "IF_MAX_TOKENS"]

DEFAULT_IF_MODEL = "DeepFloyd/IF-I-XL-v1.0"
IF_SUBFOLDERS = ("unet", "text_encoder", "tokenizer", "scheduler")
IF_MAX_TOKENS = 77
"""IF's T5 was trained on prompts padded/truncated to 77 tokens (IFPipeline.encode_prompt)."""
_LONGEST_VIEW_SUFFIX = ", overhead view"


def _t5_tokenizer_class() -> type:
    """T5Tokenizer, or T5TokenizerFast (tokenizer.json only) when sentencepiece is not installed."""
    from transformers import T5Tokenizer

    if importlib.util.find_spec("sentencepiece") is None:
        try:
            from transformers import T5TokenizerFast
        except ImportError:
            return T5Tokenizer
        return T5TokenizerFast
    return T5Tokenizer


def preprocess_prompt(prompt: str) -> str:
    """IF's prompt preprocessing with clean_caption=False: lower-case and strip."""
    return prompt.lower().strip()


class DeepFloydGuidance(GuidanceBackend):
    """A frozen DeepFloyd IF stage-I U-Net and T5 encoder for pixel-space SDS.

    Args:
        model: a hub id already in the local cache (IF is gated: accept its license on the hub
            before downloading), or a folder in the diffusers IFPipeline layout
            (unet/ text_encoder/ tokenizer/ scheduler/).
        device: where the models run.
        dtype: the models' dtype; default float16 on CUDA, float32 elsewhere. ``encode_images``
            and ``predict_eps`` return float32 whatever it is.
    """

    name = "deepfloyd-if"

    def __init__(self, model: str | os.PathLike = DEFAULT_IF_MODEL, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, compile: bool = False):
        self.device = torch.device(device)
        self.dtype = default_dtype(self.device, dtype)
        source = ModelSource(model, "DeepFloyd IF", IF_SUBFOLDERS,
                             hint="DeepFloyd IF is gated: accept its license on huggingface.co and log in to download")
        self.model_name = source.name
        from diffusers import UNet2DConditionModel
        from transformers import T5EncoderModel

        config = source.load_scheduler_config()
        self.schedule = schedule_from_config(config)
        self.prediction = prediction_from_config(config)
        source.check_model_type(T5EncoderModel, "text_encoder")
        try:
            self.tokenizer = source.load(_t5_tokenizer_class().from_pretrained, "tokenizer")
        except DreamliftError as exc:
            no_json = not source.is_local or not (Path(source.location) / "tokenizer" / "tokenizer.json").is_file()
            if no_json and importlib.util.find_spec("sentencepiece") is None:
                raise DreamliftError(f"{exc}; a tokenizer/ with only spiece.model needs 'pip install sentencepiece'"
                                     ) from exc.__cause__
            raise
        self.text_encoder = source.load_model(T5EncoderModel, "text_encoder",
                                        **transformers_dtype(self.dtype))
        self.unet = source.load_model(UNet2DConditionModel, "unet", **diffusers_kwargs(self.dtype))
        for module in (self.text_encoder, self.unet):
            module.eval().requires_grad_(False).to(self.device)
        channels_last(self.unet)
        self._unet = Compiled(self.unet, "the U-Net") if compile else None  # as Stable Diffusion's

        self.channels = int(self.unet.config.in_channels)
        if self.channels != 3:
            raise source.fail(f"the U-Net takes {self.channels} channels; IF stage I works on RGB pixels (3)")
        sample_size = self.unet.config.sample_size
        self.resolution = sample_size if isinstance(sample_size, int) else int(sample_size[0])
        self.max_tokens = IF_MAX_TOKENS
        self._text = PromptCache(self._encode_uncached)

    def __repr__(self) -> str:
        return (f"DeepFloydGuidance({self.model_name!r}, resolution={self.resolution}, "
                f"prediction={self.prediction!r}, device={str(self.device)!r}, dtype={self.dtype})")

    def check_prompt(self, prompt: str) -> None:
        """Reject empty prompts and prompts that T5 would truncate at 77 tokens once a view suffix is appended."""
        if not prompt.strip():
            raise DreamliftError("the prompt is empty")
        n = len(self.tokenizer(preprocess_prompt(prompt + _LONGEST_VIEW_SUFFIX), truncation=False)["input_ids"])
        if n > self.max_tokens:
            raise DreamliftError(f"the prompt is too long for DeepFloyd IF's text encoder ({n} tokens with a view "
                                 f"suffix, at most {self.max_tokens}); shorten it")

    def freeze_prompts(self, prompts: list[str]) -> None:
        """Encode ``prompts`` into the cache and free T5 (IF-I-XL's T5-XXL holds about 9.5 GB in fp16 for nothing
        once the run's few prompts are encoded)."""
        if self.text_encoder is None:
            return
        self._text.size = max(self._text.size, len(set(prompts)))
        self._text(list(prompts))
        self.text_encoder = None
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _encode_uncached(self, prompts: list[str]) -> Tensor:
        if self.text_encoder is None:
            raise RuntimeError(f"DeepFloyd IF's text encoder was freed after encoding the run's prompts; "
                               f"{prompts[0]!r} is not one of them")
        batch = self.tokenizer([preprocess_prompt(p) for p in prompts], padding="max_length",
                               max_length=self.max_tokens, truncation=True, add_special_tokens=True,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        return self.text_encoder(ids, attention_mask=mask)[0]  # (n, 77, D)

    def encode_text(self, prompts: list[str]) -> Tensor:
        """T5 last hidden states (B, 77, D) in the model dtype; cached per prompt."""
        return self._text(list(prompts))

    def encode_images(self, images: Tensor) -> Tensor:
        """Pixels (B, 3, R, R) float32 in [-1, 1] of images (B, 3, H, W) in [0, 1] (bilinear resize to R)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        R = self.resolution
        if images.shape[-2:] != (R, R):
            images = F.interpolate(images, size=(R, R), mode="bilinear", align_corners=False, antialias=False)
        return (images * 2.0 - 1.0).float().to(self.device)

    @torch.no_grad()
    def predict_eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """eps_hat (B, 3, R, R): the first 3 of the U-Net's 6 output channels (the rest is the variance)."""
        x_t = x_t.to(self.device)
        t = t.to(self.device)
        out = (self._unet or self.unet)(x_t.to(self.dtype), t, encoder_hidden_states=cond.to(self.device, self.dtype)).sample
        out = split_learned_variance(out.float(), self.channels)
        if self.prediction != "eps":
            out = convert(self.schedule, out, self.prediction, "eps", x_t.float(), t)
        return out.to(x_t.dtype)
