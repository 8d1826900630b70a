"""Statistical tests of the forward process (DDPM eq. 2 and 4) and of x_T ~ N(0, I)."""

import math

import pytest
import torch

from dreamlift.diffusion import NoiseSchedule, q_mean_variance, q_sample, q_step

SCHEDULES = {"linear": NoiseSchedule.linear(1000), "cosine": NoiseSchedule.cosine(1000)}
N = 40_000  # samples; standard error of a mean ~ 0.005


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("t", [0, 49, 299, 999])
def test_iterated_one_step_matches_closed_form(kind, t):
    sched = SCHEDULES[kind]
    g = torch.Generator().manual_seed(t)
    x0 = torch.tensor([1.5, -0.7, 0.0], dtype=torch.float64).expand(N, 3)
    x = x0
    for i in range(t + 1):
        x = q_step(sched, x, i, torch.randn(x.shape, generator=g, dtype=torch.float64))
    mean, var = q_mean_variance(sched, x0[:1], t)
    se_mean = math.sqrt(float(var) / N)
    se_var = float(var) * math.sqrt(2.0 / N)
    assert (x.mean(0) - mean[0]).abs().max() < 5 * se_mean
    assert (x.var(0) - var).abs().max() < 5 * se_var


@pytest.mark.parametrize("kind", SCHEDULES)
def test_closed_form_sample_moments(kind):
    sched = SCHEDULES[kind]
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((N, 2), 0.8, dtype=torch.float64)
    for t in [10, 500]:
        x = q_sample(sched, x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64))
        abar = float(sched.alphas_cumprod[t])
        assert abs(float(x.mean()) - math.sqrt(abar) * 0.8) < 5 * math.sqrt((1 - abar) / x.numel())
        assert abs(float(x.var()) - (1 - abar)) < 5 * (1 - abar) * math.sqrt(2.0 / x.numel())


@pytest.mark.parametrize("kind", SCHEDULES)
def test_x_T_is_standard_normal(kind):
    """abar_T is so small that q(x_T | x_0) is within a tiny KL of N(0, I) for |x_0| <= 1."""
    sched = SCHEDULES[kind]
    abar_T = float(sched.alphas_cumprod[-1])
    assert abar_T < 1e-4
    # KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) per dimension, worst case |x0| = 1.
    kl = 0.5 * (abar_T + (1 - abar_T) - 1 - math.log(1 - abar_T))
    assert kl < 1e-4
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(N, 4, generator=g, dtype=torch.float64) * 2 - 1
    x_T = q_sample(sched, x0, sched.num_steps - 1, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    assert float(x_T.mean().abs()) < 5 / math.sqrt(x_T.numel())
    assert abs(float(x_T.var()) - 1) < 5 * math.sqrt(2.0 / x_T.numel())
    # correlation with x0 vanishes
    corr = float(((x_T - x_T.mean()) * (x0 - x0.mean())).mean() / (x_T.std() * x0.std()))
    assert abs(corr) < 0.02


def test_posterior_variance_is_beta_tilde():
    sched = SCHEDULES["linear"]
    b, ab = sched.betas, sched.alphas_cumprod
    t = 400
    expected = (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
    assert torch.isclose(sched.posterior_variance[t], expected)
    assert sched.posterior_variance[0] == 0
