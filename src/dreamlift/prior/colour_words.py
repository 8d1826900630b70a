"""Colour words a person reads without effort, mapped to the world's ten colours through a colour-name table.

The built-in prior learnt 21 colour words (``dreamlift.world.captions.COLOUR_SYNONYMS``). Its text encoder
places most other colour words nowhere near the right colour ("cobalt" nearest black, "lemon" nearest
orange: docs/decisions/colour-words.md), so a colour word is read through a table of colour
names instead, and only words no table knows fall back to the encoder (``dreamlift.prior.vocabulary``).

The tables, in the order they are consulted:

1. ``MATERIALS``, our own small table of materials a person means as a colour ("wooden" is brown, "gold"
   is yellow, "silver" has no world colour); listed below, each with the reason.
2. The XKCD colour survey's 949 names (Randall Munroe, 2010: the names some 222,500 people gave to
   random colours), as matplotlib ships them (``matplotlib._color_data.XKCD_COLORS``).
3. The 148 CSS Color Module Level 4 named colours (W3C), also from matplotlib (``CSS4_COLORS``).

XKCD comes first because it records what people call a colour, where CSS names are a web standard's
choices ("lavender" is near-white in CSS, a pale purple to the survey). A word found in neither is matched
to a name at most one typing slip away (``difflib`` ratio >= 0.9: "vermilion" finds the survey's
"vermillion").

A phrase ending in a training colour word ("navy blue", "forest green", "dark red") is that colour: the
last word of an English colour compound names its hue and the words before modify it. It counts as a
compound only when the survey names the whole phrase or every word before the last is a colour name or a
lightness word (``MODIFIERS``), so "two red" and "shiny blue" are not colours. Every other
colour's table RGB (sRGB) goes to CIELAB (D65) and takes the world colour nearest by CIEDE2000 (Sharma,
Wu and Dalal 2005). The world colours are the albedos of ``dreamlift.world.colours``, compared as sRGB
because the renders the prior learnt from store them unchanged. Black is a candidate only for near-neutral
colours (chroma C* < 15): the world's black is neutral, and a dark colour that has a hue ("maroon", "navy")
is named by its hue. A light neutral (C* < 15, L* > 35: grey, silver, white) has no world colour; it is
reported as such.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ColourMatch", "MATERIALS", "srgb_to_lab", "delta_e_2000", "nearest_world_colour", "lookup",
           "find_colour_phrases", "NEUTRAL_CHROMA"]

NEUTRAL_CHROMA = 15.0  # C* below this is near-neutral: only then may a colour be black
LIGHT_NEUTRAL_L = 35.0  # a near-neutral lighter than this (grey, silver, white) has no world colour
#: Words that change a colour's lightness or strength, not its name ("dark green" is a green).
MODIFIERS = frozenset({"light", "dark", "pale", "deep", "bright", "pastel", "vivid", "neon", "dull", "muted",
                       "dusty", "soft", "rich", "medium", "hot", "electric"})
_MAX_WORDS = 3  # longest colour phrase looked up ("dark forest green")
_FUZZY_CUTOFF = 0.9
_FUZZY_MIN_LEN = 5

#: Materials a person means as a colour: word -> world colour, or None where the world has none (no grey or
#: white object is in the world). Ours, kept small; the reasons are the materials' usual colours.
MATERIALS: dict[str, str | None] = {
    # wood is brown
    "wood": "brown", "wooden": "brown", "oak": "brown", "walnut": "brown", "teak": "brown", "timber": "brown",
    "leather": "brown", "bronze": "brown",
    # gold and brass are yellow metals, copper an orange one
    "gold": "yellow", "golden": "yellow", "gilded": "yellow", "brass": "yellow", "copper": "orange",
    # black stones and coal
    "onyx": "black", "obsidian": "black", "jet": "black", "coal": "black", "ebony": "black",
    # grey and white metals and materials: no world colour
    "silver": None, "silvery": None, "steel": None, "chrome": None, "metal": None, "metallic": None,
    "iron": None, "aluminium": None, "aluminum": None, "pewter": None, "platinum": None, "ivory": None,
    "pearl": None, "marble": None, "porcelain": None,
}


def srgb_to_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """CIELAB (D65 white, 2 degree observer) of an sRGB colour with channels in [0, 1]."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b
    xn, yn, zn = 0.95047, 1.0, 1.08883

    def f(t: float) -> float:
        d = 6.0 / 29.0
        return t ** (1.0 / 3.0) if t > d**3 else t / (3 * d * d) + 4.0 / 29.0

    fx, fy, fz = f(x / xn), f(y / yn), f(z / zn)
    return (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz))


def delta_e_2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """The CIEDE2000 colour difference (kL = kC = kH = 1), as Sharma, Wu and Dalal (2005) state it."""
    l1, a1, b1 = lab1
    l2, a2, b2 = lab2
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dlp, dcp = l2 - l1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    else:
        dhp = h2p - h1p
        dhp = dhp - 360 if dhp > 180 else dhp + 360 if dhp < -180 else dhp
    dhp_big = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dhp / 2))
    lp_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        hp_bar = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hp_bar = (h1p + h2p) / 2
    else:
        hp_bar = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(hp_bar - 30)) + 0.24 * math.cos(math.radians(2 * hp_bar))
         + 0.32 * math.cos(math.radians(3 * hp_bar + 6)) - 0.20 * math.cos(math.radians(4 * hp_bar - 63)))
    d_theta = 30 * math.exp(-(((hp_bar - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (lp_bar - 50) ** 2 / math.sqrt(20 + (lp_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt((dlp / s_l) ** 2 + (dcp / s_c) ** 2 + (dhp_big / s_h) ** 2
                     + r_t * (dcp / s_c) * (dhp_big / s_h))


@lru_cache(maxsize=1)
def _world_labs() -> dict[str, tuple[float, float, float]]:
    from ..world.colours import COLOURS

    return {name: srgb_to_lab(rgb) for name, rgb in COLOURS.items()}


def nearest_world_colour(rgb: tuple[float, float, float], *, metric: str = "ciede2000",
                         black_rule: bool = True) -> tuple[str | None, float]:
    """(world colour, distance to it) for an sRGB colour; (None, distance to the nearest) for a light neutral.

    The shipped rules are the defaults: CIEDE2000, and black a candidate only for a near-neutral colour. The
    keywords exist for benchmarks/colour_words.py, which compares the rules: ``metric="cie76"`` (Euclidean in
    CIELAB), ``black_rule=False`` (black a candidate for every colour)."""
    lab = srgb_to_lab(rgb)
    chroma = math.hypot(lab[1], lab[2])
    labs = _world_labs()
    dist = delta_e_2000 if metric == "ciede2000" else math.dist
    candidates = [c for c in labs if c != "black" or chroma < NEUTRAL_CHROMA or not black_rule]
    best = min(candidates, key=lambda c: dist(lab, labs[c]))
    if chroma < NEUTRAL_CHROMA and lab[0] > LIGHT_NEUTRAL_L:
        return None, dist(lab, labs[best])
    return best, dist(lab, labs[best])


@dataclass(frozen=True)
class ColourMatch:
    """A colour word or phrase of a prompt and the world colour it is read as."""

    phrase: str  # as found in the prompt (lower case)
    colour: str | None  # the world colour, or None: the world has no colour near it
    source: str  # "material", "xkcd", "css4", "head" (the phrase's last word is a training colour word)
    name: str  # the table's name that matched (differs from phrase after a typing-slip match)
    hex: str | None  # the table's sRGB, "#rrggbb" (None for materials and head matches)
    delta_e: float | None  # CIEDE2000 from the table colour to the world colour

    def describe(self) -> str:
        """'vermilion' -> red (XKCD 'vermillion' #f4320c, CIEDE2000 8.5), for notes."""
        what = self.colour or "no world colour"
        if self.source == "material":
            return f"{self.phrase!r} -> {what} (dreamlift's materials table)"
        if self.source == "head":
            return f"{self.phrase!r} -> {what} (a kind of {self.name})"
        table = {"xkcd": "XKCD colour", "css4": "CSS colour"}[self.source]
        named = f" {self.name!r}" if self.name != self.phrase else ""
        return f"{self.phrase!r} -> {what} ({table}{named} {self.hex}, CIEDE2000 {self.delta_e:.1f})"


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """(XKCD name -> hex, CSS4 name -> hex), lower case, from matplotlib's colour data."""
    from matplotlib import _color_data as data  # a plain dict module: no plotting machinery is imported

    xkcd = {k[len("xkcd:"):].lower(): v.lower() for k, v in data.XKCD_COLORS.items()}
    css4 = {k.lower(): v.lower() for k, v in data.CSS4_COLORS.items()}
    return xkcd, css4


def _rgb(hex_code: str) -> tuple[float, float, float]:
    h = hex_code.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255)


@lru_cache(maxsize=1)
def _training_colour_of() -> dict[str, str]:
    """Training colour word -> its world colour (built once: lookup runs it for every candidate span)."""
    from ..world.captions import COLOUR_SYNONYMS

    return {w: c for c, ws in COLOUR_SYNONYMS.items() for w in ws}


def lookup(phrase: str, fuzzy: bool = True, *, order: tuple[str, ...] = ("xkcd", "css4"), heads: bool = True,
           metric: str = "ciede2000", black_rule: bool = True) -> ColourMatch | None:
    """The world colour a colour word or phrase means, or None when no table knows it.

    The defaults are the shipped rules; benchmarks/colour_words.py changes one at a time to compare them: the
    tables' ``order``, no head-word rule (``heads=False``: "navy blue" looked up whole), and
    ``nearest_world_colour``'s ``metric`` and ``black_rule``."""
    phrase = " ".join(phrase.lower().split())
    if phrase in MATERIALS:
        return ColourMatch(phrase, MATERIALS[phrase], "material", phrase, None, None)
    words = phrase.split()
    training = _training_colour_of()
    xkcd, css4 = _tables()
    if heads and len(words) > 1 and (words[-1] in training or words[-1] in MATERIALS):
        # "navy blue", "dark wood": a compound the survey names, or a head with colour modifiers only
        if phrase in xkcd or all(w in MODIFIERS or w in xkcd or w in css4 or w in MATERIALS for w in words[:-1]):
            colour = training[words[-1]] if words[-1] in training else MATERIALS[words[-1]]
            return ColourMatch(phrase, colour, "head", words[-1], None, None)
    found = None
    keys = {"xkcd": (xkcd, phrase), "css4": (css4, phrase.replace(" ", ""))}  # CSS4 names are one word
    for source in order:
        table, key = keys[source]
        if key in table:
            found = (source, key, table[key])
            break
    if found is None and fuzzy and len(words) == 1 and len(phrase) >= _FUZZY_MIN_LEN:
        close = difflib.get_close_matches(phrase, list(xkcd) + list(MATERIALS), n=1, cutoff=_FUZZY_CUTOFF)
        if close and close[0] in MATERIALS:
            return ColourMatch(phrase, MATERIALS[close[0]], "material", close[0], None, None)
        if close:
            found = ("xkcd", close[0], xkcd[close[0]])
    if found is None:
        return None
    source, name, hex_code = found
    colour, de = nearest_world_colour(_rgb(hex_code), metric=metric, black_rule=black_rule)
    return ColourMatch(phrase, colour, source, name, hex_code, de)


def find_colour_phrases(words: list[str], candidate: list[bool]) -> list[tuple[int, int, ColourMatch]]:
    """The colour phrases in ``words``: (start, end, match), left to right, longest first, not overlapping.

    Only spans made wholly of candidate words are looked up (the caller excludes the words the prior
    already knows as colours or nouns, so "coffee" in "coffee mug" is not read as a colour), except that
    a span may end in a training colour word ("navy blue").
    """
    training = _training_colour_of()
    found: list[tuple[int, int, ColourMatch]] = []
    i = 0
    while i < len(words):
        if not candidate[i]:
            i += 1
            continue
        for n in range(min(_MAX_WORDS, len(words) - i), 0, -1):
            span = words[i:i + n]
            inner_ok = all(candidate[i:i + n - 1]) and (candidate[i + n - 1] or (n > 1 and span[-1] in training))
            if not inner_ok:
                continue
            match = lookup(" ".join(span), fuzzy=n == 1)
            if match is not None:
                found.append((i, i + n, match))
                i += n
                break
        else:
            i += 1
    return found
