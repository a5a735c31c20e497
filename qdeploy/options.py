"""Options as data: frozen dataclasses whose fields carry their own help, command-line flag and choices.

One fact, one place: a field's default, type, choices (an ``enum.StrEnum`` annotation) and help are written once, on
the dataclass, and both the config loader (``from_mapping``: unknown keys refused, enums coerced and checked) and the
command line (``add_flags`` / ``flag_values``) are derived from it. The core's settings, every target's options and
the quantize/training commands use the same helpers.

    @dataclasses.dataclass(frozen=True)
    class MyOptions(Options):
        board: str = option("default", "board preset", flag="--board")
        level: Level = option(Level.FAST, "how hard to try")          # choices come from the enum
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from qdeploy.errors import QDeployError

C = TypeVar("C")

#: metadata keys of an option field
_HELP, _FLAG, _CLI, _CONST = "help", "flag", "cli", "const"
_UNSET = object()


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    flag: str | None = None,
    cli: bool = True,
    const: Any = _UNSET,
    **kwargs: Any,
):
    """A dataclass field with its help text and command-line flag (``--field-name`` unless ``flag`` is given;
    ``cli=False`` keeps it to config files and the Python API). ``const``: the flag is a switch that sets the field
    to this value (``--per-tensor`` sets ``per_channel=False``); a bool field without it is a plain ``store_true``.
    Mutable defaults: pass ``default_factory=``."""
    metadata = {_HELP: help, _FLAG: flag, _CLI: cli, _CONST: const}
    if "default_factory" in kwargs:
        return dataclasses.field(default_factory=kwargs.pop("default_factory"), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (``from __future__ import annotations`` leaves strings)."""
    return typing.get_type_hints(cls)


def enum_type(annotation: Any) -> type[enum.Enum] | None:
    """The Enum class in an annotation such as ``Strategy`` or ``Strategy | None``, if any."""
    candidates = typing.get_args(annotation) or (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, enum.Enum)), None)


def coerce_enum(kind: type[enum.Enum], value: Any, name: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise QDeployError(f"{name}={value!r} is not valid; choose one of: {choices}") from None


class Options:
    """Mixin for option dataclasses: enum fields given as strings are coerced (and checked) after init. Subclasses
    that define ``__post_init__`` call ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        types = field_types(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            kind = enum_type(types[f.name])
            value = getattr(self, f.name)
            if kind is not None and value is not None and not isinstance(value, kind):
                object.__setattr__(self, f.name, coerce_enum(kind, value, f.name))


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def from_mapping(cls: type[C], data: Mapping[str, Any] | None, source: str = "config") -> C:
    """Build ``cls`` from a mapping, rejecting keys that are not fields (a typo must not pass silently)."""
    data = dict(data or {})
    fields = field_names(cls)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise QDeployError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    try:
        return cls(**data)
    except TypeError as exc:  # e.g. a required field missing
        raise QDeployError(f"{source}: {exc}") from None


def to_jsonable(config: Any) -> Any:
    """A resolved config as plain JSON data (enums by value)."""

    def convert(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(config)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict."""
    path = Path(path)
    if not path.exists():
        raise QDeployError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yml", ".yaml"):
            import yaml

            loaded = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            loaded = json.loads(text)
        else:
            raise QDeployError(f"config file {path}: use .toml, .yaml or .json")
    except QDeployError:
        raise
    except Exception as exc:
        raise QDeployError(f"config file {path} could not be parsed: {exc}") from exc
    if not isinstance(loaded, dict):
        raise QDeployError(f"config file {path} must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


# -- command line ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag derived from an option field."""

    flag: str
    field: str
    help: str
    kind: Any  # int, float, str, bool or an Enum class
    default: Any
    const: Any = _UNSET  # a switch setting the field to this value

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def flags_of(cls: type) -> list[Flag]:
    """The command-line flags an option dataclass declares (fields with ``cli=True``)."""
    types = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.metadata.get(_CLI, False):
            continue
        annotation = types[f.name]
        kind = enum_type(annotation)
        if kind is None:
            args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
            kind = args[0] if args and args[0] in (int, float, str, bool) else str
        default = f.default if f.default is not dataclasses.MISSING else None
        flag = f.metadata.get(_FLAG) or "--" + f.name.replace("_", "-")
        const = f.metadata.get(_CONST, _UNSET)
        if kind is bool and const is _UNSET:
            const = True
        out.append(Flag(flag, f.name, f.metadata.get(_HELP, ""), kind, default, const))
    return out


def _describe(flag: Flag, owners: Iterable[str] = ()) -> str:
    text = flag.help  # argparse lists an enum's choices itself
    default = flag.default.value if isinstance(flag.default, enum.Enum) else flag.default
    if flag.const is _UNSET and default not in (None, False, "", {}):
        text += f" (default {default})"
    owners = list(owners)
    if owners:
        text = f"[{', '.join(owners)}] {text}"
    return text


def add_flags(parser: argparse.ArgumentParser, cls: type, owners: Iterable[str] = (), defaults: bool = True) -> None:
    """Add the flags of ``cls`` to ``parser``. With ``defaults=False`` an unset flag parses as None, so the caller can
    tell "not given" from "given the default" (used where flags override a config file)."""
    for flag in flags_of(cls):
        add_flag(parser, flag, owners, defaults)


def add_flag(parser: argparse.ArgumentParser, flag: Flag, owners: Iterable[str] = (), defaults: bool = True) -> None:
    default = flag.default if defaults else None
    if isinstance(default, enum.Enum):
        default = default.value
    help_text = _describe(flag, owners)
    if flag.const is not _UNSET:  # a switch; unset parses as None so "not given" stays distinguishable
        parser.add_argument(flag.flag, dest=flag.dest, action="store_const", const=flag.const, default=None, help=help_text)
        return
    kwargs: dict[str, Any] = {"dest": flag.dest, "default": default, "help": help_text}
    if isinstance(flag.kind, type) and issubclass(flag.kind, enum.Enum):
        kwargs["choices"] = [str(m.value) for m in flag.kind]
    else:
        kwargs["type"] = flag.kind
    parser.add_argument(flag.flag, **kwargs)


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (flags left unset are omitted)."""
    values = {}
    for flag in flags_of(cls):
        value = getattr(args, flag.dest, None)
        if value is not None:
            values[flag.field] = value
    return values
