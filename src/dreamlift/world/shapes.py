"""The categories of the world: one function per category builds its :class:`Shape`.

All shapes are in the canonical frame (+y up, front towards +z, inside the unit sphere;
see ``objects.py``). Units are "object radii": 1.0 is the bounding sphere radius.
Fixed detail colours are named below; parts with colour ``None`` take the object's
named colour. ``SHAPE_BUILDERS`` is the single explicit table of categories.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from torch import Tensor

from . import sdf as S
from .colours import COLOUR_NAMES
from .objects import Part, Shape, WorldObject

__all__ = ["CATEGORIES", "FRONT_FACING", "HELD_OUT_OBJECTS", "SHAPE_BUILDERS", "get_shape", "get_object"]

# Fixed detail colours (linear RGB).
DARK_GREY = (0.22, 0.22, 0.24)
MID_GREY = (0.55, 0.55, 0.58)
OFF_WHITE = (0.93, 0.90, 0.82)
CARROT = (0.98, 0.45, 0.05)
COAL = (0.05, 0.05, 0.05)
GLASS = (0.60, 0.78, 0.95)
WOOD = (0.42, 0.26, 0.12)
DOUGH = (0.87, 0.68, 0.42)
LAMP_LIGHT = (1.00, 0.95, 0.60)
SLATE = (0.30, 0.30, 0.36)


def _abs_xz(p: Tensor) -> Tensor:
    """Mirror query points into the x >= 0, z >= 0 quadrant (four legs from one)."""
    q = p.clone()
    q[:, 0] = p[:, 0].abs()
    q[:, 2] = p[:, 2].abs()
    return q


def _abs_x(p: Tensor) -> Tensor:
    """Mirror query points into x >= 0 (left/right symmetric details)."""
    q = p.clone()
    q[:, 0] = p[:, 0].abs()
    return q


# ----------------------------------------------------------------------------- front-facing


def mug() -> Shape:
    """A hollow cylinder with a handle on the +x side (on the viewer's right seen from the front)."""

    def body(p: Tensor) -> Tensor:
        p = S.translate(p, (-0.12, 0.0, 0.0))
        outer = S.capped_cylinder(p, 0.5, 0.6)
        inner = S.capped_cylinder(S.translate(p, (0.0, 0.12, 0.0)), 0.43, 0.6)
        return S.subtract(outer, inner)

    def handle(p: Tensor) -> Tensor:
        ring = S.torus(S.rotate_x(S.translate(p, (0.38, 0.0, 0.0)), 90.0), 0.28, 0.07)
        return S.subtract(ring, S.capped_cylinder(S.translate(p, (-0.12, 0.0, 0.0)), 0.5, 0.6))

    return Shape("mug", (Part("body", body), Part("handle", handle)),
                 front="the handle is on the right (+x) seen from the front")


def chair() -> Shape:
    """A seat on four legs with a backrest at the back (-z); the open seat faces +z."""

    def seat(p: Tensor) -> Tensor:
        return S.round_box(p, (0.4, 0.05, 0.4), 0.02)

    def legs(p: Tensor) -> Tensor:
        return S.box(S.translate(_abs_xz(p), (0.34, -0.4, 0.34)), (0.05, 0.35, 0.05))

    def backrest(p: Tensor) -> Tensor:
        return S.round_box(S.translate(p, (0.0, 0.415, -0.36)), (0.4, 0.365, 0.04), 0.02)

    return Shape("chair", (Part("seat", seat), Part("legs", legs), Part("backrest", backrest)),
                 front="the backrest is at the back (-z); the seat is open towards +z")


def house() -> Shape:
    """Walls with a gable roof; door and two windows on the front wall (+z)."""

    def walls(p: Tensor) -> Tensor:
        return S.box(S.translate(p, (0.0, -0.28, 0.0)), (0.5, 0.38, 0.45))

    def roof(p: Tensor) -> Tensor:
        q = _abs_x(p)
        slope = S.plane(S.translate(q, (0.0, 0.62, 0.0)), (0.62, 0.6, 0.0), 0.0)  # ridge at y = 0.62
        return S.intersect(slope, 0.1 - p[:, 1], p[:, 2].abs() - 0.52)

    def door(p: Tensor) -> Tensor:
        return S.box(S.translate(p, (0.0, -0.46, 0.45)), (0.12, 0.2, 0.03))

    def windows(p: Tensor) -> Tensor:
        return S.box(S.translate(_abs_x(p), (0.3, -0.2, 0.45)), (0.1, 0.1, 0.02))

    return Shape("house", (Part("walls", walls), Part("roof", roof, SLATE), Part("door", door, WOOD),
                           Part("windows", windows, GLASS)),
                 front="the door and the two windows are on the front wall (+z)")


def snowman() -> Shape:
    """Three stacked balls; carrot nose, coal eyes and buttons on the front (+z), stick arms."""

    def body(p: Tensor) -> Tensor:
        bottom = S.sphere(S.translate(p, (0.0, -0.5, 0.0)), 0.42)
        middle = S.sphere(S.translate(p, (0.0, 0.1, 0.0)), 0.32)
        head = S.sphere(S.translate(p, (0.0, 0.58, 0.0)), 0.23)
        return S.smooth_union(S.smooth_union(bottom, middle, 0.05), head, 0.04)

    def nose(p: Tensor) -> Tensor:  # cone along +z from inside the head, tip at z = 0.5
        return S.capped_cone(S.rotate_x(S.translate(p, (0.0, 0.56, 0.34)), 90.0), 0.16, 0.075, 0.0)

    def coal(p: Tensor) -> Tensor:
        eyes = S.sphere(S.translate(_abs_x(p), (0.085, 0.65, 0.2)), 0.045)
        buttons = S.union(S.sphere(S.translate(p, (0.0, 0.24, 0.285)), 0.055),
                          S.sphere(S.translate(p, (0.0, 0.07, 0.31)), 0.055),
                          S.sphere(S.translate(p, (0.0, -0.35, 0.4)), 0.055))
        return S.union(eyes, buttons)

    def arms(p: Tensor) -> Tensor:
        return S.capsule(_abs_x(p), (0.28, 0.2, 0.0), (0.62, 0.45, 0.0), 0.025)

    return Shape("snowman", (Part("body", body), Part("nose", nose, CARROT), Part("coal", coal, COAL),
                             Part("arms", arms, WOOD)),
                 front="the carrot nose, eyes and buttons face +z")


def car() -> Shape:
    """A long body along z with the glass cabin set back; headlights on the front (+z)."""

    def body(p: Tensor) -> Tensor:
        return S.round_box(S.translate(p, (0.0, -0.22, 0.0)), (0.42, 0.16, 0.75), 0.08)

    def cabin(p: Tensor) -> Tensor:
        return S.round_box(S.translate(p, (0.0, 0.06, -0.15)), (0.36, 0.16, 0.38), 0.06)

    def wheels(p: Tensor) -> Tensor:
        q = S.translate(_abs_xz(p), (0.40, -0.38, 0.45))
        return S.capped_cylinder(S.rotate_z(q, 90.0), 0.18, 0.06)

    def headlights(p: Tensor) -> Tensor:
        return S.sphere(S.translate(_abs_x(p), (0.26, -0.2, 0.74)), 0.07)

    return Shape("car", (Part("body", body), Part("cabin", cabin, GLASS), Part("wheels", wheels, COAL),
                         Part("headlights", headlights, LAMP_LIGHT)),
                 front="the headlights and the long bonnet are at the front (+z); the cabin is set back")


# ----------------------------------------------------------------------------- symmetric


def table() -> Shape:
    """A rectangular top on four legs, wider along x."""

    def top(p: Tensor) -> Tensor:
        return S.round_box(S.translate(p, (0.0, 0.3, 0.0)), (0.7, 0.05, 0.45), 0.02)

    def legs(p: Tensor) -> Tensor:
        return S.box(S.translate(_abs_xz(p), (0.6, -0.12, 0.35)), (0.05, 0.38, 0.05))

    return Shape("table", (Part("top", top), Part("legs", legs)))


def lamp() -> Shape:
    """A conical shade on a thin pole over a round base."""

    def shade(p: Tensor) -> Tensor:
        return S.capped_cone(S.translate(p, (0.0, 0.45, 0.0)), 0.25, 0.45, 0.22)

    def stand(p: Tensor) -> Tensor:
        base = S.capped_cylinder(S.translate(p, (0.0, -0.8, 0.0)), 0.3, 0.04)
        pole = S.capped_cylinder(S.translate(p, (0.0, -0.26, 0.0)), 0.035, 0.5)
        return S.union(base, pole)

    return Shape("lamp", (Part("shade", shade), Part("stand", stand, DARK_GREY)))


def traffic_cone() -> Shape:
    """A tall cone with a white band on a square base."""

    def cone(p: Tensor) -> Tensor:
        return S.capped_cone(S.translate(p, (0.0, 0.075, 0.0)), 0.775, 0.34, 0.06)

    def band(p: Tensor) -> Tensor:
        shell = cone(p) - 0.01
        return S.intersect(shell, (p[:, 1] - 0.15).abs() - 0.1)

    def base(p: Tensor) -> Tensor:
        return S.round_box(S.translate(p, (0.0, -0.74, 0.0)), (0.42, 0.04, 0.42), 0.02)

    return Shape("traffic_cone", (Part("cone", cone), Part("band", band, OFF_WHITE), Part("base", base, DARK_GREY)))


def donut() -> Shape:
    """A torus tilted 30 degrees towards the front, with coloured icing on top of the dough."""

    def local(p: Tensor) -> Tensor:
        return S.rotate_x(p, 30.0)

    def icing(p: Tensor) -> Tensor:
        q = local(p)
        return S.intersect(S.torus(q, 0.5, 0.27), 0.02 - q[:, 1])

    def dough(p: Tensor) -> Tensor:
        return S.torus(local(p), 0.5, 0.25)

    return Shape("donut", (Part("icing", icing), Part("dough", dough, DOUGH)))


def bottle() -> Shape:
    """A rounded cylindrical bottle with shoulders, a neck and a dark cap."""

    def glass(p: Tensor) -> Tensor:
        body = S.capped_cylinder(S.translate(p, (0.0, -0.4, 0.0)), 0.25, 0.35) - 0.05
        shoulder = S.capped_cone(S.translate(p, (0.0, 0.15, 0.0)), 0.15, 0.3, 0.1)
        neck = S.capped_cylinder(S.translate(p, (0.0, 0.45, 0.0)), 0.1, 0.2)
        return S.smooth_union(S.smooth_union(body, shoulder, 0.05), neck, 0.04)

    def cap(p: Tensor) -> Tensor:
        return S.capped_cylinder(S.translate(p, (0.0, 0.72, 0.0)), 0.12, 0.08)

    return Shape("bottle", (Part("glass", glass), Part("cap", cap, DARK_GREY)))


def mushroom() -> Shape:
    """A domed cap on a pale stem."""

    def cap(p: Tensor) -> Tensor:
        return S.intersect(S.sphere(S.translate(p, (0.0, -0.2, 0.0)), 0.7), 0.05 - p[:, 1])

    def stem(p: Tensor) -> Tensor:
        return S.capped_cone(S.translate(p, (0.0, -0.35, 0.0)), 0.45, 0.2, 0.15)

    return Shape("mushroom", (Part("cap", cap), Part("stem", stem, OFF_WHITE)))


def tree() -> Shape:
    """A pine tree: three stacked cones on a wooden trunk."""

    def foliage(p: Tensor) -> Tensor:
        # Each tier's rim is rounded by 0.015 so the sharp edge does not get a garbled normal.
        low = S.capped_cone(S.translate(p, (0.0, -0.2, 0.0)), 0.3, 0.6, 0.0)
        mid = S.capped_cone(S.translate(p, (0.0, 0.125, 0.0)), 0.275, 0.48, 0.0)
        top = S.capped_cone(S.translate(p, (0.0, 0.525, 0.0)), 0.31, 0.35, 0.0)
        return S.union(low, mid, top) - 0.015

    def trunk(p: Tensor) -> Tensor:
        return S.capped_cylinder(S.translate(p, (0.0, -0.65, 0.0)), 0.1, 0.2)

    return Shape("tree", (Part("foliage", foliage), Part("trunk", trunk, WOOD)))


def rocket() -> Shape:
    """A cylinder with a nose cone, four fins and a nozzle, standing upright."""

    def hull(p: Tensor) -> Tensor:
        tube = S.capped_cylinder(S.translate(p, (0.0, -0.1, 0.0)), 0.22, 0.4)
        nose = S.capped_cone(S.translate(p, (0.0, 0.575, 0.0)), 0.275, 0.22, 0.0)
        return S.union(tube, nose)

    def fins(p: Tensor) -> Tensor:
        q = _abs_xz(p)  # four fins: one slab along x and one along z, mirrored
        along_x = S.box(S.translate(q, (0.3, -0.36, 0.0)), (0.16, 0.18, 0.025))
        along_z = S.box(S.translate(q, (0.0, -0.36, 0.3)), (0.025, 0.18, 0.16))
        return S.union(along_x, along_z)

    def nozzle(p: Tensor) -> Tensor:
        return S.capped_cone(S.translate(p, (0.0, -0.6, 0.0)), 0.1, 0.16, 0.1)

    return Shape("rocket", (Part("hull", hull), Part("fins", fins, DARK_GREY), Part("nozzle", nozzle, MID_GREY)))


def dumbbell() -> Shape:
    """Two discs joined by a bar along x."""

    def weights(p: Tensor) -> Tensor:
        return S.capped_cylinder(S.rotate_z(S.translate(_abs_x(p), (0.6, 0.0, 0.0)), 90.0), 0.32, 0.12)

    def bar(p: Tensor) -> Tensor:
        return S.capsule(p, (-0.5, 0.0, 0.0), (0.5, 0.0, 0.0), 0.06)

    return Shape("dumbbell", (Part("weights", weights), Part("bar", bar, MID_GREY)))


def hat() -> Shape:
    """A top hat: a tall crown on a wide brim, with a dark band."""

    def felt(p: Tensor) -> Tensor:
        crown = S.capped_cylinder(S.translate(p, (0.0, 0.0, 0.0)), 0.38, 0.45)
        brim = S.capped_cylinder(S.translate(p, (0.0, -0.45, 0.0)), 0.7, 0.03)
        return S.union(crown, brim)

    def band(p: Tensor) -> Tensor:
        return S.capped_cylinder(S.translate(p, (0.0, -0.33, 0.0)), 0.385, 0.08)

    return Shape("hat", (Part("felt", felt), Part("band", band, COAL)))


#: The single table of categories, in index order (the category index stored in datasets).
SHAPE_BUILDERS: dict[str, Callable[[], Shape]] = {
    "mug": mug,
    "chair": chair,
    "house": house,
    "snowman": snowman,
    "car": car,
    "table": table,
    "lamp": lamp,
    "traffic_cone": traffic_cone,
    "donut": donut,
    "bottle": bottle,
    "mushroom": mushroom,
    "tree": tree,
    "rocket": rocket,
    "dumbbell": dumbbell,
    "hat": hat,
}

#: Category names in index order.
CATEGORIES: tuple[str, ...] = tuple(SHAPE_BUILDERS)

#: Objects the novel-view prior never trains on, kept for the image-to-3D suite image-v1: category i in the
#: first colour from index 3 i + 1 on (mod 10) that neither core-v1 nor calib-v1 pairs with it, so the image
#: suite shares no object with the text suites (tests/unit/evaluate/test_suite.py checks the rule).
HELD_OUT_OBJECTS: tuple[tuple[str, str], ...] = (
    ("mug", "yellow"), ("chair", "cyan"), ("house", "pink"), ("snowman", "red"), ("car", "cyan"),
    ("table", "purple"), ("lamp", "black"), ("traffic_cone", "green"), ("donut", "blue"), ("bottle", "brown"),
    ("mushroom", "yellow"), ("tree", "blue"), ("rocket", "pink"), ("dumbbell", "orange"), ("hat", "green"),
)


@cache
def get_shape(category: str) -> Shape:
    """The geometry of a category; raises ``ValueError`` naming the valid categories."""
    if category not in SHAPE_BUILDERS:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")
    return SHAPE_BUILDERS[category]()


def get_object(category: str, colour: str) -> WorldObject:
    """The object for (category, colour), e.g. ``get_object("mug", "red")``."""
    return WorldObject(get_shape(category), colour)


#: Front-facing categories and what marks their front (+z).
FRONT_FACING: dict[str, str] = {c: get_shape(c).front for c in CATEGORIES if get_shape(c).front is not None}

assert len(COLOUR_NAMES) >= 8 and len(CATEGORIES) >= 12
