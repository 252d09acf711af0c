"""docker stats (--no-stream, all and named; docker-py streaming) and docker top, against a node.

Figures are asserted with tolerances: a busy loop shows well over 10% CPU, a `-m 64m`
container shows a 64MiB limit and about 20MiB more usage after writing 20MiB to /dev/shm
(tmpfs pages are charged to the writer's memory cgroup).
"""

from __future__ import annotations

import json
import re
import time

import pytest

docker = pytest.importorskip("docker")

_UNITS = {"B": 1, "kB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2, "GB": 1000**3, "GiB": 1024**3}


def _bytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)\s*([A-Za-z]+)", text.strip())
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def _stats_rows(node, *names: str) -> dict[str, dict]:
    out = node.out("stats", "--no-stream", "--format", "{{json .}}", *names, timeout=30)
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["Name"]: row for row in rows}


def _mem(row: dict) -> tuple[float, float]:
    used, limit = row["MemUsage"].split(" / ")
    return _bytes(used), _bytes(limit)


@pytest.fixture(scope="module")
def busy_and_capped(node):
    node.docker("run", "-d", "--name", "st-busy", "busybox", "sh", "-c", "while :; do :; done")
    node.docker("run", "-d", "--name", "st-mem", "-m", "64m", "busybox", "sleep", "300")
    try:
        yield "st-busy", "st-mem"
    finally:
        node.docker("rm", "-f", "st-busy", "st-mem", check=False)


def test_stats_no_stream_for_all_containers_shows_cpu_memory_limit_and_pids(node, busy_and_capped):
    busy, capped = busy_and_capped
    t0 = time.monotonic()
    rows = _stats_rows(node)  # the CLI keeps /events open and asks each container with stream=0
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"docker stats --no-stream took {elapsed:.1f}s"
    assert {busy, capped} <= set(rows)
    assert float(rows[busy]["CPUPerc"].rstrip("%")) > 10
    assert float(rows[capped]["CPUPerc"].rstrip("%")) < 10
    used, limit = _mem(rows[capped])
    assert limit == 64 * 1024**2
    assert 0 < used < 16 * 1024**2
    _, host_limit = _mem(rows[busy])
    assert host_limit > 512 * 1024**2  # no -m: the host's MemTotal
    assert rows[busy]["PIDs"] == "1" and rows[capped]["PIDs"] == "1"
    assert rows[busy]["BlockIO"].count("/") == 1 and re.fullmatch(r"[\d.]+k?M?B / [\d.]+k?M?B", rows[busy]["NetIO"])


def test_memory_usage_grows_when_the_container_allocates(node, busy_and_capped):
    _, capped = busy_and_capped
    before, _ = _mem(_stats_rows(node, capped)[capped])
    node.docker("exec", capped, "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=20M", "count=1")
    try:
        after, limit = _mem(_stats_rows(node, capped)[capped])
        assert limit == 64 * 1024**2
        assert 18 * 1024**2 < after - before < 30 * 1024**2
    finally:
        node.docker("exec", capped, "rm", "-f", "/dev/shm/fill")


def test_dockerpy_streams_samples_a_second_apart_with_precpu_from_the_previous_one(node, busy_and_capped):
    busy, _ = busy_and_capped
    client = docker.DockerClient(base_url=node.docker_host, version="auto", timeout=30)
    try:
        ctr = client.containers.get(busy)
        stream = ctr.stats(stream=True, decode=True)
        samples = [next(stream) for _ in range(3)]
        stream.close()
        first, second, third = samples
        assert first["preread"] == "0001-01-01T00:00:00Z"
        assert first["name"] == f"/{busy}" and first["id"] == ctr.id
        for prev, cur in ((first, second), (second, third)):
            assert cur["precpu_stats"] == prev["cpu_stats"]
            assert cur["preread"] == prev["read"]
            gap = _seconds(cur["read"]) - _seconds(prev["read"])
            assert 0.5 < gap < 2.5
            cpu_delta = cur["cpu_stats"]["cpu_usage"]["total_usage"] - prev["cpu_stats"]["cpu_usage"]["total_usage"]
            system_delta = cur["cpu_stats"]["system_cpu_usage"] - prev["cpu_stats"]["system_cpu_usage"]
            assert cpu_delta / system_delta * cur["cpu_stats"]["online_cpus"] * 100 > 10
        mem = third["memory_stats"]
        assert mem["usage"] > 0 and mem["limit"] > 0 and "total_inactive_file" in mem["stats"]
        assert third["pids_stats"]["current"] == 1

        # stream=0 waits for a second reading so precpu is filled; one-shot does not
        t0 = time.monotonic()
        once = ctr.stats(stream=False)
        assert 0.5 < time.monotonic() - t0 < 5
        assert once["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        t0 = time.monotonic()
        shot = ctr.stats(stream=False, one_shot=True)
        assert time.monotonic() - t0 < 0.9
        assert shot["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        assert shot["cpu_stats"]["cpu_usage"]["total_usage"] > 0
        with pytest.raises(docker.errors.APIError, match="one-shot"):
            client.api._result(client.api._get(client.api._url("/containers/{0}/stats", ctr.id),
                                               params={"stream": 1, "one-shot": 1}), True)
    finally:
        client.close()


def _seconds(rfc3339: str) -> float:
    from appliance.runtime.timestamps import parse_rfc3339nano

    return parse_rfc3339nano(rfc3339) / 1e9


def test_stats_of_a_stopped_container_and_of_a_missing_one(node):
    node.docker("create", "--name", "st-created", "busybox", "true")
    try:
        t0 = time.monotonic()
        row = _stats_rows(node, "st-created")["st-created"]
        assert time.monotonic() - t0 < 5
        assert row["CPUPerc"] == "0.00%" and row["MemUsage"].startswith("0B")
    finally:
        node.docker("rm", "st-created")
    res = node.docker("stats", "--no-stream", "st-missing", check=False)
    assert res.returncode != 0 and b"No such container: st-missing" in res.stderr


def test_top_lists_the_containers_processes_with_host_uids(node):
    node.docker("run", "-d", "--name", "st-top", "busybox", "sleep", "300")
    try:
        node.docker("exec", "-d", "st-top", "sleep", "299")
        deadline = time.monotonic() + 10
        while True:
            lines = node.out("top", "st-top").splitlines()
            if len(lines) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        rows = [line.split() for line in lines[1:]]
        commands = sorted(" ".join(r[7:]) for r in rows)
        assert commands == ["sleep 299", "sleep 300"]
        assert {r[0] for r in rows} == {"100000"}  # container root as the host sees it (userns)
        init_pid = node.out("inspect", "-f", "{{.State.Pid}}", "st-top")
        assert init_pid in {r[1] for r in rows}

        custom = node.out("top", "st-top", "-o", "pid,comm").splitlines()
        assert custom[0].split() == ["PID", "COMMAND"]
        assert sorted(line.split()[1] for line in custom[1:]) == ["sleep", "sleep"]

        bad = node.docker("top", "st-top", "-o", "user=PID", check=False)
        assert bad.returncode != 0 and b'specifying "user=PID" is not allowed' in bad.stderr
    finally:
        node.docker("rm", "-f", "st-top")
    node.docker("create", "--name", "st-top-stopped", "busybox", "true")
    try:
        res = node.docker("top", "st-top-stopped", check=False)
        assert res.returncode != 0 and b"is not running" in res.stderr
    finally:
        node.docker("rm", "st-top-stopped")


def test_top_event_is_published(node):
    node.docker("run", "-d", "--name", "st-top-ev", "busybox", "sleep", "300")
    try:
        since = str(int(time.time()) - 1)
        node.out("top", "st-top-ev")
        events = node.out("events", "--since", since, "--until", str(int(time.time()) + 1),
                          "--filter", "event=top", "--format", "{{.Actor.Attributes.name}}")
        assert "st-top-ev" in events.split()
    finally:
        node.docker("rm", "-f", "st-top-ev")
