"""Image to 3D: the view-conditioned prior as an SDS guide, and the objective of ``dreamlift image-to-3d``.

The objective is Magic123's and DreamGaussian's image mode, with our view-conditioned prior in the place of
Zero-1-to-3 (``dreamlift.prior.novel_view``):

    loss = w_rgb  * mean (render_ref.rgb - reference)^2          at the reference camera, albedo shading
         + w_mask * mean (render_ref.opacity - mask)^2
         + SDS(novel-view prior | reference, camera relative to the reference)   at the loop's random cameras
         [+ w_text * SDS(text prior | prompt, view word)]                          with --prompt

The reference camera is fixed for the run (``ImageTo3DConfig``: front-ish by default); the reference view is
rendered by the objective itself each step (``attach`` gives it the loop's representation), with albedo
shading, since the reference image's lighting is unknown.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GuidanceBackend
from .builtin import pixel_x0

__all__ = ["NovelViewGuidance", "ImageObjective"]


class NovelViewGuidance(GuidanceBackend):
    """The view-conditioned prior (shipped, or an exported folder) as an SDS backend; its conditions are
    ``ViewCondition``s made by :meth:`view_conditions`."""

    name = "novel-view"

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu"):
        from ..prior.novel_view import NovelViewPrior

        self.prior = NovelViewPrior(path, device=device)
        self.device, self.schedule, self.resolution = self.prior.device, self.prior.schedule, self.prior.resolution
        self.null = self.prior.encoder.unconditional(1).to(self.device)

    def encode_text(self, prompts: list[str]):
        return self.prior.encoder.encode(prompts).to(self.device)

    def encode_images(self, images: Tensor) -> Tensor:
        return pixel_x0(images, self.resolution)

    def predict_eps(self, x_t: Tensor, t: Tensor, cond) -> Tensor:
        from ..diffusion import convert

        with torch.no_grad():
            out = self.prior.model(x_t, t, cond)
        return convert(self.schedule, out, self.prior.prediction, "eps", x_t, t)

    def view_conditions(self, reference: Tensor, camera: Tensor, text=None):
        """The 2B conditions of one SDS step: ``reference`` (3, R, R) in [0, 1] at relative cameras (B, 4) with
        the caption ``text`` (a (1, ...) TextEmbedding, or None: no caption), then the same without reference."""
        from ..prior.novel_view import ViewCondition

        b = camera.shape[0]
        ref = (reference * 2 - 1).to(self.device)[None].expand(b, -1, -1, -1)
        cond = ViewCondition.make(ref, camera.to(self.device), self.null if text is None else text)
        null = cond.null(self.null)
        return ViewCondition(*(torch.cat([getattr(cond, f), getattr(null, f)])
                               for f in ("reference", "camera", "tokens", "mask", "pooled")))


class ImageObjective:
    """Reference-view RGB and mask losses + SDS from the view-conditioned prior (+ the text prior's SDS)."""

    name = "image"
    LOSS_KEYS = ("sds", "sds_grad_norm", "reference_rgb", "reference_mask", "orientation", "entropy", "opacity")

    def __init__(self, cfg, guidance: NovelViewGuidance, reference, reference_full, text_backend=None):
        """``reference`` is the ``ReferenceImage`` at the prior's resolution (its condition), ``reference_full``
        the same image at the render size (the reference-view losses)."""
        from ..render.camera import CameraSample, Light

        self.cfg, self.guidance, self.text_backend = cfg, guidance, text_backend
        if text_backend is not None and cfg.text_weight > 0:
            self.LOSS_KEYS = (*self.LOSS_KEYS, "text_sds")
        self.device, self.resolution = guidance.device, guidance.resolution
        self.reference = reference.rgb.to(self.device)  # (3, R, R) in [0, 1]
        self.target_rgb = reference_full.rgb.to(self.device)[None]  # (1, 3, S, S)
        self.target_mask = reference_full.mask.to(self.device)[None]  # (1, S, S)
        size = reference_full.rgb.shape[-1]
        one = lambda v: torch.tensor([float(v)])  # noqa: E731
        self.camera = CameraSample.from_spherical(one(cfg.ref_azimuth), one(cfg.ref_elevation), one(cfg.ref_distance),
                                                  one(cfg.ref_fov), size, size)
        self.light = Light(torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([1.0]))  # unused by albedo shading
        self.text = None if not cfg.prompt else guidance.encode_text([cfg.prompt])
        self.gen = None
        self.area_seconds = 0.0

    def attach(self, gen) -> None:
        """The loop's Generator: the objective renders its representation at the reference camera."""
        self.gen = gen

    def prepare(self) -> None:
        if self.text_backend is not None:
            from .sds import run_prompts

            self.text_backend.freeze_prompts(run_prompts(self.cfg.prompt, self.cfg.sds))

    def silhouettes(self, samples: int = 4):
        """The object's extents for the Gaussians' start: width and height from the reference's mask (as the
        front and the back view), depth from the width of the view-conditioned prior's own views at +-90
        degrees (``samples`` each, DDIM 25 steps, guidance 3, seeded by the run; median over them). None
        when the side views show nothing."""
        from ..prior.novel_view import camera_for
        from .silhouette import VIEW_WORDS, SilhouetteTargets, foreground_masks, mask_extent

        mask = self.target_mask > 0.5
        front = mask_extent(mask)[0]
        cams = torch.cat([camera_for(a, 0.0) for a in (90.0, -90.0) for _ in range(samples)])
        ref = self.reference[None].expand(len(cams), -1, -1, -1)
        views = self.guidance.prior.sample(ref, cams, self.cfg.prompt or None, steps=25, guidance_scale=3.0,
                                           seed=self.cfg.seed)
        side = mask_extent(foreground_masks(views.float().cpu())).median(dim=0).values
        if float(side[0]) <= 0 or float(front.min()) <= 0:
            return None
        area = float(mask.float().mean())
        extent = {w: tuple(map(float, side if w == "side" else front)) for w in VIEW_WORDS}
        return SilhouetteTargets({w: area for w in VIEW_WORDS}, {w: 0.0 for w in VIEW_WORDS}, 2 * samples, extent)

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        pass

    def loss(self, out, cams, light, shading: str, progress: float, generator) -> tuple[Tensor, dict[str, float]]:
        from ..prior.novel_view import relative_camera
        from .sds import sds_guided, sds_step, view_prompts

        cfg, ref = self.cfg, self.camera
        rel = relative_camera(ref.azimuth_deg.expand_as(cams.azimuth_deg), ref.elevation_deg.expand_as(cams.azimuth_deg),
                              ref.distance.expand_as(cams.distance), cams.azimuth_deg, cams.elevation_deg, cams.distance)
        loss, record = out.rgb.new_zeros(()), {"sds": 0.0, "sds_grad_norm": 0.0}
        if cfg.prior_weight > 0:
            sds = sds_guided(self.guidance, out.rgb, lambda: self.guidance.view_conditions(self.reference, rel, self.text),
                             cfg.sds, progress, generator)
            loss = cfg.prior_weight * sds.loss
            record = {"sds": float(sds.loss.detach()), "sds_grad_norm": float(sds.grad.norm()),
                      "t": float(sds.t.float().mean())}
        if self.text_backend is not None and cfg.text_weight > 0:
            prompts = view_prompts(cfg.prompt, cams.azimuth_deg, cams.elevation_deg)
            text_sds = sds_step(self.text_backend, out.rgb, prompts, cfg.text_sds, progress, generator)
            loss = loss + cfg.text_weight * text_sds.loss
            record["text_sds"] = float(text_sds.loss.detach())
        # The reference view, rendered with albedo shading (its lighting is unknown), against the image.
        ref_out = self.gen.scene.render(ref.camera, self.light, "albedo", generator=self.gen.render_rng)
        rgb = F.mse_loss(ref_out.rgb, self.target_rgb)
        mask = F.mse_loss(ref_out.opacity.reshape(self.target_mask.shape), self.target_mask)
        loss = loss + cfg.rgb_weight * rgb + cfg.mask_weight * mask
        record |= {"reference_rgb": float(rgb.detach()), "reference_mask": float(mask.detach())}
        return loss, record

