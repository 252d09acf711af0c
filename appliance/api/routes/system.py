"""/_ping, /version, /info, /events."""

from __future__ import annotations

import json
import platform
import sys
import time

from quart import Blueprint, Response, request

from ...engine.events import EventFilter
from ..jsonfields import check_filter_keys, parse_filters
from ..timefmt import parse_unix, rfc3339
from ..version import API_VERSION, ENGINE_VERSION, MIN_API_VERSION

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
        if request.method == "HEAD":
            resp.headers["Content-Length"] = "2"
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
            "Images": len(engine.images.list_images()), "Driver": "overlay",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                             ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["none"], "Authorization": None,
                        "Log": ["k8s-file"]},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": False, "PidsLimit": True, "IPv4Forwarding": False,
            "Debug": False, "NFd": _nfd(), "OomKillDisable": False, "NGoroutines": 0,
            "SystemTime": rfc3339(time.time_ns()), "LoggingDriver": "k8s-file", "CgroupDriver": "cgroupfs",
            "CgroupVersion": "1", "NEventsListener": engine.events.listeners, "KernelVersion": facts.kernel,
            "OperatingSystem": facts.operating_system, "OSVersion": facts.os_version, "OSType": "linux",
            "Architecture": facts.architecture, "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": {},
                               "Mirrors": []},
            "NCPU": facts.ncpu, "MemTotal": facts.mem_total, "DockerRootDir": facts.data_root,
            "Name": facts.node_name, "Labels": [f"appliance.node={facts.node_name}"], "ExperimentalBuild": False,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {facts.runtime_name: {"path": facts.runtime_path}},
            "DefaultRuntime": facts.runtime_name,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "tini",
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=userns", "name=no-new-privileges"],
            "Warnings": [],
        }
        return _json(body)

    @bp.get("/events")
    async def events():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"type", "event", "container", "image", "volume", "label", "network",
                                    "node", "scope", "daemon", "plugin", "config", "secret", "service"})
        filt = EventFilter(types=frozenset(filters.get("type", [])), actions=frozenset(filters.get("event", [])),
                           containers=frozenset(filters.get("container", [])),
                           images=frozenset(filters.get("image", [])),
                           volumes=frozenset(filters.get("volume", [])),
                           labels=frozenset(filters.get("label", [])))
        since = parse_unix(request.args.get("since", ""))
        until = parse_unix(request.args.get("until", ""))
        if since is not None and until is not None and until < since:
            from ...errors import InvalidParameter

            raise InvalidParameter("`since` time must be before `until`")
        stream = engine.events.stream(filt, since, until)

        async def body():
            async for ev in stream:
                yield json.dumps(_event_json(ev)).encode() + b"\n"

        return Response(body(), content_type="application/json")

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
    import os

    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _json(value) -> Response:
    return Response(json.dumps(value), content_type="application/json")
