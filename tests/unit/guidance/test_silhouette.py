"""The area prior: the foreground detector, the targets a backend's samples set, and the hinge loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from dreamlift.config import DreamliftError
from dreamlift.diffusion import NoiseSchedule
from dreamlift.guidance.base import GuidanceBackend
from dreamlift.guidance.silhouette import (VIEW_WORDS, SilhouetteTargets, area_loss,
                                           foreground_fraction, foreground_masks, mask_extent,
                                           measure_targets, sample_targets)


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

    def sample_images(self, prompts, n_per_prompt, seed=0, steps=None):
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
        def sample_images(self, prompts, n_per_prompt, seed=0, steps=None):
            return torch.ones(len(prompts) * n_per_prompt, 3, 32, 32)

    class NoSampler(SquaresBackend):
        sample_images = GuidanceBackend.sample_images

    with pytest.raises(DreamliftError, match="no object"):
        sample_targets(Blank(), "a red mug", 2)
    with pytest.raises(DreamliftError, match="cannot sample"):
        sample_targets(NoSampler(), "a red mug", 2)
    with pytest.raises(DreamliftError, match="positive"):
        sample_targets(SquaresBackend(), "a red mug", 0)


def test_mask_extent_is_the_bounding_box_as_fractions_of_the_frame():
    masks = torch.zeros(3, 20, 40, dtype=torch.bool)
    masks[0, 5:15, 10:30] = True  # 20 of 40 columns, 10 of 20 rows
    masks[1, 3, 7] = True  # a single pixel
    masks[1, 12, 31] = True  # ... and another: the box spans both
    got = mask_extent(masks)
    assert got[0].tolist() == pytest.approx([0.5, 0.5])
    assert got[1].tolist() == pytest.approx([25 / 40, 10 / 20])
    assert got[2].tolist() == [0.0, 0.0]  # empty


def test_extents_come_from_the_samples_and_give_the_objects_proportions():
    """Rectangles of known size per view word: the extents are their sides (median over samples); x and y come
    from front and back, z from the side; the proportions are those over their geometric mean."""

    class Boxes(SquaresBackend):
        BOX = {"front": (16, 8), "back": (12, 8), "side": (4, 8), "overhead": (16, 4)}  # (width, height) px

        def sample_images(self, prompts, n_per_prompt, seed=0, steps=None):
            out = torch.ones(len(prompts) * n_per_prompt, 3, 32, 32)
            for i, p in enumerate(prompts):
                w, h = self.BOX[p.split(", ")[-1].split()[0]]
                for j in range(n_per_prompt):  # the median over samples ignores one odd sample
                    ww = 2 if j == 0 else w
                    out[i * n_per_prompt + j, :, 10:10 + h, 5:5 + ww] = 0.2
            return out

    targets = sample_targets(Boxes(), "a red mug", samples=3)
    for word, (w, h) in Boxes.BOX.items():
        assert targets.extent[word] == pytest.approx((w / 32, h / 32))
    assert targets.extents() == pytest.approx((14 / 32, 8 / 32, 4 / 32))  # x: front and back averaged
    g = (14 * 8 * 4) ** (1 / 3)
    assert targets.proportions() == pytest.approx((14 / g, 8 / g, 4 / g))
    assert math.prod(targets.proportions()) == pytest.approx(1.0)
    assert SilhouetteTargets.from_dict(targets.to_dict()) == targets


def test_targets_saved_before_extents_existed_still_load_without_them():
    old = {"area": {w: 0.1 for w in VIEW_WORDS}, "spread": {w: 0.0 for w in VIEW_WORDS}, "samples": 8}
    targets = SilhouetteTargets.from_dict(old)
    assert targets.extent is None and targets.extents() is None and targets.proportions() is None
    assert targets.to_dict() == old


def test_foreground_masks_agree_with_the_fraction():
    img = torch.cat([_disc(10.0), _disc(5.0, (0.1, 0.1, 0.1))])
    assert foreground_masks(img).flatten(1).float().mean(1).tolist() == foreground_fraction(img).tolist()


def test_image_to_3d_takes_width_and_height_from_the_mask_and_depth_from_the_priors_side_views():
    """ImageObjective.silhouettes: the reference mask's box is the front (and back); the view-conditioned
    prior's views at +-90 degrees, asked once with the run's seed and caption, give the depth (their median
    width); proportions follow."""
    from types import SimpleNamespace

    from dreamlift.guidance.image import ImageObjective

    asked = []

    class Prior:
        def sample(self, reference, camera, prompt=None, steps=50, guidance_scale=3.0, seed=0):
            asked.append((tuple(reference.shape), camera.clone(), prompt, steps, guidance_scale, seed))
            out = torch.ones(len(camera), 3, 16, 16)
            for i in range(len(camera)):
                out[i, :, 4:12, 2:2 + (4 if i != 3 else 12)] = 0.3  # one odd sample: the median ignores it
            return out

    guidance = SimpleNamespace(device=torch.device("cpu"), resolution=16, prior=Prior(), encode_text=lambda p: p)
    cfg = SimpleNamespace(text_weight=0.0, prompt="", ref_azimuth=0.0, ref_elevation=15.0, ref_distance=3.3,
                          ref_fov=45.0, seed=7)
    mask = torch.zeros(32, 32)
    mask[8:24, 4:28] = 1.0  # 24 wide, 16 tall of 32
    reference = SimpleNamespace(rgb=torch.ones(3, 16, 16))
    full = SimpleNamespace(rgb=torch.ones(3, 32, 32), mask=mask)
    objective = ImageObjective(cfg, guidance, reference, full)
    targets = objective.silhouettes(samples=3)
    (shape, cams, prompt, steps, scale, seed), = asked
    assert shape == (6, 3, 16, 16) and prompt is None and seed == 7 and (steps, scale) == (25, 3.0)
    assert torch.allclose(cams[:3], cams[0].expand(3, -1)) and torch.allclose(cams[3:], cams[3].expand(3, -1))
    assert cams[0, 1] == pytest.approx(1.0) and cams[3, 1] == pytest.approx(-1.0)  # sin of +90 and -90 degrees
    assert targets.extent["front"] == targets.extent["back"] == pytest.approx((24 / 32, 16 / 32))
    assert targets.extent["side"][0] == pytest.approx(4 / 16)
    g = (0.75 * 0.5 * 0.25) ** (1 / 3)
    assert targets.proportions() == pytest.approx((0.75 / g, 0.5 / g, 0.25 / g))


def test_measuring_needs_an_object_in_every_view_words_samples():
    images = torch.ones(len(VIEW_WORDS) * 2, 3, 16, 16)
    images[:, :, 4:8, 4:8] = 0.0
    assert measure_targets(images, 2).area["front"] == pytest.approx(16 / 256)
    images[len(VIEW_WORDS) * 2 - 2:] = 1.0  # the last view word's two samples are blank
    assert measure_targets(images, 2) is None


def test_the_builtin_backend_draws_the_area_samples_with_ddim_at_area_sample_steps(monkeypatch):
    from dreamlift.guidance.builtin import AREA_SAMPLE_STEPS, BuiltinGuidance

    backend = BuiltinGuidance()
    calls = []

    def sample(prompts, n, **kw):
        calls.append(kw)
        return torch.ones(len(prompts) * n, 3, 32, 32)

    monkeypatch.setattr(backend.prior, "sample", sample)
    backend.sample_images(["a red mug, front view"], 2, seed=3)
    backend.sample_images(["a red mug, front view"], 2, seed=3, steps=10)
    assert [c["steps"] for c in calls] == [AREA_SAMPLE_STEPS, 10] and AREA_SAMPLE_STEPS == 25
    assert all(c["seed"] == 3 and c["method"] == "ddim" and c["eta"] == 0.0 and c["guidance_scale"] == 3.0
               for c in calls)


def test_sample_targets_passes_the_step_count_to_the_backend():
    class Counting(SquaresBackend):
        def sample_images(self, prompts, n_per_prompt, seed=0, steps=None):
            self.steps = steps
            return super().sample_images(prompts, n_per_prompt, seed, steps)

    backend = Counting()
    sample_targets(backend, "a red mug", 2, seed=1, steps=7)
    assert backend.steps == 7
    sample_targets(backend, "a red mug", 2)
    assert backend.steps is None  # the backend's own default


@pytest.mark.parametrize("representation, steps, scale", [("nerf", 10, 0.62), ("gaussians", 25, 0.67)])
def test_generate_draws_each_representations_area_samples_at_its_steps_and_scale(monkeypatch, representation,
                                                                                  steps, scale):
    """The Gaussians keep 25 DDIM steps (their core-v1 IoU fell at 10), the NeRF takes 10; the scale follows the
    steps unless set, and the objective asks the backend for exactly those steps."""
    from dreamlift.generate import GenerateConfig, default_area_scale
    from dreamlift.guidance.objectives import SDSObjective

    cfg = GenerateConfig(prompt="a red mug", representation=representation).resolved()
    assert (cfg.area_steps, cfg.area_scale) == (steps, scale)
    other = GenerateConfig(prompt="a red mug", representation=representation, area_steps=35 - steps).resolved()
    assert other.area_scale == {10: 0.67, 25: 0.62}[steps]  # the other calibration's
    kept = GenerateConfig(prompt="a red mug", representation=representation, area_steps=3, area_scale=0.5).resolved()
    assert (kept.area_steps, kept.area_scale) == (3, 0.5)
    assert [default_area_scale(s) for s in (1, 10, 17, 18, 25, 100)] == [0.62, 0.62, 0.62, 0.67, 0.67, 0.67]

    backend = SquaresBackend()
    asked = []
    real = backend.sample_images
    monkeypatch.setattr(backend, "sample_images", lambda *a, **k: asked.append(a[3]) or real(*a, **k))
    monkeypatch.setattr(backend, "freeze_prompts", lambda prompts: None, raising=False)
    objective = SDSObjective(cfg, backend)
    objective.prepare()
    assert asked == [steps] and objective.area_targets is not None
