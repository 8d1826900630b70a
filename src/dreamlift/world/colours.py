"""The named colours of the world and the background colour of every render.

Each colour name maps to a linear RGB albedo in [0, 1]. The background is a constant
white, ``BACKGROUND_RGB``; no object colour is close to it (the nearest, yellow, is
more than 0.8 away in RGB), so the mask of an object can always be read from an image.
"""

from __future__ import annotations

__all__ = ["COLOURS", "COLOUR_NAMES", "BACKGROUND_RGB", "colour_rgb"]

RGB = tuple[float, float, float]

#: Named colours, in a fixed order (the colour index stored in datasets is the position here).
COLOURS: dict[str, RGB] = {
    "red": (0.85, 0.10, 0.10),
    "orange": (0.95, 0.50, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.65, 0.20),
    "cyan": (0.10, 0.75, 0.80),
    "blue": (0.10, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.70),
    "pink": (0.95, 0.50, 0.70),
    "brown": (0.50, 0.30, 0.12),
    "black": (0.08, 0.08, 0.08),
}

#: Colour names in index order.
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

#: The constant background of every render (white).
BACKGROUND_RGB: RGB = (1.0, 1.0, 1.0)


def colour_rgb(name: str) -> RGB:
    """The RGB albedo of a named colour; raises ``ValueError`` naming the valid colours."""
    try:
        return COLOURS[name]
    except KeyError:
        raise ValueError(f"unknown colour {name!r}; choose one of {', '.join(COLOUR_NAMES)}") from None
