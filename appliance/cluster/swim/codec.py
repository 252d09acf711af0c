"""memberlist's unencrypted wire format: the one converter between bytes and messages.

Pure functions, bytes in and bytes out.  What the bytes look like is fixed by HashiCorp
memberlist (net.go, util.go) encoding Go structs with go-msgpack's default ``MsgpackHandle``:

* one type byte, then one msgpack object: a map keyed by the exact Go field name,
  ``omitempty`` fields left out when zero.  go-msgpack 0.5.x (what Debian's serf is built
  with) writes struct maps with the keys *sorted by name*, not in field order; we do the same,
  which the captured sample confirms byte for byte (LZW sizes only match with sorted keys);
* ``string`` and ``[]byte`` are both old-spec "raw" strings (fixstr / str16 / str32, never str8
  or bin): ``msgpack.packb(..., use_bin_type=False)``;  ``Vsn`` and IPs are byte strings;
* nil byte slices are msgpack nil; decoders accept any int width, nil for empty bytes, str or
  bin for bytes, and ignore unknown keys;
* wrappers: ``compound`` (u8 count, u16 BE lengths, parts), ``hasCrc`` (u32 BE CRC-32 IEEE of
  the rest), ``compress`` (msgpack ``{Algo: 0, Buf}`` holding Go ``compress/lzw`` LSB, literal
  width 8).  We decode LZW from anyone and never need to send it; the encoder exists for tests
  and is a faithful port of Go's so sizes in captures can be checked.
* TCP streams have no length prefix: a message ends where its msgpack objects end, except
  push/pull user state and stream user messages, whose raw bytes follow with a length given in
  the header.  :func:`stream_frame_length` finds that end incrementally.

Encryption (type 10) and labels (244) are not supported: such input is a RemoteProtocolError.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Union

import msgpack

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MessageType",
    "Ping",
    "IndirectPing",
    "Ack",
    "Nack",
    "Suspect",
    "Alive",
    "Dead",
    "User",
    "ErrResp",
    "PushNodeState",
    "PushPull",
    "UserStream",
    "Message",
    "StreamMessage",
    "Decoded",
    "encode",
    "encode_stream",
    "decode_message",
    "decode_packet",
    "decode_stream",
    "stream_frame_length",
    "make_compound",
    "make_compounds",
    "decode_compound",
    "add_crc",
    "compress",
    "lzw_compress",
    "lzw_decompress",
    "COMPOUND_HEADER_OVERHEAD",
    "COMPOUND_OVERHEAD",
    "CRC_OVERHEAD",
    "META_MAX_SIZE",
]


class MessageType(IntEnum):
    """memberlist message type byte (net.go ``messageType``).

    APPEND ONLY: the numeric values are the protocol.  Never renumber, never reuse.
    """

    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13
    # Deliberately high so it cannot be mistaken for a type or an encryption version.
    HAS_LABEL = 244


#: memberlist util.go: bytes assumed for the compound header and for each part's length.
COMPOUND_HEADER_OVERHEAD = 2
COMPOUND_OVERHEAD = 2
#: hasCrc type byte + u32.
CRC_OVERHEAD = 5
#: memberlist MetaMaxSize: the whole Meta field, Serf tags included.
META_MAX_SIZE = 512
#: Compression algorithm 0 (the only one) is LZW.
LZW_ALGO = 0
#: Bound on what one datagram may decompress to (memberlist HEAD uses 1 MiB).
MAX_PACKET_DECOMPRESSED = 1 << 20
#: Bound on one stream message (memberlist HEAD: 2 x 20 MiB).
MAX_STREAM_BYTES = 40 * 1024 * 1024
#: Bound on node states in one push/pull (memberlist HEAD maxPushStateNodes).
MAX_PUSH_NODES = 1024 * 1024


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: direct probe.  ``node`` is the target's name; it drops pings not for it."""

    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """``indirectPingReq``: ask a peer to ping ``node`` at ``target:port`` for us."""

    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """``ackResp``.  Serf puts a Vivaldi coordinate in ``payload``; we send it empty."""

    seq_no: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Nack:
    """``nackResp``: an indirect prober could not reach the target in time."""

    seq_no: int


@dataclass(frozen=True, slots=True)
class Suspect:
    incarnation: int
    node: str
    from_node: str


@dataclass(frozen=True, slots=True)
class Alive:
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes
    #: ``[pmin, pmax, pcur, dmin, dmax, dcur]`` as a 6-byte string.
    vsn: bytes


@dataclass(frozen=True, slots=True)
class Dead:
    """``dead``.  ``from_node == node`` means a graceful leave (state left, not dead)."""

    incarnation: int
    node: str
    from_node: str


@dataclass(frozen=True, slots=True)
class User:
    """A memberlist user message over UDP: raw delegate bytes (Serf's layer lives here)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ErrResp:
    """``errResp``: a TCP reply saying the request was refused."""

    error: str


@dataclass(frozen=True, slots=True)
class PushNodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    #: 0 alive, 1 suspect, 2 dead, 3 left (state.State values).
    state: int
    vsn: bytes


@dataclass(frozen=True, slots=True)
class PushPull:
    """A whole push/pull stream message: header, node states and raw user state."""

    join: bool
    states: tuple[PushNodeState, ...]
    user_state: bytes = b""


@dataclass(frozen=True, slots=True)
class UserStream:
    """A memberlist user message sent over TCP (``userMsgHeader`` + raw bytes)."""

    payload: bytes


Message = Union[Ping, IndirectPing, Ack, Nack, Suspect, Alive, Dead, User, ErrResp]
StreamMessage = Union[PushPull, Ping, Ack, ErrResp, UserStream]


# Field tables: (Go name, attribute, kind, omitempty).  Kinds: u = unsigned int, i = int,
# s = string, b = bytes, t = bool.  Listed in Go struct order; written sorted by name.
_F = tuple[tuple[bytes, str, str, bool], ...]
_FIELDS: dict[type, _F] = {
    Ping: (
        (b"SeqNo", "seq_no", "u", False),
        (b"Node", "node", "s", False),
        (b"SourceAddr", "source_addr", "b", True),
        (b"SourcePort", "source_port", "u", True),
        (b"SourceNode", "source_node", "s", True),
    ),
    IndirectPing: (
        (b"SeqNo", "seq_no", "u", False),
        (b"Target", "target", "b", False),
        (b"Port", "port", "u", False),
        (b"Node", "node", "s", False),
        (b"Nack", "nack", "t", False),
        (b"SourceAddr", "source_addr", "b", True),
        (b"SourcePort", "source_port", "u", True),
        (b"SourceNode", "source_node", "s", True),
    ),
    Ack: ((b"SeqNo", "seq_no", "u", False), (b"Payload", "payload", "b", False)),
    Nack: ((b"SeqNo", "seq_no", "u", False),),
    Suspect: (
        (b"Incarnation", "incarnation", "u", False),
        (b"Node", "node", "s", False),
        (b"From", "from_node", "s", False),
    ),
    Alive: (
        (b"Incarnation", "incarnation", "u", False),
        (b"Node", "node", "s", False),
        (b"Addr", "addr", "b", False),
        (b"Port", "port", "u", False),
        (b"Meta", "meta", "b", False),
        (b"Vsn", "vsn", "b", False),
    ),
    Dead: (
        (b"Incarnation", "incarnation", "u", False),
        (b"Node", "node", "s", False),
        (b"From", "from_node", "s", False),
    ),
    ErrResp: ((b"Error", "error", "s", False),),
    PushNodeState: (
        (b"Name", "name", "s", False),
        (b"Addr", "addr", "b", False),
        (b"Port", "port", "u", False),
        (b"Meta", "meta", "b", False),
        (b"Incarnation", "incarnation", "u", False),
        (b"State", "state", "i", False),
        (b"Vsn", "vsn", "b", False),
    ),
}

_WIRE_ORDER: dict[type, _F] = {cls: tuple(sorted(f, key=lambda x: x[0])) for cls, f in _FIELDS.items()}

_TYPE_OF: dict[type, MessageType] = {
    Ping: MessageType.PING,
    IndirectPing: MessageType.INDIRECT_PING,
    Ack: MessageType.ACK,
    Nack: MessageType.NACK,
    Suspect: MessageType.SUSPECT,
    Alive: MessageType.ALIVE,
    Dead: MessageType.DEAD,
    ErrResp: MessageType.ERR,
}
_CLASS_OF: dict[int, type] = {int(t): c for c, t in _TYPE_OF.items()}

def _s2b(value: str) -> bytes:
    # Go strings are byte strings; surrogateescape keeps non-UTF-8 names round-tripping.
    return value.encode("utf-8", "surrogateescape")


def _b2s(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def _to_map(msg: Any) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for go, attr, kind, omitempty in _WIRE_ORDER[type(msg)]:
        value = getattr(msg, attr)
        if omitempty and not value:
            continue
        if kind == "s":
            value = _s2b(value)
        elif kind == "b":
            # Go encodes a nil slice as msgpack nil; we never distinguish nil from empty.
            value = bytes(value) if value else None
        elif kind == "t":
            value = bool(value)
        elif kind in ("u", "i"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise LocalProtocolError(f"{type(msg).__name__}.{attr} must be an int")
            if kind == "u" and value < 0:
                raise LocalProtocolError(f"{type(msg).__name__}.{attr} must be >= 0")
        out[go] = value
    return out


def _from_map(cls: type, obj: Any) -> Any:
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"{cls.__name__}: expected a map, got {type(obj).__name__}")
    kwargs: dict[str, Any] = {}
    for go, attr, kind, _omitempty in _FIELDS[cls]:
        value = obj.get(go)
        if value is None:
            if kind in ("u", "i"):
                value = 0
            elif kind == "s":
                value = ""
            elif kind == "b":
                value = b""
            else:
                value = False
        elif kind in ("u", "i"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise RemoteProtocolError(f"{cls.__name__}.{go.decode()}: not an integer")
            if kind == "u" and value < 0:
                raise RemoteProtocolError(f"{cls.__name__}.{go.decode()}: negative")
        elif kind == "s":
            if not isinstance(value, (bytes, str)):
                raise RemoteProtocolError(f"{cls.__name__}.{go.decode()}: not a string")
            value = _b2s(value) if isinstance(value, bytes) else value
        elif kind == "b":
            if isinstance(value, str):
                value = _s2b(value)
            elif isinstance(value, list) and all(isinstance(x, int) and 0 <= x < 256 for x in value):
                value = bytes(value)  # a []uint8 some encoder wrote as an array
            elif not isinstance(value, bytes):
                raise RemoteProtocolError(f"{cls.__name__}.{go.decode()}: not bytes")
        elif kind == "t":
            if not isinstance(value, bool):
                raise RemoteProtocolError(f"{cls.__name__}.{go.decode()}: not a bool")
        kwargs[attr] = value
    return cls(**kwargs)


def _unpack_one(body: bytes) -> Any:
    """The first msgpack object of ``body``; trailing bytes are ignored like Go's decoder."""
    try:
        return msgpack.unpackb(body, raw=True, strict_map_key=False)
    except msgpack.ExtraData as exc:
        return exc.unpacked
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteProtocolError(f"bad msgpack: {exc}") from None


# --------------------------------------------------------------------------- encoding


def encode(msg: Message) -> bytes:
    """One message: type byte + msgpack body (or raw payload for :class:`User`)."""
    if isinstance(msg, User):
        return bytes([MessageType.USER]) + msg.payload
    try:
        mtype = _TYPE_OF[type(msg)]
    except KeyError:
        raise LocalProtocolError(f"cannot encode {type(msg).__name__} as a packet") from None
    return bytes([mtype]) + _packb(_to_map(msg))


def encode_stream(msg: StreamMessage) -> bytes:
    """One TCP stream message, uncompressed (we never need to send LZW)."""
    if isinstance(msg, PushPull):
        head = {b"Join": bool(msg.join), b"Nodes": len(msg.states), b"UserStateLen": len(msg.user_state)}
        parts = [bytes([MessageType.PUSH_PULL]), _packb(head)]
        parts.extend(_packb(_to_map(s)) for s in msg.states)
        parts.append(msg.user_state)
        return b"".join(parts)
    if isinstance(msg, UserStream):
        return bytes([MessageType.USER]) + _packb({b"UserMsgLen": len(msg.payload)}) + msg.payload
    if isinstance(msg, (Ping, Ack, ErrResp)):
        return encode(msg)
    raise LocalProtocolError(f"cannot encode {type(msg).__name__} as a stream message")


def make_compound(parts: list[bytes]) -> bytes:
    """``compound``: u8 count, u16 BE length of each part, then the parts (util.go)."""
    if len(parts) > 255:
        raise LocalProtocolError("a compound message holds at most 255 parts")
    out = bytearray((MessageType.COMPOUND, len(parts)))
    for part in parts:
        if len(part) > 0xFFFF:
            raise LocalProtocolError("compound part longer than 65535 bytes")
        out += struct.pack(">H", len(part))
    for part in parts:
        out += part
    return bytes(out)


def make_compounds(parts: list[bytes]) -> list[bytes]:
    """Split into as many 255-part compounds as needed (memberlist makeCompoundMessages)."""
    return [make_compound(parts[i : i + 255]) for i in range(0, len(parts), 255)]


def add_crc(data: bytes) -> bytes:
    """``hasCrc`` wrapper: only for receivers whose PMax >= 5."""
    return struct.pack(">BI", MessageType.HAS_CRC, zlib.crc32(data) & 0xFFFFFFFF) + data


def compress(data: bytes) -> bytes:
    """``compress`` wrapper around ``data`` (a whole message).  Tests and fixtures only."""
    return bytes([MessageType.COMPRESS]) + _packb({b"Algo": LZW_ALGO, b"Buf": lzw_compress(data)})


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one datagram held.  Bad parts of a compound are reported, good ones still count."""

    messages: tuple[Message, ...]
    errors: tuple[RemoteProtocolError, ...] = ()
    #: Compound parts cut off by the end of the datagram.
    truncated: int = 0


def decode_message(data: bytes) -> Message:
    """Decode one plain message (no wrappers)."""
    if not data:
        raise RemoteProtocolError("empty message")
    mtype = data[0]
    if mtype == MessageType.USER:
        return User(bytes(data[1:]))
    cls = _CLASS_OF.get(mtype)
    if cls is None:
        raise RemoteProtocolError(f"message type {mtype} not supported here")
    return _from_map(cls, _unpack_one(data[1:]))


def decode_compound(body: bytes) -> tuple[int, list[bytes]]:
    """memberlist decodeCompoundMessage: ``(truncated parts, parts)`` of a compound body."""
    if len(body) < 1:
        raise RemoteProtocolError("missing compound length byte")
    n = body[0]
    if len(body) < 1 + 2 * n:
        raise RemoteProtocolError("truncated len slice")
    lengths = struct.unpack_from(f">{n}H", body, 1)
    pos = 1 + 2 * n
    parts: list[bytes] = []
    for idx, length in enumerate(lengths):
        if len(body) - pos < length:
            return n - idx, parts
        parts.append(body[pos : pos + length])
        pos += length
    return 0, parts


def _unwrap_compress(body: bytes, limit: int) -> bytes:
    obj = _unpack_one(body)
    if not isinstance(obj, dict):
        raise RemoteProtocolError("compress: expected a map")
    algo = obj.get(b"Algo", 0)
    buf = obj.get(b"Buf") or b""
    if algo != LZW_ALGO:
        raise RemoteProtocolError(f"cannot decompress unknown algorithm {algo!r}")
    if not isinstance(buf, bytes):
        raise RemoteProtocolError("compress: Buf is not bytes")
    return lzw_decompress(buf, limit=limit)


def decode_packet(data: bytes, *, max_decompressed: int = MAX_PACKET_DECOMPRESSED) -> Decoded:
    """Decode a datagram: strip CRC, then compress/compound (each at most once), then messages.

    Raises RemoteProtocolError if the datagram as a whole is unusable (empty, bad CRC, label,
    encryption).  A bad part inside a compound is reported in ``errors`` and the rest kept.
    """
    if not data:
        raise RemoteProtocolError("empty packet")
    if data[0] == MessageType.HAS_CRC:
        if len(data) < CRC_OVERHEAD:
            raise RemoteProtocolError("truncated CRC header")
        (expected,) = struct.unpack_from(">I", data, 1)
        data = data[CRC_OVERHEAD:]
        if zlib.crc32(data) & 0xFFFFFFFF != expected:
            raise RemoteProtocolError("invalid checksum")
    if data and data[0] in (MessageType.HAS_LABEL, MessageType.ENCRYPT):
        raise RemoteProtocolError("labelled or encrypted packets are not supported")
    messages: list[Message] = []
    errors: list[RemoteProtocolError] = []
    truncated = 0

    def walk(buf: bytes, in_compound: bool, in_compress: bool) -> None:
        nonlocal truncated
        if not buf:
            raise RemoteProtocolError("missing message type byte")
        mtype = buf[0]
        if mtype == MessageType.COMPOUND:
            if in_compound:
                raise RemoteProtocolError("nested compound message")
            trunc, parts = decode_compound(buf[1:])
            truncated += trunc
            for part in parts:
                try:
                    walk(part, True, in_compress)
                except RemoteProtocolError as exc:
                    errors.append(exc)
        elif mtype == MessageType.COMPRESS:
            if in_compress:
                raise RemoteProtocolError("nested compressed message")
            walk(_unwrap_compress(buf[1:], max_decompressed), in_compound, True)
        else:
            messages.append(decode_message(buf))

    walk(data, False, False)
    return Decoded(tuple(messages), tuple(errors), truncated)


class _NeedMore(Exception):
    pass


def _stream_end(buf: bytes, limit: int) -> int:
    """Offset just past the first stream message in ``buf``; _NeedMore if incomplete."""
    if not buf:
        raise _NeedMore
    mtype = buf[0]
    if mtype == MessageType.ENCRYPT:
        raise RemoteProtocolError("remote state is encrypted and encryption is not configured")
    if mtype == MessageType.HAS_LABEL:
        raise RemoteProtocolError("labelled streams are not supported")
    if mtype not in (
        MessageType.PUSH_PULL,
        MessageType.COMPRESS,
        MessageType.PING,
        MessageType.ACK,
        MessageType.ERR,
        MessageType.USER,
    ):
        raise RemoteProtocolError(f"invalid stream message type {mtype}")
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=max(limit, 1024))
    unpacker.feed(buf[1 : limit + 1])

    def one() -> Any:
        try:
            return unpacker.unpack()
        except msgpack.OutOfData:
            raise _NeedMore from None
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise RemoteProtocolError(f"bad msgpack in stream: {exc}") from None

    head = one()
    if mtype == MessageType.PUSH_PULL:
        if not isinstance(head, dict):
            raise RemoteProtocolError("push/pull header is not a map")
        nodes = head.get(b"Nodes") or 0
        user_len = head.get(b"UserStateLen") or 0
        if not isinstance(nodes, int) or not isinstance(user_len, int) or nodes < 0 or user_len < 0:
            raise RemoteProtocolError("bad push/pull header")
        if nodes > MAX_PUSH_NODES or user_len > limit:
            raise RemoteProtocolError("push/pull state larger than the limit")
        for _ in range(nodes):
            one()
        end = 1 + unpacker.tell() + user_len
    elif mtype == MessageType.USER:
        if not isinstance(head, dict):
            raise RemoteProtocolError("user message header is not a map")
        length = head.get(b"UserMsgLen") or 0
        if not isinstance(length, int) or not 0 <= length <= limit:
            raise RemoteProtocolError("bad user message length")
        end = 1 + unpacker.tell() + length
    else:
        end = 1 + unpacker.tell()
    if end > limit:
        raise RemoteProtocolError("stream message larger than the limit")
    if len(buf) < end:
        raise _NeedMore
    return end


def stream_frame_length(buf: bytes, *, limit: int = MAX_STREAM_BYTES) -> int | None:
    """How many bytes the first stream message in ``buf`` takes, or None if more are needed.

    Transports read until this returns a number, then hand exactly those bytes to the core.
    Raises RemoteProtocolError if the bytes can never become a valid message.
    """
    try:
        return _stream_end(buf, limit)
    except _NeedMore:
        if len(buf) > limit:
            raise RemoteProtocolError("stream message larger than the limit") from None
        return None


def decode_stream(data: bytes, *, limit: int = MAX_STREAM_BYTES) -> StreamMessage:
    """Decode one complete stream message (as delimited by :func:`stream_frame_length`)."""
    end = stream_frame_length(data, limit=limit)
    if end is None:
        raise RemoteProtocolError("truncated stream message")
    mtype = data[0]
    if mtype == MessageType.COMPRESS:
        inner = _unwrap_compress(data[1:end], limit)
        if inner[:1] == bytes([MessageType.COMPRESS]):
            raise RemoteProtocolError("nested compressed stream message")
        return decode_stream(inner, limit=limit)
    if mtype == MessageType.PUSH_PULL:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=max(limit, 1024))
        unpacker.feed(data[1:end])
        head = unpacker.unpack()
        states = tuple(_from_map(PushNodeState, unpacker.unpack()) for _ in range(head.get(b"Nodes") or 0))
        user_len = head.get(b"UserStateLen") or 0
        user_state = bytes(data[end - user_len : end]) if user_len else b""
        join = head.get(b"Join") or False
        if not isinstance(join, bool):
            raise RemoteProtocolError("push/pull Join is not a bool")
        return PushPull(join=join, states=states, user_state=user_state)
    if mtype == MessageType.USER:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=max(limit, 1024))
        unpacker.feed(data[1:end])
        head = unpacker.unpack()
        length = head.get(b"UserMsgLen") or 0
        return UserStream(bytes(data[end - length : end]))
    msg = decode_message(data[:end])
    assert isinstance(msg, (Ping, Ack, ErrResp))
    return msg


# --------------------------------------------------------------------------- LZW (Go compress/lzw)

_LZW_LIT = 8
_LZW_CLEAR = 1 << _LZW_LIT
_LZW_EOF = _LZW_CLEAR + 1
_LZW_MAX_CODE = (1 << 12) - 1
_LZW_MAX_WIDTH = 12


def lzw_compress(data: bytes) -> bytes:
    """Go ``lzw.NewWriter(w, lzw.LSB, 8)`` byte for byte: clear code first, EOF code last."""
    out = bytearray()
    bits = 0
    nbits = 0
    width = _LZW_LIT + 1
    hi = _LZW_EOF
    overflow = 1 << (_LZW_LIT + 1)
    table: dict[int, int] = {}

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    def inc_hi() -> bool:
        """Advance hi; True when out of codes (a clear was sent and the table reset)."""
        nonlocal hi, width, overflow
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _LZW_MAX_CODE:
            emit(_LZW_CLEAR)
            width = _LZW_LIT + 1
            hi = _LZW_EOF
            overflow = 1 << (_LZW_LIT + 1)
            table.clear()
            return True
        return False

    emit(_LZW_CLEAR)
    if not data:
        emit(_LZW_EOF)
    else:
        code = data[0]
        for literal in data[1:]:
            key = (code << 8) | literal
            hit = table.get(key)
            if hit is not None:
                code = hit
                continue
            emit(code)
            code = literal
            if inc_hi():
                continue
            table[key] = hi
        emit(code)
        inc_hi()
        emit(_LZW_EOF)
    if nbits > 0:
        out.append(bits & 0xFF)
    return bytes(out)


def lzw_decompress(data: bytes, *, limit: int = MAX_STREAM_BYTES) -> bytes:
    """Go ``lzw.NewReader(r, lzw.LSB, 8)``, read to the EOF code (missing EOF is an error)."""
    out = bytearray()
    prefix = [0] * (1 << _LZW_MAX_WIDTH)
    suffix = [0] * (1 << _LZW_MAX_WIDTH)
    width = _LZW_LIT + 1
    hi = _LZW_EOF
    overflow = 1 << width
    last = -1
    bits = 0
    nbits = 0
    pos = 0
    n = len(data)
    while True:
        while nbits < width:
            if pos >= n:
                raise RemoteProtocolError("lzw: unexpected end of data")
            bits |= data[pos] << nbits
            pos += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code < _LZW_CLEAR:
            out.append(code)
            if last != -1:
                suffix[hi] = code
                prefix[hi] = last
        elif code == _LZW_CLEAR:
            width = _LZW_LIT + 1
            hi = _LZW_EOF
            overflow = 1 << width
            last = -1
            continue
        elif code == _LZW_EOF:
            return bytes(out)
        elif code <= hi:
            chunk = bytearray()
            c = code
            if code == hi and last != -1:
                # code == hi: the last expansion followed by its own first byte.
                c = last
                while c >= _LZW_CLEAR:
                    c = prefix[c]
                tail = c
                c = last
            else:
                tail = None
            while c >= _LZW_CLEAR:
                chunk.append(suffix[c])
                c = prefix[c]
            chunk.append(c)
            chunk.reverse()
            if tail is not None:
                chunk.append(tail)
            out += chunk
            if last != -1:
                suffix[hi] = chunk[0]
                prefix[hi] = last
        else:
            raise RemoteProtocolError("lzw: invalid code")
        if len(out) > limit:
            raise RemoteProtocolError("lzw: decompressed data larger than the limit")
        last = code
        hi += 1
        if hi >= overflow:
            if width == _LZW_MAX_WIDTH:
                last = -1
                hi -= 1
            else:
                width += 1
                overflow = 1 << width
