"""Container filesystems: docker cp (HEAD/GET/PUT archive), export, diff (changes), commit.

Routes (minimum API version 1.24, the oldest this node serves):

    HEAD /containers/{ref}/archive?path=     stat, in X-Docker-Container-Path-Stat
    GET  /containers/{ref}/archive?path=     the same header, then a tar of the path
    PUT  /containers/{ref}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=   unpack a tar
    GET  /containers/{ref}/export            tar of the whole filesystem
    GET  /containers/{ref}/changes           [{"Path", "Kind"}] (0 changed, 1 added, 2 deleted)
    POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=   201 {"Id"}
"""

from __future__ import annotations

import base64
import json

from quart import Blueprint, Response, request

from ...engine.filesystem import FilesystemService, PathStat
from ...engine.filesystem.paths import format_mtime
from ...errors import ApplianceError, InvalidParameter
from .params import flag

STAT_HEADER = "X-Docker-Container-Path-Stat"


def blueprint(engine) -> Blueprint:
    bp = Blueprint("archive", __name__)
    fs = getattr(engine, "filesystem", None) or FilesystemService(engine.containers, engine.images, engine.events)

    @bp.route("/containers/<ref>/archive", methods=["GET", "HEAD"])
    async def archive(ref):
        path = _path()
        if request.method == "HEAD":
            st = await fs.stat(ref, path)
            return Response(b"", status=200, headers={STAT_HEADER: stat_header(st)})
        st, stream = await fs.archive(ref, path)
        return Response(stream, status=200, headers={STAT_HEADER: stat_header(st)},
                        content_type="application/x-tar")

    @bp.put("/containers/<ref>/archive")
    async def extract(ref):
        # Cheap checks first; on failure the body is still read, so the client gets the JSON
        # error rather than a reset connection halfway through its upload.
        try:
            path = _path()
            engine.containers.get(ref)
        except ApplianceError:
            await _drain(request.body)
            raise
        await fs.extract(ref, path, request.body, no_overwrite_dir_non_dir=flag("noOverwriteDirNonDir"),
                         copy_uid_gid=flag("copyUIDGID"))
        return Response(b"", status=200)

    @bp.get("/containers/<ref>/export")
    async def export(ref):
        return Response(await fs.export(ref), status=200, content_type="application/x-tar")

    @bp.get("/containers/<ref>/changes")
    async def changes(ref):
        found = await fs.changes(ref)
        return _json([{"Path": c.path, "Kind": c.kind} for c in found] or None)

    @bp.post("/commit")
    async def commit():
        config = commit_config(await request.get_data())
        image_id = await fs.commit(
            request.args.get("container", ""), repo=request.args.get("repo", ""),
            tag=request.args.get("tag", ""), author=request.args.get("author", ""),
            comment=request.args.get("comment", ""), changes=request.args.getlist("changes"),
            config=config, pause=flag("pause", True))
        return _json({"Id": image_id}, 201)

    return bp


def stat_header(st: PathStat) -> str:
    """base64 of dockerd's ContainerPathStat JSON (Go field order; mode is an os.FileMode)."""
    body = {"name": st.name, "size": st.size, "mode": st.mode, "mtime": format_mtime(st.mtime_ns),
            "linkTarget": st.link_target}
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def commit_config(raw: bytes) -> dict | None:
    """The Config a commit may carry in its body (the CLI sends none, or null)."""
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"invalid JSON: {exc}") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidParameter("json: cannot unmarshal into Go value of type container.Config")
    return {k: v for k, v in value.items() if k not in ("HostConfig", "NetworkingConfig")}


def _path() -> str:
    path = request.args.get("path", "")
    if path == "":
        raise InvalidParameter("bad parameter: pathcannot be empty")  # sic, dockerd's wording
    return path


async def _drain(body) -> None:
    async for _ in body:
        pass


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
