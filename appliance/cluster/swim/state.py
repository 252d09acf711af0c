"""The member table: every change to a member's state happens in this file (h11's Rule 1).

The rules are memberlist's (state.go ``aliveNode``, ``suspectNode``, ``deadNode``,
``refute``, ``mergeState``), as a table over (current state x news):

==============  =====================================  ==========================================
news            about another node                     about ourselves
==============  =====================================  ==========================================
alive(inc)      unknown: add, ALIVE.  inc > ours:      inc < ours: ignore.  Same inc, meta and
                take it (any state -> ALIVE, meta and  vsn: ignore.  Otherwise refute (someone
                addr updated).  inc <= ours: ignore.   speaks for us): alive at a higher inc.
                Different addr: only if LEFT (or DEAD
                past the reclaim time), else conflict.
suspect(inc)    unknown or inc < ours: ignore.         ALIVE: refute (inc above the accusation,
                Suspicion running: count ``from`` as   awareness +1).  Never marked suspect.
                a confirmation, re-gossip if new.
                ALIVE: -> SUSPECT, start suspicion.
                SUSPECT/DEAD/LEFT: ignore.
dead(inc)       unknown or inc < ours: ignore.         not leaving: refute.  Leaving: -> LEFT.
                DEAD/LEFT: ignore.  Otherwise ->
                LEFT if from == node else DEAD.
==============  =====================================  ==========================================

Stale news is normal protocol and changes nothing.  Our own misuse (leaving twice, meta too
large, changing meta after leaving) raises :class:`LocalProtocolError` and changes nothing.
Each applied piece of news returns a :class:`Change` telling the core what to gossip and
which :class:`MemberView` transition to report; the table itself never does I/O.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Iterator

from .codec import META_MAX_SIZE, Alive, Dead, PushNodeState, Suspect
from .errors import LocalProtocolError, RemoteProtocolError
from .serf import decode_tags
from .suspicion import Suspicion, suspicion_timeout

__all__ = ["State", "Member", "MemberView", "Change", "MemberTable", "ip_bytes", "ip_text"]


class State(IntEnum):
    """Member state; the values are memberlist's ``pushNodeState.State`` on the wire."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


def ip_bytes(host: str) -> bytes:
    """'10.0.0.1' -> 4 bytes, IPv6 -> 16 bytes (memberlist's net.IP on the wire)."""
    return ipaddress.ip_address(host).packed


def ip_text(raw: bytes) -> str:
    if len(raw) not in (4, 16):
        raise RemoteProtocolError(f"address must be 4 or 16 bytes, got {len(raw)}")
    return ipaddress.ip_address(raw).compressed


@dataclass(frozen=True, slots=True)
class MemberView:
    """An immutable snapshot of one member, as handed out of the core."""

    name: str
    host: str
    port: int
    meta: bytes
    incarnation: int
    state: State
    vsn: bytes

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def tags(self) -> dict[str, str]:
        try:
            return decode_tags(self.meta)
        except RemoteProtocolError:
            return {}


class Member:
    """Our mutable record of one member.  Only :class:`MemberTable` writes its fields."""

    __slots__ = (
        "name",
        "addr",
        "host",
        "port",
        "meta",
        "vsn",
        "incarnation",
        "state",
        "state_change",
        "suspicion",
    )

    def __init__(
        self, name: str, addr: bytes, port: int, meta: bytes, vsn: bytes, incarnation: int, state: State, now: float
    ) -> None:
        self.name = name
        self.addr = addr
        self.host = ip_text(addr)
        self.port = port
        self.meta = meta
        self.vsn = vsn
        self.incarnation = incarnation
        self.state = state
        self.state_change = now
        self.suspicion: Suspicion | None = None

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def view(self) -> MemberView:
        return MemberView(self.name, self.host, self.port, self.meta, self.incarnation, self.state, self.vsn)

    def alive_message(self) -> Alive:
        return Alive(self.incarnation, self.name, self.addr, self.port, self.meta, self.vsn)

    def push_state(self) -> PushNodeState:
        return PushNodeState(self.name, self.addr, self.port, self.meta, self.incarnation, int(self.state), self.vsn)

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.state.name}, inc={self.incarnation})"


@dataclass(frozen=True, slots=True)
class Change:
    """What one applied piece of news did.

    ``gossip``: the message to (re)broadcast, named after ``name``.  ``old``/``new``: the state
    transition to report (``None`` old means a new member, ``None`` new a reaped one); both
    None when nothing visible changed (a confirmation).  ``refuted``: we had to refute.
    """

    name: str
    gossip: Alive | Suspect | Dead | None
    old: State | None
    new: State | None
    member: MemberView
    refuted: bool = False
    meta_changed: bool = False

    @property
    def visible(self) -> bool:
        return self.old != self.new or self.meta_changed


class MemberTable:
    """All members we know, ourselves included, plus the probe order."""

    def __init__(
        self,
        name: str,
        addr: bytes,
        port: int,
        meta: bytes,
        vsn: bytes,
        now: float,
        *,
        suspicion_mult: int = 4,
        suspicion_max_timeout_mult: int = 6,
        probe_interval: float = 1.0,
        dead_node_reclaim_time: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if len(meta) > META_MAX_SIZE:
            raise LocalProtocolError(f"meta is {len(meta)} bytes, the limit is {META_MAX_SIZE}")
        self.suspicion_mult = suspicion_mult
        self.suspicion_max_timeout_mult = suspicion_max_timeout_mult
        self.probe_interval = probe_interval
        self.dead_node_reclaim_time = dead_node_reclaim_time
        self.rng = rng or random.Random()
        self.local_name = name
        self.leaving = False
        self._members: dict[str, Member] = {}
        self._order: list[Member] = []
        self._probe_index = 0
        # memberlist setAlive(): our own alive at incarnation 1, applied as bootstrap.
        self.local = self._add(name, addr, port, meta, vsn, now)
        self.local.incarnation = 1
        self.local.state = State.ALIVE

    # ----------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._order)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def views(self) -> list[MemberView]:
        return [m.view() for m in self._order]

    def push_states(self) -> tuple[PushNodeState, ...]:
        return tuple(m.push_state() for m in self._order)

    def k_random(self, k: int, exclude: Callable[[Member], bool]) -> list[Member]:
        """memberlist ``kRandomNodes``: up to ``k`` distinct random members not excluded.

        memberlist tries 3n random draws, which on tiny clusters can miss the only candidate;
        up to 32 members we draw without replacement, so a candidate is never missed.
        """
        nodes = self._order
        n = len(nodes)
        picked: list[Member] = []
        if n <= 32:
            for idx in self.rng.sample(range(n), n):
                node = nodes[idx]
                if not exclude(node):
                    picked.append(node)
                    if len(picked) >= k:
                        break
            return picked
        tries = 0
        while tries < 3 * n and len(picked) < k:
            tries += 1
            node = nodes[self.rng.randrange(n)]
            if exclude(node) or node in picked:
                continue
            picked.append(node)
        return picked

    def next_probe_target(self, now: float, gossip_to_the_dead_time: float) -> tuple[Member | None, list[Change]]:
        """memberlist ``probe``: the next member in round-robin order that is worth probing.

        Wrapping around reaps dead/left members older than ``gossip_to_the_dead_time`` and
        reshuffles the order; the reaped members come back as Changes (``new`` None).
        """
        reaped: list[Change] = []
        checks = 0
        while checks < len(self._order):
            if self._probe_index >= len(self._order):
                reaped.extend(self._reset(now, gossip_to_the_dead_time))
                self._probe_index = 0
                checks += 1
                continue
            node = self._order[self._probe_index]
            self._probe_index += 1
            if node is self.local or node.state in (State.DEAD, State.LEFT):
                checks += 1
                continue
            return node, reaped
        return None, reaped

    def suspicion_params(self) -> tuple[int, float, float]:
        """(k, min, max) for a new suspicion, from the current cluster size."""
        n = len(self._members)
        k = self.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        lo = suspicion_timeout(self.suspicion_mult, n, self.probe_interval)
        return k, lo, self.suspicion_max_timeout_mult * lo

    # ----------------------------------------------------------------------- news

    def apply_alive(self, a: Alive, now: float) -> Change | None:
        """memberlist ``aliveNode``."""
        if self.leaving and a.node == self.local_name:
            return None
        if len(a.vsn) >= 3:
            pmin, pmax = a.vsn[0], a.vsn[1]
            if pmin == 0 or pmax == 0 or pmin > pmax:
                raise RemoteProtocolError(f"alive for {a.node!r} with bad protocol versions {a.vsn!r}")
        if len(a.addr) not in (4, 16):
            raise RemoteProtocolError(f"alive for {a.node!r} with a {len(a.addr)}-byte address")
        if not a.node:
            raise RemoteProtocolError("alive without a node name")
        state = self._members.get(a.node)
        updates_addr = False
        is_local = a.node == self.local_name
        created = state is None
        if state is None:
            state = self._add(a.node, a.addr, a.port, a.meta, a.vsn if len(a.vsn) >= 6 else b"", now)
        elif state.addr != a.addr or state.port != a.port:
            reclaim = (
                self.dead_node_reclaim_time > 0 and now - state.state_change > self.dead_node_reclaim_time
            )
            if state.state == State.LEFT or (state.state == State.DEAD and reclaim):
                updates_addr = True
            else:
                raise RemoteProtocolError(
                    f"conflicting address for {a.node!r}: {state.host}:{state.port} vs "
                    f"{ip_text(a.addr)}:{a.port} (state {state.state.name})"
                )
        if a.incarnation <= state.incarnation and not is_local and not updates_addr:
            return None
        if a.incarnation < state.incarnation and is_local:
            return None
        state.suspicion = None
        old_state = state.state
        old_meta = state.meta
        if is_local:
            if a.incarnation == state.incarnation and a.meta == state.meta and a.vsn == state.vsn:
                return None
            return self.refute(a.incarnation, now)
        if len(a.vsn) >= 6:
            state.vsn = bytes(a.vsn[:6])
        state.incarnation = a.incarnation
        state.meta = a.meta
        if state.addr != a.addr:
            state.addr = a.addr
            state.host = ip_text(a.addr)
        state.port = a.port
        if state.state != State.ALIVE:
            state.state = State.ALIVE
            state.state_change = now
        return Change(
            a.node,
            a,
            None if created else old_state,
            State.ALIVE,
            state.view(),
            meta_changed=(old_meta != state.meta and old_state not in (State.DEAD, State.LEFT)),
        )

    def apply_suspect(self, s: Suspect, now: float) -> Change | None:
        """memberlist ``suspectNode``."""
        state = self._members.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return None
        if state.suspicion is not None:
            if state.suspicion.confirm(s.from_node):
                return Change(s.node, s, None, None, state.view())
            return None
        if state.state != State.ALIVE:
            return None
        if state is self.local:
            if self.leaving:
                return None
            return self.refute(s.incarnation, now)
        old = state.state
        state.incarnation = s.incarnation
        state.state = State.SUSPECT
        state.state_change = now
        k, lo, hi = self.suspicion_params()
        state.suspicion = Suspicion(s.from_node, k, lo, hi, now)
        return Change(s.node, s, old, State.SUSPECT, state.view())

    def apply_dead(self, d: Dead, now: float) -> Change | None:
        """memberlist ``deadNode``; ``from == node`` is a graceful leave (LEFT)."""
        state = self._members.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return None
        state.suspicion = None
        if state.state in (State.DEAD, State.LEFT):
            return None
        if state is self.local and not self.leaving:
            return self.refute(d.incarnation, now)
        old = state.state
        state.incarnation = d.incarnation
        state.state = State.LEFT if d.node == d.from_node else State.DEAD
        state.state_change = now
        return Change(d.node, d, old, state.state, state.view())

    def expire_suspicion(self, name: str, now: float) -> Change | None:
        """The suspicion timer about ``name`` ran out: declare it dead, from us."""
        state = self._members.get(name)
        if state is None or state.state != State.SUSPECT or state.suspicion is None:
            return None
        if now < state.suspicion.deadline():
            return None
        return self.apply_dead(Dead(state.incarnation, name, self.local_name), now)

    def merge(self, remote: tuple[PushNodeState, ...], now: float) -> tuple[list[Change], list[RemoteProtocolError]]:
        """memberlist ``mergeState``: a remote full state, one node at a time."""
        changes: list[Change] = []
        errors: list[RemoteProtocolError] = []
        for r in remote:
            try:
                if r.state == State.ALIVE:
                    change = self.apply_alive(Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn), now)
                elif r.state == State.LEFT:
                    change = self.apply_dead(Dead(r.incarnation, r.name, r.name), now)
                elif r.state in (State.DEAD, State.SUSPECT):
                    # A remote dead is only a suspicion here: let the node refute it.
                    change = self.apply_suspect(Suspect(r.incarnation, r.name, self.local_name), now)
                else:
                    raise RemoteProtocolError(f"unknown state {r.state} for {r.name!r}")
            except RemoteProtocolError as exc:
                errors.append(exc)
                continue
            if change is not None:
                changes.append(change)
        return changes, errors

    # ----------------------------------------------------------------------- ourselves

    def refute(self, accused_incarnation: int, now: float) -> Change:
        """Beat an accusation about ourselves: incarnation above it, gossip alive."""
        me = self.local
        inc = me.incarnation + 1
        if accused_incarnation >= inc:
            inc = accused_incarnation + 1
        me.incarnation = inc
        alive = me.alive_message()
        return Change(me.name, alive, me.state, me.state, me.view(), refuted=True)

    def set_local_meta(self, meta: bytes, now: float) -> Change:
        """New meta (tags) for ourselves: bump the incarnation and gossip alive."""
        if self.leaving:
            raise LocalProtocolError("cannot change meta after leaving")
        if len(meta) > META_MAX_SIZE:
            raise LocalProtocolError(f"meta is {len(meta)} bytes, the limit is {META_MAX_SIZE}")
        me = self.local
        me.meta = bytes(meta)
        me.incarnation += 1
        return Change(me.name, me.alive_message(), State.ALIVE, State.ALIVE, me.view(), meta_changed=True)

    def local_alive(self) -> Change:
        """Our current alive message, for the first broadcast after start."""
        me = self.local
        return Change(me.name, me.alive_message(), None, State.ALIVE, me.view())

    def start_leave(self) -> None:
        if self.leaving:
            raise LocalProtocolError("already leaving")
        self.leaving = True

    def leave_self(self, now: float) -> Change:
        """Mark ourselves LEFT (memberlist Leave: a dead message from ourselves)."""
        if not self.leaving:
            raise LocalProtocolError("call start_leave() first")
        me = self.local
        change = self.apply_dead(Dead(me.incarnation, me.name, me.name), now)
        if change is None:
            raise LocalProtocolError("already left")
        return change

    # ----------------------------------------------------------------------- internals

    def _add(self, name: str, addr: bytes, port: int, meta: bytes, vsn: bytes, now: float) -> Member:
        member = Member(name, addr, port, meta, vsn, 0, State.DEAD, now)
        self._members[name] = member
        # A random position keeps the worst-case detection time low (memberlist aliveNode).
        n = len(self._order)
        self._order.append(member)
        offset = self.rng.randrange(n + 1) if n else 0
        self._order[offset], self._order[n] = self._order[n], self._order[offset]
        return member

    def _reset(self, now: float, gossip_to_the_dead_time: float) -> list[Change]:
        """memberlist ``resetNodes``: drop long-dead members, reshuffle the probe order."""
        keep: list[Member] = []
        reaped: list[Change] = []
        for m in self._order:
            if m.state in (State.DEAD, State.LEFT) and now - m.state_change > gossip_to_the_dead_time and m is not self.local:
                del self._members[m.name]
                reaped.append(Change(m.name, None, m.state, None, m.view()))
            else:
                keep.append(m)
        self.rng.shuffle(keep)
        self._order = keep
        return reaped
