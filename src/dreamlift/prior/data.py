"""Training data for the prior: a world dataset, or a user's folder of image + caption pairs.

Both become a ``PriorData``: uint8 images (N, R, R, 3) at the training resolution and a
caption function. For a world dataset a fresh caption is drawn at every visit (random
template, synonyms and view word from the stored camera), so the prior sees far more
phrasings than there are images. For a folder, each ``name.png`` / ``name.jpg`` pairs with
``name.txt`` holding its caption.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import DreamliftError

__all__ = ["PriorData", "load_training_data", "resize_uint8", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class PriorData:
    """Images and their captions."""

    images: Tensor  # (N, R, R, 3) uint8
    caption: Callable[[int, torch.Generator], str]  # index, generator -> caption
    source: str  # "world" or "folder"
    labels: dict[str, Tensor] | None = None  # world only: category, colour (N,) indices; azimuth, elevation, distance
    names: dict[str, list[str]] | None = None  # world only: "categories", "colours" — what the indices name

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: Tensor, g: torch.Generator) -> tuple[Tensor, list[str]]:
        """Images in [-1, 1], (B, 3, R, R) float32, and one caption each."""
        x = self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return x, [self.caption(int(i), g) for i in idx]


def resize_uint8(images: np.ndarray | Tensor, resolution: int) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, R, R, 3) uint8, area-averaged when shrinking."""
    x = torch.as_tensor(images)
    if x.shape[1] == resolution and x.shape[2] == resolution:
        return x.contiguous()
    out = []
    for chunk in x.split(4096):
        f = chunk.permute(0, 3, 1, 2).float()
        mode = "area" if chunk.shape[1] > resolution else "bilinear"
        f = F.interpolate(f, size=(resolution, resolution), mode=mode)
        out.append(f.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).contiguous()


def _load_world(path: Path, resolution: int, view_prob: float) -> PriorData:
    from ..world import CATEGORIES, COLOUR_NAMES
    from ..world.captions import random_caption
    from ..world.dataset import load_dataset

    try:
        ds = load_dataset(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DreamliftError(f"cannot read the world dataset in {path}: {exc}") from exc
    cat, col = ds.category.astype(np.int64), ds.colour.astype(np.int64)
    az, el = ds.azimuth.astype(np.float64), ds.elevation.astype(np.float64)
    cats = list(ds.meta.get("categories", CATEGORIES))
    cols = list(ds.meta.get("colours", COLOUR_NAMES))  # meta stores an ordered name -> RGB dict

    def caption(i: int, g: torch.Generator) -> str:
        return random_caption(cats[cat[i]], cols[col[i]], az[i], el[i], generator=g, view_prob=view_prob)

    labels = {"category": torch.from_numpy(cat), "colour": torch.from_numpy(col),
              "azimuth": torch.from_numpy(az), "elevation": torch.from_numpy(el),
              "distance": torch.from_numpy(ds.distance.astype(np.float64))}
    return PriorData(resize_uint8(ds.images, resolution), caption, "world", labels,
                     {"categories": cats, "colours": cols})


def _load_folder(path: Path, resolution: int) -> PriorData:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, p.with_suffix(".txt")) for p in files]
    missing = [p.name for p, t in pairs if not t.is_file()]
    if missing:
        raise DreamliftError(f"{len(missing)} image(s) in {path} have no caption file, e.g. {missing[0]} "
                             f"needs {Path(missing[0]).with_suffix('.txt')}")
    if not pairs:
        raise DreamliftError(f"no images ({', '.join(IMAGE_SUFFIXES)}) with .txt captions in {path}")
    images, captions = [], []
    for img_path, txt_path in pairs:
        try:
            with Image.open(img_path) as im:
                im = im.convert("RGB")
                side = min(im.size)  # centre crop to a square, then resize
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
                images.append(np.asarray(im, dtype=np.uint8))
        except (OSError, UnidentifiedImageError) as exc:
            raise DreamliftError(f"cannot read image {img_path}: {exc}") from exc
        text = txt_path.read_text(encoding="utf-8").strip()
        if not text:
            raise DreamliftError(f"empty caption in {txt_path}")
        captions.append(text)
    return PriorData(torch.from_numpy(np.stack(images)), lambda i, g: captions[i], "folder")


def load_training_data(path: str | Path, resolution: int, view_prob: float = 0.5) -> PriorData:
    """Load a world dataset (a folder with meta.json) or a folder of image + .txt caption pairs."""
    path = Path(path)
    if not path.is_dir():
        raise DreamliftError(f"training data folder not found: {path}")
    if (path / "meta.json").is_file():
        meta = json.loads((path / "meta.json").read_text())
        if "shards" in meta:
            return _load_world(path, resolution, view_prob)
    return _load_folder(path, resolution)
