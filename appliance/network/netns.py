"""Network namespaces pinned to files, and entering one from a single worker thread.

A container's namespace is made before the container exists (so its veth, address and routes
are ready when crun joins it via config.json `namespaces[{type: network, path}]`) and is kept
alive by a bind mount of the namespace onto a file, as `ip netns add` does, but under the node's
data root instead of /run/netns: the node runs in its own mount namespace and a restarted node
must find the pins again (live restore).

setns(CLONE_NEWNET) and unshare(CLONE_NEWNET) change only the calling thread. Everything here
runs in a worker thread and always switches back before returning; `entered()` checks that.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..runtime import syscalls

CLONE_NEWNET = 0x40000000
MS_MOVE = 0x2000  # linux/mount.h
_THREAD_NET = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = (ctypes.c_int,)


def _unshare_net() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


class NamespaceSwitchFailed(RuntimeError):
    """A worker thread could not get back to the node's namespace: it must not be reused."""


@contextlib.contextmanager
def entered(path: str | os.PathLike) -> Iterator[None]:
    """Run the block with this thread in the namespace at `path` (a pin or /proc/PID/ns/net)."""
    home = os.open(_THREAD_NET, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _go_home(home)
    finally:
        os.close(home)


def _go_home(home_fd: int) -> None:
    try:
        syscalls.setns(home_fd, CLONE_NEWNET)
    except OSError as exc:  # never seen; if it happens the thread is in the wrong namespace
        raise NamespaceSwitchFailed(f"cannot return to the node's network namespace: {exc}") from exc


def is_pinned(pin: Path) -> bool:
    """Whether a namespace is bind-mounted on `pin` (a mount point has another st_dev)."""
    try:
        return os.stat(pin).st_dev != os.stat(pin.parent).st_dev
    except FileNotFoundError:
        return False


def create_pinned(pin: Path, sysctls: Mapping[str, str], setup=None) -> None:
    """A fresh network namespace bound onto `pin`, loopback up, `sysctls` (paths under
    /proc/sys/net, e.g. "ipv4/ip_unprivileged_port_start") written inside it, and `setup()`
    called while this thread is inside (to open sockets there). Idempotent: an existing pin is
    kept as it is."""
    if is_pinned(pin):
        return
    pin.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(pin, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    home = os.open(_THREAD_NET, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _unshare_net()
        try:
            for key, value in sysctls.items():
                with open(f"/proc/sys/net/{key}", "w") as f:
                    f.write(value)
            if setup is not None:
                setup()
            syscalls.mount(_THREAD_NET, pin, None, syscalls.MS_BIND)
        finally:
            _go_home(home)
    except BaseException:
        with contextlib.suppress(OSError):
            pin.unlink()
        raise
    finally:
        os.close(home)


def move_pinned(source: Path, pin: Path) -> None:
    """Move the namespace pinned at `source` onto `pin`, an existing empty file (a mount point
    cannot be renamed), and delete `source`."""
    syscalls.mount(source, pin, None, MS_MOVE)
    with contextlib.suppress(FileNotFoundError):
        source.unlink()


def remove_pinned(pin: Path) -> None:
    """Unpin and delete; idempotent. The namespace itself dies with its last user."""
    try:
        syscalls.umount2(pin, syscalls.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    with contextlib.suppress(FileNotFoundError):
        pin.unlink()
