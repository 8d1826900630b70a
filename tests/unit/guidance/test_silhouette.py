"""The area prior: the foreground detector, the targets a backend's samples set, and the hinge loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from dreamlift.config import DreamliftError
from dreamlift.diffusion import NoiseSchedule
from dreamlift.guidance.base import GuidanceBackend
from dreamlift.guidance.silhouette import (VIEW_WORDS, SilhouetteTargets, area_loss, foreground_fraction,
                                           sample_targets)


def _disc(radius: float, colour=(0.8, 0.1, 0.1), size: int = 64) -> torch.Tensor:
    """(1, 3, size, size): a disc of the given radius (pixels) in ``colour`` on white."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < radius**2).float()
    img = torch.ones(3, size, size)
    for c in range(3):
        img[c] = inside * colour[c] + (1 - inside) * 1.0
    return img[None]


@pytest.mark.parametrize("colour", [(0.8, 0.1, 0.1), (0.05, 0.05, 0.05), (1.0, 0.95, 0.2), (0.9, 0.7, 0.8)])
def test_foreground_fraction_measures_a_disc_in_any_colour(colour):
    img = _disc(16.0, colour)
    expected = math.pi * 16.0**2 / 64**2
    assert foreground_fraction(img).item() == pytest.approx(expected, rel=0.03)


def test_blur_does_not_grow_the_measured_area():
    """Half the object's own contrast is the 50% contour of a symmetric blur: a soft sample reads as its size."""
    img = _disc(16.0)
    k = torch.ones(1, 1, 5, 5) / 25
    padded = F.pad(img, (2, 2, 2, 2), mode="replicate")
    blurred = torch.cat([F.conv2d(padded[:, c:c + 1], k) for c in range(3)], 1)
    crisp, soft = foreground_fraction(img).item(), foreground_fraction(blurred).item()
    assert soft == pytest.approx(crisp, rel=0.05)
    # a fixed threshold near white counts the blur's halo as object
    halo = ((1 - blurred).amax(1) > 0.08).float().mean().item()
    assert halo > 1.15 * crisp


def test_blank_images_have_no_foreground_and_bad_shapes_are_refused():
    assert foreground_fraction(torch.ones(2, 3, 8, 8)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        foreground_fraction(torch.ones(3, 8, 8))


def test_area_loss_is_zero_inside_the_band_and_the_squared_excess_outside():
    target = torch.tensor([0.2, 0.2, 0.2])
    opacity = torch.stack([torch.full((4, 4), a) for a in (0.2 * 1.1, 0.2 * 1.5, 0.2 * 0.5)])  # ratios 1.1, 1.5, 0.5
    loss = area_loss(opacity, target, tolerance=0.2)
    assert loss.item() == pytest.approx(((1.5 - 1.2) ** 2 + (0.8 - 0.5) ** 2) / 3, rel=1e-5)
    inside = area_loss(torch.full((1, 4, 4), 0.21), torch.tensor([0.2]), 0.2)
    assert inside.item() == 0.0


def test_area_loss_shrinks_too_large_and_grows_too_small_renders():
    target = torch.tensor([0.2, 0.2])
    opacity = torch.stack([torch.full((4, 4), 0.4), torch.full((4, 4), 0.05)]).requires_grad_(True)
    area_loss(opacity, target, 0.2).backward()
    assert (opacity.grad[0] > 0).all() and (opacity.grad[1] < 0).all()  # descent lowers the first, raises the second


class SquaresBackend(GuidanceBackend):
    """Samples are black squares whose side depends on the view word of the prompt."""

    name = "squares"
    SIDE = {"front": 8, "side": 16, "back": 8, "overhead": 12}

    def __init__(self):
        self.resolution, self.schedule, self.device = 32, NoiseSchedule.cosine(1000), torch.device("cpu")
        self.prompts = []

    def encode_text(self, prompts):
        return prompts

    def encode_images(self, images):
        return images * 2 - 1

    def predict_eps(self, x_t, t, cond):
        return torch.zeros_like(x_t)

    def sample_images(self, prompts, n_per_prompt, seed=0):
        self.prompts.extend(prompts)
        out = torch.ones(len(prompts) * n_per_prompt, 3, 32, 32)
        for i, p in enumerate(prompts):
            side = self.SIDE[p.split(", ")[-1].split()[0]]
            out[i * n_per_prompt:(i + 1) * n_per_prompt, :, :side, :side] = 0.0
        return out


def test_targets_come_from_the_backends_samples_per_view_word():
    backend = SquaresBackend()
    targets = sample_targets(backend, "a red mug", samples=3)
    assert backend.prompts == [f"a red mug, {w} view" for w in VIEW_WORDS]
    for word, side in SquaresBackend.SIDE.items():
        assert targets.area[word] == pytest.approx(side**2 / 32**2)
        assert targets.spread[word] == 0.0
    # each camera gets the target of its own view word (front |az| <= 45, overhead above 60 degrees)
    got = targets.for_cameras(torch.tensor([0.0, 90.0, 180.0, 10.0]), torch.tensor([10.0, 10.0, 10.0, 80.0]))
    assert got.tolist() == pytest.approx([t**2 / 1024 for t in (8, 16, 8, 12)])
    assert SilhouetteTargets.from_dict(targets.to_dict()) == targets


def test_backends_that_cannot_sample_or_draw_nothing_give_clear_errors():
    class Blank(SquaresBackend):
        def sample_images(self, prompts, n_per_prompt, seed=0):
            return torch.ones(len(prompts) * n_per_prompt, 3, 32, 32)

    class NoSampler(SquaresBackend):
        sample_images = GuidanceBackend.sample_images

    with pytest.raises(DreamliftError, match="no object"):
        sample_targets(Blank(), "a red mug", 2)
    with pytest.raises(DreamliftError, match="cannot sample"):
        sample_targets(NoSampler(), "a red mug", 2)
    with pytest.raises(DreamliftError, match="positive"):
        sample_targets(SquaresBackend(), "a red mug", 0)
