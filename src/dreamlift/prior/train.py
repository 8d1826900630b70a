"""Training the built-in prior: Algorithm 1 with caption dropout, on world views or a folder.

    dreamlift train-prior --data DATASET_DIR --out runs/prior

A run folder holds ``config.json`` (the resolved config), ``checkpoint.pt`` (model, EMA,
optimiser, step and random-generator state, written atomically every
``checkpoint_every`` steps and on Ctrl-C or SIGTERM, which stop the run between two steps),
``log.jsonl`` (loss, learning rate, images/s)
and ``samples/step_XXXXXXX.png`` (EMA samples of fixed prompts). Running the same
command again resumes from the checkpoint and continues bit for bit as an uninterrupted
run would (same seed, same data order, same noise). ``export_prior`` turns a checkpoint
into the shipped form: fp16 EMA weights in safetensors plus ``prior.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..config import DreamliftError, atomic_write, config_to_dict, option
from ..diffusion import NoiseSchedule, diffusion_loss
from ..diffusion.guidance import Cond
from ..interrupt import Interrupted, StopRequest, interruptible
from .data import load_training_data
from .model import sha256_hex
from .text_encoder import TextEncoder
from .unet import CAMERA_FEATURES, PriorUNet, UNetConfig, camera_features, with_camera

__all__ = ["TrainPriorConfig", "train_prior", "export_prior", "load_checkpoint", "min_snr_weights", "add_camera_inputs", "PREVIEW_PROMPTS",
           "TrainingTask", "TextPriorTask", "run_training", "learning_rate"]

PREVIEW_PROMPTS = [
    "a red mug", "a blue chair", "a green house", "a cyan snowman", "a yellow table", "a purple donut",
    "an orange traffic cone", "a pink mushroom",
]


def learning_rate(cfg: "TrainPriorConfig", step: int, start: int = 0) -> float:
    """The learning rate of optimiser step ``step`` (zero-based): linear warm-up from ``start`` (the step a
    fresh optimiser began at), constant, then an optional linear decay to 10% over the last ``decay_steps``
    steps of the run."""
    lr = cfg.lr * min(1.0, (step - start + 1) / cfg.warmup)
    if cfg.decay_steps > 0:
        into = step - (cfg.steps - cfg.decay_steps)
        if into >= 0:
            lr *= 1.0 - 0.9 * min(1.0, (into + 1) / cfg.decay_steps)
    return lr


@dataclass
class TrainPriorConfig:
    """Settings of ``dreamlift train-prior``."""

    data: Path = option(Path("data/world"), "a world dataset folder, or a folder of image + .txt caption pairs")
    out: Path = option(Path("runs/prior"), "run folder: checkpoint, log, samples (resumed if it has a checkpoint)")
    steps: int = option(20000, "total optimiser steps (a resumed run continues up to this)")
    batch_size: int = option(64, "images per step")
    lr: float = option(5e-4, "AdamW learning rate after warm-up")
    warmup: int = option(500, "linear learning-rate warm-up steps")
    decay_steps: int = option(0, "decay the learning rate linearly to 10% over the last N steps of the run "
                                 "(0: constant after warm-up)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    ema_decay: float = option(0.999, "EMA decay of the weights that get exported")
    schedule: Literal["linear", "cosine"] = option("cosine", "noise schedule (cosine suits small images)")
    num_train_timesteps: int = option(1000, "T")
    cond_drop_prob: float = option(0.1, "caption dropout probability for classifier-free guidance")
    min_snr_gamma: float = option(5.0, "min-SNR-gamma loss weighting (Hang et al. 2023); 0 turns it off")
    init_from: Path | None = option(None, "warm-start model and EMA from exported weights (prior.safetensors + "
                                          "prior.json), with a fresh optimiser; ignored when resuming")
    view_prob: float = option(0.5, "world data: probability that a caption ends in its view word")
    bf16: bool = option(True, "bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16, and on GPUs)")
    device: str = option("auto", "cpu, cuda, or auto")
    checkpoint_every: int = option(250, "steps between checkpoints")
    sample_every: int = option(2000, "steps between preview sample grids (0: never)")
    log_every: int = option(50, "steps between log lines")
    seed: int = option(0, "seed of initialisation, data order, noise and caption choice")
    camera_drop_prob: float = option(0.1, "camera-aware prior (--unet-camera): probability of hiding a view's camera, "
                                          "so the prior also draws without one")
    unet: UNetConfig = field(default_factory=UNetConfig)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "warmup", "checkpoint_every", "log_every", "num_train_timesteps"):
            if getattr(self, name) <= 0:
                raise DreamliftError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.decay_steps <= self.steps:
            raise DreamliftError(f"--decay-steps must lie in [0, --steps], got {self.decay_steps}")
        if not self.lr > 0:
            raise DreamliftError(f"--lr must be positive, got {self.lr}")
        if (not 0 <= self.cond_drop_prob < 1 or not 0 <= self.view_prob <= 1 or not 0 <= self.ema_decay < 1
                or not 0 <= self.camera_drop_prob <= 1):
            raise DreamliftError("--cond-drop-prob and --ema-decay must lie in [0, 1), --view-prob and "
                                 "--camera-drop-prob in [0, 1]")
        try:
            self.unet.validate()
        except ValueError as exc:
            raise DreamliftError(f"bad U-Net settings: {exc}") from exc
        from .commands import check_output_folder

        if not Path(self.data).is_dir():
            raise DreamliftError(f"training data folder not found: {self.data}")
        check_output_folder(self.out, "--out")
        if self.init_from is not None and not ((self.init_from / "prior.json").is_file()
                                               and (self.init_from / "prior.safetensors").is_file()):
            raise DreamliftError(f"--init-from {self.init_from} has no prior.json and prior.safetensors")


def add_camera_inputs(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A text prior's state dict -> the same prior made camera-aware (``UNetConfig.camera``): the class
    embedding's projection gets CAMERA_FEATURES more input columns, set to zero, so the network starts out as
    the text prior, blind to the camera, and training only has to teach it to use it."""
    key = "unet.class_embedding.linear_1.weight"
    out = {k: v.float() for k, v in state.items()}
    w = out[key]
    out[key] = torch.cat([w, w.new_zeros(w.shape[0], CAMERA_FEATURES)], dim=1)
    return out


def min_snr_weights(schedule: NoiseSchedule, prediction: str, gamma: float) -> torch.Tensor:
    """Per-timestep loss weights of min-SNR-gamma (Hang et al. 2023, eq. 9 and section 3.4).

    The x0-space weight min(SNR, gamma) becomes min(SNR, gamma) / SNR for an eps target and
    min(SNR, gamma) / (SNR + 1) for a v target. Returns a (T,) float64 tensor.
    """
    snr = schedule.snr()
    clipped = torch.clamp(snr, max=gamma)
    return {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DreamliftError("--device cuda was asked for, but CUDA is not available")
    return torch.device(name)


def load_checkpoint(path: Path, task: str | None = "train-prior") -> dict:
    """Load a training checkpoint of ``task`` ("train-prior", "train-novel-view"; None: either), with a clear
    error when it is missing, corrupt or another task's. Loading never runs code (``weights_only``)."""
    if not path.is_file():
        raise DreamliftError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file raises many kinds of errors
        raise DreamliftError(f"checkpoint {path} is corrupt or not a dreamlift prior checkpoint ({exc.__class__.__name__})") from exc
    if not isinstance(ckpt, dict) or not {"step", "model", "ema", "config"} <= set(ckpt):
        raise DreamliftError(f"checkpoint {path} is not a dreamlift prior checkpoint")
    found = ckpt["config"].get("task", "train-prior")  # checkpoints from before the novel-view prior: train-prior
    if task is not None and found != task:
        raise DreamliftError(f"checkpoint {path} was written by 'dreamlift {found}', not 'dreamlift {task}'")
    return ckpt


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


@torch.no_grad()
def _ema_update(ema: PriorUNet, model: PriorUNet, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)


def _save_preview(path: Path, ema: PriorUNet, encoder: TextEncoder, schedule: NoiseSchedule, cfg: TrainPriorConfig,
                  device: torch.device) -> None:
    from .sampling import image_grid, sample_images

    images = sample_images(ema, encoder, schedule, PREVIEW_PROMPTS, prediction=cfg.unet.prediction,
                           resolution=cfg.unet.resolution, n_per_prompt=2, steps=50, guidance_scale=3.0,
                           seed=0, device=device)
    buf = io.BytesIO()
    image_grid(images, rows=2).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def _stop_in_setup(stop: StopRequest, what: str) -> None:
    if stop.requested:
        raise Interrupted(f"interrupted by {stop.signal_name} during setup ({what}); nothing was written")


class TrainingTask:
    """What one prior's training adds to the shared loop (:func:`run_training`): its network, its data
    and conditioning, its previews. The text prior's task is :class:`TextPriorTask`; the novel-view
    prior's is ``dreamlift.prior.novel_view.NovelViewTask``."""

    name = "train"  # the progress bar's label
    data_source = "unknown"  # recorded in the checkpoint's config ("captions")

    def setup(self, device: torch.device, resumed: bool, stop: StopRequest) -> None:
        """Load the encoder and the data (slow); call ``_stop_in_setup`` between the parts."""

    def __len__(self) -> int:
        raise NotImplementedError

    def build(self) -> torch.nn.Module:
        raise NotImplementedError

    def warm_start(self) -> dict | None:
        """A state dict to start model and EMA from (a fresh run only), or None."""
        return None

    def start_step(self) -> int:
        """The step a fresh run starts counting from (non-zero when it continues exported weights)."""
        return 0

    def t_weights(self, schedule: NoiseSchedule, weights: Tensor | None) -> Tensor | None:
        """The loss weight per timestep (default: the config's min-SNR weights, unchanged)."""
        return weights

    def batch(self, idx: Tensor, g: torch.Generator, device: torch.device) -> tuple[Tensor, Cond, Cond | None, float]:
        """Training images x0 (B, 3, R, R) in [-1, 1] for data indices ``idx`` (B,), their condition, the
        null condition and the probability that ``diffusion_loss`` drops a condition to it."""
        raise NotImplementedError

    def preview(self, ema: torch.nn.Module, path: Path, schedule: NoiseSchedule, device: torch.device) -> None:
        raise NotImplementedError


class TextPriorTask(TrainingTask):
    """The built-in text-to-image prior: world views or image + caption pairs, caption dropout."""

    name = "train-prior"

    def __init__(self, cfg: "TrainPriorConfig", encoder: TextEncoder | None = None):
        self.cfg, self.encoder = cfg, encoder

    def setup(self, device: torch.device, resumed: bool, stop: StopRequest) -> None:
        cfg = self.cfg
        self.encoder = self.encoder or TextEncoder(device=device)
        self.warm = None
        if not resumed and cfg.init_from is not None:
            from .model import BuiltinPrior

            warm = BuiltinPrior(cfg.init_from, encoder=self.encoder)
            camera_added = cfg.unet.camera and not warm.unet_config.camera
            if camera_added:  # a camera-aware prior grown from a text prior: the same U-Net but for the camera
                warm.unet_config.camera = True
            if warm.unet_config.to_dict() != cfg.unet.to_dict():
                raise DreamliftError(f"--init-from {cfg.init_from} has a different U-Net than the one asked for")
            self.warm = warm.model.state_dict()
            if camera_added:
                self.warm = add_camera_inputs(self.warm)
        _stop_in_setup(stop, "loading the text encoder")
        self.data = load_training_data(cfg.data, cfg.unet.resolution, cfg.view_prob)
        if cfg.unet.camera and self.data.labels is None:
            raise DreamliftError(f"a camera-aware prior (--unet-camera) trains on a world dataset, which records "
                                 f"each view's camera; {cfg.data} is a folder of captioned images")
        self.data_source = self.data.source
        self.null = self.encoder.unconditional(1).to(device)

    def __len__(self) -> int:
        return len(self.data)

    def build(self) -> torch.nn.Module:
        return PriorUNet(self.cfg.unet)

    def warm_start(self) -> dict | None:
        return self.warm

    def batch(self, idx: Tensor, g: torch.Generator, device: torch.device) -> tuple[Tensor, Cond, Cond | None, float]:
        x0, captions = self.data.batch(idx, g)
        text = self.encoder.encode(captions).to(device)
        if not self.cfg.unet.camera:
            return x0.to(device), text, self.null, self.cfg.cond_drop_prob
        # Camera-aware: each view's camera, dropped (zeros: unknown) independently of the caption, and kept by the
        # caption's dropout (the null condition is the null caption with the same cameras), so that guidance
        # (conditional - unconditional, both at the render's camera) isolates the text, as in MVDream.
        labels = self.data.labels
        camera = camera_features(labels["azimuth"][idx], labels["elevation"][idx], labels["distance"][idx])
        camera = camera * (torch.rand(len(idx), 1, generator=g) >= self.cfg.camera_drop_prob)
        camera = camera.to(device)
        return x0.to(device), with_camera(text, camera), with_camera(self.null, camera), self.cfg.cond_drop_prob

    def preview(self, ema: torch.nn.Module, path: Path, schedule: NoiseSchedule, device: torch.device) -> None:
        _save_preview(path, ema, self.encoder, schedule, self.cfg, device)


def train_prior(cfg: TrainPriorConfig, progress: bool = True, encoder: TextEncoder | None = None,
                stop_after: int | None = None) -> dict:
    """Train (or resume) a prior run. Returns a summary dict.

    Ctrl-C and SIGTERM stop the run between two steps: the checkpoint of the last whole step is saved and
    :class:`~dreamlift.interrupt.Interrupted` raised, so that resuming continues exactly as an uninterrupted
    run would. A signal during setup (reading the checkpoint and data, building the model) stops it before
    anything is written. A second signal stops at once, keeping the last checkpoint saved.

    Args:
        encoder: a loaded text encoder (tests pass a shared one); loaded if None.
        stop_after: stop after this many steps of *this call* (simulates an interruption).
    """
    return run_training(cfg, TextPriorTask(cfg, encoder), progress, stop_after)


def run_training(cfg: "TrainPriorConfig", task: TrainingTask, progress: bool = True,
                 stop_after: int | None = None) -> dict:
    """The training loop every prior shares: Algorithm 1 (``diffusion_loss``) on ``task``'s batches, AdamW with
    :func:`learning_rate`, gradient clipping, an EMA, checkpoints, logs and previews; resumable bit for bit.

    Ctrl-C and SIGTERM stop it between two steps (see :func:`train_prior`). Returns a summary dict.
    """
    cfg.validate()
    with interruptible() as stop:
        return _train(cfg, task, progress, stop_after, stop)


def _train(cfg: "TrainPriorConfig", task: TrainingTask, progress: bool, stop_after: int | None,
           stop: StopRequest) -> dict:
    device = _device(cfg.device)
    out = cfg.out
    ckpt_path = out / "checkpoint.pt"
    resumed = None
    if ckpt_path.exists():
        resumed = load_checkpoint(ckpt_path, task.name)
        if resumed["config"]["unet"] != cfg.unet.to_dict():
            raise DreamliftError(f"{out} holds a run with a different U-Net; use another --out")
    _stop_in_setup(stop, "reading the checkpoint")
    task.setup(device, resumed is not None, stop)
    _stop_in_setup(stop, "loading the training data")
    schedule = NoiseSchedule.named(cfg.schedule, cfg.num_train_timesteps)
    torch.manual_seed(cfg.seed)
    model = task.build().to(device)
    ema = task.build().to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    warm = task.warm_start() if resumed is None else None
    if warm is not None:
        model.load_state_dict(warm)
        ema.load_state_dict(warm)
        del warm
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = task.start_step() if resumed is None else int(resumed.get("start_step", 0))
    step = start  # a run continued from exported weights keeps counting, warms its new optimiser up again
    g = torch.Generator().manual_seed(cfg.seed + 1_000_003 * start)  # and draws new batches, not the first ones
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        ema.load_state_dict(resumed["ema"])
        opt.load_state_dict(resumed["optimizer"])
        g.set_state(resumed["generator"])
        step = int(resumed["step"])
    t_weights = min_snr_weights(schedule, cfg.unet.prediction, cfg.min_snr_gamma) if cfg.min_snr_gamma > 0 else None
    t_weights = task.t_weights(schedule, t_weights)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.bf16 else contextlib.nullcontext
    _stop_in_setup(stop, "building the model")  # the last point at which nothing has been written
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    atomic_write(out / "config.json", json.dumps(config_to_dict(cfg), indent=2).encode())

    def model_fn(x, t, cond):
        with autocast():
            return model(x, t, cond).float()

    def state() -> dict:
        return {"step": step, "start_step": start, "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "generator": g.get_state(),
                "config": config_to_dict(cfg) | {"unet": cfg.unet.to_dict(), "captions": task.data_source,
                                                "task": task.name}}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=task.name, unit="step")
    log = open(out / "log.jsonl", "a")
    t_start, seen, losses = time.perf_counter(), 0, []
    first_step = step
    saved_step = step if resumed is not None else -1  # the step of the checkpoint on disk
    try:
        while step < cfg.steps and (stop_after is None or step - first_step < stop_after):
            idx = torch.randint(0, len(task), (cfg.batch_size,), generator=g)
            x0, cond, null, drop = task.batch(idx, g, device)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step, start)
            loss = diffusion_loss(model_fn, x0, schedule, prediction=cfg.unet.prediction, cond=cond,
                                  null_cond=null, cond_drop_prob=drop, t_weights=t_weights, generator=g)
            if not torch.isfinite(loss):
                raise DreamliftError(f"the loss became {loss.item()} at step {step}; lower --lr and resume")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            _ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            losses.append(loss.item())
            seen += cfg.batch_size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
            if step % cfg.log_every == 0:
                rate = seen / (time.perf_counter() - t_start)
                log.write(json.dumps({"step": step, "loss": sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:]),
                                      "lr": opt.param_groups[0]["lr"], "images_per_s": rate}) + "\n")
                log.flush()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_checkpoint(ckpt_path, state())
                saved_step = step
            if cfg.sample_every and step % cfg.sample_every == 0:
                task.preview(ema, out / "samples" / f"step_{step:07d}.png", schedule, device)
            if stop.requested and step < cfg.steps:  # between two steps: save this one whole, then stop
                if saved_step != step:
                    _save_checkpoint(ckpt_path, state())
                raise Interrupted(f"interrupted by {stop.signal_name} after step {step}; checkpoint saved in "
                                  f"{ckpt_path} (run the same command to resume)")
    finally:
        log.close()
        if bar is not None:
            bar.close()
    if saved_step != step:
        _save_checkpoint(ckpt_path, state())
    elapsed = time.perf_counter() - t_start
    return {"step": step, "steps_this_run": step - first_step, "seconds": elapsed,
            "images_per_s": seen / elapsed if elapsed else math.nan,
            "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:]))}


def export_prior(checkpoint: Path, dest: Path, extra: dict | None = None, force: bool = False) -> Path:
    """Write ``prior.safetensors`` (fp16 EMA weights) and ``prior.json`` (with the sha256 of the weights
    file, which ``BuiltinPrior`` checks) into ``dest``. An earlier export there is kept unless ``force``.
    A train-novel-view checkpoint becomes ``novel_view.safetensors`` and ``novel_view.json``."""
    from safetensors.torch import save

    from .commands import EXPORTS, check_export_dest

    ckpt = load_checkpoint(checkpoint, None)
    cfg = ckpt["config"]
    stem, fmt = EXPORTS[cfg.get("task", "train-prior")]
    check_export_dest(dest, force, stem)
    with interruptible() as stop:  # a Ctrl-C while the two files are written waits until both are
        weights = {k: v.to(torch.float16).contiguous() for k, v in ckpt["ema"].items()}
        data = save(weights, metadata={"format": fmt})
        meta = {"format": fmt, "unet": cfg["unet"], "schedule": cfg["schedule"],
                "num_train_timesteps": cfg["num_train_timesteps"], "text_encoder": "all-MiniLM-L6-v2",
                "max_tokens": 24, "train_steps": ckpt["step"], "batch_size": cfg["batch_size"],
                # "world": trained on world captions, so dreamlift.prior.vocabulary knows its vocabulary
                "captions": cfg.get("captions", "unknown"), **(extra or {}), "sha256": sha256_hex(data)}
        if stop.requested:
            raise Interrupted(f"interrupted by {stop.signal_name} before the export was written; nothing written")
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write(dest / f"{stem}.safetensors", data)
        atomic_write(dest / f"{stem}.json", json.dumps(meta, indent=2).encode())
    return dest
