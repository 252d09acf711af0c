"""A client of conmon's attach socket (SOCK_SEQPACKET, one packet per conmon read).

Output packets carry a stream byte (conmon_proto); input is raw bytes to the container's
stdin. Several clients may attach at once; output written before a client connects goes
only to the log, so connect before `start` to see a container's first bytes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Self

import trio

from appliance.errors import Conflict
from appliance.runtime.conmon_proto import (
    ATTACH_PACKET_MAX,
    ATTACH_SEND_CHUNK,
    decode_attach_packet,
)


class AttachConnection:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    @classmethod
    async def connect(cls, bundle: Path, cid: str) -> AttachConnection:
        """Connect to bundle/attach. The path goes through /proc/self/fd so its length
        never meets sun_path's 108-byte limit, whatever the node's state dir is."""
        try:
            dir_fd = os.open(bundle, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Conflict(f"container {cid} is not running") from None
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await sock.connect(f"/proc/self/fd/{dir_fd}/attach")
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise Conflict(f"container {cid} is not running") from None
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(dir_fd)
        return cls(sock)

    async def receive(self) -> tuple[int, bytes] | None:
        """Next output chunk as (Docker stream 1 stdout | 2 stderr, bytes); None at EOF
        (the container exited or conmon went away)."""
        while True:
            try:
                packet = await self._sock.recv(ATTACH_PACKET_MAX)
            except ConnectionResetError:
                return None
            if not packet:
                return None
            decoded = decode_attach_packet(packet)
            if decoded is not None:
                return decoded

    async def send(self, data: bytes) -> None:
        """Write to the container's stdin (needs open_stdin)."""
        view = memoryview(data)
        for i in range(0, len(view), ATTACH_SEND_CHUNK):
            await self._sock.send(view[i:i + ATTACH_SEND_CHUNK])

    def send_eof(self) -> None:
        """Half-close: conmon closes the container's stdin, unless the container was made
        with stdin_once=False (--leave-stdin-open), where stdin outlives every client."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
