"""What a training render is composited over, for any representation.

The built-in prior was trained on objects on white, so its runs render over white (``white``, the renderers'
default). A large diffusion model draws objects in scenes; over a fixed white the distillation tends to paint
the background into the object, so the field work of the DreamFusion line learns the background too:

- ``learned``: a small MLP on the ray direction (an environment map, threestudio's
  neural-environment-map-background): direction -> sinusoidal features -> MLP -> sigmoid colour, trained with the
  field at a tenth of its learning rate (threestudio: 0.001 against 0.01);
- ``random``: one uniform random colour per image each step (stable-dreamfusion's random background), which
  makes any colour of the background useless to the object.

Training renders are made over black and composited here, rgb + (1 - opacity) * background, which is the same
compositing the renderers do (so it works for the NeRF and the Gaussians alike). Exports always render over
white."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from ..transfer import to_device

__all__ = ["BACKGROUNDS", "EnvironmentBackground", "background_image", "composite"]

BACKGROUNDS = ("white", "random", "learned")


class EnvironmentBackground(nn.Module):
    """Colour (3,) in [0, 1] of a unit ray direction (3,): [d, sin(2^k pi d), cos(2^k pi d)] for k < ``freqs``
    -> Linear -> ReLU -> Linear -> ReLU -> Linear -> sigmoid. Starts near mid-grey (zero last layer)."""

    def __init__(self, freqs: int = 2, hidden: int = 16):
        super().__init__()
        self.freqs = freqs
        width = 3 + 6 * freqs
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 3))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def encode(self, d: Tensor) -> Tensor:
        feats = [d]
        for k in range(self.freqs):
            feats += [torch.sin((2.0**k) * math.pi * d), torch.cos((2.0**k) * math.pi * d)]
        return torch.cat(feats, dim=-1)

    def forward(self, d: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(self.encode(d)))


def background_image(kind: str, camera, model: EnvironmentBackground | None, generator: torch.Generator,
                     device: torch.device) -> Tensor | None:
    """(B, 3, H, W) background of a batch of cameras, or None for white (the renderers' own)."""
    if kind == "white":
        return None
    B, H, W = len(camera), camera.height, camera.width
    if kind == "random":
        colour = to_device(torch.rand(B, 3, generator=generator), device)
        return colour[:, :, None, None].expand(B, 3, H, W)
    if kind == "learned":
        from ..render.camera import camera_rays

        _, dirs = camera_rays(camera)  # (B, H, W, 3), unit
        return model(to_device(dirs, device)).permute(0, 3, 1, 2)
    raise ValueError(f"unknown background {kind!r} (choose from {', '.join(BACKGROUNDS)})")


def composite(out, background: Tensor):
    """A render made over black, put over ``background`` (B, 3, H, W): rgb + (1 - opacity) * background."""
    from dataclasses import replace

    return replace(out, rgb=out.rgb + (1.0 - out.opacity) * background)
