"""Typed reads from request JSON, failing the way Go's json.Unmarshal does (400, not 500)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidParameter

_GO = {int: "int64", str: "string", bool: "bool", list: "array", dict: "object"}


def parse_json(raw: bytes, *, allow_empty: bool = True) -> dict:
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidParameter("invalid JSON: EOF")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"invalid JSON: json: cannot unmarshal {type(value).__name__} into Go value of type object")
    return value


def _wrong(where: str, key: str, value: Any, want: type) -> InvalidParameter:
    got = {str: "string", bool: "bool", list: "array", dict: "object", int: "number",
           float: "number"}.get(type(value), "value")
    return InvalidParameter(f"json: cannot unmarshal {got} into Go struct field {where}.{key} of type {_GO[want]}")


def get_int(d: dict, key: str, where: str, default: int = 0) -> int:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise _wrong(where, key, value, int)
    value = int(value)
    if not -(1 << 63) <= value < (1 << 63):
        raise InvalidParameter(f"json: cannot unmarshal number {value} into Go struct field {where}.{key} of type int64")
    return value


def get_str(d: dict, key: str, where: str, default: str = "") -> str:
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _wrong(where, key, value, str)
    return value


def get_bool(d: dict, key: str, where: str, default: bool = False) -> bool:
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong(where, key, value, bool)
    return value


def get_str_list(d: dict, key: str, where: str) -> list[str] | None:
    """Docker's StrSlice: null, a string, or an array of strings."""
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(where, key, value, list)
    return list(value)


def get_dict(d: dict, key: str, where: str) -> dict:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(where, key, value, dict)
    return value


def get_str_map(d: dict, key: str, where: str) -> dict[str, str]:
    value = get_dict(d, key, where)
    if not all(isinstance(v, str) for v in value.values()):
        raise InvalidParameter(f"json: cannot unmarshal into Go struct field {where}.{key} of type map[string]string")
    return dict(value)


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """`filters` query: {"k":{"v":true}} (current) or {"k":["v"]} (legacy)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid filter '{raw}'") from None
    if not isinstance(data, dict):
        raise InvalidParameter(f"invalid filter '{raw}'")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, dict):
            out[key] = [k for k, v in values.items() if v]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            raise InvalidParameter(f"invalid filter '{raw}'")
    return out


def check_filter_keys(filters: dict[str, list[str]], allowed: set[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
