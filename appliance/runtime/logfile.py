"""conmon's k8s-file container log: a sans-IO parser, Docker `logs` selection, and a follower.

Each record is `<RFC3339Nano time> <stdout|stderr> <F|P> <bytes>\\n`. conmon writes `P` when a
read ended without a newline or a line exceeded its 8 KiB buffer; the reader joins `P`
records with the same stream's next records up to and including an `F` one. An `F`
record's data gets back its newline, which conmon used as the record terminator.

A rotated log (runtime/logrotate.py) is read as one stream: ctr.log.N ... ctr.log.1, ctr.log.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import trio

from appliance.runtime.logrotate import log_files
from appliance.runtime.timestamps import parse_rfc3339nano

STREAMS = ("stdout", "stderr")
_FLOAT_SLACK_NS = 1000


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
        # NULs precede the first record of a trimmed file (a punched hole: logrotate.py)
        record = record.lstrip(b"\0")
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
    # Seconds as a float carry only ~0.25 us at today's epoch (and * 1e9 rounds to 256 ns):
    # a `--since` copied from a `logs -t` stamp would drop the very entry it names, so the
    # bounds are widened by 1 us, more than the float error.
    since_ns = round(since * 1e9) - _FLOAT_SLACK_NS if since else None
    until_ns = round(until * 1e9) + _FLOAT_SLACK_NS if until else None
    wanted = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}
    return [e for e in chosen
            if (since_ns is None or e.time_ns >= since_ns)
            and (until_ns is None or e.time_ns <= until_ns)
            and e.stream in wanted]


class LogFollower:
    """Reads one container's log incrementally, across rotations (runtime/logrotate.py).

    The first read_available() returns the whole log: the rotated files oldest first, then
    the live one; later calls return what was written since, and follow() yields entries as
    they come. Like `tail -F`, the follower holds the file it reads open: when the rotator
    renames ctr.log away and conmon reopens, it finishes the old file (conmon writes nothing
    more to it once the new ctr.log exists), then continues with the files written after
    it, so a follower that keeps up loses nothing. One that falls behind by more than
    max-file rotations loses what was deleted, as with dockerd.

    Growth is detected by polling every poll_interval seconds (50 ms): conmon appends with
    plain writes, and a stat per follower per 50 ms is negligible next to an inotify
    watcher's fd and thread.

    close() releases the open file; read_available(final=True) and the end of follow() do it.
    """

    def __init__(self, path: Path, *, poll_interval: float = 0.05) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._file: BinaryIO | None = None
        self._offset = 0
        self._reader = LogReader()
        self._started = False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- file work, in a worker thread -------------------------------------------------------

    def _open_chain(self) -> list[BinaryIO]:
        """Open every file of the log in write order, checking no rotation moved them meanwhile."""
        opened: list[BinaryIO] = []
        for _ in range(10):
            for f in opened:
                f.close()
            opened = []
            paths = log_files(self.path)
            try:
                for path in paths:
                    opened.append(open(path, "rb", buffering=0))  # noqa: SIM115 (held across calls)
                if all(_same_file(path, f) for path, f in zip(paths, opened)):
                    return opened
            except FileNotFoundError:
                pass
        return opened  # a rotation every attempt: take the last view

    def _drain(self) -> bytes:
        assert self._file is not None
        fd = self._file.fileno()
        if os.fstat(fd).st_size < self._offset:
            # truncated in place (not something conmon or the rotator do): start over
            self._offset = 0
            self._reader = LogReader()
        self._offset = _skip_hole(fd, self._offset)
        chunks = []
        while True:
            chunk = os.pread(fd, 1 << 20, self._offset)
            if not chunk:
                break
            self._offset += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)

    def _switch_to(self, files: list[BinaryIO], chunks: list[bytes], tail: int | None = None) -> None:
        """Read all but the last of files whole; keep reading the last (the live one).

        tail: only the last `tail` entries are wanted, so older files whose entries would
        not be among them are skipped (the newest ones are parsed to count)."""
        self._file = files[-1] if files else None
        self._offset = 0
        newest = [self._drain()] if self._file is not None else []
        older = files[:-1]
        if tail is not None:
            while older and len(parse_log(b"".join(newest))) <= tail:
                with older.pop() as f:
                    newest.insert(0, _read_all(f.fileno()))
            for f in older:
                f.close()
            older = []
        for f in older:
            with f:
                chunks.append(_read_all(f.fileno()))
        chunks.extend(newest)

    def _read_new(self, tail: int | None = None) -> bytes:
        chunks: list[bytes] = []
        if not self._started:
            self._started = True
            self._switch_to(self._open_chain(), chunks, tail)
            return b"".join(chunks)
        if self._file is None:  # no file existed yet (never started, or removed)
            self._switch_to(self._open_chain(), chunks)
            return b"".join(chunks)
        chunks.append(self._drain())
        try:
            live = os.stat(self.path)
        except FileNotFoundError:
            return b"".join(chunks)  # renamed, conmon not reopened yet: it still writes to ours
        held = os.fstat(self._file.fileno())
        if (live.st_ino, live.st_dev) == (held.st_ino, held.st_dev):
            return b"".join(chunks)
        # conmon has reopened: our file is complete once drained again
        chunks.append(self._drain())
        self.close()
        chain = self._open_chain()
        position = next((i for i, f in enumerate(chain) if _same_inode(os.fstat(f.fileno()), held)), None)
        if position is not None:  # still there, renamed: what follows it is new
            for f in chain[:position + 1]:
                f.close()
            chain = chain[position + 1:]
        # else deleted (max-file reached, or max-file 1's truncation): every file left is newer
        self._switch_to(chain, chunks)
        return b"".join(chunks)

    # -- async API ------------------------------------------------------------------------

    async def read_available(self, *, final: bool = False, tail: int | None = None) -> list[LogEntry]:
        """Entries written since the last call. final=True also flushes unfinished partial
        lines and closes the file (use it when nothing more will be read, e.g. `docker logs`
        without -f). tail, on the first call: at least the last `tail` entries are returned,
        but rotated files older than needed for them are not read."""
        try:
            data = await trio.to_thread.run_sync(self._read_new, tail)
        finally:
            if final:
                self.close()
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
        try:
            while True:
                done = exited.is_set()
                for entry in await self.read_available(final=done):
                    yield entry
                if done:
                    return
                with trio.move_on_after(self.poll_interval):
                    await exited.wait()
        finally:
            self.close()


def _skip_hole(fd: int, offset: int) -> int:
    """The first offset at or after `offset` holding data (past a punched hole)."""
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:  # no data after offset (all hole, or at the end)
            return max(offset, os.fstat(fd).st_size)
        return offset  # EINVAL etc.: no hole support, read from offset


def _read_all(fd: int) -> bytes:
    offset = _skip_hole(fd, 0)
    chunks = []
    while chunk := os.pread(fd, 1 << 20, offset):
        offset += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks)


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _same_file(path: Path, f: BinaryIO) -> bool:
    try:
        return _same_inode(os.stat(path), os.fstat(f.fileno()))
    except FileNotFoundError:
        return False
