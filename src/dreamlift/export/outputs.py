"""The files `dreamlift generate` leaves in its output folder, made from a finished representation."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["write_outputs", "written", "render_views", "turntable_frames", "scene_mesh", "nerf_mesh"]


def _orbit_light(cams) -> "Light":
    """A light above and to the left of each camera (fixed relative to the viewer), ambient 0.35."""
    from ..render.camera import Light, spherical_to_position

    pos = spherical_to_position(cams.azimuth_deg - 30.0, (cams.elevation_deg + 30.0).clamp(max=85.0),
                                torch.full_like(cams.distance, 4.5))
    return Light(pos, torch.full_like(cams.distance, 0.35))


@torch.no_grad()
def render_views(scene, cams, shading: str, chunk: int = 4, num_samples: int = 96) -> tuple[Tensor, Tensor]:
    """Render cameras in chunks -> rgb (B, 3, H, W) and normals (B, 3, H, W) mapped to [0, 1].

    ``scene`` is any ``dreamlift.scene.Representation``; ``num_samples`` applies to volume representations.
    """
    from ..render.camera import Light

    light = _orbit_light(cams)
    rgbs, normals = [], []
    for i in range(0, len(cams.camera), chunk):
        sl = slice(i, i + chunk)
        out = scene.render(cams.camera[sl], Light(light.position[sl], light.ambient[sl]), shading,
                           num_samples=num_samples, want_normals=True)
        rgbs.append(out.rgb.cpu())
        bg = 1.0 - out.opacity.cpu()
        normals.append((out.normal.cpu() * 0.5 + 0.5 * out.opacity.cpu()) + bg)  # white background
    return torch.cat(rgbs), torch.cat(normals).clamp(0, 1)


def turntable_frames(scene, n: int, size: int, elevation: float = 15.0) -> Tensor:
    """(n, 3, size, size) lambertian frames of a full orbit (azimuth 0 -> 360)."""
    from ..render.camera import CameraDistribution

    cams = CameraDistribution().orbit(n, elevation_deg=elevation, height=size)
    return render_views(scene, cams, "lambertian")[0]


def scene_mesh(scene, resolution: int, threshold: float):
    """Marching cubes of a representation's density at ``threshold``, with albedo vertex colours."""
    from .mesh import extract_mesh

    with torch.no_grad():
        grid = scene.density_grid(resolution, scene.bound)
    return extract_mesh(lambda p: scene.density(p.to(scene.device)).cpu(),
                        lambda p: scene.albedo(p.to(scene.device)).cpu(),
                        resolution=resolution, bound=scene.bound, threshold=threshold,
                        chunk=scene.field_chunk, volume=None if grid is None else grid.float().cpu().numpy())


nerf_mesh = scene_mesh  # the name older notebooks use


OUTPUT_FILES = ("model.glb", "model.obj", "model.ply", "turntable.mp4", "views.png", "metrics.json")


def written(out: Path) -> str:
    """The run's outputs in ``out`` for the closing line: "out/model.glb, model.obj, ..., metrics.json"
    (model.ply only where the representation wrote one)."""
    names = [n for n in OUTPUT_FILES if (Path(out) / n).is_file()]
    return f"{out}/" + ", ".join(names)


def write_outputs(gen, out: Path, check=lambda: None) -> dict[str, float]:
    """model.glb, model.obj (+ .mtl), turntable.mp4 and views.png into ``out``; returns seconds per file.

    ``check()`` is called between files (it raises to stop an interrupted export).
    """
    from ..render.camera import CameraDistribution
    from .mesh import write_glb, write_obj
    from .video import save_image_grid, write_video

    cfg, field = gen.cfg, gen.scene
    field.eval()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    mesh = scene_mesh(field, cfg.mesh_resolution, cfg.surface_density)
    write_glb(mesh, out / "model.glb")
    write_obj(mesh, out / "model.obj")
    times["mesh"] = time.perf_counter() - t0
    check()
    t0 = time.perf_counter()
    frames = turntable_frames(field, cfg.video_frames, cfg.video_resolution)
    write_video(frames, out / "turntable.mp4", fps=24)
    times["video"] = time.perf_counter() - t0
    check()
    t0 = time.perf_counter()
    size = max(64, gen.render_size)
    cams = CameraDistribution().orbit(4, elevation_deg=15.0, height=size)  # front, right side, back, left side
    lit, normals = render_views(field, cams, "lambertian")
    albedo = render_views(field, cams, "albedo")[0]
    plain = render_views(field, cams, "textureless")[0]
    grid = torch.cat([lit, albedo, plain, normals])  # columns: lit, albedo, textureless, normals; rows: views
    save_image_grid(grid, out / "views.png", rows=4)
    times["views"] = time.perf_counter() - t0
    check()
    t0 = time.perf_counter()
    if field.export(out):  # files only this representation has (3D Gaussians: model.ply)
        times["representation"] = time.perf_counter() - t0
    field.train()
    return times
