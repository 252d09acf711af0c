"""RFC 3339 timestamps with nanoseconds, as integers of ns since the epoch (pure).

conmon writes local time with an offset ("2026-11-27T22:51:34.896867936+00:00"); Docker
prints UTC with a "Z". Python's datetime stops at microseconds, so both directions are
done by hand on integers.
"""

from __future__ import annotations

import calendar
import re
import time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})\Z")


def parse_rfc3339nano(text: str) -> int:
    """"2026-11-27T22:51:34.896867936+01:00" -> ns since the epoch (UTC)."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or "").ljust(9, "0")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds * 1_000_000_000 + int(frac)


def format_rfc3339nano(ns: int, *, fixed: bool = False) -> str:
    """ns since the epoch -> UTC RFC 3339 with nanoseconds.

    fixed=False is Go's time.RFC3339Nano (trailing zeros and a zero fraction dropped), what
    dockerd puts in JSON such as State.FinishedAt; fixed=True always prints 9 digits, the
    RFC3339NanoFixed layout of `docker logs --timestamps`.
    """
    seconds, frac = divmod(ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}"
    if not fixed:
        digits = digits.rstrip("0")
    return f"{head}.{digits}Z" if digits else f"{head}Z"
