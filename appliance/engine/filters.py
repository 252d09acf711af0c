"""dockerd's list filters (filters.Args), one implementation for containers, images, volumes,
networks and prune: `label=k`, `label=k=v`, `label!=...`, name/id patterns, and the one reading
of since/until times."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from ..runtime.timestamps import parse_rfc3339nano


def has_label(labels: Mapping[str, str], item: str) -> bool:
    """`k` matches any value of k; `k=v` only that value."""
    key, eq, value = item.partition("=")
    return key in labels and (not eq or labels[key] == value)


def labels_match(labels: Mapping[str, str], filters: Mapping[str, Sequence[str]]) -> bool:
    """Every `label` filter holds and no `label!` filter does."""
    return (all(has_label(labels, item) for item in filters.get("label", ()))
            and not any(has_label(labels, item) for item in filters.get("label!", ())))


def value_matches(pattern: str, value: str) -> bool:
    """filters.Args.Match: the exact value, else an unanchored regular-expression search."""
    if pattern == value:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000,
            "us": 1_000, "µs": 1_000, "ns": 1}


def parse_docker_time(value: str, now_ns: int) -> int:
    """dockerd's timetypes.GetTimestamp, in ns since the epoch: a Go duration ("10m", "2h30m")
    means that long before now_ns; else unix seconds with an optional fraction, or an RFC 3339
    / ISO date-time (local time when it has no zone). ValueError for anything else."""
    parts = _GO_DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return now_ns - int(sum(float(n) * _UNIT_NS[u] for n, u in parts))
    secs, dot, frac = value.partition(".")
    if secs.isdigit() and (not dot or frac.isdigit()):
        return int(secs) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
    try:
        return parse_rfc3339nano(value)
    except ValueError:
        return int(dt.datetime.fromisoformat(value).timestamp() * 1_000_000_000)
