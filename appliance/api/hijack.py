"""Attach and exec start over a hijacked connection: validate, upgrade, pump, close cleanly."""

from __future__ import annotations

import fcntl
import logging
import re
import socket
import struct
import termios

import trio

from ..engine.attach import AttachOptions
from ..errors import ApplianceError
from .errors import status_and_message
from .framing import MUX_CONTENT_TYPE, RAW_CONTENT_TYPE, encoder
from .front import HijackConnection, HijackRequest
from .jsonfields import get_bool, parse_json
from .version import at_least, check_version

log = logging.getLogger(__name__)

_ATTACH = re.compile(r"^/containers/([^/]+)/attach$")
_EXEC_START = re.compile(r"^/exec/([^/]+)/start$")
_DRAIN_SECONDS = 2
_HEAD_READ_SECONDS = 0.5


def _flag(req: HijackRequest, name: str) -> bool:
    return req.arg(name).lower() in ("1", "true", "yes")


class _Client:
    """The engine's AttachClient over the raw connection."""

    def __init__(self, conn: HijackConnection, tty: bool):
        self._conn, self._encode = conn, encoder(tty)
        self.stdin_closed = False

    async def receive_stdin(self) -> bytes:
        try:
            data = await self._conn.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.stdin_closed = True
        return data

    async def send_output(self, stream: int, data: bytes) -> None:
        await self._conn.stream.send_all(self._encode(stream, data))

    async def close_output(self) -> None:
        send_eof = getattr(self._conn.stream, "send_eof", None)
        if send_eof is not None:
            try:
                await send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def _drain(conn: HijackConnection, client: _Client | None) -> None:
    """Read until the client closes, so unread stdin does not turn our close into an RST."""
    if client is not None and client.stdin_closed:
        return
    with trio.move_on_after(_DRAIN_SECONDS):
        try:
            while await conn.receive_some():
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _unread_bytes(stream) -> int | None:
    """Bytes we sent that the peer has not read yet (AF_UNIX only; None: cannot tell)."""
    sock = getattr(stream, "socket", None)
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return None
    return struct.unpack("i", raw)[0]


async def _wait_head_read(conn: HijackConnection) -> None:
    """Hold the first output back until the client has read the 101 head.

    docker-py reads the head through http.client's buffered reader and then reads the raw
    socket underneath, so output that arrived together with the head would sit unread in that
    buffer and be lost (docker-py #1770): `attach(logs=True, stream=False)` then returns b"".
    On a unix socket the kernel tells us when the head has been consumed; bounded, so a
    client that never reads cannot hold the attach."""
    with trio.move_on_after(_HEAD_READ_SECONDS):
        while (_unread_bytes(conn.stream) or 0) > 0:
            await trio.sleep(0.001)


def make_hijack_handler(engine):
    async def handle(req: HijackRequest, conn: HijackConnection) -> None:
        client: _Client | None = None
        try:
            version = check_version(req.version)

            async def get_streams(tty: bool) -> _Client:
                nonlocal client
                mux = not tty and at_least(version, "1.42")
                await conn.upgrade_to_raw(MUX_CONTENT_TYPE if mux else RAW_CONTENT_TYPE)
                await _wait_head_read(conn)
                client = _Client(conn, tty)
                return client

            exec_match = _EXEC_START.match(req.path)
            if exec_match:
                body = parse_json(req.body)
                if get_bool(body, "Detach", "ExecStartCheck"):
                    await engine.execs.start_detached(exec_match.group(1))
                    await conn.send_empty(200)
                else:
                    await engine.execs.start(exec_match.group(1), get_streams)
            else:
                opts = AttachOptions(stdin=_flag(req, "stdin"), stdout=_flag(req, "stdout"),
                                     stderr=_flag(req, "stderr"), stream=_flag(req, "stream"),
                                     logs=_flag(req, "logs"))
                await engine.containers.attach(_ATTACH.match(req.path).group(1), opts, get_streams,
                                               detach_keys=req.arg("detachKeys"))
        except ApplianceError as exc:
            if conn.responded:  # after the upgrade an error can only end the stream
                log.info("%s ended: %s", req.path, exc.message)
            else:
                status, message = status_and_message(exc)
                await conn.send_error(status, message)
        await _drain(conn, client)

    return handle
