"""The Gaussians' parameters: config validation, DreamGaussian's initialisation, and density / albedo as sums of
Gaussian kernels (checked against formulas computed here and against a dense brute-force sum)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dreamlift.config import DreamliftError
from dreamlift.scene.gaussians import Gaussians, GaussiansConfig

C0 = 0.28209479177387814


@pytest.mark.parametrize("kwargs, words", [
    ({"count": 0}, "at least 1"), ({"count": -5}, "at least 1"),
    ({"sh_degree": -1}, "degree"), ({"sh_degree": 4}, "degree"),
    ({"init_radius": 0.0}, "init_radius"), ({"init_opacity": 1.0}, "init_opacity"),
    ({"init_opacity": 0.0}, "init_opacity"),
])
def test_impossible_settings_are_one_clear_error(kwargs, words):
    cfg = GaussiansConfig(**kwargs)
    with pytest.raises(DreamliftError, match=words):
        cfg.validate()
    with pytest.raises(DreamliftError):
        Gaussians.initialise(cfg)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_every_degree_in_range_is_accepted(degree):
    GaussiansConfig(count=1, sh_degree=degree).validate()
    g = Gaussians.initialise(GaussiansConfig(count=10, sh_degree=degree), torch.Generator().manual_seed(0))
    assert g.sh.shape == (10, (degree + 1) ** 2, 3) and g.sh_degree == degree


def test_initialisation_is_dreamgaussians():
    cfg = GaussiansConfig(count=3000, init_radius=0.5, init_opacity=0.1)
    g = Gaussians.initialise(cfg, torch.Generator().manual_seed(0))
    assert g.count == 3000 and g.means.shape == (3000, 3) and g.log_scales.shape == (3000, 3)
    r = g.means.detach().norm(dim=-1)
    assert r.max() <= 0.5
    assert abs(float((r < 0.25).float().mean()) - 1 / 8) < 0.03  # uniform in volume: 1/8 inside half the radius
    assert torch.equal(g.quats.detach(), torch.tensor([[1.0, 0, 0, 0]]).expand(3000, 4))
    assert torch.allclose(g.opacity, torch.full((3000,), 0.1))
    dc = g.sh.detach()[:, 0]
    assert (dc >= 0).all() and (dc <= 1 / 255).all()  # DreamGaussian: sh ~ U(0, 1/255), nearly grey
    # isotropic scales = RMS distance to the 3 nearest other centres, checked by brute force for a few
    x = g.means.detach()
    for i in (0, 17, 2999):
        d2 = ((x - x[i]) ** 2).sum(-1)
        d2[i] = math.inf
        expected = 0.5 * math.log(float(d2.sort().values[:3].mean()))
        assert torch.allclose(g.log_scales.detach()[i], torch.full((3,), expected), atol=1e-5)
    again = Gaussians.initialise(cfg, torch.Generator().manual_seed(0))
    assert torch.equal(again.means, g.means) and torch.equal(again.sh, g.sh)
    assert all(p.requires_grad for p in g.parameters()) and len(list(g.parameters())) == 5


def _one(mean, scales, quat, opacity, rgb=(0.5, 0.5, 0.5)):
    sh = ((torch.tensor(rgb) - 0.5) / C0).reshape(1, 1, 3)
    return (torch.tensor([mean]), torch.log(torch.tensor([scales])), torch.tensor([quat]),
            torch.tensor([math.log(opacity / (1 - opacity))]), sh)


def _join(*gaussians):
    return Gaussians(*(torch.cat(parts) for parts in zip(*gaussians)))


def test_density_of_one_gaussian_is_its_kernel_within_three_sigma():
    quat = np.array([0.7, -0.2, 0.5, 0.4]) / np.linalg.norm([0.7, -0.2, 0.5, 0.4])
    scales = np.array([0.2, 0.05, 0.1])
    mean = np.array([0.1, -0.3, 0.2])
    g = Gaussians(*_one(mean.tolist(), scales.tolist(), quat.tolist(), 0.6))
    rot = Rotation.from_quat(quat, scalar_first=True).as_matrix()
    inv = rot @ np.diag(scales**-2.0) @ rot.T
    rng = np.random.default_rng(0)
    pts = mean + (rng.normal(size=(4000, 3)) * 0.25)
    m2 = np.einsum("ni,ij,nj->n", pts - mean, inv, pts - mean)
    expected = np.where(m2 <= 9, 0.6 * np.exp(-0.5 * m2), 0.0)
    got = g.density(torch.from_numpy(pts).float()).detach().numpy()
    assert (m2 <= 9).sum() > 500 and (m2 > 9).sum() > 500  # points on both sides of the cut-off
    assert np.allclose(got, expected, atol=1e-5)


def test_density_and_albedo_of_two_gaussians():
    red = _one([-0.5, 0, 0], [0.1, 0.1, 0.1], [1.0, 0, 0, 0], 0.9, (0.9, 0.1, 0.1))
    blue = _one([0.5, 0, 0], [0.1, 0.1, 0.1], [1.0, 0, 0, 0], 0.5, (0.1, 0.1, 0.9))
    g = _join(red, blue)
    pts = torch.tensor([[-0.5, 0, 0], [0.5, 0, 0], [-0.45, 0.05, 0], [0.0, 0.0, 0.0], [0.0, 0.9, 0.0]])
    d = g.density(pts)
    assert torch.allclose(d[:2], torch.tensor([0.9, 0.5]), atol=1e-6)
    assert torch.allclose(d[2], torch.tensor(0.9 * math.exp(-0.5 * 0.5)), atol=1e-6)  # m^2 = (0.05^2 * 2) / 0.01
    assert d[3] == 0 and d[4] == 0  # 5 sigma from both
    a = g.albedo(pts)
    assert torch.allclose(a[0], torch.tensor([0.9, 0.1, 0.1]), atol=1e-5)
    assert torch.allclose(a[1], torch.tensor([0.1, 0.1, 0.9]), atol=1e-5)
    assert torch.allclose(a[4], torch.full((3,), 0.5))  # nothing there: mid-grey
    # overlapping: the kernel-weighted mean colour
    g2 = _join(_one([-0.05, 0, 0], [0.1] * 3, [1.0, 0, 0, 0], 0.9, (0.9, 0.1, 0.1)),
               _one([0.05, 0, 0], [0.1] * 3, [1.0, 0, 0, 0], 0.5, (0.1, 0.1, 0.9)))
    p = torch.tensor([[0.02, 0.0, 0.0]])
    w = torch.tensor([0.9 * math.exp(-0.5 * 0.7**2), 0.5 * math.exp(-0.5 * 0.3**2)])
    expected = (w[0] * torch.tensor([0.9, 0.1, 0.1]) + w[1] * torch.tensor([0.1, 0.1, 0.9])) / w.sum()
    assert torch.allclose(g2.albedo(p)[0], expected, atol=1e-5)
    assert torch.allclose(g2.density(p)[0], w.sum(), atol=1e-6)


def test_sparse_field_equals_a_dense_sum_over_all_gaussians():
    gen = torch.Generator().manual_seed(1)
    n = 300
    means = torch.rand(n, 3, generator=gen) * 1.6 - 0.8
    log_scales = torch.log(torch.rand(n, 3, generator=gen) * 0.2 + 0.01)  # from 0.01 to 0.21: cells meet many sizes
    g = Gaussians(means, log_scales, torch.randn(n, 4, generator=gen), torch.randn(n, generator=gen),
                  torch.randn(n, 1, 3, generator=gen) * 0.5)
    pts = torch.rand(3000, 3, generator=gen) * 2.2 - 1.1
    d = pts[:, None, :] - means[None]  # (M, N, 3) dense, only in the test
    m2 = torch.einsum("mni,nij,mnj->mn", d, torch.linalg.inv(g.covariances().detach()), d)
    w = torch.where(m2 <= 9, g.opacity.detach() * torch.exp(-0.5 * m2), torch.zeros_like(m2))
    assert torch.allclose(g.density(pts).detach(), w.sum(1), atol=1e-5)
    colour = (w @ g.colours().detach()) / w.sum(1, keepdim=True).clamp_min(1e-12)
    hit = w.sum(1) > 1e-3
    assert hit.sum() > 500
    assert torch.allclose(g.albedo(pts).detach()[hit], colour[hit], atol=1e-4)


@pytest.mark.parametrize("budget", [1 << 23, 5000])  # one block, and many (some of one Gaussian, over budget)
def test_density_on_the_mesh_grid_equals_a_dense_sum_over_all_gaussians(budget):
    """Gaussians splatted over their own boxes of grid points give the field's sum at every grid point, also for
    Gaussians that reach past the grid or lie outside it."""
    from dreamlift.export.mesh import _grid_points

    gen = torch.Generator().manual_seed(2)
    n = 200
    means = torch.rand(n, 3, generator=gen) * 2.6 - 1.3  # some centres outside [-1, 1]^3
    log_scales = torch.log(torch.rand(n, 3, generator=gen) * 0.2 + 0.01)
    g = Gaussians(means, log_scales, torch.randn(n, 4, generator=gen), torch.randn(n, generator=gen),
                  torch.randn(n, 1, 3, generator=gen) * 0.5)
    r = 21
    pts = _grid_points(torch.arange(r**3), r, 1.0, torch.device("cpu")).double()
    d = pts[:, None, :] - means.double()[None]  # (M, N, 3) dense, only in the test
    m2 = torch.einsum("mni,nij,mnj->mn", d, torch.linalg.inv(g.covariances().detach().double()), d)
    w = torch.where(m2 <= 9, g.opacity.detach().double() * torch.exp(-0.5 * m2), torch.zeros_like(m2))
    got = g.density_grid(r, 1.0, budget=budget)
    assert got.shape == (r, r, r) and (w.sum(1) > 0.01).sum() > 1000
    assert torch.allclose(got.reshape(-1).double(), w.sum(1), atol=1e-5)
    assert torch.allclose(got.reshape(-1), g.density(pts.float()).detach(), atol=1e-5)


def test_shapes_are_checked():
    good = [torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 4), torch.zeros(4), torch.zeros(4, 1, 3)]
    Gaussians(*good)
    for i, bad in [(0, torch.zeros(4, 2)), (2, torch.zeros(4, 3)), (3, torch.zeros(4, 1)), (4, torch.zeros(4, 2, 3))]:
        with pytest.raises(ValueError):
            Gaussians(*[bad if j == i else t for j, t in enumerate(good)])


def test_the_3d_filter_widens_every_axis_by_its_variance():
    # Sigma + f^2 I keeps Sigma's axes: its eigenvalues are s_k^2 + f^2; the field uses the filtered Gaussian.
    quat = [0.7, -0.2, 0.5, 0.4]
    g = Gaussians(*_one([0.1, -0.3, 0.2], [0.2, 0.01, 0.1], quat, 0.6))
    plain = g.covariances().detach()
    g.filter_scale = 0.05
    assert torch.equal(g.covariances().detach(), plain)  # training mode: the filter is for the outputs only
    g.eval()
    filtered = g.covariances().detach()
    assert torch.allclose(filtered, plain + 0.05**2 * torch.eye(3), atol=1e-7)
    assert torch.allclose(g.filtered_log_scales.exp(), torch.tensor([[0.2, 0.01, 0.1]]).pow(2).add(0.05**2).sqrt(),
                          atol=1e-6)
    centre = torch.tensor([[0.1, -0.3, 0.2]])
    assert torch.allclose(g.density(centre), torch.tensor([0.6]), atol=1e-6)  # the peak opacity is kept
    off = centre + torch.tensor([[0.0, 0.0, 0.0]]) + torch.from_numpy(
        Rotation.from_quat(np.array(quat) / np.linalg.norm(quat), scalar_first=True).as_matrix()[:, 1]).float() * 0.05
    # 0.05 along the thin axis: 5 sigma unfiltered (cut off), about 1 sigma filtered
    g.filter_scale = 0.0
    assert g.density(off).item() == 0.0
    g.filter_scale = 0.05
    assert abs(g.density(off).item() - 0.6 * math.exp(-0.5 * 0.05**2 / (0.01**2 + 0.05**2))) < 1e-5


def test_each_parameter_group_has_its_learning_rate_and_the_positions_theirs_from_the_config():
    from dreamlift.scene.gaussian_scene import LR_SCALES, GaussianScene

    groups = {g["name"]: g for g in GaussianScene(GaussiansConfig(count=8, position_lr_scale=0.3,
                                                                  position_lr_final=0.05)).param_groups()}
    assert set(groups) == set(LR_SCALES)
    assert groups["means"]["lr_scale"] == 0.3 and groups["means"]["lr_final"] == 0.05
    for name in set(LR_SCALES) - {"means"}:
        assert groups[name]["lr_scale"] == LR_SCALES[name] and groups[name]["lr_final"] == 1.0
    # a scene built outside the commands, its position rate unset, takes DreamGaussian's 0.001 at lr 0.01
    unset = {g["name"]: g for g in GaussianScene(GaussiansConfig(count=8)).param_groups()}
    assert unset["means"]["lr_scale"] == LR_SCALES["means"] == 0.1


def _targets(extent):
    from dreamlift.guidance.silhouette import SilhouetteTargets

    words = ("front", "side", "back", "overhead")
    return SilhouetteTargets({w: 0.1 for w in words}, {w: 0.0 for w in words}, 8, extent)


@pytest.mark.parametrize("shape", ["ball", "silhouettes"])
def test_a_fresh_start_takes_the_silhouettes_proportions_at_the_balls_volume(shape):
    """With init_shape 'silhouettes' the ball of centres is stretched into the ellipsoid of the ball's volume
    in the area prior's proportions (half axes kept within [0.15, 0.95]), uniform in it, with sizes from the
    new neighbours; no random numbers are drawn."""
    from dreamlift.scene.gaussian_scene import GaussianScene
    from dreamlift.scene.gaussians import _knn_log_scale

    torch.manual_seed(0)
    scene = GaussianScene(GaussiansConfig(count=4000, init_radius=0.5, init_shape=shape))
    before = scene.means.detach().clone()
    # a flat, wide object: width 0.6, height 0.15, depth 0.3 of the frame -> proportions 2 : 0.5 : 1
    flat = _targets({"front": (0.6, 0.15), "back": (0.6, 0.15), "side": (0.3, 0.2), "overhead": (0.5, 0.5)})
    expected = torch.tensor([1.0, 0.25, 0.5])  # 0.5 * (2, 0.5, 1): the ball's volume, 0.5^3
    assert float(expected.prod()) == pytest.approx(0.5**3)
    rng = torch.get_rng_state()
    scene.start_from(flat)
    assert torch.equal(torch.get_rng_state(), rng)
    m = scene.means.detach()
    if shape == "ball":
        assert torch.equal(m, before)
        return
    expected[0] = 0.95  # the clamp
    assert torch.allclose(m, before * expected / 0.5)
    assert float(((m / expected) ** 2).sum(-1).max()) <= 1 + 1e-5  # inside the ellipsoid ...
    assert torch.allclose(m.abs().amax(0), expected, rtol=0.05)  # ... and filling it
    assert torch.equal(scene.log_scales.detach(), _knn_log_scale(m)[:, None].expand(-1, 3))
    # without the area prior, with targets saved before extents existed, or a view with nothing: the ball stays
    empty_side = {"front": (0.6, 0.15), "back": (0.6, 0.15), "side": (0.0, 0.0), "overhead": (0.5, 0.5)}
    for none in (None, _targets(None), _targets(empty_side)):
        other = GaussianScene(GaussiansConfig(count=50, init_shape=shape))
        kept = other.means.detach().clone()
        other.start_from(none)
        assert torch.equal(other.means.detach(), kept)
