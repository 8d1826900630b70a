"""The 3DGS .ply: graphdeco-inria's header order and values, read back by plyfile (an independent reader) and by
read_ply, and files written by plyfile the way graphdeco's save_ply writes them read by read_ply."""

import numpy as np
import pytest
import torch

from dreamlift.config import DreamliftError
from dreamlift.export.ply import ply_property_names, read_ply, write_ply
from dreamlift.scene.gaussians import Gaussians

plyfile = pytest.importorskip("plyfile", reason="plyfile (the test extra) reads the .ply independently")

# graphdeco-inria/gaussian-splatting, GaussianModel.construct_list_of_attributes, at degree 0
STANDARD_DEGREE_0 = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                     "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def _random(n, degree, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3, torch.randn(n, 4, generator=g),
                     torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g))


def test_property_names_are_graphdecos():
    assert ply_property_names(0) == STANDARD_DEGREE_0
    names3 = ply_property_names(3)
    assert names3[:9] == STANDARD_DEGREE_0[:9] and names3[-8:] == STANDARD_DEGREE_0[-8:]
    assert names3[9:-8] == [f"f_rest_{i}" for i in range(45)]


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_plyfile_reads_the_standard_layout_and_values(tmp_path, degree):
    g = _random(57, degree)
    path = write_ply(g, tmp_path / "model.ply")
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert header.startswith("ply\nformat binary_little_endian 1.0\nelement vertex 57\n")
    ply = plyfile.PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    assert [p.name for p in v.properties] == ply_property_names(degree)
    assert all(v.data.dtype[name] == np.dtype("<f4") for name in v.data.dtype.names)

    def col(*names):
        return torch.from_numpy(np.stack([v[name] for name in names], -1))

    k = (degree + 1) ** 2
    sh = g.sh.detach()
    assert torch.equal(col("x", "y", "z"), g.means.detach())
    assert torch.equal(col("nx", "ny", "nz"), torch.zeros(57, 3))
    assert torch.equal(col("f_dc_0", "f_dc_1", "f_dc_2"), sh[:, 0])
    for c in range(3):  # channel-major: f_rest_{c (K - 1) + j} is coefficient j + 1 of channel c
        for j in range(k - 1):
            assert torch.equal(col(f"f_rest_{c * (k - 1) + j}")[:, 0], sh[:, j + 1, c])
    assert torch.equal(col("opacity")[:, 0], g.opacity_logits.detach())
    assert torch.equal(col("scale_0", "scale_1", "scale_2"), g.log_scales.detach())
    assert torch.equal(col("rot_0", "rot_1", "rot_2", "rot_3"), g.quats.detach())  # w first, as stored


@pytest.mark.parametrize("degree", [0, 2, 3])
def test_read_ply_round_trips(tmp_path, degree):
    g = _random(33, degree, seed=degree)
    back = read_ply(write_ply(g, tmp_path / "m.ply"))
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        assert torch.equal(getattr(back, name).detach(), getattr(g, name).detach()), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ply"]  # the atomic write left no temporary file


def test_read_ply_reads_what_graphdecos_save_ply_writes(tmp_path):
    # save_ply: xyz, zero normals, f_dc, f_rest = features_rest.transpose(1, 2).flatten(1), opacity, scale, rotation
    rng = np.random.default_rng(0)
    n, rest = 20, rng.normal(size=(20, 3, 3)).astype("f4")  # (N, K - 1, 3) at degree 1
    xyz, dc = rng.normal(size=(n, 3)).astype("f4"), rng.normal(size=(n, 3)).astype("f4")
    opac, scale, rot = rng.normal(size=(n, 1)).astype("f4"), rng.normal(size=(n, 3)).astype("f4"), \
        rng.normal(size=(n, 4)).astype("f4")
    f_rest = rest.transpose(0, 2, 1).reshape(n, -1)
    attributes = np.concatenate([xyz, np.zeros_like(xyz), dc, f_rest, opac, scale, rot], axis=1)
    elements = np.empty(n, dtype=[(name, "f4") for name in ply_property_names(1)])
    elements[:] = list(map(tuple, attributes))
    plyfile.PlyData([plyfile.PlyElement.describe(elements, "vertex")]).write(str(tmp_path / "gd.ply"))
    g = read_ply(tmp_path / "gd.ply")
    assert g.sh_degree == 1
    assert np.array_equal(g.means.detach().numpy(), xyz) and np.array_equal(g.quats.detach().numpy(), rot)
    assert np.array_equal(g.sh.detach()[:, 0].numpy(), dc) and np.array_equal(g.sh.detach()[:, 1:].numpy(), rest)
    assert np.array_equal(g.opacity_logits.detach().numpy(), opac[:, 0])
    assert np.array_equal(g.log_scales.detach().numpy(), scale)


def test_read_ply_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "text.ply").write_text("hello\n")
    elements = np.zeros(3, dtype=[(name, "f4") for name in ply_property_names(0)])
    plyfile.PlyData([plyfile.PlyElement.describe(elements, "vertex")], text=True).write(str(tmp_path / "ascii.ply"))
    good = write_ply(_random(5, 0), tmp_path / "good.ply").read_bytes()
    (tmp_path / "short.ply").write_bytes(good[:-10])
    partial = np.zeros(3, dtype=[(name, "f4") for name in ply_property_names(0) if name != "opacity"])
    plyfile.PlyData([plyfile.PlyElement.describe(partial, "vertex")]).write(str(tmp_path / "partial.ply"))
    for name, words in [("text", "not a .ply"), ("ascii", "binary_little_endian"), ("short", "truncated"),
                        ("partial", "opacity")]:
        with pytest.raises(DreamliftError, match=words):
            read_ply(tmp_path / f"{name}.ply")
