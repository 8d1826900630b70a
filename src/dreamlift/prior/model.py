"""The built-in prior as shipped: fp16 EMA weights + prior.json, loaded offline.

``BuiltinPrior()`` loads the weights inside the package (``dreamlift/prior/weights``);
``BuiltinPrior(path)`` loads an exported folder (see ``train.export_prior``). prior.json is
checked key by key, and prior.safetensors against the sha256 that prior.json records (exports
older than the checksum load unchecked); a bad file is a one-line DreamliftError naming it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ..config import DreamliftError
from ..diffusion import NoiseSchedule, convert
from .text_encoder import TextEmbedding, TextEncoder
from .unet import PriorUNet, UNetConfig

if TYPE_CHECKING:
    from .vocabulary import Rewrite

__all__ = ["BuiltinPrior", "SHIPPED_WEIGHTS", "PRIOR_KEYS", "read_meta", "load_weights", "build_matching", "sha256_hex"]

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights"

# --- reading a weights folder's json and safetensors (shared with dreamlift.evaluate.classifier) --------------
#
# A key spec: key -> (required, check(value) -> bool, what the value must be). Nested objects ("unet") have a
# dict of specs instead of a check. Files are read as JSON and safetensors only: loading never runs code.


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(limit: int) -> Callable[[Any], bool]:
    return lambda v: _int(v) and 0 < v <= limit


def _list_of(check: Callable[[Any], bool], empty: bool = False) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and (empty or len(v) > 0) and all(check(x) for x in v)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in choices


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None


SHA256_KEY = (False, _is_sha256, "a sha256 of the weights file as 64 lowercase hex digits")

PRIOR_KEYS: dict[str, Any] = {
    "format": (False, _one_of("dreamlift-prior/1"), '"dreamlift-prior/1"'),
    "unet": (True, {
        "resolution": (True, _positive_int(4096), "an integer in [1, 4096]"),
        "channels": (True, _list_of(_positive_int(8192)), "a non-empty list of integers in [1, 8192]"),
        "attention_levels": (True, _list_of(_int, empty=True), "a list of integers"),
        "self_attention": (False, lambda v: isinstance(v, bool), "true or false"),
        "mid_block": (False, lambda v: isinstance(v, bool), "true or false"),
        "layers_per_block": (True, _positive_int(64), "an integer in [1, 64]"),
        "head_dim": (True, _positive_int(8192), "an integer in [1, 8192]"),
        "norm_groups": (True, _positive_int(8192), "an integer in [1, 8192]"),
        "prediction": (True, _one_of("eps", "x0", "v"), 'one of "eps", "x0", "v"'),
        "camera": (False, lambda v: isinstance(v, bool), "true or false"),
    }, "an object"),
    "schedule": (True, _one_of("linear", "cosine"), 'one of "linear", "cosine"'),
    "num_train_timesteps": (True, _positive_int(100_000), "an integer in [1, 100000]"),
    "captions": (False, lambda v: isinstance(v, str), "a string"),
    "sha256": SHA256_KEY,
}

_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "an object", type(None): "null"}


def _check_keys(meta_file: Path, obj: dict, spec: dict[str, Any], prefix: str = "") -> None:
    for key, (required, check, what) in spec.items():
        name = prefix + key
        if key not in obj:
            if required:
                raise DreamliftError(f"{meta_file} is missing the key \"{name}\"; re-export the weights")
            continue
        value = obj[key]
        ok = isinstance(value, dict) if isinstance(check, dict) else check(value)
        if not ok:
            got = "an empty list" if value == [] else _JSON_TYPES.get(type(value), type(value).__name__)
            shown = f" {value!r}" if isinstance(value, (int, float, str)) and len(repr(value)) <= 40 else ""
            raise DreamliftError(f"{meta_file}: the key \"{name}\" must be {what}, got {got}{shown}")
        if isinstance(check, dict):
            _check_keys(meta_file, value, check, prefix=f"{name}.")


def read_meta(meta_file: Path, spec: dict[str, Any]) -> dict:
    """The JSON object in ``meta_file``, checked against ``spec`` (see PRIOR_KEYS); a one-line DreamliftError
    naming the file (and the key) when it is unreadable, not JSON, not an object, or has a missing or
    wrong-typed key."""
    try:
        meta = json.loads(Path(meta_file).read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DreamliftError(f"cannot read {meta_file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DreamliftError(f"{meta_file} is corrupt: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DreamliftError(f"{meta_file} is corrupt: not JSON ({exc.msg} at line {exc.lineno} column "
                             f"{exc.colno})") from exc
    except (ValueError, RecursionError) as exc:
        raise DreamliftError(f"{meta_file} is corrupt: not JSON") from exc
    if not isinstance(meta, dict):
        raise DreamliftError(f"{meta_file} is corrupt: it holds {_JSON_TYPES.get(type(meta), 'a value')}, "
                             "not a JSON object")
    _check_keys(meta_file, meta, spec)
    return meta


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 lowercase hex digits (what prior.json / evaluator.json record)."""
    return hashlib.sha256(data).hexdigest()


def load_weights(weights_file: Path, meta: dict, meta_file: Path) -> dict[str, Tensor]:
    """The tensors of a .safetensors file, after checking it against the sha256 that ``meta`` records.

    Older exports without a "sha256" key load unchecked.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = Path(weights_file).read_bytes()
    except OSError as exc:
        raise DreamliftError(f"cannot read {weights_file}: {exc.strerror or exc}") from exc
    expected = meta.get("sha256")
    if expected is not None and sha256_hex(data) != expected:
        raise DreamliftError(f"{weights_file} is corrupt: its sha256 differs from the one recorded in {meta_file} "
                             "(damaged or replaced; export or copy it again)")
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DreamliftError(f"{weights_file} is corrupt or unreadable: {reason}") from exc


def build_matching(build: Callable[[], torch.nn.Module], weights: dict[str, Tensor], weights_file: Path,
                   meta_file: Path) -> torch.nn.Module:
    """``build()`` once without memory (on the meta device) to check that ``weights`` fit its state dict
    key for key and shape for shape, then for real: a json that does not describe its weights (or asks
    for an absurd network) is refused before anything large is allocated."""
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DreamliftError(f"{meta_file} describes a network that cannot be built: {reason}") from exc
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if shapes != got:
        missing, unexpected = sorted(shapes.keys() - got.keys()), sorted(got.keys() - shapes.keys())
        wrong = sorted(k for k in shapes.keys() & got.keys() if shapes[k] != got[k])
        detail = (f"{len(missing)} missing tensor(s), e.g. {missing[0]}" if missing else
                  f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}" if unexpected else
                  f"{wrong[0]} has shape {list(got[wrong[0]])}, expected {list(shapes[wrong[0]])}")
        raise DreamliftError(f"{weights_file} does not match {meta_file}: {detail}")
    return build()


def load_exported(obj, path: str | Path | None, stem: str, what: str, keys: dict, network,
                  device: torch.device | str, how: str) -> None:
    """Load an exported prior (``STEM.json`` + ``STEM.safetensors`` in ``path``, default the shipped weights) onto
    ``obj``: sets meta, unet_config, model (``network(unet_config)`` with the weights, frozen, on ``device``),
    device, schedule, prediction and resolution. Every problem is a one-line DreamliftError naming ``what`` (e.g.
    "prior"); ``how`` says how to make the files."""
    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    meta_file, weights_file = path / f"{stem}.json", path / f"{stem}.safetensors"
    if not meta_file.is_file() or not weights_file.is_file():
        raise DreamliftError(f"no {what} weights in {path} (need {meta_file.name} and "
                             f"{weights_file.name}); {how}")
    obj.meta = read_meta(meta_file, keys)
    try:
        obj.unet_config = UNetConfig.from_dict(obj.meta["unet"])
        obj.unet_config.validate()
    except ValueError as exc:
        raise DreamliftError(f"{meta_file}: bad \"unet\": {exc}") from exc
    weights = load_weights(weights_file, obj.meta, meta_file)
    obj.device = torch.device(device)
    obj.model = build_matching(lambda: network(obj.unet_config), weights, weights_file, meta_file)
    obj.model.load_state_dict({k: v.float() for k, v in weights.items()})
    obj.model.eval().requires_grad_(False).to(obj.device)
    obj.schedule = NoiseSchedule.named(obj.meta["schedule"], obj.meta["num_train_timesteps"])
    obj.prediction = obj.unet_config.prediction
    obj.resolution = obj.unet_config.resolution


class BuiltinPrior:
    """The prior's denoiser, schedule and text encoder, ready to sample or to guide SDS.

    Args:
        path: a folder with prior.json and prior.safetensors (default: the shipped weights).
        encoder: a loaded TextEncoder to share; loaded if None.
        rewrite_unknown_words: condition on the nearest world caption when an in-world prompt has words
            that no training caption used (``dreamlift.prior.vocabulary``); False: the prompt as typed.
            Only priors trained on world captions (prior.json "captions": "world") are rewritten for:
            the vocabulary of one trained on a folder of captions is not known.
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu",
                 encoder: TextEncoder | None = None, rewrite_unknown_words: bool = True):
        load_exported(self, path, "prior", "prior", PRIOR_KEYS, PriorUNet, device,
                      "train one with 'dreamlift train-prior' and 'dreamlift export-prior'")
        self.encoder = encoder or TextEncoder.shared(self.device)
        self.rewrite_unknown_words = rewrite_unknown_words and self.meta.get("captions") == "world"
        self._rewriter = None

    def rewrite(self, prompt: str) -> "Rewrite":
        """What the prior is conditioned on for ``prompt`` (unchanged when rewriting is off)."""
        from .vocabulary import PromptRewriter, Rewrite

        if not self.rewrite_unknown_words:
            return Rewrite(prompt, prompt, ())
        self._rewriter = self._rewriter or PromptRewriter(self.encoder)
        return self._rewriter.rewrite(prompt)

    def encode(self, prompts: list[str]) -> TextEmbedding:
        """The conditioning for prompts: each one rewritten (see ``rewrite``), then encoded."""
        return self.encoder.encode([self.rewrite(p).text for p in prompts]).to(self.device)

    def encode_checked(self, prompts: list[str]) -> TextEmbedding:
        """Encode prompts (rewritten, as ``encode``) after rejecting empty ones."""
        for p in prompts:
            if not p or not p.strip():
                raise DreamliftError("the prompt is empty")
        return self.encode(prompts)

    @torch.no_grad()
    def predict_eps(self, x_t: Tensor, t: Tensor, text: TextEmbedding) -> Tensor:
        """eps_hat(x_t, t, text) for images (B, 3, R, R) in [-1, 1], whatever the network predicts."""
        out = self.model(x_t, t, text)
        return convert(self.schedule, out, self.prediction, "eps", x_t, t)

    def sample(self, prompts: list[str], n_per_prompt: int = 1, steps: int = 50, guidance_scale: float = 3.0,
               seed: int = 0, method: str = "ddim", bf16: bool = False, eta: float = 0.0,
               cameras: Tensor | None = None) -> Tensor:
        """(len(prompts) * n, 3, R, R) images in [0, 1]; ``cameras`` (a camera-aware prior only): (len(prompts) or
        len(prompts) * n, 4) ``unet.camera_features``."""
        if cameras is not None and not self.unet_config.camera:
            raise DreamliftError("this prior does not take cameras (it was not trained with --unet-camera)")
        from .sampling import sample_images

        self.encode_checked(prompts)
        texts = [self.rewrite(p).text for p in prompts]
        return sample_images(self.model, self.encoder, self.schedule, texts, prediction=self.prediction,
                             resolution=self.resolution, n_per_prompt=n_per_prompt, steps=steps, method=method, eta=eta,
                             guidance_scale=guidance_scale, seed=seed, device=self.device, bf16=bf16,
                             cameras=cameras)
