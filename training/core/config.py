"""One rule for every run config (nanoGPT's: the config in the checkpoint rebuilds the model alone).

Each kind of run — gan, classifier, attributes, inverter, scgan, cyclic — has one typed `@dataclass` with a
`kind` field (init=False) and a `validate()` method, registered here with `@register_config`. The resolved
config is written once to the run folder (`config.json`, see `training.core.runs.RunDir`) and stored in every
checkpoint; `config_from_dict` rebuilds it from that dict for every kind, and `from_dict(cls, values)` when the
caller knows which kind it expects. The rebuild is driven by the dataclass's type hints (nested dataclasses,
tuples from JSON lists), so no kind needs its own parser.

Hand-written rather than a library (pydantic, dacite) because the configs are plain dataclasses that the
training code mutates and compares, and the rule is twenty lines.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_REGISTRY: dict[str, type] = {}


def register_config(cls: type[T]) -> type[T]:
    """Class decorator: make `cls` (a dataclass with a `kind` field default) rebuildable by `config_from_dict`."""
    kind_field = {f.name: f for f in dataclasses.fields(cls)}.get("kind")  # type: ignore[arg-type]
    if kind_field is None or kind_field.init or not isinstance(kind_field.default, str):
        raise TypeError(f"{cls.__name__} needs `kind: str = field(default=..., init=False)`")
    if not callable(getattr(cls, "validate", None)):
        raise TypeError(f"{cls.__name__} needs a validate() method")
    previous = _REGISTRY.setdefault(kind_field.default, cls)
    if previous is not cls:
        raise TypeError(f"config kind {kind_field.default!r} registered twice ({previous.__name__}, {cls.__name__})")
    return cls


def registered_kinds() -> dict[str, type]:
    return dict(_REGISTRY)


def to_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready dict of a config (tuples become lists on the way to JSON; `from_dict` turns them back)."""
    return dataclasses.asdict(config)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object for {hint.__name__}, got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str | None = None) -> T:
    """Rebuild the dataclass `cls` from `values` (a `to_dict` result, possibly through JSON).

    Unknown keys are an error naming them (a config from another kind or a newer version must not load silently
    as a default); missing keys take the field's default. A `kind` in `values` must match the class's. A class
    that renamed a field lists `RENAMED_KEYS = {old: new}` (a ClassVar), so checkpoints written before the
    rename still load."""
    where = where or cls.__name__
    renamed: dict[str, str] = getattr(cls, "RENAMED_KEYS", {})
    values = {renamed.get(key, key): value for key, value in values.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kind = fields.get("kind")
    # A config's kind is `init=False`; a nested dataclass's own `kind` field (GANSource's "torch" / "onnx") is data.
    if kind is not None and not kind.init and "kind" in values and values["kind"] != kind.default:
        raise ValueError(f"{where}: not a {kind.default} config (kind {values['kind']!r})")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}; {cls.__name__} has {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _convert(hints[name], value, f"{where}.{name}") for name, value in values.items() if fields[name].init
    }
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any], expected: type[T] | None = None) -> T:
    """Rebuild a config of any registered kind from its dict (`values["kind"]`); with `expected`, a config of
    another kind is a ValueError naming both."""
    kind = values.get("kind")
    cls = _REGISTRY.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(
            f"unknown config kind {kind!r}; known: {sorted(_REGISTRY)} (import the module that defines it first)"
        )
    if expected is not None and cls is not expected:
        wanted = {v: k for k, v in _REGISTRY.items()}.get(expected, expected.__name__)
        raise ValueError(f"expected a {wanted!r} config, got kind {kind!r}")
    config = from_dict(cls, values)
    return config  # type: ignore[return-value]
