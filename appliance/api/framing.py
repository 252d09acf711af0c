"""Docker's stdcopy framing for non-tty streams: 8-byte header (stream, 0,0,0, big-endian length)."""

from __future__ import annotations

import struct

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
MUX_CONTENT_TYPE = "application/vnd.docker.multiplexed-stream"
RAW_CONTENT_TYPE = "application/vnd.docker.raw-stream"
_HEADER = struct.Struct(">BxxxI")


def frame(stream: int, payload: bytes) -> bytes:
    return _HEADER.pack(stream, len(payload)) + payload


def encoder(tty: bool):
    """A function (stream, bytes) -> wire bytes: raw for a tty, multiplexed otherwise."""
    if tty:
        return lambda stream, data: data
    return frame
