"""Records <-> msgpack: dataclasses become maps of their fields; unknown keys are ignored on read.

Ignoring unknown keys and defaulting missing ones is what lets a newer node add a field without a
data migration; a field whose meaning changes needs a schema bump (see env.SCHEMA_VERSION).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")


def to_primitive(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_primitive(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_primitive(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_primitive(v) for k, v in obj.items()}
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _convert(arg, value)
    if dataclasses.is_dataclass(hint):
        return from_primitive(hint, value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    if origin is dict:
        args = typing.get_args(hint)
        item = args[1] if len(args) == 2 else Any
        return {k: _convert(item, v) for k, v in value.items()}
    return value


def from_primitive(cls: type[T], data: dict[str, Any]) -> T:
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _convert(hints[k], v) for k, v in data.items() if k in known})


def pack(obj: Any) -> bytes:
    return msgpack.packb(to_primitive(obj), use_bin_type=True)


def unpack(cls: type[T], raw: bytes) -> T:
    return from_primitive(cls, msgpack.unpackb(raw, raw=False, strict_map_key=False))
