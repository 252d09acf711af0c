"""/images/*: import, list, prune, inspect, tag, remove, history, save, load."""

from __future__ import annotations

import json

from quart import Blueprint, Response, request

from ...errors import ApplianceError, InvalidParameter, NotImplementedYet
from ..jsonfields import check_filter_keys, parse_filters
from .params import flag


def blueprint(engine) -> Blueprint:
    bp = Blueprint("images", __name__)
    images = engine.images

    @bp.post("/images/create")
    async def create():
        if request.args.get("fromImage"):
            name = request.args["fromImage"]
            tag = request.args.get("tag", "")
            raise NotImplementedYet(
                f"pull access denied for {name}{':' + tag if tag else ''}: this node has no registry access; "
                "use docker import or docker load")
        if request.args.get("fromSrc") != "-":
            raise InvalidParameter("import from a URL is not supported: send the archive in the body (fromSrc=-)")
        repo, tag = request.args.get("repo", ""), request.args.get("tag", "")
        changes = request.args.getlist("changes")
        message = request.args.get("message", "")
        # Validate everything cheap before reading a possibly large body; on a bad request the
        # body is still read (and dropped), so the client sees the 400, not a reset connection.
        try:
            target = images.import_target(repo, tag)
            container_config = images.import_changes(changes)
        except ApplianceError:
            await _drain(request.body)
            raise
        spool = await images.spool(request.body)
        # Like dockerd, import reports failure as the HTTP status: nothing is written before the
        # image exists, so a bad layer is a 400 the CLI prints as "Error response from daemon".
        image_id = await images.import_image(spool, target, container_config, message)
        return Response(json.dumps({"status": image_id}).encode() + b"\r\n", content_type="application/json")

    @bp.get("/images/json")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"dangling", "label", "label!", "before", "since", "reference", "until"})
        return _json(images.list_summaries(filters, flag("all")))

    @bp.post("/images/prune")
    async def prune():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"dangling", "until", "label", "label!"})
        deleted, reclaimed = await images.prune(filters)
        return _json({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    @bp.get("/images/<path:name>/json")
    async def inspect(name):
        return _json(images.inspect(name))

    @bp.get("/images/<path:name>/history")
    async def history(name):
        return _json(images.history(name))

    @bp.post("/images/<path:name>/tag")
    async def tag(name):
        images.tag(name, request.args.get("repo", ""), request.args.get("tag", ""))
        return Response(b"", status=201)

    @bp.delete("/images/<path:name>")
    async def remove(name):
        return _json(await images.remove(name, force=flag("force"), prune=not flag("noprune")))

    @bp.get("/images/get")
    async def save_many():
        return await _save(request.args.getlist("names"))

    @bp.get("/images/<path:name>/get")
    async def save_one(name):
        return await _save([name])

    async def _save(names: list[str]):
        if not names:
            raise InvalidParameter("no images specified")
        chunks = await images.save(names)  # resolves every name first: a missing one is a JSON 404
        return Response(chunks, content_type="application/x-tar")

    @bp.post("/images/load")
    async def load():
        # Progress bars are not produced, so quiet and verbose print the same lines. Like dockerd,
        # a failed load is reported inside the 200 JSON stream (the CLI prints it and exits 1).
        spool = await images.spool(request.body)

        async def body():
            try:
                for line in await images.load(spool):
                    yield json.dumps({"stream": line + "\n"}).encode() + b"\r\n"
            except ApplianceError as exc:
                yield json.dumps({"errorDetail": {"message": exc.message}, "error": exc.message}).encode() + b"\r\n"

        return Response(body(), content_type="application/json")

    return bp


async def _drain(body) -> None:
    async for _ in body:
        pass


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
