"""codec.py: memberlist's wire format, bytes in and bytes out.

The captured sample (three real Serf 0.9.4 agents, tests/cluster/data) holds decoded field
values and the exact byte length of every frame.  Rebuilding each frame with our encoder must
give exactly those lengths, including the LZW-compressed sizes, which only match if every
byte before compression is Go's (sorted map keys, raw strings, int widths); decoding our
rebuild must give the fields back.  memberlist's util_test.go compound tests are ported too,
and hypothesis fuzzes the decoders: garbage is a RemoteProtocolError, never a crash.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.cluster.swim import codec, serf
from appliance.cluster.swim.codec import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    MessageType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
    UserStream,
)
from appliance.cluster.swim.errors import RemoteProtocolError

SAMPLE = Path(__file__).parent / "data" / "memberlist-decoded-sample.txt"


# --------------------------------------------------------------------------- protocol constants


def test_message_type_values_are_the_protocol() -> None:
    # APPEND ONLY: these numbers are on the wire (memberlist net.go).
    assert [(t.name, int(t)) for t in MessageType] == [
        ("PING", 0),
        ("INDIRECT_PING", 1),
        ("ACK", 2),
        ("SUSPECT", 3),
        ("ALIVE", 4),
        ("DEAD", 5),
        ("PUSH_PULL", 6),
        ("COMPOUND", 7),
        ("USER", 8),
        ("COMPRESS", 9),
        ("ENCRYPT", 10),
        ("NACK", 11),
        ("HAS_CRC", 12),
        ("ERR", 13),
        ("HAS_LABEL", 244),
    ]
    assert [(t.name, int(t)) for t in serf.SerfMessageType][:3] == [("LEAVE", 0), ("JOIN", 1), ("PUSH_PULL", 2)]


def test_strings_and_bytes_are_raw_str_never_str8_or_bin() -> None:
    alive = Alive(1, "n" * 40, b"\x7f\x00\x00\x01", 7946, b"\xff" + b"m" * 40, b"\x01\x05\x02\x02\x05\x04")
    data = codec.encode(alive)
    assert b"\xd9" not in data[:3]  # no str8 header anywhere near the start
    assert b"\xda\x00\x28" + b"n" * 40 in data  # str16 for a 40-byte name, as Go writes it
    assert b"\xc4" not in data and b"\xc5" not in data
    # Keys are written sorted by name, like go-msgpack 0.5 does.
    obj = msgpack.unpackb(data[1:], raw=True)
    assert list(obj) == sorted(obj)


# --------------------------------------------------------------------------- memberlist util_test.go


def test_encode_decode_ping() -> None:
    # TestEncodeDecode
    data = codec.encode(Ping(seq_no=100, node=""))
    assert codec.decode_message(data) == Ping(100, "")


def test_make_compound_message() -> None:
    # TestMakeCompoundMessage: 3 parts + 3 * compoundOverhead + compoundHeaderOverhead
    msg = codec.encode(Ping(100, ""))
    compound = codec.make_compound([msg, msg, msg])
    assert len(compound) == 3 * len(msg) + 3 * codec.COMPOUND_OVERHEAD + codec.COMPOUND_HEADER_OVERHEAD


def test_decode_compound_message() -> None:
    # TestDecodeCompoundMessage
    msg = codec.encode(Ping(100, ""))
    trunc, parts = codec.decode_compound(codec.make_compound([msg, msg, msg])[1:])
    assert trunc == 0
    assert parts == [msg, msg, msg]


def test_decode_compound_number_of_parts_overflow() -> None:
    # TestDecodeCompoundMessage_NumberOfPartsOverflow
    with pytest.raises(RemoteProtocolError, match="truncated len slice"):
        codec.decode_compound(b"\x80")


def test_decode_compound_trunc() -> None:
    # TestDecodeCompoundMessage_Trunc: [1:38] keeps two whole pings of 15 bytes.
    msg = codec.encode(Ping(100, ""))
    assert len(msg) == 15  # same size as Go's encoding of ping{SeqNo: 100}
    trunc, parts = codec.decode_compound(codec.make_compound([msg, msg, msg])[1:38])
    assert trunc == 1
    assert parts == [msg, msg]


def test_compress_decompress_payload() -> None:
    # TestCompressDecompressPayload
    wrapped = codec.compress(b"testing")
    assert wrapped[0] == MessageType.COMPRESS
    obj = msgpack.unpackb(wrapped[1:], raw=True)
    assert obj[b"Algo"] == 0
    assert codec.lzw_decompress(obj[b"Buf"]) == b"testing"


def test_compound_splits_at_255_parts() -> None:
    parts = [codec.encode(Nack(i)) for i in range(600)]
    compounds = codec.make_compounds(parts)
    assert [c[1] for c in compounds] == [255, 255, 90]
    decoded = [m for c in compounds for m in codec.decode_packet(c).messages]
    assert decoded == [Nack(i) for i in range(600)]


def test_crc_wrapper_checked() -> None:
    data = codec.add_crc(codec.encode(Nack(7)))
    assert codec.decode_packet(data).messages == (Nack(7),)
    corrupt = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(RemoteProtocolError, match="checksum"):
        codec.decode_packet(corrupt)


def test_nested_compound_and_compress_refused() -> None:
    inner = codec.make_compound([codec.encode(Nack(1))])
    decoded = codec.decode_packet(codec.make_compound([inner, codec.encode(Nack(2))]))
    assert decoded.messages == (Nack(2),)
    assert len(decoded.errors) == 1
    with pytest.raises(RemoteProtocolError, match="nested compressed"):
        codec.decode_packet(codec.compress(codec.compress(codec.encode(Nack(1)))))


def test_labels_and_encryption_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_packet(bytes([244, 3]) + b"abc" + codec.encode(Nack(1)))
    with pytest.raises(RemoteProtocolError):
        codec.stream_frame_length(bytes([10, 0, 0, 0, 4]) + b"abcd")


def test_nil_byte_fields_decode_as_empty() -> None:
    # Go writes nil slices as msgpack nil: an ack from memberlist's TCP ping path.
    data = bytes([MessageType.ACK]) + msgpack.packb({b"Payload": None, b"SeqNo": 9}, use_bin_type=False)
    assert codec.decode_message(data) == Ack(9, b"")
    assert codec.encode(Ack(9)) == data


def test_unknown_fields_ignored_and_bin_accepted() -> None:
    body = {b"Incarnation": 3, b"Node": "x", b"From": "y", b"Extra": [1, 2]}
    assert codec.decode_message(bytes([3]) + msgpack.packb(body, use_bin_type=True)) == Suspect(3, "x", "y")


# --------------------------------------------------------------------------- the captured sample


def _value(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("0x"):
        return bytes.fromhex(v[2:])
    if isinstance(v, dict):
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _go(obj: Any) -> Any:
    """Python value -> what go-msgpack would write: maps sorted by key, strings as raw bytes."""
    if isinstance(obj, dict):
        return {(k.encode() if isinstance(k, str) else k): _go(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_go(x) for x in obj]
    if isinstance(obj, str):
        return obj.encode()
    return obj


_ATTRS = {
    "SeqNo": "seq_no",
    "Node": "node",
    "SourceAddr": "source_addr",
    "SourcePort": "source_port",
    "SourceNode": "source_node",
    "Target": "target",
    "Port": "port",
    "Nack": "nack",
    "Payload": "payload",
    "Incarnation": "incarnation",
    "From": "from_node",
    "Addr": "addr",
    "Meta": "meta",
    "Vsn": "vsn",
    "Name": "name",
    "State": "state",
}
_CLASSES = {
    "ping": Ping,
    "indirectPing": IndirectPing,
    "ack": Ack,
    "nack": Nack,
    "suspect": Suspect,
    "alive": Alive,
    "dead": Dead,
    "pushNodeState": PushNodeState,
}
_SERF_TYPES = {"serf-join": 1, "serf-userEvent": 3, "serf-query": 4, "serf-queryResponse": 5}


def _build(kind: str, fields: dict[str, Any]) -> Any:
    fields = _value(fields)
    if kind.startswith("user/"):
        serf_kind = kind.split("/", 1)[1]
        if serf_kind == "serf-join":
            return User(serf.encode_intent(serf.JoinIntent(fields["LTime"], fields["Node"])))
        return User(bytes([_SERF_TYPES[serf_kind]]) + msgpack.packb(_go(fields), use_bin_type=False))
    return _CLASSES[kind](**{_ATTRS[k]: v for k, v in fields.items()})


def _frames() -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    events_512 = "[" + ", ".join(["None"] * 512) + "]"
    for line in SAMPLE.read_text().splitlines():
        m = re.match(r"^#(\d+) t=[\d.]+ UDP (\d+)->(\d+) len=(\d+)$", line) or re.match(
            r"^(stream \d+) t=[\d.]+ TCP (\d+)->(\d+) len=(\d+)$", line
        )
        if m:
            frames.append({"id": m.group(1), "proto": "TCP" if "TCP" in line else "UDP", "len": int(m.group(4)), "items": []})
            continue
        m = re.match(r"^    ([\w./-]+): (.*)$", line)
        if m and frames:
            key, raw = m.groups()
            raw = raw.replace("[None×N]", events_512)
            value: Any = raw if raw == "ok" else ast.literal_eval(raw)
            frames[-1]["items"].append((key, value))
    return frames


FRAMES = _frames()


def test_sample_has_the_frames() -> None:
    assert len([f for f in FRAMES if f["proto"] == "UDP"]) == 17
    assert len([f for f in FRAMES if f["proto"] == "TCP"]) == 4


@pytest.mark.parametrize("frame", [f for f in FRAMES if f["proto"] == "UDP"], ids=lambda f: f"udp#{f['id']}")
def test_sample_udp_frame_rebuilds_to_the_captured_length_and_decodes(frame: dict[str, Any]) -> None:
    wrappers = [(k, v) for k, v in frame["items"] if k in ("hasCrc", "compress", "compound")]
    messages = [_build(k, v) for k, v in frame["items"] if k not in ("hasCrc", "compress", "compound")]
    parts = [codec.encode(m) for m in messages]
    data = parts[0]
    for key, value in reversed(wrappers):
        if key == "compound":
            assert value == len(parts)
            data = codec.make_compound(parts)
        elif key == "compress":
            assert len(data) == value["out"]
            assert len(codec.lzw_compress(data)) == value["in"]  # byte-exact port of Go's LZW
            data = codec.compress(data)
        elif key == "hasCrc":
            data = codec.add_crc(data)
    assert len(data) == frame["len"]
    decoded = codec.decode_packet(data)
    assert decoded.errors == () and decoded.truncated == 0
    assert list(decoded.messages) == messages
    for msg in messages:
        if isinstance(msg, User) and msg.payload[0] == serf.SerfMessageType.JOIN:
            intent = serf.decode_intent(msg.payload)
            assert isinstance(intent, serf.JoinIntent) and intent.ltime == 1


@pytest.mark.parametrize("frame", [f for f in FRAMES if f["proto"] == "TCP"], ids=lambda f: f["id"])
def test_sample_push_pull_stream_rebuilds_and_decodes(frame: dict[str, Any]) -> None:
    items = dict((k, v) for k, v in frame["items"] if k in ("compress", "pushPull.header", "userState/serf-pushPull"))
    states = tuple(_build(k, v) for k, v in frame["items"] if k == "pushNodeState")
    user_state = bytes([serf.SerfMessageType.PUSH_PULL]) + msgpack.packb(
        _go(_value(items["userState/serf-pushPull"])), use_bin_type=False
    )
    header = items["pushPull.header"]
    assert header["Nodes"] == len(states) and header["UserStateLen"] == len(user_state)
    message = PushPull(header["Join"], states, user_state)
    plain = codec.encode_stream(message)
    assert len(plain) == items["compress"]["out"]
    assert len(codec.lzw_compress(plain)) == items["compress"]["in"]
    wire = codec.compress(plain)
    assert len(wire) == frame["len"]
    # A stream has no length prefix: the frame ends exactly where its msgpack ends.
    for cut in range(len(wire)):
        assert codec.stream_frame_length(wire[:cut]) is None
    assert codec.stream_frame_length(wire + b"trailing") == len(wire)
    assert codec.decode_stream(wire) == message
    assert serf.push_pull_ltime(message.user_state) == 1


def test_sample_tags_decode() -> None:
    assert serf.decode_tags(bytes.fromhex("ff82a4726f6c65a27233a26463a178")) == {"role": "r3", "dc": "x"}
    assert serf.decode_tags(b"plain") == {"role": "plain"}
    assert serf.decode_tags(serf.encode_tags({"gpu": "0", "zone": "a"})) == {"gpu": "0", "zone": "a"}


def test_tags_over_512_bytes_refused() -> None:
    from appliance.cluster.swim.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        serf.encode_tags({"k": "v" * 600})


# --------------------------------------------------------------------------- streams


def test_stream_messages_round_trip_and_frame_incrementally() -> None:
    state = PushNodeState("a", b"\x7f\x00\x00\x01", 7946, b"", 3, 1, bytes([1, 5, 2, 2, 5, 4]))
    messages = [
        PushPull(True, (state, state), b"\x02opaque"),
        PushPull(False, (), b""),
        Ping(5, "a", b"\x7f\x00\x00\x01", 1, "b"),
        Ack(5),
        ErrResp("nope"),
        UserStream(b"\x01hello"),
    ]
    for msg in messages:
        wire = codec.encode_stream(msg)
        for cut in range(len(wire)):
            assert codec.stream_frame_length(wire[:cut]) is None, (msg, cut)
        assert codec.stream_frame_length(wire) == len(wire)
        assert codec.decode_stream(wire) == msg
        assert codec.decode_stream(codec.compress(wire)) == msg


def test_stream_limit_enforced() -> None:
    wire = codec.encode_stream(PushPull(False, (), b"x" * 5000))
    with pytest.raises(RemoteProtocolError):
        codec.stream_frame_length(wire, limit=1000)


# --------------------------------------------------------------------------- fuzzing

names = st.text(max_size=20)
u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
ips = st.sampled_from([b"\x7f\x00\x00\x01", b"\x0a\x00\x00\x02", bytes(range(16))])
blobs = st.binary(max_size=64)

messages_st = st.one_of(
    st.builds(Ping, u32, names, st.one_of(st.just(b""), ips), u16, names),
    st.builds(IndirectPing, u32, ips, u16, names, st.booleans(), st.one_of(st.just(b""), ips), u16, names),
    st.builds(Ack, u32, blobs),
    st.builds(Nack, u32),
    st.builds(Suspect, u32, names, names),
    st.builds(Alive, u32, names, ips, u16, blobs, st.binary(min_size=6, max_size=6)),
    st.builds(Dead, u32, names, names),
    st.builds(User, blobs),
)


@given(st.lists(messages_st, min_size=1, max_size=8), st.booleans(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_messages_round_trip_through_every_wrapper(msgs: list[Any], crc: bool, compressed: bool) -> None:
    parts = [codec.encode(m) for m in msgs]
    data = parts[0] if len(parts) == 1 else codec.make_compound(parts)
    if compressed:
        data = codec.compress(data)
    if crc:
        data = codec.add_crc(data)
    decoded = codec.decode_packet(data)
    assert list(decoded.messages) == msgs
    assert decoded.errors == ()


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_decoding_garbage_only_ever_raises_remote_protocol_error(data: bytes) -> None:
    try:
        codec.decode_packet(data)
    except RemoteProtocolError:
        pass
    try:
        if codec.stream_frame_length(data) is not None:
            codec.decode_stream(data)
    except RemoteProtocolError:
        pass
    try:
        codec.lzw_decompress(data)
    except RemoteProtocolError:
        pass


@given(st.binary(max_size=3000))
@settings(max_examples=100, deadline=None)
def test_lzw_round_trip(data: bytes) -> None:
    assert codec.lzw_decompress(codec.lzw_compress(data)) == data


@given(st.sampled_from([codec.encode(Alive(1, "a", b"\x7f\x00\x00\x01", 1, b"", b"\x01\x05\x02\x02\x05\x04"))]), st.data())
@settings(max_examples=100, deadline=None)
def test_bit_flips_never_crash(msg: bytes, data: st.DataObject) -> None:
    wire = bytearray(codec.add_crc(codec.make_compound([msg, msg])))
    idx = data.draw(st.integers(0, len(wire) - 1))
    wire[idx] ^= data.draw(st.integers(1, 255))
    try:
        codec.decode_packet(bytes(wire))
    except RemoteProtocolError:
        pass
