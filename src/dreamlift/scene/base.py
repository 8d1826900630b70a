"""The seam between the optimisation and a 3D representation.

The loop (``dreamlift.generate``), the exports, scoring, the ceiling and bench use a representation
through this interface and nothing else, so a NeRF (``scene.nerf.NeRFScene``) and 3D Gaussians are
interchangeable. A representation is a ``torch.nn.Module`` (its ``state_dict`` is its checkpoint)
that can

- render a batch of cameras with a light and a shading into a :class:`~dreamlift.render.volume.RenderOutput`;
- answer density and albedo at world points (marching cubes, IoU, colour scores);
- give its parameter groups, each with its own learning-rate scale;
- act before and after each optimisation step (a NeRF updates its occupancy grid and fades its density
  bias; Gaussians densify and prune, which changes the optimizer's parameters, hence the optimizer argument).

Choosing one is one explicit mapping from a name to a class (``REPRESENTATIONS`` in
``dreamlift.scene``); each class builds itself from a run's resolved config (as saved in config.json and
in checkpoints), so a checkpoint is loaded into the class that wrote it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Representation"]


class Representation(nn.Module, ABC):
    """A 3D representation the score-distillation loop can optimise (see the module docstring)."""

    bound: float
    """Everything the representation shows lies in the cube [-bound, bound]^3 (meshing and scoring grids)."""

    field_chunk: int = 1 << 16
    """Points per call of density / albedo when meshing (a representation that indexes itself once per call,
    as Gaussians do, takes larger calls and chunks inside)."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> Representation:
        """Build from a run's resolved config as a dict (``config_to_dict(GenerateConfig)``)."""

    @abstractmethod
    def render(self, camera, light, shading: str, *, generator: torch.Generator | None = None,
               num_samples: int | None = None, textureless_albedo: Any = "white", want_normals: bool = False,
               background: Tensor | None = None):
        """Render ``camera`` (a batched Camera) -> RenderOutput (rgb (B, 3, H, W), opacity, depth, normal, ...).

        ``generator`` draws any sampling noise (None: deterministic, as for exports); ``num_samples`` is the
        samples per ray of volume representations (None: the run's setting; others ignore it).
        """

    @abstractmethod
    def density(self, points: Tensor) -> Tensor:
        """(N, 3) world points -> (N,) density; the surface is where it crosses the run's surface_density."""

    def density_grid(self, resolution: int, bound: float) -> Tensor | None:
        """The density on marching cubes' grid, (R, R, R): sample ``i`` of an axis at ``-bound + i * 2 * bound /
        (R - 1)``, x-major. None (the default): the mesher calls :meth:`density` at the grid's points. A
        representation that can do better on a regular grid (Gaussians splat each kernel over its own box of
        grid points) returns it here; it must equal :meth:`density` at those points."""
        return None

    @abstractmethod
    def albedo(self, points: Tensor) -> Tensor:
        """(N, 3) world points -> (N, 3) albedo in [0, 1]."""

    @abstractmethod
    def param_groups(self) -> list[dict]:
        """Adam parameter groups, each with an ``lr_scale`` (its learning rate is the run's lr times it) and
        optionally an ``lr_final``: its own multiplier at the last step, reached exponentially over the run."""

    #: Whether :meth:`start_from` would use the objective's silhouettes (an objective draws them only if asked).
    wants_silhouettes = False

    def start_from(self, silhouettes) -> None:
        """Called once before the first step of a fresh run (never on resume) when :attr:`wants_silhouettes`,
        with the objective's :class:`~dreamlift.guidance.silhouette.SilhouetteTargets` (the area prior's
        samples; image-to-3d: the reference's mask and the view-conditioned prior's side views), or None
        when it has none: a representation may shape its start from them."""

    def before_step(self, step: int, progress: float, generator: torch.Generator) -> None:
        """Called before step ``step`` renders (progress = step / steps)."""

    def after_step(self, step: int, progress: float, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator) -> None:
        """Called after the optimizer stepped; ``step`` is the number of steps done, progress = step / steps.
        A representation that changes its parameters here edits ``optimizer``'s state to match."""

    def export(self, folder) -> list[str]:
        """Write files only this representation has into ``folder`` (3DGS: model.ply); -> their names."""
        return []

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
