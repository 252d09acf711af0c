"""/volumes/*."""

from __future__ import annotations

import datetime as dt
import json

from quart import Blueprint, Response, request

from ...errors import InvalidParameter
from ..jsonfields import check_filter_keys, get_str, get_str_map, parse_filters
from .params import body_json, flag


def _created_at(ns: int) -> str:
    """dockerd formats a volume's CreatedAt with Go's time.RFC3339 (whole seconds)."""
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def blueprint(engine) -> Blueprint:
    bp = Blueprint("volumes", __name__)
    volumes = engine.volumes

    def volume_json(rec) -> dict:
        return {"CreatedAt": _created_at(rec.created), "Driver": rec.driver, "Labels": volumes.labels(rec),
                "Mountpoint": rec.mountpoint, "Name": rec.name, "Options": rec.options or None,
                "Scope": "local"}

    @bp.post("/volumes/create")
    async def create():
        body = await body_json()
        driver = get_str(body, "Driver", "VolumeCreateBody") or "local"
        if driver != "local":
            raise InvalidParameter(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        rec = volumes.create(get_str(body, "Name", "VolumeCreateBody") or None,
                             labels=get_str_map(body, "Labels", "VolumeCreateBody"),
                             options=get_str_map(body, "DriverOpts", "VolumeCreateBody"))
        return _json(volume_json(rec), 201)

    @bp.get("/volumes")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"name", "label", "dangling", "driver"})
        return _json({"Volumes": [volume_json(rec) for rec in volumes.filter(filters)], "Warnings": []})

    @bp.get("/volumes/<name>")
    async def inspect(name):
        return _json(volume_json(volumes.get(name)))

    @bp.delete("/volumes/<name>")
    async def remove(name):
        volumes.remove(name, force=flag("force"))
        return Response(b"", status=204)

    @bp.post("/volumes/prune")
    async def prune():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"label", "label!", "all"})
        removed, reclaimed = volumes.prune(filters)
        return _json({"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})

    return bp


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
