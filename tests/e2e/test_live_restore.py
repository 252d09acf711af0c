"""Live restore: a node restarted mid-test (SIGTERM or kill -9) finds its containers where it left
them; logs -f, attach and health checks work again; exits while it was down are recorded with
their real code and time; restart policies bring containers back after a reboot-like restart
(their processes really gone). tests/e2e/test_recovery.py covers acknowledged-create safety."""

from __future__ import annotations

import calendar
import json
import os
import select
import signal
import subprocess
import time

import pytest

from tests.e2e.test_attach import Pty
from tests.support.node import DOCKER, restartable_node, start_node, stop_node


@pytest.fixture(scope="module")
def box(busybox_tar):
    with restartable_node(busybox_tar, "lr") as holder:
        yield holder


def _restart(box, sig: int):
    old = box["node"]
    stop_node(old, sig=sig)
    box["node"] = start_node(old.data_root, name=old.name)
    return box["node"]


def _state(node, ref) -> dict:
    return json.loads(node.out("inspect", ref))[0]["State"]


def _lines_from(proc: subprocess.Popen, n: int, timeout: float = 10) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        assert ready, f"only {lines} within {timeout}s"
        line = proc.stdout.readline()
        assert line, f"EOF after {lines}"
        lines.append(line.decode().strip())
    return lines


def _stream(node, *args) -> subprocess.Popen:
    return subprocess.Popen([DOCKER, *args], env=node.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie PID 1 has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_containers_keep_running_and_streams_work_again_after_a_node_restart(box, sig):
    node = box["node"]
    suffix = sig.name.lower()
    ticker = node.out("run", "-d", "--name", f"tick-{suffix}", "busybox", "sh", "-c",
                      "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")
    shell = node.out("run", "-dit", "--name", f"sh-{suffix}", "busybox", "sh")
    paused = node.out("run", "-d", "busybox", "sleep", "300")
    checked = node.out("run", "-d", "--health-cmd", "true", "--health-interval", "100ms", "busybox", "sleep", "300")
    try:
        node.docker("pause", paused)
        follower = _stream(node, "logs", "-f", ticker)
        _lines_from(follower, 3)
        pids = {c: _state(node, c)["Pid"] for c in (ticker, shell, paused, checked)}

        node = _restart(box, sig)
        follower.wait(10)  # the old node's stream ended with it
        for cid, pid in pids.items():
            assert _state(node, cid)["Pid"] == pid
        assert _state(node, paused)["Status"] == "paused"
        assert _state(node, ticker)["Status"] == "running"

        follower = _stream(node, "logs", "-f", "--since", f"{time.time():.3f}", ticker)
        attached = _stream(node, "attach", "--no-stdin", "--sig-proxy=false", ticker)
        try:
            after_logs = _lines_from(follower, 5)
            after_attach = _lines_from(attached, 5)
            assert all(line.startswith("tick ") for line in after_logs + after_attach)
        finally:
            _stop(follower)
            _stop(attached)

        with Pty(node, "attach", shell) as cli:
            cli.send(b"echo still''here\r")
            cli.expect(b"stillhere\r\n")
            cli.send(b"\x10\x11")
            cli.wait()
        assert _state(node, shell)["Status"] == "running"

        node.docker("unpause", paused)
        assert _state(node, paused)["Status"] == "running"
        # health checks resume in the new node: fresh probes land in the log
        last = _state(node, checked)["Health"]["Log"][-1]["End"]
        deadline = time.monotonic() + 10
        while _state(node, checked)["Health"]["Log"][-1]["End"] == last:
            assert time.monotonic() < deadline, "no health probe after the restart"
            time.sleep(0.05)
        assert _state(node, checked)["Health"]["Status"] == "healthy"
        node.docker("stop", "-t", "1", ticker)  # re-adopted containers are fully controllable
        assert _state(node, ticker)["Status"] == "exited"
    finally:
        node.docker("rm", "-f", ticker, shell, paused, checked, check=False)


def _epoch(rfc3339: str) -> float:
    """Docker's RFC 3339 time (nanoseconds, trailing zeros trimmed) as unix seconds."""
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def test_exits_while_the_node_is_down_keep_their_code_and_time_and_policies_apply(box):
    node = box["node"]
    plain = node.out("run", "-d", "busybox", "sh", "-c", "sleep 1; exit 5")
    flaky = node.out("run", "-d", "--restart", "on-failure", "busybox", "sh", "-c",
                     "if [ -e /ran ]; then exec sleep 300; fi; touch /ran; sleep 1; exit 6")
    try:
        stop_node(node, sig=signal.SIGTERM)
        down_since = time.time()
        exit_files = [node.data_root / "containers" / c / "persist" / "exit" for c in (plain, flaky)]
        deadline = time.monotonic() + 10
        while not all(f.exists() for f in exit_files):  # both exit with no node running
            assert time.monotonic() < deadline, "containers did not exit while the node was down"
            time.sleep(0.05)
        back_at = time.time()
        node = box["node"] = start_node(node.data_root, name=node.name)

        state = _state(node, plain)
        assert (state["Status"], state["ExitCode"]) == ("exited", 5)
        # when it really exited, not when the new node noticed
        assert down_since < _epoch(state["FinishedAt"]) < back_at
        assert node.out("wait", plain) == "5"

        state = _state(node, flaky)  # on-failure with exit 6: started again as the node came up
        assert state["Status"] == "running" and state["ExitCode"] == 0
        assert node.out("exec", flaky, "ls", "/ran") == "/ran"
    finally:
        node.docker("rm", "-f", plain, flaky, check=False)


def test_restart_policies_bring_containers_back_after_a_reboot_like_restart(box):
    node = box["node"]
    always = node.out("run", "-d", "--restart", "always", "busybox", "sleep", "300")
    unless = node.out("run", "-d", "--restart", "unless-stopped", "busybox", "sleep", "300")
    unless_stopped = node.out("run", "-d", "--restart", "unless-stopped", "busybox", "sleep", "300")
    always_stopped = node.out("run", "-d", "--restart", "always", "busybox", "sleep", "300")
    plain = node.out("run", "-d", "busybox", "sleep", "300")
    ids = (always, unless, unless_stopped, always_stopped, plain)
    try:
        node.docker("stop", "-t", "0", unless_stopped, always_stopped)
        running = (always, unless, plain)
        pids = {c: _state(node, c)["Pid"] for c in running}
        conmons = {c: int((node.data_root / "containers" / c / "conmon.pid").read_text()) for c in running}

        stop_node(node, sig=signal.SIGTERM)
        for cid in running:  # the "reboot": monitor first (so no exit is recorded), then the process
            os.kill(conmons[cid], signal.SIGKILL)
            os.kill(pids[cid], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not all(_gone(p) for p in (*pids.values(), *conmons.values())):
            assert time.monotonic() < deadline, "killed processes did not go away"
            time.sleep(0.05)
        node = box["node"] = start_node(node.data_root, name=node.name)

        for cid in (always, unless):
            state = _state(node, cid)
            assert state["Status"] == "running" and state["Pid"] != pids[cid], cid
        assert _state(node, always_stopped)["Status"] == "running"  # dockerd: `always` even if stopped
        assert _state(node, unless_stopped)["Status"] == "exited"   # stopped by hand stays stopped
        state = _state(node, plain)
        assert (state["Status"], state["ExitCode"]) == ("exited", 255)
        node.docker("stop", "-t", "0", always)
        assert _state(node, always)["Status"] == "exited"
    finally:
        node.docker("rm", "-f", *ids, check=False)
