"""The prior shipped inside the package loads offline and samples reproducibly."""

import json

import pytest
import torch

from dreamlift.prior.model import SHIPPED_WEIGHTS, BuiltinPrior

pytestmark = pytest.mark.skipif(not (SHIPPED_WEIGHTS / "prior.safetensors").exists(), reason="no shipped prior")


def test_shipped_prior_loads_and_is_small():
    meta = json.loads((SHIPPED_WEIGHTS / "prior.json").read_text())
    assert meta["format"] == "dreamlift-prior/1"
    assert (SHIPPED_WEIGHTS / "prior.safetensors").stat().st_size < 30 * 2**20
    prior = BuiltinPrior()
    assert prior.resolution == meta["unet"]["resolution"]


def test_shipped_prior_samples_reproducibly():
    prior = BuiltinPrior()
    a = prior.sample(["a red mug"], n_per_prompt=2, steps=4, seed=1)
    b = prior.sample(["a red mug"], n_per_prompt=2, steps=4, seed=1)
    c = prior.sample(["a red mug"], n_per_prompt=2, steps=4, seed=2)
    assert a.shape == (2, 3, prior.resolution, prior.resolution)
    assert torch.equal(a, b) and not torch.equal(a, c)
    eps = prior.predict_eps(torch.zeros(1, 3, prior.resolution, prior.resolution), torch.tensor([500]),
                            prior.encoder.encode(["a blue chair"]))
    assert torch.isfinite(eps).all()
