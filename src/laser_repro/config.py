"""Run configs: YAML files mapped onto dataclasses, with errors that name the key and file.

The trainer CLIs read one resolved run config (written by a Snakemake rule or by hand);
each dataclass field's default is written once, on the dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

from laser_repro.io import read_yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A run config key is unknown, missing, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: ``min <= v`` (``min < v`` when ``open_min``) and ``v <= max``."""

    min: float | None = None
    max: float | None = None
    open_min: bool = False

    def check(self, key: str, value: Any) -> None:
        if value is None:
            return
        low = self.min is not None and (value <= self.min if self.open_min else value < self.min)
        infinite = isinstance(value, float) and math.isinf(value)
        if low or (self.max is not None and value > self.max) or value != value or infinite:
            parts = []
            if self.min is not None:
                parts.append(f"{'>' if self.open_min else '>='} {self.min:g}")
            if self.max is not None:
                parts.append(f"<= {self.max:g}")
            raise ConfigError(f"{key}: {value!r} is out of range (expected {' and '.join(parts)})")


POSITIVE = Range(1)  # counts and sizes: at least 1
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
PROBABILITY = Range(0, 1)
POSITIVE_REAL = Range(0, open_min=True)


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` recursively; unknown keys are errors.

    A dataclass may declare ``RANGES: ClassVar[dict[str, Range]]`` (checked for every field,
    defaults included) and define ``check()``: it raises :class:`ConfigError` naming a key
    relative to itself (``"top_k: ..."``) for values that are fine one by one but not together.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if names := [k for k in data if not isinstance(k, str)]:  # YAML reads `1: a` as the number 1
        raise ConfigError(f"{where or cls.__name__}: key(s) {names} are not names; expected some of {sorted(fields)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        dotted = next((k for k in unknown if k.split(".")[0] in fields and "." in k), None)
        hint = (f" (a run config nests its keys: write {dotted.split('.')[0]}: {{{dotted.split('.', 1)[1]}: ...}}; "
                "dotted names are for the workflow config)") if dotted else ""
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; expected some of {sorted(fields)}{hint}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        typ = hints[name]
        key = f"{where}.{name}" if where else name
        kwargs[name] = _check_type(value, typ, key)
    obj = cls(**kwargs)
    for name, rng in getattr(cls, "RANGES", {}).items():
        if name in fields:  # a shared table may name fields this class does not have
            rng.check(f"{where}.{name}" if where else name, getattr(obj, name))
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as err:  # keys in the message are relative to this dataclass
            raise ConfigError(f"{where}.{err}" if where else str(err)) from None
    return obj


def _check_type(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if dataclasses.is_dataclass(typ) and isinstance(typ, type):
        return from_dict(typ, value, key)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for arm in typing.get_args(typ):
            try:
                return _check_type(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {typ}")
    if typ is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        items = [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise ConfigError(f"{key}: expected one of {list(typing.get_args(typ))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if typ is float:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if typ in (int, str, bool) and not (isinstance(value, typ) and not (typ is int and isinstance(value, bool))):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")
    return value


def dotted(obj: Any, key: str) -> Any:
    """The value of a dotted config ``key`` (``pretrain.datasets``) of a config object; None where a part is missing."""
    for part in key.split("."):
        obj = getattr(obj, part, None)
    return obj


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (the resolved config recorded in metrics.json)."""
    return dataclasses.asdict(obj)


def load_config(cls: type[T], path: str | Path) -> T:
    """Load a YAML run config file into ``cls``; errors name the file and key."""
    path = Path(path)
    data = read_yaml(path, ConfigError, "run config") or {}
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
