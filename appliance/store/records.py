"""What the node keeps: frozen-in-shape dataclasses, every top-level record with owner node and tenant.

These are the engine's vocabulary, not Docker's JSON: api/ translates both ways.
Times are integer nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TENANT = "default"


@dataclass
class ContainerConfig:
    """The image-independent part of a container's configuration (Docker's Config)."""

    image: str = ""
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str = ""
    stop_timeout: int | None = None


@dataclass
class MountRequest:
    """One --mount as the client gave it (HostConfig.Mounts)."""

    type: str = "volume"  # volume | bind | tmpfs
    source: str = ""
    target: str = ""
    read_only: bool = False
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


@dataclass
class HostConfig:
    """The host-dependent part (Docker's HostConfig) that this node honours."""

    binds: list[str] = field(default_factory=list)
    mounts: list[MountRequest] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    pids_limit: int = 0
    readonly_rootfs: bool = False
    auto_remove: bool = False
    restart_policy: str = "no"
    restart_max_retries: int = 0
    network_mode: str = "default"
    log_type: str = "k8s-file"
    log_max_size: int = 0  # bytes per log file before rotation; 0: unbounded (--log-opt max-size)
    log_max_file: int = 1  # log files kept, the live one included (--log-opt max-file)
    console_size: tuple[int, int] = (0, 0)  # rows, columns of the client's terminal at create


@dataclass
class MountPoint:
    """A resolved mount as inspect's Mounts shows it."""

    type: str  # volume | bind | tmpfs
    destination: str
    source: str = ""
    name: str = ""
    rw: bool = True
    mode: str = ""
    options: str = ""  # tmpfs options


@dataclass
class ContainerState:
    status: str = "created"  # created | running | exited | removing | dead
    pid: int = 0
    conmon_pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: int = 0
    finished_at: int = 0
    error: str = ""


@dataclass
class ContainerRecord:
    id: str
    name: str
    node: str
    tenant: str
    created: int
    image_id: str
    config: ContainerConfig
    host_config: HostConfig
    path: str = ""
    args: list[str] = field(default_factory=list)
    mounts: list[MountPoint] = field(default_factory=list)
    state: ContainerState = field(default_factory=ContainerState)
    restart_count: int = 0


@dataclass
class ImageRecord:
    id: str  # "sha256:<hex>" of config_json
    node: str
    tenant: str
    config_json: bytes
    created: int  # when this node stored it
    size: int = 0
    parent: str = ""


@dataclass
class VolumeRecord:
    name: str
    node: str
    tenant: str
    created: int
    mountpoint: str
    driver: str = "local"
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False


@dataclass
class NetworkRecord:
    """A user-defined or built-in network; endpoints live in the container records' network list."""

    id: str
    name: str
    node: str
    tenant: str
    created: int
    driver: str = "bridge"
    subnet: str = ""  # CIDR
    gateway: str = ""
    ip_range: str = ""
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    builtin: bool = False  # bridge / none / host: cannot be removed
