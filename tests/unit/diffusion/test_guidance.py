"""Classifier-free guidance: one convention, pinned by numbers."""

import pytest
import torch

from dreamlift.diffusion import NoiseSchedule, cfg_combine, convert, guided_denoiser


def test_convention_pinned_by_numbers():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    assert torch.equal(cfg_combine(u, c, 0.0), u)
    assert torch.equal(cfg_combine(u, c, 1.0), c)
    # uncond + s (cond - uncond) with s = 7.5: [1 + 7.5*2, -2 + 7.5*2]
    assert torch.equal(cfg_combine(u, c, 7.5), torch.tensor([16.0, 13.0]))


def _model(x, t, cond):
    # A model whose output depends on x, t and the condition in a known way.
    return x * 0.5 + t.float().reshape(-1, 1) * 0.01 + cond


def test_guided_denoiser_batches_to_the_same_result():
    x = torch.randn(3, 2)
    t = torch.tensor([5, 5, 5])
    cond, null = torch.randn(3, 2), torch.zeros(2)
    got = guided_denoiser(_model, cond, null, 4.0)(x, t)
    expected = cfg_combine(_model(x, t, null.expand(3, 2)), _model(x, t, cond), 4.0)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(guided_denoiser(_model, cond, None, 1.0)(x, t), _model(x, t, cond))
    torch.testing.assert_close(guided_denoiser(_model, cond, null, 0.0)(x, t), _model(x, t, null.expand(3, 2)))
    with pytest.raises(ValueError, match="unconditional"):
        guided_denoiser(_model, cond, None, 3.0)


@pytest.mark.parametrize("kind", ["x0", "v", "mu"])
def test_guidance_is_the_same_in_every_parametrisation(kind):
    sched = NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    e_u, e_c = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    t = 600
    in_eps = cfg_combine(e_u, e_c, 6.0)
    other = cfg_combine(convert(sched, e_u, "eps", kind, x_t, t), convert(sched, e_c, "eps", kind, x_t, t), 6.0)
    torch.testing.assert_close(convert(sched, other, kind, "eps", x_t, t), in_eps)


def test_dataclass_conditions_are_batched_field_by_field():
    from dataclasses import dataclass

    from dreamlift.diffusion import drop_condition

    @dataclass
    class Text:
        tokens: torch.Tensor  # (B, L, D)
        pooled: torch.Tensor  # (B, D)

    def model(x, t, c):
        return x + c.tokens.sum((1, 2)).unsqueeze(1) + c.pooled.sum(1, keepdim=True)

    cond = Text(torch.randn(3, 4, 2), torch.randn(3, 2))
    null = Text(torch.zeros(1, 4, 2), torch.zeros(1, 2))
    x, t = torch.randn(3, 5), torch.zeros(3, dtype=torch.long)
    got = guided_denoiser(model, cond, null, 2.5)(x, t)
    torch.testing.assert_close(got, cfg_combine(model(x, t, Text(null.tokens.expand(3, 4, 2), null.pooled.expand(3, 2))),
                                                model(x, t, cond), 2.5))
    dropped = drop_condition(cond, null, 1.0)
    assert torch.equal(dropped.tokens, torch.zeros(3, 4, 2)) and torch.equal(dropped.pooled, torch.zeros(3, 2))
    mixed = drop_condition(Text(torch.ones(2000, 1, 1), torch.ones(2000, 1)), Text(torch.zeros(1, 1), torch.zeros(1)),
                           0.5, torch.Generator().manual_seed(0))
    assert torch.equal(mixed.tokens.flatten(), mixed.pooled.flatten())  # fields drop together
