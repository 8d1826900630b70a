"""3D representations behind one interface (``scene.base.Representation``): the NeRF today.

``REPRESENTATIONS`` is the one mapping from a name (``generate --representation``) to a class.
"""

from __future__ import annotations

from .base import Representation
from .nerf import NeRFScene

__all__ = ["Representation", "REPRESENTATIONS", "build_representation"]

REPRESENTATIONS: dict[str, type[Representation]] = {"nerf": NeRFScene}


def build_representation(config: dict) -> Representation:
    """The representation a run's resolved config (a dict, as in config.json and checkpoints) asks for."""
    return REPRESENTATIONS[config.get("representation", "nerf")].from_config(config)
