"""Reading params.yaml's values: coercion to the schema's types, one section at a time.

Every check here raises `ParamsError` naming the key and what is allowed, so a bad value is
refused before any stage does work. The schema (ganlab.config.params) and the toy section
(ganlab.config.toy) build their dataclasses with `build_section`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import fields
from typing import Any, get_args, get_origin, get_type_hints

from ganlab.util import ParamsError


def one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamsError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def positive(key: str, value: float) -> None:
    if not value > 0:
        raise ParamsError(f"{key}: {value!r} must be > 0")


def in_range(key: str, value: float, lo: float, hi: float | None) -> None:
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ParamsError(f"{key}: {value!r} must be {bound}")


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Turn a YAML value into `tp`, or raise naming the key and the expected type."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(key, tp, value)
    if origin is tuple and len(get_args(tp)) == 2 and get_args(tp)[1] is Ellipsis:
        if not isinstance(value, list | tuple) or not value:
            raise ParamsError(f"{key}: {value!r} must be a non-empty list")
        item = get_args(tp)[0]
        return tuple(_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value))
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ParamsError(f"{key}: {value!r} must be a list of {len(args)} numbers")
        return tuple(_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: {value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: {value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads 5e-05 as a string: a float needs a dot there. DVC writes
            # `-S variants.wgan.lr=5e-5` exactly so, and reads it back as YAML 1.2 (a float).
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{key}: {value!r} must be a number")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range (1e400 written out)
            raise ParamsError(f"{key}: {value!r} is too large; must be a finite number") from None
        if not math.isfinite(value):
            # .nan passes every range check (comparisons are false), .inf overflows budgets and
            # turns an lr into all-NaN losses: no float setting takes either
            raise ParamsError(f"{key}: {value!r} must be a finite number (not .nan or .inf)")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: {value!r} must be a string")
        return value
    raise TypeError(f"unsupported params type {tp} at {key}")


def build_dataclass(key: str, cls: type, raw: Any, base: Any = None) -> Any:
    """Build dataclass `cls` from mapping `raw`; missing keys come from `base` or defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{key}: expected a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name not in ("variants", "toy")]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ParamsError(f"{where}: unknown key; allowed: {', '.join(names)}")
    values = {}
    for name in names:
        sub = f"{key}.{name}" if key else name
        if name in raw:
            tp = hints[name]
            if dataclasses.is_dataclass(tp) and base is not None:
                values[name] = build_dataclass(sub, tp, raw[name], getattr(base, name))
            else:
                values[name] = _coerce(sub, tp, raw[name])
        elif base is not None:
            values[name] = getattr(base, name)
    return cls(**values)


def build_section(key: str, cls: type, raw: Any) -> Any:
    """Dataclass `cls` from mapping `raw` (defaults for missing keys), types checked."""
    return build_dataclass(key, cls, raw)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dataclass -> flat {dotted.key: value}, for MLflow params and the report."""
    out: dict[str, Any] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = ",".join(str(x) for x in v)
        else:
            out[key] = v
    return out
