"""Rotation of conmon's k8s-file log the way Docker's json-file rotates (`--log-opt max-size`,
`max-file`): ctr.log -> ctr.log.1 -> ctr.log.2 ..., at most max-file files counting the live one.

conmon 2.1.6 cannot do this itself: its --log-size-max and its reopen request both replace
ctr.log with a fresh file (open ctr.log.tmp O_TRUNC, rename over ctr.log), so whatever the
old file held is gone (measured: --log-size-max 4096 over 200 lines of 85 bytes left one
ctr.log with the last 8 lines, nothing else). Nor can --log-size-max serve as a backstop
next to this: its byte counter is reset only by its own rotation, not by a ctl reopen, so it
would truncate a fresh ctr.log.

Renaming ctr.log away *first* and then asking conmon to reopen keeps it: conmon writes on
through its open fd into the renamed file until it handles the request ("2 0 0\\n" on the
bundle's ctl FIFO, measured at ~5 ms), then starts the new ctr.log. No line is lost or split
between the two (verified with a counter at 30 MB/s of output).

Docker rotates *before* the write that finds the file at max-size, so the lines written
after the crossing start the new file. Rotating from outside lands a little later (the node
checks the size on a schedule), so the renamed file holds some of those lines at its end. With
max-file > 1 that is harmless: they are read from the newest rotated file. With max-file 1
Docker simply truncates, and deleting the renamed file would lose them, often the very last
lines before a crash; so it is renamed like the others and, once conmon has reopened,
trim_overflow() punches out everything before the record where Docker's truncation would
have happened. ctr.log.1 then holds only those overflow lines (a sparse file), they count
towards the next rotation, and the reader sees what Docker's single file would hold.

Caveat kept from conmon: if its reopen cannot create ctr.log.tmp it exits (pexit), leaving the
container with no reader on its stdout. rotate() therefore does nothing while the filesystem
has no free inode, the one resource that open needs.

These are small synchronous file operations; call rotate() from a worker thread (it may
unlink a file of max-size bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path

REOPEN_LOG = b"2 0 0\n"  # conmon's ctl message type 2 (REOPEN_LOGS_EVENT); height/width unused


def rotated_path(log: Path, n: int) -> Path:
    return log.with_name(f"{log.name}.{n}")


def log_files(log: Path) -> list[Path]:
    """The log's files in write order: rotated ones oldest first (highest number), then the
    live one. Missing files are left out; the live one can be missing for a moment (renamed,
    conmon not yet reopened) or before the first start."""
    log = Path(log)
    pattern = re.compile(re.escape(log.name) + r"\.(\d+)")
    numbered = []
    try:
        with os.scandir(log.parent) as entries:
            for e in entries:
                m = pattern.fullmatch(e.name)
                if m:
                    numbered.append((int(m.group(1)), Path(e.path)))
    except FileNotFoundError:
        return []
    out = [p for _, p in sorted(numbered, reverse=True)]
    if log.exists():
        out.append(log)
    return out


def _unread(fd: int) -> int:
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _wait_drained(fds: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_unread(fd) for fd in fds) and time.monotonic() < deadline:
        time.sleep(0.001)


def request_reopen(ctl: Path, *, timeout: float = 1.0) -> bool:
    """Ask the container's conmon to reopen its log; False if no conmon listens (exited).

    conmon keeps ctl open for reading (and a dummy writer) while it lives, so opening
    without a reader fails with ENXIO only once it is gone. conmon 2.1.6 acts on only the
    first message of each read of ctl (and of winsz, which it relays resizes through), so,
    as Runtime._write_ctl does for resizes, this writes only into empty FIFOs and waits
    (bounded) until conmon has read the message. A message lost anyway to a concurrent
    resize shows as a log that does not reappear; the rotator then asks again. Blocks:
    call from a worker thread."""
    try:
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    fds = [fd]
    try:
        with contextlib.suppress(OSError):
            fds.append(os.open(ctl.with_name("winsz"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        _wait_drained(fds, timeout)
        try:
            os.write(fd, REOPEN_LOG)
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EAGAIN):
                return False
            raise
        _wait_drained(fds, timeout)
    finally:
        for f in fds:
            os.close(f)
    return True


def has_free_inode(path: Path) -> bool:
    try:
        st = os.statvfs(path)
    except FileNotFoundError:
        return False
    # f_files == 0: the filesystem does not count inodes (e.g. some FUSE); assume it can create
    return st.f_files == 0 or st.f_favail > 0


def rotate(log: Path, ctl: Path, max_file: int) -> bool:
    """Shift ctr.log.N (dropping those beyond max_file - 1), rename ctr.log to ctr.log.1 and
    ask conmon to reopen. Returns whether it rotated (False: no live file, or no free inode).
    With max_file 1, call trim_overflow() on ctr.log.1 once conmon has reopened.

    Called only for a running container; if its conmon exits meanwhile, the renamed file
    stays and the next run's conmon creates a new ctr.log (it opens with O_CREAT|O_APPEND)."""
    log, ctl = Path(log), Path(ctl)
    if not log.exists() or not has_free_inode(log.parent):
        return False
    keep = max(max_file - 1, 1)  # rotated files kept; max-file 1 keeps one for its overflow
    for path in log_files(log)[:-1]:
        if int(path.name.rsplit(".", 1)[1]) >= keep:
            path.unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        try:
            os.rename(rotated_path(log, n), rotated_path(log, n + 1))
        except FileNotFoundError:
            pass
    os.rename(log, rotated_path(log, 1))
    request_reopen(ctl)
    return True


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)


def record_start_at_or_after(data_at: Callable[[int, int], bytes], offset: int) -> int | None:
    """Offset of the first record starting at or after `offset`, None if the data ends
    before any record end there. data_at(offset, n) reads."""
    if offset <= 0:
        return 0
    pos = offset - 1
    while True:
        chunk = data_at(pos, 1 << 16)
        if not chunk:
            return None
        nl = chunk.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(chunk)


def overflow_start(data_at: Callable[[int, int], bytes], size: int, threshold: int,
                   max_size: int) -> int:
    """Where Docker's single file would start, in a renamed log of `size` bytes: json-file
    truncates before the first write that finds the file at max-size, so the first record
    starting at or after `threshold` (max-size less what the file already held before this
    log began) begins a new file, and so does, again, every record starting max_size
    after the previous start. Returns size when nothing is left over."""
    start = record_start_at_or_after(data_at, threshold)
    if start is None or start >= size:
        return size
    while True:
        following = record_start_at_or_after(data_at, start + max_size)
        if following is None or following >= size:
            return start
        start = following


def data_bytes(path: Path) -> int:
    """Bytes of data in a (possibly trimmed, sparse) log file: size less the leading hole."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        try:
            return size - os.lseek(fd, 0, os.SEEK_DATA)
        except OSError:
            return size if size else 0
    finally:
        os.close(fd)


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)


def trim_overflow(rotated: Path, threshold: int, max_size: int) -> int:
    """max-file 1: drop from the just-rotated file what Docker's truncation would have
    dropped (overflow_start), keeping the lines written after it. Returns the bytes kept,
    which count towards the next rotation as they would in Docker's file.

    Call once conmon has reopened (it no longer writes to this file). The prefix becomes a
    hole (fallocate PUNCH_HOLE, same inode, so a follower reading it goes on undisturbed);
    readers skip the NUL bytes. Where holes are not supported, the file is removed, which
    loses the overflow only."""
    try:
        fd = os.open(rotated, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        start = overflow_start(lambda off, n: os.pread(fd, n, off), size, threshold, max_size)
        if start >= size:
            os.unlink(rotated)
            return 0
        if start > 0 and _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, start) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err, os.strerror(err), str(rotated))
            os.unlink(rotated)
            return 0
        return size - start
    finally:
        os.close(fd)


def next_check_delay(size: int, max_size: int, rate: float, *, min_interval: float,
                     max_interval: float) -> float:
    """When to look at a log again: half of the time it needs, at `rate` bytes/s, to reach
    max_size, within [min_interval, max_interval]. A flooding container is checked every
    min_interval (overshoot about rate * min_interval); an idle one every max_interval."""
    if size >= max_size:
        return min_interval
    if rate <= 0:
        return max_interval
    return max(min_interval, min(max_interval, (max_size - size) / rate / 2))
