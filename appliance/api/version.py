"""API version negotiation, in dockerd's words."""

from __future__ import annotations

import re

from ..errors import InvalidParameter

API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "28.2.2-appliance"

_PREFIX = re.compile(r"^/v([0-9.]+)(/.*)$")  # moby's router: "/v{version:[0-9.]+}"


def compare(a: str, b: str) -> int:
    """moby api/types/versions.compare: dotted numbers, missing or non-numeric parts count as 0."""
    pa, pb = a.split("."), b.split(".")
    for i in range(max(len(pa), len(pb))):
        x = int(pa[i]) if i < len(pa) and pa[i].isdigit() else 0
        y = int(pb[i]) if i < len(pb) and pb[i].isdigit() else 0
        if x != y:
            return 1 if x > y else -1
    return 0


def split_version(path: str) -> tuple[str | None, str]:
    """'/v1.50/containers/json' -> ('1.50', '/containers/json'); no prefix -> (None, path)."""
    m = _PREFIX.match(path)
    if not m:
        return None, path
    return m.group(1), m.group(2)


def check_version(version: str | None) -> str:
    """The version a request speaks; outside [MIN, API] is dockerd's 400."""
    if version is None:
        return API_VERSION
    if compare(version, MIN_API_VERSION) < 0:
        raise InvalidParameter(
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if compare(version, API_VERSION) > 0:
        raise InvalidParameter(
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
    return version


def at_least(version: str, floor: str) -> bool:
    return compare(version, floor) >= 0
