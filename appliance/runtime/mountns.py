"""The node's own mount namespace, pinned to a file so a restarted node re-enters it.

Why a private mount namespace at all: on hosts with hybrid cgroups (v1 controllers plus a
cgroup2 `unified` mount that holds a controller) crun refuses to run ("cgroups in hybrid
mode not supported"). Hiding `unified` in a namespace of our own makes crun use plain v1,
without changing the host. crun, conmon and the containers all live in this namespace.

Why pinned: the per-container overlay mounts are made in this namespace and are invisible
outside it. conmon keeps containers running when the node dies; a restarted node must see
the same overlays to inspect and unmount them (live restore). Binding the namespace onto
state_dir/ns/mnt keeps it alive and findable; the bind must sit on a private mount, hence
the private bind of state_dir/ns onto itself in the host namespace.

enter_private_mount_namespace() must run before trio or any thread starts: setns(CLONE_NEWNS)
fails with EINVAL in a process whose threads share its filesystem context.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from appliance.errors import SystemError_
from appliance.runtime import syscalls
from appliance.runtime.mountinfo import mount_points

CGROUP2_UNIFIED = "/sys/fs/cgroup/unified"


def _pin_paths(state_dir: Path) -> tuple[Path, Path, Path]:
    ns_dir = Path(state_dir).resolve() / "ns"
    return ns_dir, ns_dir / "mnt", ns_dir / "mnt.inode"


def _own_mnt_ns_inode() -> int:
    return os.stat("/proc/self/ns/mnt").st_ino


def _setns_mount(pin: Path) -> None:
    cwd = os.getcwd()
    fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, syscalls.CLONE_NEWNS)
    finally:
        os.close(fd)
    # setns(CLONE_NEWNS) moves the process to the namespace's root directory.
    os.chdir(cwd)


def _hide_unified() -> None:
    if CGROUP2_UNIFIED in mount_points():
        syscalls.umount2(CGROUP2_UNIFIED, syscalls.MNT_DETACH)


def enter_private_mount_namespace(state_dir: Path) -> None:
    """Move this (single-threaded) process into the node's pinned mount namespace,
    creating it on first use, and make sure cgroup2 `unified` is hidden in it."""
    ns_dir, pin, inode_file = _pin_paths(state_dir)
    ns_dir.mkdir(parents=True, exist_ok=True)
    try:
        if inode_file.exists() and int(inode_file.read_text()) == _own_mnt_ns_inode():
            _hide_unified()  # already inside (e.g. called twice)
            return
    except ValueError:
        pass
    mounts = mount_points()
    try:
        if str(ns_dir) not in mounts:
            syscalls.mount(ns_dir, ns_dir, None, syscalls.MS_BIND)
            syscalls.mount(None, ns_dir, None, syscalls.MS_PRIVATE)
        pinned = mounts.get(str(pin))
        if pinned is None or pinned.fstype != "nsfs":
            pin.touch()
            # unshare(1) does the part we cannot do from Python alone: a helper left in the
            # host namespace binds the new namespace onto the pin file.
            done = subprocess.run(["unshare", f"--mount={pin}", "--propagation", "private", "true"],
                                  check=False, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemError_(f"cannot create the node mount namespace: {done.stderr.strip()}")
        _setns_mount(pin)
        _hide_unified()
    except OSError as e:
        raise SystemError_(f"cannot enter the node mount namespace at {pin}: {e}") from e
    inode_file.write_text(str(_own_mnt_ns_inode()))


def pinned_namespace_exists(state_dir: Path) -> bool:
    """Whether state_dir/ns/mnt holds a namespace, as seen from the host namespace."""
    _, pin, _ = _pin_paths(state_dir)
    entry = mount_points().get(str(pin))
    return entry is not None and entry.fstype == "nsfs"


def release_pinned_namespace(state_dir: Path) -> None:
    """Undo enter_private_mount_namespace's host-side effects: unmount the pin and the
    private bind. Call from the host namespace (test teardown, `appliance` cleanup). The
    namespace itself lives on while conmon or containers still run in it, and is freed
    by the kernel, with the overlay mounts in it, when the last of them exits."""
    ns_dir, pin, inode_file = _pin_paths(state_dir)
    mounts = mount_points()
    if str(pin) in mounts:
        syscalls.umount2(pin, syscalls.MNT_DETACH)
    if str(ns_dir) in mounts:
        syscalls.umount2(ns_dir, syscalls.MNT_DETACH)
    inode_file.unlink(missing_ok=True)
