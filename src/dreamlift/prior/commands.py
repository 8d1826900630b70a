"""The prior's command-line entry points: sample, train-prior, export-prior."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import DreamliftError, _file_above, atomic_write, check_output_folder, option

__all__ = ["SampleConfig", "run_sample", "ExportPriorConfig", "run_export", "check_prompt", "MAX_PROMPT_CHARS",
           "check_output_folder", "check_output_file", "check_export_dest"]

MAX_PROMPT_CHARS = 300


def check_prompt(prompt: str) -> str:
    """Reject empty and absurdly long prompts with a clear error; return the stripped prompt."""
    text = prompt.strip()
    if not text:
        raise DreamliftError("the prompt is empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise DreamliftError(f"the prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text


def check_output_file(path: Path, flag: str, force: bool) -> None:
    """Refuse an output file that is an existing folder, lies below a file, or exists (unless ``force``)."""
    if path.is_dir():
        raise DreamliftError(f"{flag} {path} is a folder; give a file name")
    blocker = _file_above(path)
    if blocker is not None:
        raise DreamliftError(f"{flag} {path} cannot be written: {blocker} is a file, not a folder")
    if path.exists() and not force:
        raise DreamliftError(f"{path} exists; pass --force to overwrite it")


# training task -> (file stem, format) of its export
EXPORTS = {"train-prior": ("prior", "dreamlift-prior/1"), "train-novel-view": ("novel_view", "dreamlift-novel-view/1")}


def check_export_dest(dest: Path, force: bool, stem: str = "prior") -> None:
    """Refuse an export folder that is a file, or that holds an export already (unless ``force``)."""
    check_output_folder(dest, "--dest")
    names = (f"{stem}.safetensors", f"{stem}.json")
    for name in names:
        if (dest / name).is_dir():
            raise DreamliftError(f"--dest {dest} cannot take an export: {dest / name} is a folder")
    found = [name for name in names if (dest / name).exists()]
    if found and not force:
        raise DreamliftError(f"--dest {dest} already holds {' and '.join(found)}; pass --force to overwrite")


@dataclass
class SampleConfig:
    """Settings of ``dreamlift sample``."""

    prompt: str = option("", "the text prompt", positional=True)
    out: Path = option(Path("samples.png"), "the .png grid to write")
    n: int = option(8, "images to sample")
    seed: int = option(0, "random seed (same seed, same images)")
    guidance_scale: float = option(3.0, "classifier-free guidance scale s: uncond + s (cond - uncond)")
    steps: int = option(50, "reverse steps")
    sampler: Literal["ddim", "ddpm"] = option("ddpm", "ddpm (ancestral: Algorithm 2 on the respaced --steps, DDIM"
                                                      " with eta 1) or ddim (deterministic, eta 0)")
    weights: Path | None = option(None, "a folder with prior.json + prior.safetensors (default: the shipped prior; "
                                        "camera: the shipped camera-aware prior)")
    camera: tuple[float, ...] | None = option(None, "a camera-aware prior (--weights camera): draw the view from "
                                                    "AZIMUTH,ELEVATION[,DISTANCE] (degrees, 0 = front; distance 3.3)")
    allow_out_of_world: bool = option(False, "sample even when the prompt is far from everything the prior knows")
    keep_unknown_words: bool = option(False, "condition on the prompt exactly as typed, words the prior never "
                                      "learnt included")
    accept_rewrite: bool = option(False, "when the prior cannot draw the prompt as typed, draw the nearest prompt "
                                  "it can instead of stopping")
    force: bool = option(False, "overwrite an existing output file")

    def validate(self) -> None:
        self.prompt = check_prompt(self.prompt)
        if self.n <= 0 or self.n > 1024:
            raise DreamliftError(f"--n must lie in [1, 1024], got {self.n}")
        if self.steps <= 0:
            raise DreamliftError(f"--steps must be positive, got {self.steps}")
        if self.camera is not None:
            import math

            if len(self.camera) not in (2, 3) or not all(math.isfinite(v) for v in self.camera):
                raise DreamliftError(f"--camera takes AZIMUTH,ELEVATION[,DISTANCE], got {self.camera}")
            if not -90 <= self.camera[1] <= 90 or (len(self.camera) == 3 and not self.camera[2] > 1):
                raise DreamliftError(f"--camera: elevation must lie in [-90, 90] and distance exceed 1 (object "
                                     f"radii), got {self.camera}")
        if self.out.suffix.lower() != ".png":
            raise DreamliftError(f"--out must name a .png file, got {self.out}")
        check_output_file(self.out, "--out", self.force)


def run_sample(cfg: SampleConfig) -> Path:
    """Sample cfg.n images of cfg.prompt and save them as a grid."""
    import io
    import sys
    import time

    import torch

    cfg.validate()
    from .model import BuiltinPrior
    from .sampling import image_grid
    from .text_encoder import TextEncoder
    from .vocabulary import review_prompt, terminal_ask

    from ..guidance.backends import builtin_model_path, is_shipped_model

    model = None if cfg.weights is None else str(cfg.weights)  # the built-in backend's model name or folder
    shipped = is_shipped_model(model)

    def review() -> None:
        review_prompt(cfg.prompt, TextEncoder.shared("cpu"), allow_out_of_world=cfg.allow_out_of_world,
                      keep_unknown_words=cfg.keep_unknown_words or not shipped,
                      accept_rewrite=cfg.accept_rewrite, ask=terminal_ask())

    prior = BuiltinPrior(builtin_model_path(model), rewrite_unknown_words=not cfg.keep_unknown_words)  # its errors first
    review()
    cameras = None
    if cfg.camera is not None:
        if not prior.unet_config.camera:
            raise DreamliftError("--camera needs a camera-aware prior (--weights camera, the shipped one, or one "
                                 "trained with --unet-camera)")
        from .unet import DISTANCE_CENTRE, camera_features

        az, el, dist = (*cfg.camera, DISTANCE_CENTRE)[:3]
        cameras = camera_features(torch.tensor([az]), torch.tensor([el]), torch.tensor([dist]))
    if cfg.steps > prior.schedule.num_steps:
        raise DreamliftError(f"--steps cannot exceed the prior's {prior.schedule.num_steps} diffusion steps")
    rewrite = prior.rewrite(cfg.prompt)
    if rewrite.changed:
        print(f"note: {rewrite.note()}", file=sys.stderr)
    t0 = time.perf_counter()
    images = prior.sample([cfg.prompt], n_per_prompt=cfg.n, steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                          seed=cfg.seed, method=cfg.sampler, cameras=cameras)
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    image_grid(images).save(buf, format="PNG")
    atomic_write(cfg.out, buf.getvalue())
    print(f"saved {cfg.n} samples of {cfg.prompt!r} to {cfg.out} ({seconds / cfg.n:.2f} s per image)")
    return cfg.out


@dataclass
class ExportPriorConfig:
    """Settings of ``dreamlift export-prior``."""

    run: Path = option(Path("runs/prior"), "a train-prior run folder (its checkpoint.pt is exported)")
    dest: Path = option(Path("prior-export"), "folder to write prior.safetensors and prior.json into")
    force: bool = option(False, "overwrite an export already in --dest")

    def validate(self) -> None:
        if not (self.run / "checkpoint.pt").is_file():
            raise DreamliftError(f"--run {self.run} has no checkpoint.pt; train one with 'dreamlift train-prior'")
        check_output_folder(self.dest, "--dest")  # its files are checked once the checkpoint says which they are


def run_export(cfg: ExportPriorConfig) -> Path:
    from .train import export_prior

    cfg.validate()
    dest = export_prior(cfg.run / "checkpoint.pt", cfg.dest, extra={"exported_from": str(cfg.run)}, force=cfg.force)
    print(f"exported {cfg.run / 'checkpoint.pt'} to {dest}")
    return dest


def run_train(cfg) -> dict:
    import sys

    from .train import train_prior

    summary = train_prior(cfg, progress=sys.stderr.isatty())
    print(f"trained to step {summary['step']} ({summary['images_per_s']:.1f} images/s); "
          f"checkpoint in {cfg.out / 'checkpoint.pt'}")
    return summary


def run_train_novel_view(cfg) -> dict:
    import sys

    from .novel_view import train_novel_view

    summary = train_novel_view(cfg, progress=sys.stderr.isatty())
    print(f"trained to step {summary['step']} ({summary['images_per_s']:.1f} images/s); "
          f"checkpoint in {cfg.out / 'checkpoint.pt'}")
    return summary


@dataclass
class NovelViewConfig:
    """Settings of ``dreamlift novel-view``."""

    image: Path = option(Path(""), "the reference view: the object on a white or transparent background",
                         positional=True)
    out: Path = option(Path("novel_view.png"), "the .png to write: the drawn view(s), side by side")
    azimuth: float = option(90.0, "degrees round the object from the reference camera (positive: towards the "
                                  "object's left, +x)")
    elevation: float = option(0.0, "degrees above the reference camera")
    distance: float = option(0.0, "object radii further away than the reference camera")
    prompt: str = option("", "an optional caption of the object (e.g. 'a red mug')")
    n: int = option(1, "views to draw (different seeds of the same camera)")
    seed: int = option(0, "random seed (same seed, same views)")
    steps: int = option(50, "DDIM steps")
    guidance_scale: float = option(3.0, "classifier-free guidance scale over the reference image")
    scale: int = option(4, "write each view this many times larger than the prior's 32 px (nearest neighbour)")
    weights: Path | None = option(None, "a folder with novel_view.json + novel_view.safetensors (default: shipped)")
    force: bool = option(False, "overwrite an existing output file")

    def validate(self) -> None:
        if str(self.image) in ("", "."):
            raise DreamliftError("give the reference image: dreamlift novel-view IMAGE --out FILE.png")
        if not self.image.is_file():
            raise DreamliftError(f"image not found: {self.image}")
        if not -90.0 <= self.elevation <= 90.0 or not -2.0 <= self.distance <= 2.0:
            raise DreamliftError("--elevation must lie in [-90, 90] and --distance in [-2, 2]")
        if not 1 <= self.n <= 64 or not 1 <= self.steps <= 1000 or not 1 <= self.scale <= 16:
            raise DreamliftError("--n must lie in [1, 64], --steps in [1, 1000], --scale in [1, 16]")
        if self.prompt:
            self.prompt = check_prompt(self.prompt)
        if self.out.suffix.lower() != ".png":
            raise DreamliftError(f"--out must name a .png file, got {self.out}")
        check_output_file(self.out, "--out", self.force)


def run_novel_view(cfg: NovelViewConfig) -> Path:
    """Draw cfg.n views of the reference image from the asked camera and save them side by side."""
    import io

    import torch

    from ..images import load_reference_image
    from .novel_view import NovelViewPrior, camera_for
    from .sampling import image_grid

    cfg.validate()
    prior = NovelViewPrior(cfg.weights)  # its errors before the image's
    ref = load_reference_image(cfg.image, prior.resolution)
    if cfg.steps > prior.schedule.num_steps:
        raise DreamliftError(f"--steps cannot exceed the prior's {prior.schedule.num_steps} diffusion steps")
    reference = ref.rgb[None].expand(cfg.n, -1, -1, -1)
    camera = camera_for(cfg.azimuth, cfg.elevation, cfg.distance).expand(cfg.n, -1)
    views = prior.sample(reference, camera, cfg.prompt or None, steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                         seed=cfg.seed)
    views = torch.nn.functional.interpolate(views, scale_factor=cfg.scale, mode="nearest")
    buf = io.BytesIO()
    image_grid(views, rows=1, pad=0 if cfg.n == 1 else 2).save(buf, format="PNG")
    atomic_write(cfg.out, buf.getvalue())
    print(f"saved {cfg.n} view(s) of {cfg.image} at azimuth {cfg.azimuth:+g}, elevation {cfg.elevation:+g} "
          f"to {cfg.out}")
    return cfg.out
