"""The on-disk layer store: content-addressed layer tars and their extracted lower dirs.

Layout under ``root``::

    blobs/sha256/<hex>      the layer tar exactly as received (uncompressed); its sha256 is
                            the diff_id, so ``docker save`` reproduces it byte for byte
    layers/<hex>/           the tar extracted as an overlayfs lower dir, ids shifted by
                            ``uid_shift`` (container root = host ``uid_shift``)
    meta/<hex>.json         {"diff_id", "size", "tar_size"}; written last, so a layer is
                            present exactly when its meta file is
    tmp/                    work dirs of adds and removes in progress

Adding a layer never follows a symlink the tar made and never writes outside the work dir:
every path is walked one component at a time with O_NOFOLLOW directory fds. A hostile
or malformed tar (absolute or ``..`` paths, a path through a symlink, a hard link out of
the layer or to nothing, device nodes, ids outside the container's range) is rejected
whole with InvalidParameter, and nothing of it stays behind.

Docker whiteouts become overlayfs ones: ``.wh.NAME`` -> a 0/0 character device NAME,
``.wh..wh..opq`` -> ``trusted.overlay.opaque=y`` on its directory.

Sync and thread-safe (the engine calls it from worker threads). No trio, no LMDB.
"""

from __future__ import annotations

import bz2
import contextlib
import decimal
import errno
import hashlib
import json
import lzma
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.errors import InvalidParameter, NotFound, SystemError_

CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
CAPABILITY_XATTR = "security.capability"
_PAX_XATTR = "SCHILY.xattr."

_GZIP_MAGIC = b"\x1f\x8b\x08"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# errnos that mean "this layer's content is impossible" rather than "this host failed".
_CONTENT_ERRNOS = {errno.ENOTDIR, errno.ELOOP, errno.EEXIST, errno.ENAMETOOLONG, errno.EINVAL,
                   errno.EISDIR, errno.ENOTEMPTY, errno.EMLINK}


@dataclass(frozen=True, slots=True)
class Layer:
    """A stored layer. ``size`` is dockerd's layer size (the sum of the tar entries' sizes);
    ``tar_size`` is the length of the uncompressed tar blob."""

    diff_id: str
    size: int
    tar_size: int


def _hex(diff_id: str) -> str:
    if not (diff_id.startswith("sha256:") and len(diff_id) == 71
            and all(c in "0123456789abcdef" for c in diff_id[7:])):
        raise InvalidParameter(f"invalid diff id: {diff_id!r}")
    return diff_id[7:]


class LayerStore:
    """Content-addressed layers under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path, uid_shift: int = 100000, uid_range: int = 65536):
        self.root = Path(root)
        self.uid_shift = uid_shift
        self.uid_range = uid_range
        self._lock = threading.Lock()
        self._blobs = self.root / "blobs" / "sha256"
        self._layers = self.root / "layers"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        for d in (self._blobs, self._layers, self._meta, self._tmp):
            d.mkdir(parents=True, exist_ok=True)

    # -- queries ---------------------------------------------------------------------

    def has(self, diff_id: str) -> bool:
        return (self._meta / f"{_hex(diff_id)}.json").exists()

    def get(self, diff_id: str) -> Layer:
        meta = self._meta / f"{_hex(diff_id)}.json"
        try:
            data = json.loads(meta.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"layer does not exist: {diff_id}") from None
        return Layer(diff_id=data["diff_id"], size=data["size"], tar_size=data["tar_size"])

    def size(self, diff_id: str) -> int:
        return self.get(diff_id).size

    def path(self, diff_id: str) -> Path:
        """The extracted lower dir, for overlayfs ``lowerdir=``."""
        self.get(diff_id)
        return self._layers / _hex(diff_id)

    def blob_path(self, diff_id: str) -> Path:
        self.get(diff_id)
        return self._blobs / _hex(diff_id)

    def open_tar(self, diff_id: str) -> BinaryIO:
        """The layer tar as it was added (uncompressed); the caller closes it."""
        return open(self.blob_path(diff_id), "rb")

    def list_layers(self) -> list[Layer]:
        out = []
        for meta in sorted(self._meta.glob("*.json")):
            try:
                out.append(self.get("sha256:" + meta.stem))
            except (NotFound, InvalidParameter):
                continue
        return out

    def du(self) -> int:
        """Bytes the whole store occupies on disk (blocks; hard links counted once)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                total += st.st_blocks * 512
        return total

    # -- changes ---------------------------------------------------------------------

    def add(self, fileobj: BinaryIO) -> Layer:
        """Store the layer tar read from ``fileobj`` (gzip/bzip2/xz detected by magic).

        The diff_id is the sha256 of the uncompressed tar. Adding a diff_id that is
        already present is a no-op returning the stored Layer.
        """
        return self.add_new(fileobj)[0]

    def add_new(self, fileobj: BinaryIO) -> tuple[Layer, bool]:
        """Like add; also tells whether this call stored the layer (False: already there)."""
        work = Path(tempfile.mkdtemp(prefix="add-", dir=self._tmp))
        try:
            blob = work / "blob"
            digest, tar_size = _spool_decompressed(fileobj, blob)
            diff_id = "sha256:" + digest
            if self.has(diff_id):
                return self.get(diff_id), False
            tree = work / "tree"
            size = _Extractor(tree, self.uid_shift, self.uid_range).extract(blob, tar_size)
            layer = Layer(diff_id=diff_id, size=size, tar_size=tar_size)
            (work / "meta").write_text(json.dumps(
                {"diff_id": diff_id, "size": size, "tar_size": tar_size}))
            with self._lock:
                if self.has(diff_id):
                    return self.get(diff_id), False
                hex_ = digest
                self._discard(self._layers / hex_)
                os.rename(tree, self._layers / hex_)
                os.rename(blob, self._blobs / hex_)
                os.rename(work / "meta", self._meta / f"{hex_}.json")
            return layer, True
        finally:
            _rmtree(work)

    def remove(self, diff_id: str) -> bool:
        """Delete a layer; False if it was not there. The engine checks references first."""
        hex_ = _hex(diff_id)
        with self._lock:
            meta = self._meta / f"{hex_}.json"
            present = meta.exists()
            if present:
                meta.unlink()
            self._discard(self._layers / hex_)
            with contextlib.suppress(FileNotFoundError):
                (self._blobs / hex_).unlink()
        return present

    def recover(self) -> None:
        """Startup cleanup: drop work dirs and half-committed layers (no meta file).

        Call once before any add; it is not safe while adds are running.
        """
        with self._lock:
            for entry in self._tmp.iterdir():
                _rmtree(entry)
            for entry in self._layers.iterdir():
                if not (self._meta / f"{entry.name}.json").exists():
                    self._discard(entry)
            for entry in self._blobs.iterdir():
                if not (self._meta / f"{entry.name}.json").exists():
                    entry.unlink()
            for entry in self._meta.iterdir():
                if entry.suffix != ".json":
                    entry.unlink()

    @contextlib.contextmanager
    def work_dir(self, prefix: str = "work-") -> Iterator[Path]:
        """A scratch directory on the store's filesystem, removed on exit (and by recover)."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self._tmp))
        try:
            yield path
        finally:
            _rmtree(path)

    def _discard(self, path: Path) -> None:
        """Remove a directory tree atomically from view: rename into tmp, then delete."""
        if not os.path.lexists(path):
            return
        doomed = Path(tempfile.mkdtemp(prefix="rm-", dir=self._tmp))
        os.rename(path, doomed / "x")
        _rmtree(doomed)


def _rmtree(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


# -----------------------------------------------------------------------------------------
# Decompressing spool


def _read_full(fileobj: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = fileobj.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _chunks(fileobj: BinaryIO, head: bytes) -> Iterator[bytes]:
    if head:
        yield head
    while True:
        chunk = fileobj.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _new_decompressor(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)


def _decompressed(chunks: Iterator[bytes], kind: str) -> Iterator[bytes]:
    """Multi-member aware decompression (like Go's gzip reader); bad data -> InvalidParameter."""
    magic = {"gzip": _GZIP_MAGIC, "bzip2": _BZIP2_MAGIC, "xz": _XZ_MAGIC}[kind]
    d = _new_decompressor(kind)
    try:
        for chunk in chunks:
            while chunk:
                if d is None:  # a stream ended; anything after it must be another member
                    if not magic.startswith(chunk[: len(magic)]):
                        raise InvalidParameter(f"{kind}: invalid header after compressed stream")
                    d = _new_decompressor(kind)
                out = d.decompress(chunk)
                if out:
                    yield out
                if d.eof:
                    chunk = d.unused_data
                    d = None
                else:
                    chunk = b""
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise InvalidParameter(f"{kind}: {exc}") from None
    if d is not None:
        raise InvalidParameter(f"{kind}: unexpected EOF")


def _spool_decompressed(fileobj: BinaryIO, dest: Path) -> tuple[str, int]:
    """Write the uncompressed bytes of ``fileobj`` to ``dest``; return (sha256 hex, length)."""
    head = _read_full(fileobj, 8)
    if head.startswith(_GZIP_MAGIC):
        kind = "gzip"
    elif head.startswith(_BZIP2_MAGIC):
        kind = "bzip2"
    elif head.startswith(_XZ_MAGIC):
        kind = "xz"
    elif head.startswith(_ZSTD_MAGIC):
        raise InvalidParameter("zstd-compressed layers are not supported")
    else:
        kind = ""
    chunks = _chunks(fileobj, head)
    data = _decompressed(chunks, kind) if kind else chunks
    h = hashlib.sha256()
    total = 0
    with open(dest, "wb") as out:
        for piece in data:
            h.update(piece)
            out.write(piece)
            total += len(piece)
    return h.hexdigest(), total


# -----------------------------------------------------------------------------------------
# Extraction


def member_parts(name: str) -> tuple[str, ...]:
    """A tar member name as path components; () is the layer root.

    Rejects absolute names, ``..`` components and NUL bytes (InvalidParameter).
    """
    if "\x00" in name:
        raise InvalidParameter(f"invalid layer: NUL byte in path {name!r}")
    if name.startswith("/"):
        raise InvalidParameter(f"invalid layer: absolute path {name!r}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidParameter(f"invalid layer: path {name!r} escapes the layer")
    return parts


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Extractor:
    """Extracts one tar into ``dest`` (created), never following a symlink."""

    def __init__(self, dest: Path, uid_shift: int, uid_range: int):
        self.dest = dest
        self.shift = uid_shift
        self.range = uid_range
        self.root_fd = -1
        self._dir_times: list[tuple[tuple[str, ...], int]] = []

    def extract(self, blob: Path, tar_size: int) -> int:
        os.mkdir(self.dest, 0o755)
        os.chown(self.dest, self.shift, self.shift)
        os.chmod(self.dest, 0o755)
        self.root_fd = os.open(self.dest, _O_DIR)
        try:
            if tar_size == 0:
                return 0  # an empty body is an empty layer, as Go's tar reader sees it
            try:
                with tarfile.open(blob, mode="r:", ignore_zeros=False) as tar:
                    return self._members(tar)
            except (tarfile.TarError, EOFError) as exc:
                raise InvalidParameter(f"invalid layer tar: {exc}") from None
        finally:
            os.close(self.root_fd)

    def _members(self, tar: tarfile.TarFile) -> int:
        size = 0
        while True:
            member = tar.next()
            if member is None:
                break
            tar.members.clear()  # keep memory flat on big layers
            if member.isreg():
                size += member.size
            try:
                self._member(tar, member)
            except OSError as exc:
                if exc.errno in _CONTENT_ERRNOS:
                    raise InvalidParameter(
                        f"invalid layer: {member.name}: {os.strerror(exc.errno)}") from None
                raise SystemError_(f"extracting {member.name}: {exc}") from exc
        for parts, mtime in reversed(self._dir_times):
            try:
                fd = self._walk(parts, create=False)
            except InvalidParameter:
                continue  # a later entry replaced the directory (or a parent) with a non-dir
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        return size

    # -- one member --------------------------------------------------------------------

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = member_parts(m.name)
        if m.ischr() or m.isblk():
            raise InvalidParameter(f"invalid layer: device node {m.name!r} is not allowed")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo()):
            raise InvalidParameter(f"invalid layer: unsupported tar entry type {m.type!r} "
                                   f"for {m.name!r}")
        uid, gid = self._ids(m)
        if parts and parts[0].startswith(WHITEOUT_META_PREFIX) and parts != (WHITEOUT_OPAQUE,):
            return  # AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): dockerd skips it too
        if not parts:
            if not m.isdir():
                raise InvalidParameter(f"invalid layer: the layer root {m.name!r} must be a "
                                       f"directory")
            self._attrs(self.root_fd, m, uid, gid)
            self._dir_times.append(((), _mtime_ns(m)))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, uid, gid, m)
            return
        pfd = self._walk(parts[:-1], create=True)
        try:
            if m.isdir():
                self._directory(pfd, parts, m, uid, gid)
            elif m.isreg():
                self._file(pfd, base, tar, m, uid, gid)
            elif m.issym():
                self._replace(pfd, base)
                os.symlink(m.linkname, base, dir_fd=pfd)
                os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
                mt = _mtime_ns(m)
                os.utime(base, ns=(mt, mt), dir_fd=pfd, follow_symlinks=False)
            elif m.islnk():
                self._hardlink(pfd, parts, m)
            else:  # fifo
                self._replace(pfd, base)
                os.mkfifo(base, 0o600, dir_fd=pfd)
                os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
                os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
                mt = _mtime_ns(m)
                os.utime(base, ns=(mt, mt), dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def _ids(self, m: tarfile.TarInfo) -> tuple[int, int]:
        for kind, value in (("uid", m.uid), ("gid", m.gid)):
            if not 0 <= value < self.range:
                raise InvalidParameter(
                    f"invalid layer: {m.name!r} has {kind} {value}, outside the container's "
                    f"id range 0-{self.range - 1}")
        return m.uid + self.shift, m.gid + self.shift

    def _directory(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo,
                   uid: int, gid: int) -> None:
        base = parts[-1]
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            self._replace(pfd, base)
            st = None
        if st is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _O_DIR, dir_fd=pfd)
        try:
            self._attrs(fd, m, uid, gid)
        finally:
            os.close(fd)
        self._dir_times.append((parts, _mtime_ns(m)))

    def _file(self, pfd: int, base: str, tar: tarfile.TarFile, m: tarfile.TarInfo,
              uid: int, gid: int) -> None:
        self._replace(pfd, base)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            src = tar.extractfile(m)
            if src is not None:
                remaining = m.size
                while remaining > 0:
                    chunk = src.read(min(CHUNK, remaining))
                    if not chunk:
                        raise InvalidParameter(f"invalid layer tar: {m.name}: unexpected EOF")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    remaining -= len(chunk)
            self._attrs(fd, m, uid, gid)
        finally:
            os.close(fd)

    def _hardlink(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        target = member_parts(m.linkname)
        if not target:
            raise InvalidParameter(f"invalid layer: hard link {m.name!r} to the layer root")
        if target == parts:
            raise InvalidParameter(f"invalid layer: hard link {m.name!r} to itself")
        tfd = self._walk(target[:-1], create=False)
        try:
            try:
                st = os.lstat(target[-1], dir_fd=tfd)
            except FileNotFoundError:
                raise InvalidParameter(
                    f"invalid layer: hard link {m.name!r} to missing {m.linkname!r}") from None
            if stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(
                    f"invalid layer: hard link {m.name!r} to directory {m.linkname!r}")
            self._replace(pfd, parts[-1])
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            os.close(tfd)

    def _whiteout(self, parts: tuple[str, ...], uid: int, gid: int, m: tarfile.TarInfo) -> None:
        base = parts[-1]
        pfd = self._walk(parts[:-1], create=True)
        try:
            if base == WHITEOUT_OPAQUE:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
                return
            if base.startswith(WHITEOUT_META_PREFIX):
                return  # other AUFS metadata inside a directory: ignored
            name = base[len(WHITEOUT_PREFIX):]
            if name in ("", ".", ".."):
                raise InvalidParameter(f"invalid layer: bad whiteout {m.name!r}")
            self._replace(pfd, name)
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    # -- helpers -----------------------------------------------------------------------

    def _attrs(self, fd: int, m: tarfile.TarInfo, uid: int, gid: int) -> None:
        """Owner, then mode (chown clears set-id bits), xattrs, mtime, on an open fd."""
        os.fchown(fd, uid, gid)
        os.fchmod(fd, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            name = key[len(_PAX_XATTR):]
            raw = value.encode("utf-8", "surrogateescape")
            if name == CAPABILITY_XATTR:
                raw = _shift_capability(raw, self.shift, self.range)
                if raw is None:
                    continue
            elif not name.startswith("user."):
                continue  # trusted.* (overlay metadata!), other security.*, ACLs: dropped
            try:
                os.setxattr(fd, name, raw)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            mt = _mtime_ns(m)
            os.utime(fd, ns=(mt, mt))

    def _replace(self, pfd: int, base: str) -> None:
        """Clear the way for a new entry ``base`` (a later tar entry wins)."""
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def _walk(self, parts: tuple[str, ...], create: bool) -> int:
        """An fd for directory ``parts`` under the layer root, refusing symlinks anywhere.

        Missing directories are made (0755, container root) when ``create``. The caller
        closes the fd.
        """
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nfd = os.open(comp, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise InvalidParameter(
                            f"invalid layer: {'/'.join(parts)} does not exist") from None
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    os.chown(comp, self.shift, self.shift, dir_fd=fd, follow_symlinks=False)
                    nfd = os.open(comp, _O_DIR, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise InvalidParameter(
                            f"invalid layer: path {'/'.join(parts)!r} goes through a symlink "
                            f"or a non-directory") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd


def _mtime_ns(m: tarfile.TarInfo) -> int:
    """The member's mtime in ns, exact for PAX fractional times (tarfile gives a float)."""
    text = m.pax_headers.get("mtime")
    if text:
        try:
            return int(decimal.Decimal(text).scaleb(9).to_integral_value(decimal.ROUND_FLOOR))
        except decimal.InvalidOperation:
            pass
    return int(m.mtime) * 1_000_000_000


_VFS_CAP_REVISION_MASK = 0xFF000000
_VFS_CAP_REVISION_2 = 0x02000000
_VFS_CAP_REVISION_3 = 0x03000000


def _shift_capability(raw: bytes, shift: int, id_range: int) -> bytes | None:
    """File capabilities as the container will see them under a shifted root.

    A v2 capability (no root id) would only be honoured for the host's root, so it is
    rewritten as v3 with rootid = ``shift``; a v3 one gets its rootid shifted. Malformed
    values are dropped (None).
    """
    if shift == 0:
        return raw
    if len(raw) < 4:
        return None
    magic = struct.unpack("<I", raw[:4])[0]
    revision = magic & _VFS_CAP_REVISION_MASK
    if revision == _VFS_CAP_REVISION_2 and len(raw) == 20:
        new_magic = (magic & ~_VFS_CAP_REVISION_MASK) | _VFS_CAP_REVISION_3
        return struct.pack("<I", new_magic) + raw[4:20] + struct.pack("<I", shift)
    if revision == _VFS_CAP_REVISION_3 and len(raw) == 24:
        rootid = struct.unpack("<I", raw[20:24])[0]
        if rootid >= id_range:
            return None
        return raw[:20] + struct.pack("<I", rootid + shift)
    return None
