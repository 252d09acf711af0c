"""Build small tars member by member, including the hostile ones a real tool won't write."""

from __future__ import annotations

import io
import tarfile

MTIME = 1_600_000_000


def _info(name: str, type_: bytes, mode: int, uid: int, gid: int, mtime: float,
          xattrs: dict[str, bytes] | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    if xattrs:
        info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                            for k, v in xattrs.items()}
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
        mtime: float = MTIME, xattrs: dict[str, bytes] | None = None):
    info = _info(name, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: float = MTIME,
         xattrs: dict[str, bytes] | None = None):
    return _info(name, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs), None


def sym(name: str, target: str, uid: int = 0, gid: int = 0, mtime: float = MTIME):
    info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime, None)
    info.linkname = target
    return info, None


def link(name: str, target: str):
    info = _info(name, tarfile.LNKTYPE, 0o644, 0, 0, MTIME, None)
    info.linkname = target
    return info, None


def dev(name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3):
    info = _info(name, kind, 0o666, 0, 0, MTIME, None)
    info.devmajor, info.devminor = major, minor
    return info, None


def fifo(name: str, mode: int = 0o600):
    return _info(name, tarfile.FIFOTYPE, mode, 0, 0, MTIME, None), None


def tar_bytes(*entries, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()
