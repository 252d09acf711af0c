"""The sans-IO SWIM + Lifeguard core (h11 style): events in, actions out, no I/O, no clock.

Inputs (each takes ``now``, seconds on the caller's monotonic clock)::

    receive(now, src, datagram)          a UDP packet arrived
    receive_stream(now, src, message)    a TCP request arrived (one whole message, see
                                         codec.stream_frame_length); may yield a StreamReply
    stream_response(now, token, reply)   the reply to one of our StreamRequests (None: failed)
    tick(now)                            time passed; call at next_deadline() or later
    join(now, seeds) / leave(now) / update_meta(now, meta)    local intents

Each returns a list of frozen actions for the shell (transport.py or the simulator):
:class:`SendPacket`, :class:`StreamRequest`, :class:`StreamReply`, :class:`MemberChanged`,
:class:`JoinFinished`, :class:`LeaveFinished`.

What it does (memberlist state.go / net.go, Serf's reconnect and intents):

* probes one member per ``probe_interval`` in randomized round robin; a missed UDP ack
  after ``probe_timeout`` brings indirect pings through ``indirect_checks`` peers (with
  nacks) and a TCP ping; no answer by the end of the (awareness-scaled) interval: suspect;
* Lifeguard: awareness (nack-based local health) scales the probe interval, suspicions time
  out between min and max depending on independent confirmations, and a suspect target
  gets the suspicion piggybacked on its ping so it can refute at once (buddy system);
* alive/suspect/dead news is gossiped every ``gossip_interval`` to ``gossip_nodes`` members
  and piggybacked on every ping and ack, each message ``retransmit_mult*ceil(log10(n+1))``
  times; push/pull over TCP on join and every ``push_pull_interval``;
* leaving sends Serf's leave intent first and then the dead-from-self message, so Serf
  agents show ``left``; failed members are retried every ``reconnect_interval`` (Serf).
"""

from __future__ import annotations

import heapq
import logging
import random
from dataclasses import dataclass, field
from typing import Callable, Union

from . import codec
from .awareness import Awareness
from .broadcast import BroadcastQueue, push_pull_scale
from .codec import (
    Ack,
    Alive,
    Dead,
    ErrResp,
    IndirectPing,
    Nack,
    Ping,
    PushPull,
    Suspect,
    User,
    UserStream,
)
from .config import SwimConfig
from .errors import LocalProtocolError, RemoteProtocolError
from .serf import (
    JoinIntent,
    LamportClock,
    LeaveIntent,
    decode_intent,
    encode_intent,
    encode_tags,
    push_pull_ltime,
)
from .state import Change, Member, MemberTable, MemberView, State, ip_bytes, ip_text

__all__ = [
    "Addr",
    "Node",
    "SendPacket",
    "StreamRequest",
    "StreamReply",
    "MemberChanged",
    "JoinFinished",
    "LeaveFinished",
    "Action",
    "Stats",
]

log = logging.getLogger(__name__)

Addr = tuple[str, int]


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendPacket:
    """Send ``data`` as one UDP datagram to ``addr``."""

    addr: Addr
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Open TCP to ``addr``, write ``data``, read one reply message, report it with
    ``stream_response(now, token, reply_or_None)``; give up at ``deadline``."""

    addr: Addr
    data: bytes
    token: int
    deadline: float


@dataclass(frozen=True, slots=True)
class StreamReply:
    """Write ``data`` back on the TCP connection whose request is being handled, then close."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """A member appeared, changed state or meta, or was forgotten (``new`` None)."""

    name: str
    old: State | None
    new: State | None
    member: MemberView


@dataclass(frozen=True, slots=True)
class JoinFinished:
    """The join push/pull with ``addr`` is done: ``ok`` or failed with ``error``."""

    addr: Addr
    ok: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class LeaveFinished:
    """Both leave broadcasts have gone out (or timed out): the shell may stop now."""


Action = Union[SendPacket, StreamRequest, StreamReply, MemberChanged, JoinFinished, LeaveFinished]


@dataclass(slots=True)
class Stats:
    """Counters for tests and benches (and later metrics)."""

    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    streams_sent: int = 0
    stream_bytes_sent: int = 0
    streams_received: int = 0
    remote_errors: int = 0
    probes: int = 0
    probes_failed: int = 0
    suspicions_raised: int = 0
    refutes: int = 0
    sent_by_type: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- internals

# Timer kinds.
_PROBE_TICK = 0
_GOSSIP_TICK = 1
_PUSH_PULL_TICK = 2
_RECONNECT_TICK = 3
_PROBE_INDIRECT = 4
_PROBE_END = 5
_RELAY_TIMEOUT = 6
_SUSPICION = 7
_LEAVE_CHECK = 8
_STREAM_TIMEOUT = 9

#: At most one stale-accusation correction per (sender, member) this often.
_CORRECTION_INTERVAL = 1.0


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    incarnation: int
    start: float
    deadline: float
    acked: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    tcp_token: int | None = None
    tcp_ok: bool = False


@dataclass(slots=True)
class _Relay:
    requester: Addr
    requester_node: str
    seq: int
    nack: bool


@dataclass(slots=True)
class _Stream:
    kind: str  # "pushpull" | "join" | "tcp_ping"
    addr: Addr
    probe_seq: int = 0


class Node:
    """One member's protocol state.  See the module docstring for the event/action API."""

    def __init__(
        self,
        config: SwimConfig,
        *,
        now: float,
        rng: random.Random | None = None,
        meta: bytes | None = None,
        local_state: Callable[[bool], bytes] | None = None,
    ) -> None:
        """``meta`` overrides ``config.tags``; ``local_state(join)`` supplies push/pull user
        state (must be empty or a Serf push/pull if Serf agents are in the cluster)."""
        self.config = config
        self.rng = rng or random.Random()
        self.name = config.name
        host = config.advertise_addr or config.bind_addr
        port = config.advertise_port or config.bind_port
        if port <= 0:
            raise LocalProtocolError("the advertised port must be known before the core starts")
        self.addr: Addr = (ip_text(ip_bytes(host)), port)
        self._addr_bytes = ip_bytes(host)
        if meta is None:
            meta = encode_tags(config.tags)
        self.table = MemberTable(
            config.name,
            self._addr_bytes,
            port,
            meta,
            bytes(config.vsn),
            now,
            suspicion_mult=config.suspicion_mult,
            suspicion_max_timeout_mult=config.suspicion_max_timeout_mult,
            probe_interval=config.probe_interval,
            dead_node_reclaim_time=config.dead_node_reclaim_time,
            rng=self.rng,
        )
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.broadcasts = BroadcastQueue(config.retransmit_mult)
        #: Serf-layer user messages: only the room membership news leaves (memberlist's
        #: delegate GetBroadcasts comes after its own queue).
        self.user_broadcasts = BroadcastQueue(config.retransmit_mult)
        self.clock = LamportClock()
        self.stats = Stats()
        self._local_state = local_state or (lambda join: b"")
        self._seq = 0
        self._token = 0
        self._timer_seq = 0
        self._timers: list[tuple[float, int, int, object]] = []
        self._probe: _Probe | None = None
        #: A probe tick came while a probe was still running. memberlist's probe ticker
        #: keeps firing every ProbeInterval and the channel holds that tick, so the next
        #: probe starts as soon as the running one returns (state.go schedule/probeNode).
        self._probe_tick_pending = False
        self._acks: dict[int, _Probe | _Relay] = {}
        self._streams: dict[int, _Stream] = {}
        self._intents: dict[str, int] = {}
        self._failed: dict[str, tuple[Addr, float]] = {}
        self._corrections: dict[tuple[Addr, str], float] = {}
        self._leave_phase = 0  # 0 not leaving, 1 intent out, 2 dead out, 3 done
        self._leave_deadline = 0.0
        self._stopped = False
        # Our own alive goes out first (memberlist setAlive).
        self._queue_gossip(self.table.local_alive())
        ci = config
        if ci.probe_interval > 0:
            self._at(now + self.rng.uniform(0, ci.probe_interval), _PROBE_TICK)
        if ci.gossip_interval > 0 and ci.gossip_nodes > 0:
            self._at(now + self.rng.uniform(0, ci.gossip_interval), _GOSSIP_TICK)
        if ci.push_pull_interval > 0:
            self._at(now + self.rng.uniform(0, ci.push_pull_interval), _PUSH_PULL_TICK)
        if ci.reconnect_interval > 0:
            self._at(now + self.rng.uniform(0, ci.reconnect_interval), _RECONNECT_TICK)

    # ======================================================================= reading

    def members(self) -> list[MemberView]:
        """Every member in the table, ourselves included (dead ones until reaped)."""
        return self.table.views()

    def member(self, name: str) -> MemberView | None:
        m = self.table.get(name)
        return m.view() if m is not None else None

    def local_member(self) -> MemberView:
        return self.table.local.view()

    @property
    def leaving(self) -> bool:
        return self._leave_phase > 0

    @property
    def left(self) -> bool:
        return self._leave_phase >= 3

    def next_deadline(self) -> float:
        """The earliest time ``tick`` has work to do (may be early; never late)."""
        return self._timers[0][0] if self._timers else float("inf")

    # ======================================================================= local intents

    def join(self, now: float, seeds: list[Addr]) -> list[Action]:
        """Push/pull (Join=true) with every seed; each ends in a :class:`JoinFinished`."""
        if self._leave_phase:
            raise LocalProtocolError("cannot join after leaving")
        out: list[Action] = []
        if self.config.serf_intents:
            intent = JoinIntent(self.clock.increment(), self.name)
            self._intents[self.name] = intent.ltime
            self.user_broadcasts.queue(codec.encode(User(encode_intent(intent))), "intent:" + self.name)
        for seed in seeds:
            out.append(self._push_pull(now, (seed[0], int(seed[1])), join=True))
        return out

    def update_meta(self, now: float, meta: bytes) -> list[Action]:
        """New node meta (e.g. ``serf.encode_tags(tags)``): higher incarnation, gossiped."""
        change = self.table.set_local_meta(meta, now)
        out: list[Action] = []
        self._apply(now, change, out)
        return out

    def update_tags(self, now: float, tags: dict[str, str]) -> list[Action]:
        return self.update_meta(now, encode_tags(tags))

    def leave(self, now: float) -> list[Action]:
        """Graceful leave: Serf leave intent, then dead-from-self; ends in LeaveFinished."""
        self.table.start_leave()
        self._leave_phase = 1
        out: list[Action] = []
        others = self._anyone_else()
        if self.config.serf_intents and others:
            intent = LeaveIntent(self.clock.increment(), self.name)
            self._intents[self.name] = intent.ltime
            self.user_broadcasts.queue(codec.encode(User(encode_intent(intent))), "intent:" + self.name)
            self._leave_deadline = now + self.config.broadcast_timeout
        else:
            self._leave_deadline = now
        self._leave_step(now, out)
        return out

    def stop(self) -> None:
        """Forget all timers; the core answers nothing afterwards (a crash, for the sim)."""
        self._stopped = True
        self._timers.clear()

    # ======================================================================= events

    def receive(self, now: float, src: Addr, data: bytes) -> list[Action]:
        """A UDP datagram from ``src``."""
        out: list[Action] = []
        if self._stopped:
            return out
        self.stats.packets_received += 1
        self.stats.bytes_received += len(data)
        try:
            decoded = codec.decode_packet(data)
        except RemoteProtocolError as exc:
            self._remote_error(src, exc)
            return out
        for exc in decoded.errors:
            self._remote_error(src, exc)
        for msg in decoded.messages:
            try:
                self._handle(now, src, msg, out)
            except RemoteProtocolError as exc:
                self._remote_error(src, exc)
        return out

    def receive_stream(self, now: float, src: Addr, data: bytes) -> list[Action]:
        """One whole TCP request from ``src``; a reply, if any, is a :class:`StreamReply`."""
        out: list[Action] = []
        if self._stopped:
            return out
        self.stats.streams_received += 1
        try:
            msg = codec.decode_stream(data)
        except RemoteProtocolError as exc:
            self._remote_error(src, exc)
            out.append(StreamReply(codec.encode(ErrResp(str(exc)))))
            return out
        if isinstance(msg, PushPull):
            # memberlist sends its own state before merging the remote one.
            out.append(StreamReply(self.push_pull_message(msg.join)))
            try:
                self._merge_remote(now, msg, out)
            except RemoteProtocolError as exc:
                self._remote_error(src, exc)
        elif isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self._remote_error(src, RemoteProtocolError(f"TCP ping for {msg.node!r}"))
            else:
                out.append(StreamReply(codec.encode(Ack(msg.seq_no))))
        elif isinstance(msg, UserStream):
            self._on_user(now, msg.payload, out)
        else:
            self._remote_error(src, RemoteProtocolError(f"unexpected stream {type(msg).__name__}"))
        return out

    def reject_stream(self, now: float, src: Addr, reason: str) -> list[Action]:
        """The shell could not even frame a TCP request (bad header, too big): count it and
        answer with memberlist's ``errResp``, as memberlist does."""
        self.stats.streams_received += 1
        self._remote_error(src, RemoteProtocolError(reason))
        return [StreamReply(codec.encode(ErrResp(reason)))]

    def stream_response(self, now: float, token: int, reply: bytes | None, error: str = "") -> list[Action]:
        """The reply to our :class:`StreamRequest` ``token``; None if it failed or timed out."""
        out: list[Action] = []
        stream = self._streams.pop(token, None)
        if stream is None or self._stopped:
            return out
        msg = None
        if reply is not None:
            try:
                msg = codec.decode_stream(reply)
            except RemoteProtocolError as exc:
                self._remote_error(stream.addr, exc)
                error = str(exc)
        if stream.kind == "tcp_ping":
            probe = self._probe
            if isinstance(msg, Ack) and probe is not None and probe.seq == stream.probe_seq == msg.seq_no:
                probe.tcp_ok = True
            return out
        if isinstance(msg, ErrResp):
            error = f"remote error: {msg.error}"
            msg = None
        elif msg is not None and not isinstance(msg, PushPull):
            error = f"expected push/pull, got {type(msg).__name__}"
            msg = None
        if isinstance(msg, PushPull):
            try:
                self._merge_remote(now, msg, out)
            except RemoteProtocolError as exc:
                self._remote_error(stream.addr, exc)
                error = str(exc)
                msg = None
        if stream.kind == "join":
            ok = msg is not None
            out.append(JoinFinished(stream.addr, ok, "" if ok else (error or "no reply")))
        return out

    def tick(self, now: float) -> list[Action]:
        """Run every timer that is due at ``now``."""
        out: list[Action] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _when, _seq, kind, key = heapq.heappop(timers)
            if self._stopped:
                break
            self._fire(now, kind, key, out)
        return out

    # ======================================================================= dispatch

    def _handle(self, now: float, src: Addr, msg: codec.Message, out: list[Action]) -> None:
        if isinstance(msg, Ping):
            self._on_ping(now, src, msg, out)
        elif isinstance(msg, Ack):
            self._on_ack(now, msg, out)
        elif isinstance(msg, Nack):
            handler = self._acks.get(msg.seq_no)
            if isinstance(handler, _Probe):
                handler.nacks += 1
        elif isinstance(msg, IndirectPing):
            self._on_indirect_ping(now, src, msg, out)
        elif isinstance(msg, Alive):
            if msg.port == 0:
                msg = Alive(msg.incarnation, msg.node, msg.addr, self.addr[1], msg.meta, msg.vsn)
            self._apply(now, self.table.apply_alive(msg, now), out)
        elif isinstance(msg, Suspect):
            self._correct_if_stale(now, src, msg.node, msg.incarnation, out)
            self._apply(now, self.table.apply_suspect(msg, now), out)
        elif isinstance(msg, Dead):
            if msg.node != msg.from_node:
                self._correct_if_stale(now, src, msg.node, msg.incarnation, out)
            self._apply(now, self.table.apply_dead(msg, now), out)
        elif isinstance(msg, User):
            self._on_user(now, msg.payload, out)
        else:
            raise RemoteProtocolError(f"unexpected {type(msg).__name__} in a packet")

    def _fire(self, now: float, kind: int, key: object, out: list[Action]) -> None:
        cfg = self.config
        if kind == _PROBE_TICK:
            self._at(now + cfg.probe_interval, _PROBE_TICK)
            if self._probe is not None:
                # Don't lose the tick (memberlist: the ticker fires regardless, the probe
                # goroutine picks it up when probeNode returns); further ones are dropped.
                self._probe_tick_pending = True
            elif self._leave_phase < 3:
                self._start_probe(now, out)
        elif kind == _GOSSIP_TICK:
            self._at(now + cfg.gossip_interval, _GOSSIP_TICK)
            self._gossip(now, out)
        elif kind == _PUSH_PULL_TICK:
            self._at(now + push_pull_scale(cfg.push_pull_interval, len(self.table)), _PUSH_PULL_TICK)
            if not self._leave_phase:
                peers = self.table.k_random(
                    1, lambda m: m is self.table.local or m.state != State.ALIVE
                )
                if peers:
                    out.append(self._push_pull(now, peers[0].address, join=False))
        elif kind == _RECONNECT_TICK:
            self._at(now + cfg.reconnect_interval, _RECONNECT_TICK)
            self._reconnect(now, out)
        elif kind == _PROBE_INDIRECT:
            self._probe_indirect(now, key, out)  # type: ignore[arg-type]
        elif kind == _PROBE_END:
            self._probe_end(now, key, out)  # type: ignore[arg-type]
        elif kind == _RELAY_TIMEOUT:
            relay = self._acks.pop(key, None)  # type: ignore[arg-type]
            if isinstance(relay, _Relay) and relay.nack:
                self._send(relay.requester, codec.encode(Nack(relay.seq)), self.table.get(relay.requester_node), out)
        elif kind == _SUSPICION:
            change = self.table.expire_suspicion(key, now)  # type: ignore[arg-type]
            if change is not None:
                self._apply(now, change, out)
            else:
                member = self.table.get(key)  # type: ignore[arg-type]
                if member is not None and member.suspicion is not None and member.state == State.SUSPECT:
                    self._at(member.suspicion.deadline(), _SUSPICION, key)
        elif kind == _LEAVE_CHECK:
            self._leave_step(now, out)
        elif kind == _STREAM_TIMEOUT:
            if key in self._streams:
                out.extend(self.stream_response(now, key, None, "timeout"))  # type: ignore[arg-type]

    # ======================================================================= probing

    def _start_probe(self, now: float, out: list[Action]) -> None:
        target, reaped = self.table.next_probe_target(now, self.config.gossip_to_the_dead_time)
        for change in reaped:
            self._apply(now, change, out)
        if target is None:
            return
        cfg = self.config
        self.stats.probes += 1
        seq = self._next_seq()
        interval = self.awareness.scale(cfg.probe_interval)
        ping = Ping(seq, target.name, self._addr_bytes, self.addr[1], self.name)
        probe = _Probe(seq, target.name, target.incarnation, now, now + interval)
        self._probe = probe
        self._acks[seq] = probe
        if target.state == State.ALIVE:
            self._send(target.address, codec.encode(ping), target, out)
        else:
            # Lifeguard buddy system: tell a suspect it is suspected, so it can refute.
            suspect = Suspect(target.incarnation, target.name, self.name)
            data = codec.make_compound([codec.encode(ping), codec.encode(suspect)])
            self._send_raw(target.address, data, target, out, "ping")
        self._at(now + cfg.probe_timeout, _PROBE_INDIRECT, seq)
        self._at(probe.deadline, _PROBE_END, seq)

    def _probe_done(self, now: float, out: list[Action]) -> None:
        """The running probe has returned: take a tick that came meanwhile."""
        if self._probe_tick_pending:
            self._probe_tick_pending = False
            if self._leave_phase < 3:
                self._start_probe(now, out)

    def _probe_indirect(self, now: float, seq: int, out: list[Action]) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq or probe.acked:
            return
        target = self.table.get(probe.target)
        if target is None:
            return
        local = self.table.local
        peers = self.table.k_random(
            self.config.indirect_checks,
            lambda m: m is local or m is target or m.state != State.ALIVE,
        )
        for peer in peers:
            nack = peer.pmax >= 4
            if nack:
                probe.expected_nacks += 1
            ind = IndirectPing(
                seq, target.addr, target.port, target.name, nack, self._addr_bytes, self.addr[1], self.name
            )
            self._send(peer.address, codec.encode(ind), peer, out)
        if not self.config.disable_tcp_pings and target.pmax >= 3:
            token = self._next_token()
            self._streams[token] = _Stream("tcp_ping", target.address, seq)
            probe.tcp_token = token
            ping = Ping(seq, target.name, self._addr_bytes, self.addr[1], self.name)
            self._stream_out(now, target.address, codec.encode_stream(ping), token, probe.deadline, out)

    def _probe_end(self, now: float, seq: int, out: list[Action]) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq:
            return
        self._probe = None
        self._acks.pop(seq, None)
        if probe.tcp_token is not None:
            self._streams.pop(probe.tcp_token, None)
        if probe.acked:
            pass
        elif probe.tcp_ok:
            log.debug("%s: reached %s over TCP but not UDP", self.name, probe.target)
            self.awareness.apply_delta(-1)
        else:
            # Lifeguard: missing nacks mean *we* may be the problem.
            if probe.expected_nacks > 0:
                self.awareness.apply_delta(max(probe.expected_nacks - probe.nacks, 0))
            else:
                self.awareness.apply_delta(1)
            self.stats.probes_failed += 1
            self._apply(now, self.table.apply_suspect(Suspect(probe.incarnation, probe.target, self.name), now), out)
        # The tick due at this very deadline has already fired (it was scheduled first).
        self._probe_done(now, out)

    def _on_ping(self, now: float, src: Addr, ping: Ping, out: list[Action]) -> None:
        if ping.node and ping.node != self.name:
            raise RemoteProtocolError(f"ping for unexpected node {ping.node!r}")
        dest = src
        if ping.source_addr and ping.source_port:
            dest = (ip_text(ping.source_addr), ping.source_port)
        node = self.table.get(ping.source_node) if ping.source_node else None
        self._send(dest, codec.encode(Ack(ping.seq_no)), node, out)

    def _on_ack(self, now: float, ack: Ack, out: list[Action]) -> None:
        handler = self._acks.get(ack.seq_no)
        if handler is None:
            return
        if isinstance(handler, _Probe):
            if handler is self._probe and not handler.acked:
                handler.acked = True
                self.awareness.apply_delta(-1)
                # Done: the probe needs no more timers (theirs are ignored when they fire).
                self._probe = None
                del self._acks[ack.seq_no]
                self._probe_done(now, out)
        else:
            del self._acks[ack.seq_no]
            node = self.table.get(handler.requester_node) if handler.requester_node else None
            self._send(handler.requester, codec.encode(Ack(handler.seq)), node, out)

    def _on_indirect_ping(self, now: float, src: Addr, ind: IndirectPing, out: list[Action]) -> None:
        port = ind.port or self.addr[1]
        local_seq = self._next_seq()
        requester = src
        if ind.source_addr and ind.source_port:
            requester = (ip_text(ind.source_addr), ind.source_port)
        self._acks[local_seq] = _Relay(requester, ind.source_node, ind.seq_no, ind.nack)
        self._at(now + self.config.probe_timeout, _RELAY_TIMEOUT, local_seq)
        ping = Ping(local_seq, ind.node, self._addr_bytes, self.addr[1], self.name)
        target = self.table.get(ind.node)
        self._send((ip_text(ind.target), port), codec.encode(ping), target, out)

    def _correct_if_stale(self, now: float, src: Addr, name: str, incarnation: int, out: list[Action]) -> None:
        """Someone is passing on an accusation we know was already refuted: tell them.

        memberlist just ignores a suspect/dead older than the member's incarnation, so a
        member that missed every copy of the refutation keeps its stale suspicion and, at
        the end of the timeout, declares a healthy node dead (seen in simulation about once
        per few hundred refutations).  We send the refutation (the member's current alive,
        unchanged) straight back to whoever forwarded the stale news, at most once a second
        per (sender, member).  A plain memberlist alive: Serf agents take it as such.
        """
        member = self.table.get(name)
        if member is None or member.state != State.ALIVE or incarnation >= member.incarnation:
            return
        key = (src, name)
        last = self._corrections.get(key)
        if last is not None and now - last < _CORRECTION_INTERVAL:
            return
        if len(self._corrections) > 4096:
            self._corrections.clear()
        self._corrections[key] = now
        self._send(src, codec.encode(member.alive_message()), None, out)

    # ======================================================================= gossip

    def _gossip(self, now: float, out: list[Action]) -> None:
        if not len(self.broadcasts) and not len(self.user_broadcasts):
            return
        local = self.table.local
        gttd = self.config.gossip_to_the_dead_time

        def exclude(m: Member) -> bool:
            if m is local:
                return True
            if m.state in (State.ALIVE, State.SUSPECT):
                return False
            if m.state == State.DEAD:
                return now - m.state_change > gttd
            return True

        avail = self.config.udp_buffer_size - codec.COMPOUND_HEADER_OVERHEAD - codec.CRC_OVERHEAD
        for node in self.table.k_random(self.config.gossip_nodes, exclude):
            msgs = self._get_broadcasts(avail)
            if not msgs:
                return
            if len(msgs) == 1:
                self._send_raw(node.address, msgs[0], node, out, "gossip")
            else:
                for compound in codec.make_compounds(msgs):
                    self._send_raw(node.address, compound, node, out, "gossip")

    def _queue_gossip(self, change: Change) -> None:
        if change.gossip is not None:
            self.broadcasts.queue(codec.encode(change.gossip), "node:" + change.name)

    # ======================================================================= push/pull

    def push_pull_message(self, join: bool) -> bytes:
        """Our full state as one push/pull stream message (what a push/pull sends)."""
        return codec.encode_stream(PushPull(join, self.table.push_states(), self._local_state(join)))

    def _push_pull(self, now: float, addr: Addr, *, join: bool) -> StreamRequest:
        token = self._next_token()
        self._streams[token] = _Stream("join" if join else "pushpull", addr)
        deadline = now + self.config.tcp_timeout
        out: list[Action] = []
        self._stream_out(now, addr, self.push_pull_message(join), token, deadline, out)
        (request,) = out
        assert isinstance(request, StreamRequest)
        return request

    def _stream_out(self, now: float, addr: Addr, data: bytes, token: int, deadline: float, out: list[Action]) -> None:
        self.stats.streams_sent += 1
        self.stats.stream_bytes_sent += len(data)
        self._at(deadline, _STREAM_TIMEOUT, token)
        out.append(StreamRequest(addr, data, token, deadline))

    def _merge_remote(self, now: float, msg: PushPull, out: list[Action]) -> None:
        self._verify_protocol(msg)
        ltime = push_pull_ltime(msg.user_state)
        if ltime is not None:
            self.clock.witness(ltime)
        changes, errors = self.table.merge(msg.states, now)
        for exc in errors:
            self.stats.remote_errors += 1
            log.debug("%s: push/pull entry rejected: %s", self.name, exc)
        for change in changes:
            self._apply(now, change, out)

    def _verify_protocol(self, msg: PushPull) -> None:
        """memberlist ``verifyProtocol``: everyone's current versions within everyone's ranges."""
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        vectors = [r.vsn for r in msg.states if r.state == State.ALIVE and len(r.vsn) >= 6]
        vectors += [m.vsn for m in self.table if m.state == State.ALIVE and len(m.vsn) >= 6]
        for v in vectors:
            maxpmin, minpmax = max(maxpmin, v[0]), min(minpmax, v[1])
            maxdmin, mindmax = max(maxdmin, v[3]), min(mindmax, v[4])
        everyone = [(r.name, r.vsn) for r in msg.states] + [(m.name, m.vsn) for m in self.table]
        for name, vsn in everyone:
            pcur, dcur = (vsn[2], vsn[5]) if len(vsn) >= 6 else (0, 0)
            if not maxpmin <= pcur <= minpmax:
                raise RemoteProtocolError(f"node {name!r} protocol version {pcur} not in [{maxpmin}, {minpmax}]")
            if not maxdmin <= dcur <= mindmax:
                raise RemoteProtocolError(f"node {name!r} delegate version {dcur} not in [{maxdmin}, {mindmax}]")

    # ======================================================================= Serf layer

    def _on_user(self, now: float, payload: bytes, out: list[Action]) -> None:
        intent = decode_intent(payload)
        if intent is None:
            return  # Serf events, queries, ...: not ours to answer.
        self.clock.witness(intent.ltime)
        if intent.ltime <= self._intents.get(intent.node, -1):
            return
        self._intents[intent.node] = intent.ltime
        if intent.node == self.name:
            if isinstance(intent, LeaveIntent) and not self._leave_phase and self.config.serf_intents:
                # Serf refutes a stale leave intent about itself with a fresh join intent.
                mine = JoinIntent(self.clock.increment(), self.name)
                self._intents[self.name] = mine.ltime
                self.user_broadcasts.queue(codec.encode(User(encode_intent(mine))), "intent:" + self.name)
            return
        if isinstance(intent, LeaveIntent):
            # Pass leaves on, so Serf agents hear them even if the leaver missed them.  Join
            # intents only set Serf's clock; re-gossiping them costs O(n^2) and buys nothing.
            self.user_broadcasts.queue(codec.encode(User(payload)), "intent:" + intent.node)

    def _reconnect(self, now: float, out: list[Action]) -> None:
        """Serf's reconnect: now and then push/pull with one failed member."""
        timeout = self.config.reconnect_timeout
        for name in [n for n, (_a, since) in self._failed.items() if now - since > timeout]:
            del self._failed[name]
        if not self._failed or self._leave_phase:
            return
        alive = sum(1 for m in self.table if m.state in (State.ALIVE, State.SUSPECT))
        prob = len(self._failed) / max(alive, 1)
        if self.rng.random() > prob:
            return
        name = self.rng.choice(sorted(self._failed))
        addr, _since = self._failed[name]
        out.append(self._push_pull(now, addr, join=False))

    def _anyone_else(self) -> bool:
        """memberlist ``anyAlive``: a member other than us that is not dead or left."""
        local = self.table.local
        return any(m is not local and m.state in (State.ALIVE, State.SUSPECT) for m in self.table)

    def _leave_step(self, now: float, out: list[Action]) -> None:
        if self._leave_phase == 1:
            if self.user_broadcasts.pending("intent:" + self.name) and now < self._leave_deadline:
                self._at(now + max(self.config.gossip_interval / 2, 0.05), _LEAVE_CHECK)
                return
            change = self.table.leave_self(now)
            self._apply(now, change, out)
            others = self._anyone_else()
            self._leave_phase = 2
            self._leave_deadline = now + (self.config.broadcast_timeout if others else 0.0)
        if self._leave_phase == 2:
            if self.broadcasts.pending("node:" + self.name) and now < self._leave_deadline:
                self._at(now + max(self.config.gossip_interval / 2, 0.05), _LEAVE_CHECK)
                return
            self._leave_phase = 3
            out.append(LeaveFinished())

    # ======================================================================= plumbing

    def _apply(self, now: float, change: Change | None, out: list[Action]) -> None:
        if change is None:
            return
        self._queue_gossip(change)
        if change.refuted:
            self.stats.refutes += 1
            self.awareness.apply_delta(1)
        member = self.table.get(change.name)
        if change.new == State.SUSPECT and member is not None and member.suspicion is not None:
            self.stats.suspicions_raised += 1
            self._at(member.suspicion.deadline(), _SUSPICION, change.name)
        elif change.old is None and change.new is None and member is not None and member.suspicion is not None:
            # A confirmation may have pulled the deadline in.
            self._at(member.suspicion.deadline(), _SUSPICION, change.name)
        if change.new == State.DEAD and change.name != self.name:
            self._failed[change.name] = (change.member.addr, now)
        elif change.new in (State.ALIVE, State.LEFT):
            self._failed.pop(change.name, None)
        if change.visible:
            out.append(MemberChanged(change.name, change.old, change.new, change.member))

    def _send(self, addr: Addr, msg: bytes, node: Member | None, out: list[Action]) -> None:
        """Send one message, piggybacking queued broadcasts (memberlist ``sendMsg``)."""
        avail = (
            self.config.udp_buffer_size
            - len(msg)
            - codec.COMPOUND_HEADER_OVERHEAD
            - codec.COMPOUND_OVERHEAD
            - codec.CRC_OVERHEAD
        )
        extra = self._get_broadcasts(avail)
        kind = codec.MessageType(msg[0]).name.lower()
        if extra:
            msg = codec.make_compound([msg, *extra])
        self._send_raw(addr, msg, node, out, kind)

    def _get_broadcasts(self, limit: int) -> list[bytes]:
        """Membership news first, then Serf-layer messages in what room is left."""
        overhead = codec.COMPOUND_OVERHEAD
        n = len(self.table)
        msgs = self.broadcasts.get_broadcasts(overhead, limit, n) if len(self.broadcasts) else []
        if len(self.user_broadcasts):
            used = sum(len(m) + overhead for m in msgs)
            if limit - used > overhead:
                msgs += self.user_broadcasts.get_broadcasts(overhead, limit - used, n)
        return msgs

    def _send_raw(self, addr: Addr, data: bytes, node: Member | None, out: list[Action], kind: str) -> None:
        if node is not None and node.pmax >= 5:
            data = codec.add_crc(data)
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)
        by_type = self.stats.sent_by_type
        by_type[kind] = by_type.get(kind, 0) + 1
        out.append(SendPacket(addr, data))

    def _remote_error(self, src: Addr, exc: RemoteProtocolError) -> None:
        self.stats.remote_errors += 1
        log.debug("%s: dropped input from %s: %s", self.name, src, exc)

    def _at(self, when: float, kind: int, key: object = None) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, kind, key))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _next_token(self) -> int:
        self._token += 1
        return self._token
