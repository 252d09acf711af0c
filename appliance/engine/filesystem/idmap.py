"""Owner ids between the container's view and the host's, for archives in and out.

Container root is host ``base`` (100000 here): a tar that leaves a container carries the
container's view of its owners, and a tar that comes in is shifted before it is written.
File capabilities carry a root id too (VFS_CAP_REVISION_3) and are shifted the same way.
Pure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ...errors import InvalidParameter

OVERFLOW_ID = 65534  # what the kernel shows for a host id with no mapping in the namespace

_CAP_REVISION_MASK = 0xFF000000
_CAP_REVISION_2 = 0x02000000
_CAP_REVISION_3 = 0x03000000


@dataclass(frozen=True, slots=True)
class IdShift:
    """Container ids 0..size-1 are host ids base..base+size-1 (base 0: no user namespace)."""

    base: int = 0
    size: int = 65536

    def to_host(self, cid: int) -> int:
        """A container id from an incoming tar; dockerd's error when it has no host id."""
        if self.base == 0 and cid >= 0:
            return cid  # no user namespace: every id is the host's own
        if not 0 <= cid < self.size:
            raise InvalidParameter(f"Container ID {cid} cannot be mapped to a host ID")
        return cid + self.base

    def to_container(self, hid: int) -> int:
        """A host owner as the container sees it (unmapped ids show as the overflow id)."""
        if self.base == 0:
            return hid
        if self.base <= hid < self.base + self.size:
            return hid - self.base
        return OVERFLOW_ID

    def capability_to_host(self, raw: bytes) -> bytes | None:
        """A security.capability value from a tar, as the container's root must hold it.

        v2 (no root id) becomes v3 with root id ``base``; v3 gets its root id shifted.
        Malformed values and root ids outside the range are dropped (None)."""
        if self.base == 0:
            return raw
        if len(raw) < 4:
            return None
        magic = struct.unpack("<I", raw[:4])[0]
        revision = magic & _CAP_REVISION_MASK
        if revision == _CAP_REVISION_2 and len(raw) == 20:
            magic = (magic & ~_CAP_REVISION_MASK) | _CAP_REVISION_3
            return struct.pack("<I", magic) + raw[4:20] + struct.pack("<I", self.base)
        if revision == _CAP_REVISION_3 and len(raw) == 24:
            rootid = struct.unpack("<I", raw[20:24])[0]
            if rootid >= self.size:
                return None
            return raw[:20] + struct.pack("<I", rootid + self.base)
        return None

    def capability_to_container(self, raw: bytes) -> bytes | None:
        """The inverse for tars that leave: root id ``base`` becomes a plain v2 capability."""
        if self.base == 0:
            return raw
        if len(raw) < 4:
            return None
        magic = struct.unpack("<I", raw[:4])[0]
        revision = magic & _CAP_REVISION_MASK
        if revision == _CAP_REVISION_2 and len(raw) == 20:
            return raw
        if revision == _CAP_REVISION_3 and len(raw) == 24:
            rootid = struct.unpack("<I", raw[20:24])[0]
            if rootid == self.base:
                magic = (magic & ~_CAP_REVISION_MASK) | _CAP_REVISION_2
                return struct.pack("<I", magic) + raw[4:20]
            if self.base < rootid < self.base + self.size:
                return raw[:20] + struct.pack("<I", rootid - self.base)
        return None
