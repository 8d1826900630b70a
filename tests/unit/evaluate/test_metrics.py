"""3D quality metrics against exact answers: analytic volumes, known rotations, published colour data."""

import importlib.util
import math
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlift.config import DreamliftError
from dreamlift.evaluate.classifier import Prediction
from dreamlift.evaluate.metrics import (
    best_rotation_iou, chamfer_distance, delta_e76, delta_e2000, grid_iou, occupancy_grid, r_precision,
    srgb_to_lab, suite_prompt_scores, surface_points_from_density, volumetric_iou,
)
from dreamlift.world import get_object
from dreamlift.world import sdf as S


def ball(radius, centre=(0.0, 0.0, 0.0)):
    return lambda p: S.sphere(S.translate(p, centre), radius) < 0


needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                   reason="surface sampling needs scikit-image (pip install .[metrics])")


def sphere_points(n, radius, seed=0):
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True) * radius


# ----------------------------------------------------------------------------- volumes


def test_iou_of_an_object_with_itself_is_one():
    chair = get_object("chair", "red")
    assert volumetric_iou(chair.occupancy, chair.occupancy) == 1.0


@pytest.mark.parametrize("d, resolution", [(0.2, 64), (0.45, 96), (0.3, 80)])
def test_iou_of_shifted_spheres_matches_the_lens_volume(d, resolution):
    """Two balls of radius r, centres d apart: V_int = pi (4r + d)(2r - d)^2 / 12."""
    r = 0.5
    v_int = math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    v_ball = 4 / 3 * math.pi * r ** 3
    expected = v_int / (2 * v_ball - v_int)
    shift = torch.tensor([1.0, 0.5, -0.3]) / math.sqrt(1.34) * d  # off-axis, so no lucky alignment
    a, b = ball(r, (-shift / 2).tolist()), ball(r, (shift / 2).tolist())
    assert volumetric_iou(a, b, resolution) == pytest.approx(expected, rel=0.02)


def test_disjoint_is_zero_and_float_occupancy_is_thresholded():
    assert volumetric_iou(ball(0.3, (-0.5, 0, 0)), ball(0.3, (0.5, 0, 0)), 32) == 0.0
    soft = lambda p: (S.sphere(p, 0.5) < 0).float() * 0.9 + 0.05  # 0.95 inside, 0.05 outside
    assert volumetric_iou(soft, ball(0.5), 32) == 1.0


def test_rotation_sign_convention():
    """Rotating by +90 about +y sends the front (+z) to +x, as world.sdf.rotate_y does."""
    nose = ball(0.2, (0.0, 0.0, 0.6))  # a bump on the front
    grid = occupancy_grid(nose, resolution=20, rotation_deg=90.0)
    centre = lambda x, y, z: tuple(int((c + 1) / 2 * 20) for c in (x, y, z))  # voxel index holding a point
    assert grid[centre(0.6, 0.0, 0.0)] and not grid[centre(-0.6, 0.0, 0.0)] and not grid[centre(0.0, 0.0, 0.6)]
    moved = lambda p: nose(S.rotate_y(p, 90.0))
    assert grid_iou(grid, occupancy_grid(moved, resolution=20)) == 1.0
    assert occupancy_grid(nose, resolution=20).shape == (20, 20, 20)


class CountingField:
    def __init__(self, fn):
        self.fn, self.points = fn, 0

    def __call__(self, p):
        assert p.dtype == torch.float32 and p.shape[1] == 3
        self.points += p.shape[0]
        return self.fn(p)


@pytest.mark.parametrize("category, turn", [("chair", 71.7), ("car", -66.9)])  # off the 5-degree coarse grid
def test_best_rotation_recovers_a_known_turn(category, turn):
    obj = get_object(category, "blue")
    pred = CountingField(lambda p: obj.occupancy(S.rotate_y(p, turn)))  # the object turned by +turn
    gt = CountingField(obj.occupancy)
    iou, angle = best_rotation_iou(pred, gt, resolution=64, num_angles=72)
    assert angle == pytest.approx(-turn, abs=1.0)  # undoing the turn, with its sign; coarse alone: 1.7, 1.9 off
    # Voxel IoU of the thin-legged chair drops to 0.93 a half degree off (legs cross voxel centres).
    assert iou >= (0.92 if category == "chair" else 0.98)
    assert volumetric_iou(pred, gt) < iou - 0.2  # unrotated, the match is much worse
    # Efficiency: the prediction is evaluated on one resampling grid (~2.3 R^3) plus once to report
    # the exact IoU, the ground truth once, whatever the number of angles.
    pred.points = gt.points = 0
    best_rotation_iou(pred, gt, resolution=32, num_angles=72)
    assert pred.points <= 3.5 * 32 ** 3 and gt.points == 32 ** 3


def test_best_rotation_of_an_unturned_object_is_zero():
    car = get_object("car", "red")
    iou, angle = best_rotation_iou(car.occupancy, car.occupancy, resolution=32, num_angles=36)
    assert iou == 1.0 and angle == 0.0


# ----------------------------------------------------------------------------- surfaces


def test_chamfer_of_identical_sets_is_zero_and_symmetric():
    a = torch.rand(3000, 3, generator=torch.Generator().manual_seed(1))
    b = torch.rand(2000, 3, generator=torch.Generator().manual_seed(2))
    assert chamfer_distance(a, a) == 0.0
    assert chamfer_distance(a, b) == pytest.approx(chamfer_distance(b, a), rel=1e-9)


def test_chamfer_matches_brute_force_whatever_the_chunking():
    a = torch.randn(700, 3, generator=torch.Generator().manual_seed(3))
    b = torch.randn(900, 3, generator=torch.Generator().manual_seed(4))
    d = torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")
    expected = 0.5 * (d.min(1).values.mean() + d.min(0).values.mean())
    expected_sq = 0.5 * (d.min(1).values.square().mean() + d.min(0).values.square().mean())
    for chunk in (1000, 12345, 1 << 24):  # a few rows per block ... all at once
        assert chamfer_distance(a, b, chunk_elements=chunk) == pytest.approx(float(expected), rel=1e-6)
        assert chamfer_distance(a, b, squared=True, chunk_elements=chunk) == pytest.approx(float(expected_sq),
                                                                                            rel=1e-6)


def test_chamfer_of_concentric_spheres_is_the_gap():
    r, delta = 0.5, 0.04
    inner = sphere_points(4000, r, seed=5)
    assert chamfer_distance(inner, inner * (r + delta) / r) == pytest.approx(delta, rel=1e-5)  # radial pairs
    assert chamfer_distance(inner, inner * (r + delta) / r, squared=True) == pytest.approx(delta ** 2, rel=1e-4)
    # Independent samples: the nearest neighbour is a little further than the gap. For a Poisson
    # process of density rho on a plane at height delta, P(D > t) = exp(-rho pi (t^2 - delta^2)), so
    # E[D] = delta + exp(rho pi delta^2) erfc(delta sqrt(rho pi)) / (2 sqrt(rho)).
    outer = sphere_points(5000, r + delta, seed=6)

    def expected_nn(n, radius):
        rho = n / (4 * math.pi * radius ** 2)
        return delta + math.exp(rho * math.pi * delta ** 2) * math.erfc(delta * math.sqrt(rho * math.pi)) / (
            2 * math.sqrt(rho))

    expected = 0.5 * (expected_nn(5000, r + delta) + expected_nn(4000, r))  # 0.0428, not 0.04
    assert chamfer_distance(inner, outer) == pytest.approx(expected, rel=0.01)


@needs_skimage
def test_surface_points_of_a_sphere_lie_on_it():
    r = 0.6
    pts = surface_points_from_density(lambda p: -S.sphere(p, r), 0.0, 5000, resolution=64,
                                      generator=torch.Generator().manual_seed(0))
    assert pts.shape == (5000, 3) and pts.dtype == torch.float32
    assert (pts.norm(dim=-1) - r).abs().max() < 2e-3
    # Area-uniform: balanced between hemispheres, and the six 30-degree caps around the axes hold
    # their area's share 3 (1 - cos 30) = 0.402 (marching cubes packs more, smaller triangles where
    # the surface runs diagonally to the grid: picking triangles uniformly would give 0.34).
    assert pts.mean(0).abs().max() < 0.02
    assert (pts[:, 1] > 0).float().mean() == pytest.approx(0.5, abs=0.03)
    axis_cos = (pts / pts.norm(dim=-1, keepdim=True)).abs().amax(dim=-1)
    assert (axis_cos > math.cos(math.radians(30))).float().mean() == pytest.approx(0.402, abs=0.02)
    # A 0/1 occupancy field is meshed half-way between voxel centres: within a voxel (h = 2/64).
    occ = surface_points_from_density(lambda p: (S.sphere(p, r) < 0).float(), 0.5, 2000, resolution=64)
    assert (occ.norm(dim=-1) - r).abs().max() < 2 / 64


@needs_skimage
def test_surface_points_are_uniform_inside_each_triangle():
    """The plane z = 0.1 on a 4^3 grid: two big triangles per voxel cell, points uniform across the cell."""
    pts = surface_points_from_density(lambda p: 0.1 - p[:, 2], 0.0, 8000, resolution=4,
                                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pts[:, 2], torch.full((8000,), 0.1))
    assert pts[:, :2].abs().max() <= 0.75 + 1e-6  # the mesh spans the voxel centres, |x|, |y| <= 0.75
    within = ((pts[:, :2] + 0.75) / 0.5) % 1  # position inside the cell, in [0, 1)^2
    torch.testing.assert_close(within.mean(0), torch.full((2,), 0.5), atol=0.015, rtol=0)
    assert ((within < 0.5).all(dim=1)).float().mean() == pytest.approx(0.25, abs=0.02)


@needs_skimage
def test_surface_points_of_a_world_object_match_its_surface_samples():
    mug = get_object("mug", "red")
    g = torch.Generator().manual_seed(0)
    ours = surface_points_from_density(lambda p: -mug.sdf(p), 0.0, 3000, resolution=64, generator=g)
    truth, truth2 = mug.surface_samples(3000, generator=g), mug.surface_samples(3000, generator=g)
    err = mug.sdf(ours).abs()
    assert err.median() < 1e-3 and err.max() < 1 / 64  # chords cut the sharp rim by less than h / 2
    # As close to the truth as a second draw of the truth itself (the gap is sampling spacing).
    baseline = chamfer_distance(truth2, truth)
    assert chamfer_distance(ours, truth) < 1.05 * baseline
    shifted = surface_points_from_density(lambda p: -mug.sdf(p + 0.03), 0.0, 3000, resolution=64, generator=g)
    assert chamfer_distance(shifted, truth) > 1.3 * baseline


# ----------------------------------------------------------------------------- colour

# Published sRGB (D65) -> L*a*b* values (Lindbloom's and EasyRGB's calculators; 8-bit grey 128).
PUBLISHED_LAB = [
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((128 / 255, 128 / 255, 128 / 255), (53.585, 0.0, 0.0)),
]


def test_srgb_to_lab_of_white_black_and_primaries():
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(lab, torch.tensor([[100.0, 0, 0], [0, 0, 0]], dtype=torch.float64), atol=1e-4,
                               rtol=0)
    rgb = torch.tensor([c for c, _ in PUBLISHED_LAB], dtype=torch.float64)
    expected = torch.tensor([e for _, e in PUBLISHED_LAB], dtype=torch.float64)
    assert (srgb_to_lab(rgb) - expected).abs().max() < 0.1
    assert srgb_to_lab(torch.rand(2, 5, 3)).shape == (2, 5, 3)  # any leading dims
    # linear=True skips the transfer curve: sRGB 0.5 is linear ((0.5 + 0.055) / 1.055)^2.4.
    linear = torch.full((3,), ((0.5 + 0.055) / 1.055) ** 2.4, dtype=torch.float64)
    grey = torch.full((3,), 0.5, dtype=torch.float64)
    torch.testing.assert_close(srgb_to_lab(linear, linear=True), srgb_to_lab(grey))


def test_srgb_to_lab_agrees_with_scikit_image():
    color = pytest.importorskip("skimage.color")
    rgb = torch.rand(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = torch.from_numpy(color.rgb2lab(rgb.numpy()))
    assert (srgb_to_lab(rgb) - ref).abs().max() < 0.1


# Sharma, Wu & Dalal 2005, Table 1 (L1 a1 b1 L2 a2 b2 dE00): the hue-wrap, discontinuity and
# rotation-term cases (pairs 1-4, 7-17, 25-34).
SHARMA = """
50.0000 2.6772 -79.7751 50.0000 0.0000 -82.7485 2.0425
50.0000 3.1571 -77.2803 50.0000 0.0000 -82.7485 2.8615
50.0000 2.8361 -74.0200 50.0000 0.0000 -82.7485 3.4412
50.0000 -1.3802 -84.2814 50.0000 0.0000 -82.7485 1.0000
50.0000 0.0000 0.0000 50.0000 -1.0000 2.0000 2.3669
50.0000 -1.0000 2.0000 50.0000 0.0000 0.0000 2.3669
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0009 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0010 7.1792
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0011 7.2195
50.0000 2.4900 -0.0010 50.0000 -2.4900 0.0012 7.2195
50.0000 -0.0010 2.4900 50.0000 0.0009 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0010 -2.4900 4.8045
50.0000 -0.0010 2.4900 50.0000 0.0011 -2.4900 4.7461
50.0000 2.5000 0.0000 50.0000 0.0000 -2.5000 4.3065
50.0000 2.5000 0.0000 73.0000 25.0000 -18.0000 27.1492
60.2574 -34.0099 36.2677 60.4626 -34.1751 39.4387 1.2644
63.0109 -31.0961 -5.8663 62.8187 -29.7946 -4.0864 1.2630
61.2901 3.7196 -5.3901 61.4292 2.2480 -4.9620 1.8731
35.0831 -44.1164 3.7933 35.0232 -40.0716 1.5901 1.8645
22.7233 20.0904 -46.6940 23.0331 14.9730 -42.5619 2.0373
36.4612 47.8580 18.3852 36.2715 50.5065 21.2231 1.4146
90.8027 -2.0831 1.4410 91.1528 -1.6435 0.0447 1.4441
90.9257 -0.5406 -0.9208 88.6381 -0.8985 -0.7239 1.5381
6.7747 -0.2908 -2.4247 5.8714 -0.0985 -2.2286 0.6377
2.0776 0.0795 -1.1350 0.9033 -0.0636 -0.5514 0.9082
"""


def test_ciede2000_matches_sharma_table():
    rows = torch.tensor([[float(v) for v in line.split()] for line in SHARMA.strip().splitlines()],
                        dtype=torch.float64)
    lab1, lab2, expected = rows[:, :3], rows[:, 3:6], rows[:, 6]
    # The table is printed to 4 decimals: a correct implementation is within 5e-5 of it.
    assert (delta_e2000(lab1, lab2) - expected).abs().max() < 1e-4
    assert (delta_e2000(lab2, lab1) - expected).abs().max() < 1e-4  # symmetric


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=3, max_size=3))
def test_delta_e_of_identical_colours_is_zero(rgb):
    lab = srgb_to_lab(torch.tensor(rgb, dtype=torch.float64))
    assert float(delta_e76(lab, lab)) == 0.0
    assert float(delta_e2000(lab, lab)) == 0.0


def test_delta_e76_and_broadcasting():
    assert float(delta_e76(torch.tensor([50.0, 30, 40]), torch.tensor([50.0, 0, 0]))) == pytest.approx(50.0)
    many = torch.rand(4, 3) * 50
    assert delta_e2000(many, torch.tensor([50.0, 0, 0])).shape == (4,)
    assert delta_e76(many[:, None], many[None]).shape == (4, 4)


# ----------------------------------------------------------------------------- R-Precision


def test_r_precision_of_exact_scores_is_one():
    assert r_precision(torch.eye(6), torch.arange(6)) == 1.0
    assert r_precision(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long)) == pytest.approx(0.2)  # ties: chance


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(8))))
def test_r_precision_of_a_shuffled_assignment_counts_fixed_points(perm):
    perm = torch.tensor(perm)
    scores = torch.eye(8)[perm]  # view v scores prompt perm[v] highest
    expected = float((perm == torch.arange(8)).float().mean())
    assert r_precision(scores, torch.arange(8)) == pytest.approx(expected)


def test_suite_prompt_scores_are_joint_log_likelihoods():
    cat = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    col = torch.tensor([[0.1, 0.9], [0.6, 0.4]])
    pred = Prediction(cat, col, torch.full((2, 4), 0.25))
    prompts_cat, prompts_col = [0, 0, 2, 2], [0, 1, 0, 1]
    scores = suite_prompt_scores(pred, prompts_cat, prompts_col)
    assert scores.shape == (2, 4)
    assert float(scores[0, 1]) == pytest.approx(math.log(0.7) + math.log(0.9))
    assert scores.argmax(1).tolist() == [1, 2]  # "(cat 0, colour 1)" and "(cat 2, colour 0)"
    assert r_precision(scores, torch.tensor([1, 2])) == 1.0
    shape_only = suite_prompt_scores(pred, prompts_cat, use_colour=False)
    assert float(shape_only[1, 2]) == pytest.approx(math.log(0.8))
    assert r_precision(shape_only, torch.tensor([1, 2])) == 0.5  # view 0 ties prompts 0 and 1


# ----------------------------------------------------------------------------- bad input


@needs_skimage
def test_surface_sampling_without_a_surface_or_without_scikit_image(monkeypatch):
    with pytest.raises(DreamliftError, match="threshold"):
        surface_points_from_density(lambda p: -S.sphere(p, 0.5), 10.0, 10, resolution=8)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)  # import fails as if not installed
    with pytest.raises(DreamliftError, match="scikit-image"):
        surface_points_from_density(lambda p: -S.sphere(p, 0.5), 0.0, 10, resolution=8)


def test_bad_inputs_raise_dreamlift_error():
    good = ball(0.5)
    with pytest.raises(DreamliftError, match="shape"):
        occupancy_grid(lambda p: good(p)[:, None], 8)
    with pytest.raises(DreamliftError, match=r"\[0, 1\]"):
        occupancy_grid(lambda p: -S.sphere(p, 0.5) * 10, 8)  # a density, not an occupancy
    with pytest.raises(DreamliftError, match="empty"):
        volumetric_iou(ball(0.01, (0.5, 0.5, 0.5)), ball(0.01, (0.5, 0.5, 0.5)), 8)
    with pytest.raises(DreamliftError, match="resolution"):
        volumetric_iou(good, good, 1)
    with pytest.raises(DreamliftError, match="empty"):
        best_rotation_iou(good, lambda p: torch.zeros(p.shape[0], dtype=torch.bool), 8)
    with pytest.raises(DreamliftError, match="empty"):
        chamfer_distance(torch.zeros(0, 3), torch.zeros(5, 3))
    with pytest.raises(DreamliftError, match=r"\(N, 3\)"):
        chamfer_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(DreamliftError, match="NaN"):
        chamfer_distance(torch.full((5, 3), math.nan), torch.zeros(5, 3))
    with pytest.raises(DreamliftError, match="n must"):
        surface_points_from_density(lambda p: -S.sphere(p, 0.5), 0.0, 0, resolution=8)
    with pytest.raises(DreamliftError, match=r"\(\.\.\., 3\)"):
        srgb_to_lab(torch.rand(4, 4))
    with pytest.raises(DreamliftError, match=r"\[0, 1\]"):
        srgb_to_lab(torch.tensor([1.5, 0.0, 0.0]))
    with pytest.raises(DreamliftError, match=r"\(\.\.\., 3\)"):
        delta_e2000(torch.rand(3), torch.rand(2))
    with pytest.raises(DreamliftError, match=r"\(V, P\)"):
        r_precision(torch.rand(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(DreamliftError, match="true_index"):
        r_precision(torch.rand(5, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DreamliftError, match="true_index"):
        r_precision(torch.rand(5, 3), torch.full((5,), 3))
    pred = Prediction(torch.full((2, 3), 1 / 3), torch.full((2, 2), 0.5), torch.full((2, 4), 0.25))
    with pytest.raises(DreamliftError, match="probabilities"):
        suite_prompt_scores(Prediction(torch.randn(2, 3), pred.colour, pred.view), [0], [0])
    with pytest.raises(DreamliftError, match="classes"):
        suite_prompt_scores(pred, [0, 3], [0, 1])
    with pytest.raises(DreamliftError, match="prompt colours"):
        suite_prompt_scores(pred, [0, 1], [0])
    with pytest.raises(DreamliftError, match="prompt_colours"):
        suite_prompt_scores(pred, [0, 1])
