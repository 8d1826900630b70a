"""Loading diffusers / transformers components offline, for the Stable Diffusion and DeepFloyd IF backends.

Offline policy
--------------
Every ``from_pretrained`` / ``load_config`` call passes ``local_files_only=True``: a model
is read from a local folder or from the Hugging Face cache, and nothing ever touches the
network (so a run can never hang on it). Setting the environment variable
``DREAMLIFT_ALLOW_DOWNLOAD=1`` lifts this and lets the hub client download missing files.

A model is named by a local folder in the diffusers pipeline layout (one subfolder per
component: ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or by a
hub id (``owner/name``) that is already in the cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..config import DreamliftError
from ..diffusion import NoiseSchedule, cosine_betas

__all__ = ["ALLOW_DOWNLOAD_ENV", "allow_download", "ModelSource", "schedule_from_config", "prediction_from_config",
           "default_dtype", "PromptCache", "first_line", "transformers_dtype", "diffusers_kwargs",
           "split_learned_variance", "channels_last", "Compiled"]

ALLOW_DOWNLOAD_ENV = "DREAMLIFT_ALLOW_DOWNLOAD"

# diffusers' prediction_type -> dreamlift.diffusion.targets' name for it.
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def allow_download() -> bool:
    """True only when DREAMLIFT_ALLOW_DOWNLOAD is set to 1/true/yes (default: offline)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (or its type name), joined with the next one when it
    only introduces a list ("Error(s) in loading state_dict for X:"), at most ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[0] if not (lines[0].endswith(":") and len(lines) > 1) else f"{lines[0]} {lines[1]}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def default_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    """``dtype`` if given, else float16 on CUDA and float32 elsewhere."""
    if dtype is not None:
        return dtype
    return torch.float16 if device.type == "cuda" else torch.float32


def transformers_dtype(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The ``from_pretrained`` keyword for a dtype: ``dtype`` in transformers >= 5, ``torch_dtype`` before."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}


def diffusers_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained`` keywords for a diffusers model: the dtype, and low_cpu_mem_usage only when
    accelerate (which it needs) is installed, so diffusers does not warn about falling back."""
    import importlib.util

    return {"torch_dtype": dtype, "low_cpu_mem_usage": importlib.util.find_spec("accelerate") is not None}


def split_learned_variance(out: Tensor, in_channels: int) -> Tensor:
    """The eps half of a U-Net output that also predicts a variance (2C channels, as DeepFloyd IF's)."""
    if out.shape[1] == 2 * in_channels:
        return out[:, :in_channels]
    return out


def _looks_like_path(model: str) -> bool:
    """A hub id is 'name' or 'owner/name'; anything else (absolute, ./, ~, backslashes, more slashes) is a path."""
    return os.path.isabs(model) or model.startswith((".", "~")) or "\\" in model or model.count("/") > 1


def _download_command() -> str:
    """The hub client's download command as installed: 'hf download' (huggingface_hub >= 1) or the older
    'huggingface-cli download'."""
    import shutil

    return "huggingface-cli download" if shutil.which("huggingface-cli") and not shutil.which("hf") else "hf download"


def _in_hub_cache(repo_id: str, filename: str, unknown: bool = True) -> bool:
    """Whether ``filename`` of the model ``repo_id`` is in the local Hugging Face cache (no network); ``unknown``
    when that cannot be told (an invalid repo id, an old huggingface_hub)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # an invalid repo id, or an old huggingface_hub: let the loaders report it
        return unknown


class ModelSource:
    """A model folder or hub id, checked up front, from which components are loaded offline.

    Args:
        model: a local folder in the diffusers pipeline layout, or a hub id in the cache.
        kind: the model family for messages ("Stable Diffusion", "DeepFloyd IF").
        subfolders: the component folders the backend needs.
        hint: extra advice appended to load failures (e.g. a license to accept).
    """

    def __init__(self, model: str | os.PathLike, kind: str, subfolders: tuple[str, ...], hint: str = ""):
        self.name = str(model)
        self.kind = kind
        self.subfolders = subfolders
        self.hint = hint
        self.local_files_only = not allow_download()
        path = Path(self.name).expanduser()
        is_path = path.exists() or _looks_like_path(self.name)
        layout = " ".join(f"{s}/" for s in subfolders)
        hub_id = "<hub id>" if is_path else self.name
        self._advice = (f"pass a local folder with {layout} or download it first with '{_download_command()} "
                        f"{hub_id}' (or set {ALLOW_DOWNLOAD_ENV}=1 to let dreamlift download it)")
        if path.exists():
            if not path.is_dir():
                raise DreamliftError(f"{kind} model {self.name!r} is a file, not a folder; {self._advice}")
            missing = [s for s in subfolders if not (path / s).is_dir()]
            if missing:
                raise DreamliftError(f"{self.name!r} is not a {kind} folder (missing "
                                     f"{', '.join(s + '/' for s in missing)}); {self._advice}")
            self.location, self.is_local = str(path), True
        elif is_path:
            raise DreamliftError(f"{kind} model folder {self.name!r} does not exist; {self._advice}")
        else:
            self.location, self.is_local = self.name, False
            if self.local_files_only and not _in_hub_cache(self.name, "scheduler/scheduler_config.json"):
                raise self.fail("it is not in the local Hugging Face cache")

    def fail(self, reason: str) -> DreamliftError:
        """The one-line error for a model that cannot be loaded."""
        how = "offline" if self.local_files_only else "(downloads allowed)"
        hint = f"; {self.hint}" if self.hint else ""
        return DreamliftError(f"cannot load {self.kind} model {self.name!r} {how}: {reason}; {self._advice}{hint}")

    def load(self, loader: Callable[..., Any], subfolder: str, **kwargs: Any) -> Any:
        """``loader(location, subfolder=..., local_files_only=..., **kwargs)``, with failures as DreamliftError."""
        try:
            return loader(self.location, subfolder=subfolder, local_files_only=self.local_files_only, **kwargs)
        except DreamliftError:
            raise
        except Exception as exc:  # hub, OSError, ValueError, JSON, safetensors...: all mean "not loadable"
            raise self.fail(f"{subfolder}/: {first_line(exc)}") from exc

    def check_model_type(self, cls: type, subfolder: str) -> None:
        """For a transformers model class: fail unless ``subfolder``'s config has ``cls``'s model_type.

        Reads only config.json, so a folder of the wrong model family fails before any weights load.
        """
        config_class = getattr(cls, "config_class", None)
        expected = getattr(config_class, "model_type", "") if config_class is not None else ""
        if not expected or not hasattr(config_class, "get_config_dict"):
            return
        config, _ = self.load(config_class.get_config_dict, subfolder)
        found = config.get("model_type")
        if found and found != expected and not (expected == "clip_text_model" and found == "clip"):
            raise self.fail(f"{subfolder}/ holds a {found!r} model, not {expected!r}")

    def load_model(self, cls: type, subfolder: str, **kwargs: Any) -> Any:
        """``cls.from_pretrained`` for a transformers or diffusers model, refusing partial loads.

        Both libraries only warn when checkpoint keys are missing and initialise those weights at
        random; a frozen guide with random layers would give silent nonsense, so any missing or
        mismatched key, or a transformers config of another model type, is a DreamliftError.
        """
        self.check_model_type(cls, subfolder)
        variant = self.fp16_variant(subfolder) if kwargs.get("torch_dtype", kwargs.get("dtype")) == torch.float16 \
            else None
        if variant:  # half the bytes to read (IF-I-XL: about 9.5 GB of T5 instead of 19)
            kwargs["variant"] = variant
        model, info = self.load(cls.from_pretrained, subfolder, output_loading_info=True, **kwargs)
        bad = [str(k) for key in ("missing_keys", "mismatched_keys") for k in (info.get(key) or [])]
        if bad:
            raise self.fail(f"{subfolder}/ does not hold complete {cls.__name__} weights "
                            f"({len(bad)} missing or mismatched, e.g. {sorted(bad)[0]})")
        return model

    def fp16_variant(self, subfolder: str) -> str | None:
        """"fp16" when ``subfolder`` has the fp16 variant of its weights (diffusers' and transformers' naming:
        ``<weights>.fp16.safetensors``, sharded ``<weights>.fp16-00001-of-00002.safetensors`` with
        ``<weights>.safetensors.index.fp16.json``), in the folder or in the hub cache; else None (the full-precision
        files, cast on load)."""
        names = [f"{stem}.{kind}" for stem in ("model", "diffusion_pytorch_model", "pytorch_model")
                 for kind in ("fp16.safetensors", "safetensors.index.fp16.json", "fp16.bin", "bin.index.fp16.json")]
        if self.is_local:
            folder = Path(self.location) / subfolder
            return "fp16" if any((folder / n).is_file() for n in names) else None
        return "fp16" if any(_in_hub_cache(self.location, f"{subfolder}/{n}", unknown=False) for n in names) else None

    def load_scheduler_config(self) -> dict[str, Any]:
        """The scheduler's config dict (any scheduler class: only betas and prediction_type are read)."""
        from diffusers import DDPMScheduler

        config = self.load(DDPMScheduler.load_config, "scheduler")
        if not isinstance(config, dict):
            raise self.fail("scheduler/: the config is not a JSON object")
        return dict(config)


def _betas(config: dict[str, Any]) -> Tensor:
    """float64 betas (T,) as diffusers' DDPMScheduler(**config) computes them (in float32)."""
    T = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    schedule = config.get("beta_schedule", "linear")
    if config.get("trained_betas") is not None:
        return torch.as_tensor(config["trained_betas"], dtype=torch.float64)
    if schedule == "linear":
        return torch.linspace(b0, b1, T, dtype=torch.float64)
    if schedule == "scaled_linear":  # latent diffusion: linear in sqrt(beta)
        return torch.linspace(b0 ** 0.5, b1 ** 0.5, T, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":  # improved DDPM's cosine schedule, s = 0.008, betas capped at 0.999
        return cosine_betas(T, s=0.008, max_beta=0.999)
    if schedule == "sigmoid":  # GeoDiff
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (b1 - b0) + b0
    raise DreamliftError(f"unsupported scheduler beta_schedule {schedule!r} "
                         "(supported: linear, scaled_linear, squaredcos_cap_v2, sigmoid, trained_betas)")


def schedule_from_config(config: dict[str, Any]) -> NoiseSchedule:
    """The training noise schedule described by a diffusers scheduler config.

    Matches ``DDPMScheduler.from_config(config).alphas_cumprod`` (computed here in float64).
    """
    if config.get("rescale_betas_zero_snr"):
        raise DreamliftError("zero-terminal-SNR schedulers (rescale_betas_zero_snr) are not supported: "
                             "abar_T = 0 has no eps-parameterised SDS gradient at t = T")
    try:
        return NoiseSchedule.from_betas(_betas(config))
    except ValueError as exc:
        raise DreamliftError(f"the scheduler config gives an invalid noise schedule: {exc}") from exc


def prediction_from_config(config: dict[str, Any]) -> str:
    """dreamlift's name ("eps", "v" or "x0") for the scheduler config's prediction_type."""
    kind = config.get("prediction_type", "epsilon")
    if kind not in _PREDICTIONS:
        raise DreamliftError(f"unsupported prediction_type {kind!r} (supported: {', '.join(_PREDICTIONS)})")
    return _PREDICTIONS[kind]


class PromptCache:
    """An LRU cache of per-prompt embeddings (1, L, D), filled in batches by ``encode``.

    Args:
        encode: prompts -> (n, L, D) embeddings for exactly those prompts, in order.
        size: the most prompts kept.
    """

    def __init__(self, encode: Callable[[list[str]], Tensor], size: int = 1024):
        self._encode = encode
        self.size = size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def __call__(self, prompts: list[str]) -> Tensor:
        """(len(prompts), L, D): the embedding of each prompt, computed once per distinct prompt."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a string")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            with torch.no_grad():
                enc = self._encode(missing)
            for i, p in enumerate(missing):
                self._cache[p] = enc[i : i + 1].detach()
        rows = []
        for p in prompts:
            self._cache.move_to_end(p)
            rows.append(self._cache[p])
        out = torch.cat(rows)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return out

    def __len__(self) -> int:
        return len(self._cache)


def channels_last(*modules: torch.nn.Module) -> None:
    """Store the convolution weights of ``modules`` channels-last (NHWC) on CUDA, where fp16 convolutions run on the
    tensor cores without layout transposes; elsewhere leave them as they are."""
    for module in modules:
        if next(module.parameters()).device.type == "cuda":
            module.to(memory_format=torch.channels_last)


class Compiled:
    """A module's forward through ``torch.compile``: ``Compiled(module)(*args)``.

    Compilation happens at the first call. If it fails there (no C++ compiler or Triton for this device, an
    operation the compiler cannot trace), the module runs eagerly from then on, with one warning: compiling is a
    speed-up and never the reason a run fails. ``module`` stays the plain module (its parameters, its config).
    """

    def __init__(self, module: torch.nn.Module, name: str = "the denoiser"):
        self.module, self.name = module, name
        self._call, self.compiled, self._tried = torch.compile(module, dynamic=False), True, False

    def __call__(self, *args, **kwargs):
        if self._tried:
            return self._call(*args, **kwargs)
        try:
            out = self._call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (any compiler failure falls back to eager)
            import warnings

            warnings.warn(f"torch.compile of {self.name} failed ({first_line(exc, 200)}); running it without",
                          stacklevel=2)
            self._call, self.compiled = self.module, False
            out = self._call(*args, **kwargs)
        self._tried = True
        return out
