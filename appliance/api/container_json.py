"""Docker's container JSON <-> engine records. Docker shapes live here and nowhere else."""

from __future__ import annotations

import re
import shlex
import time

from ..engine.containers import ResourceUpdate
from ..errors import InvalidParameter
from ..store.records import (
    LIVE_STATUSES, ContainerConfig, ContainerRecord, HealthConfig, HealthState, HostConfig, MountRequest,
)
from ..engine.networks import ContainerNetworks
from .network_json import network_settings, parse_port_bindings, ps_ports
from .jsonfields import get_bool, get_dict, get_int, get_str, get_str_list, get_str_map
from .timefmt import human_duration, rfc3339

_C, _H = "Config", "HostConfig"


def parse_create(body: dict) -> tuple[ContainerConfig, HostConfig]:
    host = get_dict(body, "HostConfig", "ContainerConfigWrapper")
    image = get_str(body, "Image", _C)
    if not image:
        raise InvalidParameter("No image was specified")
    config = ContainerConfig(
        image=image,
        cmd=get_str_list(body, "Cmd", _C),
        entrypoint=get_str_list(body, "Entrypoint", _C),
        env=get_str_list(body, "Env", _C) or [],
        working_dir=get_str(body, "WorkingDir", _C),
        user=get_str(body, "User", _C),
        labels=get_str_map(body, "Labels", _C),
        hostname=get_str(body, "Hostname", _C),
        domainname=get_str(body, "Domainname", _C),
        tty=get_bool(body, "Tty", _C),
        open_stdin=get_bool(body, "OpenStdin", _C),
        stdin_once=get_bool(body, "StdinOnce", _C),
        attach_stdin=get_bool(body, "AttachStdin", _C),
        attach_stdout=get_bool(body, "AttachStdout", _C),
        attach_stderr=get_bool(body, "AttachStderr", _C),
        exposed_ports=sorted(get_dict(body, "ExposedPorts", _C)),
        volumes=sorted(get_dict(body, "Volumes", _C)),
        stop_signal=get_str(body, "StopSignal", _C),
        stop_timeout=get_int(body, "StopTimeout", _C, default=-2) if body.get("StopTimeout") is not None else None,
        healthcheck=_healthcheck(get_dict(body, "Healthcheck", _C)) if body.get("Healthcheck") is not None else None,
    )
    if config.working_dir and not config.working_dir.startswith("/"):
        raise InvalidParameter(f"the working directory '{config.working_dir}' is invalid, it needs to be an absolute path")
    for item in config.env:
        if item.startswith("="):
            raise InvalidParameter(f"invalid environment variable: {item}")
    restart = get_dict(host, "RestartPolicy", _H)
    log_config = get_dict(host, "LogConfig", _H)
    if get_str(log_config, "Type", "LogConfig") not in ("", "json-file", "k8s-file", "local"):
        raise InvalidParameter(f"logging driver {log_config['Type']} is not supported by this node")
    log_max_size, log_max_file = _log_opts(get_str_map(log_config, "Config", "LogConfig"))
    pids = get_int(host, "PidsLimit", _H) if host.get("PidsLimit") is not None else 0
    hc = HostConfig(
        binds=get_str_list(host, "Binds", _H) or [],
        mounts=[_mount(m) for m in (host.get("Mounts") or [])],
        tmpfs=get_str_map(host, "Tmpfs", _H),
        memory=get_int(host, "Memory", _H),
        memory_swap=get_int(host, "MemorySwap", _H),
        nano_cpus=get_int(host, "NanoCpus", _H),
        cpu_shares=get_int(host, "CpuShares", _H),
        cpu_period=get_int(host, "CpuPeriod", _H),
        cpu_quota=get_int(host, "CpuQuota", _H),
        pids_limit=pids,
        readonly_rootfs=get_bool(host, "ReadonlyRootfs", _H),
        auto_remove=get_bool(host, "AutoRemove", _H),
        restart_policy=get_str(restart, "Name", "RestartPolicy") or "no",
        restart_max_retries=get_int(restart, "MaximumRetryCount", "RestartPolicy"),
        network_mode=get_str(host, "NetworkMode", _H) or "default",
        port_bindings=parse_port_bindings(host),
        publish_all_ports=get_bool(host, "PublishAllPorts", _H),
        dns=get_str_list(host, "Dns", _H) or [],
        dns_search=get_str_list(host, "DnsSearch", _H) or [],
        dns_options=get_str_list(host, "DnsOptions", _H) or [],
        extra_hosts=get_str_list(host, "ExtraHosts", _H) or [],
        console_size=_console_size(host.get("ConsoleSize")),
        log_max_size=log_max_size,
        log_max_file=log_max_file,
        init=get_bool(host, "Init", _H) if host.get("Init") is not None else None,
    )
    if get_bool(host, "Privileged", _H):
        raise InvalidParameter("privileged containers are not supported: every container is isolated")
    return config, hc


def _healthcheck(h: dict) -> HealthConfig:
    where = "HealthConfig"
    return HealthConfig(test=get_str_list(h, "Test", where) or [], interval=get_int(h, "Interval", where),
                        timeout=get_int(h, "Timeout", where), start_period=get_int(h, "StartPeriod", where),
                        start_interval=get_int(h, "StartInterval", where), retries=get_int(h, "Retries", where))


def parse_update(body: dict) -> ResourceUpdate:
    """POST /containers/{id}/update: Docker's UpdateConfig (Resources plus RestartPolicy)."""
    where = "UpdateConfig"
    restart = get_dict(body, "RestartPolicy", where)
    pids = body.get("PidsLimit")
    return ResourceUpdate(
        memory=get_int(body, "Memory", where), memory_swap=get_int(body, "MemorySwap", where),
        nano_cpus=get_int(body, "NanoCpus", where), cpu_shares=get_int(body, "CpuShares", where),
        cpu_period=get_int(body, "CpuPeriod", where), cpu_quota=get_int(body, "CpuQuota", where),
        pids_limit=get_int(body, "PidsLimit", where) if pids is not None else None,
        restart_policy=get_str(restart, "Name", "RestartPolicy"),
        restart_max_retries=get_int(restart, "MaximumRetryCount", "RestartPolicy"))


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def _log_opts(opts: dict[str, str]) -> tuple[int, int]:
    """json-file's max-size (go-units RAMInBytes) and max-file, with dockerd's messages."""
    for key in opts:
        if key not in ("max-size", "max-file", "compress", "labels", "env", "tag", "mode"):
            raise InvalidParameter(f"unknown log opt '{key}' for json-file log driver")
    size = 0
    if opts.get("max-size"):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgKMG]?[bB]?)", opts["max-size"].strip())
        if not m or m.group(2).lower() not in _UNITS:
            raise InvalidParameter(f"invalid size: '{opts['max-size']}'")
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    files = 1
    if opts.get("max-file"):
        try:
            files = int(opts["max-file"])
        except ValueError:
            raise InvalidParameter(f"invalid value for max-file: {opts['max-file']}") from None
        if files < 1:
            raise InvalidParameter("max-file cannot be less than 1")
        if files > 1 and not size:
            raise InvalidParameter("max-file can only be used with max-size")
    return size, files


def _console_size(value) -> tuple[int, int]:
    if value is None:
        return (0, 0)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and 0 <= v <= 65535 for v in value)):
        raise InvalidParameter("invalid ConsoleSize: want [height, width] of unsigned 16-bit integers")
    return (value[0], value[1])


def _mount(m) -> MountRequest:
    if not isinstance(m, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field HostConfig.Mounts of type mount.Mount")
    tmpfs = get_dict(m, "TmpfsOptions", "Mount")
    return MountRequest(type=get_str(m, "Type", "Mount"), source=get_str(m, "Source", "Mount"),
                        target=get_str(m, "Target", "Mount"), read_only=get_bool(m, "ReadOnly", "Mount"),
                        tmpfs_size=get_int(tmpfs, "SizeBytes", "TmpfsOptions"),
                        tmpfs_mode=get_int(tmpfs, "Mode", "TmpfsOptions"))


def _state(rec: ContainerRecord) -> dict:
    s = rec.state
    out = {"Status": s.status, "Running": s.status in LIVE_STATUSES,
           "Paused": s.status == "paused", "Restarting": s.status == "restarting", "OOMKilled": s.oom_killed,
           "Dead": s.status == "dead", "Pid": s.pid, "ExitCode": s.exit_code, "Error": s.error,
           "StartedAt": rfc3339(s.started_at), "FinishedAt": rfc3339(s.finished_at)}
    if s.health is not None:
        out["Health"] = _health(s.health)
    return out


def _health(h: HealthState) -> dict:
    return {"Status": h.status, "FailingStreak": h.failing_streak,
            "Log": [{"Start": rfc3339(r.start), "End": rfc3339(r.end), "ExitCode": r.exit_code,
                     "Output": r.output} for r in h.log]}


def _healthcheck_json(h: HealthConfig) -> dict:
    out: dict = {"Test": h.test}
    for key, value in (("Interval", h.interval), ("Timeout", h.timeout), ("StartPeriod", h.start_period),
                       ("StartInterval", h.start_interval), ("Retries", h.retries)):
        if value:
            out[key] = value
    return out


def config_json(rec: ContainerRecord) -> dict:
    c = rec.config
    out = {"Hostname": c.hostname, "Domainname": c.domainname, "User": c.user,
           "AttachStdin": c.attach_stdin, "AttachStdout": c.attach_stdout, "AttachStderr": c.attach_stderr,
           "Tty": c.tty, "OpenStdin": c.open_stdin, "StdinOnce": c.stdin_once, "Env": c.env,
           "Cmd": c.cmd, "Image": c.image, "Volumes": {v: {} for v in c.volumes} or None,
           "WorkingDir": c.working_dir, "Entrypoint": c.entrypoint, "OnBuild": None, "Labels": c.labels}
    if c.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in c.exposed_ports}
    if c.stop_signal:
        out["StopSignal"] = c.stop_signal
    if c.stop_timeout is not None:
        out["StopTimeout"] = c.stop_timeout
    if c.healthcheck is not None:
        out["Healthcheck"] = _healthcheck_json(c.healthcheck)
    return out


def host_config_json(h: HostConfig) -> dict:
    # conmon's k8s-file log reads back exactly like dockerd's json-file (docker logs, docker-py
    # run() output), so clients are told the driver whose behaviour they get.
    return {"Binds": h.binds or None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": _log_config(h)},
            "NetworkMode": h.network_mode, "PortBindings": _port_bindings_json(h),
            "RestartPolicy": {"Name": h.restart_policy, "MaximumRetryCount": h.restart_max_retries},
            "AutoRemove": h.auto_remove, "ConsoleSize": list(h.console_size), "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None,
            "Dns": h.dns, "DnsOptions": h.dns_options, "DnsSearch": h.dns_search, "ExtraHosts": h.extra_hosts or None, "GroupAdd": None, "IpcMode": "private",
            "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
            "PublishAllPorts": h.publish_all_ports, "ReadonlyRootfs": h.readonly_rootfs, "SecurityOpt": None,
            "Tmpfs": h.tmpfs or None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "crun",
            "Isolation": "", "CpuShares": h.cpu_shares, "Memory": h.memory, "NanoCpus": h.nano_cpus,
            "CgroupParent": "", "BlkioWeight": 0, "CpuPeriod": h.cpu_period, "CpuQuota": h.cpu_quota,
            "CpusetCpus": "", "CpusetMems": "", "Devices": [], "MemoryReservation": 0,
            "MemorySwap": h.memory_swap, "MemorySwappiness": None, "OomKillDisable": False,
            "PidsLimit": h.pids_limit or None, "Ulimits": [],
            "Mounts": [{"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
                       for m in h.mounts] or None,
            **({"Init": h.init} if h.init is not None else {})}


def _port_bindings_json(h: HostConfig) -> dict:
    out: dict[str, list[dict]] = {}
    for b in h.port_bindings:
        out.setdefault(b.port, []).append({"HostIp": b.host_ip, "HostPort": b.host_port})
    return out


def _log_config(h: HostConfig) -> dict:
    out = {}
    if h.log_max_size:
        out["max-size"] = str(h.log_max_size)
    if h.log_max_file > 1:
        out["max-file"] = str(h.log_max_file)
    return out


def mounts_json(rec: ContainerRecord) -> list[dict]:
    out = []
    for m in rec.mounts:
        item = {"Type": m.type, "Source": m.source, "Destination": m.destination, "Mode": m.mode,
                "RW": m.rw, "Propagation": "rprivate" if m.type == "bind" else ""}
        if m.type == "volume":
            item = {"Type": "volume", "Name": m.name, "Source": m.source, "Destination": m.destination,
                    "Driver": "local", "Mode": m.mode, "RW": m.rw, "Propagation": ""}
        elif m.type == "tmpfs":
            item = {"Type": "tmpfs", "Source": "", "Destination": m.destination, "Mode": m.options,
                    "RW": True, "Propagation": ""}
        out.append(item)
    return out


def _no_network_settings() -> dict:
    return network_settings(ContainerNetworks(sandbox=None, network_mode="none"))


def inspect_json(rec: ContainerRecord, log_path: str, networks: ContainerNetworks | None = None,
                 files: dict[str, str] | None = None) -> dict:
    """files: the node-written /etc/hosts, /etc/hostname, /etc/resolv.conf of the container."""
    files = files or {}
    settings = network_settings(networks, rec.config.exposed_ports) if networks else _no_network_settings()
    return {
        "Id": rec.id, "Created": rfc3339(rec.created), "Path": rec.path, "Args": rec.args,
        "State": _state(rec), "Image": rec.image_id, "ResolvConfPath": files.get("/etc/resolv.conf", ""),
        "HostnamePath": files.get("/etc/hostname", ""), "HostsPath": files.get("/etc/hosts", ""),
        "LogPath": log_path, "Name": "/" + rec.name, "RestartCount": rec.restart_count,
        "Driver": "overlay", "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None, "HostConfig": host_config_json(rec.host_config),
        "GraphDriver": {"Name": "overlay", "Data": None}, "Mounts": mounts_json(rec),
        "Config": config_json(rec), "NetworkSettings": settings,
        "Node": {"Name": rec.node}, "Tenant": rec.tenant,
    }


def status_text(rec: ContainerRecord, now_ns: int | None = None) -> str:
    """docker ps STATUS, as dockerd's State.String()."""
    now = now_ns or time.time_ns()
    s = rec.state
    if s.status == "paused":
        return f"Up {human_duration((now - s.started_at) / 1e9)} (Paused)"
    if s.status == "restarting":
        return f"Restarting ({s.exit_code}) {human_duration((now - s.finished_at) / 1e9)} ago"
    if s.status == "running":
        up = "Up " + human_duration((now - s.started_at) / 1e9)
        if s.health is not None:
            return f"{up} (health: starting)" if s.health.status == "starting" else f"{up} ({s.health.status})"
        return up
    if s.status == "removing":
        return "Removal In Progress"
    if s.status == "exited" and s.finished_at:
        return f"Exited ({s.exit_code}) {human_duration((now - s.finished_at) / 1e9)} ago"
    if s.status == "dead":
        return "Dead"
    return "Created"


def summary_json(rec: ContainerRecord, networks: ContainerNetworks | None = None) -> dict:
    command = " ".join(shlex.quote(a) if " " in a else a for a in [rec.path, *rec.args])
    settings = network_settings(networks, rec.config.exposed_ports) if networks else _no_network_settings()
    return {"Id": rec.id, "Names": ["/" + rec.name], "Image": rec.config.image, "ImageID": rec.image_id,
            "Command": command, "Created": rec.created // 1_000_000_000,
            "Ports": ps_ports(networks, rec.config.exposed_ports) if networks else [],
            "Labels": rec.config.labels, "State": rec.state.status, "Status": status_text(rec),
            "HostConfig": {"NetworkMode": rec.host_config.network_mode},
            "NetworkSettings": {"Networks": settings["Networks"]}, "Mounts": mounts_json(rec)}
