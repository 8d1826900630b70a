"""Score Distillation Sampling (Poole et al. 2022, "DreamFusion", eq. 3-4), once for every backend.

For a differentiable image x = g(theta) (here encoded to the denoiser's x0 space),
a timestep t and noise eps ~ N(0, I):

    x_t   = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                (closed-form forward process)
    eps^  = eps_u + s (eps_c - eps_u)                              (classifier-free guidance, s = guidance_scale)
    grad_theta L_SDS = E_t,eps[ w(t) (eps^ - eps) dx0/dtheta ]     (eq. 4: no U-Net Jacobian)

The U-Net is queried under ``torch.no_grad`` and the gradient is injected with the
surrogate loss ``L = 1/2 || x0 - sg(x0 - g) ||^2`` (sum over all elements), whose
gradient with respect to x0 is exactly ``g = w(t) (eps^ - eps)`` for every sample of the
batch (no averaging over the batch: the scale is carried by ``w``). ``w(t) = 1 - abar_t
= sigma_t^2`` is DreamFusion's weighting (``weighting="sigma2"``); ``"uniform"`` uses 1.

Timesteps are drawn as t = floor(u T) with u ~ U(t_min, t_max) (DreamFusion: 0.02-0.98).
With ``t_max_final`` set, the upper bound anneals linearly from t_max to t_max_final over
the run (the coarse-to-fine annealing of later work such as DreamTime / threestudio).

Two other distillation rules share the sampling, weighting and surrogate (``method`` of ``sds_guided``;
chosen per run by ``generate``'s ``--objective``):

- ``"csd"``, Classifier Score Distillation (Yu et al. 2023): only the guidance direction,
  ``g = w(t) s (eps_c - eps_u)``; SDS's ``eps_u - eps`` term (the prior's own denoising residual) is dropped.
  Same cost as SDS.
- ``"ism"``, Interval Score Matching (Liang et al. 2023, "LucidDreamer"): x_t is reached from x0 by
  deterministic DDIM inversion with the unconditional prediction (in K steps to s = t - gap, then one step
  s -> t), not by fresh noise, and the target is the unconditional eps at (x_s, s) that made that last step:
  ``g = w(t) (eps^(x_t, t) - eps_u(x_s, s))``. K = ceil(s / stride) extra unconditional calls plus one.
- ``"vsd"``, Variational Score Distillation (Wang et al. 2023, "ProlificDreamer"): the target is not the
  noise but a second denoiser's eps at the same (x_t, t, prompt), one fitted during the run to the renders
  themselves (``score_model``; ``guidance.objectives.VSDObjective`` keeps it): ``g = w(t) (eps^ - eps_phi)``.

And, with any of them, Perp-Neg (Armandpour et al. 2023) against the Janus problem (``perp_neg`` > 0): each
camera's prompt also has a negative, the prompt with the opposite view word (``OPPOSITE_VIEW``: front <-> back,
side -> front), and the guidance direction loses that negative's component perpendicular to it:

    d = eps_c - eps_u,   n = eps_neg - eps_u,   d' = d - w (n - (<n, d> / <d, d>) d)
    eps^ = eps_u + s d'                                                   (per sample, over all its pixels)

so what the negative view adds beyond the positive one is pushed away, never the positive direction itself.
One more conditional batch in the denoiser call (3B instead of 2B).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..config import DreamliftError, option
from ..diffusion import gather, q_sample
from ..diffusion.guidance import map_cond
from ..render.camera import view_word
from ..transfer import to_device
from .base import GuidanceBackend

__all__ = ["SDSConfig", "SDSOutput", "sds_step", "sds_guided", "sample_timesteps", "sds_weights", "view_prompts", "replaces_nonfinite",
           "run_prompts", "METHODS", "ism_intervals",
           "OPPOSITE_VIEW", "perp_neg_prompts", "perp_neg_direction"]

Weighting = Literal["sigma2", "uniform"]
Method = Literal["sds", "csd", "ism", "vsd"]
METHODS: tuple[str, ...] = ("sds", "csd", "ism", "vsd")


@dataclass
class SDSConfig:
    """Score distillation settings."""

    guidance_scale: float = option(20.0, "classifier-free guidance scale s in eps_u + s (eps_c - eps_u)", cli=False)
    t_min: float = option(0.02, "smallest timestep / T", group="expert: losses and timesteps")
    t_max: float = option(0.98, "largest timestep / T, at the start", group="expert: losses and timesteps")
    t_max_final: float | None = option(0.7, "largest timestep / T at the last step, annealed linearly (none: no "
                                            "anneal)")
    weighting: Weighting = option("sigma2", "w(t): sigma2 (DreamFusion's 1 - abar_t) or uniform")
    negative_prompt: str = option("", "a prompt to steer away from")
    view_prompts: bool = option(True, "add ', front view' and so on by camera angle (DreamFusion)")
    t_anneal: Literal["auto", "on", "off"] = option(
        "auto", "anneal the largest timestep to t_max_final: auto is on for builtin and off for stable-diffusion and "
                "deepfloyd-if, as threestudio", group="expert: losses and timesteps")
    perp_neg: float = option(0.0, "Perp-Neg weight w: steer away from the opposite view's prompt (0: off)",
                             group="expert: losses and timesteps", low=0, high=100)
    vsd_lr: float = option(1e-4, "variational score distillation (--objective vsd): Adam learning rate of the "
                                 "denoiser fitted to the renders", group="expert: losses and timesteps", low=1e-8, high=1)
    ism_gap: float = option(0.05, "interval score matching (--objective ism): s = t - gap (in units of T)",
                            group="expert: losses and timesteps", low=1e-3, high=0.5)
    ism_stride: float = option(0.2, "interval score matching: the DDIM inversion's step from 0 to s (in units of T)",
                               group="expert: losses and timesteps", low=1e-3, high=1)
    nonfinite: Literal["auto", "zero", "stop"] = option(
        "auto", "a NaN or inf in the SDS gradient: zero replaces it and counts it in metrics.json, stop ends the run; "
                "auto: zero for fp16 denoisers", group="expert: losses and timesteps")

    def validate(self) -> None:
        t_hi = self.t_max if self.t_max_final is None else min(self.t_max, self.t_max_final)
        if not 0.0 <= self.t_min < t_hi <= 1.0 or (self.t_max_final is not None and not self.t_max_final <= 1.0):
            raise DreamliftError(f"timestep range must satisfy 0 <= t_min < t_max <= 1, got t_min={self.t_min}, "
                                 f"t_max={self.t_max}, t_max_final={self.t_max_final}")
        if self.perp_neg > 0 and not self.view_prompts:
            raise DreamliftError("--sds-perp-neg needs view prompts (--sds-view-prompts): its negatives are the "
                                 "opposite views")
        if not self.guidance_scale >= 0:
            raise DreamliftError(f"--guidance must be >= 0, got {self.guidance_scale}")


@dataclass
class SDSOutput:
    """One SDS evaluation."""

    loss: Tensor
    """Scalar surrogate; d loss / d x0 = grad."""
    grad: Tensor
    """w(t) (eps^ - eps), (B, C, h, w), detached."""
    t: Tensor
    """(B,) long timesteps, on the CPU (where they were drawn)."""
    x0: Tensor
    """The encoded images (B, C, h, w), detached."""
    eps_hat: Tensor
    """The guided noise prediction (B, C, h, w)."""
    nonfinite: Tensor | int = 0
    """How many elements of the gradient were NaN or inf (a 0-d tensor on the gradient's device, so that reading
    it is the caller's choice of when to wait for the GPU). With ``replaces_nonfinite`` they were replaced by
    zero; otherwise the loss is not finite, and ``generate.Generator`` stops the run when it reads the step's
    record."""


def replaces_nonfinite(cfg: SDSConfig, backend: GuidanceBackend) -> bool:
    """Whether a non-finite SDS gradient is zeroed (else it stops the run): ``cfg.nonfinite``, where auto means
    yes for a half-precision denoiser, whose overflows are expected now and then."""
    if cfg.nonfinite != "auto":
        return cfg.nonfinite == "zero"
    return getattr(backend, "dtype", torch.float32) in (torch.float16, torch.bfloat16)


def sample_timesteps(cfg: SDSConfig, n: int, num_train_steps: int, progress: float = 0.0,
                     generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """(n,) long timesteps, floor(u T) with u ~ U(t_min, t_max(progress)); progress in [0, 1]."""
    fixed = cfg.t_max_final is None or cfg.t_anneal == "off"
    hi = cfg.t_max if fixed else cfg.t_max + (cfg.t_max_final - cfg.t_max) * min(max(progress, 0.0), 1.0)
    hi = max(hi, cfg.t_min)
    u = cfg.t_min + (hi - cfg.t_min) * torch.rand(n, generator=generator)
    return (u * num_train_steps).long().clamp(0, num_train_steps - 1).to(device)


def sds_weights(backend: GuidanceBackend, t: Tensor, weighting: Weighting) -> Tensor:
    """w(t), (B,) float32."""
    if weighting == "sigma2":
        return (1.0 - backend.schedule.alphas_cumprod.to(t.device)[t]).float()
    if weighting == "uniform":
        return torch.ones(t.shape, device=t.device)
    raise DreamliftError(f"unknown SDS weighting {weighting!r} (choose sigma2 or uniform)")


def view_prompts(prompt: str, azimuth_deg: Tensor, elevation_deg: Tensor) -> list[str]:
    """DreamFusion's view-dependent prompts: '<prompt>, <front|side|back|overhead> view' per camera."""
    return [_with_view(prompt, view_word(float(a), float(e))) for a, e in zip(azimuth_deg, elevation_deg)]


def _with_view(prompt: str, word: str) -> str:
    return f"{prompt}, {word} view"


#: Perp-Neg's negative view for each view word (overhead has none: weight 0).
OPPOSITE_VIEW = {"front": "back", "side": "front", "back": "front", "overhead": None}


def perp_neg_prompts(prompt: str, azimuth_deg: Tensor, elevation_deg: Tensor, weight: float) -> tuple[list[str], Tensor]:
    """Perp-Neg's negatives per camera: (the prompt with the opposite view word, its weight (B,))."""
    texts, weights = [], []
    for a, e in zip(azimuth_deg, elevation_deg):
        other = OPPOSITE_VIEW[view_word(float(a), float(e))]
        texts.append(_with_view(prompt, other or "overhead"))
        weights.append(0.0 if other is None else weight)
    return texts, torch.tensor(weights)


def perp_neg_direction(delta: Tensor, negative: Tensor, weight: Tensor) -> Tensor:
    """d - w (n - proj_d n) per sample: (B, ...) guidance direction d, (B, ...) negative direction n, (B,) w."""
    d, n = delta.flatten(1), negative.flatten(1)
    coef = (n * d).sum(1, keepdim=True) / (d * d).sum(1, keepdim=True).clamp_min(1e-12)
    perp = n - coef * d
    return (d - weight.to(d)[:, None] * perp).view_as(delta)


def run_prompts(prompt: str, cfg: SDSConfig) -> list[str]:
    """Every text ``sds_step`` can send the backend in a run of ``prompt``: the prompt with each view word (or
    alone), and the negative (unconditional) prompt."""
    from .silhouette import VIEW_WORDS

    texts = [_with_view(prompt, w) for w in VIEW_WORDS] if cfg.view_prompts else [prompt]
    return texts + [cfg.negative_prompt]


def sds_step(backend: GuidanceBackend, images: Tensor, prompts: list[str], cfg: SDSConfig, progress: float = 0.0,
             generator: torch.Generator | None = None, method: Method = "sds",
             negatives: tuple[list[str], Tensor] | None = None, score_model=None, cameras=None) -> SDSOutput:
    """The SDS surrogate loss for rendered images.

    Args:
        images: (B, 3, H, W) in [0, 1], differentiable (the render).
        prompts: B prompts (already view-dependent if wanted).
        progress: fraction of the run done, for timestep annealing.
        generator: a CPU generator for t and eps (reproducible runs).
        method: sds, csd, ism or vsd (the module's docstring).
        negatives: Perp-Neg's (B prompts, (B,) weights) (``perp_neg_prompts``), or None.
        score_model: VSD's fitted denoiser (``sds_guided``).
        cameras: the B cameras of the images (a ``render.camera.CameraSample``), for a camera-aware backend
            (``GuidanceBackend.at_cameras``); None: the backend is told none.
    """
    if len(prompts) != images.shape[0]:
        raise ValueError(f"{len(prompts)} prompts for {images.shape[0]} images")
    texts = list(prompts) + [cfg.negative_prompt] * len(prompts)
    if negatives is not None:
        texts += list(negatives[0])

    def conditions():
        cond = backend.encode_text(texts)
        return cond if cameras is None else backend.at_cameras(cond, cameras)

    return sds_guided(backend, images, conditions, cfg, progress, generator, method,
                      None if negatives is None else negatives[1], score_model)


def sds_guided(backend: GuidanceBackend, images: Tensor, conditions, cfg: SDSConfig, progress: float = 0.0,
               generator: torch.Generator | None = None, method: Method = "sds",
               perp_weights: Tensor | None = None, score_model=None) -> SDSOutput:
    """``sds_step`` for any conditioning: ``conditions()`` returns the backend's condition for 2B inputs, the
    B conditional ones first and then the B unconditional ones (a text prior: the prompts, then the negative
    prompt; the novel-view prior: the reference views, then no reference). ``method``: sds, csd, ism or vsd (the
    module's docstring). With ``perp_weights`` (B,), the condition has 3B inputs, the last B Perp-Neg's
    negatives. ``score_model(x_t, t, conditional half of the condition) -> eps``: VSD's fitted denoiser (vsd
    only)."""
    if method not in METHODS:
        raise DreamliftError(f"unknown distillation method {method!r} (choose one of {', '.join(METHODS)})")
    if (method == "vsd") != (score_model is not None):
        raise DreamliftError("variational score distillation needs its fitted denoiser (score_model), and only it")
    x0 = backend.encode_images(images)  # (B, C, h, w), in the graph
    B, device = x0.shape[0], x0.device
    # t and eps come from the run's CPU generator; t stays on the CPU for the schedule's lookups, and what the GPU
    # needs is queued from pinned memory (``dreamlift.transfer``): no host sync anywhere in the step.
    t = sample_timesteps(cfg, B, backend.schedule.num_steps, progress, generator)
    eps = to_device(torch.randn(x0.shape, generator=generator), device, x0.dtype)
    with torch.no_grad():
        cond = conditions()
        n = 2 if perp_weights is None else 3  # conditional, unconditional (, Perp-Neg's negatives)
        if method == "ism":
            x_t, eps = _ism_forward(backend, x0.detach(), t, map_cond(lambda c: c[B:2 * B], cond), cfg)
        else:
            x_t = q_sample(backend.schedule, x0.detach(), t, eps)
        tn = to_device(torch.cat([t] * n), device)
        out = backend.predict_eps(torch.cat([x_t] * n), tn, cond).to(x0.dtype)  # (nB, C, h, w)
        eps_cond, eps_uncond = out[:B], out[B:2 * B]
        delta = eps_cond - eps_uncond
        if perp_weights is not None:
            delta = perp_neg_direction(delta, out[2 * B:] - eps_uncond, to_device(perp_weights, device, x0.dtype))
        eps_hat = eps_uncond + cfg.guidance_scale * delta  # cfg_combine, with Perp-Neg's direction
        w = to_device(sds_weights(backend, t, cfg.weighting), device, x0.dtype)
        if method == "vsd":
            eps = score_model(x_t, to_device(t, device), map_cond(lambda c: c[:B], cond)).to(x0.dtype)
        residual = cfg.guidance_scale * delta if method == "csd" else eps_hat - eps
        grad = w[:, None, None, None] * residual
        bad = ~torch.isfinite(grad)
        nonfinite = bad.sum()  # a 0-d tensor: read when the step's record is (Generator.settle), not here
        if replaces_nonfinite(cfg, backend):
            grad = grad.masked_fill(bad, 0.0)
    target = (x0 - grad).detach()
    loss = 0.5 * (x0 - target).pow(2).sum()
    return SDSOutput(loss, grad, t, x0.detach(), eps_hat, nonfinite)


def ism_intervals(t: Tensor, num_train_steps: int, gap: float, stride: float) -> Tensor:
    """The timesteps of ISM's inversion, (K + 2, B) long on the CPU: 0 = u_0 < u_1 < ... < u_K = s, then t,
    where s = max(t - gap T, 0) and K = ceil(max s / (stride T)) (at least 1), the same K for every sample
    (each walks its own 0 -> s in K equal steps)."""
    s = (t - int(round(gap * num_train_steps))).clamp(min=0)
    k = max(1, math.ceil(int(s.max()) / max(1.0, stride * num_train_steps)))
    fractions = torch.arange(k + 1, dtype=torch.float64)[:, None] / k
    steps = (fractions * s[None].double()).round().long()
    return torch.cat([steps, t[None]])


def _ism_forward(backend: GuidanceBackend, x0: Tensor, t: Tensor, uncond, cfg: SDSConfig) -> tuple[Tensor, Tensor]:
    """(x_t, eps_u(x_s, s)): deterministic DDIM inversion of x0 with the unconditional prediction."""
    abar_all = backend.schedule.alphas_cumprod
    stops = ism_intervals(t, backend.schedule.num_steps, cfg.ism_gap, cfg.ism_stride)
    x, device = x0, x0.device
    for i in range(stops.shape[0] - 1):
        here, nxt = stops[i], stops[i + 1]
        eps = backend.predict_eps(x, to_device(here, device), uncond).to(x0.dtype)
        a = to_device(abar_all[here].float(), device, x0.dtype)[:, None, None, None]
        a_next = to_device(abar_all[nxt].float(), device, x0.dtype)[:, None, None, None]
        x0_hat = (x - (1.0 - a).sqrt() * eps) / a.sqrt()
        x = a_next.sqrt() * x0_hat + (1.0 - a_next).sqrt() * eps
    return x, eps
