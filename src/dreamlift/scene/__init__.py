"""3D representations behind one interface (``scene.base.Representation``): a NeRF and 3D Gaussians.

``REPRESENTATIONS`` is the one mapping from a name (``generate --representation``) to a class.
"""

from __future__ import annotations

from .base import Representation
from .gaussian_scene import GaussianScene
from .nerf import NeRFScene

__all__ = ["Representation", "REPRESENTATIONS", "build_representation"]

REPRESENTATIONS: dict[str, type[Representation]] = {"nerf": NeRFScene, "gaussians": GaussianScene}


def build_representation(config: dict) -> Representation:
    """The representation a run's resolved config (a dict, as in config.json and checkpoints) asks for."""
    return REPRESENTATIONS[config.get("representation", "nerf")].from_config(config)
