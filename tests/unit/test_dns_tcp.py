"""DNS over TCP on the embedded resolver, and UDP's TC bit: the framing codec bytes in / bytes out,
one connection's handling over in-memory streams on trio's autojump clock (exact instants), and
forwarding over TCP to a loopback upstream."""

import struct
from ipaddress import IPv4Address

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from appliance.network import dnscodec as wire
from appliance.network.dns import (
    DnsEntry,
    DnsRegistry,
    DnsServer,
    Forward,
    Reply,
    decide,
)

NET = "a" * 64
CLIENT = IPv4Address("10.1.0.3")


# ---- framing ------------------------------------------------------------------------------------


def test_frame_prefixes_the_length():
    msg = wire.query(7, "web")
    assert wire.frame(msg) == struct.pack("!H", len(msg)) + msg
    with pytest.raises(ValueError):
        wire.frame(b"short")


@given(st.lists(st.sampled_from(["web", "a.b.example", "x" * 60]), min_size=1, max_size=5),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20))
def test_decoder_reassembles_messages_however_the_stream_is_cut(names, cuts):
    messages = [wire.query(i, name) for i, name in enumerate(names)]
    stream = b"".join(wire.frame(m) for m in messages)
    decoder, got, pos = wire.StreamDecoder(), [], 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        decoder.feed(stream[pos:pos + size])
        pos += size
        while (m := decoder.next_message()) is not None:
            got.append(m)
        if pos >= len(stream):
            break
    assert got == messages and decoder.pending == 0


def test_decoder_waits_for_the_whole_message():
    msg = wire.query(1, "web")
    decoder = wire.StreamDecoder()
    decoder.feed(wire.frame(msg)[:1])
    assert decoder.next_message() is None
    decoder.feed(wire.frame(msg)[1:-1])
    assert decoder.next_message() is None
    decoder.feed(wire.frame(msg)[-1:])
    assert decoder.next_message() == msg


@pytest.mark.parametrize("length", [0, 1, 11])
def test_decoder_refuses_a_length_no_message_has(length):
    decoder = wire.StreamDecoder()
    decoder.feed(struct.pack("!H", length) + b"\0" * length)
    with pytest.raises(wire.FormatError):
        decoder.next_message()


# ---- truncation ---------------------------------------------------------------------------------


@pytest.fixture
def crowd():
    """40 endpoints answering to one alias: 40 A records, 12+20+40*16 bytes, more than 512."""
    reg = DnsRegistry()
    reg.set_network(NET, "front", resolves_names=True)
    reg.add(DnsEntry("client", NET, CLIENT, ("client",)))
    for i in range(40):
        reg.add(DnsEntry(f"w{i}", NET, IPv4Address(f"10.1.1.{i + 1}"), (f"w{i}", "workers")))
    return reg


def test_an_answer_over_512_bytes_is_truncated_with_tc_on_udp_and_whole_on_tcp(crowd):
    udp = decide(wire.query(5, "workers"), crowd, NET, CLIENT, False)
    assert isinstance(udp, Reply) and len(udp.data) <= wire.MAX_UDP
    ans = wire.parse_answer(udp.data)
    assert ans.truncated and ans.records == () and ans.id == 5 and ans.rcode == wire.RCODE_NOERROR
    small = wire.parse_answer(decide(wire.query(6, "w3"), crowd, NET, CLIENT, False).data)
    assert not small.truncated and small.addresses() == [IPv4Address("10.1.1.4")]
    tcp = decide(wire.query(5, "workers"), crowd, NET, CLIENT, False, max_size=wire.MAX_TCP)
    ans = wire.parse_answer(tcp.data)
    assert not ans.truncated and len(ans.addresses()) == 40


# ---- one connection -----------------------------------------------------------------------------


def _server(reg, **kw) -> DnsServer:
    return DnsServer(reg, (), timeout=2.0, tcp_first_read=2.0, tcp_idle=8.0, **kw)


async def _read_answers(stream, n: int) -> list[wire.Answer]:
    decoder, out = wire.StreamDecoder(), []
    while len(out) < n:
        data = await stream.receive_some(65536)
        assert data, "closed before the answers came"
        decoder.feed(data)
        while (m := decoder.next_message()) is not None:
            out.append(wire.parse_answer(m))
    return out


async def _closed_at(stream) -> float:
    """The instant the server closed its end (EOF)."""
    while await stream.receive_some(65536):
        pass
    return trio.current_time()


def _run(reg, client, **kw):
    """Runs `client(stream)` against handle_stream on a memory stream pair; returns the instant
    handle_stream returned (trio's autojump clock starts at 0)."""
    done = {}

    async def main():
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            async def serve():
                async with ours:
                    await _server(reg, **kw).handle_stream(ours, NET, CLIENT, False)
                done["at"] = trio.current_time()

            nursery.start_soon(serve)
            async with theirs:
                await client(theirs)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return done["at"]


def test_several_queries_on_one_connection_in_order(crowd):
    async def client(stream):
        await stream.send_all(wire.frame(wire.query(1, "w1")) + wire.frame(wire.query(2, "workers"))
                              + wire.frame(wire.query(3, "nosuch")))
        a, b, c = await _read_answers(stream, 3)
        assert (a.id, a.addresses()) == (1, [IPv4Address("10.1.1.2")])
        assert b.id == 2 and len(b.addresses()) == 40 and not b.truncated  # no 512-byte limit on TCP
        assert (c.id, c.rcode) == (3, wire.RCODE_NXDOMAIN)
        await trio.sleep(5)  # quiet, but less than the idle limit: still open
        await stream.send_all(wire.frame(wire.query(4, "w0")))
        (d,) = await _read_answers(stream, 1)
        assert d.addresses() == [IPv4Address("10.1.1.1")]
        assert await _closed_at(stream) == pytest.approx(5 + 8)  # idle 8 s after the last answer

    assert _run(crowd, client) == pytest.approx(13)


def test_a_connection_that_never_asks_is_closed_after_the_first_read_limit(crowd):
    async def client(stream):
        assert await _closed_at(stream) == pytest.approx(2)

    assert _run(crowd, client) == pytest.approx(2)


def test_a_query_that_stalls_half_way_is_closed_not_waited_on(crowd):
    async def client(stream):
        await stream.send_all(wire.frame(wire.query(1, "w1"))[:7])
        assert await _closed_at(stream) == pytest.approx(2)

    _run(crowd, client)


def test_a_bad_length_drops_the_connection_without_an_answer(crowd):
    async def client(stream):
        await stream.send_all(b"\x00\x05hello" + wire.frame(wire.query(1, "w1")))
        assert await _closed_at(stream) == 0
        # nothing was answered: _closed_at would have swallowed it, so read again to be sure
        assert await stream.receive_some(10) == b""

    assert _run(crowd, client) == 0


def test_a_malformed_message_gets_formerr_then_the_connection_closes(crowd):
    async def client(stream):
        header_only = struct.pack("!HHHHHH", 9, 0, 2, 0, 0, 0)  # two questions, none present
        await stream.send_all(wire.frame(header_only) + wire.frame(wire.query(2, "w1")))
        (a,) = await _read_answers(stream, 1)
        assert a.id == 9 and a.rcode == wire.RCODE_FORMERR
        assert await _closed_at(stream) == 0

    _run(crowd, client)


def test_the_peer_closing_ends_the_connection(crowd):
    async def client(stream):
        await stream.send_all(wire.frame(wire.query(1, "w1")))
        await _read_answers(stream, 1)

    assert _run(crowd, client) == 0


def test_a_stranger_is_refused_over_tcp_too(crowd):
    async def main():
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_server(crowd).handle_stream, ours, NET, IPv4Address("10.9.9.9"), False)
            await theirs.send_all(wire.frame(wire.query(1, "w1")))
            (a,) = await _read_answers(theirs, 1)
            assert a.rcode == wire.RCODE_REFUSED
            await theirs.aclose()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ---- forwarding over TCP (loopback) -------------------------------------------------------------


async def _tcp_upstream(answer: IPv4Address, task_status=trio.TASK_STATUS_IGNORED):
    """A loopback DNS server over TCP that answers every query with `answer`."""
    async def handle(stream):
        async with stream:
            decoder = wire.StreamDecoder()
            while data := await stream.receive_some(65536):
                decoder.feed(data)
                while (m := decoder.next_message()) is not None:
                    q = wire.parse_query(m)
                    await stream.send_all(wire.frame(wire.response(q, 0, [wire.a_record(answer, 5)])))

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def test_unknown_names_asked_over_tcp_are_forwarded_over_tcp():
    reg = DnsRegistry()
    reg.set_network(NET, "front", resolves_names=True)
    reg.add(DnsEntry("client", NET, CLIENT, ("client",)))

    async def main():
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_tcp_upstream, IPv4Address("203.0.113.9"))
            server = DnsServer(reg, (f"127.0.0.1:{port}",), timeout=2.0)
            ours, theirs = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, ours, NET, CLIENT, True)
            assert isinstance(decide(wire.query(1, "example.com"), reg, NET, CLIENT, True), Forward)
            with trio.fail_after(5):
                await theirs.send_all(wire.frame(wire.query(4242, "example.com")))
                (a,) = await _read_answers(theirs, 1)
            assert a.id == 4242 and a.addresses() == [IPv4Address("203.0.113.9")]
            await theirs.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
