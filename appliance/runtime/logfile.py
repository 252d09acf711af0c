"""conmon's k8s-file container log: a sans-IO parser, Docker `logs` selection, and a follower.

Each record is `<RFC3339Nano time> <stdout|stderr> <F|P> <bytes>\\n`. conmon writes `P` when a
read ended without a newline or a line exceeded its 8 KiB buffer; the reader joins `P`
records with the same stream's next records up to and including an `F` one. An `F`
record's data gets back its newline, which conmon used as the record terminator.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

from appliance.runtime.timestamps import parse_rfc3339nano

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True)
class LogEntry:
    timestamp: str   # as conmon wrote it (local time with offset)
    time_ns: int     # the same instant, ns since the epoch
    stream: str      # "stdout" | "stderr"
    data: bytes      # one line, with its trailing newline unless the container never wrote one


class LogReader:
    """Bytes of a k8s-file log in, whole entries out. Keeps an unterminated record and
    unfinished P chains (per stream, since stdout and stderr interleave) between feeds."""

    def __init__(self) -> None:
        self._buf = b""
        self._partial: dict[str, tuple[str, int, bytearray]] = {}

    def feed(self, data: bytes) -> list[LogEntry]:
        self._buf += data
        *records, self._buf = self._buf.split(b"\n")
        out: list[LogEntry] = []
        for record in records:
            entry = self._record(record)
            if entry is not None:
                out.append(entry)
        return out

    def finish(self) -> list[LogEntry]:
        """End of input: P chains never closed by an F become entries without a newline
        (a container whose last write had no newline, like `printf abc`)."""
        out = [LogEntry(ts, ns, stream, bytes(buf))
               for stream, (ts, ns, buf) in self._partial.items()]
        self._partial.clear()
        out.sort(key=lambda e: e.time_ns)
        return out

    def _record(self, record: bytes) -> LogEntry | None:
        parts = record.split(b" ", 3)
        if len(parts) < 3:
            return None  # not a record (conmon never writes these; a torn file might)
        ts_raw, stream_raw, tag = parts[0], parts[1], parts[2]
        content = parts[3] if len(parts) == 4 else b""
        stream = stream_raw.decode("ascii", "replace")
        if stream not in STREAMS:
            return None
        timestamp = ts_raw.decode("ascii", "replace")
        try:
            ns = parse_rfc3339nano(timestamp)
        except ValueError:
            return None
        # The CRI format allows tags like "F:x"; only the first letter carries full/partial.
        if tag[:1] == b"P":
            if stream in self._partial:
                self._partial[stream][2].extend(content)
            else:
                self._partial[stream] = (timestamp, ns, bytearray(content))
            return None
        pending = self._partial.pop(stream, None)
        if pending is not None:
            ts0, ns0, buf = pending
            buf.extend(content)
            buf.extend(b"\n")
            return LogEntry(ts0, ns0, stream, bytes(buf))
        return LogEntry(timestamp, ns, stream, content + b"\n")


def parse_log(data: bytes) -> list[LogEntry]:
    """All entries of a complete log file."""
    reader = LogReader()
    return reader.feed(data) + reader.finish()


def select(entries: Iterable[LogEntry], *, stdout: bool = True, stderr: bool = True,
           since: float = 0.0, until: float = 0.0, tail: int | None = None) -> list[LogEntry]:
    """Docker `logs` selection: last `tail` entries (None: all), then since/until (unix
    seconds, inclusive, 0: no bound), then the stream filter, in dockerd's order: the tail is
    counted over both streams, as its log reader does before the daemon filters streams."""
    chosen = list(entries)
    if tail is not None:
        chosen = chosen[-tail:] if tail > 0 else []
    since_ns = round(since * 1e9) if since else None
    until_ns = round(until * 1e9) if until else None
    wanted = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
    return [e for e in chosen
            if (since_ns is None or e.time_ns >= since_ns)
            and (until_ns is None or e.time_ns <= until_ns)
            and e.stream in wanted]


class LogFollower:
    """Reads one container's log file incrementally.

    read_available() returns what is in the file now; follow() then yields later entries.
    Growth is detected by polling the file size every poll_interval seconds (50 ms): conmon
    appends with plain writes, inotify would add an fd and a thread-free watcher for little
    gain at this rate, and a stat per follower per 50 ms is negligible.
    """

    def __init__(self, path: Path, *, poll_interval: float = 0.05) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._offset = 0
        self._reader = LogReader()

    def _read_new(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        try:
            size = os.fstat(fd).st_size
            if size < self._offset:
                # Truncated under us (conmon's --log-size-max rotation): start over.
                self._offset = 0
                self._reader = LogReader()
            chunks = []
            while True:
                chunk = os.pread(fd, 1 << 20, self._offset)
                if not chunk:
                    break
                self._offset += len(chunk)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    async def read_available(self, *, final: bool = False) -> list[LogEntry]:
        """Entries written since the last call. final=True also flushes unfinished partial
        lines (use it when nothing more will be written, e.g. `docker logs` without -f)."""
        data = await trio.to_thread.run_sync(self._read_new)
        entries = self._reader.feed(data) if data else []
        if final:
            entries += self._reader.finish()
        return entries

    async def follow(self, exited: trio.Event) -> AsyncIterator[LogEntry]:
        """Yield entries as they are written, until `exited` is set and the file is drained.

        Set `exited` only after conmon has exited (Runtime.wait_exit returned): conmon
        drains the container's pipes into the log before it records the exit, so one read
        after that sees everything. Use with contextlib.aclosing().
        """
        while True:
            done = exited.is_set()
            for entry in await self.read_available(final=done):
                yield entry
            if done:
                return
            with trio.move_on_after(self.poll_interval):
                await exited.wait()
