"""Generate's schedules that need no prior: the density bias fade, the learning rate, their validation."""

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.generate import GenerateConfig, Generator, lr_multiplier


class _NoObjective:
    device = torch.device("cpu")
    resolution = 32
    LOSS_KEYS = ()


@pytest.mark.parametrize("fade, progress, scale", [
    (0.5, 0.0, 1.0), (0.5, 0.25, 0.5), (0.5, 0.5, 0.0), (0.5, 0.9, 0.0), (1.0, 0.75, 0.25), (0.0, 0.9, 1.0),
])
def test_density_bias_fades_linearly_then_stays_off(fade, progress, scale):
    cfg = GenerateConfig(prompt="a red mug", steps=10, blob_fade=fade, area_weight=0.0).resolved()
    gen = Generator(cfg, _NoObjective())
    gen.scene.after_step(round(progress * cfg.steps), progress, gen.opt, gen.rng)  # the NeRF's hook after a step
    assert float(gen.scene.blob_scale) == pytest.approx(scale)


@pytest.mark.parametrize("fade", [-0.1, 1.5])
def test_blob_fade_outside_0_1_is_refused(fade):
    with pytest.raises(DreamliftError, match="--blob-fade"):
        GenerateConfig(prompt="a red mug", blob_fade=fade).resolved()


@pytest.mark.parametrize("lr_final, progress, multiplier", [
    (0.1, 0.0, 1.0), (0.1, 0.5, 1.0), (0.1, 0.75, 0.1 ** 0.5), (0.1, 1.0, 0.1), (0.01, 0.75, 0.1), (1.0, 0.9, 1.0),
])
def test_learning_rate_is_flat_then_decays_exponentially_to_lr_final(lr_final, progress, multiplier):
    assert lr_multiplier(lr_final, progress) == pytest.approx(multiplier)


@pytest.mark.parametrize("lr_final", [0.0, -0.5, 1.5])
def test_lr_final_outside_0_1_is_refused(lr_final):
    with pytest.raises(DreamliftError, match="--lr-final"):
        GenerateConfig(prompt="a red mug", lr_final=lr_final).resolved()
