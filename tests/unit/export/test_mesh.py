"""Marching cubes of analytic fields, floaters, errors, and .glb / .obj round trips through trimesh."""

import json
import math
import struct

import numpy as np
import pytest
import torch
import trimesh

from dreamlift.config import DreamliftError
from dreamlift.export import Mesh, extract_mesh, read_mesh, write_glb, write_obj
from dreamlift.export.mesh import glb_bytes
from dreamlift.world.shapes import get_object

R0 = 0.6


def sphere(r=R0, centre=(0.0, 0.0, 0.0)):
    c = torch.tensor(centre)
    return lambda p: r - (p - c).norm(dim=-1)


def box(centre, half):
    c, h = torch.tensor(centre), torch.tensor(half)
    return lambda p: -((p - c).abs() - h).amax(dim=-1)


@pytest.fixture(scope="module")
def sphere_mesh():
    return extract_mesh(sphere(), resolution=112)


def test_sphere_is_watertight_with_the_right_volume_area_and_radius(sphere_mesh):
    m = sphere_mesh
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int64 and m.colors.dtype == np.float32
    tm = trimesh.Trimesh(m.vertices, m.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume == pytest.approx(4 / 3 * math.pi * R0**3, rel=0.02)
    assert tm.area == pytest.approx(4 * math.pi * R0**2, rel=0.02)
    voxel = 2.0 / (112 - 1)
    assert np.abs(np.linalg.norm(m.vertices, axis=1) - R0).max() < voxel
    # Centred: the mean vertex is at the origin to a small fraction of a voxel.
    assert np.abs(m.vertices.mean(axis=0)).max() < 0.05 * voxel


def test_faces_point_outward(sphere_mesh):
    m = sphere_mesh
    assert trimesh.Trimesh(m.vertices, m.faces, process=False).volume > 0
    tri = m.vertices[m.faces]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("fi,fi->f", normals, tri.mean(axis=1)) > 0).mean() > 0.999


def test_no_colour_fn_gives_mid_grey(sphere_mesh):
    assert np.allclose(sphere_mesh.colors, 0.5)


def test_off_centre_box_lands_at_its_world_position_without_half_voxel_offset():
    centre, half = (0.3, -0.2, 0.1), (0.2, 0.3, 0.25)
    m = extract_mesh(box(centre, half), resolution=64)
    lo, hi = np.subtract(centre, half), np.add(centre, half)
    # The box's faces are planes, which linear interpolation places exactly; half a voxel is 0.016.
    assert np.allclose(m.vertices.min(axis=0), lo, atol=1e-4)
    assert np.allclose(m.vertices.max(axis=0), hi, atol=1e-4)


def test_off_centre_sphere_and_bound_scale_coordinates():
    centre = (0.5, 0.25, -0.75)
    m = extract_mesh(sphere(0.4, centre), resolution=64, bound=1.5)
    d = np.linalg.norm(m.vertices - np.array(centre), axis=1)
    assert np.abs(d - 0.4).max() < 3.0 / 63
    assert np.allclose(m.vertices.mean(axis=0), centre, atol=0.01)


def test_threshold_selects_the_level_set():
    m = extract_mesh(sphere(1.0), resolution=48, threshold=0.5)  # 1 - |x| = 0.5 at radius 0.5
    assert np.abs(np.linalg.norm(m.vertices, axis=1) - 0.5).max() < 2.0 / 47


def test_colours_come_from_colour_fn_at_the_vertices():
    m = extract_mesh(sphere(), colour_fn=lambda p: (p + 1) / 2, resolution=48)
    assert np.allclose(m.colors, (m.vertices + 1) / 2, atol=1e-6)
    m = extract_mesh(sphere(), colour_fn=lambda p: p * 10, resolution=32)  # out of range: clamped
    assert m.colors.min() >= 0 and m.colors.max() <= 1


def test_chunking_does_not_change_the_result():
    a = extract_mesh(sphere(), resolution=40, chunk=65536)
    b = extract_mesh(sphere(), resolution=40, chunk=999)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def test_density_is_evaluated_without_grad_in_chunks():
    calls = []

    def density(p):
        calls.append((len(p), torch.is_grad_enabled(), p.dtype))
        return sphere()(p)

    extract_mesh(density, resolution=32, chunk=5000)
    assert all(n <= 5000 and not grad and dt == torch.float32 for n, grad, dt in calls)
    assert sum(n for n, _, _ in calls) == 32**3


def test_small_floaters_are_dropped_by_default_and_kept_on_request():
    at = np.array([0.75, 0.5, 0.3])
    main, floater = sphere(0.6, (-0.2, 0, 0)), sphere(0.06, tuple(at))  # floater: ~1% of the faces
    field = lambda p: torch.maximum(main(p), floater(p))  # noqa: E731
    cleaned = extract_mesh(field, resolution=64)
    assert np.linalg.norm(cleaned.vertices - at, axis=1).min() > 0.2
    assert len(np.unique(cleaned.faces)) == len(cleaned.vertices)  # no unused vertices left behind
    assert trimesh.Trimesh(cleaned.vertices, cleaned.faces, process=False).is_watertight
    for keep in (None, 0.0, 0.005):
        kept = extract_mesh(field, resolution=64, keep_components=keep)
        assert np.linalg.norm(kept.vertices - at, axis=1).min() < 0.1, keep
        assert len(kept.faces) > len(cleaned.faces)
    # The threshold is relative to the largest piece: two equal spheres both stay.
    twins = extract_mesh(lambda p: torch.maximum(sphere(0.3, (-0.5, 0, 0))(p), sphere(0.3, (0.5, 0, 0))(p)),
                         resolution=48, keep_components=0.9)
    assert twins.vertices[:, 0].min() < -0.7 and twins.vertices[:, 0].max() > 0.7


def test_surface_cut_by_the_cube_is_closed():
    m = extract_mesh(sphere(1.2), resolution=32)  # sticks out of [-1, 1]^3 on every side
    assert np.abs(m.vertices).max() <= 1.0
    assert trimesh.Trimesh(m.vertices, m.faces, process=False).is_watertight


@pytest.mark.parametrize("field, match", [
    (lambda p: -torch.ones(len(p)), "empty"),
    (lambda p: torch.ones(len(p)), "inside"),
    (lambda p: torch.where(p[:, 0] > 0.5, torch.nan, R0 - p.norm(dim=-1)), "NaN"),
])
def test_degenerate_fields_raise(field, match):
    with pytest.raises(DreamliftError, match=match):
        extract_mesh(field, resolution=16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(density_fn=lambda p: p, resolution=16), "density_fn"),
    (dict(density_fn=sphere(), colour_fn=lambda p: p[:, 0], resolution=16), "colour_fn"),
    (dict(density_fn=sphere(), resolution=4), "resolution"),
    (dict(density_fn=sphere(), bound=0.0), "bound"),
    (dict(density_fn=sphere(), keep_components=2.0), "keep_components"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(DreamliftError, match=match):
        extract_mesh(**kwargs)


def test_mesh_validates_its_arrays():
    v = np.zeros((3, 3))
    with pytest.raises(DreamliftError, match="faces"):
        Mesh(v, np.array([[0, 1, 3]]), np.zeros((3, 3)))
    with pytest.raises(DreamliftError, match="colors"):
        Mesh(v, np.array([[0, 1, 2]]), np.full((3, 3), 2.0))
    with pytest.raises(DreamliftError, match="vertices"):
        Mesh(np.zeros((3, 2)), np.array([[0, 1, 2]]), np.zeros((3, 3)))


@pytest.fixture(scope="module")
def coloured_mesh():
    return extract_mesh(sphere(), colour_fn=lambda p: (p + 1) / 2, resolution=40)


def _same_triangles(a_vertices, a_faces, b_vertices, b_faces):
    """The two meshes have the same triangles (as point triples, any vertex numbering)."""
    def key(v, f):
        tri = np.round(np.asarray(v, np.float64)[f], 5)  # (F, 3, 3)
        order = np.lexsort(tri.transpose(2, 0, 1)[::-1], axis=-1)  # each triangle's corners in a fixed order
        return sorted(map(tuple, np.take_along_axis(tri, order[:, :, None], 1).reshape(len(f), 9)))
    return key(a_vertices, a_faces) == key(b_vertices, b_faces)


def test_glb_shows_its_colours_in_trimeshs_default_load(coloured_mesh, tmp_path):
    """trimesh.load with no options gives a textured mesh whose colour at every vertex is the mesh's colour; the
    unwrap splits vertices along its seams but keeps every triangle."""
    m = coloured_mesh
    path = write_glb(m, tmp_path / "out" / "sphere.glb")
    scene = trimesh.load(path)
    (g,) = scene.geometry.values()
    assert g.visual.kind == "texture" and g.visual.material.baseColorTexture is not None
    assert len(g.faces) == len(m.faces) and len(g.vertices) >= len(m.vertices)
    assert _same_triangles(g.vertices, g.faces, m.vertices, m.faces)
    # each loaded vertex is an original one: compare its colour with that vertex's
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(m.vertices).query(g.vertices)
    assert dist.max() < 1e-5
    rgb = g.visual.to_color().vertex_colors[:, :3] / 255.0
    assert np.abs(rgb - m.colors[idx]).max() <= 4 / 255, np.abs(rgb - m.colors[idx]).max()
    back = read_mesh(path)
    assert len(back.faces) == len(m.faces) and np.abs(back.colors - m.colors[idx]).max() <= 4 / 255


def test_glb_json_is_what_viewers_need(coloured_mesh):
    data = glb_bytes(coloured_mesh)
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    chunk_len, chunk_type = struct.unpack("<I4s", data[12:20])
    gltf = json.loads(data[20 : 20 + chunk_len])
    assert chunk_type == b"JSON"
    (prim,) = gltf["meshes"][0]["primitives"]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(prim["attributes"])
    assert "COLOR_0" not in prim["attributes"]  # viewers would multiply it with the texture
    position = gltf["accessors"][prim["attributes"]["POSITION"]]
    assert "min" in position and "max" in position  # required by the spec
    material = gltf["materials"][prim["material"]]["pbrMetallicRoughness"]
    assert material["metallicFactor"] == 0 and material.get("baseColorFactor", [1.0] * 4) == [1.0, 1.0, 1.0, 1.0]
    texture = gltf["textures"][material["baseColorTexture"]["index"]]
    assert gltf["images"][texture["source"]]["mimeType"] == "image/png"


def test_baking_paints_each_triangle_with_its_interpolated_colours():
    """A square of two triangles with four corner colours: every texel inside a triangle is the barycentric mix
    of its corners (to 8-bit rounding), and the whole texture is filled."""
    from dreamlift.export.mesh import bake_vertex_colours

    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    c = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], float)
    vmap, faces, uv, image = bake_vertex_colours(v, f, c, size=64)
    height, width = image.shape[:2]
    assert 32 <= height <= 64 and 32 <= width <= 64 and len(faces) == 2
    col = c[vmap]
    pix = np.stack([uv[:, 0] * width, (1 - uv[:, 1]) * height], 1)
    errs = []
    for tri in faces:
        a, b, cc = pix[tri]
        for y in range(height):
            for x in range(width):
                p = np.array([x + 0.5, y + 0.5])
                m = np.array([b - a, cc - a]).T
                l1, l2 = np.linalg.solve(m, p - a)
                if min(l1, l2, 1 - l1 - l2) > 0.02:
                    want = (1 - l1 - l2) * col[tri[0]] + l1 * col[tri[1]] + l2 * col[tri[2]]
                    errs.append(np.abs(image[y, x] / 255.0 - want).max())
    assert len(errs) > 200 and max(errs) <= 0.5 / 255 + 1e-9


def _texture_at(image, uv):
    """Bilinear sample of an (H, W, 3) uint8 texture at uv (origin bottom-left) -> (N, 3) in [0, 1]."""
    h, w = image.shape[:2]
    x, y = uv[:, 0] * w - 0.5, (1 - uv[:, 1]) * h - 0.5
    x0, y0 = np.clip(np.floor(x).astype(int), 0, w - 2), np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = np.clip(x - x0, 0, 1)[:, None], np.clip(y - y0, 0, 1)[:, None]
    img = image.astype(float) / 255.0
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _helicoid(turns=1.5, n_around=90, rise=0.3):
    """A gentle spiral ramp (normals near +z everywhere) whose turns lie over one another: red at the bottom,
    blue at the top."""
    k = int(turns * n_around) + 1
    theta = np.linspace(0, 2 * np.pi * turns, k)
    rings = [np.stack([r * np.cos(theta), r * np.sin(theta), rise * theta / (2 * np.pi)], 1) for r in (0.4, 1.0)]
    v = np.concatenate(rings)
    i = np.arange(k - 1)
    f = np.concatenate([np.stack([i, i + k, i + 1], 1), np.stack([i + 1, i + k, i + k + 1], 1)])
    t = v[:, 2:3] / v[:, 2].max()
    return v, f, np.concatenate([1 - t, 0 * t, t], 1)


def test_a_chart_that_folds_over_itself_is_split_and_every_triangle_keeps_its_own_texels():
    """The ramp is one chart by its normals, and its turns project onto the same texels. Baked, the texture at
    every vertex and every face centre must still be that point's own colour, which a chart painted twice
    (the upper turn over the lower) cannot give."""
    from dreamlift.export.mesh import _face_charts, bake_vertex_colours

    v, f, c = _helicoid()
    chart, _ = _face_charts(v, f)
    assert len(np.unique(chart)) == 1  # one chart before the fold is found
    vmap, faces, uv, image = bake_vertex_colours(v, f, c, size=256)
    assert np.abs(_texture_at(image, uv) - c[vmap]).max() < 0.06
    centre_uv, centre_colour = uv[faces].mean(1), c[vmap][faces].mean(1)
    assert np.abs(_texture_at(image, centre_uv) - centre_colour).max() < 0.06


def test_a_mesh_in_thousands_of_pieces_bakes_into_a_wider_texture_instead_of_hanging():
    """4,000 tiny separate tetrahedra (16,000 charts of one triangle): at the texture size its face count asks for
    (256) the charts cannot fit even at one texel each, so the packer used to shrink them for ever (a Gaussian
    tree's mesh hung a suite run in the glb export). Now the texture widens, and every vertex keeps its colour."""
    import signal

    from dreamlift.export.mesh import _texture_size, bake_vertex_colours

    rng = np.random.default_rng(0)
    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) * 0.004
    centres = rng.uniform(-1, 1, (4000, 3))
    v = (centres[:, None] + tet[None]).reshape(-1, 3)
    f = (np.arange(4000)[:, None, None] * 4 + np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])).reshape(-1, 3)
    c = np.repeat(rng.uniform(0, 1, (4000, 3)), 4, axis=0)  # one colour per piece

    def stuck(*_):
        raise TimeoutError("bake_vertex_colours did not return")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(120)
    try:
        vmap, faces, uv, image = bake_vertex_colours(v, f, c)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert _texture_size(len(f)) == 256 and image.shape[1] > 256
    assert len(faces) == len(f)
    assert np.abs(_texture_at(image, uv) - c[vmap]).max() < 0.03


def test_a_marching_cubes_mesh_bakes_into_few_charts_with_its_colours():
    """A world object's mesh: the texture is no wider than asked, the vertices are split only along the charts'
    seams, and the colour at every vertex's uv is its own."""
    from dreamlift.export.mesh import bake_vertex_colours

    obj = get_object("mug", "red")
    m = extract_mesh(lambda p: -obj.sdf(p), lambda p: p * 0.5 + 0.5, resolution=96)
    vmap, faces, uv, image = bake_vertex_colours(m.vertices, m.faces, m.colors)
    assert image.shape[1] <= 2048 and image.shape[0] <= image.shape[1]
    assert len(faces) == len(m.faces) and len(vmap) < 1.3 * len(m.vertices)
    assert np.array_equal(m.vertices[vmap][faces].round(6), m.vertices[m.faces].round(6))
    assert np.abs(_texture_at(image, uv) - m.colors[vmap]).max() < 0.03


def test_a_volume_sampled_beforehand_is_meshed_as_the_density_fn_would_be():
    r = 40
    from dreamlift.export.mesh import _grid_points

    pts = _grid_points(torch.arange(r**3), r, 1.0, torch.device("cpu"))
    volume = sphere()(pts).reshape(r, r, r).numpy()

    def never(p):
        raise AssertionError("density_fn is not called when the volume is given")

    got = extract_mesh(never, resolution=r, volume=volume)
    want = extract_mesh(sphere(), resolution=r)
    assert np.array_equal(got.faces, want.faces) and np.allclose(got.vertices, want.vertices)
    with pytest.raises(DreamliftError, match="shape"):
        extract_mesh(never, resolution=r + 1, volume=volume)


def test_obj_and_mtl_round_trip_through_trimesh(coloured_mesh, tmp_path):
    m = coloured_mesh
    path = write_obj(m, tmp_path / "sphere.obj")
    text = path.read_text()
    assert "mtllib sphere.mtl" in text and "usemtl dreamlift" in text
    first_v = next(line for line in text.splitlines() if line.startswith("v "))
    assert len(first_v.split()) == 7  # v x y z r g b
    mtl = (tmp_path / "sphere.mtl").read_text()
    kd = [float(x) for x in next(line for line in mtl.splitlines() if line.startswith("Kd")).split()[1:]]
    assert np.allclose(kd, m.colors.mean(axis=0), atol=1e-4)
    tm = trimesh.load(path, process=False)
    assert len(tm.vertices) == len(m.vertices) and len(tm.faces) == len(m.faces)
    assert np.allclose(tm.vertices, m.vertices, atol=1e-5) and np.array_equal(tm.faces, m.faces)
    assert np.allclose(tm.vertex_attributes["color"][:, :3], m.colors, atol=1e-4)
    assert tm.visual.material.diffuse[:3].tolist() == pytest.approx(np.rint(m.colors.mean(0) * 255), abs=1)
    assert tm.volume > 0  # orientation survives
    assert np.allclose(read_mesh(path).colors, m.colors, atol=1e-4)


def test_write_obj_needs_an_obj_suffix(coloured_mesh, tmp_path):
    with pytest.raises(DreamliftError, match=".obj"):
        write_obj(coloured_mesh, tmp_path / "x.glb")


def test_failed_write_leaves_the_earlier_file(coloured_mesh, tmp_path, monkeypatch):
    path = write_glb(coloured_mesh, tmp_path / "m.glb")
    before = path.read_bytes()
    new_mesh = extract_mesh(sphere(0.3), resolution=24)

    def disk_full(fd):  # the new bytes went to the temp file; flushing them to disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("dreamlift.config.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_glb(new_mesh, path)
    with pytest.raises(OSError, match="No space"):
        write_obj(new_mesh, tmp_path / "m.obj")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.glb"]  # no temp file, no half .obj/.mtl


def test_write_rejects_an_empty_mesh(tmp_path):
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(DreamliftError, match="no faces"):
        write_glb(empty, tmp_path / "e.glb")


def test_world_mug_exports_red(tmp_path):
    mug = get_object("mug", "red")
    m = extract_mesh(lambda p: -mug.sdf(p), mug.albedo, resolution=64)
    tm = trimesh.Trimesh(m.vertices, m.faces, process=False)
    assert tm.is_watertight and tm.volume > 0
    assert np.linalg.norm(m.vertices, axis=1).max() <= 1.0
    # The handle is on the +x side: the mesh reaches further along +x than -x.
    assert m.vertices[:, 0].max() > -m.vertices[:, 0].min()
    (g,) = trimesh.load(write_glb(m, tmp_path / "mug.glb")).geometry.values()
    rgb = g.visual.to_color().vertex_colors[:, :3].astype(int)
    red = (rgb[:, 0] > 180) & (rgb[:, 1] < 60) & (rgb[:, 2] < 60)
    assert red.mean() > 0.9
