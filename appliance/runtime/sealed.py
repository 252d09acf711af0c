"""The OCI runtime binary as a sealed in-memory copy, so crun need not clone itself per call.

crun (like runc) protects against CVE-2019-5736 by making sure the binary it runs as cannot
be overwritten from inside a container: unless /proc/self/exe is already a memfd sealed
against writes, every invocation bind-mounts itself read-only onto a temporary file,
unmounts it and re-executes (cloned_binary.c). The unmount waits for an RCU grace period,
so that costs about 1.3 ms of each `crun exec` here (bench/exec_latency.py). We make the
sealed copy once at start, as runc's contrib memfd-bind does for a whole host, and execute it
through /proc/<our pid>/fd/<n>: crun then sees a sealed memfd and runs at once, with the same
protection, since no one can write to a sealed memfd.
"""

from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger(__name__)

_F_ADD_SEALS = 1033  # fcntl.F_ADD_SEALS on Python >= 3.8 builds that expose it
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
SEALS = _F_SEAL_SEAL | _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE  # exactly what crun checks for
_MFD_EXEC = 0x10  # Linux >= 6.3: ask for an executable memfd explicitly


def sealed_copy(path: str) -> str | None:
    """A path that executes a sealed memfd copy of the binary at path, valid while this
    process lives; None if the kernel cannot make one (the caller runs path itself)."""
    try:
        fd = _memfd(os.path.basename(path))
    except OSError as exc:
        log.info("running %s without a sealed copy: %s", path, exc)
        return None
    try:
        with open(path, "rb") as src:
            data = src.read()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, _F_ADD_SEALS, SEALS)
    except OSError as exc:
        os.close(fd)
        log.info("running %s without a sealed copy: %s", path, exc)
        return None
    return f"/proc/{os.getpid()}/fd/{fd}"


def _memfd(name: str) -> int:
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        return os.memfd_create(name, flags | _MFD_EXEC)
    except OSError:  # EINVAL before 6.3: every memfd is executable there
        return os.memfd_create(name, flags)
