"""Serf's layer on top of memberlist, as far as a stock ``serf agent`` needs it from us.

* Node meta carries Serf tags: ``0xFF`` + msgpack ``map[string]string`` (raw strings), at most
  512 bytes in all.  Meta that does not start with 0xFF reads as ``{"role": meta}``.
* Serf messages travel as memberlist user messages: the first payload byte is the Serf type.
  We send only the member intents (join, leave) and read only those plus the Lamport clock in
  Serf's push/pull state.  ``serf members`` shows a leaving node ``left`` instead of ``failed``
  only if a leave intent with ``LTime > member.statusLTime`` reached it before the node died.

Pure functions and one small clock; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

from .codec import META_MAX_SIZE
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "SerfMessageType",
    "TAG_MAGIC",
    "encode_tags",
    "decode_tags",
    "JoinIntent",
    "LeaveIntent",
    "encode_intent",
    "decode_intent",
    "push_pull_ltime",
    "LamportClock",
]


class SerfMessageType(IntEnum):
    """First byte of a Serf user message (serf/messages.go).

    APPEND ONLY: the numeric values are Serf's protocol.
    """

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


#: Serf protocol >= 3 marks tag-encoded meta with this first byte.
TAG_MAGIC = 0xFF


def encode_tags(tags: dict[str, str]) -> bytes:
    """Serf ``encodeTags``: 0xFF + msgpack map of raw strings; LocalProtocolError over 512 B."""
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise LocalProtocolError("tags must map str to str")
    meta = bytes([TAG_MAGIC]) + msgpack.packb(dict(tags), use_bin_type=False)
    if len(meta) > META_MAX_SIZE:
        raise LocalProtocolError(f"encoded tags are {len(meta)} bytes, the limit is {META_MAX_SIZE}")
    return meta


def decode_tags(meta: bytes) -> dict[str, str]:
    """Serf ``decodeTags``.  Non-tag meta is ``{"role": meta}``; bad tag maps raise."""
    if not meta:
        return {}
    if meta[0] != TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")}
    try:
        obj = msgpack.unpackb(meta[1:], raw=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"bad tags: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("tags are not a map")
    out: dict[str, str] = {}
    for key, value in obj.items():
        if not isinstance(key, (bytes, str)) or not isinstance(value, (bytes, str)):
            raise RemoteProtocolError("tag keys and values must be strings")
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        v = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class JoinIntent:
    """Serf ``messageJoin{LTime, Node}``."""

    ltime: int
    node: str


@dataclass(frozen=True, slots=True)
class LeaveIntent:
    """Serf ``messageLeave{LTime, Node, Prune}``."""

    ltime: int
    node: str
    prune: bool = False


def encode_intent(intent: JoinIntent | LeaveIntent) -> bytes:
    """The memberlist user-message payload (without memberlist's 0x08) for an intent."""
    node = intent.node.encode("utf-8", "surrogateescape")
    if isinstance(intent, JoinIntent):
        body = {b"LTime": intent.ltime, b"Node": node}
        return bytes([SerfMessageType.JOIN]) + msgpack.packb(body, use_bin_type=False)
    body = {b"LTime": intent.ltime, b"Node": node, b"Prune": bool(intent.prune)}
    return bytes([SerfMessageType.LEAVE]) + msgpack.packb(body, use_bin_type=False)


def decode_intent(payload: bytes) -> JoinIntent | LeaveIntent | None:
    """Decode a Serf join/leave intent; None for any other Serf message (we ignore those)."""
    if not payload or payload[0] not in (SerfMessageType.JOIN, SerfMessageType.LEAVE):
        return None
    try:
        obj = msgpack.unpackb(payload[1:], raw=True)
    except msgpack.ExtraData as exc:
        obj = exc.unpacked
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"bad serf intent: {exc}") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("serf intent is not a map")
    ltime = obj.get(b"LTime", 0)
    node = obj.get(b"Node", b"")
    if not isinstance(ltime, int) or ltime < 0 or not isinstance(node, (bytes, str)):
        raise RemoteProtocolError("bad serf intent fields")
    name = node.decode("utf-8", "surrogateescape") if isinstance(node, bytes) else node
    if payload[0] == SerfMessageType.JOIN:
        return JoinIntent(ltime, name)
    prune = obj.get(b"Prune", False)
    return LeaveIntent(ltime, name, bool(prune))


def push_pull_ltime(user_state: bytes) -> int | None:
    """The member Lamport time in Serf's push/pull user state, if that is what it is."""
    if not user_state or user_state[0] != SerfMessageType.PUSH_PULL:
        return None
    try:
        obj = msgpack.unpackb(user_state[1:], raw=True, strict_map_key=False)
    except msgpack.ExtraData as exc:
        obj = exc.unpacked
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not isinstance(obj, dict):
        return None
    ltime = obj.get(b"LTime")
    return ltime if isinstance(ltime, int) and ltime >= 0 else None


class LamportClock:
    """Serf's member-intent clock: ``witness`` what we hear, ``increment`` to send."""

    __slots__ = ("time",)

    def __init__(self) -> None:
        self.time = 0

    def witness(self, ltime: int) -> None:
        # Serf's LamportClock.Witness: stay at least one ahead of anything seen.
        if ltime >= self.time:
            self.time = ltime + 1

    def increment(self) -> int:
        self.time += 1
        return self.time
