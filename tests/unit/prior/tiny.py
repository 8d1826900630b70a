"""Tiny data, configs and helpers shared by the prior's tests (a 16x16 U-Net trained for a few steps)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dreamlift.prior.train import TrainPriorConfig
from dreamlift.prior.unet import UNetConfig

TINY = UNetConfig(resolution=16, channels=(16, 32), attention_levels=(1,), head_dim=8, norm_groups=8)

# the same run as tiny_config, as train-prior options (--data, --out and --steps left to the caller)
TINY_ARGS = ["--batch-size", "2", "--warmup", "2", "--sample-every", "0", "--no-bf16", "--num-train-timesteps", "100",
             "--unet-resolution", "16", "--unet-channels", "16,32", "--unet-attention-levels", "1",
             "--unet-head-dim", "8", "--unet-norm-groups", "8"]


def make_pairs(folder: Path) -> Path:
    """Four coloured 24x20 images with .txt captions in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        img = np.zeros((24, 20, 3), np.uint8)
        img[:, :, i % 3] = 200
        img += rng.integers(0, 40, img.shape, dtype=np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
        (folder / f"im{i}.txt").write_text(f"a {colour} square\n")
    return folder


def tiny_config(data: Path, out: Path, **kw) -> TrainPriorConfig:
    base = dict(data=data, out=out, steps=6, batch_size=4, warmup=2, checkpoint_every=2, sample_every=0, log_every=2,
                bf16=False, unet=TINY, num_train_timesteps=100)
    return TrainPriorConfig(**(base | kw))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder below ``root``: relative path -> (kind, sha256 of the bytes, mtime in ns)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_dir():
            out[str(p.relative_to(root))] = ("dir", None, None)
        else:
            out[str(p.relative_to(root))] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out
