"""Samplers driven by the exact denoiser of Gaussian data reproduce that data."""

import math

import pytest
import torch

from dreamlift.diffusion import NoiseSchedule, convert, ddim_step, ddpm_step, sample, timesteps

MU, SIGMA = torch.tensor([1.5, -0.5]), torch.tensor([0.3, 0.6])


def gaussian_denoiser(schedule, prediction="eps"):
    """For x0 ~ N(MU, diag SIGMA^2), E[eps | x_t] is known in closed form."""

    def denoise(x_t, t):
        abar = schedule.alphas_cumprod[t].to(x_t).unsqueeze(1)  # (B, 1)
        var_t = abar * SIGMA**2 + (1 - abar)
        eps = (1 - abar).sqrt() * (x_t - abar.sqrt() * MU) / var_t
        return convert(schedule, eps, "eps", prediction, x_t, int(t[0]))

    return denoise


@pytest.mark.parametrize(
    "method,kw",
    [("ddpm", {"variance": "fixed_small"}), ("ddpm", {"variance": "fixed_large"}), ("ddim", {"eta": 0.0})],
)
def test_full_length_chains_match_the_data_distribution(method, kw):
    sched = NoiseSchedule.linear(1000)
    n = 8000
    x = sample(gaussian_denoiser(sched), (n, 2), sched, method=method, steps=1000, dtype=torch.float64,
               generator=torch.Generator().manual_seed(0), **kw)
    assert torch.allclose(x.mean(0), MU.double(), atol=5 * float(SIGMA.max()) / math.sqrt(n) + 0.01)
    # fixed_large is known to over-disperse slightly (DDPM section 3.2); allow for it.
    tol = 0.06 if kw.get("variance") == "fixed_large" else 0.03
    assert torch.allclose(x.std(0), SIGMA.double(), rtol=tol)


def _exact_chain_std(sched, method, steps):
    """Propagate the output std of a chain that is linear-Gaussian: x_s = A x_t + b + sigma z."""
    den = gaussian_denoiser(sched)
    ts = timesteps(sched.num_steps, steps)
    var = torch.ones(2, dtype=torch.float64)
    ab = sched.alphas_cumprod
    zero = torch.zeros(2, 2, dtype=torch.float64)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1

        def step(x):
            out = den(x, torch.full((2,), t))
            if method == "ddpm":
                return ddpm_step(sched, out, t, x, t_prev=t_prev, noise=zero).prev_sample
            return ddim_step(sched, out, t, t_prev, x).prev_sample

        slope = (step(torch.ones(2, 2, dtype=torch.float64)) - step(zero))[0]
        noise_var = 0.0
        if method == "ddpm" and t_prev >= 0:
            noise_var = float((1 - ab[t_prev]) / (1 - ab[t]) * (1 - ab[t] / ab[t_prev]))
        var = slope**2 * var + noise_var
    return var.sqrt()


@pytest.mark.parametrize("method,steps", [("ddpm", 100), ("ddim", 50), ("ddim", 20)])
def test_coarse_chains_follow_the_exact_linear_gaussian_chain(method, steps):
    """With few steps both samplers under-disperse: ancestral DDPM plugs in E[x0 | x_t] and so
    drops c0^2 Var[x0 | x_t] from each step's variance, and DDIM is a first-order ODE solver.
    For Gaussian data the chain is linear-Gaussian, so the exact output std can be
    propagated step by step, and the empirical samples must match it."""
    sched = NoiseSchedule.linear(1000)
    n = 8000
    x = sample(gaussian_denoiser(sched), (n, 2), sched, method=method, steps=steps, dtype=torch.float64,
               generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.std(0), _exact_chain_std(sched, method, steps), rtol=0.03)
    assert torch.allclose(x.mean(0), MU.double(), atol=0.03)


def test_ddim_converges_to_the_data_as_steps_grow():
    sched = NoiseSchedule.cosine(1000)
    errors = [float((_exact_chain_std(sched, "ddim", k) - SIGMA.double()).abs().max()) for k in (10, 50, 200, 1000)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.01


@pytest.mark.parametrize("prediction", ["x0", "v", "mu"])
def test_any_prediction_type_samples_the_same(prediction):
    sched = NoiseSchedule.cosine(1000)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = sample(gaussian_denoiser(sched), (16, 2), sched, steps=20, x_T=x_T, dtype=torch.float64)
    got = sample(gaussian_denoiser(sched, prediction), (16, 2), sched, steps=20, x_T=x_T, prediction=prediction,
                 dtype=torch.float64)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


def test_ddim_eta_one_is_the_respaced_ddpm_step():
    sched = NoiseSchedule.cosine(1000)
    g = torch.Generator().manual_seed(2)
    x_t, out, z = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for t, t_prev in [(999, 949), (500, 480), (40, -1)]:
        a = ddim_step(sched, out, t, t_prev, x_t, eta=1.0, noise=z).prev_sample
        b = ddpm_step(sched, out, t, x_t, t_prev=t_prev, noise=z).prev_sample
        torch.testing.assert_close(a, b)


def test_seeded_sampling_is_reproducible():
    sched = NoiseSchedule.linear(100)
    run = lambda: sample(gaussian_denoiser(sched), (4, 2), sched, method="ddpm",  # noqa: E731
                         generator=torch.Generator().manual_seed(42))
    assert torch.equal(run(), run())


def test_algorithm_2_by_hand():
    """x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + sigma_t z."""
    sched = NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    t = 400
    b, a, ab = sched.betas[t], sched.alphas[t], sched.alphas_cumprod[t]
    for variance, var in [("fixed_small", sched.posterior_variance[t]), ("fixed_large", b)]:
        expected = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt() + var.sqrt() * z
        got = ddpm_step(sched, eps, t, x_t, variance=variance, noise=z).prev_sample
        torch.testing.assert_close(got, expected)
    # no noise on the final step
    assert torch.equal(ddpm_step(sched, eps, 0, x_t, noise=z).prev_sample,
                       ddpm_step(sched, eps, 0, x_t, noise=torch.zeros_like(z)).prev_sample)


def test_deterministic_ddim_is_deterministic_and_invertible_in_the_limit():
    sched = NoiseSchedule.linear(1000)
    x = torch.randn(4, 2, dtype=torch.float64)
    a = ddim_step(sched, torch.zeros_like(x), 500, 400, x, noise=torch.randn_like(x)).prev_sample
    b = ddim_step(sched, torch.zeros_like(x), 500, 400, x, noise=torch.randn_like(x)).prev_sample
    assert torch.equal(a, b)  # eta = 0 ignores the noise
    # with eps = 0 the DDIM update rescales x by sqrt(abar_prev / abar_t)
    ratio = (sched.alphas_cumprod[400] / sched.alphas_cumprod[500]).sqrt()
    torch.testing.assert_close(a, x * ratio)


def test_bad_sampler_settings_raise():
    sched = NoiseSchedule.linear(100)
    den = gaussian_denoiser(sched)
    with pytest.raises(ValueError, match="sampling steps"):
        sample(den, (1, 2), sched, steps=0)
    with pytest.raises(ValueError, match="sampling steps"):
        timesteps(100, 101)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(den, (1, 2), sched, method="euler")
    with pytest.raises(ValueError, match="variance"):
        ddpm_step(sched, torch.zeros(1, 2), 5, torch.zeros(1, 2), variance="learned")
    with pytest.raises(IndexError):
        ddim_step(sched, torch.zeros(1, 2), 5, 7, torch.zeros(1, 2))
