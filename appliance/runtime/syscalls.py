"""The few Linux syscalls Python 3.11's os module lacks, through ctypes: mount, umount2, setns.

Each raises OSError with the errno and the path, like the os module does.
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _b(value: str | os.PathLike | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _check(result: int, what: str, path: str | os.PathLike | None) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", None if path is None else os.fspath(path))


def mount(source: str | os.PathLike | None, target: str | os.PathLike, fstype: str | None,
          flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns", None)
