"""Detach keys, sans-IO: parse Docker's key notation and find the sequence in a stdin stream.

dockerd scans a tty attach's stdin with moby/term's escape proxy (container/stream/attach.go,
copyEscapable); this is the same state machine as bytes in / bytes out, so the pump feeds it
whatever the client sent and forwards what comes back. Its rules, kept exactly:

- a byte that continues the sequence is held back (the container never sees a detach key);
- a byte that breaks a partial match releases the held bytes, then itself, and is NOT
  re-examined as the start of a new match (ctrl-p ctrl-p ctrl-q does not detach);
- the complete sequence ends the stream: bytes before it in the same chunk pass, bytes after
  it are dropped.
"""

from __future__ import annotations

from ..errors import InvalidParameter

# moby/term ASCII: "ctrl-@" is 0, "ctrl-a" 1 ... "ctrl-_" 31.
_CTRL = ["ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
         "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_"]
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(keys: str) -> bytes:
    """Docker's detach-key notation ("ctrl-p,ctrl-q", "a,ctrl-x", "DEL") as bytes; "" gives the
    default sequence. Raises InvalidParameter with dockerd's message."""
    if keys == "":
        return DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in keys.split(","):
        if len(key.encode()) == 1:
            codes.append(key.encode()[0])
        elif key in _CTRL:
            codes.append(_CTRL.index(key))
        elif key == "DEL":
            codes.append(127)
        else:
            raise InvalidParameter(f"Invalid detach keys ({keys}) provided")
    return bytes(codes)


class DetachScanner:
    """Feed stdin chunks; get back what to forward and whether the sequence was typed."""

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        if not keys:
            raise ValueError("detach keys must not be empty")
        self.keys = keys
        self._pos = 0          # how much of `keys` the held-back bytes match
        self.detached = False

    @property
    def pending(self) -> bytes:
        """Bytes held back as a possible start of the sequence."""
        return self.keys[:self._pos]

    def feed(self, data: bytes) -> bytes:
        """The bytes of data (and of earlier chunks) that are now known not to be the
        sequence. After the sequence is complete, `detached` is set and nothing more passes."""
        if self.detached:
            return b""
        out = bytearray()
        keys = self.keys
        for byte in data:
            if byte == keys[self._pos]:
                self._pos += 1
                if self._pos == len(keys):
                    self.detached = True
                    self._pos = 0
                    return bytes(out)
                continue
            if self._pos:
                out += keys[:self._pos]
                self._pos = 0
            out.append(byte)
        return bytes(out)
