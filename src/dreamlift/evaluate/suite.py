"""Named, versioned prompt suites: each prompt names one world object, so a result can be scored exactly.

A :class:`SuitePrompt` is the text given to ``dreamlift generate`` plus the (category, colour)
of the world object it describes (``dreamlift.world.get_object``). Suites are frozen once
published: results in a report are only comparable for the same suite name, so a change of
prompts is a new version ("core-v2"), never an edit of "core-v1".

- ``core-v1`` (22 prompts): every one of the 15 categories, 10 colours, all 5 front-facing
  categories (several twice), training synonyms and caption templates ("a crimson coffee
  mug", "a snow man, azure") and held-out words that never appear in a training caption
  ("a cobalt sedan", "an amber cabin", "a jade fir tree").
- ``calib-v1`` (15 prompts): every category once, in a colour ``core-v1`` never pairs with it
  (canonical prompts). Settings that are calibrated rather than designed (the area prior's
  scale) are measured on these, so core-v1 stays a held-out test (benchmarks/area_calibration.py,
  benchmarks/volume_calibration.py).
- ``smoke-v1`` (2 prompts): for tests and quick checks; one front-facing category (mug), so
  the multi-face score runs, and one that is not (tree).

    dreamlift eval --suite core-v1 --out results/core-v1
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DreamliftError

__all__ = ["SuitePrompt", "SUITES", "get_suite", "suite_labels", "prompt_slug", "REFERENCE_LIGHT",
           "render_reference"]


@dataclass(frozen=True)
class SuitePrompt:
    """One prompt of a suite and the world object it names."""

    prompt: str
    """Text for ``dreamlift generate``, e.g. "a crimson coffee mug"."""
    category: str
    """World category (``dreamlift.world.CATEGORIES``)."""
    colour: str
    """Named colour (``dreamlift.world.COLOURS``) of the object's main part."""
    reference: tuple[float, float] | None = None
    """Image suites: the (azimuth, elevation) in degrees of the reference view the object is made from."""

    @property
    def slug(self) -> str:
        """Folder name of this prompt's result inside an eval output folder."""
        return prompt_slug(self.prompt)

    def world_object(self):
        """The ground-truth :class:`~dreamlift.world.WorldObject`."""
        from ..world import get_object

        return get_object(self.category, self.colour)


def _p(prompt: str, category: str, colour: str) -> SuitePrompt:
    return SuitePrompt(prompt, category, colour)


SUITES: dict[str, tuple[SuitePrompt, ...]] = {
    "core-v1": (
        # canonical prompts, one per category
        _p("a red mug", "mug", "red"),
        _p("a blue chair", "chair", "blue"),
        _p("a yellow house", "house", "yellow"),
        _p("a cyan snowman", "snowman", "cyan"),
        _p("a green car", "car", "green"),
        _p("a brown table", "table", "brown"),
        _p("a purple lamp", "lamp", "purple"),
        _p("an orange traffic cone", "traffic_cone", "orange"),
        _p("a pink donut", "donut", "pink"),
        _p("a green bottle", "bottle", "green"),
        _p("a red mushroom", "mushroom", "red"),
        _p("a green tree", "tree", "green"),
        _p("a blue rocket", "rocket", "blue"),
        _p("a black dumbbell", "dumbbell", "black"),
        _p("a black top hat", "hat", "black"),
        # training synonyms and caption templates
        _p("a crimson coffee mug", "mug", "red"),
        _p("a photo of a violet dining chair", "chair", "purple"),
        _p("a snow man, azure", "snowman", "blue"),
        _p("a chocolate doughnut", "donut", "brown"),
        # held-out words (never in a training caption): does the text encoder generalise?
        _p("a cobalt sedan", "car", "blue"),
        _p("an amber cabin", "house", "orange"),
        _p("a jade fir tree", "tree", "green"),
    ),
    # Calibration objects: category i in the first colour of the palette, from index 3 i on, that core-v1 does
    # not pair with it (tests/unit/evaluate/test_suite.py checks the rule and that no pair is shared).
    "calib-v1": (
        _p("an orange mug", "mug", "orange"),
        _p("a green chair", "chair", "green"),
        _p("a purple house", "house", "purple"),
        _p("a black snowman", "snowman", "black"),
        _p("a yellow car", "car", "yellow"),
        _p("a blue table", "table", "blue"),
        _p("a brown lamp", "lamp", "brown"),
        _p("a yellow traffic cone", "traffic_cone", "yellow"),
        _p("a cyan donut", "donut", "cyan"),
        _p("a pink bottle", "bottle", "pink"),
        _p("an orange mushroom", "mushroom", "orange"),
        _p("a cyan tree", "tree", "cyan"),
        _p("a purple rocket", "rocket", "purple"),
        _p("a red dumbbell", "dumbbell", "red"),
        _p("a yellow top hat", "hat", "yellow"),
    ),
    "smoke-v1": (
        _p("a red mug", "mug", "red"),
        _p("a green tree", "tree", "green"),
    ),
    # Image to 3D: one reference render per object of HELD_OUT_OBJECTS (every category, in a colour that neither
    # core-v1 nor calib-v1 uses), which the view-conditioned prior never trained on, so no reference is a training
    # pair of it. Every reference is the documented default camera of image-to-3d (azimuth 0, elevation 15,
    # distance 3.3, field of view 45) with REFERENCE_LIGHT; the prompt is the object's canonical caption, which
    # the image-to-3d runs do not see (it labels the object and is the text-to-3D comparison's prompt).
    "image-v1": tuple(SuitePrompt(canonical, category, colour, (0.0, 15.0)) for category, colour, canonical in (
        ("mug", "yellow", "a yellow mug"), ("chair", "cyan", "a cyan chair"), ("house", "pink", "a pink house"),
        ("snowman", "red", "a red snowman"), ("car", "cyan", "a cyan car"), ("table", "purple", "a purple table"),
        ("lamp", "black", "a black lamp"), ("traffic_cone", "green", "a green traffic cone"),
        ("donut", "blue", "a blue donut"), ("bottle", "brown", "a brown bottle"),
        ("mushroom", "yellow", "a yellow mushroom"), ("tree", "blue", "a blue tree"),
        ("rocket", "pink", "a pink rocket"), ("dumbbell", "orange", "an orange dumbbell"),
        ("hat", "green", "a green top hat"))),
}

#: The light of every image suite's reference render: (azimuth offset, elevation offset) in degrees from the
#: camera, distance in object radii, ambient fraction.
REFERENCE_LIGHT = (30.0, 30.0, 4.5, 0.35)


def render_reference(prompt: SuitePrompt, size: int = 128):
    """The reference image of an image-suite prompt: its world object from its reference camera (image-to-3d's
    default distance and field of view) under REFERENCE_LIGHT. -> PIL image, RGB, ``size`` pixels a side."""
    import torch
    from PIL import Image

    from ..image_to_3d import DEFAULT_REFERENCE
    from ..render.camera import CameraSample, Light, spherical_to_position
    from ..world.render import render_object

    if prompt.reference is None:
        raise DreamliftError(f"{prompt.prompt!r} is a text prompt, not an image-suite item")
    az, el = prompt.reference
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    cam = CameraSample.from_spherical(one(az), one(el), one(DEFAULT_REFERENCE[2]), one(DEFAULT_REFERENCE[3]), size, size)
    d_az, d_el, dist, ambient = REFERENCE_LIGHT
    light = Light(spherical_to_position(one(az + d_az), one(min(el + d_el, 89.0)), one(dist)), one(ambient))
    rgb = render_object(prompt.world_object(), cam.camera, light).rgb[0]
    return Image.fromarray((rgb * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy())


def get_suite(name: str) -> tuple[SuitePrompt, ...]:
    """The prompts of suite ``name``; DreamliftError naming the known suites otherwise."""
    try:
        return SUITES[name]
    except KeyError:
        raise DreamliftError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}") from None


def suite_labels(prompts: tuple[SuitePrompt, ...] | list[SuitePrompt]) -> list[tuple[str, str]]:
    """The distinct (category, colour) objects of a suite, in first-appearance order.

    R-Precision ranks these, not the prompt strings: "a red mug" and "a crimson coffee mug"
    name the same object, and an image cannot be more one than the other.
    """
    seen: dict[tuple[str, str], None] = {}
    for p in prompts:
        seen.setdefault((p.category, p.colour), None)
    return list(seen)


def prompt_slug(prompt: str) -> str:
    """'a red mug, front view' -> 'a-red-mug-front-view' (the generate command's default folder name)."""
    import re

    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return s[:60] or "object"


#: Colour words and phrases no training caption uses, each with the world colour a person would name it
#: (``dreamlift.prior.colour_words`` reads them; docs/BENCHMARKS.md, section colour-words, scores it). Source:
#: the 30 held-out colour words of ``dreamlift.world.captions.HELD_OUT_SYNONYMS`` (three common names per
#: world colour, fixed before the colour tables were used), then ten everyday words and phrases: the five
#: the colour-words issue names ("vermilion", "forest green", "navy blue", "wooden", "gold"; its "golden" is
#: a training word) and five common compounds and materials (sky blue, blood red, mint green, hot pink,
#: mahogany).
COLOUR_WORDS_V1: tuple[tuple[str, str], ...] = (
    ("ruby", "red"), ("cherry", "red"), ("maroon", "red"),
    ("amber", "orange"), ("apricot", "orange"), ("peach", "orange"),
    ("lemon", "yellow"), ("canary", "yellow"), ("mustard", "yellow"),
    ("jade", "green"), ("lime", "green"), ("olive", "green"),
    ("aqua", "cyan"), ("teal", "cyan"), ("seafoam", "cyan"),
    ("cobalt", "blue"), ("navy", "blue"), ("sapphire", "blue"),
    ("amethyst", "purple"), ("lavender", "purple"), ("plum", "purple"),
    ("bubblegum", "pink"), ("fuchsia", "pink"), ("salmon", "pink"),
    ("chestnut", "brown"), ("walnut", "brown"), ("hazel", "brown"),
    ("onyx", "black"), ("charcoal", "black"), ("obsidian", "black"),
    ("vermilion", "red"), ("forest green", "green"), ("navy blue", "blue"), ("wooden", "brown"), ("gold", "yellow"),
    ("sky blue", "blue"), ("blood red", "red"), ("mint green", "green"), ("hot pink", "pink"), ("mahogany", "brown"),
)
