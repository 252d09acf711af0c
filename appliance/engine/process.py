"""What a container process gets from its image: merged environment and resolved user."""

from __future__ import annotations

from pathlib import Path

from ..runtime.users import resolve_user
from .filesystem.scope import RootScope

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def merge_env(base: list[str], extra: list[str], *, default_path: bool = False) -> list[str]:
    """Later entries win by key, order of first appearance kept; PATH defaulted for containers."""
    merged: dict[str, str] = {}
    for item in [*base, *extra]:
        merged[item.split("=", 1)[0]] = item
    if default_path and "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH, **merged}
    return list(merged.values())


def resolve_user_in(rootfs: Path, user: str) -> tuple[int, int, tuple[int, ...]]:
    """Docker's -u rules against the container's own /etc/passwd and /etc/group."""
    # Resolved inside the container's root: an image whose /etc (or /etc/passwd) is a symlink
    # pointing out must not make the node read the host's files.
    with RootScope(rootfs) as scope:
        passwd, group = scope.read_file("/etc/passwd"), scope.read_file("/etc/group")
    uid, gid, gids = resolve_user(user, passwd.decode(errors="replace") if passwd is not None else None,
                                  group.decode(errors="replace") if group is not None else None)
    return uid, gid, tuple(gids)
