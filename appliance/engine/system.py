"""Facts about this node for `docker info` and `docker version`."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass


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


def read_host_facts(node_id: str, node_name: str, data_root: str, runtime_path: str) -> HostFacts:
    name, version = _os_release()
    machine = platform.machine()
    return HostFacts(node_id=node_id, node_name=node_name, ncpu=os.cpu_count() or 1, mem_total=_mem_total(),
                     kernel=platform.release(), operating_system=name, os_version=version,
                     architecture={"x86_64": "x86_64", "aarch64": "aarch64"}.get(machine, machine),
                     data_root=data_root, runtime_name=os.path.basename(runtime_path),
                     runtime_path=runtime_path, started=time.time())
