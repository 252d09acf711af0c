"""network/dnscodec.py and the pure half of network/dns.py: bytes in, decisions out."""

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.network import dnscodec as wire
from appliance.network.dns import DnsEntry, DnsRegistry, Forward, Reply, decide


def test_query_round_trip():
    raw = wire.query(0x1234, "Web.Example.", wire.TYPE_A)
    q = wire.parse_query(raw)
    assert (q.id, q.name, q.qtype, q.qclass) == (0x1234, "web.example", wire.TYPE_A, wire.CLASS_IN)
    assert q.flags & 0x0100  # RD


def test_answer_encodes_a_records_with_a_pointer_to_the_question():
    q = wire.parse_query(wire.query(7, "db", wire.TYPE_A))
    data = wire.response(q, wire.RCODE_NOERROR, [wire.a_record(IPv4Address("10.0.0.2"), 600)])
    ans = wire.parse_answer(data)
    assert ans.id == 7 and ans.rcode == 0 and ans.addresses() == [IPv4Address("10.0.0.2")]
    assert b"\xc0\x0c" in data[len(wire.query(7, "db")):]
    flags = struct.unpack_from("!H", data, 2)[0]
    assert flags & 0x8000 and flags & 0x0400 and flags & 0x0100  # QR, AA, RD echoed


def test_ptr_record_and_reverse_name():
    assert wire.reverse_name("2.0.213.10.in-addr.arpa") == IPv4Address("10.213.0.2")
    assert wire.reverse_name("example.com") is None
    assert wire.reverse_name("1.2.3.in-addr.arpa") is None
    q = wire.parse_query(wire.query(1, "2.0.213.10.in-addr.arpa", wire.TYPE_PTR))
    ans = wire.parse_answer(wire.response(q, 0, [wire.ptr_record("web.net1")]))
    assert ans.records[0][1] == wire.TYPE_PTR and ans.records[0][2] == b"web.net1"


@pytest.mark.parametrize("data", [b"", b"\x00" * 5, wire.query(1, "a")[:-3],
                                  struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01"])
def test_malformed_queries_raise(data):
    with pytest.raises(wire.FormatError):
        wire.parse_query(data)


def test_compression_loop_is_caught():
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(wire.FormatError):
        wire.parse_query(data)


def test_formerr_keeps_the_id_or_drops():
    assert wire.format_error(b"\x00\x01") is None
    err = wire.format_error(struct.pack("!HHHHHH", 0xBEEF, 0x0100, 2, 0, 0, 0))
    assert err[:2] == b"\xbe\xef" and err[3] & 0xF == wire.RCODE_FORMERR


@given(st.binary(max_size=300))
def test_parser_never_crashes_on_garbage(data):
    try:
        wire.parse_query(data)
    except wire.FormatError:
        pass


def test_with_id_rewrites_only_the_id():
    msg = wire.query(1, "x")
    assert wire.with_id(msg, 0xABCD) == b"\xab\xcd" + msg[2:]


# ---- registry and decisions ---------------------------------------------------------------------

NET_A, NET_B, BRIDGE = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def reg():
    r = DnsRegistry()
    r.set_network(NET_A, "front", resolves_names=True)
    r.set_network(NET_B, "back", resolves_names=True)
    r.set_network(BRIDGE, "bridge", resolves_names=False)
    r.add(DnsEntry("c1", NET_A, IPv4Address("10.1.0.2"), ("web", "alias1", "c1shortid")))
    r.add(DnsEntry("c2", NET_A, IPv4Address("10.1.0.3"), ("api",)))
    r.add(DnsEntry("c2", NET_B, IPv4Address("10.2.0.3"), ("api",)))
    r.add(DnsEntry("c3", NET_B, IPv4Address("10.2.0.4"), ("db", "alias1")))
    r.add(DnsEntry("c4", BRIDGE, IPv4Address("10.213.0.2"), ("legacy",)))
    r.add(DnsEntry("c5", BRIDGE, IPv4Address("10.213.0.3"), ("other",)))
    return r


def _ask(reg, net, src, name, qtype=wire.TYPE_A, forward=False):
    return decide(wire.query(99, name, qtype), reg, net, IPv4Address(src), forward)


def test_names_resolve_on_shared_networks_only(reg):
    assert reg.lookup("c1", "WEB.") == [IPv4Address("10.1.0.2")]
    assert reg.lookup("c1", "api") == [IPv4Address("10.1.0.3")]  # the address on the shared network
    assert reg.lookup("c3", "api") == [IPv4Address("10.2.0.3")]
    assert reg.lookup("c1", "db") is None  # c1 is not on back
    assert reg.lookup("c2", "db") == [IPv4Address("10.2.0.4")]
    assert reg.lookup("c1", "c1shortid") == [IPv4Address("10.1.0.2")]
    assert reg.lookup("c2", "web.front") == [IPv4Address("10.1.0.2")]
    assert reg.lookup("c2", "web.back") is None
    assert sorted(reg.lookup("c2", "alias1")) == [IPv4Address("10.1.0.2"), IPv4Address("10.2.0.4")]


def test_default_bridge_resolves_no_container_names(reg):
    assert reg.lookup("c4", "other") is None


def test_decide_answers_a_and_nodata(reg):
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.3", "web").data)
    assert ans.rcode == wire.RCODE_NOERROR and ans.addresses() == [IPv4Address("10.1.0.2")]
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.3", "web", wire.TYPE_AAAA).data)
    assert ans.rcode == wire.RCODE_NOERROR and ans.records == ()


def test_decide_ptr(reg):
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.3", "2.0.1.10.in-addr.arpa", wire.TYPE_PTR).data)
    assert ans.records[0][2] == b"web.front"


def test_unknown_names_forward_or_nxdomain(reg):
    d = _ask(reg, NET_A, "10.1.0.3", "example.com", forward=True)
    assert isinstance(d, Forward) and d.query.name == "example.com"
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.3", "example.com").data)
    assert ans.rcode == wire.RCODE_NXDOMAIN
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.2", "db").data)  # c1: not on back
    assert ans.rcode == wire.RCODE_NXDOMAIN


def test_strangers_are_refused(reg):
    ans = wire.parse_answer(_ask(reg, NET_A, "10.1.0.99", "web").data)
    assert ans.rcode == wire.RCODE_REFUSED
    ans = wire.parse_answer(_ask(reg, NET_B, "10.1.0.2", "web").data)  # c1's address, wrong network
    assert ans.rcode == wire.RCODE_REFUSED


def test_garbage_gets_formerr_or_nothing(reg):
    assert decide(b"\x00", reg, NET_A, IPv4Address("10.1.0.2"), False) is None
    d = decide(struct.pack("!HHHHHH", 5, 0, 0, 0, 0, 0), reg, NET_A, IPv4Address("10.1.0.2"), False)
    assert isinstance(d, Reply) and d.data[3] & 0xF == wire.RCODE_FORMERR


def test_non_query_opcode_is_notimp(reg):
    raw = bytearray(wire.query(3, "web"))
    raw[2] |= 0x2 << 3  # opcode STATUS
    d = decide(bytes(raw), reg, NET_A, IPv4Address("10.1.0.3"), False)
    assert wire.parse_answer(d.data).rcode == wire.RCODE_NOTIMP


def test_remove_container_forgets_every_name(reg):
    reg.remove_container("c2")
    assert reg.lookup("c1", "api") is None
    assert reg.who(NET_B, IPv4Address("10.2.0.3")) is None
