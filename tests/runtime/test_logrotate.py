"""Log rotation (json-file semantics over conmon's k8s-file) and reading across rotated files.

The conmon side is simulated with what conmon 2.1.6 does on a reopen request (ctr_logging.c
reopen_k8s_file): it keeps writing through its open fd until it handles the request, then
opens ctr.log.tmp (O_TRUNC) and renames it over ctr.log. The real thing is exercised in
tests/e2e/test_logs.py.
"""

import os
import threading
import time
from contextlib import aclosing

import pytest
import trio

from tests.support.ctl import CtlReader
from appliance.runtime.logfile import LogFollower, parse_log
from appliance.runtime.logrotate import (
    REOPEN_LOG,
    log_files,
    next_check_delay,
    overflow_start,
    request_reopen,
    rotate,
    rotated_path,
    trim_overflow,
)


def record(i: int, stream: str = "stdout", tag: str = "F") -> bytes:
    return f"2026-11-27T22:51:{i % 60:02d}.{i:09d}+00:00 {stream} {tag} line-{i}\n".encode()


class FakeConmon:
    """Writes records to the log through one fd and honours reopen requests like conmon."""

    def __init__(self, log):
        self.log = log
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def reopen(self) -> None:
        os.close(self.fd)
        tmp = self.log.with_name(self.log.name + ".tmp")
        self.fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        os.rename(tmp, self.log)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def ctl(tmp_path):
    """The bundle's ctl FIFO with conmon's reader on it."""
    path = tmp_path / "ctl"
    os.mkfifo(path)
    reader = CtlReader(path)
    yield path, reader
    reader.close()


def test_log_files_are_in_write_order_and_ignore_other_names(tmp_path):
    log = tmp_path / "ctr.log"
    for name in ("ctr.log", "ctr.log.1", "ctr.log.10", "ctr.log.2", "ctr.log.tmp", "ctr.log.x1", "other.1"):
        (tmp_path / name).write_text(name)
    assert [p.name for p in log_files(log)] == ["ctr.log.10", "ctr.log.2", "ctr.log.1", "ctr.log"]
    (tmp_path / "ctr.log").unlink()
    assert [p.name for p in log_files(log)] == ["ctr.log.10", "ctr.log.2", "ctr.log.1"]
    assert log_files(tmp_path / "missing" / "ctr.log") == []


def test_rotate_shifts_keeps_max_file_and_asks_conmon_to_reopen(tmp_path, ctl):
    ctl_path, reader = ctl
    log = tmp_path / "ctr.log"
    for generation in range(1, 6):
        log.write_text(f"gen{generation}")
        assert rotate(log, ctl_path, max_file=3)
        assert reader.messages() == REOPEN_LOG
    # 3 files with the live one: .1 and .2 are the two newest generations
    assert [p.name for p in log_files(log)] == ["ctr.log.2", "ctr.log.1"]
    assert rotated_path(log, 1).read_text() == "gen5"
    assert rotated_path(log, 2).read_text() == "gen4"


def test_rotate_with_max_file_1_keeps_one_file_for_the_overflow(tmp_path, ctl):
    ctl_path, reader = ctl
    log = tmp_path / "ctr.log"
    for generation in range(1, 4):
        log.write_text(f"gen{generation}")
        assert rotate(log, ctl_path, max_file=1)
        assert reader.messages() == REOPEN_LOG
    assert [p.name for p in log_files(log)] == ["ctr.log.1"]
    assert rotated_path(log, 1).read_text() == "gen3"


def test_overflow_start_is_where_json_files_last_truncation_would_be():
    data = b"aaaa\nbbbb\ncccc\ndddd\n"     # records at 0, 5, 10, 15; 20 bytes
    at = lambda off, n: data[off:off + n]
    assert overflow_start(at, 20, 5, 100) == 5     # "bbbb" starts exactly at the threshold
    assert overflow_start(at, 20, 6, 100) == 10    # crossing inside "bbbb": the next record
    assert overflow_start(at, 20, 16, 100) == 20   # nothing starts after it: no overflow
    assert overflow_start(at, 20, 0, 100) == 0     # the carry alone reached max-size
    # truncated again every max_size after the first truncation: 5, then 5+8 -> 15
    assert overflow_start(at, 20, 5, 8) == 15
    assert overflow_start(lambda off, n: b"torn"[off:off + n], 4, 1, 100) == 4
    big = b"x" * 200_000 + b"\n" + b"y\n"
    assert overflow_start(lambda off, n: big[off:off + n], len(big), 10, 10**6) == 200_001


def test_trim_overflow_keeps_only_what_docker_would_have_written_after_truncating(tmp_path):
    """max-file 1 (Docker truncates before the write that finds the file full): the lines
    written after the crossing survive, as a sparse ctr.log.1 the reader joins with ctr.log."""
    log = tmp_path / "ctr.log"
    before = b"".join(record(i) for i in range(1, 200))
    after = record(200) + record(201, tag="P")
    rotated_path(log, 1).write_bytes(before + after)
    follower = LogFollower(log)

    async def first_read():
        return await follower.read_available()   # holds ctr.log.1 open across the trim

    assert len(trio.run(first_read)) == 200       # 199 + the P record waits for its F
    assert trim_overflow(rotated_path(log, 1), threshold=len(before) - 10, max_size=10**6) == len(after)
    kept = rotated_path(log, 1)
    assert kept.stat().st_size == len(before + after)         # same inode, a hole in front
    assert os.stat(kept).st_blocks * 512 < len(before)        # the hole holds no blocks
    log.write_bytes(record(202))                               # conmon's new file
    entries = parse_log(log.read_bytes())
    assert [e.data for e in entries] == [b"line-202\n"]

    async def read_all():
        return await LogFollower(log).read_available(final=True)

    assert [e.data for e in trio.run(read_all)] == [b"line-200\n", b"line-201line-202\n"]

    async def follow_on():  # the follower that read before the trim goes on without duplicates
        return await follower.read_available(final=True)

    assert [e.data for e in trio.run(follow_on)] == [b"line-201line-202\n"]


def test_trim_overflow_removes_a_file_with_no_overflow(tmp_path):
    rotated = tmp_path / "ctr.log.1"
    rotated.write_bytes(record(1) + record(2))
    size = len(record(1) + record(2))
    assert trim_overflow(rotated, threshold=size, max_size=size) == 0
    assert not rotated.exists()
    assert trim_overflow(rotated, threshold=10, max_size=10) == 0  # already gone


def test_rotate_without_a_live_file_or_conmon(tmp_path):
    log = tmp_path / "ctr.log"
    assert not rotate(log, tmp_path / "ctl", max_file=2)  # nothing to rotate
    log.write_text("x")
    assert rotate(log, tmp_path / "ctl", max_file=2)  # no ctl: conmon gone, file still rotated
    assert rotated_path(log, 1).read_text() == "x"


def test_request_reopen_is_false_when_no_conmon_reads(tmp_path):
    path = tmp_path / "ctl"
    assert not request_reopen(path)
    os.mkfifo(path)
    assert not request_reopen(path)  # a FIFO without a reader: ENXIO


@pytest.mark.parametrize("size,rate,expected", [
    (0, 0.0, 1.0),              # idle: once a second
    (500, 1000.0, 1.0),         # 9500 B left at 1 kB/s: 4.75 s, capped at 1 s
    (9_000, 1000.0, 0.5),       # 1000 B left at 1 kB/s: half of 1 s
    (9_990, 1_000_000.0, 0.02), # flooding: the floor
    (10_000, 0.0, 0.02),        # already due
])
def test_next_check_delay(size, rate, expected):
    assert next_check_delay(size, 10_000, rate, min_interval=0.02, max_interval=1.0) == pytest.approx(expected)


def test_follower_reads_rotated_files_first_and_joins_partials_across_them(tmp_path):
    log = tmp_path / "ctr.log"
    rotated_path(log, 2).write_bytes(record(1) + record(2, tag="P"))
    rotated_path(log, 1).write_bytes(record(3) + record(4, "stderr"))
    log.write_bytes(record(5))

    async def main():
        return await LogFollower(log).read_available(final=True)

    entries = trio.run(main)
    assert [e.data for e in entries] == [b"line-1\n", b"line-2line-3\n", b"line-4\n", b"line-5\n"]
    assert [e.stream for e in entries] == ["stdout", "stdout", "stderr", "stdout"]


def test_follower_survives_rotations_without_loss_or_duplicates(tmp_path, ctl):
    ctl_path, _ = ctl
    log = tmp_path / "ctr.log"
    conmon = FakeConmon(log)
    written = []
    counter = iter(range(1, 10_000))

    def emit(n):
        for _ in range(n):
            i = next(counter)
            conmon.write(record(i))
            written.append(f"line-{i}\n".encode())

    async def main():
        follower = LogFollower(log, poll_interval=0.001)
        got = []
        emit(3)
        got += await follower.read_available()
        for round_ in range(8):
            emit(5)
            rotate(log, ctl_path, max_file=3)     # renamed; conmon still writes to the old file
            emit(2)
            if round_ % 2:
                got += await follower.read_available()  # reads in the window before the reopen
            conmon.reopen()
            emit(4)
            if round_ % 3 == 0:
                emit(1)
                rotate(log, ctl_path, max_file=3)  # two rotations between reads
                conmon.reopen()
            got += await follower.read_available()
        emit(2)
        got += await follower.read_available(final=True)
        return got

    try:
        got = trio.run(main)
    finally:
        conmon.close()
    assert [e.data for e in got] == written
    # what is left on disk is the newest 3 files, contiguous, ending with the last line
    on_disk = [e.data for p in log_files(log) for e in parse_log(p.read_bytes())]
    assert on_disk == written[-len(on_disk):]


def test_follow_keeps_going_while_a_thread_rotates(tmp_path, ctl):
    """follow() against concurrent writes and rotations, as with a live conmon."""
    ctl_path, _ = ctl
    log = tmp_path / "ctr.log"
    conmon = FakeConmon(log)
    total = 3000

    def produce():
        for i in range(1, total + 1):
            conmon.write(record(i))
            if i % 50 == 0:
                time.sleep(0.001)  # let the follower interleave its reads
            if i % 250 == 0:  # max-file large enough that nothing is deleted: no loss is allowed
                rotate(log, ctl_path, max_file=50)
                conmon.write(record(i + 100_000))  # written to the renamed file before the reopen
                conmon.reopen()

    async def main():
        exited = trio.Event()
        got = []
        thread_done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def run():
            try:
                produce()
            finally:
                token.run_sync_soon(thread_done.set)

        async def waiter():
            await thread_done.wait()
            exited.set()

        threading.Thread(target=run, daemon=True).start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            async with aclosing(LogFollower(log, poll_interval=0.0005).follow(exited)) as entries:
                async for e in entries:
                    got.append(int(e.data.decode().split("-")[1]))
        return got

    try:
        got = trio.run(main)
    finally:
        conmon.close()
    expected = []
    for i in range(1, total + 1):
        expected.append(i)
        if i % 250 == 0:
            expected.append(i + 100_000)
    assert got == expected


def test_a_tail_read_skips_rotated_files_it_does_not_need(tmp_path):
    log = tmp_path / "ctr.log"
    rotated_path(log, 3).write_bytes(b"not a log: never read\n" * 3)
    rotated_path(log, 2).write_bytes(record(1) + record(2, tag="P"))
    rotated_path(log, 1).write_bytes(record(3) + record(4))
    log.write_bytes(record(5) + record(6))

    async def tail(n):
        return [e.data for e in await LogFollower(log).read_available(final=True, tail=n)][-n:]

    assert trio.run(tail, 1) == [b"line-6\n"]
    assert trio.run(tail, 2) == [b"line-5\n", b"line-6\n"]
    assert trio.run(tail, 3) == [b"line-4\n", b"line-5\n", b"line-6\n"]
    # the P record of .2 joins line-3 although .1 alone would have made it a line of its own
    assert trio.run(tail, 5) == [b"line-1\n", b"line-2line-3\n", b"line-4\n", b"line-5\n", b"line-6\n"]
