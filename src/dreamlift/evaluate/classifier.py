"""The independent evaluator: a small CNN that names an image's category, colour and view.

It is trained only on ground-truth renders of the world (never on the prior's samples),
and scores the prior's samples and, later, renders of text-to-3D results — dreamlift's
analogue of DreamFusion's CLIP R-Precision. Three heads share one trunk:

- category (one of the world's categories),
- colour (one of its named colours),
- view ("front", "side", "back", "overhead"), trained only on front-facing categories,
  where the view can be told from the picture.

    dreamlift train-evaluator --data DATASET_DIR --out evaluator/
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DreamliftError, atomic_write, config_to_dict, option

__all__ = ["VIEWS", "WorldClassifier", "Prediction", "Evaluator", "TrainEvaluatorConfig", "train_evaluator",
           "SHIPPED_EVALUATOR", "view_labels", "save_evaluator", "EVALUATOR_KEYS"]

VIEWS = ("front", "side", "back", "overhead")
SHIPPED_EVALUATOR = Path(__file__).resolve().parent / "weights"


def _names(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)


def _size(multiple: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 and v % multiple == 0


# what Evaluator reads from evaluator.json (the format of dreamlift.prior.model.read_meta)
EVALUATOR_KEYS = {
    "categories": (True, _names, "a non-empty list of strings"),
    "colours": (True, _names, "a non-empty list of strings"),
    "views": (False, lambda v: v == list(VIEWS), f"the list {list(VIEWS)}"),
    "resolution": (True, _size(1), "an integer in [1, 4096]"),
    "width": (True, _size(8), "a multiple of 8 in [8, 4096]"),
    "sha256": (False, lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
               "a sha256 of the weights file as 64 lowercase hex digits"),
}


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class WorldClassifier(nn.Module):
    """images (B, 3, R, R) in [0, 1] -> logits for category (B, C), colour (B, K), view (B, 4)."""

    def __init__(self, num_categories: int, num_colours: int, width: int = 32):
        super().__init__()
        w = width
        self.trunk = nn.Sequential(_block(3, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2),
                                   _block(2 * w, 4 * w), nn.MaxPool2d(2), _block(4 * w, 4 * w),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.category = nn.Linear(4 * w, num_categories)
        self.colour = nn.Linear(4 * w, num_colours)
        self.view = nn.Linear(4 * w, len(VIEWS))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.trunk(images * 2 - 1)  # (B, 4w)
        return self.category(h), self.colour(h), self.view(h)


@dataclass
class Prediction:
    """Class probabilities per head, each (B, classes)."""

    category: Tensor
    colour: Tensor
    view: Tensor


class Evaluator:
    """The shipped (or a given) classifier with its label names.

    Args:
        path: folder with evaluator.safetensors and evaluator.json (default: shipped weights).
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu"):
        path = Path(path) if path is not None else SHIPPED_EVALUATOR
        meta_file, weights_file = path / "evaluator.json", path / "evaluator.safetensors"
        if not meta_file.is_file() or not weights_file.is_file():
            raise DreamliftError(f"no evaluator weights in {path}; train them with 'dreamlift train-evaluator'")
        from ..prior.model import build_matching, load_weights, read_meta

        self.meta = read_meta(meta_file, EVALUATOR_KEYS)
        weights = load_weights(weights_file, self.meta, meta_file)
        self.categories: list[str] = self.meta["categories"]
        self.colours: list[str] = self.meta["colours"]
        self.resolution: int = self.meta["resolution"]
        width = self.meta["width"]
        self.model = build_matching(lambda: WorldClassifier(len(self.categories), len(self.colours), width), weights,
                                    weights_file, meta_file)
        self.model.load_state_dict({k: v.float() for k, v in weights.items()})
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 256) -> Prediction:
        """images (B, 3, H, W) in [0, 1], resized to the evaluator's resolution -> probabilities."""
        outs = []
        for chunk in images.split(batch_size):
            x = chunk.to(self.device, torch.float32)
            if x.shape[-1] != self.resolution:
                x = F.interpolate(x, size=(self.resolution, self.resolution), mode="area" if x.shape[-1] >
                                  self.resolution else "bilinear")
            outs.append([o.softmax(-1).cpu() for o in self.model(x)])
        return Prediction(*(torch.cat([o[i] for o in outs]) for i in range(3)))


@dataclass
class TrainEvaluatorConfig:
    """Settings of ``dreamlift train-evaluator``."""

    data: Path = option(Path("data/world"), "a world dataset folder (ground-truth renders)")
    out: Path = option(Path("evaluator"), "folder to write evaluator.safetensors and evaluator.json")
    resolution: int = option(32, "image side the classifier works at")
    width: int = option(16, "channels of the first block")
    epochs: float = option(0.5, "passes over the training split (fractions allowed)")
    batch_size: int = option(128, "images per step")
    lr: float = option(2e-3, "AdamW learning rate (cosine-decayed)")
    holdout: float = option(0.1, "fraction of images held out to measure accuracy")
    seed: int = option(0, "seed")


def view_labels(azimuth: Tensor, elevation: Tensor) -> Tensor:
    """(N,) indices into VIEWS of the view word of each camera (azimuth, elevation in degrees)."""
    from ..render.camera import view_word

    return torch.tensor([VIEWS.index(view_word(float(a), float(e))) for a, e in zip(azimuth, elevation)])


def evaluate_accuracy(model: WorldClassifier, images: Tensor, cat: Tensor, col: Tensor, view: Tensor,
                      view_mask: Tensor) -> dict[str, float]:
    """Top-1 accuracy per head on uint8 images (N, R, R, 3); view only where view_mask."""
    model.eval()
    preds = [[], [], []]
    with torch.no_grad():
        for chunk in images.split(512):
            outs = model(chunk.permute(0, 3, 1, 2).float() / 255)
            for p, o in zip(preds, outs):
                p.append(o.argmax(-1))
    pc, pk, pv = (torch.cat(p) for p in preds)
    return {"category": float((pc == cat).float().mean()), "colour": float((pk == col).float().mean()),
            "view_front_facing": float((pv[view_mask] == view[view_mask]).float().mean()) if view_mask.any() else
            float("nan"), "n": int(images.shape[0])}


def train_evaluator(cfg: TrainEvaluatorConfig, progress: bool = False) -> dict:
    """Train on a world dataset, report held-out accuracy, and save the weights."""
    from ..prior.data import load_training_data
    from ..world import FRONT_FACING

    data = load_training_data(cfg.data, cfg.resolution)
    if data.source != "world" or data.labels is None or data.names is None:
        raise DreamliftError(f"{cfg.data} is not a world dataset; the evaluator needs ground-truth labels")
    categories, colours = data.names["categories"], data.names["colours"]
    lab = data.labels
    view = view_labels(lab["azimuth"], lab["elevation"])
    front_ids = torch.tensor([categories.index(c) for c in FRONT_FACING if c in categories])
    view_mask = torch.isin(lab["category"], front_ids)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    perm = torch.randperm(len(data), generator=g)
    n_hold = max(1, int(len(data) * cfg.holdout))
    hold, train = perm[:n_hold], perm[n_hold:]
    model = WorldClassifier(len(categories), len(colours), cfg.width)
    steps = int(cfg.epochs * (len(train) // cfg.batch_size))
    if steps <= 0:
        raise DreamliftError("too few images for one training step; make a larger dataset")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="train-evaluator")
    model.train()
    for step in it:
        idx = train[torch.randint(0, len(train), (cfg.batch_size,), generator=g)]
        x = data.images[idx].permute(0, 3, 1, 2).float() / 255
        lc, lk, lv = model(x)
        vm = view_mask[idx]
        loss = F.cross_entropy(lc, lab["category"][idx]) + F.cross_entropy(lk, lab["colour"][idx])
        if vm.any():
            loss = loss + F.cross_entropy(lv[vm], view[idx][vm])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    acc = evaluate_accuracy(model, data.images[hold], lab["category"][hold], lab["colour"][hold], view[hold],
                            view_mask[hold])
    info = {"categories": categories, "colours": colours, "views": list(VIEWS), "resolution": cfg.resolution,
            "width": cfg.width, "train_images": len(train), "steps": steps, "train_seconds": seconds,
            "holdout_accuracy": acc, "config": config_to_dict(cfg)}
    save_evaluator(cfg.out, model, info)
    return info


def save_evaluator(out: Path, model: WorldClassifier, info: dict) -> None:
    """Write ``evaluator.safetensors`` and ``evaluator.json`` (``info`` plus the sha256 of the weights file,
    which ``Evaluator`` checks) into the folder ``out``."""
    from safetensors.torch import save

    from ..interrupt import interruptible
    from ..prior.model import sha256_hex

    buf = save({k: v.detach().contiguous() for k, v in model.state_dict().items()})
    info["sha256"] = sha256_hex(buf)
    with interruptible():  # a Ctrl-C between the two files waits until both are written
        atomic_write(Path(out) / "evaluator.safetensors", buf)
        atomic_write(Path(out) / "evaluator.json", json.dumps(info, indent=2).encode())


def run_train_evaluator(cfg: TrainEvaluatorConfig) -> None:
    import sys

    info = train_evaluator(cfg, progress=sys.stderr.isatty())
    acc = info["holdout_accuracy"]
    print(f"held-out accuracy on {acc['n']} renders: category {acc['category']:.2%}, colour {acc['colour']:.2%}, "
          f"view (front-facing) {acc['view_front_facing']:.2%}; saved to {cfg.out}")
