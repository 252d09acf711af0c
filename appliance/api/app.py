"""create_app(engine): the quart-trio app for every route that is not a hijack."""

from __future__ import annotations

import json
import logging

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..errors import ApplianceError, InvalidParameter
from .errors import error_body, status_and_message
from .routes import archive as archive_routes
from .routes import cluster, containers, execs, images, networks, stats, system, volumes
from .version import API_VERSION, ENGINE_VERSION, check_version, split_version

log = logging.getLogger(__name__)


class _VersionPrefix:
    """Strips `/vX.Y`, rejects versions outside [min, max] with dockerd's 400, keeps the version."""

    def __init__(self, app):
        self._app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            version, path = split_version(scope["path"])
            try:
                scope = {**scope, "path": path, "raw_path": path.encode(),
                         "docker_api_version": check_version(version)}
            except InvalidParameter as exc:
                body = error_body(exc.message)
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self._app(scope, receive, send)


def _json_error(status: int, message: str) -> Response:
    return Response(error_body(message), status=status, content_type="application/json")


def create_app(engine) -> _VersionPrefix:
    app = QuartTrio(__name__)
    # Docker traffic streams for hours (logs -f, events, wait) and uploads GBs (load, import).
    app.config.update(RESPONSE_TIMEOUT=None, BODY_TIMEOUT=None, MAX_CONTENT_LENGTH=None)
    for blueprint in (system.blueprint(engine), containers.blueprint(engine), execs.blueprint(engine),
                      images.blueprint(engine), volumes.blueprint(engine)):
        app.register_blueprint(blueprint)
    app.register_blueprint(cluster.blueprint(getattr(engine, "cluster", None)))
    app.register_blueprint(stats.blueprint(engine))
    app.register_blueprint(archive_routes.blueprint(engine))
    if getattr(engine, "networks", None) is not None:
        app.register_blueprint(networks.blueprint(engine))

    @app.after_request
    async def _server_headers(response):
        # dockerd sends these on every response, not only /_ping; clients read them anywhere.
        response.headers.setdefault("Api-Version", API_VERSION)
        response.headers.setdefault("Ostype", "linux")
        response.headers.setdefault("Server", f"Docker/{ENGINE_VERSION} (linux)")
        return response

    @app.errorhandler(ApplianceError)
    async def _appliance_error(exc: ApplianceError):
        status, message = status_and_message(exc)
        if status == 304:
            return Response(b"", status=304)
        return _json_error(status, message)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException):
        if exc.code in (404, 405):  # dockerd's router answers an unknown method like an unknown path
            return _json_error(404, "page not found")
        return _json_error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception):
        status, message = status_and_message(exc)
        return _json_error(status, message)

    return _VersionPrefix(app)


def json_response(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
