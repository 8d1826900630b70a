"""Cameras, rays, camera/light distributions and view words."""

import math

import pytest
import torch

from dreamlift.render.camera import (
    Camera, CameraDistribution, CameraSample, LightDistribution, camera_rays, look_at, view_word,
)


def _cams(az, el, dist=3.0, fov=45.0, h=9, w=9):
    n = len(az)
    return CameraSample.from_spherical(torch.tensor(az, dtype=torch.float32), torch.tensor(el, dtype=torch.float32),
                                       torch.full((n,), dist), torch.full((n,), fov), h, w)


def test_rays_are_unit_and_centre_ray_hits_origin():
    cams = _cams([0.0, 37.0, -120.0], [0.0, 25.0, -10.0])
    o, d = camera_rays(cams.camera)
    assert o.shape == d.shape == (3, 9, 9, 3)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(3, 9, 9))
    centre_dir = d[:, 4, 4]  # odd size: the middle pixel centre is on the optical axis
    to_origin = -o[:, 4, 4] / o[:, 4, 4].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(centre_dir, to_origin, atol=1e-6, rtol=0)


def test_azimuth_zero_looks_from_plus_z_and_ninety_from_plus_x():
    cams = _cams([0.0, 90.0], [0.0, 0.0])
    torch.testing.assert_close(cams.camera.position, torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]]), atol=1e-5, rtol=0)
    o, d = camera_rays(cams.camera)
    # From the front, image right is world +x and image top is world +y.
    assert d[0, 4, -1, 0] > 0 and d[0, 0, 4, 1] > 0
    # Elevation raises the camera above the horizontal plane.
    assert _cams([0.0], [30.0]).camera.position[0, 1] == pytest.approx(3 * math.sin(math.radians(30)))


def test_field_of_view_sets_the_angle_of_the_edge_rays():
    h = 64
    o, d = camera_rays(_cams([0.0], [0.0], fov=50.0, h=h, w=h).camera)
    # The top-row pixel centre sits (h-1)/h of the way to the top edge of the image plane.
    expected = math.atan((h - 1) / h * math.tan(math.radians(25)))
    top = d[0, 0, h // 2]  # a top-row ray, half a pixel off the vertical centre line
    angle = math.atan2(top[1].item(), math.hypot(top[0].item(), top[2].item()))
    assert angle == pytest.approx(expected, abs=1e-4)


def test_unbatched_camera_and_overhead_look_at():
    c2w = look_at(torch.tensor([[0.0, 4.0, 0.0]]))  # straight overhead: degenerate up vector handled
    assert torch.isfinite(c2w).all()
    torch.testing.assert_close(c2w[0, :3, 2], torch.tensor([0.0, 1.0, 0.0]))
    cam = Camera(c2w[0], torch.tensor(40.0), 4, 6)
    o, d = camera_rays(cam)
    assert d.shape == (4, 6, 3) and (d[..., 1] < 0).all()


def test_distribution_samples_within_ranges_and_orbit_is_deterministic():
    dist = CameraDistribution()
    g = torch.Generator().manual_seed(0)
    s = dist.sample(500, g, height=16)
    assert s.camera.c2w.shape == (500, 4, 4) and s.camera.height == 16
    for values, (lo, hi) in [(s.azimuth_deg, dist.azimuth_deg), (s.elevation_deg, dist.elevation_deg),
                             (s.distance, dist.distance), (s.camera.fov_y_deg, dist.fov_y_deg)]:
        assert values.min() >= lo and values.max() <= hi
    torch.testing.assert_close(s.camera.position.norm(dim=-1), s.distance)
    # The whole unit sphere is in frame for the nearest camera with the narrowest field of view.
    assert math.asin(1 / dist.distance[0]) < math.radians(dist.fov_y_deg[0] / 2)
    orbit = dist.orbit(8, elevation_deg=10.0)
    torch.testing.assert_close(orbit.azimuth_deg, torch.arange(8.0) * 45)
    torch.testing.assert_close(orbit.camera.c2w, dist.orbit(8, elevation_deg=10.0).camera.c2w)


def test_lights_are_near_the_camera_side():
    cams = CameraDistribution().sample(200, torch.Generator().manual_seed(0))
    lights = LightDistribution().sample(cams, torch.Generator().manual_seed(1))
    assert lights.position.shape == (200, 3) and lights.ambient.shape == (200,)
    cos = torch.nn.functional.cosine_similarity(lights.position, cams.camera.position, dim=-1)
    assert (cos > 0).all()  # azimuth offset <= 60 deg and elevation offset <= 45 deg


@pytest.mark.parametrize(
    "az, el, word",
    [(0, 0, "front"), (45, 0, "front"), (-45, 30, "front"), (46, 0, "side"), (-90, 0, "side"),
     (134, 0, "side"), (135, 0, "back"), (180, 0, "back"), (-170, 0, "back"), (225, 0, "back"),
     (315, 0, "front"), (0, 60, "front"), (0, 61, "overhead"), (180, 89, "overhead")],
)
def test_view_word_thresholds(az, el, word):
    assert view_word(az, el) == word


def test_bad_camera_settings_raise():
    with pytest.raises(ValueError):
        CameraDistribution(distance=(0.5, 2.0))
    with pytest.raises(ValueError):
        CameraDistribution(elevation_deg=(10.0, 0.0))
    with pytest.raises(ValueError):
        Camera(torch.eye(4), torch.tensor(200.0), 8, 8)
    with pytest.raises(ValueError):
        Camera(torch.eye(3), torch.tensor(40.0), 8, 8)
