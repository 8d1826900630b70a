"""SDF primitives and operators against analytic distances and volumes."""

import math

import pytest
import torch

from dreamlift.world import sdf as S


def _mc_volume(fn, n=400_000, seed=0):
    """Monte-Carlo volume of {sdf < 0} inside the cube [-1, 1]^3 (volume 8)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    return 8.0 * (fn(p) < 0).double().mean().item()


def test_sphere_distances():
    p = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.3, 0.4, 0.0]])
    torch.testing.assert_close(S.sphere(p, 0.5), torch.tensor([-0.5, 0.5, 1.5, 0.0]))


def test_box_distances_outside_edge_corner_and_inside():
    half = (0.5, 0.25, 0.1)
    p = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.25, 0.0], [1.5, 1.25, 1.1], [0.0, 0.0, 0.0], [0.4, 0.0, 0.0]])
    want = torch.tensor([0.5, math.sqrt(0.5**2 + 1.0), math.sqrt(3.0), -0.1, -0.1])
    torch.testing.assert_close(S.box(p, half), want)


def test_torus_distances():
    p = torch.tensor([[0.6, 0.0, 0.0], [0.0, 0.0, 0.6], [0.0, 0.0, 0.0], [0.6, 0.5, 0.0], [0.9, 0.0, 0.0]])
    torch.testing.assert_close(S.torus(p, 0.6, 0.2), torch.tensor([-0.2, -0.2, 0.4, 0.3, 0.1]))


def test_cylinder_cone_capsule_distances():
    p = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.0]])
    torch.testing.assert_close(S.capped_cylinder(p, 0.5, 0.5), torch.tensor([-0.5, 0.5, 0.3]))
    # Cone of half-height 1, base radius 1 at y=-1, apex at y=+1: the side is the line
    # 2x + y = 1 in the (radius, y) plane, so the origin is 1/sqrt(5) inside.
    q = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, -2.0, 0.0]])
    torch.testing.assert_close(S.capped_cone(q, 1.0, 1.0, 0.0), torch.tensor([-1 / math.sqrt(5), 1.0, 1.0]))
    c = S.capsule(torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]), (-1, 0, 0), (1, 0, 0), 0.25)
    torch.testing.assert_close(c, torch.tensor([0.75, 0.75]))


@pytest.mark.parametrize(
    "name, fn, volume",
    [
        ("sphere", lambda p: S.sphere(p, 0.7), 4 / 3 * math.pi * 0.7**3),
        ("box", lambda p: S.box(p, (0.8, 0.5, 0.3)), 8 * 0.8 * 0.5 * 0.3),
        ("torus", lambda p: S.torus(p, 0.6, 0.25), 2 * math.pi**2 * 0.6 * 0.25**2),
        ("cylinder", lambda p: S.capped_cylinder(p, 0.5, 0.7), math.pi * 0.5**2 * 1.4),
        ("cone", lambda p: S.capped_cone(p, 0.8, 0.6, 0.0), math.pi * 0.6**2 * 1.6 / 3),
    ],
)
def test_monte_carlo_volume_matches_formula(name, fn, volume):
    # 400k samples: the relative standard error is below 0.5% for these volumes; allow 2%.
    assert _mc_volume(fn) == pytest.approx(volume, rel=0.02), name


def test_operators_and_transforms():
    a = torch.tensor([0.3, -0.2, 1.0])
    b = torch.tensor([-0.1, 0.4, 0.5])
    torch.testing.assert_close(S.union(a, b), torch.tensor([-0.1, -0.2, 0.5]))
    torch.testing.assert_close(S.intersect(a, b), torch.tensor([0.3, 0.4, 1.0]))
    torch.testing.assert_close(S.subtract(a, b), torch.tensor([0.3, -0.2, 1.0]))
    assert bool((S.smooth_union(a, b, 0.2) <= S.union(a, b) + 1e-7).all())  # smooth min never exceeds min
    p = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(S.translate(p, (1.0, 1.0, 1.0)), torch.tensor([[0.0, 1.0, 2.0]]))
    # A box long along y, rotated 90 deg about z, becomes long along x.
    long_y = lambda q: S.box(q, (0.1, 0.8, 0.1))  # noqa: E731
    tip_x = torch.tensor([[0.7, 0.0, 0.0]])
    assert long_y(tip_x).item() > 0 and long_y(S.rotate_z(tip_x, 90.0)).item() < 0
    torch.testing.assert_close(S.rotate_x(torch.tensor([[0.0, 0.0, 1.0]]), 90.0), torch.tensor([[0.0, 1.0, 0.0]]))
    torch.testing.assert_close(S.rotate_y(torch.tensor([[1.0, 0.0, 0.0]]), 90.0), torch.tensor([[0.0, 0.0, 1.0]]))


def test_round_box_rejects_too_large_radius():
    with pytest.raises(ValueError):
        S.round_box(torch.zeros(1, 3), (0.1, 0.5, 0.5), 0.2)
