"""Score one text-to-3D result against the world object its prompt names.

    score_result("outputs/a-red-mug", SuitePrompt("a red mug", "mug", "red"), suite=SUITES["core-v1"])

A result is a :class:`ScoredField`: a density and an albedo callable, the density level of
its surface, and a renderer. :func:`nerf_field` wraps a NeRF (:func:`load_field` one from
``OUT/checkpoint.safetensors``), :func:`world_field` a ground-truth :class:`~dreamlift.world.WorldObject`,
so ground truth runs through exactly the code that scores a result (and must score perfectly).

Metrics (``score_result`` returns them in one JSON-ready dict):

- ``iou``, ``rotation_deg``: volumetric IoU of {density > surface level} with the object,
  after the prediction's best turn about +y (``metrics.best_rotation_iou``; SDS has no
  reason to put the front at +z); ``chamfer``: symmetric Chamfer distance (object radii)
  between the predicted iso-surface, turned the same way, and the object's surface;
  ``chamfer_floor``: the same between two independent samplings of the true surface (what a
  perfect result scores with this many points).
- ``delta_e_named``: CIEDE2000 between the mean albedo on the predicted surface where it lies
  on the object's named-colour parts (aligned points within ``colour_tolerance`` of the true
  surface whose nearest part has no fixed colour) and the named colour. Falls back to the
  whole predicted surface (``colour_region = "surface"``) when fewer than 32 points qualify.
  ``delta_e_surface``: mean albedo of the whole predicted surface against the true object's
  mean surface albedo (fixed-colour details included). World colours are linear RGB, as the
  NeRF's albedo (it is fitted to renders that write albedo unchanged), so both use
  ``srgb_to_lab(linear=True)``.
- ``r_precision_colour`` / ``r_precision_textureless``: R-Precision (R = 1) of lambertian and
  of textureless (geometry only: uniform ``TEXTURELESS_GREY`` albedo) orbit renders under the
  evaluator, as DreamFusion reports both. A colour view is right when the suite object
  (distinct (category, colour) pair) with the highest evaluator log-likelihood is this
  prompt's; a textureless view when the best of the suite's categories is this prompt's.
- ``janus``: the multi-face score, for front-facing categories only (see :func:`janus_score`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import DreamliftError, atomic_write, config_to_dict, option
from .suite import SuitePrompt, suite_labels

__all__ = ["ScoreConfig", "ScoredField", "scene_field", "nerf_field", "world_field", "load_field", "two_faced",
           "geometry_scores", "colour_scores", "r_precision_scores", "janus_score", "janus_from_field",
           "score_result", "write_score", "read_score", "SCORE_FILE"]

SCORE_FILE = "score.json"
#: Albedo of "textureless" scoring renders. DreamFusion shades them white, but the evaluator never saw a
#: white object (the world has none, and the background is white): on ground-truth orbits it names the
#: category of 33% of white renders and 85% of grey ones. Geometry-only either way.
TEXTURELESS_GREY = 0.55
RenderFn = Callable[["CameraSample", "Light", str], Tensor]  # noqa: F821  (cameras, lights, shading) -> (B, 3, H, W)


@dataclass
class ScoreConfig:
    """How a result is scored (defaults: ~10-20 s per result on one CPU core)."""

    resolution: int = option(64, "voxel grid side for the volumetric IoU")
    surface_resolution: int = option(96, "marching-cubes grid side for the predicted surface")
    chamfer_points: int = option(4096, "surface points per side for the Chamfer distance")
    colour_tolerance: float = option(0.05, "how near the true surface a point must be to count for its part's colour")
    views: int = option(8, "orbit views per shading for R-Precision")
    view_elevation: float = option(20.0, "elevation of the R-Precision orbit (degrees)")
    janus_views: int = option(16, "orbit views for the multi-face score")
    janus_elevation: float = option(25.0, "elevation of the multi-face orbit (degrees; at 15 the view head "
                                    "takes the snowman's plain back for its front)")
    janus_margin: float = option(0.25, "P(front) - P(back) a view needs to count as a front view")
    render_size: int = option(64, "side of the scoring renders (the evaluator area-averages them to 32)")
    num_samples: int = option(64, "samples per ray when rendering a NeRF for scoring")
    seed: int = option(0, "seed of the surface samples")

    def validate(self) -> None:
        if min(self.resolution, self.surface_resolution) < 8 or min(self.views, self.janus_views) < 4:
            raise DreamliftError("score resolutions must be >= 8 and view counts >= 4")
        if min(self.chamfer_points, self.render_size, self.num_samples) < 8:
            raise DreamliftError("chamfer points, render size and samples per ray must be >= 8")


@dataclass
class ScoredField:
    """A 3D result as plain callables (all points (N, 3) float32 in the world frame)."""

    density: Callable[[Tensor], Tensor]
    """(N, 3) -> (N,), larger inside."""
    albedo: Callable[[Tensor], Tensor]
    """(N, 3) -> (N, 3) linear RGB in [0, 1]."""
    threshold: float
    """The surface is {density = threshold}; inside is density > threshold."""
    render: RenderFn
    """(CameraSample of B cameras, Light with B lights, shading) -> (B, 3, H, W) in [0, 1], white background."""


# ----------------------------------------------------------------------------- fields


def scene_field(scene, threshold: float, num_samples: int = 64, chunk: int = 4) -> ScoredField:
    """A representation (``dreamlift.scene.Representation``) as a ScoredField; its surface is density = threshold.

    ``num_samples`` is the samples per ray of volume representations."""
    from ..render.camera import Light

    scene.eval()

    @torch.no_grad()
    def render(cams, light, shading: str) -> Tensor:
        out = []
        for i in range(0, len(cams.camera), chunk):
            sl = slice(i, i + chunk)
            lights = Light(light.position[sl], light.ambient[sl])
            if shading == "textureless":  # shade * grey over white: render over black, then composite
                r = scene.render(cams.camera[sl], lights, shading, background=torch.zeros(3), num_samples=num_samples)
                out.append((TEXTURELESS_GREY * r.rgb + (1.0 - r.opacity)).cpu())
            else:
                out.append(scene.render(cams.camera[sl], lights, shading, num_samples=num_samples).rgb.cpu())
        return torch.cat(out).clamp(0, 1)

    with_dev = lambda f: (lambda p: f(p.to(scene.device)).cpu())  # noqa: E731
    return ScoredField(with_dev(torch.no_grad()(scene.density)), with_dev(torch.no_grad()(scene.albedo)),
                       float(threshold), render)


def nerf_field(nerf, threshold: float, num_samples: int = 64, chunk: int = 4) -> ScoredField:
    """A bare ``dreamlift.scene.nerf.NeRF`` (or any representation) as a ScoredField."""
    from ..scene.base import Representation
    from ..scene.nerf import NeRFScene

    if not isinstance(nerf, Representation):
        scene = NeRFScene(nerf.cfg).to(nerf.device)
        scene.load_state_dict(nerf.state_dict())
        nerf = scene
    return scene_field(nerf, threshold, num_samples, chunk)


def world_field(obj) -> ScoredField:
    """A ground-truth WorldObject as a ScoredField: density -sdf at level 0, rendered by the sphere tracer.

    Albedo renders use ambient 1 (shading = albedo exactly); textureless ones ``TEXTURELESS_GREY``.
    """
    from ..render.camera import Light
    from ..world.render import shade, trace_geometry

    def render(cams, light, shading: str) -> Tensor:
        geo = trace_geometry(obj.shape, cams.camera)
        table = obj.shape.part_albedo(obj.rgb)  # (P, 3)
        if shading == "textureless":
            table = torch.full_like(table, TEXTURELESS_GREY)
        elif shading == "albedo":
            light = Light(light.position, torch.ones_like(light.ambient))
        return shade(geo, table, light).permute(0, 3, 1, 2)  # (B, 3, H, W)

    return ScoredField(lambda p: -obj.sdf(p), obj.albedo, 0.0, render)


def two_faced(obj):
    """The object with its front half mirrored onto the back: sdf(x, y, |z|). -> WorldObject.

    For a front-facing category whose front is marked by something on the +z side (the house's
    door, the car's headlights, the snowman's nose) this shows a front from both sides: the
    geometry of a Janus result, used to check that :func:`janus_score` catches one. (The mug's
    front is its handle's side, a left/right cue that mirroring z keeps; it stays one-faced.)
    """
    from ..world.objects import Part, Shape, WorldObject

    def mirrored(sdf):
        def f(p: Tensor) -> Tensor:
            q = p.clone()
            q[:, 2] = p[:, 2].abs()
            return sdf(q)
        return f

    shape = obj.shape
    parts = tuple(Part(p.name, mirrored(p.sdf), p.colour) for p in shape.parts)
    return WorldObject(Shape(shape.category, parts, shape.front), obj.colour)


def load_field(out: Path, num_samples: int = 64, device: str = "cpu") -> tuple[ScoredField, dict]:
    """The representation of a finished run, OUT/checkpoint.safetensors -> (ScoredField at the run's
    surface_density, run config). Loading runs no code from the file (``dreamlift.checkpoint``)."""
    scene, config = load_scene(out, device)
    return scene_field(scene, config["surface_density"], num_samples), config


def load_scene(out: Path, device: str = "cpu"):
    """The representation of a finished run, OUT/checkpoint.safetensors -> (Representation, run config)."""
    from ..checkpoint import load_state
    from ..generate import CHECKPOINT
    from ..scene import build_representation

    ckpt = Path(out) / CHECKPOINT
    if not ckpt.is_file():
        raise DreamliftError(f"there is no checkpoint at {ckpt}; run dreamlift generate first")
    state = load_state(ckpt)
    try:
        config = state["config"]
        scene = build_representation(config).to(device)
        scene.load_state_dict(state["field"])
    except Exception as exc:  # a mismatched file is the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DreamliftError(f"cannot load the representation from {ckpt} ({type(exc).__name__}: {first})") from None
    return scene, config


# ----------------------------------------------------------------------------- metrics


def _rotate_y(points: Tensor, degrees: float) -> Tensor:
    from .metrics import _rotate_y as rot

    return rot(points.double(), degrees).float()


def geometry_scores(field: ScoredField, obj, cfg: ScoreConfig = ScoreConfig()) -> tuple[dict, Tensor | None]:
    """IoU after the best turn, the turn, and Chamfer. -> (scores, predicted surface points (n, 3) or None).

    The surface points are in the prediction's own frame (for sampling its albedo).
    """
    from .metrics import best_rotation_iou, chamfer_distance, grid_iou, occupancy_grid, surface_points_from_density

    occ = lambda p: field.density(p) > field.threshold  # noqa: E731
    iou, angle = best_rotation_iou(occ, obj.occupancy, resolution=cfg.resolution)
    if angle != 0.0:
        # The search maximises a smooth surrogate; on near-symmetric thin shapes (the mug at R = 64: 2.7
        # degrees, IoU 0.92 for the truth against itself) its peak misses the exact one. The canonical
        # pose is the likeliest answer (view-dependent prompts put the front at +z), so test it exactly too.
        at_zero = grid_iou(occupancy_grid(occ, cfg.resolution), occupancy_grid(obj.occupancy, cfg.resolution))
        if at_zero >= iou:
            iou, angle = at_zero, 0.0
    g = torch.Generator().manual_seed(cfg.seed)
    try:
        pts = surface_points_from_density(field.density, field.threshold, cfg.chamfer_points,
                                          resolution=cfg.surface_resolution, generator=g)
    except DreamliftError:  # no surface at all: nothing to measure a distance to
        return {"iou": iou, "rotation_deg": angle, "chamfer": None, "chamfer_floor": None, "empty": True}, None
    gt = obj.surface_samples(cfg.chamfer_points, generator=g)
    chamfer = chamfer_distance(_rotate_y(pts, angle), gt)
    floor = chamfer_distance(obj.surface_samples(cfg.chamfer_points, generator=g), gt)
    return {"iou": iou, "rotation_deg": angle, "chamfer": chamfer, "chamfer_floor": floor, "empty": False}, pts


def colour_scores(field: ScoredField, obj, points: Tensor | None, rotation_deg: float,
                  cfg: ScoreConfig = ScoreConfig()) -> dict:
    """CIEDE2000 of the predicted surface albedo (see the module docstring). points: (n, 3) predicted surface."""
    from .metrics import delta_e2000, srgb_to_lab

    if points is None:
        return {"delta_e_named": None, "delta_e_surface": None, "colour_region": None, "mean_albedo": None}
    with torch.no_grad():
        albedo = field.albedo(points).float().clamp(0, 1)  # (n, 3)
        aligned = _rotate_y(points, rotation_deg)  # in the object's frame
        near = obj.sdf(aligned).abs() < cfg.colour_tolerance
        named = torch.tensor([p.colour is None for p in obj.shape.parts])[obj.shape.part_ids(aligned)]
        mask = near & named
        region = "named-parts" if int(mask.sum()) >= 32 else "surface"
        mean_named = albedo[mask].mean(0) if region == "named-parts" else albedo.mean(0)
        gt_pts = obj.surface_samples(cfg.chamfer_points, generator=torch.Generator().manual_seed(cfg.seed + 1))
        gt_mean = obj.albedo(gt_pts).mean(0)
    lab = lambda c: srgb_to_lab(torch.as_tensor(c, dtype=torch.float64), linear=True)  # noqa: E731
    return {"delta_e_named": float(delta_e2000(lab(mean_named), lab(obj.rgb))),
            "delta_e_surface": float(delta_e2000(lab(albedo.mean(0)), lab(gt_mean))),
            "colour_region": region, "named_fraction": float(mask.float().mean()),
            "mean_albedo": [round(float(v), 4) for v in mean_named]}


def _orbit(n: int, elevation: float, size: int):
    from ..export.outputs import _orbit_light
    from ..render.camera import CameraDistribution

    cams = CameraDistribution().orbit(n, elevation_deg=elevation, height=size)
    return cams, _orbit_light(cams)  # the light of dreamlift's own views.png: fixed relative to the viewer


def r_precision_scores(field: ScoredField, prompt: SuitePrompt, suite, evaluator,
                       cfg: ScoreConfig = ScoreConfig()) -> dict:
    """R-Precision of colour (lambertian) and textureless orbit renders among the suite's objects."""
    from .metrics import r_precision, suite_prompt_scores

    labels = suite_labels([*suite, prompt])
    cats = list(dict.fromkeys(c for c, _ in labels))
    cams, light = _orbit(cfg.views, cfg.view_elevation, cfg.render_size)
    out = {}
    for shading, key in (("lambertian", "colour"), ("textureless", "textureless")):
        pred = evaluator.predict(field.render(cams, light, shading))
        if key == "colour":
            scores = suite_prompt_scores(pred, [evaluator.categories.index(c) for c, _ in labels],
                                         [evaluator.colours.index(k) for _, k in labels])
            true = labels.index((prompt.category, prompt.colour))
            out["colour_accuracy"] = float((pred.colour.argmax(-1) == evaluator.colours.index(prompt.colour))
                                           .float().mean())
        else:
            scores = suite_prompt_scores(pred, [evaluator.categories.index(c) for c in cats], use_colour=False)
            true = cats.index(prompt.category)
        out[f"r_precision_{key}"] = r_precision(scores, torch.full((cfg.views,), true))
        out[f"category_accuracy_{key}"] = float((pred.category.argmax(-1) == evaluator.categories.index(
            prompt.category)).float().mean())
    return out


def janus_score(view_probs: Tensor, margin: float = 0.25) -> dict:
    """Multi-face ("Janus") score of an orbit. view_probs: (V, 4) evaluator view probabilities
    (front, side, back, overhead) at V equally spaced azimuths in order around the object.

    A view counts as *front* when the view head's top class is "front" and
    P(front) - P(back) > ``margin`` (the head is unsure of front against back for objects
    whose back is plain, e.g. the snowman: 0.5 / 0.5 there; a margin keeps such views out).
    A one-faced object shows its front in one contiguous arc of azimuths, seen from one side;
    the result is Janus when front views form two or more separate arcs (around the circle),
    or cover more than half of it (a front seen from opposite sides). Returns janus (bool),
    front_arcs, front_fraction, and views: one letter per view (F front; else the top of S, B, O).
    """
    p = torch.as_tensor(view_probs, dtype=torch.float64)
    if p.ndim != 2 or p.shape[1] != 4 or p.shape[0] < 4:
        raise DreamliftError(f"view_probs must have shape (V >= 4, 4), got {tuple(p.shape)}")
    front = (p.argmax(-1) == 0) & (p[:, 0] - p[:, 2] > margin)  # (V,)
    starts = front & ~torch.roll(front, 1)  # a run of fronts begins here (circularly)
    arcs = int(starts.sum()) if not bool(front.all()) else 1
    frac = float(front.double().mean())
    letters = "".join("F" if f else "FSBO"[1 + int(q[1:].argmax())] for f, q in zip(front.tolist(), p))
    return {"janus": bool(arcs >= 2 or frac > 0.5), "front_arcs": arcs, "front_fraction": frac, "views": letters}


def janus_from_field(field: ScoredField, evaluator, cfg: ScoreConfig = ScoreConfig()) -> dict:
    """Render a lambertian orbit of ``cfg.janus_views`` azimuths and score it with :func:`janus_score`."""
    cams, light = _orbit(cfg.janus_views, cfg.janus_elevation, cfg.render_size)
    pred = evaluator.predict(field.render(cams, light, "lambertian"))
    return janus_score(pred.view, cfg.janus_margin)


# ----------------------------------------------------------------------------- one result


def score_result(result, prompt: SuitePrompt, suite=None, cfg: ScoreConfig = ScoreConfig(), evaluator=None,
                 threshold: float = 10.0) -> dict:
    """All metrics of one result. -> JSON-ready dict (``finished: True``).

    Args:
        result: an output folder holding checkpoint.safetensors, a NeRF (surface at ``threshold``), or a ScoredField.
        suite: the prompts R-Precision ranks against (default: this prompt's suite-mates in core-v1).
        evaluator: an :class:`~dreamlift.evaluate.classifier.Evaluator` (default: the shipped one).
    """
    from ..world import FRONT_FACING
    from .classifier import Evaluator
    from .suite import SUITES

    cfg.validate()
    t0 = time.perf_counter()
    if isinstance(result, (str, Path)):
        field, _ = load_field(Path(result), cfg.num_samples)
    elif isinstance(result, ScoredField):
        field = result
    elif isinstance(result, torch.nn.Module):
        field = nerf_field(result, threshold, cfg.num_samples)
    else:
        raise DreamliftError(f"cannot score a {type(result).__name__}; give an output folder, a NeRF or a ScoredField")
    evaluator = evaluator or Evaluator()
    suite = SUITES["core-v1"] if suite is None else suite
    obj = prompt.world_object()
    geo, points = geometry_scores(field, obj, cfg)
    scores = {"prompt": prompt.prompt, "category": prompt.category, "colour": prompt.colour, **geo,
              **colour_scores(field, obj, points, geo["rotation_deg"], cfg),
              **r_precision_scores(field, prompt, suite, evaluator, cfg),
              "janus": janus_from_field(field, evaluator, cfg) if prompt.category in FRONT_FACING else None}
    scores.update(seconds=time.perf_counter() - t0, score_config=config_to_dict(cfg), finished=True)
    return scores


def write_score(out: Path, scores: dict) -> Path:
    """OUT/score.json, atomically (written last, so its presence means the score is complete)."""
    path = Path(out) / SCORE_FILE
    clean = json.loads(json.dumps(scores), parse_constant=lambda c: None)  # NaN/inf -> null
    atomic_write(path, (json.dumps(clean, indent=2) + "\n").encode())
    return path


def read_score(out: Path) -> dict | None:
    """OUT/score.json if it is a finished score, else None."""
    try:
        data = json.loads((Path(out) / SCORE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("finished") is True else None

