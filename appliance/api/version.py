"""API version negotiation, in dockerd's words."""

from __future__ import annotations

import re

from ..errors import InvalidParameter

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "28.2.2-appliance"

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def _key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def split_version(path: str) -> tuple[str | None, str]:
    """'/v1.50/containers/json' -> ('1.50', '/containers/json'); no prefix -> (None, path)."""
    m = _PREFIX.match(path)
    if not m:
        return None, path
    return f"{m.group(1)}.{m.group(2)}", m.group(3)


def check_version(version: str | None) -> str:
    """The version a request speaks; outside [MIN, API] is dockerd's 400."""
    if version is None:
        return API_VERSION
    if _key(version) < _key(MIN_API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if _key(version) > _key(API_VERSION):
        raise InvalidParameter(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
    return version


def at_least(version: str, floor: str) -> bool:
    return _key(version) >= _key(floor)
