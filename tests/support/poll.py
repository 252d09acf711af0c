"""Waiting on a real node from a test: poll, never sleep a fixed time."""

from __future__ import annotations

import json
import time


def until(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.05):
    """Poll predicate until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def inspect(node, ref) -> dict:
    return json.loads(node.out("inspect", ref))[0]
