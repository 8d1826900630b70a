"""The representation's ceiling: the same NeRF fitted to posed ground-truth renders instead of SDS.

SDS asks a 2D prior what the object should look like; here the world answers exactly. The
loop is :class:`dreamlift.generate.Generator`'s with one change: instead of the SDS
gradient, the loss is the photometric error between ``render_nerf`` and the world's
sphere tracer (``dreamlift.world.render``) for the same random cameras, lights and shading
(albedo, lambertian or textureless, drawn by the same schedule):

    L = 1/2 sum_pixels (render_nerf(theta; cam, light, shading) - render_object(obj; cam, light, shading))^2 / B

plus the same orientation and entropy regularisers. Same NeRFConfig, renderer, camera and
light distributions, steps and outputs (checkpoint.safetensors with "field" and "config", mesh,
video, metrics.json), so ``score_result`` scores it exactly like an SDS result and the gap
between the two is what the 2D prior costs. ``dreamlift eval --ceiling`` runs a suite this way.
"""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from torch import Tensor

from ..generate import Generator, GenerateConfig, _device, run_training
from .suite import SuitePrompt

__all__ = ["GroundTruthObjective", "ceiling_generator", "ground_truth_images", "run_ceiling", "fit_in_memory"]


def _prior_resolution() -> int:
    """The built-in prior's image side (what generate renders for), read without loading its weights."""
    from ..prior.model import SHIPPED_WEIGHTS

    try:
        return int(json.loads((SHIPPED_WEIGHTS / "prior.json").read_text())["unet"]["resolution"])
    except (OSError, ValueError, KeyError):
        return 32


def ground_truth_images(obj, cams, light, shading: str) -> Tensor:
    """The world's renders of ``obj`` for a CameraSample and its lights, in a NeRF shading. -> (B, 3, H, W).

    albedo: ambient 1 (shade = albedo); textureless: white albedo, as ``render_nerf`` shades it.
    """
    from ..render.camera import Light
    from ..world.render import shade, trace_geometry

    geo = trace_geometry(obj.shape, cams.camera)
    table = obj.shape.part_albedo(obj.rgb)
    if shading == "textureless":
        table = torch.ones_like(table)
    elif shading == "albedo":
        light = Light(light.position, torch.ones_like(light.ambient))
    return shade(geo, table, light).permute(0, 3, 1, 2)


class GroundTruthObjective:
    """The ceiling's objective: the photometric error to the sphere tracer's render of the true object, with
    the same cameras, light and shading as the render (``guidance.objectives`` for the interface)."""

    name = "ground-truth"
    LOSS_KEYS = ("mse", "psnr", "opacity")  # averaged into metrics.json

    def __init__(self, obj, device: torch.device, batch_size: int, resolution: int | None = None):
        self.obj, self.device, self.batch_size = obj, device, batch_size
        self.resolution = _prior_resolution() if resolution is None else resolution
        self.area_seconds = 0.0

    def prepare(self) -> None:
        """Nothing to prepare: the ground truth holds the size (no area prior)."""

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        pass

    def loss(self, out, cams, light, shading: str, progress: float, generator) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            target = ground_truth_images(self.obj, cams, light, shading).to(self.device)  # (B, 3, H, W)
        photometric = 0.5 * (out.rgb - target).pow(2).sum() / self.batch_size
        mse = float((out.rgb.detach() - target).pow(2).mean())
        return photometric, {"mse": mse, "psnr": -10.0 * torch.log10(torch.tensor(max(mse, 1e-10))).item()}


def ceiling_generator(cfg: GenerateConfig, obj, device: torch.device) -> Generator:
    """generate's Generator with the ground truth as its objective."""
    return Generator(cfg, GroundTruthObjective(obj, device, cfg.batch_size))


def _ceiling_config(cfg: GenerateConfig, prompt: SuitePrompt) -> GenerateConfig:
    """The resolved config of a ceiling fit: no area prior (ground truth holds the size), so the NeRF keeps
    Magic3D's density bias unless the config sets one."""
    area = 0.0 if cfg.area_weight is None else cfg.area_weight
    return replace(cfg, prompt=prompt.prompt, area_weight=area).resolved()


def run_ceiling(cfg: GenerateConfig, prompt: SuitePrompt) -> dict:
    """Fit the NeRF of ``cfg`` to ``prompt``'s world object; write generate's outputs to cfg.out.

    The same run as ``dreamlift generate`` (``generate.run_training``: lock, staging folder, checkpoints,
    resume, signals, export) with the ground truth as the objective. Returns the metrics written to
    OUT/metrics.json (``final_losses`` holds mse and psnr).
    """
    cfg = _ceiling_config(cfg, prompt)

    def build(device: torch.device) -> tuple[Generator, dict]:
        return ceiling_generator(cfg, prompt.world_object(), device), {"backend": "ground-truth"}

    return run_training(cfg, build)


def fit_in_memory(cfg: GenerateConfig, prompt: SuitePrompt, steps: int) -> Generator:
    """A ceiling Generator after ``steps`` steps, in memory (for tests and notebooks)."""
    cfg = _ceiling_config(cfg, prompt)
    gen = ceiling_generator(cfg, prompt.world_object(), _device(cfg.device))
    for _ in range(steps):
        gen.train_step()
    return gen

