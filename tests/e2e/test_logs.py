"""Log rotation (--log-opt max-size / max-file), `docker logs` across rotated files, a `logs -f`
follower that survives rotations, and a full log filesystem that does not block the container.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.node import DOCKER, destroy_node, node_data_root, start_node

PAD = "p" * 60
# 3000 numbered lines in bursts of 100 (~11 KB of log each) every 0.1 s: about 3 s, and with
# max-size 20k a rotation every ~0.2 s. The first second is quiet so a follower is attached.
BURSTS = ("sleep 1; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo \"line-$i " + PAD + "\"; "
          "if [ $((i % 100)) = 0 ]; then sleep 0.1; fi; done")


def _numbers(text: str) -> list[int]:
    return [int(line.split()[0].split("-")[1]) for line in text.splitlines() if line.startswith("line-")]


def _counter_values(log: Path) -> list[int]:
    """The counters in a raw k8s-file log, in order (records torn at conmon's reads skipped)."""
    return [int(n) for n in re.findall(rb"line-(\d+) p", log.read_bytes())]


def _log_files(node, name: str) -> list[Path]:
    log = Path(node.out("inspect", "-f", "{{.LogPath}}", name))
    return sorted(log.parent.glob(log.name + "*"))


def _wait_exited(node, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while node.out("inspect", "-f", "{{.State.Status}}", name) != "exited":
        assert time.monotonic() < deadline, f"{name} still running after {timeout}s"
        time.sleep(0.1)


def test_rotation_keeps_max_file_files_and_logs_read_across_them(node):
    node.docker("run", "-d", "--name", "lg-rot", "--log-opt", "max-size=20k", "--log-opt", "max-file=3",
                "busybox", "sh", "-c", BURSTS)
    follower = subprocess.Popen([DOCKER, "logs", "-f", "lg-rot"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=node.env())
    try:
        out, err = follower.communicate(timeout=40)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    # the follower was attached before the first line and saw every line once, in order,
    # although the files it read were renamed and deleted under it
    assert follower.returncode == 0, err
    assert _numbers(out.decode()) == list(range(1, 3001))
    _wait_exited(node, "lg-rot")

    files = _log_files(node, "lg-rot")
    names = [f.name for f in files]
    assert names == ["ctr.log", "ctr.log.1", "ctr.log.2"], names
    for f in files[1:]:  # rotated at max-size, give or take one burst of output
        assert 15_000 < f.stat().st_size < 40_000, (f.name, f.stat().st_size)

    kept = _numbers(node.out("logs", "lg-rot"))
    assert kept[-1] == 3000 and kept == list(range(kept[0], 3001))  # a contiguous tail
    assert 300 < len(kept) < 1500
    assert _numbers(node.out("logs", "--tail", "5", "lg-rot")) == list(range(2996, 3001))
    assert _numbers(node.out("logs", "--tail", str(len(kept) + 50), "lg-rot")) == kept

    stamped = node.out("logs", "-t", "lg-rot").splitlines()
    stamp = stamped[10].split()[0]   # a line from the oldest kept file
    since = node.out("logs", "-t", "--since", stamp, "lg-rot").splitlines()
    assert since == stamped[len(stamped) - len(since):]        # a suffix ...
    assert stamped[10] in since and all(line.split()[0] >= stamp for line in since)
    node.docker("rm", "lg-rot")


def test_max_size_alone_truncates_like_json_file_with_one_file(node):
    node.docker("run", "-d", "--name", "lg-one", "--log-opt", "max-size=10k", "busybox", "sh", "-c",
                "sleep 0.5; " + BURSTS.split("; ", 1)[1].replace("3000", "1000"))
    _wait_exited(node, "lg-one")
    files = _log_files(node, "lg-one")
    # ctr.log, and at most the overflow of the last rotation (a sparse ctr.log.1)
    assert [f.name for f in files] in (["ctr.log"], ["ctr.log", "ctr.log.1"])
    assert sum(f.stat().st_blocks * 512 for f in files) < 40_000
    kept = _numbers(node.out("logs", "lg-one"))
    # what json-file would hold: the lines since its last truncation at 10k (at most ~90 of
    # these ~115-byte records), the very last ones included although the rotation that
    # truncated came after them
    assert kept[-1] == 1000 and kept == list(range(kept[0], 1001))
    assert 0 < len(kept) <= 95
    node.docker("rm", "lg-one")


def test_logs_without_log_opts_are_never_rotated(node):
    node.docker("run", "--name", "lg-plain", "busybox", "sh", "-c",
                "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo \"line-$i " + PAD + "\"; done")
    assert [f.name for f in _log_files(node, "lg-plain")] == ["ctr.log"]
    assert _numbers(node.out("logs", "lg-plain")) == list(range(1, 2001))
    node.docker("rm", "lg-plain")


@pytest.fixture
def node_with_tiny_log_fs(busybox_tar):
    """A node whose containers/ (bundles, logs) is an 8 MiB tmpfs mounted under its own data
    root before it starts, so its private mount namespace sees it; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    with node_data_root() as root:
        containers = root / "containers"
        containers.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0711", "tmpfs", str(containers)], check=True)
        try:
            n = start_node(root)
            try:
                n.docker("import", str(busybox_tar), "busybox")
                yield n, containers
            finally:
                destroy_node(n)
        finally:
            subprocess.run(["umount", "-l", str(containers)], check=False)


def test_a_full_log_filesystem_drops_output_but_never_blocks_the_container(node_with_tiny_log_fs):
    """conmon 2.1.6 on ENOSPC warns and drops the lines (ctr_logging.c write_k8s_log): the
    container keeps running and its counter runs on. Were it blocked on a full stdout pipe,
    the log would resume with the next number once space is back, with no gap."""
    node, containers = node_with_tiny_log_fs
    cid = node.out("run", "-d", "busybox", "sh", "-c",
                   "i=0; while :; do i=$((i+1)); echo \"line-$i " + PAD + "\"; done")
    log = containers / cid / "ctr.log"
    filler = containers / "filler"

    def wait_size(minimum: int) -> int:
        deadline = time.monotonic() + 10
        while (size := log.stat().st_size) < minimum:
            assert time.monotonic() < deadline, f"log stuck at {size} bytes"
            time.sleep(0.02)
        return size

    wait_size(100_000)
    before = _counter_values(log)
    log.write_bytes(b"")  # room for the counter to go a long way before the disk is full again
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(filler.unlink, missing_ok=True)
        with open(filler, "wb", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 512)
        full_at = log.stat().st_size
        time.sleep(1.0)  # the container writes on meanwhile; conmon must drain and drop
        assert node.out("inspect", "-f", "{{.State.Status}}", cid) == "running"
        assert log.stat().st_size - full_at < 8192
    resumed = wait_size(log.stat().st_size + 20_000)
    assert resumed
    numbers = [before[-1], *_counter_values(log)]
    gaps = [(a, b) for a, b in itertools.pairwise(numbers) if b != a + 1]
    # one gap where the disk was full, far wider than a 64 KiB pipe's ~500 lines (the other
    # gaps are records torn at conmon's 8 KiB reads, which the regex does not match)
    assert any(b - a > 5000 for a, b in gaps), gaps[:5]
    assert all(b > a for a, b in gaps)
    node.docker("rm", "-f", cid)
