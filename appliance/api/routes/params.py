"""Query-string readers with dockerd's leniency ("1", "true", "True" are all true)."""

from __future__ import annotations

from quart import request

from ...errors import InvalidParameter


def flag(name: str, default: bool = False) -> bool:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    return value.lower() not in ("0", "false", "no")


def integer(name: str, default: int | None = None) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r}") from None


async def body_json(allow_empty: bool = True) -> dict:
    from ..jsonfields import parse_json

    return parse_json(await request.get_data(), allow_empty=allow_empty)


def api_version() -> str:
    return request.scope.get("docker_api_version", "1.50")
