"""Per-container root filesystems: an overlay of read-only image layers plus a private upper.

mount(2) through ctypes takes ~0.3 ms where mount(8) takes 4-7 ms. Overlayfs never writes
to lower directories, so layers can be shared by every container of an image; runtimes do
create missing mount points in the rootfs they are given, which is why a container must
never get a layer directory itself.
"""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

from appliance.errors import SystemError_
from appliance.runtime import syscalls
from appliance.runtime.mountinfo import mount_points

# mount(2) copies at most one page of option data; longer lowerdir lists are cut off.
_MAX_MOUNT_DATA = resource.getpagesize() - 1


def _escape(path: Path) -> str:
    # overlayfs splits lowerdir on ':' and option lists on ','; backslash escapes both.
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def overlay_options(lower_dirs: list[Path], upper: Path, work: Path) -> str:
    """The overlay mount data for lower_dirs (topmost first) with upper and work."""
    if not lower_dirs:
        raise SystemError_("an overlay needs at least one lower layer")
    data = "lowerdir={},upperdir={},workdir={}".format(
        ":".join(_escape(p) for p in lower_dirs), _escape(upper), _escape(work))
    if len(data) > _MAX_MOUNT_DATA:
        raise SystemError_(f"too many image layers for one overlay mount ({len(lower_dirs)} layers, "
                           f"{len(data)} bytes of options; the kernel takes {_MAX_MOUNT_DATA})")
    return data


def unsearchable_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to path that uid:gid (no supplementary groups) cannot
    traverse, or None. A user-namespaced container's root is such an unprivileged host
    user, and crun prepares the rootfs as that user."""
    for d in [*reversed(Path(path).parents), Path(path)]:
        try:
            st = d.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return d
    return None


def is_mounted(target: Path) -> bool:
    return str(Path(target)) in mount_points()


def mount_overlay(lower_dirs: list[Path], upper: Path, work: Path, target: Path,
                  *, owner: tuple[int, int] | None = None) -> None:
    """Mount an overlay of lower_dirs (topmost first) at target; creates upper, work, target.

    owner is the (uid, gid) that container root maps to on the host when the container
    has a user namespace. The upper dir must be chowned before mounting: overlayfs caches
    the root inode's attributes at mount time, so a later chown still leaves the container
    root unable to create files in /.
    """
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    upper.chmod(0o755)
    if owner is not None:
        os.chown(upper, *owner)
    if is_mounted(target):
        return  # idempotent: a restarted node re-preparing a container it already mounted
    try:
        syscalls.mount("overlay", target, "overlay", 0, overlay_options(lower_dirs, upper, work))
    except OSError as e:
        raise SystemError_(f"error mounting the container filesystem at {target}: {e.strerror}") from e


def unmount(target: Path) -> None:
    """Unmount target if mounted (all stacked mounts); lazily if something still uses it."""
    while is_mounted(target):
        try:
            syscalls.umount2(target)
        except OSError as e:
            if e.errno == 16:  # EBUSY: a process still has a cwd or fd inside; detach
                syscalls.umount2(target, syscalls.MNT_DETACH)
            elif e.errno in (22, 2):  # EINVAL/ENOENT: gone meanwhile
                return
            else:
                raise SystemError_(f"error unmounting {target}: {e.strerror}") from e


def remove_rootfs(target: Path, upper: Path, work: Path) -> None:
    """Unmount and delete a container's overlay parts. Idempotent; safe on half-made ones."""
    unmount(target)
    if is_mounted(target):
        # Never rmtree through a mount: that would delete whatever is mounted there.
        raise SystemError_(f"{target} is still mounted")
    for d in (target, upper, work):
        shutil.rmtree(d, ignore_errors=True)
