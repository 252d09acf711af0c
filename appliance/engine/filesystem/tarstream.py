"""Tar streams of directory trees, as dockerd's pkg/archive writes them.

One writer serves ``docker cp`` (a path in a container), ``docker export`` (the whole
merged root) and ``docker commit`` (the writable layer, with overlay whiteouts turned
back into Docker's ``.wh.`` files). It walks with directory fds and never follows a
symlink, so a tree the container controls cannot point it anywhere else.

dockerd's choices kept here: entries in lexical order, a directory before its contents,
names of directories end in "/", times truncated to whole seconds, owners as the container
sees them, no user or group names, ``security.capability`` as a PAX xattr record, a file
with more than one link written once and then as hard links to that first name, sockets
left out, and the archive ends with two zero blocks. Sync; no trio.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from . import paths
from .idmap import IdShift

BLOCK = 512
CHUNK = 1 << 20
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
CAPABILITY_XATTR = "security.capability"
PAX_XATTR = "SCHILY.xattr."

_O_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass
class TarWriter:
    """Headers and content of one archive; ``seen`` remembers hard-linked inodes."""

    ids: IdShift
    #: commit: overlay whiteouts (0/0 char devices, opaque directories) become .wh. entries
    whiteouts: bool = False
    #: a directory fd to use instead of the one at a canonical path (the container's mounts)
    mount_fd: Callable[[str], int | None] | None = None
    #: (parent fd, name) of a file bind-mounted at a canonical path
    file_mount: Callable[[str], tuple[int, str] | None] | None = None
    seen: dict[tuple[int, int], str] = field(default_factory=dict)

    # ---- trees -----------------------------------------------------------------------

    def tree(self, dir_fd: int, *, root_name: str | None, prefix: str,
             canonical: str = "/") -> Iterator[bytes]:
        """The directory ``dir_fd`` (readable) and everything below it.

        ``root_name``: the directory's own entry name (None: no entry for it, as export
        and layer diffs have none); children are named ``prefix + relative path``."""
        if root_name is not None:
            yield from self._entry_of_dir(dir_fd, root_name, os.fstat(dir_fd))
        stack = [(dir_fd, "", canonical, iter(_sorted_names(dir_fd)), False)]
        try:
            while stack:
                fd, rel, canon, names, owned = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    if owned:
                        os.close(fd)
                    continue
                child_rel, child_canon = rel + name, paths.join(canon, name)
                child_fd = self._open_child_dir(fd, name, child_canon)
                if child_fd is None:
                    where, base = fd, name
                    redirect = self.file_mount(child_canon) if self.file_mount is not None else None
                    if redirect is not None:
                        where, base = redirect
                    try:
                        st = os.lstat(base, dir_fd=where)
                    except FileNotFoundError:
                        continue  # gone while we walked: a running container changes its tree
                    if stat.S_ISDIR(st.st_mode):
                        continue  # replaced by a directory we did not open: skip it
                    yield from self.entry(where, base, st, prefix + child_rel)
                    continue
                try:
                    yield from self._entry_of_dir(child_fd, prefix + child_rel + "/", os.fstat(child_fd))
                    stack.append((child_fd, child_rel + "/", child_canon, iter(_sorted_names(child_fd)), True))
                except BaseException:
                    os.close(child_fd)
                    raise
        finally:
            for fd, _, _, _, owned in stack:
                if owned:
                    os.close(fd)

    def _open_child_dir(self, parent_fd: int, name: str, canonical: str) -> int | None:
        """A readable fd of child directory ``name`` (or the mount there); None if not a dir."""
        if self.mount_fd is not None:
            mfd = self.mount_fd(canonical)
            if mfd is not None:
                return os.open(".", _O_READ_DIR & ~os.O_NOFOLLOW, dir_fd=mfd)
        try:
            return os.open(name, _O_READ_DIR, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
                return None
            raise

    # ---- single entries --------------------------------------------------------------

    def entry(self, parent_fd: int, name: str, st: os.stat_result, tar_name: str) -> Iterator[bytes]:
        """One non-directory entry ``name`` of ``parent_fd``, named ``tar_name``."""
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFSOCK:
            return
        if self.whiteouts and kind == stat.S_IFCHR and st.st_rdev == 0:
            head, base = paths.split(tar_name)
            info = _info(head + WHITEOUT_PREFIX + base, 0o600, 0, 0, st.st_mtime_ns)
            yield _header(info)
            return
        uid, gid = self.ids.to_container(st.st_uid), self.ids.to_container(st.st_gid)
        info = _info(tar_name, stat.S_IMODE(st.st_mode), uid, gid, st.st_mtime_ns)
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.seen.get(key)
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                yield _header(info)
                return
            self.seen[key] = tar_name
        if kind == stat.S_IFLNK:
            info.type = tarfile.SYMTYPE
            try:
                info.linkname = os.readlink(name, dir_fd=parent_fd)
            except OSError:
                return  # replaced meanwhile
            yield _header(info)
        elif kind == stat.S_IFREG:
            yield from self._file(parent_fd, name, st, info)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            yield _header(info)
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
            yield _header(info)

    def _entry_of_dir(self, fd: int, tar_name: str, st: os.stat_result) -> Iterator[bytes]:
        uid, gid = self.ids.to_container(st.st_uid), self.ids.to_container(st.st_gid)
        info = _info(tar_name, stat.S_IMODE(st.st_mode), uid, gid, st.st_mtime_ns)
        info.type = tarfile.DIRTYPE
        yield _header(info)
        if self.whiteouts and _xattr(fd, OPAQUE_XATTR) == b"y":
            opaque = _info(paths.join(tar_name, WHITEOUT_OPAQUE) if tar_name != "/" else WHITEOUT_OPAQUE,
                           stat.S_IMODE(st.st_mode) & 0o777, uid, gid, 0)
            yield _header(opaque)

    def _file(self, parent_fd: int, name: str, st: os.stat_result, info: tarfile.TarInfo) -> Iterator[bytes]:
        try:
            fd = os.open(name, _O_READ_FILE, dir_fd=parent_fd)
        except OSError:
            fd = -1  # vanished or replaced: the entry keeps its size, with zeros for content
        try:
            if fd >= 0:
                now = os.fstat(fd)
                if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    os.close(fd)
                    fd = -1
            if fd >= 0:
                cap = _xattr(fd, CAPABILITY_XATTR)
                if cap is not None:
                    cap = self.ids.capability_to_container(cap)
                if cap is not None:
                    info.pax_headers = {PAX_XATTR + CAPABILITY_XATTR: cap.decode("utf-8", "surrogateescape")}
            info.size = st.st_size
            yield _header(info)
            remaining = st.st_size
            offset = 0
            while remaining > 0:
                want = min(CHUNK, remaining)
                chunk = os.pread(fd, want, offset) if fd >= 0 else b""
                if not chunk:  # the file shrank while we read it: keep the archive well-formed
                    chunk = b"\0" * want
                offset += len(chunk)
                remaining -= len(chunk)
                yield chunk
            pad = -st.st_size % BLOCK
            if pad:
                yield b"\0" * pad
        finally:
            if fd >= 0:
                os.close(fd)


def batched(pieces: Iterator[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    """Join small pieces (headers) into chunks of about ``size`` bytes."""
    buf = bytearray()
    try:
        for piece in pieces:
            buf += piece
            if len(buf) >= size:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # at once, in this thread: the walk's fds are closed before the caller's


def _info(name: str, mode: int, uid: int, gid: int, mtime_ns: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = mtime_ns // 1_000_000_000
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _sorted_names(dir_fd: int) -> list[str]:
    """Entries of a directory in Go's byte order (filepath.Walk's order)."""
    return sorted(os.listdir(dir_fd), key=os.fsencode)


def _xattr(fd: int, name: str) -> bytes | None:
    try:
        return os.getxattr(fd, name)
    except OSError:
        return None
