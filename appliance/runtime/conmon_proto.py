"""conmon's wire formats, sans-IO: the sync pipe, attach packets, ctl messages, and what
crun's error messages mean (conmon relays them verbatim on the sync pipe).
"""

from __future__ import annotations

import json
import re

from appliance.errors import SystemError_

# Attach socket packets start with a stream byte; Docker numbers the same streams 1 and 2.
ATTACH_STDOUT = 2
ATTACH_STDERR = 3
_DOCKER_STREAM = {ATTACH_STDOUT: 1, ATTACH_STDERR: 2}
ATTACH_PACKET_MAX = 8193          # one 8192-byte read plus the stream byte
ATTACH_SEND_CHUNK = 4096          # conmon reads client packets into a fixed buffer; stay under it


class RuntimeCreateError(SystemError_):
    """crun could not create the container; message is crun's, stripped."""


class CommandNotFound(RuntimeCreateError):
    """The command does not exist in the container (Docker exits 127 for this)."""


class CommandNotExecutable(RuntimeCreateError):
    """The command exists but cannot be executed (Docker exits 126 for this)."""


class SyncPipeReader:
    """Newline-delimited JSON objects from conmon's _OCI_SYNCPIPE, e.g. {"data": 2657}."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            line = line.strip()
            if line:
                try:
                    msg = json.loads(line)
                except ValueError as e:
                    raise SystemError_(f"conmon sent an unreadable sync message: {line[:200]!r}") from e
                if isinstance(msg, dict):
                    out.append(msg)
        return out


_NOT_FOUND = re.compile(r"executable file .*not found|exec.*no such file or directory", re.IGNORECASE)
_NOT_EXECUTABLE = re.compile(r"open executable|exec.*(permission denied|exec format error|is a directory)",
                             re.IGNORECASE)


def create_error(message: str) -> RuntimeCreateError:
    """The exception for a failed create, typed so the engine can pick Docker's exit code.

    crun 1.8 says "executable file `x` not found in $PATH: No such file or directory" for a
    missing command and "open executable: Permission denied" (or "Operation not
    permitted" for a directory) for one it cannot run; runc's wording is matched too.
    """
    text = message.strip()
    if "hybrid mode not supported" in text:
        return RuntimeCreateError(f"{text} (run the node inside its private mount namespace: "
                                  "appliance.runtime.mountns.enter_private_mount_namespace)")
    if _NOT_FOUND.search(text):
        return CommandNotFound(text)
    if _NOT_EXECUTABLE.search(text):
        return CommandNotExecutable(text)
    return RuntimeCreateError(text)


def container_pid(message: dict) -> int:
    """The container's pid from conmon's first sync message, or the typed create error."""
    data = message.get("data")
    if not isinstance(data, int):
        raise SystemError_(f"conmon sent an unexpected sync message: {message!r}")
    if data < 0:
        raise create_error(str(message.get("message") or "the runtime failed to create the container"))
    return data


def decode_attach_packet(packet: bytes) -> tuple[int, bytes] | None:
    """(Docker stream 1|2, data) for one attach packet; None for a stream we do not know."""
    if not packet:
        return None
    stream = _DOCKER_STREAM.get(packet[0])
    if stream is None:
        return None
    return stream, packet[1:]


def encode_resize(height: int, width: int) -> bytes:
    """ctl FIFO message: resize the container's terminal."""
    return f"1 {int(height)} {int(width)}\n".encode()


def encode_reopen_log() -> bytes:
    """ctl FIFO message: reopen the log file (after it was rotated away)."""
    return b"2 0 0\n"
