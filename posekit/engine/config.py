"""Experiment configs: YAML files with ``base:`` inheritance, dotted overrides and a checked schema.

A config file is a YAML mapping. ``base: other.yaml`` (or a list of files, merged left to right) names
files it extends, relative to the file itself; mappings merge key by key and anything else (numbers,
strings, lists) replaces the base's value. Overrides such as ``train.optimizer.lr=1e-4`` are applied
last; their values are read as YAML (``[130, 160]``, ``true``, ``null``).

The merged config is a plain nested dict, so it can be written next to results and stored inside
checkpoints. :func:`validate` checks it against a schema of :class:`Field` entries, fills in defaults
and reports the first problem as a :class:`PosekitError` naming the dotted key.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from posekit.errors import PosekitError

class _Required:
    """Marks a field without default; one instance, kept by copies of the schema."""

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        return "REQUIRED"


_REQUIRED = _Required()


@dataclass(frozen=True)
class Field:
    """One config value: its kind, default and limits.

    kind: "int", "float", "bool", "str", "path", "ints", "floats", "strs" (lists of those), or
    "mapping" (a free-form mapping checked by the code that consumes it, e.g. a model's options).
    length: required list length; minimum/maximum: bounds for numbers and list items;
    choices: allowed strings; nullable: ``null`` is allowed.
    """

    kind: str
    default: Any = _REQUIRED
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    length: int | None = None
    nullable: bool = False
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PosekitError(f"{path}: no such config file") from None
    except UnicodeDecodeError:
        raise PosekitError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise PosekitError(f"{path}: not valid YAML{where}") from None
    except OSError as exc:
        raise PosekitError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PosekitError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def merge(base: dict, update: dict) -> dict:
    """``update`` laid over ``base``: mappings merge recursively, other values replace."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in chain + (path,))
        raise PosekitError(f"{path}: 'base' files form a cycle ({cycle})")
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise PosekitError(f"{path}: 'base' must be a file name or a list of file names")
    merged: dict = {}
    for name in bases:
        merged = merge(merged, _load_with_bases(path.parent / name, chain + (path,)))
    return merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.optimizer.lr=1e-4"`` -> (["train", "optimizer", "lr"], value read as YAML)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise PosekitError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise PosekitError(f"override {key.strip()}: value {raw!r} is not valid YAML") from None
    return parts, value


def apply_overrides(config: dict, overrides) -> dict:
    """A copy of ``config`` with each ``dotted.key=value`` override set (missing mappings created)."""
    out = copy.deepcopy(config)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[:depth + 1])
                raise PosekitError(f"override {'.'.join(parts)}: {prefix} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(path, overrides=()) -> dict:
    """The merged config of ``path`` (with its ``base`` files) and the overrides, not yet validated."""
    config = _load_with_bases(Path(path), ())
    return apply_overrides(config, overrides)


def _number(value, field: Field, key: str, integer: bool):
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PosekitError(f"config {key} must be {'an integer' if integer else 'a number'}, "
                           f"got {value!r}")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise PosekitError(f"config {key} must be an integer, got {value!r}")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise PosekitError(f"config {key} must be finite, got {value!r}")
    if field.minimum is not None and value < field.minimum:
        raise PosekitError(f"config {key} must be >= {field.minimum}, got {value!r}")
    if field.maximum is not None and value > field.maximum:
        raise PosekitError(f"config {key} must be <= {field.maximum}, got {value!r}")
    return value


def _check_value(value, field: Field, key: str):
    if value is None:
        if field.nullable:
            return None
        raise PosekitError(f"config {key} must be set (got null)")
    kind = field.kind
    if kind in ("int", "float"):
        return _number(value, field, key, kind == "int")
    if kind == "bool":
        if not isinstance(value, bool):
            raise PosekitError(f"config {key} must be true or false, got {value!r}")
        return value
    if kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise PosekitError(f"config {key} must be a non-empty string, got {value!r}")
        if field.choices is not None and value not in field.choices:
            raise PosekitError(f"config {key} must be one of {', '.join(field.choices)}, got {value!r}")
        return value
    if kind in ("ints", "floats", "strs"):
        if not isinstance(value, list):
            raise PosekitError(f"config {key} must be a list, got {value!r}")
        if field.length is not None and len(value) != field.length:
            raise PosekitError(f"config {key} must have {field.length} items, got {len(value)}")
        item = Field({"ints": "int", "floats": "float", "strs": "str"}[kind], choices=field.choices,
                     minimum=field.minimum, maximum=field.maximum)
        return [_check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind == "mapping":
        if not isinstance(value, dict):
            raise PosekitError(f"config {key} must be a mapping, got {value!r}")
        return copy.deepcopy(value)
    raise PosekitError(f"config {key}: unknown field kind {kind!r}")


def validate(config: dict, schema: dict, *, source: str = "config", prefix: str = "") -> dict:
    """``config`` checked against ``schema`` (nested dicts of :class:`Field`), with defaults filled.

    Unknown keys are errors (a misspelt key would otherwise be silently ignored).
    """
    if not isinstance(config, dict):
        raise PosekitError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    unknown = sorted(set(config) - set(schema))
    if unknown:
        known = ", ".join(sorted(schema))
        raise PosekitError(f"{source}: unknown config key {prefix}{unknown[0]} (known here: {known})")
    out = {}
    for name, spec in schema.items():
        key = prefix + name
        if isinstance(spec, dict):
            out[name] = validate(config.get(name, {}), spec, source=source, prefix=key + ".")
            continue
        if name not in config:
            if spec.required:
                raise PosekitError(f"{source}: config {key} is required")
            out[name] = copy.deepcopy(spec.default)
            continue
        try:
            out[name] = _check_value(config[name], spec, key)
        except PosekitError as exc:
            raise PosekitError(f"{source}: {exc}") from None
    return out


def get(config: dict, dotted: str, default=_REQUIRED):
    """The value at ``a.b.c`` (``default`` when absent, else a PosekitError naming the key)."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _REQUIRED:
                raise PosekitError(f"config {dotted} is not set")
            return default
        node = node[part]
    return node


def flatten(config: dict, prefix: str = "") -> dict:
    """{"a.b.c": value} for every leaf of a nested config."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def dump_config(config: dict, path) -> None:
    """Write a config as YAML (the exact settings of a run, kept beside its results)."""
    try:
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    except OSError as exc:
        raise PosekitError(f"{path}: cannot write ({exc.strerror or type(exc).__name__})") from None


__all__ = ["Field", "merge", "load_config", "apply_overrides", "parse_override", "validate", "get",
           "flatten", "dump_config"]
