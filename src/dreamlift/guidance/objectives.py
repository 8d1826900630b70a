"""What drives a representation: objective objects passed to the one training loop.

An objective turns a render into a loss. ``SDSObjective`` is score distillation from a guidance backend
with DreamFusion's view-dependent prompts, plus the area prior read from the backend's own samples
(``guidance.silhouette``); ``CSDObjective`` and ``ISMObjective`` are the same with Classifier Score
Distillation's or Interval Score Matching's gradient in the place of SDS's (``guidance.sds``; ``--objective``,
``OBJECTIVES``); the ground-truth ceiling's multi-view photometric fit
(``evaluate.ceiling.GroundTruthObjective``) is another. The loop (``generate.Generator.train_step``) adds the
representation-independent regularisers, steps the optimizer and calls the representation's hooks.

    loss(out, cams, light, shading, progress, generator) -> (scalar loss, {name: float or 0-d tensor} for the history)

``resolution`` is the image side the objective works at (renders are ``render_scale`` times it), ``prepare``
runs once before the first step (not again on resume: its result is in ``state``, saved in checkpoints).
"""

from __future__ import annotations

import time

from torch import Tensor

__all__ = ["SDSObjective", "CSDObjective", "ISMObjective", "VSDObjective", "OBJECTIVES", "make_objective"]


class SDSObjective:
    """Score distillation (``guidance.sds.sds_step``) + the area prior, for a run config ``cfg``."""

    name = "sds"
    method = "sds"  # the gradient rule of guidance.sds.sds_guided
    LOSS_KEYS = ("sds", "sds_grad_norm", "orientation", "entropy", "opacity")  # averaged into metrics.json

    def __init__(self, cfg, backend):
        self.cfg, self.backend = cfg, backend
        self.device, self.resolution = backend.device, backend.resolution
        self.area_targets = None  # SilhouetteTargets, set by prepare() when the area prior is on
        self.area_seconds = 0.0  # the one-off time prepare() took to sample them

    def prepare(self) -> None:
        """Sample the area prior's targets (once per run; a resumed run keeps its checkpoint's), then encode the
        run's prompts once, so a backend can free its text encoder."""
        from .silhouette import sample_targets

        if self.cfg.area_weight > 0 and self.area_targets is None:
            t0 = time.perf_counter()
            self.area_targets = sample_targets(self.backend, self.cfg.prompt, self.cfg.area_samples, self.cfg.seed,
                                               steps=self.cfg.area_steps)
            self.area_seconds = time.perf_counter() - t0
        from .sds import run_prompts

        self.backend.freeze_prompts(run_prompts(self.cfg.prompt, self.cfg.sds))  # IF: T5 is freed here

    def silhouettes(self):
        """The area prior's targets (their extents shape the Gaussians' start), None when it is off."""
        return self.area_targets

    def score_model(self, prompts, generator):
        """VSD's fitted denoiser for this step (None: the method needs none)."""
        return None

    def state(self) -> dict:
        return {"area_targets": None if self.area_targets is None else self.area_targets.to_dict(),
                "area_seconds": self.area_seconds}

    def load(self, state: dict) -> None:
        from .silhouette import SilhouetteTargets

        if state.get("area_targets") is not None:
            self.area_targets = SilhouetteTargets.from_dict(state["area_targets"])
            self.area_seconds = float(state.get("area_seconds", 0.0))

    def prompts(self, cams) -> list[str]:
        """The prompt for each camera: with its view word (DreamFusion) unless view prompts are off."""
        from .sds import view_prompts

        cfg = self.cfg
        return (view_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg) if cfg.sds.view_prompts
                else [cfg.prompt] * cfg.batch_size)

    def loss(self, out, cams, light, shading: str, progress: float, generator) -> tuple[Tensor, dict[str, float]]:
        from .sds import perp_neg_prompts, sds_step

        cfg = self.cfg
        prompts = self.prompts(cams)
        negatives = (perp_neg_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg, cfg.sds.perp_neg)
                     if cfg.sds.perp_neg > 0 else None)
        sds = sds_step(self.backend, out.rgb, prompts, cfg.sds, progress, generator, self.method, negatives,
                       self.score_model(prompts, generator), cameras=cams)
        loss = sds.loss
        # The record's values are 0-d tensors, read once the step's kernels have run (Generator.settle)
        record = {"sds": sds.loss.detach(), "sds_grad_norm": sds.grad.norm(), "t": sds.t.float().mean(),
                  "sds_nonfinite": sds.nonfinite}  # NaN/inf values in the gradient (SDSConfig.nonfinite)
        if self.area_targets is not None:
            from .silhouette import area_loss

            target = self.area_targets.for_cameras(cams.azimuth_deg, cams.elevation_deg) * cfg.area_scale
            area = area_loss(out.opacity, target, cfg.area_tolerance)
            loss = loss + cfg.area_weight * area
            record["area"] = area.detach()
        return loss, record


class CSDObjective(SDSObjective):
    """Classifier Score Distillation (Yu et al. 2023): ``w(t) s (eps_c - eps_u)``, the area prior as SDS's."""

    name = method = "csd"


class ISMObjective(SDSObjective):
    """Interval Score Matching (Liang et al. 2023, LucidDreamer): x_t by DDIM inversion, the target the
    unconditional eps one interval earlier; the area prior as SDS's."""

    name = method = "ism"


class VSDObjective(SDSObjective):
    """Variational Score Distillation (Wang et al. 2023, ProlificDreamer), with a full copy of the built-in prior
    in the place of ProlificDreamer's LoRA (the prior is small): the copy starts as the prior and is fitted each
    step to the current render (Algorithm 1's loss at a fresh t, the same prompt), and SDS's noise target is
    replaced by its prediction. The copy and its optimizer are part of the checkpoint, so a resumed run is the
    same run. The copy sees the camera when the prior is camera-aware (ProlificDreamer's LoRA has a camera input);
    otherwise the view word in the prompt is the camera."""

    name = method = "vsd"
    LOSS_KEYS = SDSObjective.LOSS_KEYS + ("vsd_fit",)

    def __init__(self, cfg, backend):
        super().__init__(cfg, backend)
        prior = getattr(backend, "prior", None)
        if prior is None or not hasattr(prior, "model"):
            from ..config import DreamliftError

            raise DreamliftError(f"--objective vsd fits a copy of the built-in prior; the {backend.name} backend "
                                 "is not supported")
        import copy

        import torch

        self.prior = prior
        self.phi = copy.deepcopy(prior.model).train()
        for p in self.phi.parameters():
            p.requires_grad_(True)
        self.phi_opt = torch.optim.Adam(self.phi.parameters(), lr=cfg.sds.vsd_lr)

    def score_model(self, prompts, generator):
        from ..diffusion.targets import convert

        def eps_phi(x_t, t, cond):
            return convert(self.prior.schedule, self.phi(x_t, t, cond), self.prior.prediction, "eps", x_t, t)

        return eps_phi

    def loss(self, out, cams, light, shading: str, progress: float, generator):
        import torch

        from ..diffusion.loss import diffusion_loss

        loss, record = super().loss(out, cams, light, shading, progress, generator)
        # fit the copy to this render (detached: the scene gets no gradient from it), at a fresh t and noise
        x0 = self.backend.encode_images(out.rgb.detach())
        # the conditional half of what SDS sent (the prompts and, to a camera-aware prior, the cameras)
        cond = self.backend.at_cameras(self.backend.encode_text(self.prompts(cams)), cams)
        with torch.enable_grad():
            fit = diffusion_loss(self.phi, x0, self.prior.schedule, prediction=self.prior.prediction,
                                 cond=cond, generator=generator)
            self.phi_opt.zero_grad(set_to_none=True)
            fit.backward()
        self.phi_opt.step()
        record["vsd_fit"] = fit.detach()
        return loss, record

    def state(self) -> dict:
        return {**super().state(), "vsd": {"model": self.phi.state_dict(), "optimizer": self.phi_opt.state_dict()}}

    def load(self, state: dict) -> None:
        super().load(state)
        if state.get("vsd") is not None:
            self.phi.load_state_dict(state["vsd"]["model"])
            self.phi_opt.load_state_dict(state["vsd"]["optimizer"])


#: ``--objective`` -> the objective class for a text prompt.
OBJECTIVES = {cls.name: cls for cls in (SDSObjective, CSDObjective, ISMObjective, VSDObjective)}


def make_objective(cfg, backend):
    """The objective ``cfg.objective`` names, for ``dreamlift generate`` (and bench)."""
    return OBJECTIVES[cfg.objective](cfg, backend)
