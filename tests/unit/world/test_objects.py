"""The categories of the world: bounds, inside/outside, surface samples, colours, lookups."""

import pytest
import torch

from dreamlift.world import (
    BACKGROUND_RGB, CATEGORIES, COLOURS, FRONT_FACING, Part, Shape, WorldObject, get_object, get_shape,
)
from dreamlift.world import sdf as S


def test_world_size():
    assert len(CATEGORIES) >= 12 and len(COLOURS) >= 8 and len(FRONT_FACING) >= 4
    assert set(FRONT_FACING) <= set(CATEGORIES)


def test_background_differs_from_every_colour():
    bg = torch.tensor(BACKGROUND_RGB)
    for name, rgb in COLOURS.items():
        assert (torch.tensor(rgb) - bg).norm() > 0.5, name


@pytest.mark.parametrize("category", CATEGORIES)
def test_category_is_solid_and_fits_in_unit_sphere(category):
    obj = get_object(category, "red")
    g = torch.Generator().manual_seed(0)
    # Positive everywhere outside the unit sphere (radii 1 .. 2).
    d = torch.randn(20_000, 3, generator=g)
    far = d / d.norm(dim=-1, keepdim=True) * (1 + torch.rand(20_000, 1, generator=g))
    assert obj.sdf(far).min().item() > 0
    # Something solid near the centre (some point within 0.6 of the origin is inside).
    near = (torch.rand(20_000, 3, generator=g) * 2 - 1) * 0.6
    assert obj.occupancy(near).any()
    # Far away the SDF is large (intersections give lower bounds, so not exactly |p| - 1).
    assert obj.sdf(torch.tensor([[0.0, 5.0, 0.0]])).item() > 2.0


@pytest.mark.parametrize("category", CATEGORIES)
def test_surface_samples_lie_on_the_zero_level_set(category):
    obj = get_object(category, "blue")
    pts = obj.surface_samples(500, torch.Generator().manual_seed(1))
    assert pts.shape == (500, 3) and pts.dtype == torch.float32
    assert obj.sdf(pts.double()).abs().max().item() < 1e-3
    assert pts.norm(dim=-1).max().item() <= 1.0
    # Samples spread over the object, not stuck in one place.
    assert (pts.max(0).values - pts.min(0).values).min().item() > 0.3


def test_albedo_uses_named_colour_on_body_and_fixed_colour_on_details():
    snow = get_object("snowman", "green")
    body_pt = torch.tensor([[0.0, -0.5, 0.42]])  # on the bottom ball
    nose_tip = torch.tensor([[0.0, 0.58, 0.42]])  # tip of the carrot
    torch.testing.assert_close(snow.albedo(body_pt), torch.tensor([COLOURS["green"]]))
    nose = next(p for p in snow.shape.parts if p.name == "nose")
    torch.testing.assert_close(snow.albedo(nose_tip), torch.tensor([nose.colour]))


def test_custom_shape_queries():
    ball = WorldObject(Shape("ball", (Part("ball", lambda p: S.sphere(p, 0.5)),)), "red")
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.9]])
    assert ball.occupancy(pts).tolist() == [True, False]
    samples = ball.surface_samples(200)
    torch.testing.assert_close(samples.norm(dim=-1), torch.full((200,), 0.5), atol=1e-4, rtol=0)


def test_unknown_names_raise_helpful_errors():
    with pytest.raises(ValueError, match="mug"):
        get_shape("spaceship")
    with pytest.raises(ValueError, match="red"):
        get_object("mug", "mauve")
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        get_object("mug", "red").sdf(torch.zeros(4, 2))
