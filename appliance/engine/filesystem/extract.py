"""Unpacking a client's tar into a container directory (``PUT /containers/{id}/archive``).

dockerd unpacks inside a chroot of the container's root (chrootarchive.UntarWithRoot)
with pkg/archive's Unpack rules; this module keeps those rules and gets the chroot's
guarantee from RootScope instead:

- names are cleaned; an absolute name lands below the destination, a name that climbs out
  of it (``../x``) is refused: ``"../x" is outside of "/dest"``;
- a symlink whose target, read from its own directory, leaves the destination is refused
  (``invalid symlink``), as is a hard link to a name outside it (``invalid hardlink``);
- a directory on the way that is a symlink is followed *inside the container* (dockerd's
  chroot does the same), so "symlink, then a file through it" writes into the container's
  own tree, never the host's; the final name itself is never followed: what is there is
  removed and replaced;
- missing parents are made 0755, owned by container root;
- with noOverwriteDirNonDir, a directory never replaces a non-directory or vice versa;
- owners are the tar's, as the container sees them, shifted to the host's ids (or the
  container's user with copyUIDGID); modes after owners (so set-id bits stay); mtimes
  last, directories after everything in them.

The whole tar is read once before anything is written, so a non-tar, a hostile name or an
unmappable owner is a 400 that changes nothing. Device nodes are skipped, as dockerd does
when it cannot make them; only ``user.*`` and ``security.capability`` xattrs are applied.
Sync; no trio.
"""

from __future__ import annotations

import decimal
import errno
import json
import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import InvalidParameter, SystemError_
from . import paths
from .idmap import IdShift
from .scope import RootScope
from .tarstream import CAPABILITY_XATTR, PAX_XATTR

log = logging.getLogger(__name__)

CHUNK = 1 << 20
IMPLIED_DIR_MODE = 0o755

_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH_ENTRY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC

# errnos that mean "this archive cannot go there", not "the node failed"
_CONTENT_ERRNOS = {errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.ENAMETOOLONG, errno.EINVAL,
                   errno.EISDIR, errno.ENOTEMPTY, errno.EMLINK, errno.EPERM, errno.EROFS,
                   errno.ENOENT, errno.EXDEV}


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    ids: IdShift
    no_overwrite_dir_non_dir: bool = False
    #: container-view (uid, gid) for every entry (copyUIDGID with a container user)
    chown: tuple[int, int] | None = None
    #: the container's root filesystem is read-only (volumes may still be written)
    readonly_rootfs: bool = False


def quote(text: str) -> str:
    """Go's %q, near enough for the paths in dockerd's messages."""
    return json.dumps(text, ensure_ascii=False)


def open_tar(path: Path) -> tarfile.TarFile | None:
    """The spooled body as a tar (gzip, bzip2 and xz too); None for an empty body."""
    with open(path, "rb") as f:
        first = f.read(512)
    if not first.strip(b"\0"):
        return None  # empty, or only the end-of-archive blocks: Go's reader sees io.EOF at once
    try:
        return tarfile.open(path, mode="r:*", encoding="utf-8", errors="surrogateescape")
    except (tarfile.TarError, EOFError, OSError):
        raise InvalidParameter("archive/tar: invalid tar header") from None


def members(tar: tarfile.TarFile):
    """The archive's entries one at a time (memory stays flat); bad data is a 400."""
    while True:
        try:
            m = tar.next()
        except EOFError:
            raise InvalidParameter("unexpected EOF") from None
        except tarfile.TarError:
            raise InvalidParameter("archive/tar: invalid tar header") from None
        if m is None:
            return
        tar.members.clear()
        yield m


@dataclass(frozen=True, slots=True)
class _Plan:
    name: str  # cleaned member name
    path: str  # container path it goes to (lexical: dest joined with name)


def plan(dest: str, m: tarfile.TarInfo, opts: ExtractOptions) -> _Plan | None:
    """Check one entry against dockerd's rules; None for one to skip. InvalidParameter if bad."""
    name = paths.clean(m.name)
    if name == ".." or name.startswith("../"):
        raise InvalidParameter(f"{quote(name)} is outside of {quote(dest)}")
    path = paths.join(dest, name)
    if m.ischr() or m.isblk():
        return None
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
        raise InvalidParameter(f"unhandled tar header type {ord(m.type) if m.type else 0}")
    if m.issym():
        target = paths.join(paths.dirname(path), m.linkname)
        if not paths.is_within(target, dest):
            raise InvalidParameter(f"invalid symlink {quote(path)} -> {quote(m.linkname)}")
    if m.islnk():
        target = paths.join(dest, m.linkname)
        if not paths.is_within(target, dest) or target == dest:
            raise InvalidParameter(f"invalid hardlink {quote(target)} -> {quote(m.linkname)}")
    if opts.chown is None:
        opts.ids.to_host(m.uid)
        opts.ids.to_host(m.gid)
    if name == "." and not m.isdir():
        raise InvalidParameter(f"cannot overwrite directory {quote(dest)} with non-directory {quote(dest)}")
    return _Plan(name, path)


def check(tar_path: Path, dest: str, opts: ExtractOptions) -> None:
    """The whole archive read and every entry checked, before anything is written."""
    tar = open_tar(tar_path)
    if tar is None:
        return
    with tar:
        for m in members(tar):
            plan(dest, m, opts)


def extract(scope: RootScope, dest: str, tar_path: Path, opts: ExtractOptions) -> None:
    """Unpack ``tar_path`` into the canonical container directory ``dest``."""
    check(tar_path, dest, opts)
    tar = open_tar(tar_path)
    if tar is None:
        return
    dirs: list[tuple[str, int, int]] = []
    with tar:
        for m in members(tar):
            p = plan(dest, m, opts)
            if p is None:
                log.debug("skipping device node %s", m.name)
                continue
            try:
                _entry(scope, dest, tar, m, p, opts, dirs)
            except OSError as exc:
                raise _os_error(p.path, exc) from None
    for where, atime, mtime in reversed(dirs):
        try:
            pfd, name = scope.open_parent(where)
        except OSError:
            continue  # replaced by a later entry
        try:
            os.utime(name, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass
        finally:
            os.close(pfd)


def _os_error(path: str, exc: OSError) -> Exception:
    text = f"{path}: {os.strerror(exc.errno) if exc.errno else exc}"
    if exc.errno in _CONTENT_ERRNOS:
        return InvalidParameter(text)
    return SystemError_(text)


def _entry(scope: RootScope, dest: str, tar: tarfile.TarFile, m: tarfile.TarInfo, p: _Plan,
           opts: ExtractOptions, dirs: list[tuple[str, int, int]]) -> None:
    if p.name == ".":
        return  # the destination itself: dockerd leaves its metadata alone
    uid, gid = (opts.chown if opts.chown is not None else (m.uid, m.gid))
    huid, hgid = opts.ids.to_host(uid), opts.ids.to_host(gid)
    parent = scope.resolve(paths.dirname(p.path))  # in the container's scope, like the chroot
    _check_writable(scope, parent, opts)
    root_uid, root_gid = opts.ids.to_host(0), opts.ids.to_host(0)
    pfd = _open_or_make_dirs(scope, parent, root_uid, root_gid)
    try:
        base = paths.base(p.path)
        where = paths.join(parent, base)
        if scope.is_mount_point(where):
            if m.isdir():
                return  # a volume's root keeps its own metadata
            raise InvalidParameter(f"cannot overwrite mount point {quote(p.path)}")
        try:
            existing = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if opts.no_overwrite_dir_non_dir and is_dir and not m.isdir():
                raise InvalidParameter(f"cannot overwrite directory {quote(p.path)} with non-directory {quote(dest)}")
            if opts.no_overwrite_dir_non_dir and not is_dir and m.isdir():
                raise InvalidParameter(f"cannot overwrite non-directory {quote(p.path)} with directory {quote(dest)}")
            if not (is_dir and m.isdir()):
                if is_dir:
                    shutil.rmtree(base, dir_fd=pfd)
                else:
                    os.unlink(base, dir_fd=pfd)
                existing = None
        mtime = _time_ns(m, "mtime")
        atime = max(_time_ns(m, "atime", default=mtime), mtime)
        if m.isdir():
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _O_DIR, dir_fd=pfd)
            try:
                _attrs(fd, m, huid, hgid, opts.ids)
            finally:
                os.close(fd)
            dirs.append((where, atime, mtime))
        elif m.isreg():
            fd = os.open(base, _O_NEW_FILE, 0o600, dir_fd=pfd)
            try:
                _copy(tar, m, fd)
                _attrs(fd, m, huid, hgid, opts.ids)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, huid, hgid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            _hardlink(scope, dest, m, pfd, base, huid, hgid, atime, mtime)
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
            _attrs_by_path(pfd, base, m.mode, huid, hgid, atime, mtime)
    finally:
        os.close(pfd)


def _check_writable(scope: RootScope, where: str, opts: ExtractOptions) -> None:
    mount = scope.mount_of(where)
    if mount is not None:
        if not mount[1]:
            raise InvalidParameter("mounted volume is marked read-only")
    elif opts.readonly_rootfs:
        raise InvalidParameter("container rootfs is marked read-only")


def _open_or_make_dirs(scope: RootScope, canonical: str, uid: int, gid: int) -> int:
    """An O_PATH fd of directory ``canonical``, making missing ones (0755, container root)."""
    fd = scope.open_dir("/")
    done = "/"
    try:
        for name in paths.components(canonical):
            here = paths.join(done, name)
            if scope.is_mount_point(here):
                nfd = scope.open_dir(here)
            else:
                try:
                    nfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    dfd = os.open(name, _O_DIR, dir_fd=fd)
                    try:
                        os.fchown(dfd, uid, gid)
                        os.fchmod(dfd, IMPLIED_DIR_MODE)
                    finally:
                        os.close(dfd)
                    nfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd, done = nfd, here
    except BaseException:
        os.close(fd)
        raise
    return fd


def _hardlink(scope: RootScope, dest: str, m: tarfile.TarInfo, pfd: int, base: str,
              uid: int, gid: int, atime: int, mtime: int) -> None:
    target = paths.join(dest, m.linkname)
    tparent = scope.resolve(paths.dirname(target))
    tfd = scope.open_dir(tparent)
    try:
        os.link(paths.base(target), base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(tfd)
    st = os.lstat(base, dir_fd=pfd)
    if stat.S_ISLNK(st.st_mode):
        os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        return
    _attrs_by_path(pfd, base, m.mode, uid, gid, atime, mtime)


def _attrs_by_path(pfd: int, base: str, mode: int, uid: int, gid: int, atime: int, mtime: int) -> None:
    """Owner, mode and times of a non-symlink entry that cannot be opened for writing."""
    fd = os.open(base, _O_PATH_ENTRY, dir_fd=pfd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return
        os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(f"/proc/self/fd/{fd}", mode & 0o7777)  # the fd pins the inode: no name lookup
        os.utime(base, ns=(atime, mtime), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(fd)


def _attrs(fd: int, m: tarfile.TarInfo, uid: int, gid: int, ids: IdShift) -> None:
    """Owner, then mode (chown clears set-id bits), then xattrs, on an open fd."""
    os.fchown(fd, uid, gid)
    os.fchmod(fd, m.mode & 0o7777)
    for key, value in m.pax_headers.items():
        if not key.startswith(PAX_XATTR):
            continue
        name = key[len(PAX_XATTR):]
        raw = value.encode("utf-8", "surrogateescape")
        if name == CAPABILITY_XATTR:
            raw = ids.capability_to_host(raw)
            if raw is None:
                continue
        elif not name.startswith("user."):
            continue  # trusted.* (overlay's own!), other security.*, ACLs: not from a client
        try:
            os.setxattr(fd, name, raw)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _copy(tar: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
    src = tar.extractfile(m)
    if src is None:
        return
    remaining = m.size
    while remaining > 0:
        try:
            chunk = src.read(min(CHUNK, remaining))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidParameter(f"archive/tar: {exc}") from None
        if not chunk:
            raise InvalidParameter("unexpected EOF")
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        remaining -= len(chunk)


def _time_ns(m: tarfile.TarInfo, key: str, default: int | None = None) -> int:
    text = m.pax_headers.get(key)
    if text:
        try:
            return int(decimal.Decimal(text).scaleb(9).to_integral_value(decimal.ROUND_FLOOR))
        except decimal.InvalidOperation:
            pass
    if key != "mtime" and default is not None:
        return default
    return int(m.mtime) * 1_000_000_000
