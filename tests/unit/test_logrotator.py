"""engine.logrotate.LogRotator over a fake container service: which logs it watches (store scan,
start/die/destroy events) and that it rotates at max-size. Real files and a real ctl FIFO."""

import os

import trio

from tests.support.ctl import CtlReader
from appliance.engine.events import EventLog
from appliance.engine.logrotate import LogRotator
from appliance.errors import NotFound
from appliance.runtime.logrotate import REOPEN_LOG, rotated_path
from appliance.store.records import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    HostConfig,
)


class FakeContainers:
    def __init__(self, root):
        self.root = root
        self.records = {}

    def add(self, cid, *, running=True, max_size=0, max_file=1):
        rec = ContainerRecord(id=cid, name=cid, node="n", tenant="t", created=0, image_id="sha256:x",
                              config=ContainerConfig(image="busybox"),
                              host_config=HostConfig(log_max_size=max_size, log_max_file=max_file),
                              state=ContainerState(status="running" if running else "exited"))
        self.records[cid] = rec
        (self.root / cid).mkdir()
        os.mkfifo(self.root / cid / "ctl")
        return rec

    def list(self):
        return list(self.records.values())

    def get(self, ref):
        try:
            return self.records[ref]
        except KeyError:
            raise NotFound(f"No such container: {ref}") from None

    def log_path(self, ref):
        rec = self.get(ref)
        return rec, self.root / rec.id / "ctr.log"


async def _until(predicate, timeout=5.0):
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def test_rotates_watched_logs_at_max_size_and_follows_events(tmp_path):
    containers = FakeContainers(tmp_path)
    events = EventLog()
    containers.add("a", max_size=1000, max_file=3)
    containers.add("plain")                            # no max-size: never touched
    containers.add("stopped", running=False, max_size=10)
    for cid in ("a", "plain", "stopped"):
        (tmp_path / cid / "ctr.log").write_bytes(b"x" * 2000)
    # conmon's side of each ctl FIFO: a reader, or the rotator's writes would see ENXIO
    readers = {cid: CtlReader(tmp_path / cid / "ctl") for cid in containers.records}

    async def main():
        rotator = LogRotator(containers, events, min_interval=0.01, max_interval=0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)
            await _until(lambda: rotated_path(tmp_path / "a" / "ctr.log", 1).exists())
            assert readers["a"].messages() == REOPEN_LOG
            assert not (tmp_path / "a" / "ctr.log").exists()  # (conmon would recreate it)

            # a container started later is watched from its start event on
            containers.add("b", max_size=100, max_file=1)
            readers["b"] = CtlReader(tmp_path / "b" / "ctl")
            (tmp_path / "b" / "ctr.log").write_bytes(b"y" * 50)
            events.publish("container", "start", "b")
            await trio.sleep(0.1)
            assert rotator.rotations == 1
            (tmp_path / "b" / "ctr.log").write_bytes(b"y" * 99 + b"\n" + b"late line\n")
            await _until(lambda: rotator.rotations == 2)
            assert readers["b"].messages() == REOPEN_LOG
            (tmp_path / "b" / "ctr.log").write_bytes(b"")   # conmon's reopen
            # max-file 1: once conmon has reopened, only the overflow is kept (a hole in front)
            await _until(lambda: (tmp_path / "b" / "ctr.log.1").read_bytes().lstrip(b"\0") == b"late line\n")

            # after die it is no longer watched
            events.publish("container", "die", "b")
            await trio.sleep(0.05)
            (tmp_path / "b" / "ctr.log").write_bytes(b"y" * 150)
            await trio.sleep(0.2)
            assert rotator.rotations == 2
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        for reader in readers.values():
            reader.close()
    assert (tmp_path / "plain" / "ctr.log").stat().st_size == 2000
    assert not rotated_path(tmp_path / "stopped" / "ctr.log", 1).exists()


def test_shifts_up_to_max_file(tmp_path):
    containers = FakeContainers(tmp_path)
    containers.add("a", max_size=10, max_file=2)
    reader = CtlReader(tmp_path / "a" / "ctl")
    log = tmp_path / "a" / "ctr.log"

    async def main():
        rotator = LogRotator(containers, EventLog(), min_interval=0.01, max_interval=0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)
            for generation in range(1, 4):
                log.write_bytes(b"%d" % generation * 20)   # what conmon's reopen would start
                await _until(lambda g=generation: rotator.rotations == g)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        reader.close()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["ctl", "ctr.log.1"]
    assert rotated_path(log, 1).read_bytes() == b"3" * 20


def test_max_file_1_keeps_exactly_what_json_file_would_whatever_the_check_timing(tmp_path):
    """json-file with one file truncates before the write that finds it at max-size. The node
    rotates later, at its own pace; the overflow kept in ctr.log.1 (and counted towards the
    next rotation) must make the visible log the same. Bursts of several records cross
    max-size between checks."""
    from appliance.runtime.logfile import LogFollower

    containers = FakeContainers(tmp_path)
    containers.add("a", max_size=1000, max_file=1)
    log = tmp_path / "a" / "ctr.log"
    ctl = CtlReader(tmp_path / "a" / "ctl")
    records = [f"2026-11-27T22:51:34.{i:09d}+00:00 stdout F line-{i} {'x' * (i % 37)}\n".encode()
               for i in range(1, 400)]

    expected, size = [], 0        # json-file's rule over these records
    for i, rec in enumerate(records, 1):
        if size >= 1000:
            expected, size = [], 0
        expected.append(i)
        size += len(rec)

    async def main():
        rotator = LogRotator(containers, EventLog(), min_interval=0.005, max_interval=0.02)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)
            for start in range(0, len(records), 7):         # bursts of 7 records (~450 bytes)
                os.write(fd, b"".join(records[start:start + 7]))
                await trio.sleep(0.003)
                if ctl.messages():                          # conmon's reopen
                    os.close(fd)
                    fd = os.open(log.with_name("ctr.log.tmp"), os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
                    os.rename(log.with_name("ctr.log.tmp"), log)
            await trio.sleep(0.1)  # let a pending trim happen
            nursery.cancel_scope.cancel()
        os.close(fd)
        assert rotator.rotations >= 10
        return await LogFollower(log).read_available(final=True)

    try:
        entries = trio.run(main)
    finally:
        ctl.close()
    assert [int(e.data.split()[0].split(b"-")[1]) for e in entries] == expected


def test_a_reopen_request_conmon_lost_is_sent_again(tmp_path):
    """conmon 2.1.6 acts on only the first ctl message of a read; a reopen read together
    with a resize is lost, and ctr.log would never come back. The rotator asks again."""
    containers = FakeContainers(tmp_path)
    containers.add("a", max_size=10, max_file=2)
    ctl = CtlReader(tmp_path / "a" / "ctl")
    log = tmp_path / "a" / "ctr.log"
    log.write_bytes(b"x" * 20)

    async def main():
        rotator = LogRotator(containers, EventLog(), min_interval=0.01, max_interval=0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(rotator.run)
            await _until(lambda: rotated_path(log, 1).exists())
            await _until(lambda: ctl.messages() == REOPEN_LOG)   # this one conmon "loses"
            await _until(lambda: ctl.messages() == REOPEN_LOG)   # asked again after the grace
            log.write_bytes(b"")                                 # now it reopens
            await trio.sleep(0.1)
            assert ctl.messages() == b"" and rotator.rotations == 1
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        ctl.close()
