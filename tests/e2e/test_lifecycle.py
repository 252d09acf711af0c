"""Container lifecycle with the real CLI: restart policies and back-off, stop signal and timeout,
--init, pause/unpause, update, health checks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.http import request
from tests.support.poll import inspect, until


def _events(node, name, since, until_=None):
    until_ = until_ or time.time() + 0.01
    out = node.out("events", "--since", f"{since:.3f}", "--until", f"{until_:.3f}",
                   "--filter", f"container={name}", "--format", "{{json .}}")
    return [json.loads(line) for line in out.splitlines() if line]


def _cgroup(node, cid: str, hierarchy: str, file: str) -> str:
    return (Path("/sys/fs/cgroup") / hierarchy / "appliance" / node.name / cid / file).read_text().strip()


# ---- restart policies ---------------------------------------------------------------------------

def test_on_failure_retries_with_backoff_then_stays_exited(node):
    since = time.time()
    cid = node.out("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
    try:
        state = until(lambda: (s := inspect(node, cid)) and s["State"]["Status"] == "exited"
                      and s["RestartCount"] == 2 and s, what="two restarts then exited")
        assert state["State"]["ExitCode"] == 3
        assert state["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        starts = [e["timeNano"] for e in _events(node, "flaky", since) if e["Action"] == "start"]
        dies = [e["timeNano"] for e in _events(node, "flaky", since) if e["Action"] == "die"]
        assert len(starts) == 3 and len(dies) == 3
        # moby's back-off: 100 ms after the first exit, 200 ms after the second
        gaps = [(s - d) / 1e9 for d, s in zip(dies, starts[1:])]
        assert 0.09 <= gaps[0] < 0.6 and 0.19 <= gaps[1] < 0.8, gaps
    finally:
        node.docker("rm", "-f", cid)


def test_always_restarts_until_stopped_and_stop_keeps_it_down(node):
    cid = node.out("run", "-d", "--name", "looper", "--restart", "always", "busybox", "sh", "-c",
                   "echo run; sleep 0.2")
    try:
        until(lambda: inspect(node, cid)["RestartCount"] >= 3, what="three restarts")
        until(lambda: inspect(node, cid)["State"]["Status"] == "running", what="running again")
        node.docker("stop", "-t", "1", cid)
        state = inspect(node, cid)
        assert state["State"]["Status"] == "exited" and not state["State"]["Restarting"]
        count = state["RestartCount"]
        # the back-off is at most 1.6 s by now: nothing may start it again after that
        deadline = time.monotonic() + 1.8
        while time.monotonic() < deadline:
            assert inspect(node, cid)["State"]["Status"] == "exited"
            time.sleep(0.2)
        assert inspect(node, cid)["RestartCount"] == count
        assert node.out("logs", cid).split().count("run") == count + 1
        node.docker("start", cid)  # an explicit start resets the count
        assert inspect(node, cid)["RestartCount"] == 0
    finally:
        node.docker("rm", "-f", cid)


def test_kill_cancels_an_always_policy_and_a_restarting_container_can_be_stopped(node):
    cid = node.out("run", "-d", "--restart", "always", "busybox", "sleep", "300")
    try:
        node.docker("kill", cid)
        assert node.out("wait", cid) == "137"
        assert inspect(node, cid)["State"]["Status"] == "exited"
    finally:
        node.docker("rm", "-f", cid)
    # a container that fails at once spends most of its time in `restarting`
    cid = node.out("run", "-d", "--restart", "always", "busybox", "false")
    try:
        until(lambda: inspect(node, cid)["RestartCount"] >= 5, what="five restarts", timeout=15)
        status = node.out("ps", "--filter", f"id={cid}", "--format", "{{.Status}}")
        assert status.startswith(("Restarting (1)", "Up ")), status
        node.docker("stop", cid)
        assert inspect(node, cid)["State"]["Status"] == "exited"
    finally:
        node.docker("rm", "-f", cid)


def test_unknown_or_misused_restart_policy_gets_dockers_error(node):
    res = node.docker("run", "-d", "--restart", "sometimes", "busybox", "true", check=False)
    assert res.returncode != 0
    assert (b"invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
            b"'on-failure', or 'unless-stopped'") in res.stderr
    res = node.docker("create", "--restart", "always:3", "busybox", "true", check=False)
    assert b"maximum retry count can only be used with 'on-failure'" in res.stderr
    res = node.docker("update", "--restart", "sometimes", "nonexistent", check=False)
    assert res.returncode != 0 and b"invalid restart policy" in res.stderr


# ---- stop signal, stop timeout, init ------------------------------------------------------------

def test_stop_signal_and_stop_timeout_from_create(node):
    cid = node.out("run", "-d", "--stop-signal", "USR1", "busybox", "sh", "-c",
                   "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done")
    try:
        assert inspect(node, cid)["Config"]["StopSignal"] == "USR1"
        node.docker("stop", cid)
        assert node.out("inspect", "-f", "{{.State.ExitCode}}", cid) == "0"
        assert "got-usr1" in node.out("logs", cid)
    finally:
        node.docker("rm", "-f", cid)
    cid = node.out("run", "-d", "--stop-timeout", "1", "busybox", "sleep", "300")  # PID 1 ignores TERM
    try:
        assert inspect(node, cid)["Config"]["StopTimeout"] == 1
        t0 = time.monotonic()
        node.docker("stop", cid)  # no -t: the container's own 1 s, not the default 10 s
        assert time.monotonic() - t0 < 5
        assert node.out("inspect", "-f", "{{.State.ExitCode}}", cid) == "137"
    finally:
        node.docker("rm", "-f", cid)


def test_init_runs_docker_init_as_pid_1_and_forwards_signals(node):
    out = node.out("run", "--rm", "--init", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo")
    assert out == "/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline; echo"
    assert node.out("run", "--rm", "--init", "busybox", "sh", "-c",
                    "touch /sbin/docker-init 2>/dev/null || echo read-only") == "read-only"
    cid = node.out("run", "-d", "--init", "busybox", "sleep", "300")
    try:
        info = inspect(node, cid)
        assert info["HostConfig"]["Init"] is True
        assert info["Path"] == "sleep"  # inspect shows the user's command, as dockerd does
        t0 = time.monotonic()
        node.docker("stop", "-t", "5", cid)  # tini passes TERM on; bare `sleep` as PID 1 would ignore it
        assert time.monotonic() - t0 < 4
        assert node.out("inspect", "-f", "{{.State.ExitCode}}", cid) == "143"
    finally:
        node.docker("rm", "-f", cid)
    assert "Init" not in inspect_created(node)


def inspect_created(node) -> dict:
    cid = node.out("create", "busybox", "true")
    try:
        return inspect(node, cid)["HostConfig"]
    finally:
        node.docker("rm", cid)


# ---- pause / unpause ----------------------------------------------------------------------------

def test_pause_freezes_and_unpause_thaws(node):
    since = time.time()
    cid = node.out("run", "-d", "--name", "freezer", "busybox", "sh", "-c",
                   "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")
    try:
        node.docker("pause", "freezer")
        assert _cgroup(node, cid, "freezer", "freezer.state") == "FROZEN"
        state = inspect(node, cid)["State"]
        assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
        assert node.out("ps", "--filter", "status=paused", "--format", "{{.Names}} {{.Status}}").startswith(
            "freezer Up")
        assert "(Paused)" in node.out("ps", "--filter", "name=freezer", "--format", "{{.Status}}")
        res = node.docker("pause", "freezer", check=False)
        assert f"Container {cid} is already paused".encode() in res.stderr
        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/attach?stream=1&stdout=1",
                                  headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        assert status == 409
        assert json.loads(body)["message"] == f"container {cid} is paused, unpause the container before attach"
        res = node.docker("rm", "freezer", check=False)
        assert b'cannot remove container "/freezer": container is paused and must be unpaused first' in res.stderr
        res = node.docker("start", "freezer", check=False)
        assert b"cannot start a paused container, try unpause instead" in res.stderr
        node.docker("unpause", "freezer")
        assert _cgroup(node, cid, "freezer", "freezer.state") == "THAWED"
        assert inspect(node, cid)["State"]["Status"] == "running"
        res = node.docker("unpause", "freezer", check=False)
        assert f"Container {cid} is not paused".encode() in res.stderr
        actions = [e["Action"] for e in _events(node, "freezer", since)]
        assert actions.index("pause") < actions.index("unpause")
        # stop of a paused container: the signal is delivered once thawed, as dockerd does
        node.docker("pause", "freezer")
        t0 = time.monotonic()
        node.docker("stop", "-t", "5", "freezer")
        assert time.monotonic() - t0 < 4
        assert node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 0"
        res = node.docker("pause", "freezer", check=False)
        assert f"Container {cid} is not running".encode() in res.stderr
    finally:
        node.docker("rm", "-f", cid)


def test_kill_and_force_remove_of_a_paused_container(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    node.docker("pause", cid)
    node.docker("kill", cid)
    assert node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 137"
    node.docker("rm", cid)
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    node.docker("pause", cid)
    node.docker("rm", "-f", cid)
    assert node.out("ps", "-aq", "--filter", f"id={cid}") == ""


# ---- update -------------------------------------------------------------------------------------

MiB = 1024 * 1024


def test_update_limits_of_a_running_container(node):
    cid = node.out("run", "-d", "-m", "32m", "busybox", "sleep", "300")
    try:
        assert inspect(node, cid)["HostConfig"]["MemorySwap"] == 64 * MiB  # dockerd: twice the memory
        assert node.out("update", "-m", "48m", "--memory-swap", "96m", "--cpus", "0.5", "--pids-limit", "20",
                        cid) == cid
        assert int(_cgroup(node, cid, "memory", "memory.limit_in_bytes")) == 48 * MiB
        assert int(_cgroup(node, cid, "memory", "memory.memsw.limit_in_bytes")) == 96 * MiB
        assert _cgroup(node, cid, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _cgroup(node, cid, "pids", "pids.max") == "20"
        host = inspect(node, cid)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == \
            (48 * MiB, 96 * MiB, 500_000_000, 20)
        node.docker("update", "-m", "40m", cid)  # below the swap already set: allowed alone
        assert int(_cgroup(node, cid, "memory", "memory.limit_in_bytes")) == 40 * MiB
        res = node.docker("update", "-m", "200m", cid, check=False)
        assert (b"Memory limit should be smaller than already set memoryswap limit, update the memoryswap "
                b"at the same time") in res.stderr
        res = node.docker("update", "--cpu-period", "50000", cid, check=False)
        assert b"Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set" in res.stderr
        res = node.docker("update", "-m", "1k", cid, check=False)
        assert b"Minimum memory limit allowed is 6MB" in res.stderr
        node.docker("update", "--restart", "on-failure:4", cid)
        assert inspect(node, cid)["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 4}
        node.docker("restart", "-t", "0", cid)  # the next run starts with the updated limits
        assert int(_cgroup(node, cid, "memory", "memory.limit_in_bytes")) == 40 * MiB
    finally:
        node.docker("rm", "-f", cid)


def test_update_memory_below_usage_is_refused_and_changes_nothing(node):
    cid = node.out("run", "-d", "-m", "64m", "busybox", "sh", "-c",
                   "head -c 24m /dev/zero > /dev/shm/fill && echo filled; sleep 300")
    try:
        until(lambda: "filled" in node.out("logs", cid), what="24 MiB of shm in use")
        res = node.docker("update", "-m", "8m", "--memory-swap", "16m", cid, check=False)
        assert res.returncode == 1
        err = res.stderr.decode()
        assert f"Cannot update container {cid}: unable to set memory limit to {8 * MiB} (current usage: " in err
        assert "peak usage: " in err
        assert int(_cgroup(node, cid, "memory", "memory.limit_in_bytes")) == 64 * MiB
        host = inspect(node, cid)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (64 * MiB, 128 * MiB)
    finally:
        node.docker("rm", "-f", cid)


def test_update_refusals(node):
    cid = node.out("run", "-d", "--rm", "busybox", "sleep", "300")
    try:
        res = node.docker("update", "--restart", "always", cid, check=False)
        assert b"Restart policy cannot be updated because AutoRemove is enabled for the container" in res.stderr
        res = node.docker("update", "-m", "64m", cid, check=False)  # no limit, so no swap limit either
        assert b"Memory limit should be smaller than already set memoryswap limit" in res.stderr
    finally:
        node.docker("rm", "-f", cid)
    res = node.docker("update", "-m", "64m", "no-such-container", check=False)
    assert b"No such container: no-such-container" in res.stderr


# ---- health checks ------------------------------------------------------------------------------

def _health(node, cid):
    return inspect(node, cid)["State"].get("Health")


def test_health_cmd_goes_healthy_then_unhealthy(node):
    since = time.time()
    cid = node.out("run", "-d", "--name", "checked", "--health-cmd", "cat /tmp/ok", "--health-interval", "200ms",
                   "--health-retries", "2", "busybox", "sh", "-c", "echo fine > /tmp/ok; sleep 300")
    try:
        until(lambda: (_health(node, cid) or {}).get("Status") == "healthy", what="healthy")
        assert node.out("ps", "--filter", "name=checked", "--format", "{{.Status}}").endswith("(healthy)")
        assert node.out("ps", "--filter", "health=healthy", "--format", "{{.Names}}") == "checked"
        node.docker("exec", cid, "rm", "/tmp/ok")
        until(lambda: (_health(node, cid) or {}).get("Status") == "unhealthy", what="unhealthy")
        health = _health(node, cid)
        assert health["FailingStreak"] >= 2
        assert 1 <= len(health["Log"]) <= 5
        last = health["Log"][-1]
        assert last["ExitCode"] == 1 and "No such file or directory" in last["Output"]
        assert last["Start"] <= last["End"]
        assert any(e["ExitCode"] == 0 and e["Output"] == "fine\n" for e in health["Log"]) or \
            health["FailingStreak"] >= 3
        assert node.out("ps", "--filter", "name=checked", "--format", "{{.Status}}").endswith("(unhealthy)")
        actions = [e["Action"] for e in _events(node, "checked", since)]
        assert "health_status: healthy" in actions and "health_status: unhealthy" in actions
        assert actions.index("health_status: healthy") < actions.index("health_status: unhealthy")
        # Each probe is an exec to dockerd, and shows up as one in the events.
        assert "exec_create: /bin/sh -c cat /tmp/ok" in actions and "exec_start: /bin/sh -c cat /tmp/ok" in actions
        dies = [e["Actor"]["Attributes"]["exitCode"] for e in _events(node, "checked", since)
                if e["Action"] == "exec_die"]
        assert "0" in dies and "1" in dies
        assert node.out("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter",
                        "event=health_status", "--filter", "container=checked", "--format", "{{.Action}}"
                        ).splitlines()[:1] == ["health_status: healthy"]
    finally:
        node.docker("rm", "-f", cid)


def test_health_starting_timeout_and_no_healthcheck(node):
    cid = node.out("run", "-d", "--health-cmd", "true", "--health-interval", "1h", "busybox", "sleep", "300")
    try:
        assert _health(node, cid) == {"Status": "starting", "FailingStreak": 0, "Log": []}
        assert node.out("ps", "--filter", f"id={cid}", "--format", "{{.Status}}").endswith("(health: starting)")
    finally:
        node.docker("rm", "-f", cid)
    cid = node.out("run", "-d", "--health-cmd", "sleep 5", "--health-timeout", "200ms", "--health-interval",
                   "100ms", "--health-retries", "1", "busybox", "sleep", "300")
    try:
        until(lambda: (_health(node, cid) or {}).get("Status") == "unhealthy", what="timed-out probe")
        entry = _health(node, cid)["Log"][0]
        assert (entry["ExitCode"], entry["Output"]) == (-1, "Health check exceeded timeout (200ms)")
    finally:
        node.docker("rm", "-f", cid)


def test_image_healthcheck_is_used_and_no_healthcheck_turns_it_off(node, busybox_tar):
    node.docker("import", "-c", "HEALTHCHECK --interval=100ms --retries=1 CMD exit 3", str(busybox_tar), "hc-image")
    try:
        cid = node.out("run", "-d", "hc-image", "sleep", "300")
        try:
            assert inspect(node, cid)["Config"]["Healthcheck"] == {
                "Test": ["CMD-SHELL", "exit 3"], "Interval": 100_000_000, "Retries": 1}
            until(lambda: (_health(node, cid) or {}).get("Status") == "unhealthy", what="image check fails")
            assert _health(node, cid)["Log"][0]["ExitCode"] == 3
        finally:
            node.docker("rm", "-f", cid)
        cid = node.out("run", "-d", "--no-healthcheck", "hc-image", "sleep", "300")
        try:
            assert inspect(node, cid)["Config"]["Healthcheck"]["Test"] == ["NONE"]
            assert _health(node, cid) is None
            assert node.out("ps", "--filter", f"id={cid}", "--format", "{{.Status}}").startswith("Up")
            assert "(" not in node.out("ps", "--filter", f"id={cid}", "--format", "{{.Status}}")
        finally:
            node.docker("rm", "-f", cid)
    finally:
        node.docker("rmi", "hc-image", check=False)


@pytest.mark.parametrize("flags, message", [
    (("--health-interval", "500us", "--health-cmd", "true"), b"Interval in Healthcheck cannot be less than 1ms"),
    (("--health-retries", "-1", "--health-cmd", "true"), b"--health-retries cannot be negative"),
])
def test_bad_health_settings(node, flags, message):
    res = node.docker("create", *flags, "busybox", "true", check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr
