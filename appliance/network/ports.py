"""Published ports: host port reservation, and a userland proxy for what DNAT cannot catch.

The data path is iptables DNAT in the node's namespace (rules.py): traffic that arrives for a
local address from outside, or from a container on another network, is rewritten in the kernel
and routed to the container at full speed. DNAT does not see connections to 127.0.0.1 made on
the node itself, nor a container reaching its own published port through the node (hairpin):
those land on the listening socket that reserves the port, and a small trio proxy relays them
(what dockerd's docker-proxy does). bench/network_setup.py measures both paths.

Each published port holds a real socket bound to (host ip, host port): that is what makes "port
already taken" a clean error before anything is configured, whoever holds the port (another
container, or any process on the node), and keeps the port ours while the container runs.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import trio

from ..errors import InvalidParameter, SystemError_

log = logging.getLogger(__name__)

UDP_FLOW_IDLE = 60.0  # seconds a UDP client mapping lives without traffic
_BUFSIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class PortRequest:
    """One `-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]` (host_port 0: any free port)."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""
    host_port: int = 0


@dataclass(frozen=True, slots=True)
class Published:
    """A port as it was bound: what `docker port` and NetworkSettings.Ports show."""

    proto: str
    container_port: int
    host_ip: str  # "0.0.0.0" when the request named no address
    host_port: int


def parse_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" -> (80, "tcp"); a bare "80" is tcp."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise InvalidParameter(f"invalid proto: {proto}")
    try:
        value = int(port)
    except ValueError:
        raise InvalidParameter(f"invalid containerPort: {port}") from None
    if not 0 < value < 65536:
        raise InvalidParameter(f"invalid containerPort: {port}")
    return value, proto


def requests_from(bindings: Mapping[str, Sequence[tuple[str, str]]], exposed: Iterable[str] = (),
                  publish_all: bool = False) -> list[PortRequest]:
    """HostConfig.PortBindings ({"80/tcp": [(host ip, host port)]}) plus, with -P, every exposed
    port that has no binding, on a free host port."""
    out: list[PortRequest] = []
    for key, targets in bindings.items():
        cport, proto = parse_port_key(key)
        for host_ip, host_port in targets or [("", "")]:
            hp = 0
            if host_port:
                first = host_port.split("-", 1)[0]
                try:
                    hp = int(first)
                except ValueError:
                    raise InvalidParameter(f"invalid hostPort: {host_port}") from None
                if not 0 <= hp < 65536:
                    raise InvalidParameter(f"invalid hostPort: {host_port}")
            out.append(PortRequest(cport, proto, host_ip or "", hp))
    if publish_all:
        bound = {(r.container_port, r.proto) for r in out}
        for key in exposed:
            cport, proto = parse_port_key(key)
            if (cport, proto) not in bound:
                out.append(PortRequest(cport, proto))
    return out


def _overlaps(a: Published, proto: str, host_ip: str, host_port: int) -> bool:
    return (a.proto == proto and a.host_port == host_port
            and (a.host_ip == host_ip or "0.0.0.0" in (a.host_ip, host_ip)))


class Reservation:
    """The bound sockets of one container's published ports."""

    def __init__(self) -> None:
        self.items: list[tuple[Published, socket.socket]] = []

    def close(self) -> None:
        for _, sock in self.items:
            sock.close()
        self.items.clear()

    @property
    def published(self) -> list[Published]:
        return [p for p, _ in self.items]


def reserve(requests: Sequence[PortRequest], taken: Iterable[Published], endpoint: str,
            container_ip: str) -> Reservation:
    """Bind every requested port or none: a clash raises SystemError_ (dockerd's words and its
    500: libnetwork wraps it as an internal error) and closes what was bound. `taken`: ports our
    other containers hold; `endpoint` is "NAME (ID)" for the message."""
    held = list(taken)
    out = Reservation()
    try:
        for req in requests:
            host_ip = req.host_ip or "0.0.0.0"
            if req.host_port and any(_overlaps(p, req.proto, host_ip, req.host_port) for p in held):
                raise SystemError_(f"driver failed programming external connectivity on endpoint {endpoint}: "
                                   f"Bind for {host_ip}:{req.host_port} failed: port is already allocated")
            sock = _bind(req, host_ip, endpoint, container_ip)
            pub = Published(req.proto, req.container_port, host_ip, sock.getsockname()[1])
            out.items.append((pub, sock))
            held.append(pub)
    except BaseException:
        out.close()
        raise
    return out


def _bind(req: PortRequest, host_ip: str, endpoint: str, container_ip: str) -> socket.socket:
    kind = socket.SOCK_STREAM if req.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, req.host_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
        return sock
    except OSError as exc:
        sock.close()
        what = f"{host_ip}:{req.host_port}:{container_ip}:{req.container_port}/{req.proto}"
        if exc.errno == errno.EADDRINUSE:
            raise SystemError_(f"driver failed programming external connectivity on endpoint {endpoint}: "
                               f"failed to bind host port for {what}: address already in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SystemError_(f"driver failed programming external connectivity on endpoint {endpoint}: "
                               f"failed to bind host port for {what}: cannot assign requested address") from None
        raise


# ---- the userland proxy -------------------------------------------------------------------------


async def proxy(sock: socket.socket, proto: str, target: tuple[str, int]) -> None:
    """Relay what reaches the reserving socket to the container until cancelled. The socket
    stays owned by the Reservation (closed there)."""
    tsock = trio.socket.from_stdlib_socket(sock.dup())
    with tsock:
        if proto == "tcp":
            await _tcp_proxy(tsock, target)
        else:
            await _udp_proxy(tsock, target)


async def _tcp_proxy(listener, target: tuple[str, int]) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            try:
                conn, _ = await listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("published port proxy: %s", exc)
                    await trio.sleep(0.1)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            nursery.start_soon(_tcp_pair, trio.SocketStream(conn), target)


async def _tcp_pair(client: trio.SocketStream, target: tuple[str, int]) -> None:
    async with client:
        try:
            upstream = await trio.open_tcp_stream(*target)
        except OSError as exc:
            log.debug("published port proxy: %s:%s: %s", *target, exc)
            return
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream)
            nursery.start_soon(_pump, upstream, client)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(_BUFSIZE):
            await dst.send_all(data)
        await dst.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        # the other side reset: close both directions
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(dst)


async def _udp_proxy(sock, target: tuple[str, int]) -> None:
    flows: dict[tuple[str, int], tuple[object, trio.CancelScope]] = {}
    async with trio.open_nursery() as nursery:
        while True:
            try:
                data, client = await sock.recvfrom(_BUFSIZE)
            except ConnectionRefusedError:
                continue
            flow = flows.get(client)
            if flow is None:
                up = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    await up.connect(target)
                except OSError:
                    up.close()
                    continue
                scope = trio.CancelScope()
                flows[client] = flow = (up, scope)
                nursery.start_soon(_udp_replies, sock, up, client, scope, flows)
            up, scope = flow
            scope.deadline = trio.current_time() + UDP_FLOW_IDLE
            try:
                await up.send(data)
            except OSError as exc:
                log.debug("udp proxy send: %s", exc)


async def _udp_replies(sock, up, client, scope: trio.CancelScope, flows) -> None:
    with up, scope:
        scope.deadline = trio.current_time() + UDP_FLOW_IDLE
        while True:
            try:
                data = await up.recv(_BUFSIZE)
            except ConnectionRefusedError:
                continue
            scope.deadline = trio.current_time() + UDP_FLOW_IDLE
            await sock.sendto(data, client)
    flows.pop(client, None)
