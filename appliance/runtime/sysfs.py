"""A container's own sysfs, mounted by the node inside the container's network namespace.

Why the node mounts it and not crun: sysfs shows the network devices of the network namespace
its mounter is in at mount time, and the kernel lets only a process with CAP_SYS_ADMIN over
that namespace's owning user namespace mount one. The node makes each container's network
namespace itself (owned by the host user namespace), while crun puts the container in a new
user namespace: crun's own sysfs mount then fails with EPERM, and the only fallback, a bind of
the host's /sys, shows the machine's interfaces and MACs (dockerd with userns-remap has the same
weakness). So the node mounts a fresh sysfs from within the container's namespace at
DATA/containers/<id>/sysfs (in the node's mount namespace, where crun runs), read-only, nosuid,
nodev, noexec, and config.json binds that at /sys. Devices added to the namespace later
(`docker network connect`) show up in it too: they carry the namespace's tag, not the mount's.

setns(CLONE_NEWNET) moves only the calling thread, so the mount runs in a thread of its own
that is never reused: it exits inside the container's namespace and no other code can ever
run on it. The mount holds only a passive reference to the namespace (the kernel still tears
the namespace and its veths down when the pin goes), and is unmounted when the run ends
(Runtime.cleanup) or, after a crash, by the leftover sweep.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.errors import SystemError_
from appliance.runtime import rootfs as rootfs_mod
from appliance.runtime import syscalls

MOUNT_FLAGS = syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def _mount_from(netns: Path, target: Path) -> None:
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, syscalls.CLONE_NEWNET)
    finally:
        os.close(fd)
    syscalls.mount("sysfs", target, "sysfs", MOUNT_FLAGS)


def mount(netns: Path, target: Path) -> None:
    """Mount a read-only sysfs of the network namespace at `netns` (a pin) on `target`, a
    directory made here. A previous mount there is removed first (a run whose cleanup was
    skipped; its namespace may be another). Blocking (~0.2 ms): call from a worker thread."""
    unmount(target)
    target.mkdir(mode=0o555, exist_ok=True)
    # A pool of one, shut down at once: its thread exits after this one call.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sysfs-mount") as pool:
        done = pool.submit(_mount_from, netns, target)
    try:
        done.result()
    except OSError as e:
        raise SystemError_(f"error mounting the container's sysfs at {target}: {e.strerror}") from e


def unmount(target: Path) -> None:
    """Unmount target if mounted; idempotent. Blocking: call from a worker thread."""
    rootfs_mod.unmount(target)
