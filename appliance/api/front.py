"""The one listener: h11 reads each connection's first request head; hijacks are served raw,
everything else is replayed into hypercorn's trio server running the quart-trio app.

Why: hypercorn cannot serve Docker's `Upgrade: tcp` hijack (attach, exec start); ASGI has no raw
upgrade. The Go client always hijacks on a fresh connection, so sniffing the first request of a
connection is enough (reference/docker-cli-wire.md §3).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from .errors import error_body
from .version import split_version

log = logging.getLogger(__name__)

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, ConnectionError)
_HIJACK = re.compile(r"^/(containers/[^/]+/attach|exec/[^/]+/start)$")
_MAX_HEAD = 64 * 1024


@dataclass
class HijackRequest:
    method: str
    path: str  # without the /vX.Y prefix
    version: str | None
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    upgrade: bool

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[-1]


@dataclass
class HijackConnection:
    """The raw client connection of a hijacked request, with the bytes read past its head."""

    stream: trio.abc.Stream
    upgrade: bool
    _early: bytes = b""
    responded: bool = field(default=False)

    async def send_error(self, status: int, message: str) -> None:
        body = error_body(message)
        reason = _REASONS.get(status, "Error").encode()
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, reason, len(body)))
        self.responded = True
        await self.stream.send_all(head + body)

    async def send_empty(self, status: int) -> None:
        """A plain bodiless answer (detached exec start): no upgrade, connection closed after."""
        self.responded = True
        await self.stream.send_all(b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                   % (status, _REASONS.get(status, "OK").encode()))

    async def upgrade_to_raw(self, content_type: str) -> None:
        if self.upgrade:
            head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\n"
                    b"Upgrade: tcp\r\n\r\n" % content_type.encode())
        else:  # legacy clients: dockerd answers 200 and then streams raw
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\n\r\n" % content_type.encode()
        self.responded = True
        await self.stream.send_all(head)

    async def receive_some(self) -> bytes:
        if self._early:
            data, self._early = self._early, b""
            return data
        return await self.stream.receive_some(65536)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error",
            501: "Not Implemented", 403: "Forbidden"}

HijackHandler = Callable[[HijackRequest, HijackConnection], Awaitable[None]]


class _ReplayStream(trio.abc.HalfCloseableStream):
    """Replays the bytes the sniffer consumed, then reads the real stream; hypercorn sees one stream."""

    def __init__(self, inner: trio.abc.Stream, consumed: bytes):
        self._inner, self._pending = inner, consumed

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _read_head(stream: trio.abc.Stream, conn: h11.Connection) -> tuple[Any, bytes]:
    consumed = bytearray()
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event, bytes(consumed)
        if len(consumed) > _MAX_HEAD:
            return None, bytes(consumed)
        data = await stream.receive_some(65536)
        consumed += data
        conn.receive_data(data)
        if not data:
            return None, bytes(consumed)


async def _read_body(stream: trio.abc.Stream, conn: h11.Connection) -> bytes:
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Data):
            body += event.data
        else:  # EndOfMessage, PAUSED (upgrade) or ConnectionClosed
            return bytes(body)


def _hijack_request(event: h11.Request) -> HijackRequest | None:
    if event.method != b"POST":
        return None
    url = urlsplit(event.target.decode("latin-1"))
    version, path = split_version(url.path)
    if not _HIJACK.match(path):
        return None
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
    upgrade = "upgrade" in headers.get("connection", "").lower() and "upgrade" in headers
    return HijackRequest("POST", path, version, parse_qs(url.query, keep_blank_values=True),
                         headers, b"", upgrade)


class Front:
    """Serves the Docker API on trio listeners: hijacks to `hijack`, the rest to `asgi_app`."""

    def __init__(self, asgi_app, hijack: HijackHandler):
        self._config = HypercornConfig()
        self._config.keep_alive_timeout = 75  # the Go client's idle pool keeps connections ~90 s
        self._config.read_timeout = None
        self._config.graceful_timeout = 1
        self._config.accesslog = None
        self._config.include_server_header = False  # the app names itself as dockerd does
        self._app = wrap_app(asgi_app, self._config.wsgi_max_body_size, "asgi")
        self._hijack = hijack
        self._state: dict = {}
        self._context = WorkerContext(None)

    async def run(self, listeners: list[trio.abc.Listener], *, task_status=trio.TASK_STATUS_IGNORED):
        async with trio.open_nursery() as lifespan_nursery:
            lifespan = Lifespan(self._app, self._config, self._state)
            await lifespan_nursery.start(lifespan.handle_lifespan)
            await lifespan.wait_for_startup()
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._connection, listeners)
                    task_status.started()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    try:
                        await lifespan.wait_for_shutdown()
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        pass  # the node is being cancelled and the lifespan task is already gone
                lifespan_nursery.cancel_scope.cancel()

    async def _connection(self, stream: trio.abc.Stream) -> None:
        # One connection's failure must never take the server down (serve_listeners would
        # cancel every other connection): a vanished client is routine, anything else is a bug
        # to log with its traceback, here at the connection boundary.
        try:
            await self._dispatch(stream)
        except* _GONE as group:
            log.debug("client went away: %r", group.exceptions)
        except* Exception as group:
            log.error("connection handler failed", exc_info=group)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _dispatch(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        # A connection must bring its first head within the idle limit hypercorn applies between
        # requests: one that sends nothing (or dribbles) would otherwise be held forever.
        with trio.move_on_after(self._config.keep_alive_timeout) as waited:
            event, consumed = await _read_head(stream, conn)
        if waited.cancelled_caught:
            log.debug("no request head within %ss: closing", self._config.keep_alive_timeout)
            return
        request = _hijack_request(event) if isinstance(event, h11.Request) else None
        if request is None:
            await TCPServer(self._app, self._config, self._context,
                            ConnectionState(self._state.copy()), _ReplayStream(stream, consumed))
            return
        request.body = await _read_body(stream, conn)
        early, _ = conn.trailing_data
        await self._hijack(request, HijackConnection(stream, request.upgrade, bytes(early)))
