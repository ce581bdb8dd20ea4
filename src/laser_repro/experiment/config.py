"""The workflow config: load and merge files, validate against the schema, fill defaults.

``config.yaml`` is the paper's experiment; ``--configfile`` overlays are merged over it as
Snakemake merges them (mappings key by key, everything else replaced). The schema
(``config.schema.yaml`` next to this file) describes every key with its default; unknown keys
are errors, and numbers given as strings on a command line (``--config 'seeds=[0]'``) are
read as numbers where the schema expects one.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Iterable

import yaml

from laser_repro.io import read_yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class WorkflowConfigError(ValueError):
    """config.yaml names something the workflow cannot build; the message names the key."""


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def merge(base: dict, overlay: dict) -> dict:
    """Snakemake's config merge: mappings recursively, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_files(paths: Iterable[str | Path]) -> dict:
    """Merge YAML config files in order (later files overlay earlier ones)."""
    config: dict = {}
    for path in paths:
        path = Path(path)
        data = read_yaml(path, WorkflowConfigError, "workflow config") or {}
        if not isinstance(data, dict):
            raise WorkflowConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        config = merge(config, data)
    return config


# ---------------------------------------------------------------- validation


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        target: Any = schema()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _coerce(instance: Any, node: dict) -> Any:
    """Numbers written as strings ('0', '0.5') become numbers where the schema wants one."""
    node = _resolve(node)
    kind = node.get("type")
    if isinstance(instance, str) and kind in ("integer", "number"):
        try:
            number = float(instance)
        except ValueError:
            return instance
        return int(number) if kind == "integer" and number.is_integer() else number
    if isinstance(instance, list) and "items" in node:
        return [_coerce(v, node["items"]) for v in instance]
    if isinstance(instance, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, value in list(instance.items()):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _coerce(value, sub)
    return instance


def _validator():
    from jsonschema import Draft202012Validator, validators

    def set_defaults(validator, properties, instance, node):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                sub = _resolve(sub)
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, node)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def validate(config: dict, where: str = "config") -> dict:
    """Validate ``config`` in place (defaults filled, numeric strings coerced) and return it."""
    from jsonschema.exceptions import best_match

    _coerce(config, schema())
    validator = _validator()(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # the error of the first key, its most specific reason ("'All' is not one of ['all']", not "is not valid
        # under any of the given schemas")
        err = best_match([e for e in errors if list(e.absolute_path) == list(errors[0].absolute_path)])
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise WorkflowConfigError(f"{where}: {key}: {err.message}")
    return config


def load(paths: Iterable[str | Path], overrides: dict | None = None) -> dict:
    """Merge ``paths`` (and ``overrides``), validate, and return the config with defaults."""
    paths = list(paths)
    config = merge(load_files(paths), overrides or {})
    try:
        return validate(config, where=" + ".join(str(p) for p in paths) or "config")
    except WorkflowConfigError as err:
        if len(paths) == 1 and Path(paths[0]).name != "config.yaml":  # an overlay alone lacks the base's sections
            raise WorkflowConfigError(f"{err} (is {paths[0]} an overlay? it goes on top of the base config: "
                                      f"--config config.yaml --config {paths[0]})") from None
        raise


# ---------------------------------------------------------------- dotted keys


def flatten(mapping: dict | None, prefix: str = "") -> dict:
    """{'a': {'b': 1}, 'c.d': 2} -> {'a.b': 1, 'c.d': 2}."""
    flat = {}
    for key, value in (mapping or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def nest(flat: dict) -> dict:
    """{'a.b': 1, 'c': 2} -> {'a': {'b': 1}, 'c': 2}."""
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
