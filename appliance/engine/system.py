"""Facts about this node for `docker info` and `docker version`."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from ..runtime.mountinfo import read_mountinfo

# statfs magic names as dockerd's `Backing Filesystem` shows them (moby daemon/graphdriver/driver_linux.go).
_BACKING_FS = {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs", "overlay": "overlayfs"}


@dataclass(frozen=True)
class HostFacts:
    node_id: str
    node_name: str
    ncpu: int
    mem_total: int
    kernel: str
    operating_system: str
    os_version: str
    architecture: str
    data_root: str
    runtime_name: str
    runtime_path: str
    started: float
    backing_fs: str = "extfs"
    cgroup_version: str = "1"


def _os_release() -> tuple[str, str]:
    fields = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                fields[key] = value.strip('"')
    except OSError:
        pass
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _ncpu() -> int:
    """CPUs this process may run on, as dockerd's sysinfo.NumCPU (sched_getaffinity), like nproc."""
    try:
        return len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    except OSError:
        return os.cpu_count() or 1


def _backing_fs(path: str) -> str:
    """Filesystem type of the mount holding path (deepest mount point above it)."""
    real = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        mounts = read_mountinfo()
    except OSError:
        return fstype
    for m in mounts:
        mp = m.mount_point.rstrip("/") or "/"
        if (real == mp or real.startswith(mp + "/") or mp == "/") and len(mp) >= len(best):
            best, fstype = mp, m.fstype
    return _BACKING_FS.get(fstype, fstype)


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def read_host_facts(node_id: str, node_name: str, data_root: str, runtime_path: str) -> HostFacts:
    name, version = _os_release()
    machine = platform.machine()
    return HostFacts(node_id=node_id, node_name=node_name, ncpu=_ncpu(), mem_total=_mem_total(),
                     kernel=platform.release(), operating_system=name, os_version=version,
                     architecture={"x86_64": "x86_64", "aarch64": "aarch64"}.get(machine, machine),
                     data_root=data_root, runtime_name=os.path.basename(runtime_path),
                     runtime_path=runtime_path, started=time.time(),
                     backing_fs=_backing_fs(data_root), cgroup_version=_cgroup_version())
