"""`docker logs`: select from conmon's log files (rotated ones included), then follow the log until
the container exits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from ..runtime.logfile import LogEntry, LogFollower, select

_POLL = 0.05


@dataclass(frozen=True)
class LogOptions:
    stdout: bool = True
    stderr: bool = True
    since: float = 0.0  # unix seconds, 0: from the start
    until: float = 0.0  # unix seconds, 0: no end
    tail: int | None = None
    follow: bool = False


async def read_logs(containers, ref: str, opts: LogOptions) -> AsyncIterator[LogEntry]:
    """Entries of one container, across its rotated files (oldest first); with follow, ends
    once the container has exited and the log is drained. A follower survives rotations:
    it finishes the renamed file before it moves on to the new one (runtime/logfile.py)."""
    rec, path = containers.log_path(ref)
    follower = LogFollower(path)
    try:
        live = opts.follow and containers.is_running(rec.id)
        first = await follower.read_available(final=not live, tail=opts.tail)
        for entry in select(first, stdout=opts.stdout, stderr=opts.stderr, since=opts.since,
                            until=opts.until, tail=opts.tail):
            yield entry
        while live:
            if opts.until and time.time() >= opts.until:
                return
            changed = containers.change_event(rec.id)
            live = containers.is_running(rec.id)
            for entry in select(await follower.read_available(final=not live), stdout=opts.stdout,
                                stderr=opts.stderr, since=opts.since, until=opts.until):
                yield entry
            if live:
                with trio.move_on_after(_POLL):
                    await changed.wait()
    finally:
        follower.close()
