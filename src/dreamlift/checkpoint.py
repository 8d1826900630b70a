"""Checkpoints that cannot run code: tensors in safetensors, everything else as JSON in its header.

A pickle (``torch.save``) can name any Python callable and ``torch.load(weights_only=False)``
calls it, so a shared ``checkpoint.pt`` could run ``os.system`` on load. A safetensors file is
a JSON header and raw tensor bytes, nothing else. A run's state is a nested structure of dicts,
lists, tuples, tensors and plain values (an optimizer's state dict has int keys and tuples):
:func:`pack` replaces each tensor by a reference and encodes the rest as JSON, stored as the
header's metadata; :func:`unpack` rebuilds the same structure bit for bit (floats round-trip
exactly through ``repr``; NaN and infinities are JSON extensions Python reads back).

    save_state(path, {"step": 3, "field": model.state_dict(), "rng": g.get_state()})
    state = load_state(path)    # the same structure; DreamliftError on a foreign or corrupt file
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import DreamliftError, atomic_write

__all__ = ["FORMAT", "pack", "unpack", "save_state", "load_state", "read_state_header"]

FORMAT = "dreamlift-state/1"
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


def pack(obj: Any, tensors: dict[str, Tensor] | None = None, path: str = "") -> tuple[Any, dict[str, Tensor]]:
    """(nested state) -> (JSON-ready structure, {name: tensor}). Dicts with non-str keys keep their key types."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, Tensor):
        name = path or "tensor"
        tensors[name] = obj.detach().cpu().contiguous()
        return {_TENSOR: name}, tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) and k not in (_TENSOR, _TUPLE, _DICT) for k in obj):
            return {k: pack(v, tensors, f"{path}.{k}" if path else k)[0] for k, v in obj.items()}, tensors
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"cannot store a dict with keys {sorted(map(repr, obj))[:3]} at {path!r}")
        return {_DICT: [[k, pack(v, tensors, f"{path}.{k}")[0]] for k, v in obj.items()]}, tensors
    if isinstance(obj, (list, tuple)):
        items = [pack(v, tensors, f"{path}.{i}")[0] for i, v in enumerate(obj)]
        return ({_TUPLE: items} if isinstance(obj, tuple) else items), tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"cannot store a {type(obj).__name__} at {path!r} in a checkpoint")


def unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(unpack(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_DICT}:
            return {k: unpack(v, tensors) for k, v in obj[_DICT]}
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


def save_state(path: Path, state: dict) -> None:
    """Write ``state`` atomically as one safetensors file (a crash leaves the old file or the new one)."""
    from safetensors.torch import save

    structure, tensors = pack(state)
    meta = {"format": FORMAT, "state": json.dumps(structure)}
    atomic_write(Path(path), save(tensors, metadata=meta))


def read_state_header(path: Path) -> dict:
    """The JSON part of a state file (no tensor data is read): the structure with tensor references."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000:
                raise ValueError("no safetensors header")
            header = json.loads(fh.read(size))
        meta = header.get("__metadata__") or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
        structure = json.loads(meta["state"])
        if not isinstance(structure, dict):
            raise ValueError("the state is not a mapping")
        return structure
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise DreamliftError(f"{path} is not a dreamlift checkpoint or is corrupt ({_first_line(exc)})") from None


def load_state(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a file written by :func:`save_state`. Never executes anything from the file.

    Raises:
        DreamliftError: the file is missing, foreign, truncated or corrupt.
    """
    from safetensors.torch import load

    path = Path(path)
    structure = read_state_header(path)
    try:
        tensors = load(path.read_bytes())
        state = unpack(structure, {k: v.to(device) for k, v in tensors.items()})
    except Exception as exc:  # safetensors raises its own error types on truncated or inconsistent data
        raise DreamliftError(f"{path} is not a dreamlift checkpoint or is corrupt ({_first_line(exc)})") from None
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
