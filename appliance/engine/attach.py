"""The attach pump: conmon's attach socket <-> one hijacked client, for routes and forwarder alike.

Its stdin rules are dockerd's (container/stream/attach.go CopyStreams): a tty's stdin goes
through the detach-key scanner; when the client's stdin ends (or it typed the detach keys), a
non-tty StdinOnce container gets EOF on its stdin and the output keeps flowing until it exits;
in every other case the attach simply ends and the container keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import trio

from .detach import DetachScanner


@dataclass(frozen=True)
class AttachOptions:
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    stream: bool = True
    logs: bool = False
    detach_keys: bytes | None = None  # scan stdin for these (tty attaches); None: no scanning


class AttachClient(Protocol):
    """What the caller (hijack handler or forwarder) gives the engine once it has upgraded."""

    async def receive_stdin(self) -> bytes: ...  # b"" at the client's half-close

    async def send_output(self, stream: int, data: bytes) -> None: ...

    async def close_output(self) -> None: ...


class RuntimeAttach(Protocol):
    async def receive(self) -> tuple[int, bytes] | None: ...

    async def send(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


@dataclass
class AttachConns:
    output: RuntimeAttach
    stdin: RuntimeAttach | None  # a second connection, so closing it delivers EOF to the container

    async def close_stdin(self) -> None:
        """Deliver EOF to the process: half-close a shared connection, close a separate one."""
        stdin, self.stdin = self.stdin, None
        if stdin is None:
            return
        if stdin is self.output:
            stdin.send_eof()
        else:
            await stdin.aclose()

    async def aclose(self) -> None:
        if self.stdin is self.output:
            self.stdin = None
        with trio.CancelScope(shield=True):
            await self.output.aclose()
            if self.stdin is not None:
                await self.stdin.aclose()


async def pump(client: AttachClient, conns: AttachConns, opts: AttachOptions, stdin_once: bool,
               *, tty: bool = False, close_output: bool = True) -> bool:
    """Copy until the process's output ends, or the client's stdin ends (see the module doc).
    Returns True if the client detached with its detach keys.

    close_output=False leaves the client's half-close to the caller (exec records its exit code
    first: the CLI asks for it as soon as it sees EOF)."""
    detached = False
    scanner = DetachScanner(opts.detach_keys) if tty and opts.detach_keys else None

    async def forward(data: bytes) -> None:
        if not data or conns.stdin is None:
            return
        try:
            await conns.stdin.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            conns.stdin = None  # the process is gone or closed its stdin: drop the rest

    async def copy_stdin() -> None:
        nonlocal detached
        while data := await client.receive_stdin():
            if scanner is None:
                await forward(data)
                continue
            await forward(scanner.feed(data))
            if scanner.detached:
                detached = True
                break
        if stdin_once and not tty and not detached:
            await conns.close_stdin()
        else:
            nursery.cancel_scope.cancel()  # the attach ends; the container carries on

    async with trio.open_nursery() as nursery:
        if conns.stdin is not None and conns.stdin is not conns.output:
            nursery.start_soon(_drain, conns.stdin)
        if opts.stdin:
            nursery.start_soon(copy_stdin)
        while (item := await conns.output.receive()) is not None:
            stream, data = item
            if (stream == 1 and opts.stdout) or (stream == 2 and opts.stderr):
                await client.send_output(stream, data)
        nursery.cancel_scope.cancel()
    if close_output:
        await client.close_output()
    return detached


async def _drain(conn: RuntimeAttach) -> None:
    """Read and drop what arrives on a stdin-only connection. conmon copies the output to every
    attach connection and blocks writing to a full one: unread, this one would stop the
    container's output (every client's and the log's) after a few hundred packets."""
    try:
        while await conn.receive() is not None:
            pass
    except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
        pass  # closed for EOF (close_stdin) or conmon went away: nothing left to drain
