"""Coarse capacity buckets for gossip tags: pure functions, no clock, no I/O.

Every tag change costs an incarnation bump and an ``alive`` broadcast to the whole cluster,
so the node publishes only power-of-two buckets of what it has free, with hysteresis at the
bucket edges, and at most once per ``min_interval`` (:class:`TagThrottle`).  Exact numbers
are for the scheduler to ask the candidate node at placement time (design.md, "Capacity").

Buckets (floor to a power of two; a value that sits on an edge does not flap):

=============  ===================================  ===================================
tag            measures                             values
=============  ===================================  ===================================
``mem_free``   MemAvailable                         ``0``, ``256M``, ``512M``, ``1G``, ``2G``, ...
``cpu_free``   ncpu - 1-minute load average         ``0``, ``1``, ``2``, ``4``, ...
``ncpu``       online CPUs (static)                 the exact count
``containers`` running containers                   ``0``, ``1``, ``2``, ``4``, ``8``, ...
=============  ===================================  ===================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "HostLoad",
    "Buckets",
    "pow2_floor",
    "stable_bucket",
    "buckets",
    "capacity_tags",
    "format_mib",
    "parse_size",
    "TagThrottle",
]

#: Memory buckets are counted in MiB; anything under this many MiB is bucket 0.
MEM_MIN_MIB = 256
#: A value must leave its bucket by this fraction of the bucket's edge before it moves.
HYSTERESIS = 0.1


@dataclass(frozen=True, slots=True)
class HostLoad:
    """One sample of what the host has (read by the shell from /proc and the engine)."""

    mem_available: int  # bytes
    ncpu: int
    load1: float
    containers: int  # running


@dataclass(frozen=True, slots=True)
class Buckets:
    mem_free_mib: int
    cpu_free: int
    ncpu: int
    containers: int


def pow2_floor(value: float) -> int:
    """The largest power of two <= value; 0 for value < 1."""
    if value < 1:
        return 0
    return 1 << (int(value).bit_length() - 1)


def stable_bucket(value: float, previous: int | None, *, floor: int = 1, margin: float = HYSTERESIS) -> int:
    """``pow2_floor(value)`` (0 below ``floor``), but stay in ``previous`` while value is
    within ``margin`` of that bucket's range [previous, 2*previous) (or [0, floor) for 0)."""
    fresh = pow2_floor(value) if value >= floor else 0
    if previous is None or fresh == previous:
        return fresh
    lo, hi = (previous, 2 * previous) if previous > 0 else (0, floor)
    if lo * (1 - margin) <= value < hi * (1 + margin):
        return previous
    return fresh


def buckets(load: HostLoad, previous: Buckets | None = None) -> Buckets:
    """The buckets for ``load``, sticky around the edges of ``previous``."""
    mem_mib = load.mem_available / (1024 * 1024)
    cpu_free = max(0.0, load.ncpu - load.load1)
    return Buckets(
        mem_free_mib=stable_bucket(mem_mib, previous.mem_free_mib if previous else None, floor=MEM_MIN_MIB),
        cpu_free=stable_bucket(cpu_free, previous.cpu_free if previous else None),
        ncpu=load.ncpu,
        containers=stable_bucket(load.containers, previous.containers if previous else None),
    )


def format_mib(mib: int) -> str:
    """256 -> '256M', 1024 -> '1G', 0 -> '0'."""
    if mib <= 0:
        return "0"
    if mib % 1024 == 0:
        return f"{mib // 1024}G"
    return f"{mib}M"


_SIZE = re.compile(r"^(\d+)([MG]?)$")


def parse_size(text: str) -> int:
    """Inverse of :func:`format_mib`, in bytes ('2G' -> 2 GiB).  ValueError if malformed."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * {"": 1, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def capacity_tags(b: Buckets) -> dict[str, str]:
    """The capacity part of the node's Serf tags."""
    return {
        "mem_free": format_mib(b.mem_free_mib),
        "cpu_free": str(b.cpu_free),
        "ncpu": str(b.ncpu),
        "containers": str(b.containers),
    }


class TagThrottle:
    """Publish tags only when they changed and not more often than ``min_interval``.

    ``offer(now, tags)`` returns the tags to publish now, or None (nothing new, or too soon:
    the caller offers again at its next sample and the newest tags win).
    """

    __slots__ = ("min_interval", "published", "published_at")

    def __init__(self, min_interval: float, initial: dict[str, str], now: float) -> None:
        self.min_interval = min_interval
        self.published = dict(initial)
        self.published_at = now

    def offer(self, now: float, tags: dict[str, str]) -> dict[str, str] | None:
        if tags == self.published or now - self.published_at < self.min_interval:
            return None
        self.published = dict(tags)
        self.published_at = now
        return dict(tags)
