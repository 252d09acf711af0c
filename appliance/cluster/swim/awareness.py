"""Lifeguard's local health awareness (memberlist awareness.go), pure.

A score in ``0 .. max-1``; 0 is healthy.  Failed probes without the expected nacks and
having to refute a suspicion about ourselves raise it; successful probes lower it.  A
degraded node scales its probe interval by ``score + 1``, so it slows down instead of
accusing healthy peers of its own slowness.
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    __slots__ = ("max", "score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("max_multiplier must be >= 1")
        self.max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        """Add ``delta`` and clamp to ``0 .. max-1``."""
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale(self, timeout: float) -> float:
        """``timeout * (score + 1)``."""
        return timeout * (self.score + 1)
