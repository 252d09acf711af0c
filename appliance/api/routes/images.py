"""/images/*: import, list, inspect, tag, remove, history, save, load."""

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
        # Validate everything cheap before reading a possibly large body.
        target = images.import_target(repo, tag)
        spool = await images.spool(request.body)

        async def body():
            try:
                image_id = await images.import_image(spool, target, changes, message)
                yield json.dumps({"status": image_id}).encode() + b"\r\n"
            except ApplianceError as exc:
                yield json.dumps({"errorDetail": {"message": exc.message}, "error": exc.message}).encode() + b"\r\n"

        return Response(body(), content_type="application/json")

    @bp.get("/images/json")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        check_filter_keys(filters, {"dangling", "label", "before", "since", "reference", "until"})
        return _json([images.summary(rec) for rec in images.filter_images(filters, flag("all"))])

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
        quiet = flag("quiet")
        spool = await images.spool(request.body)

        async def body():
            try:
                for line in await images.load(spool):
                    yield json.dumps({"stream": line + "\n"}).encode() + b"\r\n"
            except ApplianceError as exc:
                yield json.dumps({"errorDetail": {"message": exc.message}, "error": exc.message}).encode() + b"\r\n"

        del quiet  # progress bars are not produced; quiet and verbose print the same lines
        return Response(body(), content_type="application/json")

    return bp


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
