"""The log rotation service: keeps each running container's log within `--log-opt max-size` /
`max-file` (Docker's json-file semantics) by rotating conmon's k8s-file log from the node.

Which containers to watch comes from the event stream (start adds, die/destroy drop) plus one
scan of the store at start-up and after a dropped subscription. Each watched log is stat'ed on
its own schedule: runtime/logrotate.next_check_delay() looks again at half the time the log
needs, at its recent growth rate, to reach max-size (20 ms .. 1 s), so an idle container costs
one stat a second and a flooding one overshoots max-size by about 20 ms of its output.

Unlike dockerd, whose json-file writer checks the size before every write, rotation happens
only while the node runs: a container logging while no node process is up grows its log
until the node is back.
"""

from __future__ import annotations

import heapq
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import trio

from ..errors import NotFound
from ..runtime.argv import ContainerPaths
from ..runtime.logrotate import (
    data_bytes,
    next_check_delay,
    request_reopen,
    rotate,
    rotated_path,
    trim_overflow,
)
from .events import EventFilter, EventLog

log = logging.getLogger(__name__)

#: states in which conmon runs (a paused container's log can still be rotated)
_LIVE = ("running", "paused")
#: how long to wait for conmon's reopen before asking again
_REOPEN_GRACE = 1.0
_EVENTS = EventFilter.from_filters({"type": ["container"], "event": ["start", "die", "destroy"]})


@dataclass
class _Watched:
    log: Path
    ctl: Path
    max_size: int
    max_file: int
    generation: int        # bumped when re-watched, so stale heap entries are ignored
    last_size: int = 0
    last_at: float = 0.0
    rate: float = 0.0      # bytes/s, fast attack, slow decay
    # after a rotation: when conmon was last asked to reopen, until ctr.log is back
    reopen_at: float | None = None
    # max-file 1: the threshold of the pending trim of ctr.log.1, and the bytes it kept,
    # which count towards max-size as they would in json-file's single file
    trim_threshold: int = 0
    carry: int = 0


class LogRotator:
    def __init__(self, containers, events: EventLog, *, min_interval: float = 0.02,
                 max_interval: float = 1.0) -> None:
        self._containers = containers
        self._events = events
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._watched: dict[str, _Watched] = {}
        self._heap: list[tuple[float, int, str]] = []  # (when, generation, cid)
        self._generation = 0
        self._wakeup = trio.Event()
        self.rotations = 0  # for tests and debugging

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        subscription = self._events.subscribe(_EVENTS, None, None)
        self._rescan()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_events, subscription)
            await self._check_loop()

    # ---- which containers ---------------------------------------------------------------

    async def _follow_events(self, subscription) -> None:
        while True:
            async for ev in subscription.events():
                if ev.action == "start":
                    self._watch(ev.actor_id)
                else:
                    self._watched.pop(ev.actor_id, None)
            # the log dropped us for falling behind: start again from the store
            subscription = self._events.subscribe(_EVENTS, None, None)
            self._rescan()

    def _rescan(self) -> None:
        for rec in self._containers.list():
            if rec.state.status in _LIVE:
                self._watch(rec.id, rec)

    def _watch(self, cid: str, rec=None) -> None:
        try:
            rec = rec or self._containers.get(cid)
            _, log_path = self._containers.log_path(cid)
        except NotFound:
            return
        hc = rec.host_config
        if rec.state.status not in _LIVE or hc.log_max_size <= 0:
            self._watched.pop(cid, None)
            return
        if cid in self._watched and self._watched[cid].log == Path(log_path):
            return  # a rescan: keep its schedule and rotation state
        self._generation += 1
        log_path = Path(log_path)
        max_file = max(1, hc.log_max_file)
        self._watched[cid] = _Watched(log=log_path, ctl=ContainerPaths(cid, log_path.parent).ctl,
                                      max_size=hc.log_max_size, max_file=max_file,
                                      generation=self._generation, last_at=trio.current_time(),
                                      carry=data_bytes(rotated_path(log_path, 1)) if max_file == 1 else 0)
        heapq.heappush(self._heap, (trio.current_time(), self._generation, cid))
        self._wakeup.set()

    # ---- checking ----------------------------------------------------------------------------

    async def _check_loop(self) -> None:
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, generation, cid = heapq.heappop(self._heap)
                w = self._watched.get(cid)
                if w is None or w.generation != generation:
                    continue
                delay = await self._check(cid, w)
                if self._watched.get(cid) is w:
                    heapq.heappush(self._heap, (trio.current_time() + delay, generation, cid))
                now = trio.current_time()
            self._wakeup = trio.Event()
            with trio.move_on_at(self._heap[0][0] if self._heap else float("inf")):
                await self._wakeup.wait()

    async def _check(self, cid: str, w: _Watched) -> float:
        """Stat the log, rotate it if it reached max-size; returns the delay to the next check."""
        now = trio.current_time()
        if w.reopen_at is not None:  # a rotation waits for conmon's reopen
            if w.log.exists():
                w.reopen_at = None
                await self._trim(cid, w)  # conmon writes no more to the renamed file
            elif now - w.reopen_at >= _REOPEN_GRACE:
                # lost (conmon 2.1.6 drops one of two ctl messages read together): ask again
                w.reopen_at = now
                if not await trio.to_thread.run_sync(request_reopen, w.ctl):
                    w.reopen_at = None  # conmon is gone: nothing more will be written
                    await self._trim(cid, w)
                return self.min_interval
            else:
                return self.min_interval
        try:
            size = os.stat(w.log).st_size
        except FileNotFoundError:
            return self.max_interval  # not created yet
        elapsed = max(now - w.last_at, 1e-3)
        grown = size - w.last_size if size >= w.last_size else size
        w.rate = max(grown / elapsed, w.rate / 2)
        w.last_size, w.last_at = size, now
        threshold = w.max_size - w.carry
        if size < threshold:
            return next_check_delay(size, max(threshold, 1), w.rate, min_interval=self.min_interval,
                                    max_interval=self.max_interval)
        try:
            rotated = await trio.to_thread.run_sync(rotate, w.log, w.ctl, w.max_file)
        except OSError as exc:  # e.g. the bundle went away with the container
            log.warning("cannot rotate the log of container %s: %s", cid, exc)
            return self.max_interval
        if not rotated:
            log.warning("log of container %s not rotated: no free inode for conmon's new file", cid)
            return self.max_interval
        self.rotations += 1
        w.last_size, w.reopen_at, w.trim_threshold = 0, now, max(threshold, 0)
        return self.min_interval

    async def _trim(self, cid: str, w: _Watched) -> None:
        if w.max_file > 1:
            return
        try:
            w.carry = await trio.to_thread.run_sync(trim_overflow, rotated_path(w.log, 1),
                                                    w.trim_threshold, w.max_size)
        except OSError as exc:
            log.warning("cannot trim the rotated log of container %s: %s", cid, exc)
            w.carry = 0
