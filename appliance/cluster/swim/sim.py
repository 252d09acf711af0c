"""SimCluster: N sans-IO cores over an in-memory network on a fake clock (no trio, no sockets).

Like h11's ``ConnectionPair``, but for a whole cluster.  Everything random comes from one
seed, so a failing run replays exactly.  The network can lose and delay datagrams, cut the
cluster into partitions, crash nodes, and make one node slow: everything that arrives at it
(datagrams, TCP requests and replies) waits ``lag`` seconds in its queue while its timers
still fire on time -- the CPU-starved member of the Lifeguard paper, whose own probes time
out before it reads the acks.  TCP exchanges are
modelled as reliable but delayed (a lost segment costs a 200 ms retransmission timeout,
doubling); across a partition or to a crashed node they fail.

Used by tests/cluster and bench/gossip_sim.py; imports nothing but the core.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .codec import PushPull, encode_stream
from .config import SwimConfig, lan
from .node import (
    Addr,
    JoinFinished,
    LeaveFinished,
    MemberChanged,
    Node,
    SendPacket,
    StreamReply,
    StreamRequest,
)
from .state import State

__all__ = ["SimCluster", "SimHost", "Event"]

_PACKET = 0
_TICK = 1
_STREAM_REQ = 2
_STREAM_RESP = 3
_CALL = 4


@dataclass(frozen=True, slots=True)
class Event:
    """One membership change as seen by ``observer`` at time ``t``."""

    t: float
    observer: str
    name: str
    old: State | None
    new: State | None
    incarnation: int


@dataclass(slots=True)
class SimHost:
    name: str
    addr: Addr
    core: Node
    up: bool = True
    lag: float = 0.0
    scheduled: float = float("inf")
    joined: list[JoinFinished] = field(default_factory=list)
    left: bool = False
    #: Packets and bytes sent over all incarnations of this host (restarts keep counting).
    packets_sent: int = 0
    bytes_sent: int = 0


class SimCluster:
    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.0005, 0.002),
        config: Callable[..., SwimConfig] = lan,
        start: float = 0.0,
        **config_overrides: object,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.now = start
        self._config = config
        self._overrides = config_overrides
        self.hosts: dict[str, SimHost] = {}
        self._by_addr: dict[Addr, SimHost] = {}
        self._queue: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._groups: dict[str, int] | None = None
        self.events: list[Event] = []
        self.dropped = 0
        self.delivered = 0

    # ------------------------------------------------------------------ building

    def add(self, name: str, *, join: Iterable[str] = (), **overrides: object) -> SimHost:
        """Start a node now; ``join`` names seeds to push/pull with."""
        i = len(self._by_addr) + 1
        host_addr = self.hosts[name].addr if name in self.hosts else (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 7946)
        opts = dict(self._overrides)
        opts.update(overrides)
        cfg = self._config(name, bind_addr=host_addr[0], bind_port=host_addr[1], **opts)
        core = Node(cfg, now=self.now, rng=random.Random(self.rng.getrandbits(64)))
        old = self.hosts.get(name)
        host = SimHost(name, host_addr, core)
        if old is not None:
            old.core.stop()
            host.packets_sent, host.bytes_sent = old.packets_sent, old.bytes_sent
        self.hosts[name] = host
        self._by_addr[host_addr] = host
        seeds = [self.hosts[s].addr for s in join]
        if seeds:
            self._perform(host, host.core.join(self.now, seeds))
        self._reschedule(host)
        return host

    def add_many(self, n: int, *, prefix: str = "n", seed_node: str | None = None, stagger: float = 0.0) -> list[str]:
        """Add ``n`` nodes; all but the first join the first (or ``seed_node``)."""
        names = [f"{prefix}{i}" for i in range(len(self.hosts), len(self.hosts) + n)]
        first = seed_node or names[0]
        for idx, name in enumerate(names):
            if stagger and idx:
                self.run_for(stagger)
            self.add(name, join=[] if name == first else [first])
        return names

    def bootstrap(self, n: int, *, prefix: str = "n") -> list[str]:
        """Add ``n`` nodes that already know each other, as if a join had long settled.

        Skips the O(n^2) join storm so steady-state behaviour of big clusters can be
        simulated cheaply; each node merges everyone's state once and forgets the gossip.
        """
        names = [f"{prefix}{i}" for i in range(len(self.hosts), len(self.hosts) + n)]
        hosts = [self.add(name) for name in names]
        everyone = PushPull(False, tuple(h.core.table.local.push_state() for h in hosts), b"")
        data = encode_stream(everyone)
        for host in hosts:
            host.core.receive_stream(self.now, host.addr, data)
            host.core.broadcasts.prune(0)
            self._reschedule(host)
        return names

    def kill(self, name: str) -> None:
        """Crash: the node stops answering at once."""
        host = self.hosts[name]
        host.up = False
        host.core.stop()

    def restart(self, name: str, *, join: Iterable[str]) -> SimHost:
        """A fresh process with the same name and address (incarnation starts over)."""
        self.hosts[name].core.stop()
        return self.add(name, join=join)

    def leave(self, name: str) -> None:
        host = self.hosts[name]
        self._perform(host, host.core.leave(self.now))
        self._reschedule(host)

    def update_tags(self, name: str, tags: dict[str, str]) -> None:
        host = self.hosts[name]
        self._perform(host, host.core.update_tags(self.now, tags))
        self._reschedule(host)

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can talk; nodes in no group are isolated."""
        self._groups = {}
        for gid, group in enumerate(groups):
            for name in group:
                self._groups[name] = gid

    def heal(self) -> None:
        self._groups = None

    def slow(self, name: str, lag: float) -> None:
        self.hosts[name].lag = lag

    # ------------------------------------------------------------------ running

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_until(self, t_end: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= t_end:
            t, _seq, kind, payload = heapq.heappop(queue)
            self.now = t
            self._dispatch(kind, payload)
        self.now = max(self.now, t_end)

    def run_until_true(self, pred: Callable[[], bool], *, timeout: float, step: float = 0.05) -> float | None:
        """Advance until ``pred()``; the time it became true (checked every ``step``), or None."""
        end = self.now + timeout
        while self.now < end:
            if pred():
                return self.now
            self.run_until(min(self.now + step, end))
        return self.now if pred() else None

    # ------------------------------------------------------------------ observing

    def up(self) -> list[str]:
        return [h.name for h in self.hosts.values() if h.up and not h.left]

    def view(self, observer: str) -> dict[str, State]:
        return {m.name: m.state for m in self.hosts[observer].core.members()}

    def sees(self, observer: str, name: str) -> State | None:
        m = self.hosts[observer].core.member(name)
        return m.state if m is not None else None

    def converged(self, names: Iterable[str] | None = None) -> bool:
        """Every listed node sees every listed node alive."""
        group = list(names) if names is not None else self.up()
        for observer in group:
            core = self.hosts[observer].core
            for name in group:
                m = core.member(name)
                if m is None or m.state != State.ALIVE:
                    return False
        return True

    def all_see(self, name: str, states: tuple[State, ...], observers: Iterable[str] | None = None) -> bool:
        group = [o for o in (observers if observers is not None else self.up()) if o != name]
        return all(self.sees(o, name) in states for o in group)

    def packets_sent(self) -> dict[str, int]:
        return {n: h.packets_sent for n, h in self.hosts.items()}

    def bytes_sent(self) -> dict[str, int]:
        return {n: h.bytes_sent for n, h in self.hosts.items()}

    def false_deaths(self, since: float, alive: Iterable[str]) -> list[Event]:
        """DEAD verdicts after ``since`` about nodes that were in fact up."""
        ok = set(alive)
        return [e for e in self.events if e.t >= since and e.new == State.DEAD and e.name in ok]

    # ------------------------------------------------------------------ internals

    def _push(self, t: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, payload))

    def _reachable(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        ga, gb = self._groups.get(a), self._groups.get(b)
        return ga is not None and ga == gb

    def _latency(self) -> float:
        lo, hi = self.delay
        return lo + (hi - lo) * self.rng.random()

    def _tcp_latency(self) -> float:
        """One TCP segment: a lost one costs a retransmission timeout (200 ms, doubling)."""
        delay, rto = self._latency(), 0.2
        while self.loss and self.rng.random() < self.loss:
            delay += rto
            rto *= 2
        return delay

    def _reschedule(self, host: SimHost) -> None:
        if not host.up:
            return
        when = max(host.core.next_deadline(), self.now)
        if when < host.scheduled:
            host.scheduled = when
            self._push(when, _TICK, host)

    def _dispatch(self, kind: int, payload: object) -> None:
        now = self.now
        if kind == _TICK:
            host = payload  # type: ignore[assignment]
            assert isinstance(host, SimHost)
            if not host.up or self.hosts.get(host.name) is not host:
                return
            if now >= host.scheduled:
                host.scheduled = float("inf")
            self._perform(host, host.core.tick(now))
            self._reschedule(host)
        elif kind == _PACKET:
            dst, src, data, sender, *late = payload  # type: ignore[misc]
            host = self._by_addr.get(dst)
            if host is None or not host.up or not self._reachable(sender, host.name):
                self.dropped += 1
                return
            if host.lag and not late:
                # Arrived at a slow host: it gets round to it ``lag`` later.
                self._push(now + host.lag, _PACKET, (dst, src, data, sender, True))
                return
            self.delivered += 1
            self._perform(host, host.core.receive(now, src, data))
            self._reschedule(host)
        elif kind == _STREAM_REQ:
            host_from, req, *late = payload  # type: ignore[misc]
            target = self._by_addr.get(req.addr)
            if target is None or not target.up or not self._reachable(host_from.name, target.name):
                if target is not None and not target.up and self._reachable(host_from.name, target.name):
                    # Connection refused comes back fast; a partition just times out.
                    self._push(now + self._tcp_latency(), _STREAM_RESP, (host_from, req.token, None))
                return
            if target.lag and not late:
                self._push(now + target.lag, _STREAM_REQ, (host_from, req, True))
                return
            actions = target.core.receive_stream(now, host_from.addr, req.data)
            reply = None
            rest = []
            for a in actions:
                if isinstance(a, StreamReply):
                    reply = a.data
                else:
                    rest.append(a)
            self._perform(target, rest)
            self._reschedule(target)
            if reply is not None:
                self._push(now + self._tcp_latency(), _STREAM_RESP, (host_from, req.token, reply))
        elif kind == _STREAM_RESP:
            host, token, reply, *late = payload  # type: ignore[misc]
            if not host.up or self.hosts.get(host.name) is not host:
                return
            if host.lag and not late:
                self._push(now + host.lag, _STREAM_RESP, (host, token, reply, True))
                return
            self._perform(host, host.core.stream_response(now, token, reply))
            self._reschedule(host)
        elif kind == _CALL:
            fn = payload  # type: ignore[assignment]
            fn()  # type: ignore[operator]

    def _perform(self, host: SimHost, actions: list) -> None:
        now = self.now
        for action in actions:
            if isinstance(action, SendPacket):
                host.packets_sent += 1
                host.bytes_sent += len(action.data)
                if self.loss and self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                self._push(now + self._latency(), _PACKET, (action.addr, host.addr, action.data, host.name))
            elif isinstance(action, StreamRequest):
                self._push(now + self._tcp_latency(), _STREAM_REQ, (host, action))
            elif isinstance(action, MemberChanged):
                self.events.append(
                    Event(now, host.name, action.name, action.old, action.new, action.member.incarnation)
                )
            elif isinstance(action, JoinFinished):
                host.joined.append(action)
            elif isinstance(action, LeaveFinished):
                host.left = True
                host.up = False
                host.core.stop()
