"""Lifeguard's dynamic suspicion timeout (memberlist suspicion.go, util.go), pure.

A suspect node is declared dead when its timer runs out.  The timer starts at ``max`` and
shrinks towards ``min`` as independent peers confirm the suspicion:

    timeout(n) = max - log(n + 1) / log(k + 1) * (max - min),  floored to ms, never below min

with ``k`` the confirmations wanted.  This module owns no timer: the core asks a
:class:`Suspicion` for its ``deadline()`` and compares it with its own clock.
"""

from __future__ import annotations

import math

__all__ = ["suspicion_timeout", "remaining", "Suspicion"]


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    """memberlist ``suspicionTimeout``: ``mult * max(1, log10(n)) * interval``.

    The node scale is truncated to thousandths exactly as Go's integer Duration arithmetic
    does (n=50 gives 1.698, not 1.69897).
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000) * interval / 1000


def remaining(n: int, k: int, elapsed: float, lo: float, hi: float) -> float:
    """memberlist ``remainingSuspicionTime``: seconds left after ``elapsed``; may be negative.

    ``n`` confirmations seen, ``k`` wanted, timeout between ``lo`` (min) and ``hi`` (max).
    With ``k < 1`` no confirmations are expected and the timeout is ``lo`` from the start.
    """
    if k < 1:
        return lo - elapsed
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = hi - frac * (hi - lo)
    timeout = math.floor(1000.0 * raw) / 1000.0
    if timeout < lo:
        timeout = float(lo)
    return timeout - elapsed


class Suspicion:
    """The suspicion about one node: who confirmed it and when it started.

    The node that raised it (``from_node``) counts as already seen, so our own suspicion
    gossiped back to us is not a confirmation.
    """

    __slots__ = ("k", "lo", "hi", "start", "n", "_confirmations")

    def __init__(self, from_node: str, k: int, lo: float, hi: float, start: float) -> None:
        self.k = k
        self.lo = lo
        self.hi = hi
        self.start = start
        self.n = 0
        self._confirmations = {from_node}

    def confirm(self, from_node: str) -> bool:
        """Record an independent confirmation; True if it was new and still counts."""
        if self.n >= self.k:
            return False
        if from_node in self._confirmations:
            return False
        self._confirmations.add(from_node)
        self.n += 1
        return True

    def deadline(self) -> float:
        """When the node should be declared dead, given the confirmations so far."""
        return self.start + remaining(self.n, self.k, 0.0, self.lo, self.hi)

    def __repr__(self) -> str:
        return f"Suspicion(n={self.n}, k={self.k}, min={self.lo}, max={self.hi}, start={self.start})"
