"""A container's filesystem as the node may touch it: every path resolved inside its root.

The node runs as host root, and a container controls every name and symlink in its root
filesystem, so no host path string under the rootfs is ever handed to the kernel. Instead:

1. ``resolve(path)`` evaluates a container path the way moby's symlink.FollowSymlinkInScope
   does: ``..`` never climbs above ``/``, and a symlink's target (absolute or relative) is
   read as a path inside the container. It walks one component at a time with directory
   fds opened O_NOFOLLOW, reading links with readlinkat, and returns a canonical path: no
   symlinks, no dots. Missing trailing components are accepted, as dockerd accepts them.
2. ``open_dir(canonical)`` opens a canonical path component by component, O_NOFOLLOW at
   every step. If the container swapped a directory for a symlink between the two steps,
   the open fails (ELOOP or ENOTDIR) rather than following it.

Every later operation is an ``*at`` call on such a directory fd with a single name and no
following of the final component, so nothing outside the container's filesystem is ever
read or written, whatever the container does concurrently.

Mounts (volumes and bind mounts, of directories or single files) are seen as the container
sees them: a canonical path at or below a mount's destination lives in the mount's source;
a symlink inside a mount still means a path in the container. Sync; no trio.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from . import paths

_O_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = -1
_NOT_DIR = -2
MAX_LINKS = 255  # moby/sys/symlink's maxIter


@dataclass(frozen=True, slots=True)
class Mount:
    """A directory mounted into the container: ``destination`` is the container path."""

    destination: str
    source: Path
    rw: bool = True


class RootScope:
    """A container root directory (plus its mounts) opened for scoped access; close() it."""

    def __init__(self, root: Path, mounts: Iterable[Mount] = ()):
        self._root_fd = os.open(root, _O_DIR)
        self._mounts: dict[str, tuple[int, bool]] = {}
        self._file_mounts: dict[str, tuple[int, str, bool]] = {}  # (parent fd, name, rw) of the source
        try:
            for m in mounts:
                self._add_mount(m)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd, _ in self._mounts.values():
            os.close(fd)
        for fd, _, _ in self._file_mounts.values():
            os.close(fd)
        self._mounts.clear()
        self._file_mounts.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add_mount(self, m: Mount) -> None:
        """Register a mount where the container sees it. The source is the node's (or the
        user's bind) path, resolved once as the kernel did when it was mounted."""
        try:
            where = self.resolve(m.destination)
        except OSError:
            return
        self._drop_mount(where)
        try:
            self._mounts[where] = (os.open(m.source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), m.rw)
            return
        except NotADirectoryError:
            pass
        except OSError:
            return  # a vanished source: not visible through the scope
        real = os.path.realpath(m.source)
        try:
            parent = os.open(os.path.dirname(real) or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        self._file_mounts[where] = (parent, os.path.basename(real), m.rw)

    def _drop_mount(self, where: str) -> None:
        old = self._mounts.pop(where, None)
        if old is not None:
            os.close(old[0])
        old_file = self._file_mounts.pop(where, None)
        if old_file is not None:
            os.close(old_file[0])

    # ---- resolution ------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """FollowSymlinkInScope: the canonical container path ``path`` leads to.

        Raises OSError: ELOOP after MAX_LINKS symlinks, ENOTDIR for a path through a
        non-directory."""
        if "\0" in path:
            raise OSError(errno.EINVAL, "invalid path: NUL byte", path)
        stack: list[tuple[str, int]] = []
        pending = path.split("/")
        pending.reverse()
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if stack:
                        _close(stack.pop()[1])
                    continue
                parent = stack[-1][1] if stack else self._root_fd
                if parent == _MISSING:
                    stack.append((comp, _MISSING))
                    continue
                if parent == _NOT_DIR:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), _path_of(stack))
                here = _path_of(stack, comp)
                mount = self._mounts.get(here)
                if mount is not None:
                    stack.append((comp, os.dup(mount[0])))
                    continue
                if here in self._file_mounts:
                    stack.append((comp, _NOT_DIR))
                    continue
                try:
                    st = os.lstat(comp, dir_fd=parent)
                except FileNotFoundError:
                    stack.append((comp, _MISSING))
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, f"EvalSymlinks: too many links in {path}", path)
                    target = os.readlink(comp, dir_fd=parent)
                    if target.startswith("/"):
                        while stack:
                            _close(stack.pop()[1])
                    pending.extend(reversed(target.split("/")))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append((comp, os.open(comp, _O_DIR, dir_fd=parent)))
                else:
                    stack.append((comp, _NOT_DIR))
            return _path_of(stack)
        finally:
            for _, fd in stack:
                _close(fd)

    # ---- access by canonical path ----------------------------------------------------

    def mount_of(self, canonical: str) -> tuple[str, bool] | None:
        """The mount (destination, rw) a canonical path lies in, innermost first; None: rootfs."""
        best = None
        mounts = [(d, rw) for d, (_, rw) in self._mounts.items()]
        mounts += [(d, rw) for d, (_, _, rw) in self._file_mounts.items()]
        for dest, rw in mounts:
            if paths.is_within(canonical, dest) and (best is None or len(dest) > len(best[0])):
                best = (dest, rw)
        return best

    def file_mount(self, canonical: str) -> tuple[int, str] | None:
        """(parent fd owned by the scope, name) of the file bind-mounted at a canonical path."""
        mount = self._file_mounts.get(canonical)
        return (mount[0], mount[1]) if mount is not None else None

    def open_dir(self, canonical: str) -> int:
        """An O_PATH fd of the directory at a canonical path; symlinks anywhere fail (ELOOP)."""
        names = paths.components(canonical)
        fd, start = os.dup(self._root_fd), 0
        for i in range(len(names), 0, -1):
            mount = self._mounts.get("/" + "/".join(names[:i]))
            if mount is not None:
                os.close(fd)
                fd, start = os.dup(mount[0]), i
                break
        try:
            for name in names[start:]:
                nfd = os.open(name, _O_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_parent(self, canonical: str) -> tuple[int, str]:
        """(fd of the parent directory, final name) of a canonical path other than "/"; for a
        file bind mount, of the mounted file. The caller closes the fd."""
        mount = self._file_mounts.get(canonical)
        if mount is not None:
            return os.dup(mount[0]), mount[1]
        parent, name = paths.split(canonical)
        if not name:
            raise OSError(errno.EINVAL, "the root has no parent", canonical)
        return self.open_dir(paths.clean(parent)), name

    def mount_fd(self, canonical: str) -> int | None:
        """The O_PATH fd of the directory mounted at a canonical path (owned by the scope)."""
        mount = self._mounts.get(canonical)
        return mount[0] if mount is not None else None

    def is_mount_point(self, canonical: str) -> bool:
        return canonical == "/" or canonical in self._mounts or canonical in self._file_mounts

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """Up to ``limit`` bytes of the container's regular file at ``path`` (e.g. /etc/passwd),
        resolved in scope; None if it is missing or not a regular file."""
        try:
            pfd, name = self.open_parent(self.resolve(path))
        except OSError:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=pfd)
        except OSError:
            return None
        finally:
            os.close(pfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def lstat(self, canonical: str) -> os.stat_result:
        """lstat of a canonical path (a mount point stats as the mounted directory)."""
        if canonical == "/" or canonical in self._mounts:
            fd = self.open_dir(canonical)
            try:
                return os.stat(fd)
            finally:
                os.close(fd)
        pfd, name = self.open_parent(canonical)
        try:
            return os.lstat(name, dir_fd=pfd)
        finally:
            os.close(pfd)


def _path_of(stack: list[tuple[str, int]], extra: str | None = None) -> str:
    names = [n for n, _ in stack]
    if extra is not None:
        names.append(extra)
    return "/" + "/".join(names)


def _close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)
