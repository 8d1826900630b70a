"""Property tests: every prediction-target conversion round-trips, and mu is consistent."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlift.diffusion import (
    PREDICTIONS,
    NoiseSchedule,
    convert,
    from_x0_eps,
    posterior_mean,
    q_sample,
    to_x0_eps,
)

SCHEDULES = {"linear": NoiseSchedule.linear(1000), "cosine": NoiseSchedule.cosine(1000)}


def _case(seed, t, kind, batch=3):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 2, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    sched = SCHEDULES[kind]
    # The cosine schedule is clipped at beta = 0.999 where abar underflows towards 0 and x0
    # becomes unrecoverable from x_t; stay where abar_t > 1e-12 for round trips through x0.
    tt = torch.full((batch,), t, dtype=torch.long)
    return sched, x0, eps, q_sample(sched, x0, tt, eps), tt


index = st.integers(min_value=0, max_value=998)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, t=index, kind=st.sampled_from(sorted(SCHEDULES)),
       src=st.sampled_from(PREDICTIONS), dst=st.sampled_from(PREDICTIONS))
def test_conversion_round_trips(seed, t, kind, src, dst):
    sched, x0, eps, x_t, tt = _case(seed, t, kind)
    pred = from_x0_eps(sched, x0, eps, src, x_t, tt)
    there = convert(sched, pred, src, dst, x_t, tt)
    back = convert(sched, there, dst, src, x_t, tt)
    torch.testing.assert_close(back, pred, atol=1e-7, rtol=1e-7)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, t=index, kind=st.sampled_from(sorted(SCHEDULES)), src=st.sampled_from(PREDICTIONS))
def test_every_target_recovers_x0_and_eps(seed, t, kind, src):
    sched, x0, eps, x_t, tt = _case(seed, t, kind)
    rx0, reps = to_x0_eps(sched, from_x0_eps(sched, x0, eps, src, x_t, tt), src, x_t, tt)
    torch.testing.assert_close(reps, eps, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(rx0, x0, atol=1e-6, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, t=st.integers(min_value=0, max_value=999), kind=st.sampled_from(sorted(SCHEDULES)))
def test_posterior_mean_equals_mu_from_eps(seed, t, kind):
    """mu_q(x_0, x_t) by eq. 7 equals the mu recovered from the eps that produced x_t (eq. 11)."""
    sched, x0, eps, x_t, tt = _case(seed, t, kind)
    mu_q = posterior_mean(sched, x0, x_t, tt)
    mu_eps = convert(sched, eps, "eps", "mu", x_t, tt)
    torch.testing.assert_close(mu_eps, mu_q, atol=1e-9, rtol=1e-9)


def test_v_definition_by_hand():
    sched = SCHEDULES["linear"]
    x0, eps = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    t = 300
    a = sched.alphas_cumprod[t]
    x_t = q_sample(sched, x0, t, eps)
    expected = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(from_x0_eps(sched, x0, eps, "v", x_t, t), expected)


def test_posterior_at_first_index_is_x0():
    sched = SCHEDULES["linear"]
    x0, x_t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(posterior_mean(sched, x0, x_t, 0), x0)


def test_unknown_prediction_is_rejected():
    sched = SCHEDULES["linear"]
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="unknown prediction type"):
        convert(sched, x, "eps", "score", x, 0)
