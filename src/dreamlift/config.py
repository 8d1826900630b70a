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
import math
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

__all__ = ["DreamliftError", "option", "add_config_arguments", "config_from_args", "config_to_dict", "atomic_write",
           "with_overrides", "check_values", "OneLineParser", "check_output_folder", "HelpFormatter", "EXPERT"]


class DreamliftError(Exception):
    """An error caused by the user's input or environment; the CLI prints it on one line and exits 2."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text for the generated CLI."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


_CONVERTERS: dict[type, Any] = {int: _integer, float: _number, str: str, Path: Path}


def _parse_tuple(conv: type) -> Any:
    def parse(text: str) -> tuple:
        return tuple(_CONVERTERS.get(conv, conv)(v) for v in text.replace(" ", "").split(",") if v)

    return parse


def _or_none(conv: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else conv(text)

    return parse


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``dreamlift generate: error: argument --steps: expected a
    whole number, got '2.5'``) instead of the whole usage text; exit code 2 as argparse's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {_printable(message)} (see {self.prog} --help)\n")


def _printable(text: str) -> str:
    """Text that prints on any terminal: bytes that were not UTF-8 shown as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# Whole numbers any option may take (torch and numpy take 64-bit integers), and the range of a seed.
_INT_RANGE = (-(2**63), 2**63 - 1)
_SEED_RANGE = (0, 2**63 - 1)


def check_values(cfg: Any, prefix: str = "") -> None:
    """Refuse values no option can mean, for every field of a config dataclass and its nested ones.

    One place for what holds for every option: a float is finite (NaN slips through every ``x > 0`` check and
    infinity overflows later, after setup or training), an int fits in 64 bits (a seed in [0, 2^63)), a string
    or path is valid UTF-8 (a prompt typed in another encoding), and a field declared with
    ``option(..., low=, high=)`` lies in that closed range. Raises DreamliftError naming the option.
    """
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value = getattr(cfg, f.name)
        name = _flag((prefix + f.name).replace(".", "-"))
        if f.metadata.get("positional"):
            name = f.name.upper()
        if dataclasses.is_dataclass(value):  # ("flat": a config whose options are the command's own, as batch's)
            check_values(value, prefix=prefix if f.metadata.get("flat") else f"{prefix}{f.name}.")
            continue
        for v in (value if isinstance(value, tuple) else (value,)):
            _check_one(name, f, v)


def _check_one(name: str, f: dataclasses.Field, v: Any) -> None:
    if isinstance(v, bool) or v is None:
        return
    if isinstance(v, float) and not math.isfinite(v):
        raise DreamliftError(f"{name} must be a finite number, got {v}")
    if isinstance(v, int):
        low, high = _SEED_RANGE if f.name == "seed" or f.name.endswith("_seed") else _INT_RANGE
        if not low <= v <= high:
            raise DreamliftError(f"{name} must be a whole number in [{low}, {high}], got {v}")
    if isinstance(v, (str, Path)):
        try:
            str(v).encode("utf-8")
        except UnicodeEncodeError:
            raise DreamliftError(f"{name} is not valid UTF-8 text: {_printable(str(v))!r}") from None
    if isinstance(v, (int, float)):
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if (low is not None and v < low) or (high is not None and v > high):
            span = (f"in [{low}, {high}]" if low is not None and high is not None
                    else f">= {low}" if low is not None else f"<= {high}")
            raise DreamliftError(f"{name} must be {span}, got {v}")


class HelpFormatter(argparse.HelpFormatter):
    """Help that reads as a list: one line per option where the terminal allows, a boolean shown once as
    ``--[no-]resume``, and short metavars (N a whole number, X a number)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return "--[no-]" + action.option_strings[0][2:]
        return super()._format_action_invocation(action)


def _group(parser: argparse.ArgumentParser, title: str | None) -> Any:
    """The parser's argument group called ``title`` (made on first use, in first-use order), or the parser."""
    if title is None:
        return parser
    groups = parser.__dict__.setdefault("_dreamlift_groups", {})
    if title not in groups:
        groups[title] = parser.add_argument_group(title)
    return groups[title]


_METAVARS = {int: "N", float: "X", Path: "PATH", str: "TEXT"}


EXPERT = "expert: "
"""Option groups whose title starts so are left out of ``--help`` and shown by ``--help-all``."""


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                         prefix: str = "", group: str | None = None, show_expert: bool = True) -> None:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    Supported field types: int, float, str, bool (``--x`` / ``--no-x``), Path, Literal[...]
    (choices), tuple[int, ...] (comma-separated), ``X | None`` of those, and nested config
    dataclasses, whose fields become ``--<field>-<subfield>`` options. A field declared with
    ``option(..., cli=False)`` gets no option (it is set by the enclosing command), nor do the names (dotted
    for nested fields) in ``skip`` and in the class's ``CLI_SKIP`` (inherited fields a command has no use
    for). Defaults are not set on the parser: a missing option leaves the dataclass default in place.

    Options are shown in groups: a field's ``group`` metadata (a nested dataclass's fields inherit it), in the
    order of the class's ``OPTION_GROUPS`` where it has one. Options of groups titled ``EXPERT...`` still
    parse, but their help is shown only when ``show_expert``.
    """
    for title in getattr(cls, "OPTION_GROUPS", ()):
        _group(parser, title)
    if not prefix:  # a command's own leaving-out of fields it inherits (dotted names for nested ones)
        skip = (*skip, *getattr(cls, "CLI_SKIP", ()))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f"{prefix}{f.name}" in skip or not f.init or f.metadata.get("cli") is False:
            continue
        tp = hints[f.name]
        title = f.metadata.get("group", group)
        if dataclasses.is_dataclass(tp):
            add_config_arguments(parser, tp, skip, prefix=f"{prefix}{f.name}.", group=title, show_expert=show_expert)
            continue
        target = _group(parser, title)
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
        shown = ("on" if default else "off") if isinstance(default, bool) else default
        if not help_text:
            help_text = f"default: {shown}"
        elif not ("default" in help_text or default is None or f.metadata.get("positional")):
            # (unset options, None, and helps that say where their default comes from get no "(default: None)")
            help_text = f"{help_text} (default: {shown if shown != '' else 'none'})"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        if title is not None and title.startswith(EXPERT) and not show_expert:
            help_text = argparse.SUPPRESS
        dest = prefix + f.name
        kw: dict[str, Any] = dict(dest=dest, help=help_text, default=argparse.SUPPRESS)
        flag = _flag(dest.replace(".", "-"))
        if tp is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if get_origin(tp) is Literal:
            kw["choices"] = list(get_args(tp))
            tp = type(get_args(tp)[0])
        if get_origin(tp) is tuple:
            conv = _parse_tuple(get_args(tp)[0])
        else:
            conv = _CONVERTERS.get(tp, str)
        kw["type"] = _or_none(conv) if optional else conv
        kw["metavar"] = f.metadata.get("metavar", _METAVARS.get(tp, f.name.upper()))
        if "choices" in kw:
            kw.pop("metavar")
        if f.metadata.get("positional"):
            kw.pop("dest")
            kw.pop("default")
            kw["metavar"] = f.metadata.get("metavar", f.name.upper())
            parser.add_argument(dest, **kw)
            continue
        target.add_argument(flag, **kw)


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


def config_to_options(cfg: Any, skip: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """The command-line options that give ``cfg`` from its class's defaults: one ``--flag value`` for every field
    (dotted for nested configs) that differs from its default, in the spelling ``add_config_arguments`` parses.
    Positional fields, fields without an option (``cli=False``) and the names in ``skip`` are left out."""
    out: list[str] = []
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        dest = prefix + f.name
        if not f.init or dest in skip or f.metadata.get("cli") is False or f.metadata.get("positional"):
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out += config_to_options(value, skip, prefix=dest + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if value == default:
            continue
        flag = _flag(dest.replace(".", "-"))
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            text = "none" if value is None else ",".join(str(v) for v in value) if isinstance(value, tuple) \
                else str(value)
            out += [f"{flag}={text}"] if text.startswith("-") else [flag, text]  # (-1 would read as an option)
    return out


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


def _file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (so nothing can be made below it)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_folder(path: Path, flag: str) -> None:
    """Refuse an output folder that is an existing file or lies below one (before any work is done)."""
    if path.exists() and not path.is_dir():
        raise DreamliftError(f"{flag} {path} is a file, not a folder")
    blocker = _file_above(path)
    if blocker is not None:
        raise DreamliftError(f"{flag} {path} cannot be made: {blocker} is a file, not a folder")


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
