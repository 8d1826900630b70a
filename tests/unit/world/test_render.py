"""The ground-truth renderer: silhouettes, depth, normals, shading, front vs back."""

import math

import pytest
import torch

from dreamlift.render.camera import CameraDistribution, CameraSample, Light
from dreamlift.world import BACKGROUND_RGB, FRONT_FACING, Part, Shape, WorldObject, get_object
from dreamlift.world import sdf as S
from dreamlift.world.render import RenderConfig, render_object, shade, trace_geometry


def _ball(radius):
    return WorldObject(Shape("ball", (Part("ball", lambda p: S.sphere(p, radius)),)), "blue")


def _front_cams(n, dist, fov, size, az=0.0, el=0.0):
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return CameraSample.from_spherical(full(az), full(el), full(dist), full(fov), size, size)


def _light_at_camera(cams, ambient=0.3):
    return Light(cams.camera.position.clone(), torch.full((len(cams.camera),), ambient))


@pytest.mark.parametrize("radius, dist, fov", [(0.5, 3.0, 45.0), (0.9, 3.2, 40.0), (0.3, 2.5, 50.0)])
def test_sphere_silhouette_area_matches_projected_disc(radius, dist, fov):
    size = 128
    cams = _front_cams(1, dist, fov, size)
    res = render_object(_ball(radius), cams.camera, _light_at_camera(cams))
    # The silhouette of a sphere centred on the optical axis is a disc of radius f tan(asin(r/d)),
    # with focal length f = (H/2) / tan(fov/2) in pixels.
    focal = size / 2 / math.tan(math.radians(fov / 2))
    disc = math.pi * (focal * math.tan(math.asin(radius / dist))) ** 2
    assert res.mask.sum().item() == pytest.approx(disc, rel=0.03)


def test_depth_normal_and_shading_of_a_sphere():
    cams = _front_cams(1, 3.0, 45.0, 9)
    light = _light_at_camera(cams, ambient=0.2)
    res = render_object(_ball(0.5), cams.camera, light)
    assert res.rgb.shape == (1, 9, 9, 3) and res.mask.shape == res.depth.shape == (1, 9, 9)
    assert res.depth[0, 4, 4].item() == pytest.approx(2.5, abs=3e-3)
    torch.testing.assert_close(res.normal[0, 4, 4], torch.tensor([0.0, 0.0, 1.0]), atol=5e-3, rtol=0)
    # Facing the light head-on: rgb = albedo * (0.2 + 0.8 * cos), cos ~ 1 at the centre.
    blue = torch.tensor(get_object("mug", "blue").rgb)
    torch.testing.assert_close(res.rgb[0, 4, 4], blue, atol=1e-2, rtol=0)
    # Background pixels have the background colour, zero depth and zero normal.
    torch.testing.assert_close(res.rgb[0, 0, 0], torch.tensor(BACKGROUND_RGB))
    assert not res.mask[0, 0, 0] and res.depth[0, 0, 0] == 0 and res.normal[0, 0, 0].abs().sum() == 0


def test_unbatched_camera_gives_unbatched_result():
    cams = _front_cams(1, 3.0, 45.0, 16)
    res = render_object(get_object("mug", "red"), cams.camera[0], Light(cams.camera.position[0], torch.tensor(0.3)))
    assert res.rgb.shape == (16, 16, 3) and res.mask.shape == (16, 16)
    assert res.mask.any() and (res.rgb >= 0).all() and (res.rgb <= 1).all()


@pytest.mark.parametrize("category", sorted(FRONT_FACING))
def test_front_view_differs_from_back_view(category):
    obj = get_object(category, "green")
    full = lambda v: torch.full((2,), float(v))  # noqa: E731
    cams = CameraSample.from_spherical(torch.tensor([0.0, 180.0]), full(10), full(3.2), full(45), 64, 64)
    res = render_object(obj, cams.camera, _light_at_camera(cams))
    front, back = res.rgb[0], res.rgb[1]
    # At least 4% of the foreground pixels change colour clearly (L1 RGB difference > 0.3).
    # (The snowman, with the smallest front details, measures ~6%; symmetric categories 0%.)
    union = res.mask[0] | res.mask[1]
    assert ((front - back).abs().sum(-1)[union] > 0.3).float().mean().item() > 0.04


def test_symmetric_category_front_and_back_look_alike():
    obj = get_object("bottle", "green")  # rotationally symmetric about y
    full = lambda v: torch.full((2,), float(v))  # noqa: E731
    cams = CameraSample.from_spherical(torch.tensor([0.0, 180.0]), full(10), full(3.2), full(45), 64, 64)
    res = render_object(obj, cams.camera, _light_at_camera(cams))
    assert (res.mask[0] ^ res.mask[1]).sum().item() <= 4


def test_one_geometry_pass_many_colours_matches_render_object():
    cams = CameraDistribution().sample(3, torch.Generator().manual_seed(0), height=24)
    light = _light_at_camera(cams)
    geometry = trace_geometry(get_object("car", "red").shape, cams.camera)
    for colour in ("red", "yellow"):
        obj = get_object("car", colour)
        direct = render_object(obj, cams.camera, light)
        shaded = shade(geometry, obj.shape.part_albedo(obj.rgb), light)
        torch.testing.assert_close(shaded, direct.rgb)


def test_more_steps_do_not_change_the_mask_much():
    cams = CameraDistribution().sample(4, torch.Generator().manual_seed(2), height=48)
    obj = get_object("chair", "red")
    a = trace_geometry(obj.shape, cams.camera, RenderConfig())
    b = trace_geometry(obj.shape, cams.camera, RenderConfig(max_steps=200, hit_eps=2e-4, final_eps=2e-4))
    assert (a.mask ^ b.mask).float().mean().item() < 0.005
