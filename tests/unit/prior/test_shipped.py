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


def test_shipped_camera_prior_loads_by_name_and_takes_the_camera():
    from dreamlift.config import DreamliftError
    from dreamlift.guidance.backends import load_backend
    from dreamlift.prior.unet import camera_features

    meta = json.loads((SHIPPED_WEIGHTS / "camera" / "prior.json").read_text())
    assert meta["unet"]["camera"] is True and meta["captions"] == "world"
    assert (SHIPPED_WEIGHTS / "camera" / "prior.safetensors").stat().st_size < 30 * 2**20
    backend = load_backend("builtin", "camera")
    assert backend.camera_aware and not load_backend("builtin").camera_aware
    prior = backend.prior
    # its camera columns were trained (they start at zero), so the camera changes what it draws
    w = prior.model.unet.class_embedding.linear_1.weight
    assert w[:, -4:].abs().mean() > 1e-3
    front = camera_features(torch.tensor([0.0]), torch.tensor([15.0]), torch.tensor([3.3]))
    back = camera_features(torch.tensor([180.0]), torch.tensor([15.0]), torch.tensor([3.3]))
    a = prior.sample(["a red chair"], n_per_prompt=2, steps=4, seed=1, cameras=front)
    b = prior.sample(["a red chair"], n_per_prompt=2, steps=4, seed=1, cameras=back)
    assert a.shape == (2, 3, prior.resolution, prior.resolution) and not torch.equal(a, b)
    torch.testing.assert_close(a, prior.sample(["a red chair"], n_per_prompt=2, steps=4, seed=1, cameras=front))
    with pytest.raises(DreamliftError, match="does not take cameras"):
        BuiltinPrior(encoder=prior.encoder).sample(["a red chair"], steps=2, cameras=front)


def test_shipped_novel_view_prior_loads_and_draws_from_its_reference():
    import numpy as np

    from dreamlift.evaluate.suite import SuitePrompt, render_reference
    from dreamlift.prior.novel_view import NovelViewPrior, camera_for

    meta = json.loads((SHIPPED_WEIGHTS / "novel_view.json").read_text())
    assert meta["format"] == "dreamlift-novel-view/1" and meta["train_steps"] > 0
    assert (SHIPPED_WEIGHTS / "novel_view.safetensors").stat().st_size < 30 * 2**20
    prior = NovelViewPrior()  # the shipped weights, offline
    assert prior.resolution == meta["unet"]["resolution"] == 32
    # the camera and reference columns start at zero (the warm start is the text prior); trained, they are not
    w = prior.model.unet.class_embedding.linear_1.weight
    assert w[:, :4].abs().mean() > 1e-3 and w[:, 4:260].abs().mean() > 1e-3

    def reference(colour: str) -> torch.Tensor:
        image = render_reference(SuitePrompt(f"a {colour} snowman", "snowman", colour, (0.0, 15.0)), size=32)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    red, blue = reference("red"), reference("blue")
    side = camera_for(90.0, 0.0)
    a = prior.sample(red, side, steps=10, seed=1)
    assert a.shape == (1, 3, 32, 32) and torch.equal(a, prior.sample(red, side, steps=10, seed=1))
    b = prior.sample(blue, side, steps=10, seed=1)  # same noise, another reference
    # the drawn view takes the reference's colour (on the white background that fills most of the image): redder
    # than blue from the red snowman, bluer than red from the blue one (4,538-step weights: 0.109 and 0.066)
    red_minus_blue = lambda x: (x[:, 0] - x[:, 2]).mean().item()  # noqa: E731
    assert red_minus_blue(a) > 0.03 and red_minus_blue(b) < -0.03 and red_minus_blue(a) - red_minus_blue(b) > 0.1
