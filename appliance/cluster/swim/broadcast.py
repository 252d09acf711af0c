"""The gossip broadcast queue (memberlist queue.go ``TransmitLimitedQueue``), pure.

* Each message is sent at most ``retransmit_mult * ceil(log10(n + 1))`` times.
* A named message replaces any queued message with the same name: newer news about a node
  invalidates older news.
* ``get_broadcasts`` fills a packet least-sent first; within a tier it takes the largest
  message that still fits, newest first on ties (memberlist's ``limitedBroadcast.Less``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

__all__ = ["retransmit_limit", "push_pull_scale", "Broadcast", "BroadcastQueue"]

#: memberlist pushPullScaleThreshold: start stretching the push/pull interval above this.
PUSH_PULL_SCALE_THRESHOLD = 32


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """``mult * ceil(log10(n + 1))`` (memberlist util.go)."""
    return retransmit_mult * int(math.ceil(math.log10(n + 1)))


def push_pull_scale(interval: float, n: int) -> float:
    """memberlist ``pushPullScale``: x(ceil(log2 n - log2 32) + 1) above 32 nodes."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0
    return multiplier * interval


@dataclass(slots=True, eq=False)
class Broadcast:
    """One queued message and its place in the queue."""

    message: bytes
    name: str | None
    transmits: int
    id: int
    key: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        # Order inside a tier: largest first, then newest (highest id) first.
        self.key = (-len(self.message), -self.id)


class BroadcastQueue:
    """Transmit-limited, invalidating broadcast queue.  Not thread-safe; needs no locks."""

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._tiers: dict[int, list[tuple[tuple[int, int], Broadcast]]] = {}
        self._named: dict[str, Broadcast] = {}
        self._id = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def queue(self, message: bytes, name: str | None = None, *, transmits: int = 0) -> None:
        """Queue ``message``; a ``name`` replaces the queued message of the same name.

        Unnamed messages are unique and never invalidate anything (memberlist's
        ``UniqueBroadcast``).  ``transmits`` > 0 is for tests, like memberlist's.
        """
        self._id += 1
        item = Broadcast(message, name, transmits, self._id)
        if name is not None:
            old = self._named.pop(name, None)
            if old is not None:
                self._remove(old)
            self._named[name] = item
        self._insert(item)

    def pending(self, name: str) -> bool:
        """Is a message of this name still waiting to be (re)transmitted?"""
        return name in self._named

    def get_broadcasts(self, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Messages for one packet: at most ``limit`` bytes counting ``overhead`` per message."""
        if not self._len:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, num_nodes)
        used = 0
        out: list[bytes] = []
        reinsert: list[Broadcast] = []
        for transmits in sorted(self._tiers):
            tier = self._tiers.get(transmits)
            while tier:
                free = limit - used - overhead
                if free <= 0:
                    break
                # First item in the tier whose message fits: key[0] = -len >= -free.
                idx = bisect.bisect_left(tier, ((-free, -(1 << 62)),))
                if idx >= len(tier):
                    break
                _key, item = tier.pop(idx)
                self._len -= 1
                used += overhead + len(item.message)
                out.append(item.message)
                if item.transmits + 1 >= transmit_limit:
                    if item.name is not None and self._named.get(item.name) is item:
                        del self._named[item.name]
                else:
                    item.transmits += 1
                    reinsert.append(item)
            if not tier:
                self._tiers.pop(transmits, None)
            if limit - used - overhead <= 0:
                break
        for item in reinsert:
            self._insert(item)
        return out

    def prune(self, max_retain: int) -> None:
        """Keep only the ``max_retain`` freshest messages (memberlist ``Prune``)."""
        while self._len > max_retain:
            worst_tier = max(self._tiers)
            tier = self._tiers[worst_tier]
            _key, item = tier.pop()  # smallest, oldest message of the most-sent tier
            self._len -= 1
            if not tier:
                del self._tiers[worst_tier]
            if item.name is not None and self._named.get(item.name) is item:
                del self._named[item.name]

    def ordered_view(self, reverse: bool = False) -> list[Broadcast]:
        """All items in transmit order (``reverse`` gives memberlist's test view)."""
        items = [item for t in sorted(self._tiers) for _k, item in self._tiers[t]]
        return items[::-1] if reverse else items

    def _insert(self, item: Broadcast) -> None:
        tier = self._tiers.setdefault(item.transmits, [])
        bisect.insort(tier, (item.key, item))
        self._len += 1

    def _remove(self, item: Broadcast) -> None:
        tier = self._tiers[item.transmits]
        idx = bisect.bisect_left(tier, (item.key,))
        assert tier[idx][1] is item
        del tier[idx]
        self._len -= 1
        if not tier:
            del self._tiers[item.transmits]
