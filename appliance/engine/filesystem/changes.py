"""``docker diff``: what a container changed, read from its overlay upper directory.

pkg/archive's OverlayChanges, which dockerd's overlay2 driver uses: walk the writable
layer in lexical order; a 0/0 character device (overlay's whiteout) or a directory marked
``trusted.overlay.opaque=y`` is a deletion (D); anything else is an addition (A) unless it
already exists in one of the image layers, then a change (C) — except a directory whose
size, mode and mtime match the top-most lower copy, which is left out. The parent of an
added or deleted entry is reported as changed once, before it, unless it is "/". Sync.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .tarstream import OPAQUE_XATTR, WHITEOUT_PREFIX

CHANGE_MODIFY, CHANGE_ADD, CHANGE_DELETE = 0, 1, 2
_WHITEOUT_META = WHITEOUT_PREFIX + WHITEOUT_PREFIX

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    kind: int  # CHANGE_MODIFY, CHANGE_ADD or CHANGE_DELETE


def upper_changes(upper: Path, lowers: list[Path]) -> list[Change]:
    """The changes of overlay upper dir ``upper`` over ``lowers`` (top-most first)."""
    try:
        root = os.open(upper, _O_DIR)
    except FileNotFoundError:
        return []
    lower_fds = []
    try:
        for lower in lowers:
            try:
                lower_fds.append(os.open(lower, _O_PATH_DIR))
            except FileNotFoundError:
                continue
        return _walk(root, lower_fds)
    finally:
        os.close(root)
        for fd in lower_fds:
            os.close(fd)


def _walk(root: int, lowers: list[int]) -> list[Change]:
    out: list[Change] = []
    changed_dirs: set[str] = set()
    stack = [(root, "/", iter(sorted(os.listdir(root), key=os.fsencode)), False)]
    try:
        while stack:
            fd, where, names, owned = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if owned:
                    os.close(fd)
                continue
            path = paths.join(where, name)
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            child = None
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = os.open(name, _O_DIR, dir_fd=fd)
                except OSError:
                    continue
                stack.append((child, path, iter(sorted(os.listdir(child), key=os.fsencode)), True))
            if where == "/" and name.startswith(_WHITEOUT_META):
                continue  # aufsMetadataSkip: overlay/aufs bookkeeping, not a change
            change = _classify(path, st, child, lowers)
            if change is None:
                continue
            if child is not None:
                changed_dirs.add(path)
            if change.kind in (CHANGE_ADD, CHANGE_DELETE):
                parent = paths.dirname(path)
                if parent not in changed_dirs and parent != "/":
                    out.append(Change(parent, CHANGE_MODIFY))
                    changed_dirs.add(parent)
            out.append(change)
    finally:
        for fd, _, _, owned in stack:
            if owned:
                os.close(fd)
    return out


def _classify(path: str, st: os.stat_result, dir_fd: int | None, lowers: list[int]) -> Change | None:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return Change(path, CHANGE_DELETE)
    if dir_fd is not None:
        try:
            if os.getxattr(dir_fd, OPAQUE_XATTR) == b"y":
                return Change(path, CHANGE_DELETE)
        except OSError:
            pass
    for lower in lowers:
        old = _lstat_in(lower, path)
        if old is None:
            continue
        if (stat.S_ISDIR(old.st_mode) and dir_fd is not None and old.st_size == st.st_size
                and paths.go_file_mode(old.st_mode) == paths.go_file_mode(st.st_mode)
                and _same_fs_time(old.st_mtime_ns, st.st_mtime_ns)):
            return None  # an unchanged directory (only a parent of a change)
        return Change(path, CHANGE_MODIFY)
    return Change(path, CHANGE_ADD)


def _same_fs_time(a: int, b: int) -> bool:
    """sameFsTime: equal, or equal seconds when either side has no sub-second part."""
    if a == b:
        return True
    sa, na = divmod(a, 1_000_000_000)
    sb, nb = divmod(b, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)


def _lstat_in(layer_fd: int, path: str) -> os.stat_result | None:
    """lstat of ``path`` inside one layer directory, never leaving it (no symlinks followed)."""
    names = paths.components(path)
    fd = os.dup(layer_fd)
    try:
        for name in names[:-1]:
            try:
                nfd = os.open(name, _O_PATH_DIR, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = nfd
        try:
            return os.lstat(names[-1], dir_fd=fd)
        except OSError:
            return None
    finally:
        os.close(fd)
