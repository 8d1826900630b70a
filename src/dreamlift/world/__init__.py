"""The procedural world: coloured 3D objects as SDFs, their captions, ground-truth renders and datasets.

Canonical frame: right-handed, +y up, front towards +z, objects inside the unit sphere.
See docs/WORLD.md.
"""

from .colours import BACKGROUND_RGB, COLOUR_NAMES, COLOURS, colour_rgb
from .objects import BOUND_RADIUS, Part, Shape, WorldObject
from .shapes import CATEGORIES, FRONT_FACING, HELD_OUT_OBJECTS, SHAPE_BUILDERS, get_object, get_shape
from .render import RenderConfig, RenderResult, render_object
from .captions import HELD_OUT_SYNONYMS, canonical_prompt, random_caption
from .dataset import DatasetConfig, load_dataset, make_dataset

__all__ = [
    "BACKGROUND_RGB", "COLOUR_NAMES", "COLOURS", "colour_rgb",
    "BOUND_RADIUS", "Part", "Shape", "WorldObject",
    "CATEGORIES", "FRONT_FACING", "HELD_OUT_OBJECTS", "SHAPE_BUILDERS", "get_object", "get_shape",
    "RenderConfig", "RenderResult", "render_object",
    "HELD_OUT_SYNONYMS", "canonical_prompt", "random_caption",
    "DatasetConfig", "load_dataset", "make_dataset",
]
