"""The embedded DNS server: one UDP socket and one TCP listener per network, on the network's
gateway address, port 53 (as dockerd's embedded DNS).

Split like the other protocol code: `DnsRegistry` (who is where, by which names) and `decide()`
(one message in, one decision out) are pure and unit-tested, and so is the TCP framing
(`dnscodec.StreamDecoder`); `DnsServer` is the trio shell that owns the sockets and the
forwarding.

What a container can resolve (dockerd's embedded DNS rules): the names of every endpoint on the
user-defined networks it is itself connected to (container name, aliases, short id, hostname),
also as `name.network`; answers carry the address on the shared network. Names on networks it is
not on do not resolve. A query from an address that is no endpoint of the network is REFUSED.
Anything else is forwarded to the node's resolvers (not from internal networks, which have no
way out); without one it gets NXDOMAIN. A forwarded query gets SERVFAIL if no upstream answers
within the timeout: a client never waits on us for longer than that.

TCP answers exactly as UDP does, except that nothing is truncated (UDP answers over 512 bytes
carry TC, so the client asks again over TCP) and unknown names are forwarded over TCP. One
connection carries any number of queries, answered in order; it is closed when no whole query
arrives within `tcp_first_read` of the connection or `tcp_idle` of the last answer (dockerd's
DNS library uses the same 2 s and 8 s), on a length prefix no DNS message can have, and after
the FORMERR for a message that did not parse. At most `max_tcp_clients` connections at once;
one more is closed at once.
"""

from __future__ import annotations

import errno
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
           can_forward: bool, *, max_size: int = wire.MAX_UDP) -> Reply | Forward | None:
    """What to do with one message that arrived on `network_id`'s server from `src` (over UDP,
    or over TCP with `max_size=wire.MAX_TCP`)."""
    try:
        q = wire.parse_query(data)
    except wire.FormatError:
        err = wire.format_error(data)
        return Reply(err) if err else None
    if q.opcode != wire.OPCODE_QUERY:
        return Reply(wire.response(q, wire.RCODE_NOTIMP, max_size=max_size))
    cid = registry.who(network_id, src)
    if cid is None:
        return Reply(wire.response(q, wire.RCODE_REFUSED, max_size=max_size))
    if q.qclass == wire.CLASS_IN:
        if q.qtype == wire.TYPE_PTR:
            ip = wire.reverse_name(q.name)
            target = registry.reverse(cid, ip) if ip is not None else None
            if target is not None:
                return Reply(wire.response(q, wire.RCODE_NOERROR, [wire.ptr_record(target, TTL)],
                                           max_size=max_size))
        else:
            addrs = registry.lookup(cid, q.name)
            if addrs is not None:
                answers = [wire.a_record(a, TTL) for a in addrs] if q.qtype in (wire.TYPE_A, wire.TYPE_ANY) else []
                random.shuffle(answers)  # dockerd round-robins several endpoints with one alias
                return Reply(wire.response(q, wire.RCODE_NOERROR, answers, max_size=max_size))
    if can_forward:
        return Forward(q)
    return Reply(wire.response(q, wire.RCODE_NXDOMAIN, recursion_available=False, max_size=max_size))


# ---- the trio shell -----------------------------------------------------------------------------


def parse_upstream(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and host and "." in host:
        return host, int(port)
    return text, 53


class DnsServer:
    """Serves every network's sockets; each `serve()` call is one network's task."""

    def __init__(self, registry: DnsRegistry, upstreams: Sequence[str] = (), *, timeout: float = 2.0,
                 max_inflight: int = 256, max_tcp_clients: int = 128, tcp_first_read: float = 2.0,
                 tcp_idle: float = 8.0):
        self._registry = registry
        self._upstreams = [parse_upstream(u) for u in upstreams]
        self._timeout = timeout
        self._inflight = trio.CapacityLimiter(max_inflight)
        self._tcp_clients = trio.CapacityLimiter(max_tcp_clients)
        self._tcp_first_read = tcp_first_read
        self._tcp_idle = tcp_idle

    @property
    def forwards(self) -> bool:
        return bool(self._upstreams)

    async def serve(self, network_id: str, address: str, port: int = 53, *, forward: bool = True,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock, listener = await _bind(address, port)
        with sock, listener:
            task_status.started(sock.getsockname()[1])
            can_forward = forward and bool(self._upstreams)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_tcp, listener, network_id, can_forward)
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

    async def _serve_tcp(self, sock, network_id: str, can_forward: bool) -> None:
        async def client(stream: trio.SocketStream) -> None:
            async with stream:
                try:
                    self._tcp_clients.acquire_nowait()
                except trio.WouldBlock:
                    log.debug("dns over tcp on %s: too many connections, one closed", network_id[:12])
                    return
                try:
                    src = IPv4Address(stream.socket.getpeername()[0])
                    await self.handle_stream(stream, network_id, src, can_forward)
                except OSError as exc:  # the peer reset, or its namespace went away
                    log.debug("dns over tcp on %s: %s", network_id[:12], exc)
                finally:
                    self._tcp_clients.release()

        await trio.serve_listeners(client, [trio.SocketListener(sock)])

    async def handle_stream(self, stream: trio.abc.Stream, network_id: str, src: IPv4Address,
                            can_forward: bool) -> None:
        """One TCP connection from `src`: queries answered in order until the peer closes, goes
        quiet or sends what cannot be DNS. Returns; never raises for what the peer did."""
        decoder = wire.StreamDecoder()
        wait = self._tcp_first_read
        try:
            while True:
                message = None
                with trio.move_on_after(wait):
                    message = await _receive_message(stream, decoder)
                if message is None:  # closed by the peer, or idle for too long
                    return
                decision = decide(message, self._registry, network_id, src, can_forward, max_size=wire.MAX_TCP)
                if decision is None:
                    return
                if isinstance(decision, Forward):
                    answer = await self.resolve_upstream(decision.query, tcp=True)
                else:
                    answer = decision.data
                with trio.move_on_after(self._tcp_idle) as sending:  # a peer that never reads
                    await stream.send_all(wire.frame(answer))
                if sending.cancelled_caught or (isinstance(decision, Reply)
                                                and answer[3] & 0xF == wire.RCODE_FORMERR):
                    return
                wait = self._tcp_idle
        except wire.FormatError as exc:
            log.debug("dns over tcp from %s: %s", src, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def resolve_upstream(self, query: wire.Query, *, tcp: bool = False) -> bytes:
        """The first upstream's answer (with the client's id), or SERVFAIL within the timeout.
        A query that came over TCP goes to the upstreams over TCP."""
        per_server = self._timeout / max(1, len(self._upstreams))
        ask = _ask_tcp if tcp else _ask_udp
        for host, port in self._upstreams:
            qid = random.randrange(1 << 16)
            with trio.move_on_after(per_server):
                try:
                    data = await ask((host, port), wire.with_id(query.raw, qid), qid)
                except (OSError, wire.FormatError, trio.BrokenResourceError) as exc:
                    log.debug("upstream %s:%s: %s", host, port, exc)
                    continue
                if data is not None:
                    return wire.with_id(data, query.id)
        return wire.response(query, wire.RCODE_SERVFAIL, max_size=wire.MAX_TCP if tcp else wire.MAX_UDP)


async def _bind(address: str, port: int):
    """A UDP socket and a listening TCP socket on the same address and port (port 0: the
    kernel's pick for UDP, taken for TCP too, or another pick if TCP has it)."""
    for attempt in range(8):
        udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await udp.bind((address, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await tcp.bind((address, udp.getsockname()[1]))
            tcp.listen(64)
        except OSError as exc:
            udp.close()
            tcp.close()
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt < 7:
                continue
            raise
        return udp, tcp
    raise AssertionError("unreachable")


async def _receive_message(stream: trio.abc.ReceiveStream, decoder: wire.StreamDecoder) -> bytes | None:
    """The next whole message (None: the peer closed). Reads only when none is buffered."""
    while (message := decoder.next_message()) is None:
        data = await stream.receive_some(wire.MAX_TCP + 2)
        if not data:
            return None
        decoder.feed(data)
    return message


async def _ask_udp(server: tuple[str, int], data: bytes, qid: int) -> bytes | None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
        await up.connect(server)
        await up.send(data)
        while True:
            answer = await up.recv(65535)
            if len(answer) >= 12 and answer[:2] == qid.to_bytes(2, "big"):
                return answer


async def _ask_tcp(server: tuple[str, int], data: bytes, qid: int) -> bytes | None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        await sock.connect(server)
        stream = trio.SocketStream(sock)
        await stream.send_all(wire.frame(data))
        decoder = wire.StreamDecoder()
        while True:
            answer = await _receive_message(stream, decoder)
            if answer is None:
                return None
            if answer[:2] == qid.to_bytes(2, "big"):
                return answer


async def _send(sock, data: bytes, dest) -> None:
    try:
        await sock.sendto(data, dest)
    except OSError as exc:  # the client's namespace went away meanwhile
        log.debug("dns reply to %s: %s", dest, exc)
