"""Config dataclasses -> command-line options, and the error type the CLI reports.

Every runnable piece of dreamlift has a ``FooConfig`` dataclass whose fields carry
their help text in ``field(metadata={"help": ...})``. The CLI is generated from
those fields, so a config value always greps to the dataclass that defines it, and
every run can write its resolved config next to its outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = ["DreamliftError", "option", "add_config_arguments", "config_from_args", "config_to_dict", "atomic_write",
           "with_overrides"]


class DreamliftError(Exception):
    """An error caused by the user's input or environment; the CLI prints it on one line and exits 2."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text for the generated CLI."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_tuple(conv: type) -> Any:
    def parse(text: str) -> tuple:
        return tuple(conv(v) for v in text.replace(" ", "").split(",") if v)

    return parse


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                         prefix: str = "") -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    Supported field types: int, float, str, bool (``--x`` / ``--no-x``), Path, Literal[...]
    (choices), tuple[int, ...] (comma-separated), ``X | None`` of those, and nested config
    dataclasses, whose fields become ``--<field>-<subfield>`` options. A field declared with
    ``option(..., cli=False)`` gets no option (it is set by the enclosing command). Defaults are not set
    on the parser: a missing option leaves the dataclass default in place.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init or f.metadata.get("cli") is False:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            add_config_arguments(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        optional = False
        if get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            optional, tp = len(args) < len(get_args(tp)), args[0]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        help_text = f.metadata.get("help", "")
        if not help_text:
            help_text = f"default: {default}"
        elif not ("default" in help_text or default is None or f.metadata.get("positional")):
            # (unset options, None, and helps that say where their default comes from get no "(default: None)")
            help_text = f"{help_text} (default: {default})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        dest = prefix + f.name
        kw: dict[str, Any] = dict(dest=dest, help=help_text, default=argparse.SUPPRESS)
        flag = _flag(dest.replace(".", "-"))
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if get_origin(tp) is Literal:
            kw["choices"] = list(get_args(tp))
            tp = type(get_args(tp)[0])
        if get_origin(tp) is tuple:
            conv = _parse_tuple(get_args(tp)[0])
        else:
            conv = tp if tp in (int, float, str, Path) else str
        if optional:
            kw["type"] = lambda s, conv=conv: None if s.lower() == "none" else conv(s)
        else:
            kw["type"] = conv
        kw["metavar"] = f.metadata.get("metavar", f.name.upper())
        if "choices" in kw:
            kw.pop("metavar")
        if f.metadata.get("positional"):
            kw.pop("dest")
            kw.pop("default")
            parser.add_argument(dest, **kw)
            continue
        parser.add_argument(flag, **kw)


def config_from_args(cls: type, ns: argparse.Namespace, prefix: str = "", **overrides: Any) -> Any:
    """Build ``cls`` (and its nested config dataclasses) from the options given, plus overrides."""
    hints = typing.get_type_hints(cls)
    given = vars(ns)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = config_from_args(hints[f.name], ns, prefix=f"{prefix}{f.name}.")
        elif prefix + f.name in given:
            values[f.name] = given[prefix + f.name]
    values.update(overrides)
    return cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (Paths become strings)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def with_overrides(cfg: Any, items: tuple[str, ...] | list[str]) -> Any:
    """A copy of the config dataclass ``cfg`` with ``KEY=VALUE`` items applied.

    Keys are field names, dotted for nested configs (``nerf.blob_density=2``). A value is
    converted to the type of the field's current value (``none`` for None where the field
    allows it; ``true``/``false`` for booleans).

    Raises:
        DreamliftError: an unknown key or a value of the wrong type.
    """
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise DreamliftError(f"an override must look like KEY=VALUE, got {item!r}")
        cfg = _override(cfg, key.strip().split("."), text.strip(), item)
    return cfg


def _override(cfg: Any, path: list[str], text: str, item: str) -> Any:
    names = {f.name for f in dataclasses.fields(cfg) if f.init}
    if path[0] not in names:
        raise DreamliftError(f"unknown setting {path[0]!r} in override {item!r}")
    current = getattr(cfg, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise DreamliftError(f"{path[0]!r} has no sub-settings (override {item!r})")
        return dataclasses.replace(cfg, **{path[0]: _override(current, path[1:], text, item)})
    hint = typing.get_type_hints(type(cfg))[path[0]]
    args = get_args(hint) if get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    value: Any = None
    if text.lower() == "none" and type(None) in args:
        value = None
    else:
        for tp in (a for a in args if a is not type(None)):
            choices = get_args(tp) if get_origin(tp) is Literal else None
            tp = type(choices[0]) if choices else tp
            try:
                if tp is bool:
                    if text.lower() not in ("true", "false"):
                        raise ValueError(text)
                    value = text.lower() == "true"
                else:
                    value = tp(text)
                if choices and value not in choices:
                    raise ValueError(text)
                break
            except (TypeError, ValueError):
                continue
        else:
            raise DreamliftError(f"cannot read {text!r} as a value of {path[0]!r} (override {item!r})")
    return dataclasses.replace(cfg, **{path[0]: value})


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
