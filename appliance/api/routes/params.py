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


def uint32(name: str) -> int:
    """Go's strconv.ParseUint(value, 10, 32), with its error text (dockerd's resize routes)."""
    text = request.args.get(name, "")
    if not text or not text.isascii() or not text.isdigit():
        raise InvalidParameter(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    if int(text) >= 1 << 32:
        raise InvalidParameter(f'strconv.ParseUint: parsing "{text}": value out of range')
    return int(text)


async def body_json(allow_empty: bool = True) -> dict:
    from ..jsonfields import parse_json

    raw = await request.get_data()
    content_type = request.headers.get("Content-Type", "")
    if raw.strip() and content_type and content_type.split(";")[0].strip() != "application/json":
        # dockerd's CheckForJSON; a body without any Content-Type is read as JSON, as it does
        raise InvalidParameter(f"unsupported Content-Type header ({content_type}): must be 'application/json'")
    return parse_json(raw, allow_empty=allow_empty)


def api_version() -> str:
    return request.scope.get("docker_api_version", "1.50")
