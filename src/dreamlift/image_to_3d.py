"""`dreamlift image-to-3d IMAGE --out DIR`: one picture of an object in, a 3D object out.

The same loop, representations and outputs as ``generate`` (``dreamlift.generate.run_training``), driven by
``guidance.image.ImageObjective``: the reference view's colours and silhouette at the reference camera, and
score distillation from the view-conditioned prior (``dreamlift.prior.novel_view``) at random cameras, plus
the text prior's when a ``--prompt`` is given.

The reference camera is assumed where the world's renders put it unless given: azimuth 0 (the object's
front), elevation 15 degrees, the middle of the world's distance (3.3 object radii) and field of view (45
degrees). The object is expected on a white background (or a transparent one) and centred, as in the world's
renders; the image is padded to a square, never cropped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import DreamliftError, option
from .generate import GenerateConfig, run_training
from .guidance.sds import SDSConfig

__all__ = ["ImageTo3DConfig", "run_image_to_3d", "DEFAULT_REFERENCE"]

# Where the reference camera is assumed: (azimuth, elevation, distance, field of view), the world's front view.
DEFAULT_REFERENCE = (0.0, 15.0, 3.3, 45.0)
# Where the Gaussians start: the ellipsoid of the reference's silhouette and the prior's side views (suite
# image-v1: docs/decisions/gaussians-init-shape.md).
IMAGE_INIT_SHAPE = "silhouettes"
# The Gaussians' position rate relative to --lr: DreamGaussian's. Generate's 6 tied on image-v1 at one seed (median
# IoU 0.639 -> 0.629, mean unchanged), so the rate the reference losses were tuned at stays
# (docs/decisions/gaussians-position-lr.md).
IMAGE_POSITION_LR_SCALE = 0.1
# The surface level of both representations. The reference losses make solid, opaque Gaussians (suite image-v1:
# 0.99 of the true volume inside level 1), not the semi-transparent shells of text-to-3D that generate's 0.35
# is for (docs/decisions/surface-level.md).
IMAGE_SURFACE_DENSITY = 1.0
# Gaussian steps per preset: DreamGaussian's 500 (quality 1500), the count image-v1 was measured at. Text-to-3D's
# fast preset went to 1000 on core-v1's evidence (docs/decisions/steps.md); image-v1 has not been run at 1000.
IMAGE_GAUSSIAN_STEPS = {"fast": 500, "quality": 1500}


def image_steps(representation: str, preset: str, steps: int | None) -> int | None:
    """The steps of an image-to-3d run (or an image suite's ceiling): a given count, else image-to-3d's own for the
    Gaussians, else None (the preset's)."""
    if steps is None and representation == "gaussians":
        return IMAGE_GAUSSIAN_STEPS.get(preset)
    return steps


@dataclass
class ImageTo3DConfig(GenerateConfig):
    """Settings of ``dreamlift image-to-3d``: generate's, with a reference image instead of the prompt."""

    OPTION_GROUPS = ("the run", "the reference", "the prompt", "outputs", "score distillation", "shading",
                     "expert: the reference losses", "the area prior", "expert: the area prior", "expert: losses and timesteps",
                     "expert: the NeRF", "expert: 3D Gaussians")

    prompt: str = option("", "an optional caption of the object (adds the text prior's score distillation)",
                         group="the prompt")
    image: Path = option(Path(""), "the reference view: the object on a white or transparent background",
                         positional=True)
    ref_azimuth: float = option(DEFAULT_REFERENCE[0], "azimuth of the reference camera in degrees (0: the front)",
                                group="the reference", low=-360, high=360)
    ref_elevation: float = option(DEFAULT_REFERENCE[1], "elevation of the reference camera in degrees",
                                  group="the reference", low=-89, high=89)
    ref_distance: float = option(DEFAULT_REFERENCE[2], "distance of the reference camera in object radii",
                                 group="the reference", low=1.5, high=10)
    ref_fov: float = option(DEFAULT_REFERENCE[3], "vertical field of view of the reference camera in degrees",
                            group="the reference", low=5, high=120)
    prior_weight: float = option(1.0, "weight of the view-conditioned prior's score distillation (0: fit the "
                                      "reference view alone, a baseline)", group="expert: the reference losses", low=0)
    rgb_weight: float = option(1000.0, "weight of the reference view's colour loss", group="expert: the reference losses", low=0)
    mask_weight: float = option(500.0, "weight of the reference view's silhouette loss", group="expert: the reference losses",
                                low=0)
    text_weight: float = option(1.0, "weight of the text prior's score distillation (with --prompt)",
                                group="expert: the reference losses", low=0)
    novel_view_model: Path | None = option(None, "the view-conditioned prior's weights folder (default: shipped)",
                                           group="the reference")
    surface_density: float | None = option(None, "density of the surface (marching cubes, scores; default: "
                                                 f"{IMAGE_SURFACE_DENSITY:g})", group="outputs", low=1e-6)
    text_sds: SDSConfig = field(default_factory=SDSConfig, metadata={"group": "expert: losses and timesteps",
                                                                     "cli": False})

    def resolved(self) -> "ImageTo3DConfig":
        if str(self.image) in ("", "."):
            raise DreamliftError("give the reference image: dreamlift image-to-3d IMAGE --out DIR")
        if not self.image.is_file():
            raise DreamliftError(f"image not found: {self.image}")
        if self.backend != "builtin":
            raise DreamliftError("image-to-3d guides with the built-in priors only (--backend builtin)")
        if self.preset not in ("fast", "quality"):
            raise DreamliftError(f"--preset {self.preset} is for a text backend; use fast or quality")
        out = self.out if self.out is not None else Path("outputs") / output_slug(self.image)
        steps = image_steps(self.representation, self.preset, self.steps)
        base = replace(self, prompt=self.prompt.strip() or "an object", out=out, steps=steps,
                       guidance=self.guidance if self.guidance is not None else 5.0,
                       area_weight=0.0 if self.area_weight is None else self.area_weight,
                       surface_density=IMAGE_SURFACE_DENSITY if self.surface_density is None else self.surface_density,
                       gaussians=self.gaussians.filled(init_shape=IMAGE_INIT_SHAPE,
                                                       position_lr_scale=IMAGE_POSITION_LR_SCALE))
        cfg = GenerateConfig.resolved(base)  # the preset's values, checked
        text_sds = replace(cfg.sds, guidance_scale=20.0)  # the text prior's own default scale (generate's)
        return replace(cfg, prompt=self.prompt.strip(), text_sds=text_sds)


def output_slug(image: Path) -> str:
    """The name of an image's run folder: its file name's stem, lower case, then -3d."""
    return f"{_stem(image)}-3d"


def _stem(path: Path) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")[:50] or "image"


def run_image_to_3d(cfg: ImageTo3DConfig) -> dict:
    """Run ``dreamlift image-to-3d``; returns the metrics written to OUT/metrics.json."""
    from .images import load_reference_image

    cfg = cfg.resolved()
    if cfg.prompt:
        from .generate import _review_prompt

        _review_prompt(cfg)
    # Read the image before any heavy work (a bad one is a one-line error and nothing is written).
    from .prior.novel_view import novel_view_meta

    resolution = novel_view_meta(cfg.novel_view_model)["unet"]["resolution"]
    render_size = max(8, int(round(resolution * cfg.render_scale)))
    reference = load_reference_image(cfg.image, resolution)
    reference_full = load_reference_image(cfg.image, render_size)

    def build(device):
        from .generate import Generator
        from .guidance.image import ImageObjective, NovelViewGuidance

        guidance = NovelViewGuidance(cfg.novel_view_model, device=device)
        text_backend = None
        if cfg.prompt:
            from .guidance.backends import load_backend

            text_backend = load_backend("builtin", cfg.model, device, allow_out_of_world=cfg.allow_out_of_world,
                                        rewrite_unknown_words=not cfg.keep_unknown_words)
            text_backend.check_prompt(cfg.prompt)
        objective = ImageObjective(cfg, guidance, reference, reference_full, text_backend)
        return Generator(cfg, objective), {"image": str(cfg.image), "backend": "novel-view",
                                           "reference_camera": {"azimuth": cfg.ref_azimuth,
                                                                "elevation": cfg.ref_elevation,
                                                                "distance": cfg.ref_distance, "fov": cfg.ref_fov}}

    metrics = run_training(cfg, build)
    from .export.outputs import written

    print(f"wrote {written(metrics['out'])} ({metrics['steps']} steps in {metrics['seconds']['train']:.0f} s)",
          file=sys.stdout)
    return metrics
