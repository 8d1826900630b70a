"""The Stable Diffusion backend on a tiny random SD folder loaded through its real loading code.

The folder (tiny.py) has a 2-level VAE (vae_scale_factor 2) and a U-Net of sample_size 8,
so the backend's resolution is 16 and its latents are (B, 4, 8, 8).
"""

import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dreamlift.config import DreamliftError
from dreamlift.diffusion import cfg_combine, q_sample
from dreamlift.guidance import SDSConfig, sample_timesteps, sds_step, sds_weights
from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

from .tiny import CLIP_MAX_TOKENS, HIDDEN

PROMPTS = ["a red cat, front view", "a blue chair, side view"]


def _images(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g).requires_grad_()


def _gen(seed=3):
    return torch.Generator().manual_seed(seed)


def test_loads_frozen_with_latent_resolution(sd):
    assert sd.name == "stable-diffusion"
    assert sd.vae_scale_factor == 2 and sd.resolution == 2 * 8
    assert sd.dtype == torch.float32 and sd.device == torch.device("cpu")  # fp32 on CPU by default
    assert sd.prediction == "eps" and sd.max_tokens == CLIP_MAX_TOKENS
    for module in (sd.unet, sd.vae, sd.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def test_schedule_equals_diffusers(sd, sd_folder):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler.from_pretrained(str(sd_folder / "scheduler")).alphas_cumprod
    assert sd.schedule.num_steps == ref.numel() == 1000
    torch.testing.assert_close(sd.schedule.alphas_cumprod, ref.double(), rtol=1e-5, atol=1e-6)


def test_encode_images_shape_determinism_and_resize(sd):
    images = _images(2, 16)
    x0 = sd.encode_images(images)
    assert x0.shape == (2, 4, 8, 8) and x0.dtype == torch.float32
    assert torch.equal(x0, sd.encode_images(images))  # the latent mean, not a sample
    big = _images(2, 32, seed=1)
    resized = F.interpolate(big.detach(), size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(sd.encode_images(big), sd.encode_images(resized))
    with pytest.raises(ValueError):
        sd.encode_images(torch.rand(2, 4, 16, 16))


def test_encode_images_is_differentiable(sd):
    images = _images(2, 32)  # through the resize and the VAE encoder
    sd.encode_images(images).square().sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in sd.vae.parameters())


def test_encode_text_shape_cache_and_negative_differs(sd):
    calls = []
    handle = sd.text_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        emb = sd.encode_text(["a red mug", "blurry, low quality", "a red mug"])
        assert emb.shape == (3, CLIP_MAX_TOKENS, HIDDEN)
        assert calls == [2]  # two distinct prompts, one batch
        again = sd.encode_text(["blurry, low quality", "a red mug"])
        assert calls == [2]  # cached
        assert torch.equal(again[0], emb[1]) and torch.equal(again[1], emb[0])
    finally:
        handle.remove()
    assert not torch.allclose(emb[0], emb[1])  # conditional vs negative
    uncond = sd.encode_text([""])
    assert not torch.allclose(emb[0], uncond[0])
    assert not emb.requires_grad


def test_predict_eps_builds_no_graph(sd):
    x_t = torch.randn(2, 4, 8, 8, requires_grad=True)
    eps = sd.predict_eps(x_t, torch.tensor([10, 900]), sd.encode_text(PROMPTS))
    assert eps.shape == (2, 4, 8, 8) and torch.isfinite(eps).all()
    assert not eps.requires_grad and eps.grad_fn is None


def _backward_probe(unet):
    """Full backward hooks on the U-Net's first and last layers (its own output is not a tensor, so a
    hook on the U-Net itself would never fire); returns (fired list, remove)."""
    fired = []
    handles = [m.register_full_backward_hook(lambda *a: fired.append(1)) for m in (unet.conv_in, unet.conv_out)]
    return fired, lambda: [h.remove() for h in handles]


def test_backward_probe_fires_when_the_graph_goes_through_the_unet(sd):
    fired, remove = _backward_probe(sd.unet)
    try:
        x = torch.randn(1, 4, 8, 8, requires_grad=True)
        sd.unet(x, torch.tensor([5]), encoder_hidden_states=sd.encode_text(["a cat"])).sample.sum().backward()
    finally:
        remove()
    assert len(fired) == 2  # the control for the test below


def test_sds_gradient_skips_the_unet(sd):
    fired, remove = _backward_probe(sd.unet)
    outputs = []
    h = sd.unet.register_forward_hook(lambda m, i, o: outputs.append(o.sample))
    try:
        images = _images(2, 16)
        out = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=7.5), generator=_gen())
        out.loss.backward()
    finally:
        h.remove()
        remove()
    assert len(outputs) == 1 and outputs[0].shape[0] == 4  # one batched call: cond + uncond
    assert not outputs[0].requires_grad
    assert not fired
    for module in (sd.unet, sd.text_encoder, sd.vae):
        assert all(p.grad is None for p in module.parameters())
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_latent_gradient_is_w_times_eps_hat_minus_eps(sd, monkeypatch):
    """With a leaf latent tensor as x0, d loss / d x0 = w(t) (eps^ - eps), recomputed here independently."""
    cfg = SDSConfig(guidance_scale=7.5, negative_prompt="blurry")
    images = _images(2, 16)
    latents = sd.encode_images(images).detach().requires_grad_()
    monkeypatch.setattr(sd, "encode_images", lambda imgs: latents)
    out = sds_step(sd, images, PROMPTS, cfg, generator=_gen(5))
    out.loss.backward()
    torch.testing.assert_close(latents.grad, out.grad)

    g = _gen(5)  # replay the same draws: t first, then eps
    t = sample_timesteps(cfg, 2, sd.schedule.num_steps, 0.0, g)
    eps = torch.randn(latents.shape, generator=g)
    assert torch.equal(t, out.t)
    x_t = q_sample(sd.schedule, latents.detach(), t, eps)
    e_c = sd.predict_eps(x_t, t, sd.encode_text(PROMPTS))
    e_u = sd.predict_eps(x_t, t, sd.encode_text(["blurry"] * 2))
    w = sds_weights(sd, t, "sigma2")[:, None, None, None]
    expected = w * (cfg_combine(e_u, e_c, 7.5) - eps)
    torch.testing.assert_close(latents.grad, expected, rtol=1e-4, atol=1e-5)


def test_image_gradient_is_the_vae_encoder_vjp_of_the_sds_gradient(sd):
    images = _images(2, 16)
    out = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=7.5), generator=_gen(7))
    out.loss.backward()
    fresh = images.detach().requires_grad_()
    (expected,) = torch.autograd.grad(sd.encode_images(fresh), fresh, out.grad)
    torch.testing.assert_close(images.grad, expected)


def test_negative_prompt_changes_the_gradient(sd):
    images = _images(2, 16)
    a = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=7.5), generator=_gen())
    b = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=7.5, negative_prompt="ugly, blurry"), generator=_gen())
    assert torch.equal(a.t, b.t)
    assert not torch.allclose(a.grad, b.grad)
    # With s = 1 the guided prediction is the conditional one: the negative prompt drops out.
    c = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=1.0), generator=_gen())
    d = sds_step(sd, images, PROMPTS, SDSConfig(guidance_scale=1.0, negative_prompt="ugly, blurry"), generator=_gen())
    torch.testing.assert_close(c.grad, d.grad)


def test_v_prediction_is_converted_to_eps(sd_v_folder, monkeypatch):
    from diffusers import DDPMScheduler

    backend = StableDiffusionGuidance(str(sd_v_folder))
    assert backend.prediction == "v"
    sched = DDPMScheduler.from_pretrained(str(sd_v_folder / "scheduler"))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 400, 999])
    x_t = sched.add_noise(x0, eps, t)
    v = sched.get_velocity(x0, eps, t)  # diffusers' v = sqrt(abar) eps - sqrt(1 - abar) x0

    def true_v(sample, timestep, encoder_hidden_states):
        assert torch.equal(sample, x_t) and torch.equal(timestep, t)
        return SimpleNamespace(sample=v)

    monkeypatch.setattr(backend, "unet", true_v)
    got = backend.predict_eps(x_t, t, backend.encode_text(["a cat"] * 3))
    torch.testing.assert_close(got, eps, rtol=1e-4, atol=1e-4)


def test_eps_prediction_is_passed_through(sd, monkeypatch):
    out = torch.randn(2, 4, 8, 8)
    monkeypatch.setattr(sd, "unet", lambda x, t, encoder_hidden_states: SimpleNamespace(sample=out))
    assert torch.equal(sd.predict_eps(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), sd.encode_text(PROMPTS)), out)


def test_decode_gives_images_in_unit_range(sd):
    x = sd.decode(sd.encode_images(_images(2, 16)))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


def test_check_prompt(sd):
    sd.check_prompt("a red cat")
    with pytest.raises(DreamliftError, match="empty"):
        sd.check_prompt("  ")
    with pytest.raises(DreamliftError, match="too long"):
        sd.check_prompt(" ".join(["a red cat"] * 5))  # > 16 CLIP tokens


def _one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance(str(tmp_path / "no-such-model"))
    msg = _one_line(e)
    assert "does not exist" in msg and "unet/ vae/ text_encoder/ tokenizer/ scheduler/" in msg


def test_folder_without_unet_is_a_clear_error(sd_folder, tmp_path):
    broken = tmp_path / "no-unet"
    shutil.copytree(sd_folder, broken, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance(str(broken))
    assert "missing unet/" in _one_line(e)


def test_unreadable_component_is_a_clear_error(sd_folder, tmp_path):
    broken = tmp_path / "empty-unet"
    shutil.copytree(sd_folder, broken)
    for f in (broken / "unet").iterdir():
        f.unlink()
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance(str(broken))
    msg = _one_line(e)
    assert "cannot load Stable Diffusion model" in msg and "unet/" in msg


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_incomplete_weights_are_refused(sd_folder, tmp_path, component):
    """diffusers and transformers only warn about missing keys (and initialise them at random): refuse them."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / f"partial-{component}"
    shutil.copytree(sd_folder, broken)
    (weights,) = (broken / component).glob("*.safetensors")
    state = load_file(str(weights))
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance(str(broken))
    msg = _one_line(e)
    assert f"{component}/ does not hold complete" in msg and "1 missing" in msg


def test_wrong_text_encoder_family_is_refused(sd_folder, if_folder, tmp_path):
    mixed = tmp_path / "t5-in-sd"
    shutil.copytree(sd_folder, mixed, ignore=shutil.ignore_patterns("text_encoder"))
    shutil.copytree(if_folder / "text_encoder", mixed / "text_encoder")
    with pytest.raises(DreamliftError, match="text_encoder/ holds a 't5' model, not 'clip_text_model'"):
        StableDiffusionGuidance(str(mixed))


def test_a_file_is_not_a_model(tmp_path):
    f = tmp_path / "model.ckpt"
    f.write_bytes(b"")
    with pytest.raises(DreamliftError, match="not a folder"):
        StableDiffusionGuidance(str(f))


def test_uncached_hub_id_fails_offline(monkeypatch):
    monkeypatch.delenv("DREAMLIFT_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance("dreamlift-tests/no-such-model-7f3a")
    msg = _one_line(e)
    assert "offline" in msg and "not in the local Hugging Face cache" in msg
    assert "download dreamlift-tests/no-such-model-7f3a" in msg  # hf download / huggingface-cli download


def test_loader_failures_for_a_hub_id_are_wrapped(monkeypatch):
    """Past the cache check (as if the id were cached), the loaders' own errors become one DreamliftError line."""
    from dreamlift.guidance import _hub

    monkeypatch.delenv("DREAMLIFT_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setattr(_hub, "_in_hub_cache", lambda repo, filename: True)
    with pytest.raises(DreamliftError) as e:
        StableDiffusionGuidance("dreamlift-tests/no-such-model-7f3a")
    msg = _one_line(e)
    assert msg.startswith("cannot load Stable Diffusion model 'dreamlift-tests/no-such-model-7f3a' offline: scheduler/")


def test_encode_images_equals_diffusers_own_encode(sd):
    """encode_images calls the VAE's encoder itself (so it can be compiled): the latents are diffusers' own
    ``vae.encode(x).latent_dist.mean``, scaled."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    want = sd.vae.encode(images * 2 - 1).latent_dist.mean * sd.scaling_factor
    assert torch.equal(sd.encode_images(images), want)


@pytest.mark.slow
def test_a_compiled_backend_gives_the_eager_backends_latents_gradients_and_noise(sd_folder):
    """--compile: the U-Net and the VAE encoder through torch.compile (on this CPU: inductor's C++ kernels) give
    the eager modules' outputs and the same gradient to the render."""
    from dreamlift.guidance.stable_diffusion import StableDiffusionGuidance

    eager = StableDiffusionGuidance(str(sd_folder))
    fast = StableDiffusionGuidance(str(sd_folder), compile=True)
    g = torch.Generator().manual_seed(4)
    images = torch.rand(1, 3, 16, 16, generator=g)
    grads, latents = [], []
    for backend in (eager, fast):
        x = images.clone().requires_grad_(True)
        z = backend.encode_images(x)
        (z * torch.linspace(-1, 1, z.numel()).reshape(z.shape)).sum().backward()
        latents.append(z.detach())
        grads.append(x.grad)
    assert fast._encoder.compiled and fast._unet.compiled
    torch.testing.assert_close(latents[1], latents[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)
    x_t = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 900])
    cond = eager.encode_text(["a red mug, front view", ""])
    torch.testing.assert_close(fast.predict_eps(x_t, t, cond), eager.predict_eps(x_t, t, cond), atol=1e-4, rtol=1e-4)
