"""Gaussians <-> the standard 3D Gaussian Splatting .ply (graphdeco-inria's ``save_ply`` / ``load_ply``).

One ``vertex`` element, binary little-endian float32 properties in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3 (K - 1) - 1}  opacity
    scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3

with K = (degree + 1)^2 SH coefficients per channel. The stored values are the raw parameters:
f_dc the degree-0 coefficient per channel (colour = 0.5 + C0 f_dc), f_rest the higher ones
channel-major (f_rest_{c (K - 1) + k} is coefficient k + 1 of channel c, graphdeco's
``features_rest.transpose(1, 2).flatten(1)``), opacity as a logit, scales as logs, and the
rotation as a quaternion w first (not necessarily normalised). Normals are written as zeros, as
graphdeco does; splat viewers ignore them. This is the layout splat viewers
(SuperSplat, @mkkellogg/gaussian-splats-3d, the SIBR viewer) open.

The writer builds the bytes with numpy and writes them atomically; the reader reads any
binary little-endian file with these properties by name (in any order, float or double).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..config import DreamliftError, atomic_write
from ..scene.gaussians import Gaussians

__all__ = ["ply_property_names", "write_ply", "read_ply"]

_PLY_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex properties of a degree-``sh_degree`` 3DGS .ply, in graphdeco's order."""
    k = (sh_degree + 1) ** 2
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * (k - 1))]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(gaussians: Gaussians, path: str | Path) -> Path:
    """Write ``gaussians`` as a standard 3DGS .ply at ``path`` (atomically); returns the path.

    The scales written are the filtered ones (``Gaussians.filtered_log_scales``), so a splat viewer shows the
    Gaussians as they were rendered in training; reading the file back gives them with no filter."""
    g = gaussians
    n, k = g.count, g.sh.shape[1]
    with torch.no_grad():
        sh = g.sh.detach().float().cpu()
        columns = [g.means.detach().float().cpu(), torch.zeros(n, 3), sh[:, 0],
                   sh[:, 1:].transpose(1, 2).reshape(n, 3 * (k - 1)),  # channel-major, as graphdeco
                   g.opacity_logits.detach().float().cpu()[:, None], g.filtered_log_scales.detach().float().cpu(),
                   g.quats.detach().float().cpu()]
        table = torch.cat(columns, dim=1).numpy().astype("<f4")  # (N, properties), row = one vertex
    names = ply_property_names(g.sh_degree)
    assert table.shape[1] == len(names)
    header = "".join(["ply\n", "format binary_little_endian 1.0\n", f"element vertex {n}\n",
                      *(f"property float {name}\n" for name in names), "end_header\n"])
    path = Path(path)
    atomic_write(path, header.encode("ascii") + np.ascontiguousarray(table).tobytes())
    return path


def _parse_header(data: bytes, path: Path) -> tuple[int, list[tuple[str, str]], int]:
    """(vertex count, [(name, numpy dtype)], offset of the body) of a binary little-endian .ply."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise DreamliftError(f"{path} is not a .ply file (no 'ply' / 'end_header' lines)")
    lines = data[:end].decode("ascii", errors="replace").splitlines()[1:]
    count, props, element = None, [], None
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if words[1:2] != ["binary_little_endian"]:
                raise DreamliftError(f"{path}: only binary_little_endian .ply files are read, this one is {words[1]}")
        elif words[0] == "element":
            element = words[1]
            if element != "vertex":
                raise DreamliftError(f"{path}: a 3DGS .ply has one 'vertex' element, found {element!r}")
            count = int(words[2])
        elif words[0] == "property":
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise DreamliftError(f"{path}: property line {line!r} is not a float or double property")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if count is None:
        raise DreamliftError(f"{path}: no vertex element")
    return count, props, end + len(b"end_header\n")


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS .ply (as written by :func:`write_ply` or graphdeco's code) into float32 Gaussians."""
    path = Path(path)
    data = path.read_bytes()
    count, props, offset = _parse_header(data, path)
    dtype = np.dtype([(name, t) for name, t in props])
    if len(data) - offset < count * dtype.itemsize:
        raise DreamliftError(f"{path} is truncated: {count} vertices need {count * dtype.itemsize} bytes")
    body = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    names = {name for name, _ in props}
    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    k = 1 + n_rest // 3
    degree = math.isqrt(k) - 1
    if n_rest % 3 or (degree + 1) ** 2 != k or degree > 3:
        raise DreamliftError(f"{path}: {n_rest} f_rest properties are not 3 ((degree + 1)^2 - 1) for a degree 0..3")
    missing = [name for name in ply_property_names(degree) if name not in names and name[0] != "n"]
    if missing:
        raise DreamliftError(f"{path} lacks the 3DGS properties {', '.join(missing)}")

    def cols(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([body[key].astype(np.float32) for key in keys], axis=-1))

    sh = torch.zeros(count, k, 3)
    sh[:, 0] = cols("f_dc_0", "f_dc_1", "f_dc_2")
    if k > 1:
        rest = cols(*(f"f_rest_{i}" for i in range(3 * (k - 1))))  # (N, 3 (K - 1)) channel-major
        sh[:, 1:] = rest.reshape(count, 3, k - 1).transpose(1, 2)
    return Gaussians(cols("x", "y", "z"), cols("scale_0", "scale_1", "scale_2"),
                     cols("rot_0", "rot_1", "rot_2", "rot_3"), cols("opacity")[:, 0], sh)
