"""Records <-> msgpack: dataclasses become maps of their fields; unknown keys are ignored on read.

Ignoring unknown keys and defaulting missing ones is what lets a newer node add a field without a
data migration; a field whose meaning changes needs a schema bump (see env.SCHEMA_VERSION).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
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
def _decoder(hint: Any) -> Callable[[Any], Any] | None:
    """How to turn a decoded msgpack value (never None) into `hint`, worked out once per type;
    None: the value is kept as it is. Reading a record is on every API request's path, so the
    type introspection happens here and not per value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _decoder(arg)  # the first non-None member decides
        return None
    if dataclasses.is_dataclass(hint):
        return functools.partial(from_primitive, hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        conv = _decoder(item)
        if conv is None:
            return list
        return lambda value: [None if v is None else conv(v) for v in value]
    if origin is tuple:
        args = typing.get_args(hint)
        conv = _decoder(args[0] if args else Any)
        if conv is None:
            return tuple
        return lambda value: tuple(None if v is None else conv(v) for v in value)
    if origin is dict:
        args = typing.get_args(hint)
        conv = _decoder(args[1] if len(args) == 2 else Any)
        if conv is None:
            return dict
        return lambda value: {k: None if v is None else conv(v) for k, v in value.items()}
    return None


@functools.cache
def _field_decoders(cls: type) -> dict[str, Callable[[Any], Any] | None]:
    hints = typing.get_type_hints(cls)
    return {f.name: _decoder(hints[f.name]) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def from_primitive(cls: type[T], data: dict[str, Any]) -> T:
    decoders = _field_decoders(cls)
    kwargs = {}
    for k, v in data.items():
        if k in decoders:  # unknown keys (a newer node's fields) are ignored
            conv = decoders[k]
            kwargs[k] = v if conv is None or v is None else conv(v)
    return cls(**kwargs)


def pack(obj: Any) -> bytes:
    return msgpack.packb(to_primitive(obj), use_bin_type=True)


def unpack(cls: type[T], raw: bytes) -> T:
    return from_primitive(cls, msgpack.unpackb(raw, raw=False, strict_map_key=False))
