"""Text-to-image with the prior: encode prompts, guide, run the DDPM core's sampler."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from ..diffusion import NoiseSchedule, guided_denoiser, sample
from .text_encoder import TextEncoder

if TYPE_CHECKING:
    import PIL.Image

__all__ = ["sample_images", "image_grid"]


@torch.no_grad()
def sample_images(
    model: torch.nn.Module,
    encoder: TextEncoder,
    schedule: NoiseSchedule,
    prompts: list[str],
    *,
    prediction: str = "eps",
    resolution: int = 32,
    n_per_prompt: int = 1,
    steps: int = 50,
    method: Literal["ddpm", "ddim"] = "ddim",
    eta: float = 0.0,
    guidance_scale: float = 3.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    batch_size: int = 64,
    cameras: Tensor | None = None,
) -> Tensor:
    """Sample ``n_per_prompt`` images for each prompt.

    ``cameras``: a camera-aware prior's cameras (``prior.unet.camera_features``), (len(prompts), 4) or one per
    image (len(prompts) * n_per_prompt, 4); both halves of classifier-free guidance see them. None: no camera.

    ``eta`` is DDIM's noise level (0: deterministic, 1: the DDPM posterior's variance); the
    generator seeded with ``seed`` draws x_T and then every step's noise, so a seed fixes the result.

    Returns:
        (len(prompts) * n_per_prompt, 3, R, R) images in [0, 1], prompt-major order.
    """
    device = torch.device(device)
    all_prompts = [p for p in prompts for _ in range(n_per_prompt)]
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(len(all_prompts), 3, resolution, resolution, generator=g)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def model_fn(x, t, text):
        with autocast():
            return model(x, t, text).float()

    if cameras is not None:
        if cameras.shape[0] == len(prompts):
            cameras = cameras.repeat_interleave(n_per_prompt, dim=0)
        if cameras.shape != (len(all_prompts), 4):
            raise ValueError(f"cameras must be ({len(prompts)} or {len(all_prompts)}, 4), got {tuple(cameras.shape)}")
    out = []
    for start in range(0, len(all_prompts), batch_size):
        chunk = all_prompts[start : start + batch_size]
        text = encoder.encode(chunk).to(device)
        null = encoder.unconditional(1).to(device)
        if cameras is not None:
            from .unet import with_camera

            camera = cameras[start : start + len(chunk)].to(device)
            text, null = with_camera(text, camera), with_camera(null, camera)
        denoise = guided_denoiser(model_fn, text, null, guidance_scale)
        x = sample(denoise, (len(chunk), 3, resolution, resolution), schedule, method=method, steps=steps, eta=eta,
                   prediction=prediction, generator=g, device=device, x_T=x_T[start : start + len(chunk)],
                   clip_x0=1.0)
        out.append(((x.clamp(-1, 1) + 1) / 2).cpu())
    return torch.cat(out)


def image_grid(images: Tensor, rows: int | None = None, pad: int = 2) -> "PIL.Image.Image":
    """(N, 3, H, W) images in [0, 1] -> a PIL grid image (column-major by prompt when rows = n_per_prompt)."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = rows or max(1, int(n**0.5))
    cols = -(-n // rows)
    grid = torch.ones(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        c, r = divmod(i, rows)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[i]
    arr = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(arr)
