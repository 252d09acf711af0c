"""Docker's time shapes: RFC3339Nano strings, zero time, human durations for `ps`."""

from __future__ import annotations

import time

from ..engine.filters import parse_docker_time
from ..errors import InvalidParameter
from ..runtime.timestamps import format_rfc3339nano

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC, and dockerd's zero time for 'never'."""
    return format_rfc3339nano(ns) if ns else ZERO_TIME


def parse_unix(value: str) -> int | None:
    """A `since`/`until` argument as dockerd reads it (engine/filters.parse_docker_time)
    -> ns; '' -> None."""
    if not value:
        return None
    try:
        return parse_docker_time(value, time.time_ns())
    except ValueError:
        raise InvalidParameter(f"invalid time: {value!r}") from None


def human_duration(seconds: float) -> str:
    """Port of go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
