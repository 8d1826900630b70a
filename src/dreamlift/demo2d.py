"""A conditional DDPM on labelled 2D point sets, trained and sampled in seconds on a CPU.

Everything here goes through ``dreamlift.diffusion``: Algorithm 1 with caption
(label) dropout to train, Algorithm 2 or DDIM with classifier-free guidance to
sample. The target is a mixture of labelled components (rings and clusters); the
samples are scored per class with the sliced Wasserstein distance to fresh target
draws, and by how many of them lie nearest their own component.

    dreamlift demo2d --out demo2d.png
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from .config import DreamliftError, atomic_write, config_to_dict, option
from .diffusion import NoiseSchedule, diffusion_loss, guided_denoiser, sample

if TYPE_CHECKING:
    import PIL.Image

__all__ = ["Demo2DConfig", "Component", "COMPONENTS", "sample_target", "Denoiser2D", "sliced_wasserstein", "run_demo2d"]


@dataclass(frozen=True)
class Component:
    """One labelled component of the target: a ring (radius > 0) or a Gaussian cluster (radius 0)."""

    name: str
    centre: tuple[float, float]
    radius: float
    width: float  # std of the ring's thickness, or of the cluster

    def sample(self, n: int, g: torch.Generator) -> Tensor:
        """(n, 2) points."""
        c = torch.tensor(self.centre)
        if self.radius == 0:
            return c + self.width * torch.randn(n, 2, generator=g)
        angle = 2 * math.pi * torch.rand(n, generator=g)
        r = self.radius + self.width * torch.randn(n, generator=g)
        return c + r.unsqueeze(1) * torch.stack([angle.cos(), angle.sin()], dim=1)

    def distance(self, x: Tensor) -> Tensor:
        """(N,) distance of points x (N, 2) to the component's centre line, in units of its width."""
        d = (x - torch.tensor(self.centre)).norm(dim=1)
        return (d - self.radius).abs() / self.width


COMPONENTS: tuple[Component, ...] = (
    Component("left ring", (-1.0, 0.3), 0.45, 0.04),
    Component("right ring", (1.0, 0.3), 0.45, 0.04),
    Component("small ring", (0.0, -0.8), 0.25, 0.03),
    Component("top cluster", (0.0, 1.1), 0.0, 0.08),
    Component("bottom-left cluster", (-1.1, -1.0), 0.0, 0.08),
    Component("bottom-right cluster", (1.1, -1.0), 0.0, 0.08),
)


def sample_target(labels: Tensor, g: torch.Generator) -> Tensor:
    """(N, 2) target points, one from the component of each label in ``labels`` (N,)."""
    x = torch.empty(labels.shape[0], 2)
    for k, comp in enumerate(COMPONENTS):
        idx = (labels == k).nonzero().squeeze(1)
        if idx.numel():
            x[idx] = comp.sample(idx.numel(), g)
    return x


@dataclass
class Demo2DConfig:
    """Settings of the 2D demonstration."""

    out: Path = option(Path("demo2d.png"), "where to save the plot (a metrics .json goes beside it)")
    train_steps: int = option(3000, "optimiser steps of Algorithm 1")
    batch_size: int = option(512, "training batch size")
    lr: float = option(3e-3, "AdamW learning rate (cosine-decayed to 0)")
    width: int = option(128, "hidden width of the MLP denoiser")
    schedule: Literal["linear", "cosine"] = option("linear", "noise schedule")
    num_train_timesteps: int = option(1000, "T, the number of diffusion steps")
    prediction: Literal["eps", "x0", "v"] = option("eps", "what the network predicts")
    cond_drop_prob: float = option(0.1, "label dropout for classifier-free guidance")
    sampler: Literal["ddpm", "ddim"] = option("ddpm", "Algorithm 2 (ddpm) or DDIM")
    sample_steps: int = option(250, "reverse steps when sampling")
    guidance_scale: float = option(1.0, "classifier-free guidance scale s (1 = purely conditional)")
    samples_per_class: int = option(1000, "samples drawn per class for the plot and the metrics")
    seed: int = option(0, "random seed (training, sampling and metrics)")
    force: bool = option(False, "overwrite existing output files")

    def validate(self) -> None:
        positive = dict(train_steps=self.train_steps, batch_size=self.batch_size, width=self.width,
                        num_train_timesteps=self.num_train_timesteps, sample_steps=self.sample_steps,
                        samples_per_class=self.samples_per_class)
        for name, value in positive.items():
            if value <= 0:
                raise DreamliftError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.sample_steps > self.num_train_timesteps:
            raise DreamliftError(f"--sample-steps ({self.sample_steps}) cannot exceed the {self.num_train_timesteps} "
                                 "diffusion steps")
        if not 0 <= self.cond_drop_prob < 1:
            raise DreamliftError(f"--cond-drop-prob must lie in [0, 1), got {self.cond_drop_prob}")
        if not self.lr > 0:
            raise DreamliftError(f"--lr must be positive, got {self.lr}")
        if self.out.suffix.lower() != ".png":
            raise DreamliftError(f"--out must name a .png file, got {self.out}")


class Denoiser2D(nn.Module):
    """An MLP denoiser for 2D points: model(x_t (B, 2), t (B,), label (B,)) -> (B, 2).

    Label ``num_classes`` is the null label used for classifier-free guidance.
    """

    def __init__(self, num_classes: int, width: int = 192, num_train_timesteps: int = 1000):
        super().__init__()
        self.num_classes, self.T = num_classes, num_train_timesteps
        self.label_emb = nn.Embedding(num_classes + 1, width)
        self.time_mlp = nn.Sequential(nn.Linear(32, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(2, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(width, width)) for _ in range(4)])
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2))

    def time_features(self, t: Tensor) -> Tensor:
        """(B,) indices -> (B, 32) sinusoidal features of t / T (Vaswani et al. 2017)."""
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), 16, device=t.device))  # (16,)
        arg = (t.float() / self.T).unsqueeze(1) * freqs * 2 * math.pi  # (B, 16)
        return torch.cat([arg.sin(), arg.cos()], dim=1)

    def forward(self, x: Tensor, t: Tensor, label: Tensor) -> Tensor:
        h = self.inp(x) + self.time_mlp(self.time_features(t)) + self.label_emb(label)  # (B, W)
        for block in self.blocks:
            h = h + block(h)  # residual MLP
        return self.out(h)


def sliced_wasserstein(a: Tensor, b: Tensor, num_projections: int = 256, g: torch.Generator | None = None) -> float:
    """Sliced 1-Wasserstein distance between two equal-size point sets a, b of shape (N, D).

    The mean over random unit directions of the exact 1-D W1 distance between the
    projections (sorted projections matched in order).
    """
    if a.shape != b.shape:
        raise ValueError(f"point sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dirs = torch.randn(a.shape[1], num_projections, generator=g, dtype=a.dtype)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (D, P)
    pa, _ = torch.sort(a @ dirs, dim=0)  # (N, P)
    pb, _ = torch.sort(b @ dirs, dim=0)
    return float((pa - pb).abs().mean())


def train_denoiser(cfg: Demo2DConfig, schedule: NoiseSchedule, progress: bool = False) -> Denoiser2D:
    """Train the MLP with Algorithm 1 and label dropout."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    k = len(COMPONENTS)
    model = Denoiser2D(k, cfg.width, cfg.num_train_timesteps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train_steps)
    null = torch.tensor(k)
    steps = range(cfg.train_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="training", unit="step")
    for _ in steps:
        labels = torch.randint(0, k, (cfg.batch_size,), generator=g)
        x0 = sample_target(labels, g)
        loss = diffusion_loss(model, x0, schedule, prediction=cfg.prediction, cond=labels, null_cond=null,
                              cond_drop_prob=cfg.cond_drop_prob, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            steps.set_postfix(loss=f"{loss.item():.4f}")
    return model.eval()


def evaluate(model: Denoiser2D, schedule: NoiseSchedule, cfg: Demo2DConfig) -> tuple[Tensor, Tensor, dict]:
    """Sample every class and score it. Returns (samples (K*n, 2), labels (K*n,), metrics)."""
    k, n = len(COMPONENTS), cfg.samples_per_class
    g = torch.Generator().manual_seed(cfg.seed + 1)
    labels = torch.arange(k).repeat_interleave(n)  # (K*n,)
    denoise = guided_denoiser(model, labels, torch.tensor(k), cfg.guidance_scale)
    x = sample(denoise, (k * n, 2), schedule, method=cfg.sampler, steps=cfg.sample_steps,
               prediction=cfg.prediction, generator=g)
    ref = sample_target(labels, g)
    ref2 = sample_target(labels, g)
    dist = torch.stack([c.distance(x) for c in COMPONENTS], dim=1)  # (K*n, K)
    nearest = dist.argmin(dim=1)
    per_class = []
    for c in range(k):
        sel = labels == c
        per_class.append({
            "name": COMPONENTS[c].name,
            "swd": sliced_wasserstein(x[sel], ref[sel], g=g),
            "swd_floor": sliced_wasserstein(ref2[sel], ref[sel], g=g),  # two target draws: the noise floor
            "nearest_own_component": float((nearest[sel] == c).float().mean()),
        })
    metrics = {
        "swd_mean": sum(p["swd"] for p in per_class) / k,
        "swd_floor_mean": sum(p["swd_floor"] for p in per_class) / k,
        "nearest_own_component_min": min(p["nearest_own_component"] for p in per_class),
        "per_class": per_class,
    }
    return x, labels, metrics


PALETTE = [(228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40)]


def plot(panels: list[tuple[str, Tensor, Tensor]], size: int = 420) -> "PIL.Image.Image":
    """Scatter plots side by side, one colour per label. Each panel: (title, points (N, 2), labels (N,))."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size * len(panels), size + 24), "white")
    draw = ImageDraw.Draw(img)
    lo, hi = -1.8, 1.8
    for i, (title, pts, labs) in enumerate(panels):
        x0 = i * size
        draw.rectangle([x0 + 4, 24, x0 + size - 4, size + 20], outline=(180, 180, 180))
        draw.text((x0 + 10, 6), title, fill=(0, 0, 0))
        px = ((pts - lo) / (hi - lo) * (size - 8)).tolist()
        for (u, v), lab in zip(px, labs.tolist()):
            cx, cy = x0 + 4 + u, 24 + (size - 8) - v
            draw.point((cx, cy), fill=PALETTE[lab % len(PALETTE)])
    return img


def run_demo2d(cfg: Demo2DConfig, progress: bool = False) -> dict:
    """Train, sample, score and plot. Writes cfg.out (.png) and a .json beside it; returns the metrics."""
    cfg.validate()
    out_json = cfg.out.with_suffix(".json")
    for path in (cfg.out, out_json):
        if path.exists() and not cfg.force:
            raise DreamliftError(f"{path} exists; pass --force to overwrite it")
    schedule = NoiseSchedule.named(cfg.schedule, cfg.num_train_timesteps)
    t0 = time.perf_counter()
    model = train_denoiser(cfg, schedule, progress)
    t1 = time.perf_counter()
    x, labels, metrics = evaluate(model, schedule, cfg)
    t2 = time.perf_counter()
    metrics["train_seconds"], metrics["sample_seconds"] = t1 - t0, t2 - t1
    g = torch.Generator().manual_seed(cfg.seed + 2)
    target = sample_target(labels, g)
    import io

    buf = io.BytesIO()
    plot([("target", target, labels), (f"samples ({cfg.sampler}, {cfg.sample_steps} steps)", x, labels)]).save(
        buf, format="PNG")
    report = {"config": config_to_dict(cfg), "metrics": metrics}
    atomic_write(out_json, json.dumps(report, indent=2).encode())
    atomic_write(cfg.out, buf.getvalue())
    return metrics
