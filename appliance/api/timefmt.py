"""Docker's time shapes: RFC3339Nano strings, zero time, human durations for `ps`."""

from __future__ import annotations

import datetime as dt

from ..runtime.timestamps import format_rfc3339nano

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC, and dockerd's zero time for 'never'."""
    return format_rfc3339nano(ns) if ns else ZERO_TIME


def parse_unix(value: str) -> int | None:
    """'1700000000', '1700000000.123456789' or an RFC3339 time -> ns; '' -> None."""
    if not value:
        return None
    try:
        if "." in value:
            secs, frac = value.split(".", 1)
            return int(secs) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        return int(value) * 1_000_000_000
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        from ..errors import InvalidParameter

        raise InvalidParameter(f"invalid time: {value!r}") from None
    return int(t.timestamp() * 1_000_000_000)


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
