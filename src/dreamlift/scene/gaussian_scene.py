"""3D Gaussians as a :class:`~dreamlift.scene.base.Representation`: splatting, learning rates, density control.

Rendering is ``render.splat.rasterize`` (pure PyTorch). Parameter groups carry DreamGaussian's learning
rates relative to the run's lr (0.01 by default): positions 0.1x, colour 1x, opacity 5x, scales and
rotations 0.5x (DreamGaussian: 0.001, 0.01, 0.05, 0.005, 0.005).

Adaptive density control (Kerbl et al. 2023, section 5) after a step, every ``densify_every`` steps
between ``densify_from`` and ``densify_until`` of the run:

- the mean norm of the view-space (pixel) positional gradient is accumulated per Gaussian over the steps
  it was visible;
- the ``densify_fraction`` of visible Gaussians with the largest mean gradient grow: those wider than
  ``split_scale`` are split into two drawn from their own distribution with scales / 1.6, the others
  cloned. SDS gradients have no fixed scale (it moves with w(t), the guidance scale and the backend), so
  a share of the Gaussians replaces 3DGS's absolute threshold of 0.0002;
- Gaussians with opacity below ``prune_opacity`` or wider than ``prune_scale`` are removed;
- the count never exceeds ``max_count``.

When the count changes each parameter is replaced by a new one in the optimizer's groups, and Adam's
moments are cut and extended with it (zeros for new Gaussians). The
gradient statistics are buffers, saved in checkpoints: a resumed run densifies exactly as the
uninterrupted one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..render.splat import quaternion_to_matrix, rasterize
from .base import Representation
from .gaussians import Gaussians, GaussiansConfig, _knn_log_scale

__all__ = ["GaussianScene", "LR_SCALES"]

#: Learning rate of each parameter relative to the run's lr (DreamGaussian's rates at lr 0.01).
LR_SCALES = {"means": 0.1, "log_scales": 0.5, "quats": 0.5, "opacity_logits": 5.0, "sh": 1.0}
_PARAMS = tuple(LR_SCALES)


class GaussianScene(Gaussians, Representation):
    """N Gaussians that render, densify and prune (see the module docstring)."""

    bound = 1.0  # world objects fit the unit sphere; meshing and scoring look inside [-1, 1]^3
    field_chunk = 1 << 21  # the field builds its cell grid once per call and chunks the pairs itself

    def __init__(self, cfg: GaussiansConfig = GaussiansConfig(), steps: int = 500):
        cfg.validate()
        g = Gaussians.initialise(cfg)  # the global generator, seeded by the run
        super().__init__(g.means, g.log_scales, g.quats, g.opacity_logits, g.sh)
        self.cfg, self.steps, self.filter_scale = cfg, steps, cfg.filter_scale
        self.register_buffer("grad_sum", torch.zeros(self.count))  # summed view-space gradient norms
        self.register_buffer("grad_count", torch.zeros(self.count))  # steps each Gaussian was visible
        self._means2d: Tensor | None = None

    @classmethod
    def from_config(cls, config: dict) -> GaussianScene:
        return cls(GaussiansConfig(**config["gaussians"]), steps=int(config.get("steps") or 500))

    # ------------------------------------------------------------------ rendering and the field
    def render(self, camera, light, shading: str, *, generator: torch.Generator | None = None,
               num_samples: int | None = None, textureless_albedo="white", want_normals: bool = False,
               background: Tensor | None = None):
        def keep(proj):
            if torch.is_grad_enabled() and self.means.requires_grad:
                proj.means2d.retain_grad()
                self._means2d = proj.means2d
        # the scales are filtered in eval mode (the outputs), see Gaussians.filtered_log_scales
        return rasterize(self.means, self.filtered_log_scales, self.quats, self.opacity_logits, self.sh, camera, light,
                         shading, background, want_normals, textureless_albedo, on_projection=keep)

    def param_groups(self) -> list[dict]:
        position = self.cfg.position_lr_scale  # unset outside the commands: DreamGaussian's rate
        scales = {**LR_SCALES, "means": LR_SCALES["means"] if position is None else position}
        return [{"params": [getattr(self, name)], "lr_scale": scales[name], "name": name,
                 "lr_final": self.cfg.position_lr_final if name == "means" else 1.0} for name in _PARAMS]

    def export(self, folder) -> list[str]:
        from ..export.ply import write_ply

        write_ply(self, folder / "model.ply")
        return ["model.ply"]

    @property
    def wants_silhouettes(self) -> bool:
        return self.cfg.init_shape == "silhouettes"

    @torch.no_grad()
    def start_from(self, silhouettes) -> None:
        """With ``init_shape`` 'silhouettes', stretch the ball of first centres into the ellipsoid of the same
        volume with the proportions of the area prior's samples (``SilhouetteTargets.proportions``), each half
        axis kept within [0.15, 0.95] (the world's objects fit the unit sphere). The centres stay uniform (a
        linear map) and their sizes follow their new neighbours. No random numbers are drawn: the run's
        stream is unchanged."""
        if self.cfg.init_shape != "silhouettes" or silhouettes is None:
            return
        shape = silhouettes.proportions()
        if shape is None:
            return
        r = self.cfg.init_radius
        stretch = torch.tensor([min(max(r * k, 0.15), 0.95) / r for k in shape], dtype=self.means.dtype,
                               device=self.means.device)
        self.means.mul_(stretch)
        self.log_scales.copy_(_knn_log_scale(self.means)[:, None].expand_as(self.log_scales))

    # ------------------------------------------------------------------ density control
    def after_step(self, step: int, progress: float, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator) -> None:
        m2d, self._means2d = self._means2d, None
        if m2d is not None and m2d.grad is not None:
            with torch.no_grad():
                norm = m2d.grad.norm(dim=-1)  # (B, N) pixels^-1 of loss
                seen = norm > 0
                self.grad_sum += (norm * seen).sum(0)
                self.grad_count += seen.sum(0)
        cfg = self.cfg
        start, stop = cfg.densify_from * self.steps, cfg.densify_until * self.steps
        if start <= step <= stop and step % cfg.densify_every == 0:
            self.densify_and_prune(optimizer, generator)

    @torch.no_grad()
    def densify_and_prune(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        """Clone, split and prune as the module docstring says; resets the gradient statistics."""
        cfg, n = self.cfg, self.count
        mean_grad = torch.where(self.grad_count > 0, self.grad_sum / self.grad_count.clamp_min(1), 0.0)
        width = self.log_scales.exp().amax(-1)  # (N,)
        visible = (self.grad_count > 0).nonzero().squeeze(1)
        room = max(0, cfg.max_count - n)
        grow = visible[mean_grad[visible].argsort(descending=True)][: min(room, int(cfg.densify_fraction * len(visible)))]
        split = grow[width[grow] > cfg.split_scale]
        clone = grow[width[grow] <= cfg.split_scale]
        new = {name: [getattr(self, name)[clone]] for name in _PARAMS}
        if len(split) and n + len(clone) + len(split) <= cfg.max_count:  # each split adds one Gaussian net
            rot = quaternion_to_matrix(self.quats[split])  # (S, 3, 3)
            for _ in range(2):
                noise = torch.randn(len(split), 3, generator=generator).to(self.means) * self.log_scales[split].exp()
                new["means"].append(self.means[split] + (rot @ noise[:, :, None])[:, :, 0])
                new["log_scales"].append(self.log_scales[split] - math.log(1.6))
                for name in ("quats", "opacity_logits", "sh"):
                    new[name].append(getattr(self, name)[split])
        else:
            split = split[:0]
        opacity = torch.sigmoid(self.opacity_logits)
        keep = (opacity >= cfg.prune_opacity) & (width <= cfg.prune_scale)
        keep[split] = False  # replaced by their two halves
        if not keep.any() and not sum(len(t) for t in new["means"]):
            keep[opacity.argmax()] = True  # never prune the last Gaussian
        self._resize(keep.nonzero().squeeze(1), {k: torch.cat(v) for k, v in new.items()}, optimizer)

    def _resize(self, kept: Tensor, added: dict[str, Tensor], optimizer: torch.optim.Optimizer) -> None:
        """Keep Gaussians ``kept`` and append ``added``, with Adam's moments cut and extended (zeros for new ones).

        Each parameter becomes a new ``nn.Parameter`` put in the old one's place in the optimizer (as graphdeco
        does): changing a leaf's shape in place would leave autograd's cached gradient accumulator of the old
        shape behind."""
        for name in _PARAMS:
            old = getattr(self, name)
            new = torch.nn.Parameter(torch.cat([old.detach()[kept], added[name]]))
            for group in optimizer.param_groups:
                group["params"] = [new if q is old else q for q in group["params"]]
            state = optimizer.state.pop(old, None)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = torch.cat([state[key][kept], torch.zeros_like(added[name])])
                optimizer.state[new] = state
            setattr(self, name, new)
        count = len(kept) + len(added["means"])
        self.grad_sum = torch.zeros(count, device=self.means.device)
        self.grad_count = torch.zeros(count, device=self.means.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint of a densified run holds another count: take its shapes before loading its values.
        for name in (*_PARAMS, "grad_sum", "grad_count"):
            key = prefix + name
            if key in state_dict:
                t = getattr(self, name)
                if t.shape != state_dict[key].shape:
                    t.data = torch.empty(state_dict[key].shape, dtype=t.dtype, device=t.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
