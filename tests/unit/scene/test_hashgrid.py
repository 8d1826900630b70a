"""The hash encoding against a direct per-level lookup written here point by point (Instant-NGP's definition:
geometric resolutions, one-to-one indices where the level fits, the XOR-of-primes hash where it does not,
trilinear blending of the 8 corners), its coarse-to-fine levels, and the NeRF and the run that use it."""

import itertools
import math

import pytest
import torch

from dreamlift.scene.hashgrid import HashEncoding, level_resolutions


def _direct(enc: HashEncoding, u: list[float]) -> list[float]:
    """The encoding of one point with Python numbers only."""
    table = enc.table.detach()
    T = enc.table_size
    offset, out = 0, []
    for level, r in enumerate(enc.resolutions):
        size = min(T, (r + 1) ** 3)
        if level >= int(enc.active):
            out += [0.0] * enc.features
            offset += size
            continue
        pos = [min(max(c, 0.0), 1.0) * r for c in u]
        cell = [min(math.floor(p), r - 1) for p in pos]
        frac = [p - c for p, c in zip(pos, cell)]
        acc = [0.0] * enc.features
        for bits in itertools.product((0, 1), repeat=3):
            v = [c + b for c, b in zip(cell, bits)]
            if (r + 1) ** 3 <= T:
                row = (v[0] * (r + 1) + v[1]) * (r + 1) + v[2]
            else:
                row = ((v[0] * 1) ^ (v[1] * 2654435761) ^ (v[2] * 805459861)) % T
            w = 1.0
            for b, f in zip(bits, frac):
                w *= f if b else 1.0 - f
            for k in range(enc.features):
                acc[k] += w * float(table[offset + row, k])
        out += acc
        offset += size
    return out


def test_resolutions_grow_geometrically_as_instant_ngp():
    r = level_resolutions(16, 16, 4096)
    assert r[0] == 16 and r[-1] == 4096 and len(r) == 16
    b = math.exp((math.log(4096) - math.log(16)) / 15)
    assert b == pytest.approx(1.447269237440378)  # threestudio's per_level_scale for 16 -> 4096
    assert r == [math.floor(16 * b**level + 1e-6) for level in range(16)]


def test_the_encoding_equals_a_direct_per_level_lookup():
    torch.manual_seed(0)
    enc = HashEncoding(levels=6, features=2, log2_table=10, base_resolution=4, max_resolution=96)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)  # (the paper's U(-1e-4, 1e-4) would hide index errors in rounding)
    assert enc.hashed == [False, False, True, True, True, True]  # (r + 1)^3 > 1024 from r = 10 on
    pts = torch.rand(40, 3, dtype=torch.float64).float()
    pts[0] = torch.tensor([0.0, 0.0, 0.0])
    pts[1] = torch.tensor([1.0, 1.0, 1.0])  # the far corner: the last cell, weight 1 on its far vertex
    pts[2] = torch.tensor([0.5, 0.25, 0.999])
    got = enc(pts)
    assert got.shape == (40, 12)
    want = torch.tensor([_direct(enc, p.tolist()) for p in pts])
    assert torch.allclose(got, want, atol=1e-5)


def test_coarse_to_fine_reads_only_the_active_levels_and_gradients_reach_only_them():
    torch.manual_seed(1)
    enc = HashEncoding(levels=4, features=2, log2_table=8, base_resolution=2, max_resolution=16)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    enc.set_active(2)
    pts = torch.rand(16, 3)
    out = enc(pts)
    assert out[:, 4:].abs().max() == 0 and out[:, :4].abs().max() > 0
    assert torch.allclose(out, torch.tensor([_direct(enc, p.tolist()) for p in pts]), atol=1e-5)
    out.sum().backward()
    first_two = int(enc.offsets[2])
    assert enc.table.grad[:first_two].abs().sum() > 0 and enc.table.grad[first_two:].abs().sum() == 0
    enc.set_active(99)
    assert int(enc.active) == 4 and enc.finest_active_resolution() == 16
    # the active count is saved with the weights
    assert int(HashEncoding(4, 2, 8, 2, 16).state_dict()["active"]) == 4 and "active" in enc.state_dict()


def test_a_nerf_on_the_hash_grid_renders_learns_and_adds_levels_over_the_run():
    from dreamlift.generate import GenerateConfig, Generator

    class _NoObjective:
        device, resolution, LOSS_KEYS = torch.device("cpu"), 16, ()

    from dreamlift.config import with_overrides

    cfg = with_overrides(GenerateConfig(prompt="a red mug", out="unused", steps=10, area_weight=0.0, num_samples=16),
                         ["nerf.encoding=hash", "nerf.hash_levels=6", "nerf.hash_table_log2=12",
                          "nerf.hash_base_resolution=4", "nerf.hash_max_resolution=64", "nerf.hash_start_level=2",
                          "nerf.hash_start=0.2", "nerf.hash_every=0.1"]).resolved()
    gen = Generator(cfg, _NoObjective())
    scene = gen.scene
    assert scene.hash is not None and len(scene.grids) == 0 and int(scene.hash.active) == 2
    for step, progress, active in ((0, 0.0, 2), (3, 0.3, 3), (4, 0.45, 4), (9, 0.9, 6)):
        scene.before_step(step, progress, gen.rng)
        assert int(scene.hash.active) == active, progress
    # the field has a gradient through the encoding
    x = torch.rand(32, 3) * 1.6 - 0.8
    out = scene(x)
    (out.density.sum() + out.albedo.sum()).backward()
    assert scene.hash.table.grad.abs().sum() > 0
    # and the checkpoint carries the table and the level count
    state = scene.state_dict()
    assert "hash.table" in state and int(state["hash.active"]) == 6


def test_the_sd_and_if_presets_use_the_hash_grid_and_the_cpu_presets_dense_grids():
    from dreamlift.generate import GenerateConfig

    kw = dict(prompt="a corgi", out="unused")
    assert GenerateConfig(**kw).resolved().nerf.encoding == "dense"
    assert GenerateConfig(backend="stable-diffusion", **kw).resolved().nerf.encoding == "dense"
    sd = GenerateConfig(backend="stable-diffusion", preset="sd", **kw).resolved()
    assert sd.nerf.encoding == "hash" and sd.background == "learned"
    assert GenerateConfig(**kw).resolved().background == "white"


def test_a_loaded_level_count_is_the_one_a_forward_reads():
    """The active level count lives on the host too (so a forward on a GPU never reads the buffer back); loading
    weights sets both."""
    torch.manual_seed(2)
    saved = HashEncoding(levels=4, features=2, log2_table=8, base_resolution=2, max_resolution=16)
    with torch.no_grad():
        saved.table.uniform_(-1, 1)
    saved.set_active(3)
    fresh = HashEncoding(levels=4, features=2, log2_table=8, base_resolution=2, max_resolution=16)
    assert fresh.finest_active_resolution() == 16  # all four levels before loading
    fresh.load_state_dict(saved.state_dict())
    pts = torch.rand(8, 3)
    assert fresh.finest_active_resolution() == saved.finest_active_resolution() == saved.resolutions[2]
    assert torch.equal(fresh(pts), saved(pts)) and fresh(pts)[:, 6:].abs().max() == 0


def test_the_recomputing_backward_gives_autograds_table_gradient():
    torch.manual_seed(3)
    enc = HashEncoding(levels=5, features=2, log2_table=7, base_resolution=2, max_resolution=40)  # hashed levels too
    assert any(enc.hashed) and not all(enc.hashed)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    enc.set_active(4)
    u = torch.rand(300, 3)
    w = torch.randn(300, enc.out_features)
    (enc(u) * w).sum().backward()
    ours = enc.table.grad.clone()
    enc.table.grad = None
    (enc.reference(u) * w).sum().backward()
    assert torch.allclose(ours, enc.table.grad, atol=1e-5)
    assert torch.allclose(enc(u), enc.reference(u), atol=1e-6)


def test_gradcheck_in_float64_and_no_gradient_to_the_points():
    torch.manual_seed(4)
    enc = HashEncoding(levels=3, features=2, log2_table=6, base_resolution=2, max_resolution=12).double()
    u = torch.rand(20, 3, dtype=torch.float64)
    from dreamlift.scene.hashgrid import _Lookup

    table = enc.table.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _Lookup.apply(t, u, enc), (table,))
    with pytest.raises(ValueError, match="no gradient to its points"):
        enc(u.clone().requires_grad_())
