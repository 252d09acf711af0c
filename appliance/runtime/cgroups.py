"""cgroup v1 bookkeeping for containers: usage figures and removal of their directories.

crun creates the container's cgroup at cgroupsPath in every v1 hierarchy and removes only
that leaf on delete (and not always: a leaf it could not remove stays); parents such as
/appliance/<node> are ours to remove. Reads of cgroupfs files are served by the kernel
from memory, so they are done directly even from async code.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from appliance.runtime.mountinfo import read_mountinfo

CGROUP_ROOT = Path("/sys/fs/cgroup")


def v1_hierarchies() -> list[Path]:
    """Mount points of the v1 hierarchies (cpu, memory, pids, name=systemd, ...)."""
    return sorted(Path(m.mount_point) for m in read_mountinfo()
                  if m.fstype == "cgroup" and m.mount_point.startswith(str(CGROUP_ROOT) + "/"))


def _dir(hierarchy: str, cgroup_path: str) -> Path:
    return CGROUP_ROOT / hierarchy / cgroup_path.strip("/")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    if text is None or not text.strip():
        return None
    value = text.split()[0]
    return None if value == "max" else int(value)


def _kv(path: Path) -> dict[str, int]:
    out = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


@dataclass(frozen=True, slots=True)
class BlkioEntry:
    """One `MAJ:MIN Op value` line of a blkio stat file (op as the kernel spells it: Read,
    Write, Sync, Async, Discard, Total)."""

    major: int
    minor: int
    op: str
    value: int


def parse_blkio(text: str) -> tuple[BlkioEntry, ...]:
    """blkio.throttle.io_service_bytes / io_serviced: per-device lines; the closing
    `Total N` line (no device) is dropped, as containerd's v1 reader drops it."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        dev, op, value = fields
        major, sep, minor = dev.partition(":")
        if not sep or not (major.isdigit() and minor.isdigit() and value.isdigit()):
            continue
        out.append(BlkioEntry(int(major), int(minor), op, int(value)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """What `docker stats` needs from one container's cgroups (None: not available)."""

    memory_usage: int | None
    memory_limit: int | None
    memory_max_usage: int | None
    memory_failcnt: int | None
    memory_stat: dict[str, int] = field(default_factory=dict)
    cpu_usage_ns: int | None = None
    cpu_percpu_ns: tuple[int, ...] = ()
    cpu_user_ns: int | None = None      # cpuacct.stat, converted from USER_HZ ticks
    cpu_system_ns: int | None = None
    cpu_throttling: dict[str, int] = field(default_factory=dict)  # nr_periods, nr_throttled, throttled_time
    pids_current: int | None = None
    pids_limit: int | None = None        # None: unlimited
    blkio_service_bytes: tuple[BlkioEntry, ...] = ()  # blkio.throttle.io_service_bytes
    blkio_serviced: tuple[BlkioEntry, ...] = ()       # blkio.throttle.io_serviced


def read_stats(cgroup_path: str) -> CgroupStats:
    mem = _dir("memory", cgroup_path)
    acct = _dir("cpuacct", cgroup_path)
    pids = _dir("pids", cgroup_path)
    blkio = _dir("blkio", cgroup_path)
    percpu = tuple(int(x) for x in (_read(acct / "cpuacct.usage_percpu") or "").split())
    ticks = _kv(acct / "cpuacct.stat")
    hz_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return CgroupStats(
        memory_usage=_int(mem / "memory.usage_in_bytes"),
        memory_limit=_int(mem / "memory.limit_in_bytes"),
        memory_max_usage=_int(mem / "memory.max_usage_in_bytes"),
        memory_failcnt=_int(mem / "memory.failcnt"),
        memory_stat=_kv(mem / "memory.stat"),
        cpu_usage_ns=_int(acct / "cpuacct.usage"),
        cpu_percpu_ns=percpu,
        cpu_user_ns=ticks["user"] * hz_ns if "user" in ticks else None,
        cpu_system_ns=ticks["system"] * hz_ns if "system" in ticks else None,
        cpu_throttling=_kv(_dir("cpu", cgroup_path) / "cpu.stat"),
        pids_current=_int(pids / "pids.current"),
        pids_limit=_int(pids / "pids.max"),
        blkio_service_bytes=parse_blkio(_read(blkio / "blkio.throttle.io_service_bytes") or ""),
        blkio_serviced=parse_blkio(_read(blkio / "blkio.throttle.io_serviced") or ""),
    )


def container_cgroup(config_json: Path) -> str | None:
    """The cgroupsPath of the OCI bundle whose config.json this is; None without one (the
    container has no run: never started, or cleaned up)."""
    try:
        return json.loads(Path(config_json).read_bytes())["linux"]["cgroupsPath"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def procs(cgroup_path: str, hierarchy: str = "pids") -> list[int]:
    """Pids of the processes in cgroup_path and the cgroups below it (what `docker top`
    shows: the container's init, its children and exec'd processes), sorted."""
    top = _dir(hierarchy, cgroup_path)
    found: set[int] = set()
    for root, _, _ in os.walk(top):
        for line in (_read(Path(root) / "cgroup.procs") or "").split():
            if line.isdigit():
                found.add(int(line))
    return sorted(found)


def children(parent: str) -> set[str]:
    """Names of the cgroups directly under parent, in any v1 hierarchy."""
    names: set[str] = set()
    for h in v1_hierarchies():
        d = h / parent.strip("/")
        try:
            names.update(e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            pass
    return names


def remove(cgroup_path: str) -> list[Path]:
    """rmdir cgroup_path and any cgroups below it in every v1 hierarchy, deepest first.

    Returns the directories that could not be removed because tasks are still in them
    (EBUSY); killed tasks can linger a moment, so callers retry. A cgroup dir holds only
    kernel files, so rmdir (never a recursive delete) is the way to remove one.
    """
    if cgroup_path.strip("/") == "":
        raise ValueError("refusing to remove the root cgroup")
    busy: list[Path] = []
    for h in v1_hierarchies():
        top = h / cgroup_path.strip("/")
        if not top.is_dir():
            continue
        dirs = [Path(root) for root, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                busy.append(d)
    return busy
