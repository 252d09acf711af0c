"""The embedded DNS server: one UDP socket per network, on the network's gateway address.

Split like the other protocol code: `DnsRegistry` (who is where, by which names) and `decide()`
(one datagram in, one decision out) are pure and unit-tested; `DnsServer` is the trio shell that
owns the sockets and the forwarding.

What a container can resolve (dockerd's embedded DNS rules): the names of every endpoint on the
user-defined networks it is itself connected to (container name, aliases, short id, hostname),
also as `name.network`; answers carry the address on the shared network. Names on networks it is
not on do not resolve. A query from an address that is no endpoint of the network is REFUSED.
Anything else is forwarded to the node's resolvers (not from internal networks, which have no
way out); without one it gets NXDOMAIN. A forwarded query gets SERVFAIL if no upstream answers
within the timeout: a client never waits on us for longer than that.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import trio

from . import dnscodec as wire

log = logging.getLogger(__name__)

TTL = 600


@dataclass(frozen=True, slots=True)
class DnsEntry:
    container_id: str
    network_id: str
    ip: IPv4Address
    names: tuple[str, ...]  # lower-case


class DnsRegistry:
    """Every endpoint's DNS names, by network. Pure; the network service keeps it in step with
    the store (add at attach/connect, remove at detach/disconnect)."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, DnsEntry]] = {}  # network id -> container id -> entry
        self._network_names: dict[str, str] = {}
        self._resolving: set[str] = set()  # user-defined networks (names resolve there)

    def set_network(self, network_id: str, name: str, resolves_names: bool) -> None:
        self._entries.setdefault(network_id, {})
        self._network_names[network_id] = name.lower()
        if resolves_names:
            self._resolving.add(network_id)
        else:
            self._resolving.discard(network_id)

    def drop_network(self, network_id: str) -> None:
        self._entries.pop(network_id, None)
        self._network_names.pop(network_id, None)
        self._resolving.discard(network_id)

    def add(self, entry: DnsEntry) -> None:
        self._entries.setdefault(entry.network_id, {})[entry.container_id] = DnsEntry(
            entry.container_id, entry.network_id, entry.ip, tuple(n.lower() for n in entry.names if n))

    def remove(self, network_id: str, container_id: str) -> None:
        self._entries.get(network_id, {}).pop(container_id, None)

    def remove_container(self, container_id: str) -> None:
        for entries in self._entries.values():
            entries.pop(container_id, None)

    def entries(self, network_id: str) -> list[DnsEntry]:
        return list(self._entries.get(network_id, {}).values())

    def who(self, network_id: str, ip: IPv4Address) -> str | None:
        for entry in self._entries.get(network_id, {}).values():
            if entry.ip == ip:
                return entry.container_id
        return None

    def _shared(self, container_id: str) -> list[str]:
        return [nid for nid, entries in self._entries.items()
                if nid in self._resolving and container_id in entries]

    def lookup(self, container_id: str, name: str) -> list[IPv4Address] | None:
        """Addresses `name` has for this container, or None if it is no name of ours."""
        name = name.rstrip(".").lower()
        shared = self._shared(container_id)
        found: list[IPv4Address] = []
        for nid in shared:
            found += [e.ip for e in self._entries[nid].values() if name in e.names]
        if not found and "." in name:
            head, _, net_name = name.rpartition(".")
            for nid in shared:
                if self._network_names.get(nid) == net_name:
                    found += [e.ip for e in self._entries[nid].values() if head in e.names]
        return list(dict.fromkeys(found)) or None

    def reverse(self, container_id: str, ip: IPv4Address) -> str | None:
        for nid in self._shared(container_id):
            for entry in self._entries[nid].values():
                if entry.ip == ip and entry.names:
                    return f"{entry.names[0]}.{self._network_names[nid]}"
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    query: wire.Query


def decide(data: bytes, registry: DnsRegistry, network_id: str, src: IPv4Address,
           can_forward: bool) -> Reply | Forward | None:
    """What to do with one datagram that arrived on `network_id`'s server from `src`."""
    try:
        q = wire.parse_query(data)
    except wire.FormatError:
        err = wire.format_error(data)
        return Reply(err) if err else None
    if q.opcode != wire.OPCODE_QUERY:
        return Reply(wire.response(q, wire.RCODE_NOTIMP))
    cid = registry.who(network_id, src)
    if cid is None:
        return Reply(wire.response(q, wire.RCODE_REFUSED))
    if q.qclass == wire.CLASS_IN:
        if q.qtype == wire.TYPE_PTR:
            ip = wire.reverse_name(q.name)
            target = registry.reverse(cid, ip) if ip is not None else None
            if target is not None:
                return Reply(wire.response(q, wire.RCODE_NOERROR, [wire.ptr_record(target, TTL)]))
        else:
            addrs = registry.lookup(cid, q.name)
            if addrs is not None:
                answers = [wire.a_record(a, TTL) for a in addrs] if q.qtype in (wire.TYPE_A, wire.TYPE_ANY) else []
                random.shuffle(answers)  # dockerd round-robins several endpoints with one alias
                return Reply(wire.response(q, wire.RCODE_NOERROR, answers))
    if can_forward:
        return Forward(q)
    return Reply(wire.response(q, wire.RCODE_NXDOMAIN, recursion_available=False))


# ---- the trio shell -----------------------------------------------------------------------------


def parse_upstream(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and host and "." in host:
        return host, int(port)
    return text, 53


class DnsServer:
    """Serves every network's socket; each `serve()` call is one network's task."""

    def __init__(self, registry: DnsRegistry, upstreams: Sequence[str] = (), *, timeout: float = 2.0,
                 max_inflight: int = 256):
        self._registry = registry
        self._upstreams = [parse_upstream(u) for u in upstreams]
        self._timeout = timeout
        self._inflight = trio.CapacityLimiter(max_inflight)

    @property
    def forwards(self) -> bool:
        return bool(self._upstreams)

    async def serve(self, network_id: str, address: str, port: int = 53, *, forward: bool = True,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind((address, port))
            task_status.started(sock.getsockname()[1])
            can_forward = forward and bool(self._upstreams)
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        data, (src, sport) = await sock.recvfrom(4096)
                    except ConnectionRefusedError:  # ICMP from an earlier reply: not our problem
                        continue
                    decision = decide(data, self._registry, network_id, IPv4Address(src), can_forward)
                    if isinstance(decision, Reply):
                        await _send(sock, decision.data, (src, sport))
                    elif isinstance(decision, Forward):
                        token = object()
                        try:
                            self._inflight.acquire_on_behalf_of_nowait(token)
                        except trio.WouldBlock:
                            await _send(sock, wire.response(decision.query, wire.RCODE_SERVFAIL), (src, sport))
                            continue
                        nursery.start_soon(self._forward, sock, decision.query, (src, sport), token)

    async def _forward(self, sock, query: wire.Query, client, token: object) -> None:
        try:
            answer = await self.resolve_upstream(query)
            await _send(sock, answer, client)
        finally:
            self._inflight.release_on_behalf_of(token)

    async def resolve_upstream(self, query: wire.Query) -> bytes:
        """The first upstream's answer (with the client's id), or SERVFAIL within the timeout."""
        per_server = self._timeout / max(1, len(self._upstreams))
        for host, port in self._upstreams:
            qid = random.randrange(1 << 16)
            with trio.move_on_after(per_server):
                up = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with up:
                    try:
                        await up.connect((host, port))
                        await up.send(wire.with_id(query.raw, qid))
                        while True:
                            data = await up.recv(65535)
                            if len(data) >= 12 and data[:2] == qid.to_bytes(2, "big"):
                                return wire.with_id(data, query.id)
                    except OSError as exc:
                        log.debug("upstream %s:%s: %s", host, port, exc)
        return wire.response(query, wire.RCODE_SERVFAIL)


async def _send(sock, data: bytes, dest) -> None:
    try:
        await sock.sendto(data, dest)
    except OSError as exc:  # the client's namespace went away meanwhile
        log.debug("dns reply to %s: %s", dest, exc)
