"""/containers/*: thin handlers over engine.containers."""

from __future__ import annotations

import json
import re

from quart import Blueprint, Response, request

from ...engine.filters import labels_match
from ...engine.logs import LogOptions, read_logs
from ...errors import InvalidParameter
from ...runtime.timestamps import format_rfc3339nano
from ...store.records import LIVE_STATUSES
from .. import container_json
from ..network_json import parse_endpoints_config
from ..framing import MUX_CONTENT_TYPE, RAW_CONTENT_TYPE, encoder
from ..jsonfields import check_filter_keys, parse_filters
from ..timefmt import parse_unix
from ..version import at_least
from .params import api_version, body_json, flag, integer, uint32

_FILTERS = {"status", "name", "label", "id", "ancestor", "exited", "before", "since", "volume", "network",
            "health", "isolation", "is-task", "publish", "expose"}
_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def blueprint(engine) -> Blueprint:
    bp = Blueprint("containers", __name__)
    containers = engine.containers

    @bp.post("/containers/create")
    async def create():
        body = await body_json(allow_empty=False)
        config, host = container_json.parse_create(body)
        endpoints = parse_endpoints_config(body.get("NetworkingConfig"))
        rec, warnings = containers.create(request.args.get("name") or None, config, host,
                                          endpoints=endpoints if engine.networks is not None else None)
        return _json({"Id": rec.id, "Warnings": warnings}, 201)

    @bp.get("/containers/json")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, _FILTERS)
        limit = integer("limit", -1)
        show_all = flag("all") or (limit is not None and limit > 0)
        recs = [r for r in containers.list() if show_all or r.state.status in LIVE_STATUSES]
        recs = [r for r in recs if _matches(engine, r, filters)]
        if limit and limit > 0:
            recs = recs[:limit]
        return _json([container_json.summary_json(r, _networks_of(engine, r)) for r in recs])

    @bp.get("/containers/<ref>/json")
    async def inspect(ref):
        rec, log_path = containers.log_path(ref)
        files = engine.networks.config_files(rec.id) if engine.networks is not None else {}
        return _json(container_json.inspect_json(rec, str(log_path), _networks_of(engine, rec), files))

    @bp.post("/containers/<ref>/start")
    async def start(ref):
        await containers.start(ref)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/stop")
    async def stop(ref):
        await containers.stop(ref, integer("t"), request.args.get("signal") or None)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/restart")
    async def restart(ref):
        await containers.restart(ref, integer("t"), request.args.get("signal") or None)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/kill")
    async def kill(ref):
        await containers.kill(ref, request.args.get("signal") or None)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/pause")
    async def pause(ref):
        await containers.pause(ref)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/unpause")
    async def unpause(ref):
        await containers.unpause(ref)
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/update")
    async def update(ref):
        req = container_json.parse_update(await body_json())
        warnings = await containers.update(ref, req)
        return _json({"Warnings": warnings})

    @bp.post("/containers/<ref>/wait")
    async def wait(ref):
        wait_for = containers.prepare_wait(ref, request.args.get("condition", ""))

        async def body():
            # The headers go out first: the CLI waits for them before it sends /start.
            yield b""
            code = await wait_for()
            yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"

        return Response(body(), content_type="application/json")

    @bp.delete("/containers/<ref>")
    async def remove(ref):
        await containers.remove(ref, force=flag("force"), remove_volumes=flag("v"))
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/rename")
    async def rename(ref):
        containers.rename(ref, request.args.get("name", ""))
        return Response(b"", status=204)

    @bp.post("/containers/<ref>/resize")
    async def resize(ref):
        h, w = uint32("h"), uint32("w")
        await containers.resize(ref, h, w)
        return Response(b"", status=200)

    @bp.post("/containers/prune")
    async def prune():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"until", "label", "label!"})
        until = parse_unix(filters.get("until", [""])[-1]) if filters.get("until") else None

        def keep(rec) -> bool:
            if until is not None and rec.created > until:
                return True
            return not labels_match(rec.config.labels, filters)

        removed = await containers.prune(keep)
        return _json({"ContainersDeleted": removed or None, "SpaceReclaimed": 0})

    @bp.get("/containers/<ref>/logs")
    async def logs(ref):
        stdout, stderr = flag("stdout"), flag("stderr")
        if not (stdout or stderr):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        tail_arg = request.args.get("tail", "all")
        tail = None if tail_arg in ("", "all") else _tail(tail_arg)
        since = parse_unix(request.args.get("since", "")) or 0
        until = parse_unix(request.args.get("until", "")) or 0
        opts = LogOptions(stdout=stdout, stderr=stderr, since=since / 1e9, until=until / 1e9, tail=tail,
                          follow=flag("follow"))
        rec = containers.get(ref)
        timestamps = flag("timestamps")
        encode = encoder(rec.config.tty)
        entries = read_logs(containers, rec.id, opts)

        async def body():
            yield b""
            async for entry in entries:
                data = entry.data
                if timestamps:
                    data = format_rfc3339nano(entry.time_ns, fixed=True).encode() + b" " + data
                yield encode(1 if entry.stream == "stdout" else 2, data)

        mux = not rec.config.tty and at_least(api_version(), "1.42")
        content_type = MUX_CONTENT_TYPE if mux else RAW_CONTENT_TYPE
        return Response(body(), content_type=content_type)

    return bp


def _networks_of(engine, rec):
    return engine.networks.container_networks(rec) if engine.networks is not None else None


def _tail(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for tail: {value!r}") from None
    return max(n, 0) if n >= 0 else None  # negative means all, as dockerd treats it


def _matches(engine, rec, filters: dict[str, list[str]]) -> bool:
    for status in filters.get("status", []):
        if status not in _STATUSES:
            raise InvalidParameter(f"invalid filter 'status={status}'")
    if filters.get("status") and rec.state.status not in filters["status"]:
        return False
    for health in filters.get("health", []):
        if health not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidParameter(f"Unrecognised filter value for health: {health}")
    if filters.get("health"):
        current = rec.state.health.status if rec.state.health is not None else "none"
        if current not in filters["health"]:
            return False
    if filters.get("name") and not any(re.search(n, "/" + rec.name) for n in filters["name"]):
        return False
    if filters.get("id") and not any(rec.id.startswith(i) for i in filters["id"]):
        return False
    if filters.get("label") and not labels_match(rec.config.labels, {"label": filters["label"]}):
        return False
    if filters.get("exited"):
        codes = set()
        for code in filters["exited"]:
            try:
                codes.add(int(code))
            except ValueError:
                raise InvalidParameter(f"invalid filter 'exited={code}'") from None
        if rec.state.status != "exited" or rec.state.exit_code not in codes:
            return False
    if filters.get("ancestor") and not any(engine.images.is_ancestor(a, rec.config.image, rec.image_id)
                                           for a in filters["ancestor"]):
        return False
    if filters.get("volume") and not any(m.name in filters["volume"] or m.destination in filters["volume"]
                                         for m in rec.mounts):
        return False
    return True


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
