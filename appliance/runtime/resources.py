"""Live resource updates of a running container (`docker update`): cgroup v1 writes.

Done as runc's fs cgroup manager does them (libcontainer/cgroups/fs), including its error for
a memory limit below current usage (the kernel answers EBUSY when it cannot reclaim enough)
and its write order for memory and memory+swap, whose limits must stay memory <= memsw at
every step. cgroupfs writes are served by the kernel from memory, so they run inline.
"""

from __future__ import annotations

import errno
from pathlib import Path

from appliance.errors import SystemError_
from appliance.runtime.cgroups import CGROUP_ROOT
from appliance.runtime.spec import CPU_PERIOD_FOR_NANO_CPUS, Resources


class MemoryBelowUsage(SystemError_):
    """The new memory limit is below what the container uses and cannot be reclaimed."""


def _dir(hierarchy: str, cgroup_path: str) -> Path:
    return CGROUP_ROOT / hierarchy / cgroup_path.strip("/")


def _write(path: Path, value: int | str) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _set_memory(mem: Path, limit: int) -> None:
    try:
        _write(mem / "memory.limit_in_bytes", limit)
    except OSError as e:
        if e.errno == errno.EBUSY:
            usage = _read_int(mem / "memory.usage_in_bytes")
            peak = _read_int(mem / "memory.max_usage_in_bytes")
            raise MemoryBelowUsage(f"unable to set memory limit to {limit} (current usage: {usage}, "
                                   f"peak usage: {peak})") from None
        raise SystemError_(f"unable to set memory limit to {limit}: {e.strerror}") from None


def _set_swap(mem: Path, limit: int) -> None:
    path = mem / "memory.memsw.limit_in_bytes"
    if not path.exists():  # no swap accounting on this kernel: nothing to limit
        return
    try:
        _write(path, limit)
    except OSError as e:
        raise SystemError_(f"unable to set memory+swap limit to {limit}: {e.strerror}") from None


def memory_swap_limit(res: Resources) -> int:
    """memory.memsw.limit_in_bytes for res (the OCI swap value spec.py writes at create)."""
    if res.memory_swap == -1:
        return -1
    if res.memory_swap == 0:
        return 2 * res.memory if res.memory > 0 else -1
    return res.memory_swap


def apply(cgroup_path: str, res: Resources) -> None:
    """Make the container's cgroups say res (its full, merged resources)."""
    mem = _dir("memory", cgroup_path)
    if mem.is_dir():
        memory = res.memory if res.memory > 0 else -1
        swap = memory_swap_limit(res)
        current = _read_int(mem / "memory.limit_in_bytes")
        if swap == -1 or (memory != -1 and current < swap):
            # growing: memsw first, so memory never exceeds it
            _set_swap(mem, swap)
            _set_memory(mem, memory)
        else:
            _set_memory(mem, memory)
            _set_swap(mem, swap)
    cpu = _dir("cpu", cgroup_path)
    if cpu.is_dir():
        if res.cpu_shares:
            _write(cpu / "cpu.shares", res.cpu_shares)
        if res.nano_cpus:
            period, quota = CPU_PERIOD_FOR_NANO_CPUS, res.nano_cpus * CPU_PERIOD_FOR_NANO_CPUS // 1_000_000_000
        else:
            period, quota = res.cpu_period, res.cpu_quota
        if period:
            _write(cpu / "cpu.cfs_period_us", period)
        if quota:
            _write(cpu / "cpu.cfs_quota_us", quota)
    pids = _dir("pids", cgroup_path)
    if pids.is_dir():
        _write(pids / "pids.max", res.pids_limit if res.pids_limit > 0 else "max")
