"""Volume rendering: exact on constant fields, weights bounded, and the same cameras as the world renderer."""

import math

import pytest
import torch
import torch.nn as nn

from dreamlift.render.camera import CameraDistribution, Light, LightDistribution, camera_rays
from dreamlift.render.volume import ray_sphere, render_nerf
from dreamlift.scene.nerf import FieldOutput, NeRF, NeRFConfig
from dreamlift.world.render import RenderConfig, render_object
from dreamlift.world.shapes import get_object


class FunctionField(nn.Module):
    """A field given by a density function and an albedo function (duck-types NeRF for render_nerf)."""

    def __init__(self, density, albedo, bound=1.0, eps=1e-3):
        super().__init__()
        self.density_fn, self.albedo_fn, self.eps = density, albedo, eps
        self.cfg = NeRFConfig(bound=bound)
        self.device = torch.device("cpu")

    def forward(self, x):
        d = self.density_fn(x)
        return FieldOutput(d, self.albedo_fn(x), torch.log(d.clamp_min(1e-12)))

    def normals(self, x, log_sigma):
        h = self.eps
        grads = [(torch.log(self.density_fn(x + h * e).clamp_min(1e-12)) - log_sigma) / h for e in torch.eye(3)]
        g = torch.stack(grads, -1)
        return -g / g.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _cams(n=3, size=24, seed=0):
    return CameraDistribution().sample(n, torch.Generator().manual_seed(seed), height=size)


def test_constant_density_ball_matches_the_closed_form():
    sigma, colour = 3.0, torch.tensor([0.2, 0.5, 0.9])
    field = FunctionField(lambda x: torch.full(x.shape[:1], sigma), lambda x: colour.expand(x.shape[0], 3))
    cams = _cams()
    out = render_nerf(field, cams.camera, shading="albedo", num_samples=32, use_occupancy=False)
    o, d = camera_rays(cams.camera)
    near, far, hit = ray_sphere(o.reshape(-1, 3), d.reshape(-1, 3), 1.0)
    chord = torch.where(hit, far - near, torch.zeros_like(far)).reshape(3, 1, 24, 24)
    expected_opacity = 1 - torch.exp(-sigma * chord)  # exact: the quadrature is exact for constant density
    assert torch.allclose(out.opacity, expected_opacity, atol=1e-5)
    expected_rgb = expected_opacity * colour[None, :, None, None] + (1 - expected_opacity)  # white background
    assert torch.allclose(out.rgb, expected_rgb, atol=1e-5)
    assert hit.any() and (~hit).any()  # the test covers both hit and missed rays


def test_opaque_field_renders_its_colour_and_background_elsewhere():
    colour = torch.tensor([0.9, 0.1, 0.1])
    field = FunctionField(lambda x: torch.where(x.norm(dim=-1) < 0.5, 1e4, 0.0), lambda x: colour.expand(x.shape[0], 3))
    out = render_nerf(field, _cams().camera, shading="albedo", num_samples=128, use_occupancy=False,
                      background=torch.tensor([0.0, 1.0, 0.0]))
    solid = out.opacity[:, 0] > 0.999
    empty = out.opacity[:, 0] < 1e-6
    assert solid.sum() > 20 and empty.sum() > 20
    rgb = out.rgb.permute(0, 2, 3, 1)
    assert torch.allclose(rgb[solid], colour.expand(int(solid.sum()), 3), atol=1e-3)
    assert torch.allclose(rgb[empty], torch.tensor([0.0, 1.0, 0.0]).expand(int(empty.sum()), 3), atol=1e-5)


def test_weights_of_a_random_nerf_sum_to_at_most_one_and_rays_are_unit():
    torch.manual_seed(0)
    nerf = NeRF(NeRFConfig(blob_density=20.0))
    cams = _cams()
    light = LightDistribution().sample(cams, torch.Generator().manual_seed(1))
    for shading in ("albedo", "lambertian", "textureless"):
        out = render_nerf(nerf, cams.camera, light, shading, num_samples=24, generator=torch.Generator().manual_seed(0))
        assert (out.weights >= 0).all() and (out.weights.sum(-1) <= 1 + 1e-5).all()
        assert out.rgb.min() >= 0 and out.rgb.max() <= 1 + 1e-5
        assert out.opacity.max() > 0.9  # the density blob is solid at the centre
    _, dirs = camera_rays(cams.camera)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(dirs.shape[:-1]), atol=1e-6)


def test_textureless_shading_ignores_albedo_and_lambertian_uses_it():
    field_red = FunctionField(lambda x: torch.where(x.norm(dim=-1) < 0.6, 1e4, 0.0),
                              lambda x: torch.tensor([1.0, 0.0, 0.0]).expand(x.shape[0], 3))
    cams = _cams(2)
    light = Light(torch.tensor([[0.0, 3.0, 3.0]] * 2), torch.tensor([0.3, 0.3]))
    plain = render_nerf(field_red, cams.camera, light, "textureless", num_samples=96, use_occupancy=False)
    lit = render_nerf(field_red, cams.camera, light, "lambertian", num_samples=96, use_occupancy=False)
    solid = plain.opacity[:, 0] > 0.999
    p = plain.rgb.permute(0, 2, 3, 1)[solid]
    assert torch.allclose(p[:, 0], p[:, 1]) and torch.allclose(p[:, 1], p[:, 2])  # grey
    assert p.min() >= 0.3 - 1e-4  # never darker than the ambient term
    q = lit.rgb.permute(0, 2, 3, 1)[solid]
    assert torch.allclose(q[:, 0], p[:, 0], atol=1e-5) and q[:, 1:].abs().max() < 1e-5  # red albedo x same shading


def test_textureless_albedo_mean_is_each_views_mean_colour_without_an_albedo_gradient():
    # An opaque ball, red on the left half and blue on the right; lit from the camera side.
    torch.manual_seed(0)
    scale = torch.ones(3, requires_grad=True)  # stands in for the albedo's parameters

    def albedo(x):
        red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
        return torch.where(x[:, :1] < 0, red, blue) * scale

    field = FunctionField(lambda x: torch.where(x.norm(dim=-1) < 0.6, 1e4, 0.0), albedo)
    cams = CameraDistribution().orbit(2, 15.0, height=24)  # from +z and -z: both halves in view
    light = Light(cams.camera.position * 2, torch.tensor([0.3, 0.3]))
    white = render_nerf(field, cams.camera, light, "textureless", num_samples=96, use_occupancy=False)
    mean = render_nerf(field, cams.camera, light, "textureless", num_samples=96, use_occupancy=False,
                       textureless_albedo="mean")
    flat = render_nerf(field, cams.camera, light, "albedo", num_samples=96, use_occupancy=False)
    for b in range(2):
        solid = white.opacity[b, 0] > 0.999
        shade = white.rgb[b].permute(1, 2, 0)[solid][:, 0]  # grey level = the shading term
        colour = flat.rgb[b].permute(1, 2, 0)[solid].mean(0).detach()  # the view's mean albedo
        got = mean.rgb[b].permute(1, 2, 0)[solid]
        assert torch.allclose(got, shade[:, None] * colour[None], atol=2e-3)
        assert colour[0] > 0.05 and colour[2] > 0.05  # both halves in view: a real mixture
    # Geometry only: the albedo (here the only parameter) gets no gradient, while lambertian gives it one.
    assert not mean.rgb.requires_grad
    render_nerf(field, cams.camera, light, "lambertian", num_samples=96, use_occupancy=False).rgb.sum().backward()
    assert scale.grad is not None and scale.grad.abs().max() > 0
    given = render_nerf(field, cams.camera, light, "textureless", num_samples=96, use_occupancy=False,
                        textureless_albedo=torch.tensor([0.5, 0.5, 0.5]))
    solid = white.opacity[:, 0] > 0.999
    assert torch.allclose(given.rgb.permute(0, 2, 3, 1)[solid], 0.5 * white.rgb.permute(0, 2, 3, 1)[solid], atol=1e-5)
    with pytest.raises(ValueError, match="textureless_albedo"):
        render_nerf(field, cams.camera, light, "textureless", num_samples=8, use_occupancy=False,
                    textureless_albedo="pink")


@pytest.mark.parametrize("category", ["chair", "car"])
def test_cameras_and_shading_match_the_world_renderer(category):
    """A field made from a world object's SDF renders like the ground-truth sphere tracer."""
    obj = get_object(category, "blue")
    k = 400.0  # sharp density: sigma = k * sigmoid(-k' sdf) approximates a solid surface

    def density(x):
        return 2000.0 * torch.sigmoid(-obj.sdf(x) * k)

    field = FunctionField(density, lambda x: obj.albedo(x), eps=2e-3)
    cams = _cams(4, size=32, seed=3)
    light = LightDistribution().sample(cams, torch.Generator().manual_seed(4))
    ours = render_nerf(field, cams.camera, light, "lambertian", num_samples=256, use_occupancy=False)
    truth = render_object(obj, cams.camera, light, RenderConfig())
    mask_ours = ours.opacity[:, 0] > 0.5
    inter = (mask_ours & truth.mask).sum().item()
    union = (mask_ours | truth.mask).sum().item()
    assert inter / union > 0.88  # thin chair legs alias at 32 px; same cameras, same object, same image orientation
    both = mask_ours & truth.mask
    err = (ours.rgb.permute(0, 2, 3, 1)[both] - truth.rgb[both]).abs().mean()
    assert err < 0.06  # same Lambertian + ambient shading, same light
    # and a flipped image would not match: the test can fail
    flipped = (mask_ours.flip(-1) & truth.mask).sum().item() / (mask_ours.flip(-1) | truth.mask).sum().item()
    assert flipped < inter / union


@pytest.mark.parametrize("shading", ["lambertian", "textureless"])
def test_renders_without_gradients_skip_normals_that_do_not_show(shading):
    torch.manual_seed(0)
    nerf = NeRF(NeRFConfig(blob_density=10.0, blob_radius=0.5))
    with torch.no_grad():  # a lumpy surface, so normals vary
        for g in nerf.grids:
            g.normal_(0.0, 0.3)
    cams = CameraDistribution().orbit(3, elevation_deg=20.0, height=24)
    light = LightDistribution().sample(cams, torch.Generator().manual_seed(1))
    full = render_nerf(nerf, cams.camera, light, shading, num_samples=64, want_normals=True)  # grad mode
    with torch.no_grad():
        fast = render_nerf(nerf, cams.camera, light, shading, num_samples=64, want_normals=True)
    assert full.rgb.requires_grad and not fast.rgb.requires_grad
    assert (full.rgb.detach() - fast.rgb).abs().max() < 2e-3
    assert (full.normal.detach() - fast.normal).abs().max() < 5e-3
    assert torch.equal(full.opacity.detach(), fast.opacity)


@pytest.mark.parametrize("shading, plain", [("albedo", "white"), ("lambertian", "white"), ("textureless", "white"),
                                            ("textureless", "mean")])
def test_every_sample_masked_renders_what_the_compacted_samples_render(shading, plain):
    """compact=False (a GPU's default: no host sync for the count of occupied samples) evaluates every sample and
    masks the empty ones; the images and the field's gradients are those of the compacted render."""
    torch.manual_seed(0)
    nerf = NeRF(NeRFConfig(levels=2, base_resolution=8, max_resolution=16))
    with torch.no_grad():
        for grid in nerf.grids:
            grid.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    nerf.occupancy.update(nerf.density, threshold=0.5, generator=g)
    assert 0.0 < nerf.occupancy.occupied_fraction() < 1.0  # some samples really are masked
    cams = CameraDistribution().sample(2, g, height=12)
    light = LightDistribution().sample(cams, g)
    target = torch.rand(2, 3, 12, 12, generator=g)
    outs, grads = [], []
    for compact in (True, False):
        nerf.zero_grad()
        out = render_nerf(nerf, cams.camera, light, shading, num_samples=24, generator=torch.Generator().manual_seed(2),
                          textureless_albedo=plain, compact=compact)
        ((out.rgb - target) ** 2).mean().add(out.orientation).backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in nerf.parameters()])
    for name in ("rgb", "opacity", "depth"):
        assert torch.allclose(getattr(outs[0], name), getattr(outs[1], name), atol=1e-5), name
    assert torch.allclose(outs[0].orientation, outs[1].orientation, atol=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
