"""The other distillation rules beside SDS: CSD's gradient is the guidance direction alone, and ISM's DDIM
inversion follows the probability-flow ODE (checked against the closed form for Gaussian data)."""

import math

import pytest
import torch

from dreamlift.diffusion import NoiseSchedule
from dreamlift.guidance.base import GuidanceBackend
from dreamlift.prior.model import SHIPPED_WEIGHTS
from dreamlift.guidance.sds import (SDSConfig, ism_intervals, perp_neg_direction, perp_neg_prompts, sample_timesteps,
                                     sds_guided, sds_step)


class FakeBackend(GuidanceBackend):
    """eps is +c for conditional prompts (c from the prompt), 0 for '' whatever the input."""

    name = "fake"

    def __init__(self):
        self.resolution, self.schedule, self.device = 8, NoiseSchedule.cosine(1000), torch.device("cpu")
        self.calls = 0

    def encode_text(self, prompts):
        return torch.tensor([0.0 if p == "" else 1.0 + len(p) % 3 for p in prompts])

    def encode_images(self, images):
        return images * 2 - 1

    def predict_eps(self, x_t, t, cond):
        self.calls += 1
        return cond[:, None, None, None] * torch.ones_like(x_t)


class GaussianData(GuidanceBackend):
    """The exact denoiser of data x0 ~ N(0, var I): eps*(x_t, t) = sqrt(1 - abar) x_t / (abar var + 1 - abar),
    the same for every condition (so guidance adds nothing)."""

    name = "gaussian"

    def __init__(self, var=0.25):
        self.resolution, self.schedule, self.device = 4, NoiseSchedule.linear(1000), torch.device("cpu")
        self.var, self.calls = var, []

    def encode_text(self, prompts):
        return torch.zeros(len(prompts))

    def encode_images(self, images):
        return images * 2 - 1

    def predict_eps(self, x_t, t, cond):
        self.calls.append(t.clone())
        a = self.schedule.alphas_cumprod[t].float()[:, None, None, None]
        return (1 - a).sqrt() * x_t / (a * self.var + 1 - a)


def test_csd_gradient_is_the_guidance_direction_only():
    backend = FakeBackend()
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    cfg = SDSConfig(guidance_scale=7.5)
    out = sds_step(backend, images, ["a red mug", "a mug"], cfg, generator=torch.Generator().manual_seed(0),
                   method="csd")
    out.loss.backward()
    t = sample_timesteps(cfg, 2, 1000, 0.0, torch.Generator().manual_seed(0))
    cond = backend.encode_text(["a red mug", "a mug"])
    w = 1 - backend.schedule.alphas_cumprod[t].float()
    expected = w[:, None, None, None] * 7.5 * (cond[:, None, None, None] - 0.0) * torch.ones(2, 3, 8, 8)
    assert torch.allclose(out.grad, expected, atol=1e-6)
    assert torch.allclose(images.grad, 2 * expected, atol=1e-5)
    # no noise term: another seed changes t (so w), never the direction
    other = sds_step(backend, images.detach(), ["a red mug", "a mug"], cfg, generator=torch.Generator().manual_seed(5),
                     method="csd")
    ratio = other.grad / out.grad
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-5)
    # SDS with the same draws differs by exactly w (eps_u - eps)
    sds = sds_step(backend, images.detach(), ["a red mug", "a mug"], cfg, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    sample_timesteps(cfg, 2, 1000, 0.0, g)
    eps = torch.randn(2, 3, 8, 8, generator=g)
    assert torch.allclose(sds.grad - out.grad, w[:, None, None, None] * (0.0 - eps), atol=1e-5)


def test_ism_intervals_walk_from_zero_to_s_then_t():
    t = torch.tensor([900, 130, 20])
    stops = ism_intervals(t, 1000, gap=0.05, stride=0.2)
    s = torch.tensor([850, 80, 0])
    assert stops.shape == (math.ceil(850 / 200) + 2, 3)  # K = 5 steps to s, then s -> t
    assert torch.equal(stops[0], torch.zeros(3, dtype=torch.long)) and torch.equal(stops[-2], s)
    assert torch.equal(stops[-1], t)
    assert bool((stops[1:] >= stops[:-1]).all())
    assert ism_intervals(torch.tensor([10]), 1000, 0.05, 0.2).tolist() == [[0], [0], [10]]  # s = 0: one step


def test_ism_inversion_follows_the_probability_flow_ode_of_gaussian_data():
    # For x0 ~ N(0, v), the probability-flow ODE carries x0 to x_t = x0 sqrt(abar_t v + 1 - abar_t) / sqrt(v)
    # (scaled from time 0, where abar_0 < 1). DDIM inversion with the exact eps is its Euler discretisation in
    # (x / sqrt(abar), sqrt(1 - abar) / sqrt(abar)): first order, so halving the stride halves the error.
    from dreamlift.guidance.sds import _ism_forward

    backend = GaussianData(var=0.25)
    x0 = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    abar = backend.schedule.alphas_cumprod.float()

    def flow(i):
        return x0 * ((abar[i] * 0.25 + 1 - abar[i]) / (abar[0] * 0.25 + 1 - abar[0])).sqrt()

    t = torch.tensor([651])
    errors = []
    for stride in (0.004, 0.002, 0.001):
        x_t, eps_s = _ism_forward(backend, x0, t, torch.zeros(1), SDSConfig(ism_gap=0.001, ism_stride=stride))
        errors.append(float((x_t - flow(650)).abs().max() / flow(650).abs().max()))
        # the target is the exact eps at the last stop before t (s = 650) of the walk
        x_s = abar[650].sqrt() * (x_t - (1 - abar[651]).sqrt() * eps_s) / abar[651].sqrt() + (1 - abar[650]).sqrt() * eps_s
        assert torch.allclose(eps_s, (1 - abar[650]).sqrt() * x_s / (abar[650] * 0.25 + 1 - abar[650]), atol=1e-5)
    assert errors[-1] < 0.004
    assert 1.7 < errors[0] / errors[1] < 2.3 and 1.7 < errors[1] / errors[2] < 2.3


def test_ism_gradient_and_its_calls():
    backend = GaussianData(var=0.25)
    images = torch.rand(1, 3, 4, 4)
    cfg = SDSConfig(guidance_scale=1.0, t_min=0.6, t_max=0.61, t_max_final=None, ism_gap=0.05, ism_stride=0.2)
    seen = []
    real = backend.predict_eps
    backend.predict_eps = lambda x, t, c: (seen.append(x.clone()), real(x, t, c))[1]
    out = sds_step(backend, images, ["x"], cfg, generator=torch.Generator().manual_seed(0), method="ism")
    t, abar = int(out.t[0]), backend.schedule.alphas_cumprod.float()
    s = t - 50
    # calls: K = ceil(s / 200) inversion steps 0 -> s, one at s, then the guided 2B call at t
    k = math.ceil(s / 200)
    assert len(backend.calls) == k + 2
    assert int(backend.calls[0][0]) == 0 and int(backend.calls[-2][0]) == s and backend.calls[-1].tolist() == [t, t]
    assert torch.equal(seen[0], images * 2 - 1)  # the walk starts at the clean image
    x_s, x_t = seen[-2], seen[-1][:1]
    eps_s = (1 - abar[s]).sqrt() * x_s / (abar[s] * 0.25 + 1 - abar[s])
    # the last DDIM step s -> t, and the gradient w(t) (eps^(x_t) - eps_u(x_s, s))
    assert torch.allclose(x_t, abar[t].sqrt() * (x_s - (1 - abar[s]).sqrt() * eps_s) / abar[s].sqrt()
                          + (1 - abar[t]).sqrt() * eps_s, atol=1e-5)
    eps_hat = (1 - abar[t]).sqrt() * x_t / (abar[t] * 0.25 + 1 - abar[t])
    assert torch.allclose(out.grad, (1 - abar[t]) * (eps_hat - eps_s), atol=1e-6)


def test_ism_with_a_constant_prediction_is_exact_in_any_number_of_steps():
    # eps_u = 0 everywhere (FakeBackend's unconditional prompt): x0_hat is x0 / sqrt(abar_0) at every step, so
    # x_t = sqrt(abar_t / abar_0) x0 and the target is 0, whatever the stride.
    backend = FakeBackend()
    images = torch.rand(1, 3, 8, 8)
    grads = []
    for stride in (1.0, 0.2, 0.01):
        cfg = SDSConfig(guidance_scale=3.0, ism_stride=stride)
        out = sds_step(backend, images, ["a mug"], cfg, generator=torch.Generator().manual_seed(1), method="ism")
        w = 1 - backend.schedule.alphas_cumprod[out.t].float()
        c = float(backend.encode_text(["a mug"])[0])
        assert torch.allclose(out.grad, w[:, None, None, None] * 3.0 * c * torch.ones_like(out.grad), atol=1e-6)
        grads.append(out.grad)
    assert torch.allclose(grads[0], grads[2])


def test_an_unknown_method_is_refused():
    from dreamlift.config import DreamliftError

    with pytest.raises(DreamliftError, match="unknown distillation method"):
        sds_guided(FakeBackend(), torch.rand(1, 3, 8, 8), lambda: torch.zeros(2), SDSConfig(), method="dds")


def test_generate_config_picks_the_objective_object():
    from dreamlift.generate import GenerateConfig
    from dreamlift.guidance.objectives import CSDObjective, ISMObjective, SDSObjective, make_objective

    backend = FakeBackend()
    for name, cls in (("sds", SDSObjective), ("csd", CSDObjective), ("ism", ISMObjective)):
        obj = make_objective(GenerateConfig(prompt="a red mug", objective=name), backend)
        assert type(obj) is cls and obj.method == name


class PatternBackend(GuidanceBackend):
    """eps is a fixed random image per prompt (so the directions of two prompts are not parallel)."""

    name = "pattern"

    def __init__(self):
        self.resolution, self.schedule, self.device = 8, NoiseSchedule.cosine(1000), torch.device("cpu")
        self.batches = []

    def encode_text(self, prompts):
        return list(prompts)

    def encode_images(self, images):
        return images * 2 - 1

    def predict_eps(self, x_t, t, cond):
        self.batches.append(len(cond))
        return torch.stack([self.pattern(p) for p in cond])

    @staticmethod
    def pattern(text):
        return torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(sum(map(ord, text)) * 7 + len(text)))


def test_perp_neg_direction_removes_only_the_perpendicular_part_of_the_negative():
    import numpy as np

    rng = np.random.default_rng(0)
    d, n = rng.normal(size=(2, 12)), rng.normal(size=(2, 12))
    w = np.array([0.5, 2.0])
    got = perp_neg_direction(torch.tensor(d).view(2, 3, 4), torch.tensor(n).view(2, 3, 4), torch.tensor(w))
    for i in range(2):
        perp = n[i] - (n[i] @ d[i]) / (d[i] @ d[i]) * d[i]
        assert abs(perp @ d[i]) < 1e-9
        np.testing.assert_allclose(got[i].flatten().numpy(), d[i] - w[i] * perp, atol=1e-12)
    # a negative along the positive direction changes nothing; weight 0 changes nothing
    same = perp_neg_direction(torch.tensor(d), torch.tensor(3 * d), torch.tensor(w))
    np.testing.assert_allclose(same.numpy(), d, atol=1e-12)
    np.testing.assert_allclose(perp_neg_direction(torch.tensor(d), torch.tensor(n), torch.zeros(2)).numpy(), d)


def test_perp_neg_prompts_take_the_opposite_view():
    texts, weights = perp_neg_prompts("a red mug", torch.tensor([0.0, 180.0, 90.0, 0.0]),
                                      torch.tensor([10.0, 10.0, 10.0, 80.0]), 2.0)
    assert texts[:3] == ["a red mug, back view", "a red mug, front view", "a red mug, front view"]
    assert weights.tolist() == [2.0, 2.0, 2.0, 0.0]  # overhead: no negative


def test_sds_with_perp_neg_uses_the_perpendicular_direction():
    backend = PatternBackend()
    images = torch.rand(2, 3, 8, 8)
    cfg = SDSConfig(guidance_scale=5.0, perp_neg=1.5)
    prompts = ["a mug, front view", "a mug, side view"]
    negatives = (["a mug, back view", "a mug, front view"], torch.tensor([1.5, 1.5]))
    out = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(0), negatives=negatives)
    assert backend.batches == [6]  # one call: B conditional, B unconditional, B negatives
    u = backend.pattern("")
    for i in range(2):
        d = (backend.pattern(prompts[i]) - u).flatten()
        n = (backend.pattern(negatives[0][i]) - u).flatten()
        d2 = d - 1.5 * (n - (n @ d) / (d @ d) * d)
        assert torch.allclose(out.eps_hat[i].flatten(), u.flatten() + 5.0 * d2, atol=1e-5)
    plain = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(0))
    zero = sds_step(backend, images, prompts, cfg, generator=torch.Generator().manual_seed(0),
                    negatives=(negatives[0], torch.zeros(2)))
    assert torch.allclose(plain.grad, zero.grad, atol=1e-6) and not torch.allclose(plain.grad, out.grad)


def test_perp_neg_needs_view_prompts():
    from dreamlift.config import DreamliftError

    with pytest.raises(DreamliftError, match="view prompts"):
        SDSConfig(perp_neg=1.0, view_prompts=False).validate()


def test_vsd_gradient_takes_the_fitted_denoisers_eps_as_target():
    from dreamlift.diffusion import q_sample

    backend = FakeBackend()
    images = torch.rand(1, 3, 8, 8)
    cfg = SDSConfig(guidance_scale=4.0)
    seen = {}

    def phi(x_t, t, cond):
        seen.update(x_t=x_t, t=t, cond=cond)
        return 0.5 * x_t

    out = sds_step(backend, images, ["a mug"], cfg, generator=torch.Generator().manual_seed(3), method="vsd",
                   score_model=phi)
    g = torch.Generator().manual_seed(3)
    t = sample_timesteps(cfg, 1, 1000, 0.0, g)
    eps = torch.randn(1, 3, 8, 8, generator=g)
    x_t = q_sample(backend.schedule, images * 2 - 1, t, eps)
    assert torch.allclose(seen["x_t"], x_t) and torch.equal(seen["t"], t)
    assert torch.equal(seen["cond"], backend.encode_text(["a mug"]))  # the conditional half only
    w = 1 - backend.schedule.alphas_cumprod[t].float()
    c = float(backend.encode_text(["a mug"])[0])
    assert torch.allclose(out.grad, w * (4.0 * c - 0.5 * x_t), atol=1e-6)
    with pytest.raises(Exception, match="fitted denoiser"):
        sds_step(backend, images, ["a mug"], cfg, method="vsd")


@pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")
def test_vsd_objective_starts_as_the_prior_and_fits_a_copy_to_the_renders():
    from types import SimpleNamespace

    from dreamlift.config import DreamliftError
    from dreamlift.generate import GenerateConfig
    from dreamlift.guidance.builtin import BuiltinGuidance
    from dreamlift.guidance.objectives import VSDObjective

    backend = BuiltinGuidance()
    cfg = GenerateConfig(prompt="a red mug", objective="vsd", area_weight=0).resolved()
    obj = VSDObjective(cfg, backend)
    before = {k: v.clone() for k, v in backend.prior.model.state_dict().items()}
    rgb = torch.rand(1, 3, 64, 64)
    cams = SimpleNamespace(azimuth_deg=torch.tensor([10.0]), elevation_deg=torch.tensor([15.0]))
    out = SimpleNamespace(rgb=rgb, opacity=torch.ones(1, 64, 64))
    loss, record = obj.loss(out, cams, None, "albedo", 0.0, torch.Generator().manual_seed(0))
    # at the first step the copy is the prior: the target is the prior's conditional eps, so the gradient is
    # w(t) (s - 1) (eps_c - eps_u), classifier-free guidance's direction (CSD's, scaled by (s - 1) / s)
    csd = VSDObjective.__mro__[1]  # SDSObjective, run as CSD for the same draws
    plain = csd(cfg, backend)
    plain.method = "csd"
    _, rec2 = plain.loss(out, cams, None, "albedo", 0.0, torch.Generator().manual_seed(0))
    s = cfg.sds.guidance_scale
    assert float(record["sds"]) == pytest.approx(float(rec2["sds"]) * ((s - 1) / s) ** 2, rel=1e-4)
    assert record["vsd_fit"] > 0
    # the copy moved; the shipped prior did not
    assert any(not torch.equal(before[k], v) for k, v in obj.phi.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in backend.prior.model.state_dict().items())
    state = obj.state()["vsd"]
    other = VSDObjective(cfg, backend)
    other.load({"vsd": state})
    assert all(torch.equal(v, other.phi.state_dict()[k]) for k, v in obj.phi.state_dict().items())
    with pytest.raises(DreamliftError, match="built-in prior"):
        VSDObjective(cfg, FakeBackend())
