"""The NeRF field: density bias, normals from the density gradient, occupancy skipping."""

import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.render.camera import CameraDistribution, LightDistribution
from dreamlift.render.volume import render_nerf
from dreamlift.scene.nerf import NeRF, NeRFConfig


@pytest.fixture
def nerf():
    # Magic3D's lambda = 10, c = 0.5 (also the default), pinned so these tests do not move with it.
    torch.manual_seed(0)
    return NeRF(NeRFConfig(blob_density=10.0, blob_radius=0.5))


def test_initial_field_is_a_soft_ball(nerf):
    r = torch.tensor([0.0, 0.3, 0.5, 0.7, 0.95])
    x = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], -1)
    d = nerf.density(x)
    assert (d[1:] < d[:-1]).all()  # decreasing outwards
    assert d[0] > 1e3 and d[-1] < 1e-2  # solid centre, empty outside the blob radius
    assert torch.allclose(nerf.density_bias(x), 10.0 * (1 - r / 0.5))


def test_normals_point_outward_on_the_blob(nerf):
    x = torch.randn(200, 3)
    x = 0.45 * x / x.norm(dim=-1, keepdim=True)
    out = nerf(x)
    n = nerf.normals(x, out.log_density)
    assert torch.allclose(n.norm(dim=-1), torch.ones(200), atol=1e-4)
    assert ((n * x / 0.45).sum(-1) > 0.99).all()


def test_normals_carry_gradients_to_the_grids(nerf):
    x = torch.rand(50, 3) - 0.5
    n = nerf.normals(x, nerf(x).log_density)
    n[:, 0].sum().backward()
    assert nerf.grids[-1].grad is not None and nerf.grids[-1].grad.abs().sum() > 0


def test_occupancy_grid_skips_only_empty_space(nerf):
    g = torch.Generator().manual_seed(0)
    nerf.occupancy.update(nerf.density, threshold=0.01, generator=g)
    frac = nerf.occupancy.occupied_fraction()
    assert 0.02 < frac < 0.5  # the blob, dilated by a cell, not the whole cube
    assert nerf.occupancy.lookup(torch.zeros(1, 3)).all()
    assert not nerf.occupancy.lookup(torch.tensor([[0.95, 0.95, 0.95], [2.0, 0.0, 0.0]])).any()
    cams = CameraDistribution().sample(2, g, height=24)
    light = LightDistribution().sample(cams, g)
    a = render_nerf(nerf, cams.camera, light, "lambertian", num_samples=48, use_occupancy=True)
    b = render_nerf(nerf, cams.camera, light, "lambertian", num_samples=48, use_occupancy=False)
    assert (a.rgb - b.rgb).abs().max() < 0.02


def test_bad_configs_are_refused():
    with pytest.raises(DreamliftError):
        NeRF(NeRFConfig(base_resolution=64, max_resolution=32))
    with pytest.raises(DreamliftError):
        NeRF(NeRFConfig(levels=0))


def test_blob_scale_multiplies_the_bias_and_travels_with_the_weights(nerf):
    x = torch.tensor([[0.1, 0.2, 0.0], [0.0, 0.0, 0.6]])
    full = nerf.density_bias(x)
    nerf.blob_scale.fill_(0.25)
    assert torch.allclose(nerf.density_bias(x), 0.25 * full)
    state = nerf.state_dict()
    assert float(state["blob_scale"]) == 0.25
    other = NeRF(NeRFConfig(blob_density=10.0, blob_radius=0.5))
    other.load_state_dict(state)
    assert float(other.blob_scale) == 0.25
    # a checkpoint from before the bias could fade has no blob_scale: it loads with the full bias
    del state["blob_scale"]
    other.load_state_dict(state)
    assert float(other.blob_scale) == 1.0
