"""What the node keeps: frozen-in-shape dataclasses, every top-level record with owner node and tenant.

These are the engine's vocabulary, not Docker's JSON: api/ translates both ways.
Times are integer nanoseconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TENANT = "default"


@dataclass
class HealthConfig:
    """Docker's Config.Healthcheck. Durations in ns; 0 means dockerd's default."""

    test: list[str] = field(default_factory=list)  # ["CMD", ...] | ["CMD-SHELL", cmd] | ["NONE"]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


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
    healthcheck: HealthConfig | None = None  # the image's merged with the container's


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
class PortBindingSpec:
    """One HostConfig.PortBindings target: container port "80/tcp" -> host ip, host port ("": any)."""

    port: str
    host_ip: str = ""
    host_port: str = ""


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
    port_bindings: list[PortBindingSpec] = field(default_factory=list)  # -p
    publish_all_ports: bool = False  # -P: every exposed port on a free host port
    dns: list[str] = field(default_factory=list)  # --dns
    dns_search: list[str] = field(default_factory=list)  # --dns-search
    dns_options: list[str] = field(default_factory=list)  # --dns-option
    extra_hosts: list[str] = field(default_factory=list)  # --add-host "name:ip"
    init: bool | None = None  # --init: docker-init (tini) as PID 1


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
class HealthResult:
    """One probe run (State.Health.Log entry)."""

    start: int  # ns since the epoch
    end: int
    exit_code: int
    output: str


@dataclass
class HealthState:
    status: str = "starting"  # starting | healthy | unhealthy
    failing_streak: int = 0
    log: list[HealthResult] = field(default_factory=list)  # the last five probes


# A container with a process (or about to get one again) is "live": running, paused (frozen)
# or restarting (between a policy restart's exit and its next start). Docker reports all three
# with State.Running true.
LIVE_STATUSES = ("running", "paused", "restarting")


@dataclass
class ContainerState:
    status: str = "created"  # created | running | paused | restarting | exited | removing | dead
    pid: int = 0
    conmon_pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    started_at: int = 0
    finished_at: int = 0
    error: str = ""
    manually_stopped: bool = False  # stop/kill asked for the last exit: unless-stopped stays down
    health: HealthState | None = None


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
    """A user-defined or built-in network; its endpoints are EndpointRecords (txn.endpoints)."""

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
    user_subnet: bool = False  # the subnet was given (--subnet): only then may endpoints ask for --ip
    bridge: str = ""  # the bridge interface in the node's namespace
    mtu: int = 1500


@dataclass
class EndpointRecord:
    """One container's membership of one network (key "<container id>/<network id>").

    The request (aliases, --ip) is kept from create or connect until the container is removed or
    disconnected; the address and wiring fields are set while the container runs (the address
    is then also leased in ip_leases, in the same transaction) and cleared when it stops.
    """

    container_id: str
    network_id: str
    node: str
    tenant: str
    order: int = 0  # connection order: eth<N> and which network carries the default route
    aliases: list[str] = field(default_factory=list)
    requested_ip: str = ""  # --ip
    endpoint_id: str = ""
    ip: str = ""
    prefix_len: int = 0
    gateway: str = ""
    mac: str = ""
    ifname: str = ""  # inside the container
    host_ifname: str = ""  # the node's end of the veth
    dns_names: list[str] = field(default_factory=list)


@dataclass
class PublishedPort:
    proto: str
    container_port: int
    host_ip: str
    host_port: int


@dataclass
class SandboxRecord:
    """A running container's network namespace (key: container id)."""

    container_id: str
    node: str
    tenant: str
    sandbox_id: str
    netns: str  # the pin, e.g. DATA/netns/<id>
    hostname: str = ""
    ports: list[PublishedPort] = field(default_factory=list)
    none: bool = False  # --network none: loopback only
