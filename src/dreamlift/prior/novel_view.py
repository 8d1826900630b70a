"""The view-conditioned prior: Zero-1-to-3's recipe (Liu et al. 2023) at the built-in prior's scale.

Given a reference view of an object and the camera of a target view relative to it, the network
denoises the target view:

    model(x_t (B, 3, R, R), t (B,), ViewCondition) -> eps (B, 3, R, R)

- The reference image (B, 3, R, R) is concatenated with x_t as 3 more input channels, as
  Zero-1-to-3 concatenates the reference latent with the noisy target.
- The relative camera (B, 4) = [delta elevation (radians), sin delta azimuth, cos delta azimuth,
  delta distance (object radii)] (Zero-1-to-3's pose vector, with elevation for its polar angle),
  a global embedding of the reference (B, 256) from a small convolutional encoder (Zero-1-to-3's
  CLIP image embedding, learnt here) and the pooled text embedding are concatenated and enter
  through the class embedding, which scales and shifts every residual block; the text's token
  states feed the cross-attention. (Without the global embedding, 1,100 steps taught the network
  next to nothing of the reference: the concatenated view is not aligned with the target, so the
  first convolution sees no local signal in it.)
  The text is optional: training drops it often, and "no text" is the null caption.
- Classifier-free guidance is over the reference: the null condition has no reference (zeros) and
  the null caption, and keeps the camera.

The U-Net is the text prior's (``dreamlift.prior.unet``), and a run starts from the shipped text
prior's weights with the new input weights at zero (``warm_start_state``), so that step 0 draws
what the text prior draws for the caption and training only has to learn to use the reference and
the camera. Training data are the world's view sets (``make-dataset --views-per-object G``), with
the objects of ``HELD_OUT_OBJECTS`` left out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import DreamliftError, atomic_write, option
from ..diffusion import NoiseSchedule, guided_denoiser, sample
from ..interrupt import StopRequest
from .text_encoder import EMBED_DIM, TextEmbedding, TextEncoder
from .train import TrainingTask, TrainPriorConfig, _stop_in_setup, run_training
from .unet import UNetConfig, build_unet

__all__ = ["CAMERA_DIM", "relative_camera", "ViewCondition", "NovelViewUNet", "warm_start_state",
           "ViewSetData", "load_view_sets", "TrainNovelViewConfig", "NovelViewTask", "train_novel_view",
           "sample_novel_views", "camera_for", "NovelViewPrior"]

CAMERA_DIM = 4
REFERENCE_DIM = 256  # the reference encoder's global embedding


def relative_camera(ref_azimuth: Tensor, ref_elevation: Tensor, ref_distance: Tensor, azimuth: Tensor,
                    elevation: Tensor, distance: Tensor) -> Tensor:
    """The pose of target cameras relative to reference cameras, all (B,) in degrees and object radii.

    Returns (B, 4): [elevation - ref_elevation in radians, sin and cos of (azimuth - ref_azimuth),
    distance - ref_distance]. Azimuth follows ``dreamlift.render.camera``: 0 = front (+z), increasing
    towards +x; so a target 90 degrees further round has sin = 1, cos = 0.
    """
    d_az = torch.deg2rad(torch.as_tensor(azimuth, dtype=torch.float32) - torch.as_tensor(ref_azimuth, dtype=torch.float32))
    d_el = torch.deg2rad(torch.as_tensor(elevation, dtype=torch.float32) - torch.as_tensor(ref_elevation, dtype=torch.float32))
    d_dist = torch.as_tensor(distance, dtype=torch.float32) - torch.as_tensor(ref_distance, dtype=torch.float32)
    return torch.stack([d_el, torch.sin(d_az), torch.cos(d_az), d_dist], dim=-1)


@dataclass
class ViewCondition:
    """What the view-conditioned prior is conditioned on; every field (B, ...)."""

    reference: Tensor  # (B, 3, R, R) the reference view in [-1, 1]; zeros: no reference
    camera: Tensor  # (B, 4) the target camera relative to the reference (relative_camera)
    tokens: Tensor  # (B, L, 384) the caption's token states (the null caption: no text)
    mask: Tensor  # (B, L)
    pooled: Tensor  # (B, 384)

    @staticmethod
    def make(reference: Tensor, camera: Tensor, text: TextEmbedding) -> "ViewCondition":
        b = reference.shape[0]
        if text.tokens.shape[0] == 1 and b > 1:
            text = TextEmbedding(text.tokens.expand(b, -1, -1), text.mask.expand(b, -1), text.pooled.expand(b, -1))
        return ViewCondition(reference, camera, text.tokens, text.mask, text.pooled)

    def null(self, null_text: TextEmbedding) -> "ViewCondition":
        """The unconditional input for guidance: no reference, the null caption, the same cameras."""
        return ViewCondition.make(torch.zeros_like(self.reference), self.camera, null_text.to(self.camera.device))

    def to(self, device: torch.device | str) -> "ViewCondition":
        return ViewCondition(*(getattr(self, f).to(device) for f in ("reference", "camera", "tokens", "mask", "pooled")))


class NovelViewUNet(nn.Module):
    """model(x_t (B, 3, R, R), t (B,) long, cond: ViewCondition) -> prediction (B, 3, R, R)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.unet = build_unet(cfg, in_channels=6, class_dim=CAMERA_DIM + REFERENCE_DIM + EMBED_DIM)
        side = cfg.resolution // 8
        self.reference_encoder = nn.Sequential(  # (B, 3, R, R) -> (B, 256): the reference as a whole
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(128 * side * side, REFERENCE_DIM),
        )

    def forward(self, x: Tensor, t: Tensor, cond: ViewCondition) -> Tensor:
        ref = cond.reference.to(x.dtype)
        labels = torch.cat([cond.camera, self.reference_encoder(ref), cond.pooled], dim=1)
        return self.unet(torch.cat([x, ref], dim=1), t, encoder_hidden_states=cond.tokens,
                         encoder_attention_mask=cond.mask, class_labels=labels, return_dict=False)[0]


def warm_start_state(text_prior_state: dict[str, Tensor], model: NovelViewUNet) -> dict[str, Tensor]:
    """The novel-view U-Net's state from a text prior's (same UNetConfig): every tensor copied, the input
    convolution's reference channels and the class embedding's camera and reference columns set to zero, so
    that the network starts out as the text prior, blind to reference and camera; the reference encoder
    keeps its random initialisation."""
    state = model.state_dict()
    own = {k for k in state if k.startswith("reference_encoder.")}
    if set(state) - own != set(text_prior_state):
        raise DreamliftError("the text prior's U-Net does not match the novel-view U-Net asked for")
    out = {k: state[k] for k in own}
    for k, v in text_prior_state.items():
        v = v.float()
        if k == "unet.conv_in.weight":  # (C, 3, 3, 3) -> (C, 6, 3, 3)
            v = torch.cat([v, torch.zeros_like(v)], dim=1)
        elif k == "unet.class_embedding.linear_1.weight":  # (D, 384) -> (D, 4 + 256 + 384)
            v = torch.cat([torch.zeros(v.shape[0], CAMERA_DIM + REFERENCE_DIM), v], dim=1)
        if v.shape != state[k].shape:
            raise DreamliftError(f"the text prior's {k} has shape {list(v.shape)}, expected {list(state[k].shape)}")
        out[k] = v
    return out


# --- training data: view sets --------------------------------------------------------------------------------------


@dataclass
class ViewSetData:
    """S view sets of G views each: images (S, G, R, R, 3) uint8; category, colour (S,); cameras (S, G)."""

    images: Tensor
    category: Tensor
    colour: Tensor
    azimuth: Tensor
    elevation: Tensor
    distance: Tensor
    names: dict[str, list[str]]

    def __len__(self) -> int:
        return self.images.shape[0]

    def pairs(self, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For sets ``idx`` (B,): two different views of each, drawn with ``g``. Returns the reference and
        target images (B, 3, R, R) in [-1, 1], the relative cameras (B, 4) and the target view index (B,)."""
        G = self.images.shape[1]
        ref = torch.randint(0, G, idx.shape, generator=g)
        tgt = (ref + torch.randint(1, G, idx.shape, generator=g)) % G  # never the reference itself
        as_float = lambda v: self.images[idx, v].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
        cam = relative_camera(self.azimuth[idx, ref], self.elevation[idx, ref], self.distance[idx, ref],
                              self.azimuth[idx, tgt], self.elevation[idx, tgt], self.distance[idx, tgt])
        return as_float(ref), as_float(tgt), cam, tgt


def load_view_sets(path: Path, resolution: int) -> ViewSetData:
    """A world dataset of view sets (``make-dataset --views-per-object G``, G >= 2), at ``resolution``."""
    import json

    from ..world.dataset import load_dataset
    from .data import resize_uint8

    meta_file = Path(path) / "meta.json"
    if not meta_file.is_file():
        raise DreamliftError(f"{path} is not a world dataset (no meta.json); make one with 'dreamlift make-dataset "
                             "--views-per-object 4 --exclude-held-out'")
    G = int(json.loads(meta_file.read_text()).get("config", {}).get("views_per_object", 1))
    if G < 2:
        raise DreamliftError(f"{path} holds single views; the novel-view prior needs view sets: make them with "
                             "'dreamlift make-dataset --views-per-object 4 --exclude-held-out'")
    try:
        ds = load_dataset(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DreamliftError(f"cannot read the world dataset in {path}: {exc}") from exc
    S = len(ds.category) // G
    sets = lambda a, dtype: torch.from_numpy(a.astype(dtype)).reshape(S, G)  # noqa: E731
    images = resize_uint8(ds.images, resolution).reshape(S, G, resolution, resolution, 3)
    from ..world import CATEGORIES, COLOUR_NAMES

    return ViewSetData(images, sets(ds.category, "int64")[:, 0], sets(ds.colour, "int64")[:, 0],
                       sets(ds.azimuth, "float32"), sets(ds.elevation, "float32"), sets(ds.distance, "float32"),
                       {"categories": list(ds.meta.get("categories", CATEGORIES)),
                        "colours": list(ds.meta.get("colours", COLOUR_NAMES))})


# --- training ------------------------------------------------------------------------------------------------------


@dataclass
class TrainNovelViewConfig(TrainPriorConfig):
    """Settings of ``dreamlift train-novel-view`` (the text prior's, with these differences)."""

    # the camera-aware text prior's options: this prior has its own (relative) camera input
    CLI_SKIP = ("camera_drop_prob", "unet.camera")

    data: Path = option(Path("data/views"), "a world dataset of view sets (make-dataset --views-per-object 4 "
                                            "--exclude-held-out)")
    out: Path = option(Path("runs/novel-view"), "run folder: checkpoint, log, samples (resumed if it has a "
                                                "checkpoint)")
    init_from: Path | None = option(None, "warm-start from this text prior's weights folder (default: the shipped "
                                          "prior); ignored when resuming")
    fresh: bool = option(False, "start from random weights instead of a text prior")
    continue_from: Path | None = option(None, "continue training exported novel-view weights (a folder with "
                                              "novel_view.json): EMA weights, step count, new optimiser")
    cond_drop_prob: float = option(0.1, "probability of dropping the reference (and the caption) for "
                                        "classifier-free guidance")
    text_drop_prob: float = option(0.5, "probability of dropping only the caption (the prior also works "
                                        "without text)")
    view_prob: float = option(0.0, "probability that a caption ends in the target's view word")
    high_noise_weight: float = option(20.0, "extra loss weight on noisy timesteps, where the reference decides the "
                                            "image: the eps weight gains min(1 / SNR, this) (0: min-SNR only)")
    sample_every: int = option(1000, "steps between preview grids: reference, drawn target, true target "
                                     "(0: never)")
    unet: UNetConfig = field(default_factory=UNetConfig)

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.text_drop_prob <= 1:
            raise DreamliftError(f"--text-drop-prob must lie in [0, 1], got {self.text_drop_prob}")
        if self.unet.camera:
            raise DreamliftError("the view-conditioned prior takes the relative camera itself; unet.camera is for "
                                 "train-prior")
        if self.continue_from is not None and not (self.continue_from / "novel_view.json").is_file():
            raise DreamliftError(f"--continue-from {self.continue_from} has no novel_view.json")


class NovelViewTask(TrainingTask):
    """``run_training``'s task for the view-conditioned prior (see the module docstring)."""

    name = "train-novel-view"
    data_source = "world"

    def __init__(self, cfg: TrainNovelViewConfig, encoder: TextEncoder | None = None):
        self.cfg, self.encoder = cfg, encoder

    def setup(self, device: torch.device, resumed: bool, stop: StopRequest) -> None:
        cfg = self.cfg
        self.encoder = self.encoder or TextEncoder(device=device)
        self.warm, self.start = None, 0
        if not resumed and cfg.continue_from is not None:
            exported = NovelViewPrior(cfg.continue_from, encoder=self.encoder)
            if exported.unet_config.to_dict() != cfg.unet.to_dict():
                raise DreamliftError(f"--continue-from {cfg.continue_from} has a different U-Net than the one asked for")
            self.warm, self.start = exported.model.state_dict(), int(exported.meta.get("train_steps", 0))
        elif not resumed and not cfg.fresh:
            from .model import BuiltinPrior

            text_prior = BuiltinPrior(cfg.init_from, encoder=self.encoder)
            if text_prior.unet_config.to_dict() != cfg.unet.to_dict():
                where = cfg.init_from or "the shipped prior"
                raise DreamliftError(f"{where} has a different U-Net than the one asked for; pass its settings or "
                                     "--fresh")
            self.warm = warm_start_state(text_prior.model.state_dict(), self.build())
        _stop_in_setup(stop, "loading the text prior")
        self.data = load_view_sets(cfg.data, cfg.unet.resolution)
        self.null = self.encoder.unconditional(1)

    def __len__(self) -> int:
        return len(self.data)

    def build(self) -> nn.Module:
        return NovelViewUNet(self.cfg.unet)

    def warm_start(self) -> dict | None:
        return self.warm

    def start_step(self) -> int:
        return self.start

    def t_weights(self, schedule: NoiseSchedule, weights: Tensor | None) -> Tensor | None:
        """min-SNR-gamma weights plus min(1 / SNR, high_noise_weight): the eps loss at t, converted to the
        x0 loss it implies (1 / SNR times it), capped. At the noisy end the eps error is tiny whatever the
        condition (x_t is nearly eps), so with min-SNR weights alone 1,100 steps changed the loss there by
        about 1e-4 with and without the reference; this weight is what makes the reference worth learning."""
        if self.cfg.high_noise_weight <= 0:
            return weights
        extra = torch.clamp(1.0 / schedule.snr(), max=self.cfg.high_noise_weight)
        return extra if weights is None else weights + extra

    def _captions(self, idx: Tensor, tgt: Tensor, g: torch.Generator) -> list[str]:
        from ..world.captions import random_caption

        d = self.data
        return [random_caption(d.names["categories"][int(d.category[i])], d.names["colours"][int(d.colour[i])],
                               float(d.azimuth[i, v]), float(d.elevation[i, v]), g, self.cfg.view_prob)
                for i, v in zip(idx.tolist(), tgt.tolist())]

    def batch(self, idx: Tensor, g: torch.Generator, device: torch.device):
        cfg = self.cfg
        ref, x0, cam, tgt = self.data.pairs(idx, g)
        text = self.encoder.encode(self._captions(idx, tgt, g))
        b = idx.shape[0]
        drop_text = (torch.rand(b, generator=g) < cfg.text_drop_prob)[:, None]  # (B, 1)
        null = self.null.tokens.expand_as(text.tokens), self.null.mask.expand_as(text.mask)
        tokens = torch.where(drop_text[:, :, None], null[0], text.tokens)
        mask = torch.where(drop_text, null[1], text.mask)
        pooled = torch.where(drop_text, self.null.pooled.expand_as(text.pooled), text.pooled)
        cond = ViewCondition(ref, cam, tokens, mask, pooled).to(device)
        return x0.to(device), cond, cond.null(self.null), cfg.cond_drop_prob

    def preview(self, ema: nn.Module, path: Path, schedule: NoiseSchedule, device: torch.device) -> None:
        from .sampling import image_grid

        n = min(8, len(self.data))
        g = torch.Generator().manual_seed(0)
        idx = torch.arange(n)
        ref, tgt, cam, _ = self.data.pairs(idx, g)
        drawn = sample_novel_views(ema, schedule, ref, cam, self.null, self.null, prediction=self.cfg.unet.prediction,
                                   steps=50, guidance_scale=3.0, seed=0, device=device)
        rows = torch.stack([(ref + 1) / 2, drawn, (tgt + 1) / 2], dim=1).reshape(-1, *ref.shape[1:])
        buf = io.BytesIO()
        image_grid(rows, rows=3).save(buf, format="PNG")
        atomic_write(path, buf.getvalue())


def train_novel_view(cfg: TrainNovelViewConfig, progress: bool = True, encoder: TextEncoder | None = None,
                     stop_after: int | None = None) -> dict:
    """Train (or resume) a novel-view prior run; as :func:`dreamlift.prior.train.train_prior`."""
    return run_training(cfg, NovelViewTask(cfg, encoder), progress, stop_after)


@torch.no_grad()
def sample_novel_views(model: nn.Module, schedule: NoiseSchedule, reference: Tensor, camera: Tensor,
                       text: TextEmbedding, null_text: TextEmbedding, *, prediction: str = "eps", steps: int = 50,
                       guidance_scale: float = 3.0, seed: int = 0, device: torch.device | str = "cpu",
                       method: str = "ddim") -> Tensor:
    """Draw the target views of ``reference`` (B, 3, R, R) in [-1, 1] at relative ``camera`` (B, 4), with
    classifier-free guidance over the reference (``guidance_scale`` s, dreamlift's one convention); ``text``
    is one caption (1, ...) or one per view (B, ...). The generator seeded with ``seed`` draws x_T and every
    step's noise. Returns (B, 3, R, R) in [0, 1]."""
    device = torch.device(device)
    cond = ViewCondition.make(reference, camera, text).to(device)
    denoise = guided_denoiser(model, cond, cond.null(null_text), guidance_scale)
    g = torch.Generator().manual_seed(seed)
    shape = tuple(reference.shape)
    x_T = torch.randn(shape, generator=g)
    x = sample(denoise, shape, schedule, method=method, steps=steps, prediction=prediction, generator=g,
               device=device, x_T=x_T, clip_x0=1.0)
    return ((x.clamp(-1, 1) + 1) / 2).cpu()


def camera_for(azimuth: float, elevation: float, distance: float = 0.0) -> Tensor:
    """(1, 4) relative camera of a target ``azimuth`` / ``elevation`` degrees round from the reference and
    ``distance`` object radii further away."""
    z = torch.zeros(1)
    return relative_camera(z, z, z, torch.tensor([float(azimuth)]), torch.tensor([float(elevation)]),
                           torch.tensor([float(distance)]))




# --- the shipped weights -------------------------------------------------------------------------------------------


MAKE_WEIGHTS = "train one with 'dreamlift train-novel-view' and export it with 'dreamlift export-prior'"


def _meta_keys() -> dict:
    from .model import PRIOR_KEYS, _one_of

    return dict(PRIOR_KEYS, format=(True, _one_of("dreamlift-novel-view/1"), '"dreamlift-novel-view/1"'))


def novel_view_meta(path: str | Path | None = None) -> dict:
    """The checked novel_view.json of an exported view-conditioned prior (default: the shipped one), read without
    loading its weights: for commands that check their inputs before any work."""
    from .model import SHIPPED_WEIGHTS, read_meta

    folder = Path(path) if path is not None else SHIPPED_WEIGHTS
    if not (folder / "novel_view.json").is_file() or not (folder / "novel_view.safetensors").is_file():
        raise DreamliftError(f"no novel-view prior weights in {folder} (need novel_view.json and "
                             f"novel_view.safetensors); {MAKE_WEIGHTS}")
    return read_meta(folder / "novel_view.json", _meta_keys())


class NovelViewPrior:
    """The view-conditioned prior as exported (``novel_view.json`` + ``novel_view.safetensors``), loaded offline.

    Args:
        path: a folder holding the two files (default: the weights shipped inside the package).
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu",
                 encoder: TextEncoder | None = None):
        from .model import load_exported

        load_exported(self, path, "novel_view", "novel-view prior", _meta_keys(), NovelViewUNet, device, MAKE_WEIGHTS)
        self.encoder = encoder or TextEncoder.shared(self.device)

    def text(self, prompt: str | None) -> TextEmbedding:
        """The caption's embedding, or the null caption for None / an empty prompt."""
        if prompt is None or not prompt.strip():
            return self.encoder.unconditional(1).to(self.device)
        return self.encoder.encode([prompt]).to(self.device)

    def sample(self, reference: Tensor, camera: Tensor, prompt: str | None = None, steps: int = 50,
               guidance_scale: float = 3.0, seed: int = 0) -> Tensor:
        """Views (B, 3, R, R) in [0, 1] of ``reference`` (B, 3, R, R) in [0, 1] from relative ``camera`` (B, 4)."""
        null = self.encoder.unconditional(1).to(self.device)
        return sample_novel_views(self.model, self.schedule, reference * 2 - 1, camera, self.text(prompt), null,
                                  prediction=self.prediction, steps=steps, guidance_scale=guidance_scale, seed=seed,
                                  device=self.device)
