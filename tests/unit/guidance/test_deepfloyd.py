"""The DeepFloyd IF backend on a tiny random IF stage-I folder (tiny.py): 3 -> 6 channel U-Net,
sample_size 8, T5 encoder; loaded through the backend's real loading code."""

import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dreamlift.config import DreamliftError
from dreamlift.guidance import SDSConfig, sds_step
from dreamlift.guidance.deepfloyd import IF_MAX_TOKENS, DeepFloydGuidance

from .tiny import HIDDEN

PROMPTS = ["a red cat, front view", "a blue chair, back view"]


def _images(n=2, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g).requires_grad_()


def _gen(seed=3):
    return torch.Generator().manual_seed(seed)


def test_loads_frozen_pixel_space(deepfloyd):
    assert deepfloyd.name == "deepfloyd-if"
    assert deepfloyd.resolution == 8 and deepfloyd.channels == 3  # the U-Net's sample_size
    assert deepfloyd.unet.config.out_channels == 6
    assert deepfloyd.dtype == torch.float32 and deepfloyd.prediction == "eps"
    for module in (deepfloyd.unet, deepfloyd.text_encoder):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def test_schedule_equals_diffusers(deepfloyd, if_folder):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler.from_pretrained(str(if_folder / "scheduler")).alphas_cumprod  # squaredcos_cap_v2
    torch.testing.assert_close(deepfloyd.schedule.alphas_cumprod, ref.double(), rtol=1e-5, atol=1e-6)


def test_encode_images_maps_to_minus_one_one_and_resizes(deepfloyd):
    images = _images(2, 8)
    x0 = deepfloyd.encode_images(images)
    assert x0.shape == (2, 3, 8, 8)
    torch.testing.assert_close(x0, images.detach() * 2 - 1)
    big = _images(2, 32, seed=1)
    expected = F.interpolate(big.detach(), size=(8, 8), mode="bilinear", align_corners=False) * 2 - 1
    torch.testing.assert_close(deepfloyd.encode_images(big), expected)
    deepfloyd.encode_images(big).sum().backward()
    assert big.grad is not None and big.grad.abs().sum() > 0


def test_text_is_t5_padded_to_77_cached_and_preprocessed(deepfloyd):
    emb = deepfloyd.encode_text(["a red cat", ""])
    assert emb.shape == (2, IF_MAX_TOKENS, HIDDEN) and not emb.requires_grad
    assert not torch.allclose(emb[0], emb[1])
    torch.testing.assert_close(deepfloyd.encode_text(["  A Red CAT "])[0], emb[0])  # lower-cased, stripped
    ids = deepfloyd.tokenizer(["a red cat"], padding="max_length", max_length=IF_MAX_TOKENS)["input_ids"][0]
    assert len(ids) == IF_MAX_TOKENS and ids[3] == deepfloyd.tokenizer.eos_token_id  # a, red, cat, </s>, pads


def test_predict_eps_takes_the_first_three_of_six_channels(deepfloyd, monkeypatch):
    x_t, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 800])
    cond = deepfloyd.encode_text(PROMPTS)
    full = deepfloyd.unet(x_t, t, encoder_hidden_states=cond).sample
    assert full.shape == (2, 6, 8, 8)
    torch.testing.assert_close(deepfloyd.predict_eps(x_t, t, cond), full[:, :3])

    eps = torch.randn(2, 3, 8, 8)
    variance = torch.full((2, 3, 8, 8), 100.0)
    monkeypatch.setattr(deepfloyd, "unet", lambda x, t, encoder_hidden_states: SimpleNamespace(
        sample=torch.cat([eps, variance], dim=1)))
    assert torch.equal(deepfloyd.predict_eps(x_t, t, cond), eps)


def test_predict_eps_builds_no_graph(deepfloyd):
    x_t = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = deepfloyd.predict_eps(x_t, torch.tensor([1, 2]), deepfloyd.encode_text(PROMPTS))
    assert not out.requires_grad and out.grad_fn is None


def test_sds_gradient_skips_the_unet_and_is_exact(deepfloyd):
    fired = []
    unet = deepfloyd.unet
    handles = [m.register_full_backward_hook(lambda *a: fired.append(1)) for m in (unet.conv_in, unet.conv_out)]
    try:
        images = _images(2, 8)
        out = sds_step(deepfloyd, images, PROMPTS, SDSConfig(guidance_scale=20.0), generator=_gen())
        out.loss.backward()
    finally:
        for h in handles:
            h.remove()
    assert not fired
    assert all(p.grad is None for p in unet.parameters())
    assert out.grad.shape == (2, 3, 8, 8)
    torch.testing.assert_close(images.grad, 2 * out.grad)  # x0 = 2 image - 1 at the model resolution


def test_negative_prompt_changes_the_gradient(deepfloyd):
    images = _images(2, 8)
    a = sds_step(deepfloyd, images, PROMPTS, SDSConfig(), generator=_gen())
    b = sds_step(deepfloyd, images, PROMPTS, SDSConfig(negative_prompt="low quality"), generator=_gen())
    assert torch.equal(a.t, b.t) and not torch.allclose(a.grad, b.grad)


def test_check_prompt(deepfloyd):
    deepfloyd.check_prompt("a red cat")
    with pytest.raises(DreamliftError, match="empty"):
        deepfloyd.check_prompt("")
    with pytest.raises(DreamliftError, match="too long"):
        deepfloyd.check_prompt(" ".join(["a red cat"] * 30))  # > 77 T5 tokens


def test_folder_without_unet_is_a_clear_error(if_folder, tmp_path):
    broken = tmp_path / "no-unet"
    shutil.copytree(if_folder, broken, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(DreamliftError) as e:
        DeepFloydGuidance(str(broken))
    msg = str(e.value)
    assert "\n" not in msg and "missing unet/" in msg and "unet/ text_encoder/ tokenizer/ scheduler/" in msg


def test_missing_folder_and_uncached_id_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("DREAMLIFT_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(DreamliftError, match="does not exist"):
        DeepFloydGuidance(str(tmp_path / "nothing-here"))
    with pytest.raises(DreamliftError) as e:
        DeepFloydGuidance("dreamlift-tests/no-such-if-model")
    msg = str(e.value)
    assert "\n" not in msg and "not in the local Hugging Face cache" in msg and "license" in msg


def test_an_sd_folder_is_not_an_if_model(sd_folder):
    with pytest.raises(DreamliftError, match="text_encoder/ holds a 'clip_text_model' model, not 't5'"):
        DeepFloydGuidance(str(sd_folder))  # has every IF subfolder, but CLIP text and a latent U-Net
