"""Strict conversion between plain YAML data and frozen dataclasses.

Used for every configuration file dvdf reads (experiments, sweeps, dataset suites):

* unknown keys are rejected with their full dotted name and the valid choices;
* numbers are read the way people write them: ``3e-4`` (a string to PyYAML) is a float,
  ``1e6`` is accepted for an int field when it is integral;
* booleans are only true/false (never ``bool("False")``);
* ``Literal`` fields list the allowed values in the error;
* ``--set dotted.key=value`` overrides are applied to the raw mapping before conversion, so
  they pass the same checks as the file.

Errors are :class:`~dvdf.errors.DvdfError` naming the source (file) and field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union, get_args, get_origin

import yaml

from dvdf.errors import DvdfError

T = TypeVar("T")

_NONE_TYPE = type(None)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a DvdfError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DvdfError(f"{path}: no such file") from None
    except OSError as exc:
        raise DvdfError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise DvdfError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DvdfError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (['a','b','c'], value parsed as a YAML scalar)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DvdfError(f"--set {text!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [part for part in key.strip().split(".")], value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of ``data`` with each ``dotted.key=value`` set (intermediate maps created)."""
    result = _deep_copy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise DvdfError(f"--set {text!r}: '{key}' is not a section")
            node = child
        node[keys[-1]] = value
    return result


def from_dict(cls: type[T], data: Any, where: str = "", source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, strictly. ``where`` is the dotted prefix for errors."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise DvdfError(f"{source}: '{where}' must be a mapping, got {_describe(data)}" if where
                        else f"{source}: the top level must be a mapping, got {_describe(data)}")
    renamed = getattr(cls, "RENAMED_KEYS", None)   # {old key: "new.dotted.key"} of an older layout
    if renamed:
        data = _move_renamed_keys(data, renamed, where, source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        name = _join(where, str(unknown[0]))
        raise DvdfError(f"{source}: unknown key '{name}' (valid keys here: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, _join(where, name), source)
    try:
        return cls(**kwargs)
    except DvdfError as exc:
        raise DvdfError(f"{source}: {exc}") from None
    except TypeError as exc:  # a required field without a default is missing
        raise DvdfError(f"{source}: {where or 'top level'}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict/list/scalars, suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=False)


def flatten(mapping: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = _join(prefix, str(key))
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


# --------------------------------------------------------------------------------------------
def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and _NONE_TYPE in options:
            return None
        errors = []
        for option in options:
            if option is _NONE_TYPE:
                continue
            try:
                return _convert(option, value, where, source)
            except DvdfError as exc:
                errors.append(str(exc))
        raise DvdfError(errors[0] if len(errors) == 1 else
                        f"{source}: '{where}' has an invalid value {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise DvdfError(f"{source}: '{where}' must be one of {listed}, got {value!r}")
        return value
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise DvdfError(f"{source}: '{where}' must be a list, got {_describe(value)}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        return tuple(_convert(item_tp, v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise DvdfError(f"{source}: '{where}' must be a mapping, got {_describe(value)}")
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(val_tp, v, f"{where}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, source)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise DvdfError(f"{source}: '{where}' must be true or false, got {value!r}")
    if tp is int:
        number = _as_number(value, where, source)
        if isinstance(number, float):
            if not math.isfinite(number) or number != int(number):
                raise DvdfError(f"{source}: '{where}' must be an integer, got {value!r}")
            number = int(number)
        return number
    if tp is float:
        number = float(_as_number(value, where, source))
        if math.isnan(number):
            raise DvdfError(f"{source}: '{where}' must be a number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise DvdfError(f"{source}: '{where}' must be a string, got {_describe(value)}")
    raise TypeError(f"schema: unsupported field type {tp!r} at {where}")  # a programming error


def _as_number(value: Any, where: str, source: str) -> int | float:
    if isinstance(value, bool):
        raise DvdfError(f"{source}: '{where}' must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)  # "3e-4", "1e6": PyYAML (YAML 1.1) reads these as strings
        except ValueError:
            pass
    raise DvdfError(f"{source}: '{where}' must be a number, got {value!r}")


def _move_renamed_keys(data: Mapping, renamed: Mapping[str, str], where: str, source: str) -> dict:
    """A copy of ``data`` with each old key moved to its new dotted place (files of an older layout
    keep loading); an old key and its new name both given is an error naming both."""
    moved = _deep_copy(dict(data))
    for old, new in renamed.items():
        if old not in moved:
            continue
        value = moved.pop(old)
        *sections, leaf = new.split(".")
        node = moved
        for section in sections:
            child = node.setdefault(section, {})
            if not isinstance(child, dict):
                raise DvdfError(f"{source}: '{_join(where, section)}' must be a mapping, got {_describe(child)}")
            node = child
        if leaf in node:
            raise DvdfError(f"{source}: '{_join(where, old)}' is the old name of '{_join(where, new)}'; "
                            "give only the new one")
        node[leaf] = value
    return moved


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
