"""The built-in prior as shipped: fp16 EMA weights + prior.json, loaded offline.

``BuiltinPrior()`` loads the weights inside the package (``dreamlift/prior/weights``);
``BuiltinPrior(path)`` loads an exported folder (see ``train.export_prior``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..config import DreamliftError
from ..diffusion import NoiseSchedule, convert
from .text_encoder import TextEmbedding, TextEncoder
from .unet import PriorUNet, UNetConfig

if TYPE_CHECKING:
    from .vocabulary import Rewrite

__all__ = ["BuiltinPrior", "SHIPPED_WEIGHTS"]

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"


class BuiltinPrior:
    """The prior's denoiser, schedule and text encoder, ready to sample or to guide SDS.

    Args:
        path: a folder with prior.json and prior.safetensors (default: the shipped weights).
        encoder: a loaded TextEncoder to share; loaded if None.
        rewrite_unknown_words: condition on the nearest world caption when an in-world prompt has words
            that no training caption used (``dreamlift.prior.vocabulary``); False: the prompt as typed.
            Only priors trained on world captions (prior.json "captions": "world") are rewritten for:
            the vocabulary of one trained on a folder of captions is not known.
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu",
                 encoder: TextEncoder | None = None, rewrite_unknown_words: bool = True):
        path = Path(path) if path is not None else SHIPPED_WEIGHTS
        meta_file, weights_file = path / "prior.json", path / "prior.safetensors"
        if not meta_file.is_file() or not weights_file.is_file():
            raise DreamliftError(f"no prior weights in {path} (need prior.json and prior.safetensors); "
                                 "train one with 'dreamlift train-prior' and 'dreamlift export-prior'")
        try:
            self.meta = json.loads(meta_file.read_text())
            self.unet_config = UNetConfig.from_dict(self.meta["unet"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DreamliftError(f"{meta_file} is corrupt: {exc}") from exc
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            weights = load_file(str(weights_file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DreamliftError(f"{weights_file} is corrupt or unreadable: {exc}") from exc
        self.device = torch.device(device)
        self.model = PriorUNet(self.unet_config)
        try:
            self.model.load_state_dict({k: v.float() for k, v in weights.items()})
        except RuntimeError as exc:
            raise DreamliftError(f"{weights_file} does not match {meta_file}: "
                                 f"{str(exc).splitlines()[0]}") from exc
        self.model.eval().requires_grad_(False).to(self.device)
        self.schedule = NoiseSchedule.named(self.meta["schedule"], self.meta["num_train_timesteps"])
        self.prediction = self.unet_config.prediction
        self.resolution = self.unet_config.resolution
        self.encoder = encoder or TextEncoder(device=self.device)
        self.rewrite_unknown_words = rewrite_unknown_words and self.meta.get("captions") == "world"
        self._rewriter = None

    def rewrite(self, prompt: str) -> "Rewrite":
        """What the prior is conditioned on for ``prompt`` (unchanged when rewriting is off)."""
        from .vocabulary import PromptRewriter, Rewrite

        if not self.rewrite_unknown_words:
            return Rewrite(prompt, prompt, ())
        self._rewriter = self._rewriter or PromptRewriter(self.encoder)
        return self._rewriter.rewrite(prompt)

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """The conditioning for prompts: each one rewritten (see ``rewrite``), then encoded."""
        return self.encoder.encode([self.rewrite(p).text for p in prompts]).to(self.device)

    def encode_checked(self, prompts: list[str]) -> TextEmbedding:
        """Encode prompts (rewritten, as ``encode``) after rejecting empty ones."""
        for p in prompts:
            if not p or not p.strip():
                raise DreamliftError("the prompt is empty")
        return self.encode(prompts)

    @torch.no_grad()
    def predict_eps(self, x_t: Tensor, t: Tensor, text: TextEmbedding) -> Tensor:
        """eps_hat(x_t, t, text) for images (B, 3, R, R) in [-1, 1], whatever the network predicts."""
        out = self.model(x_t, t, text)
        return convert(self.schedule, out, self.prediction, "eps", x_t, t)

    def sample(self, prompts: list[str], n_per_prompt: int = 1, steps: int = 50, guidance_scale: float = 3.0,
               seed: int = 0, method: str = "ddim", bf16: bool = False, eta: float = 0.0) -> Tensor:
        """(len(prompts) * n, 3, R, R) images in [0, 1]."""
        from .sampling import sample_images

        self.encode_checked(prompts)
        texts = [self.rewrite(p).text for p in prompts]
        return sample_images(self.model, self.encoder, self.schedule, texts, prediction=self.prediction,
                             resolution=self.resolution, n_per_prompt=n_per_prompt, steps=steps, method=method, eta=eta,
                             guidance_scale=guidance_scale, seed=seed, device=self.device, bf16=bf16)
