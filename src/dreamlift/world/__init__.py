"""The procedural world: coloured 3D objects as SDFs, their captions, ground-truth renders and datasets.

Canonical frame: right-handed, +y up, front towards +z, objects inside the unit sphere.
See docs/WORLD.md.
"""

from .colours import BACKGROUND_RGB, COLOUR_NAMES, COLOURS, colour_rgb
from .objects import BOUND_RADIUS, Part, Shape, WorldObject
from .shapes import CATEGORIES, FRONT_FACING, SHAPE_BUILDERS, get_object, get_shape

__all__ = [
    "BACKGROUND_RGB", "COLOUR_NAMES", "COLOURS", "colour_rgb",
    "BOUND_RADIUS", "Part", "Shape", "WorldObject",
    "CATEGORIES", "FRONT_FACING", "SHAPE_BUILDERS", "get_object", "get_shape",
]
