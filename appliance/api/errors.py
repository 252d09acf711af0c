"""The one map from appliance errors to dockerd's status and JSON body."""

from __future__ import annotations

import json
import logging

from .. import errors

log = logging.getLogger(__name__)

_STATUS = {
    errors.NotFound: 404,
    errors.InvalidParameter: 400,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.NotModified: 304,
    errors.Unavailable: 503,
    errors.NotImplementedYet: 501,
    errors.SystemError_: 500,
}


def status_and_message(exc: BaseException) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls], exc.message  # type: ignore[attr-defined]
    log.error("unexpected %s: %s", type(exc).__name__, exc, exc_info=exc)
    return 500, f"internal error: {type(exc).__name__}"


def error_body(message: str) -> bytes:
    return json.dumps({"message": message}).encode() + b"\n"
