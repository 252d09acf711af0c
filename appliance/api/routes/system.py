"""/_ping, /version, /info, /events."""

from __future__ import annotations

import json
import os
import platform
import time
import weakref

from quart import Blueprint, Response, request

from ...engine.events import EventFilter
from ...errors import InvalidParameter
from .cluster import info_labels, info_section
from ..jsonfields import parse_filters
from ..timefmt import parse_unix, rfc3339
from ..version import API_VERSION, ENGINE_VERSION, MIN_API_VERSION

# What `docker logs` offers here is json-file's contract (tail, since, timestamps, follow); conmon
# writes it as k8s-file on disk. Clients key on the name: docker-py's run() only reads the output
# of `json-file` and `journald` containers.
LOG_DRIVER = "json-file"

_PING_HEADERS = {"Api-Version": API_VERSION, "Ostype": "linux", "Docker-Experimental": "false",
                 "Builder-Version": "1", "Swarm": "inactive",
                 "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def blueprint(engine) -> Blueprint:
    bp = Blueprint("system", __name__)
    facts = engine.facts

    @bp.route("/_ping", methods=["GET", "HEAD"])
    async def ping():
        body = b"" if request.method == "HEAD" else b"OK"
        resp = Response(body, content_type="text/plain; charset=utf-8", headers=_PING_HEADERS)
        if request.method == "HEAD":  # dockerd's HEAD answer: no body, Content-Length 0
            resp.headers["Content-Length"] = "0"
        return resp

    @bp.get("/version")
    async def version():
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "appliance",
                   "GoVersion": f"python{platform.python_version()}", "Os": "linux", "Arch": _arch(facts),
                   "KernelVersion": facts.kernel, "BuildTime": "", "Experimental": "false"}
        body = {"Platform": {"Name": "appliance"},
                "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
                "Version": ENGINE_VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "appliance", "GoVersion": f"python{platform.python_version()}", "Os": "linux",
                "Arch": _arch(facts), "KernelVersion": facts.kernel, "BuildTime": ""}
        return _json(body)

    @bp.get("/info")
    async def info():
        counts = engine.containers.counts()
        body = {
            "ID": facts.node_id, "Containers": sum(counts.values()), "ContainersRunning": counts["running"],
            "ContainersPaused": counts["paused"], "ContainersStopped": counts["stopped"],
            "Images": len(engine.images.list_images()), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", facts.backing_fs], ["Supports d_type", "true"],
                             ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                             ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["none"], "Authorization": None,
                        "Log": [LOG_DRIVER]},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": False, "PidsLimit": True, "IPv4Forwarding": False,
            "Debug": False, "NFd": _nfd(), "OomKillDisable": False, "NGoroutines": 0,
            "SystemTime": rfc3339(time.time_ns()), "LoggingDriver": LOG_DRIVER, "CgroupDriver": "cgroupfs",
            "CgroupVersion": facts.cgroup_version, "NEventsListener": engine.events.listeners,
            "KernelVersion": facts.kernel,
            "OperatingSystem": facts.operating_system, "OSVersion": facts.os_version, "OSType": "linux",
            "Architecture": facts.architecture, "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": {},
                               "Mirrors": []},
            "NCPU": facts.ncpu, "MemTotal": facts.mem_total, "DockerRootDir": facts.data_root,
            "Name": facts.node_name, "Labels": [f"appliance.node={facts.node_name}", *info_labels(engine.cluster)], "ExperimentalBuild": False,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {facts.runtime_name: {"path": facts.runtime_path}},
            "DefaultRuntime": facts.runtime_name,
            "Cluster": info_section(engine.cluster),
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "tini",
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=userns", "name=no-new-privileges"],
            "Warnings": [],
        }
        return _json(body)

    @bp.get("/events")
    async def events():
        # Like dockerd, no check of the filter keys here: a key events do not know is ignored.
        filt = EventFilter.from_filters(parse_filters(request.args.get("filters")))
        since_arg, until_arg = request.args.get("since", ""), request.args.get("until", "")
        since, until = parse_unix(since_arg), parse_unix(until_arg)
        if until is not None and until < (since or 0):
            raise InvalidParameter(f"`since` time ({since_arg}) cannot be after `until` time ({until_arg})")
        # Subscribe before the response starts, so an event right after the headers is never missed.
        subscription = engine.events.subscribe(filt, since, until)

        async def body():
            async for ev in subscription.events():
                yield json.dumps(_event_json(ev)).encode() + b"\n"

        stream = body()
        weakref.finalize(stream, subscription.close)  # a response that never starts still unsubscribes
        return Response(stream, content_type="application/json")

    return bp


def _event_json(ev) -> dict:
    out = {"Type": ev.type, "Action": ev.action, "Actor": {"ID": ev.actor_id, "Attributes": ev.attributes},
           "scope": ev.scope, "time": ev.time_nano // 1_000_000_000, "timeNano": ev.time_nano}
    if ev.type in ("container", "image"):  # the pre-1.22 fields the CLI still reads for these types
        out.update(status=ev.action, id=ev.actor_id, **({"from": ev.attributes["image"]}
                                                         if "image" in ev.attributes else {}))
    return out


def _arch(facts) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(facts.architecture, facts.architecture)


def _nfd() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _json(value) -> Response:
    return Response(json.dumps(value), content_type="application/json")
