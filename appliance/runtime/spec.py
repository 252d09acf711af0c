"""What a container is, as frozen data, and the pure builder of its OCI config.json.

Nothing here does I/O: the driver (monitor.py) writes the dict that oci_config() returns.
The defaults are Docker's (moby oci/defaults.go and daemon/oci_linux.go, Engine 28), so a
container run here looks like one run by dockerd from the inside: same capabilities,
masked paths, device allowlist, mounts, seccomp and namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.errors import InvalidParameter

OCI_VERSION = "1.0.2"

DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's 14 default capabilities (moby oci/caps/defaults.go); CapEff a80425fb.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Docker 28's lists; the engine can show them verbatim as HostConfig.MaskedPaths/ReadonlyPaths.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH = "/sbin/docker-init"  # where dockerd puts its init (tini) for --init
CPU_PERIOD_FOR_NANO_CPUS = 100_000  # Docker's fixed period when --cpus is given


@dataclass(frozen=True, slots=True)
class MountSpec:
    """One entry of config.json `mounts`.

    bind:  MountSpec("/data", "/host/dir", "bind", ("rbind", "rw"))
    tmpfs: MountSpec("/run", "tmpfs", "tmpfs", ("nosuid", "nodev", "size=65536k"))
    """

    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ("rbind", "rw")


@dataclass(frozen=True, slots=True)
class IdMap:
    """User namespace: container ids 0..size-1 are host ids host_base..host_base+size-1."""

    host_base: int = 100000
    size: int = 65536


@dataclass(frozen=True, slots=True)
class Resources:
    """Docker's HostConfig resource fields; 0 means unset (no limit)."""

    memory: int = 0            # bytes
    memory_swap: int = 0       # bytes, memory+swap; -1 unlimited; 0 -> 2*memory (Docker)
    nano_cpus: int = 0         # 1e9 = one CPU
    cpu_shares: int = 0
    cpu_period: int = 0        # microseconds
    cpu_quota: int = 0         # microseconds per period
    pids_limit: int = 0        # 0 or -1: unlimited


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything the runtime needs to create one container; the engine fills it."""

    id: str
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    hostname: str = ""
    tty: bool = False
    readonly_rootfs: bool = False
    mounts: tuple[MountSpec, ...] = ()
    resources: Resources = field(default_factory=Resources)
    idmap: IdMap | None = None
    cgroup_path: str = ""          # absolute, e.g. "/appliance/<node>/<id>"
    netns_path: str | None = None  # None: a fresh network namespace with loopback only
    open_stdin: bool = False
    stdin_once: bool = False       # Docker's StdinOnce: the first attach client's EOF closes stdin
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    seccomp_unconfined: bool = False  # --security-opt seccomp=unconfined
    shm_size: int = DEFAULT_SHM_SIZE
    init_binary: str | None = None  # --init: this host binary runs as PID 1 (INIT_PATH, read-only)


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """A process to start in a running container (`docker exec`)."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    tty: bool = False
    open_stdin: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES


def container_env(image_env: tuple[str, ...] | list[str], config_env: tuple[str, ...] | list[str],
                  *, hostname: str, tty: bool) -> tuple[str, ...]:
    """Docker's process environment: PATH default, HOSTNAME, TERM=xterm for a tty,
    then image env overridden key by key by the container's env (daemon/container.go CreateDaemonEnvironment)."""
    merged: dict[str, str] = {}
    order: list[str] = []

    def put(item: str) -> None:
        key = item.split("=", 1)[0]
        if key not in merged:
            order.append(key)
        merged[key] = item

    put("PATH=" + DEFAULT_PATH_ENV)
    put("HOSTNAME=" + hostname)
    if tty:
        put("TERM=xterm")
    for item in (*image_env, *config_env):
        put(item)
    return tuple(merged[k] for k in order)


def needs_sysfs(spec: ContainerSpec) -> bool:
    """Whether the node must mount the container's sysfs (oci_config's sysfs_source)."""
    return spec.idmap is not None and spec.netns_path is not None


def _default_mounts(spec: ContainerSpec, sysfs_source: str | None) -> list[dict]:
    # moby oci/defaults.go, plus daemon/oci_linux.go's /dev/shm size.
    # /sys: a fresh sysfs belongs to the network namespace's owning user namespace, and shows
    # that namespace's devices. In a user namespace joined to a netns owned by the host userns
    # (netns_path set) the kernel refuses crun's sysfs mount (EPERM), and the bind of the host's
    # /sys that runc and podman fall back to shows the machine's interfaces. There the node
    # mounts a sysfs from inside the netns itself (runtime/sysfs.py) and it is bound here.
    if needs_sysfs(spec):
        if sysfs_source is None:
            raise ValueError("a user-namespaced container joining a network namespace needs "
                             "a sysfs mounted in that namespace (sysfs_source)")
        sys_mount = {"destination": "/sys", "type": "bind", "source": sysfs_source,
                     "options": ["bind", "nosuid", "noexec", "nodev", "ro"]}
    else:
        sys_mount = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                     "options": ["nosuid", "noexec", "nodev", "ro"]}
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        sys_mount,
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={spec.shm_size}"]},
    ]


def _is_under(path: str, parent: str) -> bool:
    parent = parent.rstrip("/") or "/"
    return path == parent or path.startswith(parent + "/") or parent == "/"


def _mounts(spec: ContainerSpec, sysfs_source: str | None) -> list[dict]:
    # A user mount replaces a default mount at the same place or above it (a user /dev drops
    # the default /dev, /dev/pts, /dev/shm and /dev/mqueue), as in daemon/oci_linux.go.
    user_dests = [m.destination for m in spec.mounts]
    out = [m for m in _default_mounts(spec, sysfs_source)
           if not any(_is_under(m["destination"], d) for d in user_dests)]
    for m in spec.mounts:
        out.append({"destination": m.destination, "type": m.type, "source": m.source,
                    "options": list(m.options)})
    if spec.init_binary is not None:
        # daemon/oci_linux.go WithMounts: the init is bind-mounted read-only over INIT_PATH
        out.append({"destination": INIT_PATH, "type": "bind", "source": spec.init_binary,
                    "options": ["bind", "ro"]})
    return out


def _device_rules() -> list[dict]:
    # Docker's cgroup allowlist: deny all, then what oci/defaults.go allows plus the devices
    # runc adds for every container (full, tty, ptmx, pts, mknod of anything), and fuse denied.
    def allow(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict:
        rule: dict = {"allow": True, "type": kind, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        return rule

    return [
        {"allow": False, "access": "rwm"},
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", 1, 3),     # null
        allow("c", 1, 5),     # zero
        allow("c", 1, 7),     # full
        allow("c", 1, 8),     # random
        allow("c", 1, 9),     # urandom
        allow("c", 5, 0),     # tty
        allow("c", 5, 1),     # console
        allow("c", 5, 2),     # ptmx
        allow("c", 136, None),  # pts/*
        {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse
    ]


def _cpu(res: Resources) -> dict:
    if res.nano_cpus and (res.cpu_period or res.cpu_quota):
        which = "CPU Period" if res.cpu_period else "CPU Quota"
        raise InvalidParameter(f"Conflicting options: Nano CPUs and {which} cannot both be set")
    cpu: dict = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.nano_cpus:
        cpu["period"] = CPU_PERIOD_FOR_NANO_CPUS
        cpu["quota"] = res.nano_cpus * CPU_PERIOD_FOR_NANO_CPUS // 1_000_000_000
    else:
        if res.cpu_period:
            cpu["period"] = res.cpu_period
        if res.cpu_quota:
            cpu["quota"] = res.cpu_quota
    return cpu


def _resources(res: Resources) -> dict:
    out: dict = {"devices": _device_rules()}
    memory: dict = {}
    if res.memory > 0:
        memory["limit"] = res.memory
        if res.memory_swap == 0:
            memory["swap"] = 2 * res.memory  # Docker: unset swap means as much swap as memory
        elif res.memory_swap == -1:
            memory["swap"] = -1
        else:
            if res.memory_swap < res.memory:
                raise InvalidParameter(
                    "Minimum memoryswap limit should be larger than memory limit, see usage")
            memory["swap"] = res.memory_swap
    if memory:
        out["memory"] = memory
    cpu = _cpu(res)
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit > 0:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _namespaces(spec: ContainerSpec) -> list[dict]:
    network: dict = {"type": "network"}
    if spec.netns_path is not None:
        network["path"] = spec.netns_path
    ns = [{"type": "pid"}, network, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if spec.idmap is not None:
        ns.append({"type": "user"})
    return ns


def oci_process(spec: ContainerSpec | ExecSpec, nofile: tuple[int, int]) -> dict:
    """config.json `process`, also the process.json of an exec (crun exec --process)."""
    if not spec.args:
        raise InvalidParameter("No command specified")
    caps = list(spec.capabilities)
    user: dict = {"uid": spec.uid, "gid": spec.gid}
    if spec.additional_gids:
        user["additionalGids"] = list(spec.additional_gids)
    return {
        "terminal": spec.tty,
        "user": user,
        "args": list(spec.args),
        "env": list(spec.env),
        "cwd": spec.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile[0], "hard": nofile[1]}],
        "noNewPrivileges": True,
    }


def oci_config(spec: ContainerSpec, rootfs: str, seccomp: dict | None,
               nofile: tuple[int, int], *, sysfs_source: str | None = None) -> dict:
    """The OCI runtime config for spec, with its root filesystem at rootfs (absolute).

    seccomp is an OCI linux.seccomp object (seccomp.default_seccomp(caps)) or None for
    unconfined. nofile is (soft, hard) for RLIMIT_NOFILE: it must not exceed the caller's own
    hard limit, because raising a hard limit needs CAP_SYS_RESOURCE, which this node lacks.
    sysfs_source is the sysfs the node mounted in spec.netns_path (runtime/sysfs.py), bound at
    /sys; required when the container gets a user namespace and joins that netns (needs_sysfs).
    """
    if not spec.cgroup_path.startswith("/"):
        raise InvalidParameter(f"cgroup path must be absolute: {spec.cgroup_path!r}")
    process = oci_process(spec, nofile)
    if spec.init_binary is not None:
        process["args"] = [INIT_PATH, "--", *process["args"]]
    linux: dict = {
        "namespaces": _namespaces(spec),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
        "resources": _resources(spec.resources),
        "cgroupsPath": spec.cgroup_path,
        "devices": [],
    }
    if spec.idmap is not None:
        mapping = [{"containerID": 0, "hostID": spec.idmap.host_base, "size": spec.idmap.size}]
        linux["uidMappings"] = mapping
        linux["gidMappings"] = [dict(m) for m in mapping]
    if seccomp is not None:
        linux["seccomp"] = seccomp
    config = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "mounts": _mounts(spec, sysfs_source),
        "linux": linux,
    }
    if spec.hostname:
        config["hostname"] = spec.hostname
    return config
