"""The trio shell around the sans-IO core: real UDP and TCP sockets, trio's clock.

``run(config, task_status=...)`` binds one UDP socket and one TCP listener on the same port,
builds the :class:`~appliance.cluster.swim.node.Node` and reports a :class:`Cluster` handle
through ``task_status.started``.  One loop waits on the UDP socket *or* the core's next
deadline, feeds the core and performs its actions; TCP requests and our own push/pulls run
as short tasks in the same nursery.  Nothing here decides anything about membership.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
from typing import Callable, Iterable

import trio

from . import codec
from .config import SwimConfig
from .errors import LocalProtocolError, RemoteProtocolError
from .node import (
    Action,
    Addr,
    JoinFinished,
    LeaveFinished,
    MemberChanged,
    Node,
    SendPacket,
    StreamReply,
    StreamRequest,
)
from .state import MemberView

__all__ = ["run", "Cluster", "read_stream_message"]

log = logging.getLogger(__name__)

_SEND_QUEUE = 4096


async def read_stream_message(stream: trio.abc.ReceiveStream, limit: int = codec.MAX_STREAM_BYTES) -> bytes:
    """Read exactly one memberlist stream message (no length prefix: msgpack delimits it)."""
    buf = bytearray()
    while True:
        end = codec.stream_frame_length(bytes(buf), limit=limit) if buf else None
        if end is not None:
            return bytes(buf[:end])
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise RemoteProtocolError("connection closed mid-message")
        buf += chunk


class Cluster:
    """Handle on a running gossip node: what ``serve.py`` and tests hold."""

    def __init__(self, core: Node, udp: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        self.core = core
        self._udp = udp
        self._nursery = nursery
        self._send_in, self._send_out = trio.open_memory_channel[SendPacket](_SEND_QUEUE)
        self._wake = trio.CancelScope()
        self._subscribers: list[trio.MemorySendChannel[MemberChanged]] = []
        self._joins: dict[Addr, list[JoinFinished]] = {}
        self._join_event = trio.Event()
        self._left = trio.Event()
        self._stopped = trio.Event()

    # ------------------------------------------------------------------ public API

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def addr(self) -> Addr:
        return self.core.addr

    def members(self) -> list[MemberView]:
        return self.core.members()

    def local_member(self) -> MemberView:
        return self.core.local_member()

    def subscribe(self, buffer: int = 256) -> trio.MemoryReceiveChannel[MemberChanged]:
        """A channel of MemberChanged events; a subscriber that falls behind loses events."""
        send, recv = trio.open_memory_channel[MemberChanged](buffer)
        self._subscribers.append(send)
        return recv

    async def join(self, seeds: Iterable[Addr]) -> list[JoinFinished]:
        """Push/pull with each seed; returns one JoinFinished per seed."""
        seeds = [(h, int(p)) for h, p in seeds]
        for seed in seeds:
            self._joins.pop(seed, None)
        self.feed(self.core.join(trio.current_time(), seeds))
        while not all(s in self._joins for s in seeds):
            await self._join_event.wait()
        return [self._joins[s][-1] for s in seeds]

    def update_tags(self, tags: dict[str, str]) -> None:
        self.feed(self.core.update_tags(trio.current_time(), tags))

    async def leave(self) -> None:
        """Graceful leave (Serf intent, then dead-from-self), then stop the node."""
        if not self.core.leaving:
            self.feed(self.core.leave(trio.current_time()))
        await self._left.wait()
        self.stop()

    def stop(self) -> None:
        """Stop at once, without leaving (the others will call it failed)."""
        self.core.stop()
        self._stopped.set()
        self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ plumbing

    def feed(self, actions: list[Action]) -> None:
        """Perform the core's actions; everything that feeds the core ends here."""
        for action in actions:
            if isinstance(action, SendPacket):
                try:
                    self._send_in.send_nowait(action)
                except trio.WouldBlock:
                    log.debug("%s: send queue full, dropping a datagram", self.name)
            elif isinstance(action, StreamRequest):
                self._nursery.start_soon(self._stream_request, action)
            elif isinstance(action, MemberChanged):
                for sub in list(self._subscribers):
                    try:
                        sub.send_nowait(action)
                    except trio.WouldBlock:
                        log.warning("%s: a membership subscriber is behind; event dropped", self.name)
                    except trio.BrokenResourceError:
                        self._subscribers.remove(sub)
            elif isinstance(action, JoinFinished):
                self._joins.setdefault(action.addr, []).append(action)
                self._join_event.set()
                self._join_event = trio.Event()
            elif isinstance(action, LeaveFinished):
                self._left.set()
            elif isinstance(action, StreamReply):  # pragma: no cover - handled by the caller
                raise LocalProtocolError("StreamReply outside a stream handler")
        # The core may now want to wake earlier than the loop is waiting for.
        self._wake.deadline = min(self._wake.deadline, self.core.next_deadline())

    async def _packet_loop(self) -> None:
        core = self.core
        while True:
            with trio.CancelScope(deadline=core.next_deadline()) as self._wake:
                try:
                    data, src = await self._udp.recvfrom(65536)
                except (ConnectionRefusedError, ConnectionResetError):
                    # ICMP errors for earlier sends, reported on some platforms; not news.
                    pass
                else:
                    self.feed(core.receive(trio.current_time(), (src[0], src[1]), data))
            self.feed(core.tick(trio.current_time()))

    async def _sender(self) -> None:
        async for packet in self._send_out:
            try:
                await self._udp.sendto(packet.data, packet.addr)
            except OSError as exc:
                log.debug("%s: sendto %s failed: %s", self.name, packet.addr, exc)

    async def _serve_tcp(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                self._nursery.start_soon(self._handle_conn, stream)

    async def _handle_conn(self, stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(self.core.config.tcp_timeout):
                try:
                    peer = stream.socket.getpeername()
                    src = (peer[0], peer[1])
                    try:
                        data = await read_stream_message(stream)
                    except RemoteProtocolError as exc:
                        actions = self.core.reject_stream(trio.current_time(), src, str(exc))
                    else:
                        actions = self.core.receive_stream(trio.current_time(), src, data)
                    self.feed([a for a in actions if not isinstance(a, StreamReply)])
                    for a in actions:
                        if isinstance(a, StreamReply):
                            await stream.send_all(a.data)
                except (OSError, trio.BrokenResourceError) as exc:
                    log.debug("%s: TCP request failed: %s", self.name, exc)

    async def _stream_request(self, req: StreamRequest) -> None:
        reply: bytes | None = None
        error = "timeout"
        with trio.move_on_at(req.deadline):
            try:
                stream = await trio.open_tcp_stream(*req.addr)
                async with stream:
                    await stream.send_all(req.data)
                    reply = await read_stream_message(stream)
            except (OSError, trio.BrokenResourceError, RemoteProtocolError) as exc:
                error = str(exc) or type(exc).__name__
        self.feed(self.core.stream_response(trio.current_time(), req.token, reply, "" if reply else error))


async def _bind(config: SwimConfig) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """UDP and TCP on one port (a free one if ``bind_port`` is 0)."""
    family = trio.socket.AF_INET6 if ipaddress.ip_address(config.bind_addr).version == 6 else trio.socket.AF_INET
    for _attempt in range(20):
        udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        tcp = trio.socket.socket(family, trio.socket.SOCK_STREAM)
        try:
            tcp.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            await udp.bind((config.bind_addr, config.bind_port))
            port = udp.getsockname()[1]
            await tcp.bind((config.bind_addr, port))
            tcp.listen(128)
            return udp, tcp
        except OSError as exc:
            udp.close()
            tcp.close()
            if config.bind_port != 0 or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no free port for both UDP and TCP")


async def run(
    config: SwimConfig,
    *,
    seeds: Iterable[Addr] = (),
    rng: random.Random | None = None,
    meta: bytes | None = None,
    local_state: Callable[[bool], bytes] | None = None,
    task_status: trio.TaskStatus[Cluster] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one gossip node until cancelled, stopped or left.  Started value: a Cluster.

    For a graceful shutdown call ``await cluster.leave()`` before cancelling: cancellation
    alone is a crash as far as the other members can tell (Serf will say ``failed``).
    """
    udp, tcp = await _bind(config)
    with udp:
        port = udp.getsockname()[1]
        advertise = config.advertise_addr or config.bind_addr
        if ipaddress.ip_address(advertise).is_unspecified:
            raise LocalProtocolError("set advertise_addr when binding to a wildcard address")
        config = config.with_(advertise_addr=advertise, advertise_port=config.advertise_port or port)
        core = Node(config, now=trio.current_time(), rng=rng, meta=meta, local_state=local_state)
        async with trio.open_nursery() as nursery:
            cluster = Cluster(core, udp, nursery)
            nursery.start_soon(cluster._sender)
            nursery.start_soon(cluster._serve_tcp, trio.SocketListener(tcp))
            nursery.start_soon(cluster._packet_loop)
            seeds = list(seeds)
            if seeds:
                cluster.feed(core.join(trio.current_time(), seeds))
            task_status.started(cluster)
            await cluster._stopped.wait()
            nursery.cancel_scope.cancel()
