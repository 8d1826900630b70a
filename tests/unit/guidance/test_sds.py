"""SDS: the gradient that reaches the image is w(t)(eps_hat - eps), and the denoiser never sees a backward pass."""

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.diffusion import NoiseSchedule
from dreamlift.guidance.base import GuidanceBackend
from dreamlift.guidance.sds import SDSConfig, sample_timesteps, sds_step, sds_weights, view_prompts
from dreamlift.prior.model import SHIPPED_WEIGHTS


class FakeBackend(GuidanceBackend):
    """eps_hat is a known function of the prompt: +c for conditional prompts, 0 for ''."""

    name = "fake"

    def __init__(self, res=8):
        self.resolution, self.schedule, self.device = res, NoiseSchedule.cosine(1000), torch.device("cpu")
        self.calls = []

    def encode_text(self, prompts):
        return torch.tensor([0.0 if p == "" else 1.0 + len(p) % 3 for p in prompts])

    def encode_images(self, images):
        return images * 2 - 1

    def predict_eps(self, x_t, t, cond):
        self.calls.append((x_t.requires_grad, torch.is_grad_enabled()))
        return cond[:, None, None, None] * torch.ones_like(x_t)


def test_cfg_convention_and_gradient_equal_w_times_residual():
    backend = FakeBackend()
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    cfg = SDSConfig(guidance_scale=7.5)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = sds_step(backend, images, ["a red mug", "a mug"], cfg, generator=g1)
    out.loss.backward()
    # replay the same draws: t first, then eps
    t = sample_timesteps(cfg, 2, 1000, 0.0, g2)
    eps = torch.randn(2, 3, 8, 8, generator=g2)
    cond = backend.encode_text(["a red mug", "a mug"])
    eps_hat = 0.0 + 7.5 * (cond[:, None, None, None] - 0.0)  # uncond + s (cond - uncond), uncond = 0
    w = 1 - backend.schedule.alphas_cumprod[t].float()
    expected = w[:, None, None, None] * (eps_hat - eps)
    assert torch.equal(out.t, t)
    assert torch.allclose(out.grad, expected, atol=1e-6)
    assert torch.allclose(images.grad, 2 * expected, atol=1e-5)  # d x0 / d image = 2
    assert backend.calls == [(False, False)]  # the denoiser ran once (2B batch), without autograd


def test_negative_prompt_replaces_the_unconditional_prompt():
    backend = FakeBackend()
    img = torch.rand(1, 3, 8, 8)
    a = sds_step(backend, img, ["x"], SDSConfig(guidance_scale=3), generator=torch.Generator().manual_seed(0))
    b = sds_step(backend, img, ["x"], SDSConfig(guidance_scale=3, negative_prompt="blurry"),
                 generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a.eps_hat, b.eps_hat)


@pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")
def test_builtin_prior_gets_no_backward_pass():
    from dreamlift.guidance.builtin import BuiltinGuidance

    backend = BuiltinGuidance()
    unet = backend.prior.model
    fired = []
    unet.register_full_backward_hook(lambda *a: fired.append(1))
    for p in unet.parameters():
        p.requires_grad_(True)  # even if the weights were trainable, SDS must not backpropagate into them
    images = torch.rand(2, 3, 64, 64, requires_grad=True)  # rendered at 2x: area-averaged to 32
    out = sds_step(backend, images, ["a red mug, front view", "a red mug, back view"],
                   SDSConfig(guidance_scale=20), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert not fired and all(p.grad is None for p in unet.parameters())
    # the image gradient is the SDS gradient pulled back through the 2x area average and the [-1, 1] map
    expected = 2 * torch.nn.functional.interpolate(out.grad, scale_factor=2, mode="nearest") / 4
    assert torch.allclose(images.grad, expected, atol=1e-5)


def test_timesteps_stay_in_range_and_anneal():
    cfg = SDSConfig(t_min=0.02, t_max=0.98, t_max_final=0.5)
    g = torch.Generator().manual_seed(0)
    early = sample_timesteps(cfg, 4000, 1000, 0.0, g)
    late = sample_timesteps(cfg, 4000, 1000, 1.0, g)
    assert early.min() >= 20 and early.max() <= 979 and early.max() > 950
    assert late.min() >= 20 and late.max() <= 499
    assert abs(early.float().mean().item() - 500) < 15


def test_weights_and_view_prompts():
    backend = FakeBackend()
    t = torch.tensor([0, 500, 999])
    assert torch.allclose(sds_weights(backend, t, "sigma2"), (1 - backend.schedule.alphas_cumprod[t]).float())
    assert torch.equal(sds_weights(backend, t, "uniform"), torch.ones(3))
    words = view_prompts("a car", torch.tensor([0.0, 90.0, 180.0, -100.0, 30.0]),
                         torch.tensor([10.0, 10.0, 10.0, 0.0, 80.0]))
    assert words == ["a car, front view", "a car, side view", "a car, back view", "a car, side view",
                     "a car, overhead view"]


def test_bad_settings():
    with pytest.raises(DreamliftError):
        SDSConfig(t_min=0.5, t_max=0.4).validate()
    with pytest.raises(DreamliftError):
        SDSConfig(guidance_scale=-1).validate()
    nan_backend = FakeBackend()
    nan_backend.predict_eps = lambda x_t, t, cond: torch.full_like(x_t, float("nan"))
    out = sds_step(nan_backend, torch.rand(1, 3, 8, 8), ["x"], SDSConfig())  # counted; the run stops on it
    assert out.nonfinite == 3 * 8 * 8 and not torch.isfinite(out.loss)
