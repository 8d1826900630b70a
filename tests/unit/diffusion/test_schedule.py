import math

import pytest
import torch

from dreamlift.diffusion import NoiseSchedule, cosine_betas, linear_betas, q_sample


def test_linear_endpoints_and_cumprod():
    s = NoiseSchedule.linear(1000)
    assert s.num_steps == 1000
    assert math.isclose(float(s.betas[0]), 1e-4) and math.isclose(float(s.betas[-1]), 0.02)
    torch.testing.assert_close(s.alphas_cumprod[10], torch.prod(1 - s.betas[:11]))
    assert s.alphas_cumprod_prev[0] == 1 and s.alphas_cumprod_prev[5] == s.alphas_cumprod[4]


def test_cosine_follows_its_formula():
    s = NoiseSchedule.cosine(1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for i in [0, 100, 500, 900]:  # unclipped region: abar_t = f(t/T) / f(0)
        assert math.isclose(float(s.alphas_cumprod[i]), f((i + 1) / 1000) / f(0), rel_tol=1e-9)
    assert float(cosine_betas(1000).max()) == pytest.approx(0.999)


def test_any_betas_are_accepted():
    s = NoiseSchedule.from_betas([0.1, 0.2, 0.3])
    torch.testing.assert_close(s.alphas_cumprod, torch.tensor([0.9, 0.72, 0.504], dtype=torch.float64))
    torch.testing.assert_close(s.snr(), s.alphas_cumprod / (1 - s.alphas_cumprod))


@pytest.mark.parametrize("betas", [[], [0.0, 0.1], [0.5, 1.0], [float("nan")], [[0.1, 0.2]]])
def test_bad_betas_raise(betas):
    with pytest.raises(ValueError):
        NoiseSchedule.from_betas(betas)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        linear_betas(0)
    with pytest.raises(ValueError):
        linear_betas(10, 0.1, 0.01)
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule.named("sigmoid")
    s = NoiseSchedule.linear(10)
    with pytest.raises(IndexError):
        q_sample(s, torch.zeros(1, 2), 10)
    with pytest.raises(TypeError):
        q_sample(s, torch.zeros(1, 2), torch.tensor([1.5]))
