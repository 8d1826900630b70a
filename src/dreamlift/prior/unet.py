"""The prior's denoiser: a small pixel-space diffusers ``UNet2DConditionModel``.

Text conditioning enters twice, as in Imagen:
- the token states (B, L, 384) through cross-attention at the lower resolutions (by default
  cross-attention only, at 8x8: on a 2-core CPU, self-attention at 16x16 made training
  five times slower — 16 vs 81 images/s, measured with bf16 autocast at batch 64);
- the pooled sentence embedding (B, 384), projected and added to the timestep
  embedding (diffusers' ``class_embed_type="projection"``), which scales and shifts
  every residual block.

The network sees images in [-1, 1], (B, 3, R, R), and predicts eps (or another
target, recorded in the config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from torch import Tensor, nn

from ..config import option
from .text_encoder import EMBED_DIM, TextEmbedding

__all__ = ["UNetConfig", "PriorUNet"]


@dataclass
class UNetConfig:
    """Architecture of the prior's U-Net (saved beside its weights)."""

    resolution: int = option(32, "image side in pixels (the prior works in pixel space)")
    channels: tuple[int, ...] = option((32, 64, 128), "channels per resolution level")
    attention_levels: tuple[int, ...] = option((2,), "levels (0 = full resolution) with cross-attention")
    self_attention: bool = option(False, "also self-attention in the attention blocks (about 3x slower on a CPU)")
    mid_block: bool = option(False, "a middle block (with cross-attention) at the lowest resolution")
    layers_per_block: int = option(1, "residual blocks per level")
    head_dim: int = option(32, "attention head width")
    norm_groups: int = option(16, "GroupNorm groups")
    prediction: Literal["eps", "x0", "v"] = option("eps", "what the network predicts")

    def validate(self) -> None:
        if self.resolution % (2 ** (len(self.channels) - 1)):
            raise ValueError(f"resolution {self.resolution} must be divisible by 2^{len(self.channels) - 1}")
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"every channel count must be divisible by norm_groups={self.norm_groups}")
        if any(not 0 <= lvl < len(self.channels) for lvl in self.attention_levels):
            raise ValueError(f"attention levels {self.attention_levels} out of range")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["attention_levels"] = list(self.channels), list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["channels"], d["attention_levels"] = tuple(d["channels"]), tuple(d["attention_levels"])
        return cls(**d)


def build_unet(cfg: UNetConfig, in_channels: int, class_dim: int):
    """The diffusers ``UNet2DConditionModel`` of ``cfg`` (see the module docstring) with ``in_channels`` inputs
    and a class embedding projected from ``class_dim`` numbers; shared by the text and novel-view priors."""
    from diffusers import UNet2DConditionModel

    n = len(cfg.channels)
    down = tuple("CrossAttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if n - 1 - i in cfg.attention_levels else "UpBlock2D" for i in range(n))
    return UNet2DConditionModel(
        sample_size=cfg.resolution, in_channels=in_channels, out_channels=3,
        block_out_channels=tuple(cfg.channels), down_block_types=down, up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn" if cfg.mid_block else None,
        only_cross_attention=not cfg.self_attention,
        layers_per_block=cfg.layers_per_block, cross_attention_dim=EMBED_DIM,
        attention_head_dim=cfg.head_dim, norm_num_groups=cfg.norm_groups,
        class_embed_type="projection", projection_class_embeddings_input_dim=class_dim,
    )


class PriorUNet(nn.Module):
    """model(x_t (B, 3, R, R), t (B,) long, text: TextEmbedding) -> prediction (B, 3, R, R)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.unet = build_unet(cfg, in_channels=3, class_dim=EMBED_DIM)

    def forward(self, x: Tensor, t: Tensor, text: TextEmbedding) -> Tensor:
        return self.unet(
            x, t, encoder_hidden_states=text.tokens, encoder_attention_mask=text.mask,
            class_labels=text.pooled, return_dict=False,
        )[0]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
