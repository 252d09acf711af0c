"""The node's event stream (`docker events`): a bounded in-memory log plus live subscribers.

Like dockerd, history is kept in memory only (the last 1024 events); `since` reaches back that far.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio

HISTORY = 1024


@dataclass(frozen=True)
class Event:
    type: str  # container | image | volume | network | node
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"


@dataclass(frozen=True)
class EventFilter:
    """Docker's `filters` for events: each key matches if any of its values does."""

    types: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()  # "k" or "k=v"

    def matches(self, ev: Event) -> bool:
        if self.types and ev.type not in self.types:
            return False
        if self.actions and not (ev.action in self.actions or ev.action.split(":")[0] in self.actions):
            return False
        name = ev.attributes.get("name", "")
        if self.containers and not (ev.type == "container" and _id_or_name(ev.actor_id, name, self.containers)):
            return False
        if self.images:
            image = ev.attributes.get("image", ev.actor_id if ev.type == "image" else "")
            if not (image in self.images or ev.actor_id in self.images
                    or (ev.type == "image" and _id_or_name(ev.actor_id, name, self.images))):
                return False
        if self.volumes and not (ev.type == "volume" and ev.actor_id in self.volumes):
            return False
        for label in self.labels:
            key, _, value = label.partition("=")
            if key not in ev.attributes or ("=" in label and ev.attributes[key] != value):
                return False
        return True


def _id_or_name(actor_id: str, name: str, wanted: frozenset[str]) -> bool:
    return any(actor_id.startswith(w) or w == name or w == name.lstrip("/") for w in wanted)


class EventLog:
    def __init__(self) -> None:
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._subscribers: set[trio.MemorySendChannel] = set()

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        ev = Event(type, action, actor_id, dict(attributes or {}), time.time_ns())
        self._history.append(ev)
        for chan in list(self._subscribers):
            try:
                chan.send_nowait(ev)
            except trio.WouldBlock:  # a stuck reader loses its subscription, not the node's memory
                self._subscribers.discard(chan)
                chan.close()
        return ev

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    async def stream(self, filt: EventFilter, since_ns: int | None, until_ns: int | None) -> AsyncIterator[Event]:
        """Past events from `since`, then live ones until `until` (or forever)."""
        send, receive = trio.open_memory_channel[Event](256)
        self._subscribers.add(send)
        try:
            last = 0
            if since_ns is not None:
                for ev in list(self._history):
                    if ev.time_nano >= since_ns and (until_ns is None or ev.time_nano <= until_ns):
                        last = ev.time_nano
                        if filt.matches(ev):
                            yield ev
            now = time.time_ns()
            if until_ns is not None and until_ns <= now:
                return
            # Scoped per receive, never around a yield: a cancel scope must not span a generator yield.
            deadline = trio.current_time() + (until_ns - now) / 1e9 if until_ns is not None else float("inf")
            while True:
                ev = None
                with trio.move_on_at(deadline):
                    ev = await receive.receive()
                if ev is None:
                    return
                if ev.time_nano > last and filt.matches(ev):
                    yield ev
        finally:
            self._subscribers.discard(send)
            send.close()
