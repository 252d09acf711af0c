"""What a container process gets from its image: merged environment and resolved user."""

from __future__ import annotations

import os
from pathlib import Path

from ..runtime.users import resolve_user

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def merge_env(base: list[str], extra: list[str], *, default_path: bool = False) -> list[str]:
    """Later entries win by key, order of first appearance kept; PATH defaulted for containers."""
    merged: dict[str, str] = {}
    for item in [*base, *extra]:
        merged[item.split("=", 1)[0]] = item
    if default_path and "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH, **merged}
    return list(merged.values())


def _read_image_file(path: Path) -> str | None:
    # O_NOFOLLOW: an image's /etc/passwd that is a symlink must not make the node read host files.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        return f.read(1 << 20)


def resolve_user_in(rootfs: Path, user: str) -> tuple[int, int, tuple[int, ...]]:
    """Docker's -u rules against the container's own /etc/passwd and /etc/group."""
    uid, gid, gids = resolve_user(user, _read_image_file(rootfs / "etc/passwd"),
                                  _read_image_file(rootfs / "etc/group"))
    return uid, gid, tuple(gids)
