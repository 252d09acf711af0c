"""/proc/<pid>/mountinfo: a pure parser and a reader (proc(5) format)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash in paths as \ooo.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_id: int
    parent_id: int
    root: str          # path of the mount's root inside its filesystem
    mount_point: str
    fstype: str
    source: str
    options: str       # superblock options


def parse_mountinfo(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        out.append(MountEntry(int(f[0]), int(f[1]), _unescape(f[3]), _unescape(f[4]),
                              r[0] if r else "", _unescape(r[1]) if len(r) > 1 else "",
                              r[2] if len(r) > 2 else ""))
    return out


def read_mountinfo(pid: int | str = "self") -> list[MountEntry]:
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def mount_points(pid: int | str = "self") -> dict[str, MountEntry]:
    """Mount point -> its topmost mount."""
    return {m.mount_point: m for m in read_mountinfo(pid)}
