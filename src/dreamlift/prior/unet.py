"""The prior's denoiser: a small pixel-space diffusers ``UNet2DConditionModel``.

Text conditioning enters twice, as in Imagen:
- the token states (B, L, 384) through cross-attention at the lower resolutions (by default
  cross-attention only, at 8x8: on a 2-core CPU, self-attention at 16x16 made training
  five times slower — 16 vs 81 images/s, measured with bf16 autocast at batch 64);
- the pooled sentence embedding (B, 384), projected and added to the timestep
  embedding (diffusers' ``class_embed_type="projection"``), which scales and shifts
  every residual block.

A camera-aware prior (``UNetConfig.camera``; MVDream's lesson, Shi et al. 2023, at this scale) also
sees the camera each image is drawn from: ``camera_features`` (4 numbers) are concatenated with
the pooled sentence embedding before that projection, so the camera too scales and shifts every
residual block. Its condition is a ``CameraText``; a plain ``TextEmbedding`` (or an all-zero
camera, which no real camera gives since sin^2 + cos^2 = 1) means "camera unknown", which
training teaches by dropping the camera now and then.

The network sees images in [-1, 1], (B, 3, R, R), and predicts eps (or another
target, recorded in the config).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..config import option
from .text_encoder import EMBED_DIM, TextEmbedding

__all__ = ["UNetConfig", "PriorUNet", "CameraText", "CAMERA_FEATURES", "camera_features", "with_camera"]

CAMERA_FEATURES = 4
# The world's camera distances (render.camera.CameraDistribution: 3.0 to 3.6 object radii) map to [-1, 1].
DISTANCE_CENTRE, _DISTANCE_HALF_RANGE = 3.3, 0.3  # the world's views' camera distance (centre of its range)


def camera_features(azimuth_deg: Tensor, elevation_deg: Tensor, distance: Tensor) -> Tensor:
    """(B,) cameras (degrees, object radii; ``dreamlift.render.camera``'s convention: azimuth 0 = front, +z)
    -> (B, 4) [elevation in radians, sin azimuth, cos azimuth, (distance - 3.3) / 0.3], float32."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    dist = (torch.as_tensor(distance, dtype=torch.float32) - DISTANCE_CENTRE) / _DISTANCE_HALF_RANGE
    return torch.stack([el, torch.sin(az), torch.cos(az), dist], dim=-1)


@dataclass
class CameraText:
    """A camera-aware prior's condition: a TextEmbedding's fields and the camera, every field (B, ...)."""

    tokens: Tensor  # (B, L, 384)
    mask: Tensor  # (B, L)
    pooled: Tensor  # (B, 384)
    camera: Tensor  # (B, 4) camera_features; zeros: camera unknown

    def to(self, device: torch.device | str) -> "CameraText":
        return CameraText(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), self.camera.to(device))


def with_camera(text: TextEmbedding, camera: Tensor) -> CameraText:
    """``text`` (B or 1 rows) with cameras (B, 4); a single text row is repeated for every camera."""
    b = camera.shape[0]
    tokens, mask, pooled = text.tokens, text.mask, text.pooled
    if tokens.shape[0] == 1 and b > 1:
        tokens, mask, pooled = tokens.expand(b, -1, -1), mask.expand(b, -1), pooled.expand(b, -1)
    if tokens.shape[0] != b:
        raise ValueError(f"{tokens.shape[0]} text rows for {b} cameras")
    return CameraText(tokens, mask, pooled, camera.to(pooled.device, pooled.dtype))


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
    camera: bool = option(False, "a camera-aware prior: the camera of each view is an input beside the text")

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
        if not self.camera:  # the dict of every prior before camera-aware ones existed, so their runs still match
            del d["camera"]
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
    """model(x_t (B, 3, R, R), t (B,) long, text: TextEmbedding or CameraText) -> prediction (B, 3, R, R).

    A camera-aware network reads ``text.camera`` (a TextEmbedding: camera unknown, zeros); another ignores it."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.unet = build_unet(cfg, in_channels=3, class_dim=EMBED_DIM + (CAMERA_FEATURES if cfg.camera else 0))

    def forward(self, x: Tensor, t: Tensor, text: TextEmbedding | CameraText) -> Tensor:
        labels = text.pooled
        if self.cfg.camera:
            camera = getattr(text, "camera", None)
            if camera is None:
                camera = labels.new_zeros(labels.shape[0], CAMERA_FEATURES)
            labels = torch.cat([labels, camera.to(labels.dtype)], dim=1)
        return self.unet(
            x, t, encoder_hidden_states=text.tokens, encoder_attention_mask=text.mask,
            class_labels=labels, return_dict=False,
        )[0]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
