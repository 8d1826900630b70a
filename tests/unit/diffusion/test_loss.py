"""Algorithm 1: the loss regresses the right target at the sampled (t, eps)."""

import pytest
import torch

from dreamlift.diffusion import PREDICTIONS, NoiseSchedule, diffusion_loss, drop_condition, from_x0_eps, q_sample

SCHED = NoiseSchedule.linear(1000)


class Recorder:
    """A model that records its inputs and returns a fixed tensor."""

    def __init__(self, out):
        self.out, self.calls = out, []

    def __call__(self, x_t, t, cond):
        self.calls.append((x_t, t, cond))
        return self.out


def test_loss_is_the_mse_to_eps_at_the_sampled_t():
    x0 = torch.randn(6, 3, 4)
    model = Recorder(torch.zeros(6, 3, 4))
    loss = diffusion_loss(model, x0, SCHED, generator=torch.Generator().manual_seed(0))
    # Replay the generator to get the same t and eps.
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t, t_seen, _ = model.calls[0]
    assert torch.equal(t_seen, t)
    torch.testing.assert_close(x_t, q_sample(SCHED, x0, t, eps))
    torch.testing.assert_close(loss, eps.pow(2).mean())


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_an_oracle_model_has_zero_loss(prediction):
    """A model that knows x0 (a single data point) predicts every target exactly."""
    x0 = torch.randn(1, 5, dtype=torch.float64).expand(8, 5)

    def oracle(x_t, t, cond):
        abar = SCHED.alphas_cumprod[t].unsqueeze(1)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return from_x0_eps(SCHED, x0, eps, prediction, x_t, t)

    loss = diffusion_loss(oracle, x0, SCHED, prediction=prediction, generator=torch.Generator().manual_seed(3))
    assert float(loss) < 1e-16


def test_t_weights_multiply_per_sample_losses():
    x0 = torch.randn(4, 2)
    model = Recorder(torch.zeros(4, 2))
    base = diffusion_loss(model, x0, SCHED, generator=torch.Generator().manual_seed(1))
    doubled = diffusion_loss(model, x0, SCHED, t_weights=torch.full((1000,), 2.0, dtype=torch.float64),
                             generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(doubled, 2 * base)
    with pytest.raises(ValueError, match="t_weights"):
        diffusion_loss(model, x0, SCHED, t_weights=torch.ones(10))


def test_caption_dropout_rate_and_values():
    cond = torch.arange(1, 20_001)  # class labels, none equal to the null label 0
    dropped = drop_condition(cond, torch.tensor(0), 0.2, torch.Generator().manual_seed(0))
    rate = float((dropped == 0).float().mean())
    assert abs(rate - 0.2) < 0.015
    kept = dropped != 0
    assert torch.equal(dropped[kept], cond[kept])
    emb = torch.randn(5, 7, 3)
    null = torch.zeros(7, 3)
    out = drop_condition(emb, null, 1.0)
    assert torch.equal(out, torch.zeros_like(emb))
    assert torch.equal(drop_condition(emb, null, 0.0), emb)


def test_loss_passes_dropped_condition_to_model():
    model = Recorder(torch.zeros(1000, 2))
    cond = torch.ones(1000, 4)
    diffusion_loss(model, torch.randn(1000, 2), SCHED, cond=cond, null_cond=torch.zeros(4), cond_drop_prob=0.5,
                   generator=torch.Generator().manual_seed(0))
    seen = model.calls[0][2]
    frac_null = float((seen.sum(1) == 0).float().mean())
    assert 0.43 < frac_null < 0.57
    with pytest.raises(ValueError, match="null_cond"):
        diffusion_loss(model, torch.randn(2, 2), SCHED, cond=cond[:2], cond_drop_prob=0.1)
