"""The node's event stream (`docker events`): a bounded in-memory log plus live subscribers.

As in dockerd (daemon/events), history lives in memory only: the last HISTORY events, which is
how far `since` reaches back. A subscriber registers and snapshots the history in one step (no
checkpoint in between), so no event is both replayed and delivered live, and none is missed.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import trio

from ..errors import InvalidParameter
from ..images.reference import parse_normalized_named

HISTORY = 1024
SUBSCRIBER_BUFFER = 1024  # dockerd's pubsub buffer; a reader this far behind is dropped


@dataclass(frozen=True)
class Event:
    type: str  # container | image | volume | network | node | daemon
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"


# The filter keys that name an actor of their own type: matched by ID or `name` prefix (fuzzy).
_ACTOR_KEYS = ("daemon", "container", "plugin", "volume", "network", "node", "service", "secret", "config")
# `event=health_status` (no colon) must match `health_status: healthy`, moby #25798.
_FUZZY_ACTIONS = frozenset({"health_status", "exec_create", "exec_start"})


@dataclass(frozen=True)
class EventFilter:
    """Docker's `filters` for events, as moby daemon/events/filter.go `Include` reads them.

    Keys combine with AND, the values of one key with OR. An absent key matches everything.
    """

    values: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_filters(cls, filters: Mapping[str, list[str]]) -> EventFilter:
        return cls({k: frozenset(v) for k, v in filters.items() if v})

    def matches(self, ev: Event) -> bool:
        return (self._action(ev.action)
                and self._exact("type", ev.type)
                and self._exact("scope", ev.scope)
                and all(self._actor(key, ev) for key in _ACTOR_KEYS)
                and self._image(ev)
                and self._labels(ev.attributes))

    def _exact(self, key: str, value: str) -> bool:
        wanted = self.values.get(key)
        return not wanted or value in wanted

    def _fuzzy(self, key: str, value: str) -> bool:
        wanted = self.values.get(key)
        return not wanted or value in wanted or any(value.startswith(w) for w in wanted)

    def _action(self, action: str) -> bool:
        if self.values.get("event", frozenset()) & _FUZZY_ACTIONS:
            return self._fuzzy("event", action)
        return self._exact("event", action)

    def _actor(self, key: str, ev: Event) -> bool:
        # Like dockerd, `container=x` is not limited to container events: it tests every
        # event's actor ID and `name` attribute.
        return self._fuzzy(key, ev.actor_id) or self._fuzzy(key, ev.attributes.get("name", ""))

    def _image(self, ev: Event) -> bool:
        """Image events by ID or `name`, container events by their `image`, tags stripped too."""
        if not self.values.get("image"):
            return True
        name = ev.attributes.get("name" if ev.type == "image" else "image", "")
        return any(self._exact("image", v) for v in (ev.actor_id, name, _strip_tag(ev.actor_id), _strip_tag(name)))

    def _labels(self, attributes: Mapping[str, str]) -> bool:
        wanted = self.values.get("label")
        if not wanted:
            return True
        if not attributes:
            return False
        for label in wanted:
            key, has_value, value = label.partition("=")
            if key not in attributes or (has_value and attributes[key] != value):
                return False
        return True


def _strip_tag(image: str) -> str:
    """moby's stripTag: the familiar repository name, or the input if it is not a reference."""
    if not image:
        return image
    try:
        return parse_normalized_named(image).familiar_name
    except InvalidParameter:
        return image


class Subscription:
    """One `docker events` reader: the replayed history, then live events until `until`."""

    def __init__(self, log: EventLog, backlog: list[Event], receive: trio.MemoryReceiveChannel,
                 until_ns: int | None):
        self._log, self._backlog, self._receive, self._until_ns = log, backlog, receive, until_ns

    async def events(self) -> AsyncIterator[Event]:
        try:
            for ev in self._backlog:
                yield ev
            now = time.time_ns()
            if self._until_ns is not None and self._until_ns <= now:
                return
            until = self._until_ns
            deadline = trio.current_time() + (until - now) / 1e9 if until is not None else float("inf")
            while True:
                ev = None
                # Scoped per receive, never around a yield: a cancel scope must not span a yield.
                with trio.move_on_at(deadline):
                    try:
                        ev = await self._receive.receive()
                    except trio.EndOfChannel:  # dropped for falling behind: end the stream
                        return
                if ev is None or (until is not None and ev.time_nano > until):  # `until` reached
                    return
                yield ev
        finally:
            self.close()

    def close(self) -> None:
        self._log._unsubscribe(self._receive)


class EventLog:
    def __init__(self) -> None:
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._subscribers: dict[trio.MemoryReceiveChannel, tuple[trio.MemorySendChannel, EventFilter]] = {}

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        ev = Event(type, action, actor_id, dict(attributes or {}), time.time_ns())
        self._history.append(ev)
        for receive, (send, filt) in list(self._subscribers.items()):
            if not filt.matches(ev):
                continue
            try:
                send.send_nowait(ev)
            except (trio.WouldBlock, trio.BrokenResourceError):
                # A stuck (or vanished) reader loses its subscription, not the node's memory.
                self._unsubscribe(receive)
        return ev

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def subscribe(self, filt: EventFilter, since_ns: int | None, until_ns: int | None) -> Subscription:
        """Register now (so nothing published after this call is missed) and snapshot the history.

        History is replayed when `since` or `until` is given (dockerd's loadBufferedEvents): from
        `since` (or the start) up to `until` (or now).
        """
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER)
        self._subscribers[receive] = (send, filt)
        backlog: list[Event] = []
        if since_ns is not None or until_ns is not None:
            since = since_ns or 0
            backlog = [ev for ev in self._history
                       if ev.time_nano >= since and (until_ns is None or ev.time_nano <= until_ns)
                       and filt.matches(ev)]
        return Subscription(self, backlog, receive, until_ns)

    def _unsubscribe(self, receive: trio.MemoryReceiveChannel) -> None:
        entry = self._subscribers.pop(receive, None)
        if entry is not None:
            entry[0].close()
