"""kill -9 of the node: acknowledged containers survive with a true state; leftovers are removed."""

import signal
import threading
import time

import pytest

from tests.support.node import destroy_node, node_data_root, start_node, stop_node


@pytest.fixture
def crashable(busybox_tar):
    with node_data_root() as root:
        node = start_node(root, name="crashy")
        node.docker("import", str(busybox_tar), "busybox")
        box = {"node": node}
        try:
            yield box
        finally:
            destroy_node(box["node"])


def _restart(box, sig=signal.SIGKILL):
    old = box["node"]
    stop_node(old, sig=sig)
    box["node"] = start_node(old.data_root, name=old.name)
    return box["node"]


def _mounted_ids(node) -> dict[str, set[str]]:
    """Container id -> what of it is mounted in the node's mount namespace (rootfs, sysfs)."""
    prefix = f"{node.data_root}/containers/"
    out: dict[str, set[str]] = {}
    with open(f"/proc/{node.proc.pid}/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(prefix):
                cid, _, what = point[len(prefix):].partition("/")
                out.setdefault(cid, set()).add(what)
    return out


def test_containers_outlive_a_killed_node_and_exits_while_down_are_recorded(crashable):
    node = crashable["node"]
    node.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    node.docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 5")
    node.docker("create", "--name", "idle", "busybox", "true")
    ticker_pid = node.out("inspect", "-f", "{{.State.Pid}}", "ticker")
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait()
    time.sleep(1.5)  # "short" exits while no node is running
    node = _restart(crashable)
    state = node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.FinishedAt}}", "short").split()
    assert state[:2] == ["exited", "5"]
    assert not state[2].startswith("0001")
    assert node.out("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "ticker") == f"running {ticker_pid}"
    assert node.out("inspect", "-f", "{{.State.Status}}", "idle") == "created"
    # the running one keeps its mounts (its own /sys too); the one that ended while down lost them
    ids = {name: node.out("inspect", "-f", "{{.Id}}", name) for name in ("ticker", "short")}
    mounted = _mounted_ids(node)
    assert mounted.get(ids["ticker"]) == {"rootfs", "sysfs"}
    assert ids["short"] not in mounted
    assert node.out("exec", "ticker", "ls", "/sys/class/net").split() == ["eth0", "lo"]
    lines = node.out("logs", "ticker").splitlines()
    deadline = time.monotonic() + 5
    while len(node.out("logs", "ticker").splitlines()) <= len(lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(node.out("logs", "ticker").splitlines()) > len(lines)  # still logging after the restart
    node.docker("stop", "-t", "1", "ticker")  # the re-adopted container is fully controllable
    assert node.out("inspect", "-f", "{{.State.Status}}", "ticker") == "exited"
    assert node.out("wait", "short") == "5"


def test_every_acknowledged_run_survives_kill_9_mid_stream(crashable):
    node = crashable["node"]
    acknowledged: list[str] = []
    stop = threading.Event()

    def runner():
        while not stop.is_set():
            res = node.docker("run", "-d", "busybox", "sleep", "300", check=False, timeout=20)
            if res.returncode == 0:
                acknowledged.append(res.stdout.decode().strip())

    thread = threading.Thread(target=runner)
    thread.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait()
    stop.set()
    thread.join()
    assert len(acknowledged) >= 3
    node = _restart(crashable)
    listed = dict(line.split() for line in node.out("ps", "-a", "--no-trunc", "--format",
                                                    "{{.ID}} {{.State}}").splitlines())
    for cid in acknowledged:
        assert listed.get(cid) == "running", cid
    bundles = {p.name for p in (node.data_root / "containers").iterdir()}
    assert bundles <= set(listed), "leftover bundles of containers the store does not know"
    assert set(_mounted_ids(node)) <= set(listed), "leftover mounts (overlay, sysfs) of unknown containers"
    assert all(state in ("running", "created", "exited") for state in listed.values())


def test_graceful_stop_keeps_containers_running(crashable):
    node = crashable["node"]
    node.docker("run", "-d", "--name", "live", "busybox", "sleep", "300")
    pid = node.out("inspect", "-f", "{{.State.Pid}}", "live")
    node = _restart(crashable, sig=signal.SIGTERM)
    assert node.out("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "live") == f"running {pid}"
    node.docker("kill", "live")
    assert node.out("wait", "live") == "137"
