"""Latent SDS speed and fp16 health with a Stable Diffusion 2.1-base-shaped model on CUDA.

The weights are random (nothing may be downloaded), but the architecture is SD 2.1 base's
(865M-parameter U-Net at 64x64 latents, 4-level VAE at 512x512, 23-layer 1024-d CLIP text
encoder), so the timings are those of the real model. The folder is saved in fp16 and loaded
through StableDiffusionGuidance's real loading code; the backend then runs in fp16 (its CUDA
default). Skipped without CUDA.
"""

import time

import pytest
import torch

from dreamlift.guidance import SDSConfig, sds_step
from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

from ..unit.guidance.tiny import SD21_BASE, build_sd_shaped

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def sd21(tmp_path_factory):
    folder = build_sd_shaped(tmp_path_factory.mktemp("sd21-shaped"), **SD21_BASE)
    return StableDiffusionGuidance(str(folder), device="cuda")


def _time_steps(backend, batch, steps=10, warmup=3):
    images = torch.rand(batch, 3, 512, 512, device="cuda", requires_grad=True)
    prompts = ["a red cat, front view"] * batch
    cfg = SDSConfig(guidance_scale=7.5)
    for _ in range(warmup):
        sds_step(backend, images, prompts, cfg).loss.backward()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        images.grad = None
        out = sds_step(backend, images, prompts, cfg)
        out.loss.backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps, images.grad, torch.cuda.max_memory_allocated() / 2**30


def test_sd21_shaped_loads_in_fp16_at_512(sd21):
    assert sd21.resolution == 512 and sd21.dtype == torch.float16
    assert sum(p.numel() for p in sd21.unet.parameters()) > 800e6  # SD 2.1's U-Net is 865M


@pytest.mark.parametrize("batch", [1, 4])
def test_sds_step_speed_and_fp16_health(sd21, batch):
    per_step, grad, peak_gib = _time_steps(sd21, batch)
    print(f"\nSD-2.1-base-shaped latent SDS, batch {batch} at 512px, fp16: {per_step * 1000:.0f} ms/step "
          f"(render gradient through the VAE encoder included), peak {peak_gib:.1f} GiB")
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert per_step < 0.5 * batch  # generous: an H100 does about an order of magnitude better
