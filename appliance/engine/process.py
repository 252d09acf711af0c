"""What a container process gets from its image: merged environment and resolved user."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from ..errors import ApplianceError
from ..runtime.conmon_proto import CommandNotExecutable, CommandNotFound
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


def exec_failure(exc: ApplianceError, command: str) -> str | None:
    """`exec: "CMD": DETAIL`, runc's words for a process that could not start, from crun's
    CommandNotFound / CommandNotExecutable (None for other failures). crun quotes the command
    when it cannot find it, not when it cannot execute it ("open executable: Permission
    denied"): then it is the command we asked for."""
    if not isinstance(exc, (CommandNotFound, CommandNotExecutable)):
        return None
    text = exc.message.strip()
    m = re.search(r"[`'\"]([^`'\"]+)[`'\"]", text)
    what = m.group(1) if m else command
    if isinstance(exc, CommandNotExecutable):
        detail = "permission denied"
    else:
        detail = "executable file not found in $PATH" if "$PATH" in text else "no such file or directory"
    return f'exec: "{what}": {detail}'


def command_line(cmd: list[str] | tuple[str, ...]) -> str:
    """An exec's command as dockerd words it in exec_create/exec_start events: the entrypoint,
    a space, the arguments joined (so a lone `true` reads `true `)."""
    return f"{cmd[0]} {' '.join(cmd[1:])}"


def resolve_user_in(rootfs: Path, user: str) -> tuple[int, int, tuple[int, ...]]:
    """Docker's -u rules against the container's own /etc/passwd and /etc/group."""
    # Resolved inside the container's root: an image whose /etc (or /etc/passwd) is a symlink
    # pointing out must not make the node read the host's files.
    with RootScope(rootfs) as scope:
        passwd, group = scope.read_file("/etc/passwd"), scope.read_file("/etc/group")
    uid, gid, gids = resolve_user(user, passwd.decode(errors="replace") if passwd is not None else None,
                                  group.decode(errors="replace") if group is not None else None)
    return uid, gid, tuple(gids)


def executable_in(rootfs: Path, command: str, env: list[str] | tuple[str, ...]) -> bool:
    """Whether command names an executable regular file in the container's root, looked up
    in the exec's PATH as crun will. Only the image's root is seen, not the container's
    mounts: False means "not known here", and the caller takes the path that reports crun's
    own errors."""
    if "/" in command:
        candidates = [command] if command.startswith("/") else []
    else:
        path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), DEFAULT_PATH[5:])
        candidates = [f"{d}/{command}" for d in path.split(":") if d.startswith("/")]
    if not candidates:
        return False
    with RootScope(rootfs) as scope:
        for candidate in candidates:
            try:
                st = scope.lstat(scope.resolve(candidate))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return True
    return False
