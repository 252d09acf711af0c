"""/volumes/*."""

from __future__ import annotations

import json

from quart import Blueprint, Response, request

from ...errors import InvalidParameter
from ..jsonfields import check_filter_keys, get_str, get_str_map, parse_filters
from ..timefmt import rfc3339
from .params import body_json, flag


def _volume_json(rec) -> dict:
    return {"Name": rec.name, "Driver": rec.driver, "Mountpoint": rec.mountpoint,
            "CreatedAt": rfc3339(rec.created), "Labels": rec.labels or None, "Scope": "local",
            "Options": rec.options or None}


def blueprint(engine) -> Blueprint:
    bp = Blueprint("volumes", __name__)
    volumes = engine.volumes

    @bp.post("/volumes/create")
    async def create():
        body = await body_json()
        driver = get_str(body, "Driver", "VolumeCreateBody") or "local"
        if driver != "local":
            raise InvalidParameter(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        rec = volumes.create(get_str(body, "Name", "VolumeCreateBody") or None,
                             labels=get_str_map(body, "Labels", "VolumeCreateBody"),
                             options=get_str_map(body, "DriverOpts", "VolumeCreateBody"))
        return _json(_volume_json(rec), 201)

    @bp.get("/volumes")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"name", "label", "dangling", "driver"})
        out = []
        for rec in volumes.list():
            if filters.get("name") and not any(n in rec.name for n in filters["name"]):
                continue
            if filters.get("driver") and rec.driver not in filters["driver"]:
                continue
            if filters.get("label") and not all(_has_label(rec.labels, l) for l in filters["label"]):
                continue
            if filters.get("dangling"):
                dangling = filters["dangling"][-1].lower() in ("1", "true")
                if dangling == bool(volumes.users(rec.name)):
                    continue
            out.append(_volume_json(rec))
        return _json({"Volumes": out, "Warnings": []})

    @bp.get("/volumes/<name>")
    async def inspect(name):
        return _json(_volume_json(volumes.get(name)))

    @bp.delete("/volumes/<name>")
    async def remove(name):
        volumes.remove(name, force=flag("force"))
        return Response(b"", status=204)

    @bp.post("/volumes/prune")
    async def prune():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"label", "all"})
        all_volumes = filters.get("all", ["false"])[-1].lower() in ("1", "true")
        removed, reclaimed = volumes.prune(all_volumes, filters.get("label", []))
        return _json({"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})

    return bp


def _has_label(labels: dict[str, str], item: str) -> bool:
    key, eq, value = item.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
