"""Captions for world objects: templates, synonyms, DreamFusion view suffixes, held-out words.

A training caption is ``template.format(colour=<colour word>, noun=<category noun>)`` with an
article fixed up ("a orange" -> "an orange"), optionally followed by ", <view> view"
where <view> is :func:`dreamlift.render.camera.view_word` of the camera (DreamFusion's
view-dependent prompting). Colour words and nouns are drawn uniformly from the training
synonyms. ``HELD_OUT_SYNONYMS`` lists words that never appear in a training caption, to test
later whether the text encoder generalises ("a ruby teacup").
"""

from __future__ import annotations

import torch

from ..render.camera import view_word
from .colours import COLOUR_NAMES
from .shapes import CATEGORIES

__all__ = [
    "TEMPLATES", "CATEGORY_SYNONYMS", "COLOUR_SYNONYMS", "HELD_OUT_SYNONYMS",
    "canonical_prompt", "random_caption", "caption_words",
]

#: Caption templates; ``{colour}`` and ``{noun}`` are filled in, "a" is fixed to "an" before a vowel.
TEMPLATES: tuple[str, ...] = (
    "a {colour} {noun}",
    "a photo of a {colour} {noun}",
    "a {noun}, {colour}",
    "a render of a {colour} {noun}",
    "a 3d model of a {colour} {noun}",
    "a {colour} {noun} on a white background",
    "a small {colour} {noun}",
)

#: Training nouns per category; the first is canonical.
CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "mug": ("mug", "coffee mug", "cup"),
    "chair": ("chair", "dining chair"),
    "house": ("house", "cottage", "little house"),
    "snowman": ("snowman", "snow man"),
    "car": ("car", "toy car", "automobile"),
    "table": ("table", "dining table"),
    "lamp": ("lamp", "table lamp"),
    "traffic_cone": ("traffic cone", "road cone"),
    "donut": ("donut", "doughnut"),
    "bottle": ("bottle", "wine bottle"),
    "mushroom": ("mushroom", "toadstool"),
    "tree": ("tree", "pine tree"),
    "rocket": ("rocket", "rocket ship"),
    "dumbbell": ("dumbbell", "hand weight"),
    "hat": ("top hat", "hat"),
}

#: Training words per colour; the first is canonical.
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange", "tangerine"),
    "yellow": ("yellow", "golden"),
    "green": ("green", "emerald"),
    "cyan": ("cyan", "turquoise"),
    "blue": ("blue", "azure"),
    "purple": ("purple", "violet"),
    "pink": ("pink", "rose"),
    "brown": ("brown", "chocolate"),
    "black": ("black", "ebony"),
}

#: Words never used in training captions, per category and per colour name. The colour words are
#: common colour names; the text encoder places only some of them nearest the right colour
#: (benchmarks/prior_quality.py measures which), which is why there are three per colour.
HELD_OUT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "mug": ("teacup",),
    "chair": ("kitchen chair",),
    "house": ("cabin",),
    "snowman": ("snow sculpture",),
    "car": ("sedan",),
    "table": ("coffee table",),
    "lamp": ("reading lamp",),
    "traffic_cone": ("safety cone",),
    "donut": ("glazed ring",),
    "bottle": ("flask",),
    "mushroom": ("fungus",),
    "tree": ("fir tree",),
    "rocket": ("spacecraft",),
    "dumbbell": ("free weight",),
    "hat": ("stovepipe",),
    "red": ("ruby", "cherry", "maroon"),
    "orange": ("amber", "apricot", "peach"),
    "yellow": ("lemon", "canary", "mustard"),
    "green": ("jade", "lime", "olive"),
    "cyan": ("aqua", "teal", "seafoam"),
    "blue": ("cobalt", "navy", "sapphire"),
    "purple": ("amethyst", "lavender", "plum"),
    "pink": ("bubblegum", "fuchsia", "salmon"),
    "brown": ("chestnut", "walnut", "hazel"),
    "black": ("onyx", "charcoal", "obsidian"),
}


def _check(category: str, colour: str) -> None:
    if category not in CATEGORY_SYNONYMS:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")
    if colour not in COLOUR_SYNONYMS:
        raise ValueError(f"unknown colour {colour!r}; choose one of {', '.join(COLOUR_NAMES)}")


def _fix_articles(text: str) -> str:
    words = text.split(" ")
    for i, w in enumerate(words[:-1]):
        if w == "a" and words[i + 1][:1] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def canonical_prompt(category: str, colour: str) -> str:
    """The plain prompt for an object, e.g. ``canonical_prompt("mug", "red") == "a red mug"``."""
    _check(category, colour)
    return _fix_articles(f"a {COLOUR_SYNONYMS[colour][0]} {CATEGORY_SYNONYMS[category][0]}")


def caption_words(category: str, colour: str, held_out: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(nouns, colour words) used for this object in training captions, or the held-out ones."""
    _check(category, colour)
    if held_out:
        return HELD_OUT_SYNONYMS[category], HELD_OUT_SYNONYMS[colour]
    return CATEGORY_SYNONYMS[category], COLOUR_SYNONYMS[colour]


def _pick(options: tuple[str, ...], generator: torch.Generator | None) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def random_caption(category: str, colour: str, azimuth_deg: float = 0.0, elevation_deg: float = 0.0,
                   generator: torch.Generator | None = None, view_prob: float = 0.5) -> str:
    """A random training caption; with probability ``view_prob`` it ends in ", <view> view".

    The view word comes from the camera's azimuth/elevation (``view_word``).
    """
    _check(category, colour)
    if not 0.0 <= view_prob <= 1.0:
        raise ValueError(f"view_prob must be in [0, 1], got {view_prob}")
    template = _pick(TEMPLATES, generator)
    text = _fix_articles(template.format(colour=_pick(COLOUR_SYNONYMS[colour], generator),
                                         noun=_pick(CATEGORY_SYNONYMS[category], generator)))
    if float(torch.rand((), generator=generator)) < view_prob:
        text = f"{text}, {view_word(azimuth_deg, elevation_deg)} view"
    return text
