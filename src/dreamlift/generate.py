"""`dreamlift generate`: text to 3D by score distillation (DreamFusion's loop).

Each step: sample cameras and lights from the distributions the prior was trained with,
render the NeRF with a randomly chosen shading, add noise at a random t, ask the guidance
backend for the guided noise prediction, and apply w(t) (eps_hat - eps) through the
renderer (``dreamlift.guidance.sds``), plus the regularisers. Before the first step the
area prior (``dreamlift.guidance.silhouette``) asks the backend's own samples how much of
the frame the object fills per view word; each render's opacity is held near that. At the
end the NeRF becomes a mesh, a turntable video, a grid of views and metrics in the output
folder.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from .config import DreamliftError, atomic_write, config_to_dict, option
from .guidance.sds import SDSConfig
from .scene.background import background_image, composite
from .scene.gaussians import GaussiansConfig
from .scene.nerf import MAGIC3D_BLOB, NeRFConfig

__all__ = ["GenerateConfig", "PRESETS", "Generator", "run_generate", "run_training", "resumable_checkpoint",
           "check_resumable", "OUTPUT_FILES", "CHECKPOINT", "MAX_PROMPT_CHARS"]

MAX_PROMPT_CHARS = 300
CHECKPOINT = "checkpoint.safetensors"
LEGACY_CHECKPOINT = "checkpoint.pt"  # pickles of older versions: never loaded
# Settings a resumed run may change: the length of the run, its exports and its bookkeeping. Any other
# difference would continue one run under another's settings.
RESUMABLE = frozenset({"out", "resume", "force", "progress", "preview_every", "device", "steps", "checkpoint_every",
                       "accept_rewrite", "compile", "nerf.compact",
                       "mesh_resolution", "video_frames", "video_resolution", "surface_density"})
POSTFIX_EVERY = 10  # steps between the progress bar's loss readings (on a GPU, the one wait for the GPU in the loop)
PROGRESS_FILES = ("progress.json", "preview.png")  # in the staging folder while a run is watched (--preview-every)
OUTPUT_FILES = ("model.glb", "model.obj", "model.mtl", "model.ply", "turntable.mp4", "views.png", "config.json", "metrics.json")

# Settings each preset fills in when the user leaves them unset (None).
_SHADING = dict(albedo_warmup=0.1, p_albedo=0.2, p_textureless=0.3, orientation_weight=0.1, entropy_weight=0.1,
                sparsity_weight=0.0, background="white")
# threestudio's dreamfusion-sd and dreamfusion-if configs (docs/DEFAULTS.md, "The sd and if presets"): 64 x 64
# renders (upsampled to SD's 512 by the backend), 10k steps, 512 samples per ray, ambient-only (albedo) shading
# for the first 2001 steps, then albedo 1 - 0.75, textureless 0.75 x 0.5, lambertian the rest; orientation 10 ->
# 1000 over the first 5000 steps (here: 0 -> 1000 over the first half), sparsity 1, opacity entropy 0.
_THREESTUDIO = dict(steps=10000, num_samples=512, batch_size=1, lr=0.01, mesh_resolution=256, video_frames=120,
                    video_resolution=512, albedo_warmup=0.2001, p_albedo=0.25, p_textureless=0.375,
                    orientation_weight=1000.0, entropy_weight=0.0, sparsity_weight=1.0, background="learned")
PRESETS: dict[str, dict[str, float | int | str]] = {
    # The CPU default: minutes on 2 cores with the built-in prior.
    "fast": dict(steps=1000, render_scale=1.0, num_samples=48, batch_size=1, lr=0.01,
                 mesh_resolution=128, video_frames=48, video_resolution=96, **_SHADING),
    # Slower and finer: twice the render resolution (area-averaged down, as the prior's data was).
    "quality": dict(steps=3000, render_scale=2.0, num_samples=64, batch_size=2, lr=0.01,
                    mesh_resolution=192, video_frames=96, video_resolution=192, **_SHADING),
    "sd": dict(render_scale=64 / 512, **_THREESTUDIO),  # Stable Diffusion: 512-px images, rendered at 64
    "if": dict(render_scale=1.0, **_THREESTUDIO),  # DeepFloyd IF stage I: 64-px images, rendered at 64
}
# The backend each preset is for (None: any).
PRESET_BACKENDS = {"fast": None, "quality": None, "sd": "stable-diffusion", "if": "deepfloyd-if"}
# What a representation changes in each preset: Gaussians converge in far fewer steps than the NeRF (DreamGaussian:
# 500; for SD it renders 128 -> 256 -> 512 px over the run, here 256 throughout). The built-in prior's fast preset
# runs 1000: against 500 they raised core-v1's median IoU at all three seeds for 1.5x the time (docs/decisions/
# steps.md); image-to-3d keeps 500 (image_to_3d.IMAGE_GAUSSIAN_STEPS).
REPRESENTATION_PRESETS: dict[str, dict[str, dict[str, float | int]]] = {
    "gaussians": {"fast": dict(steps=1000), "quality": dict(steps=1500), "sd": dict(steps=500, render_scale=0.5),
                  "if": dict(steps=500)},
}
# Default guidance scale per backend (DreamFusion uses 100 with Imagen; small priors need less).
DEFAULT_GUIDANCE = {"builtin": 20.0, "stable-diffusion": 100.0, "deepfloyd-if": 20.0}
# Default weight of the area prior per backend: on for the built-in prior, whose samples are cheap and
# whose size bias is measured (docs/decisions/area-scale.md); off for the diffusers backends.
DEFAULT_AREA_WEIGHT = {"builtin": 100.0, "stable-diffusion": 0.0, "deepfloyd-if": 0.0}
# The surface level (marching cubes, scored occupancy) of each representation when --surface-density is unset:
# a NeRF's density and the Gaussians' sum of opacity-weighted kernels are different units
# (docs/decisions/surface-level.md).
DEFAULT_SURFACE_DENSITY = {"nerf": 1.0, "gaussians": 0.35}
# DDIM steps of the area prior's samples per representation. 10 draws the same silhouettes as 25 up to a steady
# factor of about 1.07 in area (blurrier edges) in 0.4x the time, 7.5 s less a run on one CPU thread: the NeRF's
# IoU did not move, but the Gaussians' core-v1 median fell at all three seeds, so they keep 25
# (docs/decisions/area-scale.md).
DEFAULT_AREA_STEPS = {"nerf": 10, "gaussians": 25}
# --area-scale by the samples' DDIM steps: 0.67 was calibrated at 25 (calib-v1); at 10 the areas read about 1.07x
# larger, so 0.62. Other step counts take the nearer calibration's.
AREA_SCALE_BY_STEPS = {10: 0.62, 25: 0.67}
# Where text-to-3D's Gaussians start: DreamGaussian's ball. The silhouettes' ellipsoid raised core-v1's IoU a
# little but its Janus rate more (docs/decisions/gaussians-init-shape.md); image-to-3d starts from silhouettes.
DEFAULT_INIT_SHAPE = "ball"
# The rate of text-to-3D's Gaussian positions relative to --lr: 60x DreamGaussian's 0.1. With Adam a centre moves
# about the rate per step at most, so at 0.1 no Gaussian could travel more than ~0.13 world units in a whole run
# and the shapes stayed near the first ball (docs/decisions/gaussians-position-lr.md). Image-to-3d keeps 0.1 (it tied there).
DEFAULT_POSITION_LR_SCALE = 6.0
# The NeRF's density bias (lambda, c) when the area prior holds the size: weak and wide, so tall and wide
# objects are not squashed into a ball (docs/decisions/area-prior.md).
AREA_PRIOR_BLOB = (2.0, 1.0)


@dataclass
class GenerateConfig:
    """Settings of ``dreamlift generate``. Unset (None) values come from the preset."""

    OPTION_GROUPS = ("the run", "the prompt", "outputs", "score distillation", "shading", "the area prior",
                     "expert: losses and timesteps", "expert: the area prior", "expert: the NeRF",
                     "expert: 3D Gaussians", "expert: speed")

    prompt: str = option("", "what to make, e.g. 'a red mug'", positional=True)
    out: Path | None = option(None, "output folder (default: outputs/<prompt>)", group="the run")
    preset: Literal["fast", "quality", "sd", "if"] = option(
        "fast", "fast: 1000 steps, about 1.5 min on 2 CPUs; quality: 3000 NeRF or 1500 Gaussian steps, 2x the "
                "render; sd, if: threestudio's", group="the run")
    steps: int | None = option(None, "optimisation steps (default: the preset's)", group="the run", low=1)
    guidance: float | None = option(None, "classifier-free guidance scale (default: 20; 100 for stable-diffusion)", group="score distillation", low=0, high=1000)
    seed: int = option(0, "the random seed", group="the run")
    representation: Literal["nerf", "gaussians"] = option("nerf", "nerf, or gaussians (3D Gaussian splatting; "
                                                                  "also writes model.ply)", group="the run")
    backend: Literal["builtin", "stable-diffusion", "deepfloyd-if"] = option("builtin", "builtin (offline, a CPU), stable-"
                                                                                        "diffusion or deepfloyd-if (a GPU, "
                                                                                        "downloaded weights)", group="the run")
    model: str | None = option(None, "weights: a folder or model id (builtin: 'camera', the camera-aware prior)", group="the run")
    allow_out_of_world: bool = option(False, "let the built-in prior try a prompt outside its world", group="the prompt")
    keep_unknown_words: bool = option(False, "use the prompt exactly as typed, words the prior never learnt too", group="the prompt")
    accept_rewrite: bool = option(False, "make the nearest prompt the prior can when it cannot make this one", group="the prompt")
    resume: bool = option(False, "continue OUT's run from its checkpoint (more --steps allowed)", group="the run")
    force: bool = option(False, "overwrite OUT's outputs", group="the run")
    device: str = option("auto", "cpu, cuda or auto", group="the run")
    compile: bool = option(False, "run the stable-diffusion or deepfloyd-if denoiser through torch.compile (compiled "
                                  "at the first step)", group="expert: speed")
    lr: float | None = option(None, "Adam learning rate (default: the preset's)", group="score distillation", low=1e-12, high=10)
    lr_final: float = option(1.0, "learning-rate factor at the last step, reached over the second half (1: "
                                  "constant)", group="expert: losses and timesteps", low=1e-12, high=1)
    batch_size: int | None = option(None, "cameras per step (default: the preset's)", group="score distillation", low=1, high=64)
    render_scale: float | None = option(None, "render size / the backend's image size (default: the preset's)", group="score distillation",
                                        low=1 / 16, high=8)
    num_samples: int | None = option(None, "NeRF samples per ray (default: the preset's)", group="expert: losses and timesteps", low=1, high=1024)
    albedo_warmup: float | None = option(None, "fraction of the run shaded with albedo only, at the start (default: the preset's)", group="shading", low=0, high=1)
    p_albedo: float | None = option(None, "then: the probability of albedo shading (default: the preset's)", group="shading", low=0, high=1)
    p_textureless: float | None = option(None, "then: the probability of textureless shading (else Lambertian; "
                                               "default: the preset's)", group="shading",
                                  low=0, high=1)
    background: Literal["white", "random", "learned"] | None = option(
        None, "training renders over white, random colours or a learned one (default: the preset's)", group="shading")
    textureless_albedo: Literal["white", "mean"] = option(
        "white", "textureless colour: white (DreamFusion) or each view's mean albedo", group="shading")
    orientation_weight: float | None = option(None, "weight of the orientation loss (default: the preset's)", group="expert: losses and timesteps", low=0)
    entropy_weight: float | None = option(None, "weight of the opacity entropy loss (default: the preset's)", group="expert: losses and timesteps", low=0)
    sparsity_weight: float | None = option(None, "weight of the mean-opacity loss (default: the preset's)", group="expert: losses and timesteps", low=0)
    area_weight: float | None = option(None, "weight of the area loss (0: off; default: 100 for builtin, else 0)", group="the area prior", low=0)
    area_samples: int = option(8, "prior samples per view word for the area targets", group="expert: the area prior",
                               low=1, high=256)
    area_tolerance: float = option(0.2, "no area loss while area / target is within 1 +- this",
                                   group="expert: the area prior", low=0, high=0.99)
    area_steps: int | None = option(None, "DDIM steps of each area sample (default: 10; 25 for Gaussians)",
                                    group="expert: the area prior", low=1, high=1000)
    area_scale: float | None = option(None, "area targets: the samples' measured area times this (default: 0.62 at "
                                            "10 area steps, 0.67 at 25)", group="the area prior", low=1e-3, high=10)
    blob_fade: float = option(0.0, "fraction of the run over which the NeRF's density bias fades to zero (0: it "
                                   "stays)", group="expert: the NeRF", low=0, high=1)
    occupancy_every: int = option(16, "steps between updates of the NeRF's occupancy grid", group="expert: the NeRF", low=1)
    occupancy_density: float = option(0.5, "density below which an occupancy cell is empty", group="expert: the NeRF", low=0)
    surface_density: float | None = option(None, "density of the surface (marching cubes, scores; default: 1, 0.35 for "
                                                 "Gaussians)", group="outputs", low=1e-6)
    checkpoint_every: int = option(200, "steps between checkpoints", group="outputs", low=1)
    mesh_resolution: int | None = option(None, "marching-cubes cells per side (default: the preset's)", group="outputs", low=16, high=512)
    video_frames: int | None = option(None, "turntable frames (default: the preset's)", group="outputs",
                                      low=1, high=2000)
    video_resolution: int | None = option(None, "turntable size in pixels (default: the preset's)", group="outputs",
                                          low=16, high=1024)
    progress: bool = option(True, "show a progress bar", group="the run")
    preview_every: float = option(0.0, "seconds between progress.json + preview.png updates for the web app (0: "
                                       "off)", group="outputs", low=0, high=3600)
    objective: Literal["sds", "csd", "ism", "vsd"] = option(
        "sds", "the distillation: sds (DreamFusion), csd (classifier score distillation), ism (interval score "
               "matching, LucidDreamer) or vsd (variational score distillation, ProlificDreamer; builtin only)",
        group="expert: losses and timesteps")
    sds: SDSConfig = field(default_factory=SDSConfig, metadata={"group": "score distillation"})
    nerf: NeRFConfig = field(default_factory=NeRFConfig, metadata={"group": "expert: the NeRF"})
    gaussians: GaussiansConfig = field(default_factory=GaussiansConfig, metadata={"group": "expert: 3D Gaussians"})

    def resolved(self) -> GenerateConfig:
        """A copy with the preset and backend defaults filled in, validated."""
        prompt = self.prompt.strip()
        if not prompt:
            raise DreamliftError("the prompt is empty")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise DreamliftError(f"the prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
        preset = {**PRESETS[self.preset], **REPRESENTATION_PRESETS.get(self.representation, {}).get(self.preset, {})}
        values = {k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in preset.items()}
        out = self.out if self.out is not None else Path("outputs") / _slug(prompt)
        guidance = self.guidance if self.guidance is not None else DEFAULT_GUIDANCE[self.backend]
        area = self.area_weight if self.area_weight is not None else DEFAULT_AREA_WEIGHT[self.backend]
        nerf = self.nerf.with_blob(*(AREA_PRIOR_BLOB if area > 0 else MAGIC3D_BLOB))
        if nerf.encoding is None:  # the hash grid for the 512-px backends' presets, dense grids for the 32-px prior
            nerf = replace(nerf, encoding="hash" if self.preset in ("sd", "if") else "dense")
        # the timestep anneal where it was calibrated (the built-in prior); threestudio's fixed range elsewhere
        anneal = self.sds.t_anneal == "on" or (self.sds.t_anneal == "auto" and self.backend == "builtin")
        sds = replace(self.sds, guidance_scale=guidance, t_max_final=self.sds.t_max_final if anneal else None)
        surface = self.surface_density if self.surface_density is not None else DEFAULT_SURFACE_DENSITY[self.representation]
        gaussians = self.gaussians.filled(init_shape=DEFAULT_INIT_SHAPE, position_lr_scale=DEFAULT_POSITION_LR_SCALE)
        area_steps = self.area_steps if self.area_steps is not None else DEFAULT_AREA_STEPS[self.representation]
        area_scale = self.area_scale if self.area_scale is not None else default_area_scale(area_steps)
        cfg = replace(self, prompt=prompt, out=out, guidance=guidance, sds=sds, area_weight=area,
                      area_steps=area_steps, area_scale=area_scale, nerf=nerf, surface_density=surface,
                      gaussians=gaussians, **values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Ranges declared on the options (``low``/``high``) and finiteness, then the rules between options."""
        from .config import check_values

        check_values(self)
        if self.steps <= 0:
            raise DreamliftError(f"--steps must be positive, got {self.steps}")
        if self.batch_size <= 0 or self.num_samples <= 0:
            raise DreamliftError("--batch-size and --num-samples must be positive")
        wanted = PRESET_BACKENDS[self.preset]
        if wanted is not None and self.backend != wanted:
            raise DreamliftError(f"--preset {self.preset} is for --backend {wanted} (this run's backend is "
                                 f"{self.backend}); use --preset fast or quality with it")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise DreamliftError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.lr_final <= 1:
            raise DreamliftError(f"--lr-final must be in (0, 1], got {self.lr_final}")
        if not 1 / 16 <= self.render_scale <= 8:
            raise DreamliftError(f"--render-scale must be in [0.0625, 8], got {self.render_scale}")
        if not (0 <= self.p_albedo and 0 <= self.p_textureless and self.p_albedo + self.p_textureless <= 1):
            raise DreamliftError("--p-albedo and --p-textureless must be >= 0 and sum to at most 1")
        if not 0 <= self.albedo_warmup <= 1:
            raise DreamliftError(f"--albedo-warmup must be in [0, 1], got {self.albedo_warmup}")
        if min(self.occupancy_every, self.checkpoint_every, self.mesh_resolution, self.video_frames,
               self.video_resolution) <= 0:
            raise DreamliftError("step intervals, mesh resolution and video size must be positive")
        if self.mesh_resolution > 512 or self.video_resolution > 1024:
            raise DreamliftError("--mesh-resolution must be <= 512 and --video-resolution <= 1024")
        if min(self.orientation_weight, self.entropy_weight, self.sparsity_weight, self.area_weight) < 0:
            raise DreamliftError("regulariser weights must be >= 0")
        if not 0 <= self.blob_fade <= 1:
            raise DreamliftError(f"--blob-fade must be in [0, 1], got {self.blob_fade}")
        if self.area_samples < 1 or not 0 <= self.area_tolerance < 1 or not self.area_scale > 0:
            raise DreamliftError("need --area-samples >= 1, 0 <= --area-tolerance < 1 and --area-scale > 0")
        self.sds.validate()
        self.nerf.validate()
        if self.representation == "gaussians":
            self.gaussians.validate()


def default_area_scale(steps: int) -> float:
    """--area-scale's default for area samples of ``steps`` DDIM steps: the calibration at the nearest step count
    (the lower one on a tie)."""
    return AREA_SCALE_BY_STEPS[min(AREA_SCALE_BY_STEPS, key=lambda s: (abs(s - steps), s))]


def _slug(prompt: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return s[:60] or "object"


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DreamliftError("--device cuda was asked for but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DreamliftError(f"unknown --device {name!r}") from exc


def ramp(weight: float, progress: float, until: float) -> float:
    """A regulariser schedule: linear from 0 at the start to ``weight`` at fraction ``until``, then flat."""
    return weight * min(1.0, progress / until) if until > 0 else weight


def lr_multiplier(lr_final: float, progress: float) -> float:
    """The learning rate's schedule: 1 for the first half of the run, then exponential down to ``lr_final`` at the end."""
    return lr_final ** min(1.0, max(0.0, 2.0 * progress - 1.0))


def opacity_entropy(opacity: Tensor) -> Tensor:
    """Mean binary entropy of the ray opacities (pushes each ray to empty or solid)."""
    o = opacity.clamp(1e-5, 1 - 1e-5)
    return -(o * o.log() + (1 - o) * (1 - o).log()).mean()


# The phases of a step between its marks t0..t6 (the scene's hooks come before and after the rest).
PHASE_SPANS = (("scene", 0, 1), ("render", 1, 2), ("guidance", 2, 3), ("backward", 3, 4), ("optimizer", 4, 5),
               ("scene", 5, 6))


class PhaseClock:
    """Seconds per phase of a training step, added into a ``{phase: seconds}`` dict.

    On the CPU a phase is the host time between two marks. On CUDA the host only queues kernels, so host times
    would count a phase's work in whichever later phase waits for it (the backward pass in the next step's
    render): there the marks are CUDA events recorded in the stream, with no host sync, and their times are
    added once they have completed (``settle``; ``settle(wait=True)`` waits for the last ones)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[list, tuple]] = []

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def add(self, times: dict[str, float], marks: list, spans: tuple[tuple[str, int, int], ...]) -> None:
        """Add each span (phase, from mark i, to mark j) of one step's marks to ``times``."""
        if not self.cuda:
            for name, i, j in spans:
                times[name] += marks[j] - marks[i]
            return
        self.pending.append((marks, spans))
        self.settle(times)

    def settle(self, times: dict[str, float], wait: bool = False) -> None:
        while self.pending:
            marks, spans = self.pending[0]
            if wait:
                marks[-1].synchronize()
            elif not marks[-1].query():
                return
            for name, i, j in spans:
                times[name] += marks[i].elapsed_time(marks[j]) / 1000.0
            self.pending.pop(0)


class Generator:
    """The optimisation: a representation, its optimizer, an objective and all randomness.

    ``objective`` is what drives the representation (``guidance.objectives.SDSObjective`` for generate, the
    ceiling's fit to ground truth for ``eval --ceiling``); the representation is the run's
    ``--representation`` (``dreamlift.scene``). Both are used only through their interfaces.
    """

    def __init__(self, cfg: GenerateConfig, objective):
        from .render.camera import CameraDistribution, LightDistribution
        from .scene import build_representation

        self.cfg, self.objective = cfg, objective
        self.device = objective.device
        self.LOSS_KEYS = objective.LOSS_KEYS
        self.rng = torch.Generator().manual_seed(cfg.seed)
        # The renderer's random numbers (the NeRF's ray jitter: rays x samples a step) are drawn where it renders:
        # on a GPU its own generator, so they never cross from the CPU; on the CPU the run's one generator.
        self.render_rng = self.rng if self.device.type == "cpu" else \
            torch.Generator(self.device).manual_seed(cfg.seed + 1)
        torch.manual_seed(cfg.seed)  # the representation's initialisation
        self.scene = build_representation(config_to_dict(cfg)).to(self.device)
        groups = self.scene.param_groups()
        self.background = None  # a learned background's model (scene.background), trained beside the scene
        if cfg.background == "learned":
            from .scene.background import EnvironmentBackground

            self.background = EnvironmentBackground().to(self.device)
            groups.append({"params": list(self.background.parameters()), "lr_scale": 0.1, "name": "background"})
        for group in groups:
            group["lr"] = cfg.lr * group["lr_scale"]
        self.opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.99), eps=1e-15)
        self._black = torch.zeros(3, device=self.device)
        self.cameras, self.lights = CameraDistribution(), LightDistribution()
        self.render_size = max(8, int(round(objective.resolution * cfg.render_scale)))
        self.step = 0
        self.clock = PhaseClock(self.device)
        self.times = {"render": 0.0, "guidance": 0.0, "backward": 0.0, "optimizer": 0.0, "scene": 0.0}
        self.history: list[dict[str, float]] = []
        if hasattr(objective, "attach"):  # an objective that renders views of its own (image-to-3d's reference)
            objective.attach(self)

    @property
    def times(self) -> dict[str, float]:
        """Seconds spent in each phase of the steps so far (on CUDA: once the steps' kernels have finished)."""
        self.clock.settle(self._times, wait=True)
        return self._times

    @times.setter
    def times(self, value: dict[str, float]) -> None:
        self._times = dict(value)

    @property
    def area_seconds(self) -> float:
        return getattr(self.objective, "area_seconds", 0.0)

    def prepare(self) -> None:
        """The objective's one-off setup (the area prior's samples); a resumed run keeps its checkpoint's. A
        fresh run's representation that asks for them then gets the objective's silhouettes to shape its start
        (``Representation.start_from``)."""
        self.objective.prepare()
        if self.step == 0 and self.scene.wants_silhouettes:
            silhouettes = getattr(self.objective, "silhouettes", None)
            self.scene.start_from(silhouettes() if silhouettes is not None else None)

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        state = {"step": self.step, "field": self.scene.state_dict(), "optimizer": self.opt.state_dict(),
                 **({"background": self.background.state_dict()} if self.background is not None else {}),
                 "rng": self.rng.get_state(), "times": self.times, "history": self.history,
                 "config": config_to_dict(self.cfg), **self.objective.state()}
        if self.render_rng is not self.rng:
            state["render_rng"] = {"device": self.device.type, "state": self.render_rng.get_state()}
        return state

    def save(self, path: Path) -> None:
        """The whole state after a whole step, as safetensors + JSON (``dreamlift.checkpoint``): loading it runs
        no code."""
        from .checkpoint import save_state

        save_state(path, self.state())

    def load(self, path: Path) -> None:
        from .checkpoint import load_state

        state = load_state(path)  # DreamliftError for a foreign or corrupt file, before anything changes
        try:
            self.scene.load_state_dict(state["field"])
            if self.background is not None:
                self.background.load_state_dict(state["background"])
            self.opt.load_state_dict(state["optimizer"])
            self.rng.set_state(state["rng"].cpu())  # the run's generator is a CPU one wherever it was saved
            self.step, self.times, self.history = int(state["step"]), dict(state["times"]), list(state["history"])
            self._load_render_rng(state.get("render_rng"))
            self.objective.load(state)
        except Exception as exc:  # a file of another config or version is the user's to fix
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DreamliftError(f"cannot resume from {path}: it is corrupt or from another config "
                                 f"({type(exc).__name__}: {first})") from None

    def _load_render_rng(self, saved: dict | None) -> None:
        """The render generator of a checkpoint, on the device it was saved from; a run moved to another device
        (--device is resumable) gets one seeded from its seed and step: the same run in law, not bit for bit."""
        if self.render_rng is self.rng:
            return
        if saved is not None and saved.get("device") == self.device.type:
            self.render_rng.set_state(saved["state"].cpu())
        else:
            self.render_rng.manual_seed(self.cfg.seed + 1 + int(self.step))

    # ---------------------------------------------------------------- one step
    def shading(self, progress: float) -> str:
        u = float(torch.rand((), generator=self.rng))
        if progress < self.cfg.albedo_warmup or u < self.cfg.p_albedo:
            return "albedo"
        return "textureless" if u < self.cfg.p_albedo + self.cfg.p_textureless else "lambertian"

    def train_step(self, settle: bool = True) -> dict[str, float]:
        """Camera -> render -> objective + regularisers -> step. Returns this step's losses: as numbers, or with
        ``settle=False`` as they are (0-d tensors; read later through ``settle`` or ``history``), which lets a GPU
        run its kernels while the host queues the next step."""
        cfg, progress, scene, clock = self.cfg, self.step / self.cfg.steps, self.scene, self.clock
        t0 = clock.mark()
        scene.before_step(self.step, progress, self.rng)  # NeRF: the occupancy grid, every occupancy_every steps
        t1 = clock.mark()
        cams = self.cameras.sample(cfg.batch_size, self.rng, height=self.render_size)
        light = self.lights.sample(cams, self.rng)
        shading = self.shading(progress)
        if cfg.background == "white":
            out = scene.render(cams.camera, light, shading, generator=self.render_rng,
                               textureless_albedo=cfg.textureless_albedo)
        else:  # over black, then over the run's background (scene.background)
            out = scene.render(cams.camera, light, shading, generator=self.render_rng,
                               textureless_albedo=cfg.textureless_albedo, background=self._black)
            out = composite(out, background_image(cfg.background, cams.camera, self.background, self.rng,
                                                  self.device))
        t2 = clock.mark()
        main, record = self.objective.loss(out, cams, light, shading, progress, self.rng)
        t3 = clock.mark()
        entropy, sparsity = opacity_entropy(out.opacity), out.opacity.mean()
        loss = (main + ramp(cfg.orientation_weight, progress, 0.5) * out.orientation
                + ramp(cfg.entropy_weight, progress, 1.0) * entropy + cfg.sparsity_weight * sparsity)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = clock.mark()
        for group in self.opt.param_groups:
            group["lr"] = (cfg.lr * group["lr_scale"] * group.get("lr_final", 1.0) ** progress  # its own decay
                           * lr_multiplier(cfg.lr_final, progress))
        self.opt.step()
        t5 = clock.mark()
        self.step += 1
        scene.after_step(self.step, self.step / cfg.steps, self.opt, self.rng)  # NeRF: bias fade; 3DGS: densify
        t6 = clock.mark()
        clock.add(self._times, [t0, t1, t2, t3, t4, t5, t6], PHASE_SPANS)
        record = {"step": self.step, **record, "orientation": out.orientation.detach(), "entropy": entropy.detach(),
                  "opacity": sparsity.detach()}
        self._pending.append((record, loss.detach()))
        if not settle:
            return record
        self.settle()
        return self._history[-1]

    def settle(self) -> None:
        """Turn the records of the steps taken since the last call into numbers (on a GPU: one wait for all of
        them), append them to the history, and stop the run at the first of them whose loss was not finite.

        A step leaves its losses as tensors, so that on a GPU no step waits for its own kernels; the training loop
        settles before each checkpoint (a checkpoint never holds a diverged step) and every few steps for the
        progress bar."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        where = [(i, k) for i, (rec, _) in enumerate(pending) for k, v in rec.items() if isinstance(v, Tensor)]
        values = [pending[i][0][k] for i, k in where] + [loss for _, loss in pending]
        numbers = torch.stack([v.detach().double().reshape(()) for v in values]).tolist()
        records = [dict(rec) for rec, _ in pending]
        for (i, k), x in zip(where, numbers):
            records[i][k] = x
        for n, (rec, loss) in enumerate(zip(records, numbers[len(where):])):
            bad = int(rec.pop("sds_nonfinite", 0) or 0)
            if bad:
                rec["sds_nonfinite"] = bad  # NaN/inf values of the SDS gradient (zeroed, or stopping the run below)
            if not math.isfinite(loss):
                self._history.extend(records[:n])
                if bad:
                    raise DreamliftError(f"the SDS gradient is not finite (NaN or inf) at step {rec['step']}; the "
                                         "render or the denoiser diverged (--sds-nonfinite zero replaces such values "
                                         "by zero and counts them)")
                raise DreamliftError(f"the loss became {loss} at step {rec['step']}; lower --lr or --guidance and run "
                                     "again (or --resume from the last checkpoint)")
        self._history.extend(records)

    @property
    def history(self) -> list[dict[str, float]]:
        """The records of every step so far (settled first: see ``settle``)."""
        self.settle()
        return self._history

    @history.setter
    def history(self, value: list[dict[str, float]]) -> None:
        self._history, self._pending = list(value), []


def _existing_outputs(out: Path) -> list[str]:
    return [name for name in (*OUTPUT_FILES, CHECKPOINT, LEGACY_CHECKPOINT) if (out / name).exists()]


def resumable_checkpoint(out: Path) -> Path | None:
    """The checkpoint ``--resume`` continues for OUT: an interrupted run's (in its staging folder), else a
    finished run's (in OUT), else None."""
    from .runfolder import RunFolder

    folder = RunFolder(out)
    for path in (folder.stage / CHECKPOINT, Path(out) / CHECKPOINT):
        if path.is_file():
            return path
    return None


def _flat(d: dict, prefix: str = "") -> dict:
    items: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            items.update(_flat(v, f"{prefix}{k}."))
        else:
            items[prefix + k] = v
    return items


def check_resumable(saved: dict, cfg: GenerateConfig, saved_step: int, where: Path) -> None:
    """Refuse to continue a checkpoint under settings that would make another run of it.

    ``saved`` is the checkpoint's resolved config; only the keys in RESUMABLE (more steps, export and
    bookkeeping settings) may differ. Raises DreamliftError naming the keys that differ.
    """
    old, new = _flat(saved), _flat(config_to_dict(cfg))
    # a setting added since the checkpoint was saved, left at its default (as given, or as a run of this backend
    # and preset resolves it), continues the run as it was made
    base = GenerateConfig(prompt="x", backend=cfg.backend, preset=cfg.preset, representation=cfg.representation)
    given, resolved = _flat(config_to_dict(base)), _flat(config_to_dict(base.resolved()))
    added = {k for k in new.keys() - old.keys() if new[k] in (given.get(k, "?"), resolved.get(k, "?"))}
    differ = sorted(k for k in old.keys() | new.keys()
                    if k not in RESUMABLE and k not in added and old.get(k, "?") != new.get(k, "?"))
    if differ:
        shown = ", ".join(f"{k} ({old.get(k, 'unset')!r} there, {new.get(k, 'unset')!r} now)" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise DreamliftError(f"--resume: the checkpoint in {where} is of another run: {shown}{more}; "
                             "resume it with its own settings, or start again with --force")
    if cfg.steps < saved_step:
        raise DreamliftError(f"--resume: the checkpoint in {where} is at step {saved_step}, past --steps {cfg.steps}")


def _plan(cfg: GenerateConfig, folder) -> Path | None:
    """Decide, before any work, what this run continues (the checkpoint to load) or refuse it."""
    from .checkpoint import read_state_header

    out = cfg.out
    staged, final = folder.stage / CHECKPOINT, out / CHECKPOINT
    if not cfg.resume:
        if staged.is_file() and not cfg.force:
            raise DreamliftError(f"an interrupted run of {out} is kept in {folder.stage}; pass --resume to continue "
                                 "it or --force to start again")
        if _existing_outputs(out) and not cfg.force:
            raise DreamliftError(f"{out} already holds outputs ({', '.join(_existing_outputs(out))}); "
                                 "pass --force to overwrite them or --resume to continue")
        return None
    source = staged if staged.is_file() else final if final.is_file() else None
    if source is None:
        legacy = " (its checkpoint.pt, from an older dreamlift, is not loaded: a pickle can run code)" \
            if (out / LEGACY_CHECKPOINT).exists() else ""
        raise DreamliftError(f"--resume: there is no checkpoint for {out}{legacy}")
    header = read_state_header(source)
    try:
        saved, step = header["config"], int(header["step"])
    except (KeyError, TypeError, ValueError):
        raise DreamliftError(f"{source} is not a dreamlift generate checkpoint") from None
    check_resumable(saved, cfg, step, source.parent)
    if source == final and step >= cfg.steps and not cfg.force:
        raise DreamliftError(f"the run in {out} is finished (step {step} of {cfg.steps}); pass a larger --steps to "
                             "continue it, or --force with --resume to export it again")
    return source


def _review_prompt(cfg: GenerateConfig) -> None:
    """The built-in prior's prompt check, first and fast (the text encoder only): out-of-world prompts and rewrites
    that change the object stop here, before torch's heavier work, the prior or the output folder is touched."""
    if cfg.backend != "builtin":
        return
    from .prior.text_encoder import TextEncoder
    from .prior.vocabulary import review_prompt, terminal_ask

    # another exported prior may have other captions: its words are not rewritten (the shipped ones' are)
    from .guidance.backends import is_shipped_model

    shipped = is_shipped_model(cfg.model)
    accepted = cfg.accept_rewrite or (cfg.resume and _saved_setting(cfg, "accept_rewrite") is True)
    review_prompt(cfg.prompt, TextEncoder.shared("cpu"), allow_out_of_world=cfg.allow_out_of_world,
                  keep_unknown_words=cfg.keep_unknown_words or not shipped, accept_rewrite=accepted,
                  ask=terminal_ask())


def _saved_setting(cfg: GenerateConfig, key: str):
    """``key`` of the config saved with the checkpoint ``--resume`` would continue (None if there is none): a
    resumed run keeps the consent its first run was given."""
    from .checkpoint import read_state_header
    from .runfolder import RunFolder

    for path in (RunFolder(cfg.out).stage / CHECKPOINT, cfg.out / CHECKPOINT):
        if path.is_file():
            try:
                return read_state_header(path)["config"].get(key)
            except (DreamliftError, OSError, KeyError, TypeError, AttributeError, ValueError):
                return None  # _plan reports an unreadable checkpoint
    return None


def run_generate(cfg: GenerateConfig) -> dict:
    """Run ``dreamlift generate``; returns the metrics written to OUT/metrics.json."""
    from .guidance.backends import load_backend

    cfg = cfg.resolved()
    _review_prompt(cfg)

    def build(device: torch.device) -> tuple[Generator, dict]:
        backend = load_backend(cfg.backend, cfg.model, device, allow_out_of_world=cfg.allow_out_of_world,
                               rewrite_unknown_words=not cfg.keep_unknown_words, compile=cfg.compile)
        backend.check_prompt(cfg.prompt)
        if (note := backend.conditioning_note(cfg.prompt)) is not None:
            print(f"note: {note}", file=sys.stderr)
        from .guidance.objectives import make_objective

        return Generator(cfg, make_objective(cfg, backend)), {"conditioning_prompt": backend.conditioning_text(cfg.prompt),
                                                            "backend": cfg.backend}

    return run_training(cfg, build)


def run_training(cfg: GenerateConfig, build) -> dict:
    """The life of one run, for any Generator (SDS, or the ceiling's fit to ground truth).

    Lock OUT, decide what to continue, build the generator (``build(device) -> (gen, extra metrics)``), train
    in the staging folder with checkpoints, export, write metrics, then swap the staging folder in for OUT
    (``dreamlift.runfolder``). SIGINT and SIGTERM stop between steps, or at the next phase boundary, with the
    checkpoint kept (``dreamlift.interrupt``). Returns the metrics.
    """
    from .interrupt import Interrupted, interruptible
    from .runfolder import RunFolder

    folder = RunFolder(cfg.out)
    folder.check_target()
    device = _device(cfg.device)
    with folder, interruptible() as stop:
        source = _plan(cfg, folder)
        ckpt = folder.stage / CHECKPOINT
        try:
            t_start = time.perf_counter()
            gen, extra = build(device)
            stop.check("setup")
            if source is not None:
                gen.load(source)
            if source is None or source.parent != folder.stage:
                folder.fresh_stage()
            metrics = _train_and_export(gen, folder.stage, stop, t_start)
            metrics = {"prompt": cfg.prompt, **extra, "out": str(cfg.out), "device": str(device), **metrics}
            atomic_write(folder.stage / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
            stop.check("export")
            for name in PROGRESS_FILES:  # a watcher's files are not outputs
                (folder.stage / name).unlink(missing_ok=True)
            folder.commit()
        except BaseException as exc:
            kept = ckpt.is_file()
            if not kept:  # nothing to resume: no staging folder is left behind
                shutil.rmtree(folder.stage, ignore_errors=True)
            then = f"; saved {ckpt} at step {read_state_step(ckpt)}; continue with --resume" if kept else ""
            if isinstance(exc, Interrupted):
                raise Interrupted(f"interrupted ({exc}); {cfg.out} is unchanged{then}") from None
            if isinstance(exc, OSError):  # a full disk, a read-only folder: the earlier outputs are still whole
                raise DreamliftError(f"cannot write {exc.filename or folder.stage}: {exc.strerror or exc}; "
                                     f"{cfg.out} is unchanged{then}") from None
            raise
    return metrics


def read_state_step(path: Path) -> int:
    """The step a checkpoint was saved at (from its JSON header only)."""
    from .checkpoint import read_state_header

    return int(read_state_header(path)["step"])


def _train_and_export(gen: Generator, stage: Path, stop, t_start: float) -> dict:
    """Prepare, train and export into ``stage``; -> the run's part of metrics.json."""
    from .export.outputs import write_outputs

    cfg = gen.cfg
    watch = RunWatch(gen, stage) if cfg.preview_every > 0 else None
    if watch is not None:
        watch.write("setup")
    gen.prepare()
    stop.check("setup")
    t_setup = time.perf_counter() - t_start
    atomic_write(stage / "config.json", (json.dumps(config_to_dict(cfg), indent=2) + "\n").encode())
    t_loop = time.perf_counter()
    _train(gen, stage / CHECKPOINT, stop, watch)
    t_train = time.perf_counter() - t_loop
    if watch is not None:
        watch.write("export")
    t0 = time.perf_counter()
    export_times = write_outputs(gen, stage, check=lambda: stop.check("export"))
    t_export = time.perf_counter() - t0
    last = gen.history[-min(50, len(gen.history)):] if gen.history else []
    return {
        "steps": cfg.steps, "seed": cfg.seed, "render_size": gen.render_size,
        "seconds": {"setup": t_setup, "train": t_train, "export": t_export,
                    "total": time.perf_counter() - t_start, "area_prior": gen.area_seconds,
                    **{f"export_{k}": v for k, v in export_times.items()}},
        "ms_per_step": {k: 1000 * v / max(1, len(gen.history)) for k, v in gen.times.items()},
        "final_losses": {k: sum(r[k] for r in last) / max(1, len(last)) for k in gen.LOSS_KEYS},
        # NaN/inf values of the SDS gradient replaced by zero (--sds-nonfinite): the steps and the values
        "nonfinite_gradient": {"steps": sum(1 for r in gen.history if r.get("sds_nonfinite")),
                               "values": sum(int(r.get("sds_nonfinite", 0)) for r in gen.history)},
    }


class RunWatch:
    """What a watcher of a run (the web app) reads from its staging folder: progress.json (the phase, the step,
    steps per second, the last losses) and preview.png (a lambertian render from a camera that circles the
    object), rewritten at most every ``preview_every`` seconds. The preview draws no random numbers of the run
    (its generators are set aside), so a watched run is the same run as an unwatched one."""

    def __init__(self, gen: Generator, stage: Path):
        self.gen, self.stage = gen, stage
        self.t_last, self.step_last = time.perf_counter(), gen.step
        self.t_start = self.t_last

    def due(self) -> bool:
        return time.perf_counter() - self.t_last >= self.gen.cfg.preview_every

    def write(self, phase: str, losses: dict | None = None) -> None:
        gen, now = self.gen, time.perf_counter()
        rate = (gen.step - self.step_last) / (now - self.t_last) if phase == "train" and now > self.t_last else None
        self.t_last, self.step_last = now, gen.step
        state = {"phase": phase, "step": gen.step, "steps": gen.cfg.steps, "steps_per_second": rate,
                 "seconds": now - self.t_start, "losses": losses or {}, "updated": time.time()}
        if phase == "train":
            self._preview()
            state["preview"] = "preview.png"
        atomic_write(self.stage / "progress.json", (json.dumps(state) + "\n").encode())

    def _preview(self) -> None:
        import io

        from PIL import Image

        from .export.outputs import render_views
        from .render.camera import CameraSample

        gen = self.gen
        size = max(64, gen.render_size)
        az = torch.tensor([(gen.step * 3.0) % 360.0])
        one = lambda v: torch.tensor([float(v)])  # noqa: E731
        cams = CameraSample.from_spherical(az, one(15.0), one(sum(gen.cameras.distance) / 2),
                                           one(sum(gen.cameras.fov_y_deg) / 2), size, size)
        gen.scene.eval()  # as the outputs will look (3D Gaussians: their 3D filter)
        try:
            with torch.random.fork_rng(devices=[]):
                rgb = render_views(gen.scene, cams, "lambertian", num_samples=gen.cfg.num_samples)[0][0]
        finally:
            gen.scene.train()
        pixels = (rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        atomic_write(self.stage / "preview.png", buf.getvalue())


def _train(gen: Generator, ckpt: Path, stop, watch: RunWatch | None = None) -> None:
    """Steps until the end, a checkpoint every checkpoint_every steps and at the end; a stop request (SIGINT,
    SIGTERM) is honoured between two steps, after saving the last whole one."""
    from .interrupt import Interrupted

    cfg = gen.cfg
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=gen.step, desc="generate", unit="step", dynamic_ncols=True)
    try:
        while gen.step < cfg.steps:
            gen.train_step(settle=False)  # its losses are read below, every few steps (Generator.settle)
            if bar is not None:
                bar.update(1)
                if gen.step % POSTFIX_EVERY == 0 or gen.step == cfg.steps:
                    bar.set_postfix({k: f"{gen.history[-1][k]:.3g}" for k in gen.LOSS_KEYS[:1]}, refresh=False)
            if gen.step % cfg.checkpoint_every == 0 or gen.step == cfg.steps:
                gen.save(ckpt)  # settles first: a step whose loss was not finite stops the run before this
            if watch is not None and (watch.due() or gen.step == cfg.steps):
                watch.write("train", {k: gen.history[-1][k] for k in gen.LOSS_KEYS})
            if stop.requested:
                gen.save(ckpt)
                raise Interrupted(f"{stop.signal_name} at step {gen.step}")
        if not ckpt.is_file():  # resumed at its last step: the staging folder still needs the checkpoint
            gen.save(ckpt)
    finally:
        if bar is not None:
            bar.close()
