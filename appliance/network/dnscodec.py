"""DNS messages (RFC 1035), the part an embedded resolver needs: parse a query, build an answer.

Pure bytes in, bytes out. A malformed datagram raises `FormatError`; the server drops it (or
answers FORMERR when the header at least parsed). Names are returned lower-case without the
trailing dot. Answers point back at the question's name (compression pointer 0xC00C), so they
stay small; one that still exceeds the transport's limit (512 bytes over UDP) goes out with no
records and TC set, and the client asks again over TCP.

TCP (RFC 1035 4.2.2, RFC 7766): every message is preceded by its length as two bytes, network
order. `frame()` writes that; `StreamDecoder` takes bytes as they arrive and hands out whole
messages, or raises `FormatError` for a length no DNS message can have.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple

# Values are the protocol: append only.
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5

OPCODE_QUERY = 0

_HEADER = struct.Struct("!HHHHHH")
_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100
_FLAG_RA = 0x0080
MAX_UDP = 512  # RFC 1035 2.3.4, without EDNS (which we do not speak)
MAX_TCP = 0xFFFF  # the most a 2-byte length prefix can carry
_LENGTH = struct.Struct("!H")


class FormatError(ValueError):
    """Not a DNS message we can read."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str      # lower-case, no trailing dot; "" is the root
    qtype: int
    qclass: int
    question: bytes  # the question section as received (echoed in the answer)
    raw: bytes       # the whole datagram (forwarded as is)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _FLAG_QR)


class Record(NamedTuple):
    rtype: int
    ttl: int
    rdata: bytes


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int]:
    if len(data) < _HEADER.size:
        raise FormatError("short header")
    return _HEADER.unpack_from(data)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at `offset`: (name, offset just past it in the message)."""
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise FormatError("name runs past the end")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise FormatError("truncated pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            if jumps > 32:
                raise FormatError("compression loop")
            continue
        if length & 0xC0:
            raise FormatError("bad label type")
        offset += 1
        if length == 0:
            break
        label = data[offset:offset + length]
        if len(label) != length:
            raise FormatError("label runs past the end")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    name = ".".join(labels)
    if len(name) > 253:
        raise FormatError("name too long")
    return name, end if end is not None else offset


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def parse_query(data: bytes) -> Query:
    qid, flags, qdcount, _, _, _ = parse_header(data)
    if flags & _FLAG_QR:
        raise FormatError("not a query")
    if qdcount != 1:
        raise FormatError("exactly one question expected")
    name, offset = _read_name(data, _HEADER.size)
    if offset + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Query(qid, flags, name, qtype, qclass, data[_HEADER.size:offset + 4], data)


def response(query: Query, rcode: int, answers: list[Record] = (), *, recursion_available: bool = True,
             max_size: int = MAX_UDP) -> bytes:
    """The answer to `query`: its question echoed, `answers` for the question's name; longer than
    `max_size` (the transport's limit): no records and TC set, so the client retries over TCP."""
    flags = _FLAG_QR | _FLAG_AA | (query.flags & _FLAG_RD) | (_FLAG_RA if recursion_available else 0)
    flags |= (query.opcode << 11) | (rcode & 0xF)
    body = bytearray(_HEADER.pack(query.id, flags, 1, len(answers), 0, 0))
    body += query.question
    for rec in answers:
        body += struct.pack("!HHHIH", 0xC00C, rec.rtype, CLASS_IN, rec.ttl, len(rec.rdata)) + rec.rdata
    if len(body) > max_size:  # ~30 endpoints sharing an alias exceed UDP's 512 bytes
        body = bytearray(_HEADER.pack(query.id, flags | _FLAG_TC, 1, 0, 0, 0)) + query.question
    return bytes(body)


def format_error(data: bytes) -> bytes | None:
    """FORMERR for a datagram whose header parsed (None: not even that, drop it)."""
    try:
        qid, flags, *_ = parse_header(data)
    except FormatError:
        return None
    if flags & _FLAG_QR:
        return None
    return _HEADER.pack(qid, _FLAG_QR | (flags & 0x7800) | (flags & _FLAG_RD) | RCODE_FORMERR, 0, 0, 0, 0)


def a_record(ip: IPv4Address, ttl: int = 600) -> Record:
    return Record(TYPE_A, ttl, ip.packed)


def ptr_record(name: str, ttl: int = 600) -> Record:
    return Record(TYPE_PTR, ttl, encode_name(name))


def reverse_name(name: str) -> IPv4Address | None:
    """The address a `d.c.b.a.in-addr.arpa` name asks about, else None."""
    suffix = ".in-addr.arpa"
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return IPv4Address(".".join(reversed(parts)))


def with_id(message: bytes, qid: int) -> bytes:
    """A forwarded answer given back the client's query id."""
    return struct.pack("!H", qid) + message[2:]


# ---- TCP framing (RFC 1035 4.2.2) ---------------------------------------------------------------


def frame(message: bytes) -> bytes:
    """One message for a TCP stream: its 2-byte length, then the message."""
    if not _HEADER.size <= len(message) <= MAX_TCP:
        raise ValueError(f"a DNS message over TCP is 12 to 65535 bytes, not {len(message)}")
    return _LENGTH.pack(len(message)) + message


class StreamDecoder:
    """Whole messages out of a TCP byte stream. Sans-IO: `feed()` what arrived, then call
    `next_message()` until it answers None. A length shorter than a DNS header cannot be a
    message: `FormatError`, and the stream is beyond repair (the caller closes it). The buffer
    holds at most one message plus what one read brought, as long as the caller reads only
    when `next_message()` has nothing."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | None:
        if len(self._buf) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buf)
        if length < _HEADER.size:
            raise FormatError(f"a TCP message of {length} bytes")
        end = _LENGTH.size + length
        if len(self._buf) < end:
            return None
        message = bytes(self._buf[_LENGTH.size:end])
        del self._buf[:end]
        return message

    @property
    def pending(self) -> int:
        """Bytes received and not yet handed out (part of a message, or several)."""
        return len(self._buf)


# ---- client side: used by tests, the bench and the forwarder -----------------------------------


def query(qid: int, name: str, qtype: int = TYPE_A, recursion_desired: bool = True) -> bytes:
    flags = _FLAG_RD if recursion_desired else 0
    return _HEADER.pack(qid, flags, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


@dataclass(frozen=True, slots=True)
class Answer:
    id: int
    rcode: int
    truncated: bool
    records: tuple[tuple[str, int, bytes], ...]  # (name, type, rdata)

    def addresses(self) -> list[IPv4Address]:
        return [IPv4Address(rdata) for _, rtype, rdata in self.records if rtype == TYPE_A and len(rdata) == 4]


def parse_answer(data: bytes) -> Answer:
    qid, flags, qdcount, ancount, _, _ = parse_header(data)
    if not flags & _FLAG_QR:
        raise FormatError("not a response")
    offset = _HEADER.size
    for _ in range(qdcount):
        _, offset = _read_name(data, offset)
        offset += 4
    records = []
    for _ in range(ancount):
        name, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise FormatError("truncated record")
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset:offset + rdlen]
        if rtype == TYPE_PTR:
            target, _ = _read_name(data, offset)
            rdata = target.encode()
        records.append((name, rtype, rdata))
        offset += rdlen
    return Answer(qid, flags & 0xF, bool(flags & _FLAG_TC), tuple(records))
