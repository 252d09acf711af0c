"""node.py, the sans-IO core, driven by hand on a fake clock: exact instants, exact bytes.

No sockets, no trio, no sleeps: every input is a method call with ``now``, every output an
action we can decode.  Peers are played by the test.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from appliance.cluster.swim import codec, serf
from appliance.cluster.swim.codec import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
)
from appliance.cluster.swim.config import lan
from appliance.cluster.swim.errors import LocalProtocolError
from appliance.cluster.swim.node import (
    JoinFinished,
    LeaveFinished,
    MemberChanged,
    Node,
    SendPacket,
    StreamReply,
    StreamRequest,
)
from appliance.cluster.swim.state import State

NAMES = ["a", "b", "c", "d", "e"]
IP = {n: f"10.0.0.{i}" for i, n in enumerate(NAMES, 1)}
RAW = {n: bytes([10, 0, 0, i]) for i, n in enumerate(NAMES, 1)}
VSN5 = bytes([1, 5, 2, 2, 5, 5])
VSN4 = bytes([1, 4, 2, 2, 5, 4])


def addr(name: str) -> tuple[str, int]:
    return (IP[name], 7946)


class Harness:
    """One core under test plus a log of (time, action)."""

    def __init__(
        self, name: str = "a", peers: tuple[str, ...] = ("b", "c", "d"), vsn: bytes = VSN5, probe: bool = True, **cfg: Any
    ):
        opts: dict[str, Any] = dict(push_pull_interval=0.0, reconnect_interval=0.0)
        if not probe:  # peers played by the test do not answer; keep them alive
            opts.update(probe_interval=0.0)
        opts.update(cfg)
        self.node = Node(lan(name, bind_addr=IP[name], bind_port=7946, tags={"role": "t"}, **opts), now=0.0, rng=random.Random(5))
        self.log: list[tuple[float, Any]] = []
        for peer in peers:
            self.feed(0.0, self.node.receive(0.0, addr(peer), codec.encode(Alive(1, peer, RAW[peer], 7946, b"", vsn))))

    def feed(self, t: float, actions: list[Any]) -> list[Any]:
        self.log.extend((t, a) for a in actions)
        return actions

    def recv(self, t: float, src: tuple[str, int], data: bytes) -> list[Any]:
        """Deliver a datagram at ``t``, after every timer due before it (time never runs back)."""
        self.run_until(t)
        return self.feed(t, self.node.receive(t, src, data))

    def do(self, t: float, method: Any, *args: Any) -> list[Any]:
        self.run_until(t)
        return self.feed(t, method(t, *args))

    def run_until(self, t_end: float) -> None:
        while self.node.next_deadline() <= t_end:
            t = self.node.next_deadline()
            self.feed(t, self.node.tick(t))

    def sent(self, kind: type | None = None, *, since: float = -1.0, to: str | None = None) -> list[tuple[float, str, Any]]:
        """(time, destination name, message) for every message we sent, unwrapped."""
        by_addr = {addr(n): n for n in NAMES}
        out = []
        for t, a in self.log:
            if isinstance(a, SendPacket) and t >= since:
                dest = by_addr.get(a.addr, str(a.addr))
                if to is not None and dest != to:
                    continue
                for m in codec.decode_packet(a.data).messages:
                    if kind is None or isinstance(m, kind):
                        out.append((t, dest, m))
        return out

    def changes(self, name: str) -> list[tuple[float, State | None, State | None]]:
        return [(t, a.old, a.new) for t, a in self.log if isinstance(a, MemberChanged) and a.name == name]


def first_probe(h: Harness, *, until: float = 5.0) -> tuple[float, str, Ping]:
    h.run_until(until)
    pings = [p for p in h.sent(Ping) if p[2].source_node == h.node.name]
    assert pings, "no probe sent"
    return pings[0]


# --------------------------------------------------------------------------- probing


def test_unanswered_probe_timeline() -> None:
    h = Harness()
    t0, target, ping = first_probe(h, until=1.0)
    others = sorted({"b", "c", "d"} - {target})
    h.run_until(t0 + 0.5)
    # After probe_timeout: indirect pings through both other peers (nack requested) and TCP.
    indirect = h.sent(IndirectPing, since=t0 + 0.5)
    assert sorted(d for _t, d, _m in indirect) == others
    assert all(t == t0 + 0.5 and m.nack and m.node == target and m.seq_no == ping.seq_no for t, _d, m in indirect)
    tcp = [(t, a) for t, a in h.log if isinstance(a, StreamRequest) and t == t0 + 0.5]
    assert len(tcp) == 1 and tcp[0][1].addr == addr(target) and tcp[0][1].deadline == t0 + 1.0
    assert codec.decode_stream(tcp[0][1].data) == ping
    assert h.changes(target)[-1][2] == State.ALIVE
    h.run_until(t0 + 1.0)
    # End of the probe interval: suspect, from us, and gossip it.
    assert h.changes(target)[-1] == (t0 + 1.0, State.ALIVE, State.SUSPECT)
    assert h.node.awareness.score == 2  # two nacks expected, none came
    # 4 members, nobody confirms: dead after the max timeout, 6 x 4 s.
    h.run_until(t0 + 1.0 + 24.0 - 0.001)
    assert h.changes(target)[-1][2] == State.SUSPECT
    h.run_until(t0 + 1.0 + 24.0)
    assert h.changes(target)[-1] == (t0 + 25.0, State.SUSPECT, State.DEAD)


def test_failed_probe_keeps_the_ticker_pace() -> None:
    # memberlist: the probe ticker fires every ProbeInterval whatever the probe did; a tick
    # that comes while probeNode still waits (up to the awareness-scaled interval) is taken
    # as soon as it returns, so a failed probe costs no extra tick.
    h = Harness()
    t0, _target, _ping = first_probe(h, until=1.0)
    h.run_until(t0 + 4.0)
    starts = [t for t, _d, p in h.sent(Ping) if p.source_node == h.node.name]
    # t0 fails at t0 + 1 (score 2: 3 s interval), the next starts then and fails at t0 + 4.
    assert starts == [t0, t0 + 1.0, t0 + 4.0]


def test_confirmations_shorten_the_suspicion() -> None:
    h = Harness()
    t0, target, _ping = first_probe(h, until=1.0)
    h.run_until(t0 + 1.0)
    others = sorted({"b", "c", "d"} - {target})
    # Two independent peers confirm within a second: the timer drops to min = 4 s.
    h.recv(t0 + 1.5, addr(others[0]), codec.encode(Suspect(1, target, others[0])))
    h.recv(t0 + 2.0, addr(others[1]), codec.encode(Suspect(1, target, others[1])))
    h.run_until(t0 + 5.0)
    assert h.changes(target)[-1] == (t0 + 5.0, State.SUSPECT, State.DEAD)
    # The confirmations were news: they were re-gossiped (the dead verdict replaced them).
    assert any(isinstance(m, (Suspect, Dead)) and m.node == target for _t, _d, m in h.sent())


def test_acked_probe_is_quiet_and_healthy() -> None:
    h = Harness()
    h.node.awareness.apply_delta(3)
    t0, target, ping = first_probe(h, until=1.0)
    h.recv(t0 + 0.01, addr(target), codec.encode(Ack(ping.seq_no)))
    h.run_until(t0 + 0.999)  # the next probe (of someone else) starts at t0 + 1
    assert h.sent(IndirectPing) == []
    assert h.changes(target)[-1][2] == State.ALIVE
    assert h.node.awareness.score == 2  # a good probe heals one step


def test_nacks_lower_the_awareness_penalty() -> None:
    h = Harness()
    t0, target, ping = first_probe(h, until=1.0)
    h.run_until(t0 + 0.5)
    relay = h.sent(IndirectPing)[0][1]
    h.recv(t0 + 0.9, addr(relay), codec.encode(Nack(ping.seq_no)))
    h.run_until(t0 + 1.0)
    assert h.changes(target)[-1][2] == State.SUSPECT
    assert h.node.awareness.score == 1  # 2 expected - 1 received


def test_indirect_ack_saves_the_target() -> None:
    h = Harness()
    t0, target, ping = first_probe(h, until=1.0)
    h.run_until(t0 + 0.5)
    relay = h.sent(IndirectPing)[0][1]
    h.recv(t0 + 0.7, addr(relay), codec.encode(Ack(ping.seq_no)))
    h.run_until(t0 + 2.0)
    assert all(new != State.SUSPECT for _t, _o, new in h.changes(target))


def test_tcp_fallback_saves_the_target() -> None:
    h = Harness()
    t0, target, ping = first_probe(h, until=1.0)
    h.run_until(t0 + 0.5)
    (req,) = [a for _t, a in h.log if isinstance(a, StreamRequest)]
    h.do(t0 + 0.6, h.node.stream_response, req.token, codec.encode_stream(Ack(ping.seq_no)))
    h.run_until(t0 + 1.5)  # the next probe (of someone else) starts at t0 + 1 and ends at t0 + 2
    assert all(new != State.SUSPECT for _t, _o, new in h.changes(target))
    assert h.node.awareness.score == 0


def test_no_tcp_ping_to_old_protocol_peers() -> None:
    h = Harness(vsn=bytes([1, 2, 2, 2, 5, 4]))
    t0, _target, _ping = first_probe(h, until=1.0)
    h.run_until(t0 + 1.0)
    assert not any(isinstance(a, StreamRequest) for _t, a in h.log)
    assert all(not m.nack for _t, _d, m in h.sent(IndirectPing))  # nacks need pmax >= 4
    assert h.node.awareness.score == 1  # no nacks to expect: a plain +1


def test_buddy_system_pings_a_suspect_with_its_suspicion() -> None:
    h = Harness(peers=("b",))
    t0, target, _ping = first_probe(h, until=1.0)
    assert target == "b"
    h.run_until(t0 + 1.0)
    h.run_until(t0 + 4.5)  # awareness scaled the interval; the next probe of b comes
    later = [a for t, a in h.log if isinstance(a, SendPacket) and t > t0 + 1.0 and a.addr == addr("b")]
    probes = [codec.decode_packet(a.data).messages for a in later]
    assert any(
        any(isinstance(m, Ping) for m in msgs) and Suspect(1, "b", "a") in msgs for msgs in probes
    ), probes


def test_suspected_node_refutes_in_its_ack() -> None:
    h = Harness(name="b", peers=("a",), probe=False)
    packet = codec.make_compound(
        [codec.encode(Ping(42, "b", RAW["a"], 7946, "a")), codec.encode(Suspect(1, "b", "a"))]
    )
    h.recv(3.0, addr("a"), codec.add_crc(packet))
    assert (3.0, "a", Ack(42)) in h.sent(since=3.0)
    # The refutation is queued as the packet is read and leaves with the next gossip round.
    h.run_until(3.2)
    refutes = [(t, m.incarnation) for t, d, m in h.sent(Alive, since=3.0) if m.node == "b" and d == "a"]
    assert refutes and refutes[-1][1] == 2 and refutes[-1][0] <= 3.2
    assert h.node.awareness.score == 1  # having to refute is a sign of our own trouble


# --------------------------------------------------------------------------- answering others


def test_ping_answered_at_source_address_with_piggyback() -> None:
    h = Harness(name="b", peers=("a", "c"), probe=False)
    h.recv(0.0, ("192.0.2.9", 5555), codec.encode(Ping(7, "b", RAW["a"], 7946, "a")))
    ((t, dest, ack),) = h.sent(Ack)
    assert (t, dest, ack) == (0.0, "a", Ack(7))
    # Queued news (the alives just learned) rides along in the same datagram.
    assert any(isinstance(m, Alive) for _t, _d, m in h.sent(since=0.0))


def test_ping_for_someone_else_dropped() -> None:
    h = Harness(name="b", peers=("a",))
    h.recv(1.0, addr("a"), codec.encode(Ping(7, "zz")))
    assert h.sent(Ack) == []
    assert h.node.stats.remote_errors == 1


def test_relay_forwards_ack() -> None:
    h = Harness(name="c", peers=("a", "b"), probe=False)
    ind = IndirectPing(77, RAW["b"], 7946, "b", True, RAW["a"], 7946, "a")
    h.recv(10.0, addr("a"), codec.encode(ind))
    ((t, dest, ping),) = h.sent(Ping)
    assert (t, dest, ping.node, ping.source_node) == (10.0, "b", "b", "c")
    h.recv(10.1, addr("b"), codec.encode(Ack(ping.seq_no)))
    h.run_until(11.0)
    assert [(t, d, m) for t, d, m in h.sent() if isinstance(m, (Ack, Nack))] == [(10.1, "a", Ack(77))]


def test_relay_nacks_after_probe_timeout() -> None:
    h = Harness(name="c", peers=("a", "b"), probe=False, probe_timeout=0.5)
    ind = IndirectPing(77, RAW["b"], 7946, "b", True, RAW["a"], 7946, "a")
    h.recv(10.0, addr("a"), codec.encode(ind))
    h.run_until(11.0)
    assert [(t, d, m) for t, d, m in h.sent() if isinstance(m, (Ack, Nack))] == [(10.5, "a", Nack(77))]


def test_stale_accusation_is_answered_with_the_refutation() -> None:
    h = Harness(probe=False)
    h.recv(1.0, addr("b"), codec.encode(Alive(2, "b", RAW["b"], 7946, b"", VSN5)))  # b refuted
    h.recv(2.0, addr("c"), codec.encode(Suspect(1, "b", "d")))  # c passes on old news
    h.recv(2.5, addr("c"), codec.encode(Suspect(1, "b", "d")))  # again: rate-limited
    h.recv(2.6, addr("d"), codec.encode(Dead(1, "b", "d")))
    corrections = [(t, d, m.incarnation) for t, d, m in h.sent(Alive, since=2.0) if m.node == "b" and t in (2.0, 2.5, 2.6)]
    assert (2.0, "c", 2) in corrections and (2.6, "d", 2) in corrections
    assert not [c for c in corrections if c[0] == 2.5]
    assert h.node.member("b").state == State.ALIVE


def test_crc_only_for_peers_that_understand_it() -> None:
    for vsn, crc in ((VSN5, True), (VSN4, False)):
        h = Harness(peers=("b",), vsn=vsn)
        h.run_until(2.0)
        packets = [a.data for _t, a in h.log if isinstance(a, SendPacket) and a.addr == addr("b")]
        assert packets and all((p[0] == codec.MessageType.HAS_CRC) is crc for p in packets), vsn


def test_garbage_is_counted_not_raised() -> None:
    h = Harness()
    for junk in (b"", b"\x00", b"\x07\x05", b"\x0c\x00\x00\x00\x00x", b"\xff" * 10, b"\x09\x81\xa3Buf\xa1x"):
        h.recv(1.0, addr("b"), junk)
    assert h.node.stats.remote_errors == 6
    (reply,) = h.node.receive_stream(1.0, addr("b"), b"\x06\x80")
    assert isinstance(reply, StreamReply)
    assert isinstance(codec.decode_stream(reply.data), (ErrResp, PushPull))


# --------------------------------------------------------------------------- push/pull and join


def test_push_pull_responder_replies_then_merges() -> None:
    h = Harness()
    remote = PushPull(True, (PushNodeState("e", RAW["e"], 7946, b"", 3, 0, VSN5),), b"")
    actions = h.do(2.0, h.node.receive_stream, addr("e"), codec.encode_stream(remote))
    assert isinstance(actions[0], StreamReply)
    reply = codec.decode_stream(actions[0].data)
    assert isinstance(reply, PushPull) and reply.join
    assert sorted(s.name for s in reply.states) == ["a", "b", "c", "d"]  # sent before merging
    assert h.changes("e") == [(2.0, None, State.ALIVE)]


def test_join_success_and_failure() -> None:
    h = Harness(peers=())
    reqs = h.do(0.0, h.node.join, [addr("b"), addr("c")])
    assert [r.addr for r in reqs] == [addr("b"), addr("c")]
    assert all(codec.decode_stream(r.data).join for r in reqs)
    their = PushPull(True, (PushNodeState("b", RAW["b"], 7946, b"", 1, 0, VSN5),), b"")
    h.do(0.1, h.node.stream_response, reqs[0].token, codec.encode_stream(their))
    h.do(0.2, h.node.stream_response, reqs[1].token, None, "connection refused")
    joins = [a for _t, a in h.log if isinstance(a, JoinFinished)]
    assert joins == [JoinFinished(addr("b"), True), JoinFinished(addr("c"), False, "connection refused")]
    assert h.changes("b") == [(0.1, None, State.ALIVE)]


def test_join_times_out_without_reply() -> None:
    h = Harness(peers=())
    (req,) = h.do(0.0, h.node.join, [addr("b")])
    h.run_until(10.0)
    assert [a for _t, a in h.log if isinstance(a, JoinFinished)] == [JoinFinished(addr("b"), False, "timeout")]
    # A reply after the deadline is ignored.
    assert h.node.stream_response(11.0, req.token, codec.encode_stream(PushPull(False, ()))) == []


def test_incompatible_protocol_versions_refused() -> None:
    h = Harness(peers=())
    (req,) = h.do(0.0, h.node.join, [addr("b")])
    their = PushPull(True, (PushNodeState("b", RAW["b"], 7946, b"", 1, 0, bytes([3, 4, 3, 2, 5, 4])),), b"")
    h.do(0.1, h.node.stream_response, req.token, codec.encode_stream(their))
    assert [a.ok for _t, a in h.log if isinstance(a, JoinFinished)] == [False]
    assert h.node.member("b") is None


def test_periodic_push_pull_and_serf_clock() -> None:
    h = Harness(push_pull_interval=30.0, probe=False)
    h.run_until(31.0)
    reqs = [a for _t, a in h.log if isinstance(a, StreamRequest) and not isinstance(codec.decode_stream(a.data), Ping)]
    assert reqs and not codec.decode_stream(reqs[0].data).join
    user_state = bytes([2]) + __import__("msgpack").packb({b"LTime": 41}, use_bin_type=False)
    h.node.stream_response(31.0, reqs[0].token, codec.encode_stream(PushPull(False, (), user_state)))
    assert h.node.clock.time == 42  # witnessed Serf's member clock


# --------------------------------------------------------------------------- local intents


def test_graceful_leave_sends_intent_then_dead_then_finishes() -> None:
    h = Harness(probe=False)
    h.node.clock.witness(9)
    h.do(5.0, h.node.leave)
    h.run_until(12.0)
    msgs = [(t, m) for t, _d, m in h.sent(since=5.0) if isinstance(m, (User, Dead))]
    intents = [(t, serf.decode_intent(m.payload)) for t, m in msgs if isinstance(m, User)]
    deads = [(t, m) for t, m in msgs if isinstance(m, Dead)]
    assert intents and all(i == serf.LeaveIntent(11, "a") for _t, i in intents)  # LTime > what we saw
    assert deads and all(m == Dead(1, "a", "a") for _t, m in deads)
    assert max(t for t, _ in intents) < min(t for t, _ in deads)  # intent first, as Serf needs
    finished = [t for t, a in h.log if isinstance(a, LeaveFinished)]
    assert len(finished) == 1 and finished[0] >= max(t for t, _ in deads)
    assert finished[0] <= 5.0 + 2 * 5.0  # each phase bounded by broadcast_timeout
    assert h.node.local_member().state == State.LEFT
    with pytest.raises(LocalProtocolError):
        h.node.leave(13.0)


def test_leave_alone_finishes_at_once() -> None:
    h = Harness(peers=())
    actions = h.node.leave(1.0)
    assert any(isinstance(a, LeaveFinished) for a in actions)


def test_update_tags_bumps_incarnation_and_gossips() -> None:
    h = Harness(probe=False)
    actions = h.do(3.0, h.node.update_tags, {"cpu": "8"})
    (change,) = [a for a in actions if isinstance(a, MemberChanged)]
    assert change.name == "a" and change.member.tags == {"cpu": "8"} and change.member.incarnation == 2
    h.run_until(3.5)
    assert any(isinstance(m, Alive) and m.node == "a" and m.incarnation == 2 for _t, _d, m in h.sent(since=3.0))
    with pytest.raises(LocalProtocolError):
        h.node.update_tags(4.0, {"big": "x" * 600})


def test_serf_intents_from_others() -> None:
    h = Harness(probe=False)
    leave = codec.encode(User(serf.encode_intent(serf.LeaveIntent(7, "b"))))
    join = codec.encode(User(serf.encode_intent(serf.JoinIntent(9, "c"))))
    h.recv(1.0, addr("b"), leave)
    h.recv(1.0, addr("c"), join)
    assert h.node.clock.time == 10
    h.run_until(3.0)
    passed_on = [serf.decode_intent(m.payload) for _t, _d, m in h.sent(User, since=1.0)]
    assert serf.LeaveIntent(7, "b") in passed_on  # leaves are passed on for Serf agents
    assert serf.JoinIntent(9, "c") not in passed_on  # joins only move the clock


def test_dead_members_gossiped_to_then_reaped_then_reconnected() -> None:
    h = Harness(reconnect_interval=30.0, gossip_to_the_dead_time=30.0)
    h.recv(1.0, addr("b"), codec.encode(Dead(1, "d", "b")))
    assert h.changes("d")[-1] == (1.0, State.ALIVE, State.DEAD)
    h.run_until(3.0)
    assert any(d == "d" for _t, d, _m in h.sent(since=1.0))  # still a gossip target
    h.run_until(200.0)
    reaped = [c for c in h.changes("d") if c[2] is None]
    assert len(reaped) == 1 and reaped[0][0] > 31.0
    tries = [a for t, a in h.log if isinstance(a, StreamRequest) and a.addr == addr("d")]
    assert tries, "Serf-style reconnect never tried the failed member"


def test_stopped_core_is_silent() -> None:
    h = Harness()
    h.node.stop()
    assert h.node.next_deadline() == float("inf")
    assert h.node.receive(1.0, addr("b"), codec.encode(Ping(1, "a"))) == []
    assert h.node.tick(100.0) == []


# --------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_who = st.sampled_from(["a", "b", "c", "d", "e"])
_inc = st.integers(0, 6)
_news = st.one_of(
    st.builds(lambda n, i, m: Alive(i, n, RAW[n], 7946, m, VSN5), _who, _inc, st.sampled_from([b"", b"x"])),
    st.builds(Suspect, _inc, _who, _who),
    st.builds(Dead, _inc, _who, _who),
    st.builds(lambda s, n: Ping(s, n, RAW["b"], 7946, "b"), _inc, _who),
    st.builds(Ack, _inc),
    st.builds(Nack, _inc),
    st.builds(lambda s, n: IndirectPing(s, RAW[n], 7946, n, True, RAW["c"], 7946, "c"), _inc, _who),
)


@given(st.lists(st.tuples(st.floats(0.0, 3.0), st.lists(_news, min_size=1, max_size=4)), max_size=25))
@settings(max_examples=150, deadline=None)
def test_any_news_in_any_order_keeps_the_invariants(steps: list[tuple[float, list[Any]]]) -> None:
    h = Harness()
    t = 0.0
    last_inc = 1
    for dt, msgs in steps:
        t += dt
        data = codec.make_compound([codec.encode(m) for m in msgs])
        h.recv(t, addr("b"), data)
        me = h.node.local_member()
        # We are never suspect or dead in our own eyes, and only ever move forward.
        assert me.state == State.ALIVE
        assert me.incarnation >= last_inc
        last_inc = me.incarnation
        for m in h.node.members():
            assert m.state in State
    h.run_until(t + 60.0)
    assert h.node.local_member().state == State.ALIVE
