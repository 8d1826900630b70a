"""Reading a user's reference image: any mode PIL opens, one-line errors for bad files.

``load_reference_image(path, resolution)`` returns the image as the world's renders look: the object
on a white background, square, ``resolution`` pixels a side, with a foreground mask. The mask is the
alpha channel where the image has one (palette transparency included); otherwise every pixel that
differs visibly from white (the world's background). Non-square images are padded with background,
never cropped, so the whole object stays in view. Palette, grayscale, 16-bit, CMYK and JPEG images
are converted; EXIF orientation is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import DreamliftError

__all__ = ["ReferenceImage", "load_reference_image", "MIN_SIDE", "MAX_PIXELS", "BACKGROUND_TOLERANCE"]

MIN_SIDE = 16  # pixels: smaller images hold too little of an object to go on
MAX_PIXELS = 64_000_000  # larger ones are refused before they are decoded
BACKGROUND_TOLERANCE = 0.06  # a pixel this close to white on every channel is background (no alpha channel)
MIN_FOREGROUND = 0.002  # the share of foreground pixels below which an image counts as all background


@dataclass
class ReferenceImage:
    """A reference view ready for the priors."""

    rgb: Tensor  # (3, R, R) in [0, 1], composited over white
    mask: Tensor  # (R, R) in [0, 1], 1 on the object
    source_size: tuple[int, int]  # (width, height) of the file
    has_alpha: bool  # the mask came from an alpha channel


def _as_float_rgba(im) -> np.ndarray:
    """(H, W, 4) float32 in [0, 1] from a PIL image of any mode."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit (or 32-bit integer) grayscale
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top, 0.0, 1.0).astype(np.float32)
        return np.dstack([g, g, g, np.ones_like(g)])
    if mode == "F":
        g = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.dstack([g, g, g, np.ones_like(g)])
    if mode == "P" and "transparency" in im.info or mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode not in ("RGBA", "RGB"):
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, P without transparency
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.shape[-1] == 3:
        a = np.dstack([a, np.ones(a.shape[:2], np.float32)])
    return a


def load_reference_image(path: str | Path, resolution: int) -> ReferenceImage:
    """Read ``path`` as a reference view (see the module docstring). Raises a one-line DreamliftError for a
    missing file, a file that is not an image or is truncated, an image under 16 px or over 64 megapixels
    on a side, and one with no object on it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DreamliftError(f"image not found: {path}")
    if not path.is_file():
        raise DreamliftError(f"{path} is not a file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if min(w, h) < MIN_SIDE:
                raise DreamliftError(f"{path} is {w}x{h} pixels; an image needs at least {MIN_SIDE} on each side")
            if w * h > MAX_PIXELS:
                raise DreamliftError(f"{path} is {w}x{h} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; "
                                     "shrink it first")
            im.load()  # decode now: a truncated file fails here
            im = ImageOps.exif_transpose(im)
            has_alpha = "A" in im.getbands() or "a" in im.getbands() or (im.mode == "P" and "transparency" in im.info)
            rgba = _as_float_rgba(im)
    except DreamliftError:
        raise
    except UnidentifiedImageError:
        raise DreamliftError(f"{path} is not an image PIL can read (PNG, JPEG, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DreamliftError(f"cannot read {path}: {reason} (truncated or damaged?)") from None
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    if not has_alpha:  # the world's convention: the object on white
        alpha = ((1.0 - rgb).max(axis=-1) > BACKGROUND_TOLERANCE).astype(np.float32)
    if alpha.mean() < MIN_FOREGROUND:
        raise DreamliftError(f"{path} shows no object: it is all background (white or transparent)")
    # Pad to a square with background, then area-average premultiplied colour and alpha to the resolution.
    hh, ww = rgb.shape[:2]  # after the EXIF turn
    side = max(hh, ww)
    top, left = (side - hh) // 2, (side - ww) // 2
    premul = np.zeros((side, side, 4), np.float32)
    premul[top:top + hh, left:left + ww, :3] = rgb * alpha[..., None]
    premul[top:top + hh, left:left + ww, 3] = alpha
    x = torch.from_numpy(premul).permute(2, 0, 1)[None]  # (1, 4, S, S)
    mode = "area" if side >= resolution else "bilinear"
    x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode=mode)[0].clamp(0, 1)
    a = x[3]
    out_rgb = x[:3] + (1.0 - a)[None]  # over white
    return ReferenceImage(out_rgb.clamp(0, 1), a, (w, h), has_alpha)
