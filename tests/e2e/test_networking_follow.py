"""The embedded DNS and the default route follow what the client changes, through the real CLI:
a rename (at once, and after a node restart), DNS over TCP on the resolver's address, and the
default route re-elected when its network is disconnected. The node runs in a network namespace
the test made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.node import REPO, restartable_node, start_node, stop_node

SLEEPER = ("busybox", "sleep", "600")


@pytest.fixture(scope="module")
def box(busybox_tar):
    with restartable_node(busybox_tar, "nf") as holder:
        yield holder


def _settings(node, name: str) -> dict:
    return json.loads(node.out("inspect", name))[0]["NetworkSettings"]["Networks"]


def _resolves(node, asker: str, name: str) -> str:
    """nslookup's output (empty when the name does not resolve)."""
    res = node.docker("exec", asker, "nslookup", "-type=a", name, check=False, timeout=30)
    return res.stdout.decode() if res.returncode == 0 else ""


def _probe_in(node, container: str, *args: str) -> dict:
    """tests/network/probe.py inside the container's network namespace (through its pid)."""
    pid = json.loads(node.out("inspect", container))[0]["State"]["Pid"]
    done = subprocess.run(["nsenter", f"--target={pid}", "--net", sys.executable, "-m", "tests.network.probe",
                           *args], capture_output=True, text=True, cwd=REPO, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_dns_names_follow_a_rename_at_once_and_after_a_node_restart(box):
    node = box["node"]
    node.docker("network", "create", "--subnet", "10.241.0.0/24", "ren")
    try:
        node.docker("run", "-d", "--name", "before", "--network", "ren", *SLEEPER)
        node.docker("run", "-d", "--name", "asker", "--network", "ren", *SLEEPER)
        ip = _settings(node, "before")["ren"]["IPAddress"]
        assert ip in _resolves(node, "asker", "before")
        node.docker("rename", "before", "after")
        assert ip in _resolves(node, "asker", "after")
        assert ip in _resolves(node, "asker", "after.ren")
        assert ip not in _resolves(node, "asker", "before")
        # the node restarts (containers keep running): the sandbox is re-adopted under the new name
        stop_node(node)
        node = box["node"] = start_node(node.data_root, name=node.name)
        assert ip in _resolves(node, "asker", "after")
        assert ip not in _resolves(node, "asker", "before")
        node.docker("rename", "after", "again")
        assert ip in _resolves(node, "asker", "again") and ip not in _resolves(node, "asker", "after")
    finally:
        node.docker("rm", "-f", "before", "after", "again", "asker", check=False)
        node.docker("network", "rm", "ren", check=False)


def test_dns_over_tcp_from_a_container(box):
    node = box["node"]
    node.docker("network", "create", "--subnet", "10.242.0.0/24", "tcpdns")
    try:
        node.docker("run", "-d", "--name", "target", "--network", "tcpdns", "--network-alias", "tgt", *SLEEPER)
        node.docker("run", "-d", "--name", "client", "--network", "tcpdns", *SLEEPER)
        ip = _settings(node, "target")["tcpdns"]["IPAddress"]
        gateway = _settings(node, "client")["tcpdns"]["Gateway"]
        assert f"nameserver {gateway}" in node.out("exec", "client", "cat", "/etc/resolv.conf")
        got = _probe_in(node, "client", "dnstcp", gateway, "12", "target", "tgt", "target.tcpdns")
        assert [(a["rcode"], a["addresses"]) for a in got["answers"]] == [(0, [ip])] * 3, got
        assert got["closed_after"] is not None and got["closed_after"] < 10, got  # idle connections close
    finally:
        node.docker("rm", "-f", "target", "client", check=False)
        node.docker("network", "rm", "tcpdns", check=False)


def _default_route(node, name: str) -> str:
    routes = node.out("exec", name, "ip", "route").splitlines()
    return next((r for r in routes if r.startswith("default")), "")


def test_disconnecting_the_gateway_network_moves_the_default_route(box):
    node = box["node"]
    nets = {"gwa": "10.243.0.0/24", "gwb": "10.244.0.0/24", "gwc": "10.245.0.0/24"}
    for name, subnet in nets.items():
        node.docker("network", "create", "--subnet", subnet, name)
    node.docker("network", "create", "--internal", "--subnet", "10.246.0.0/24", "gwin")
    try:
        node.docker("run", "-d", "--name", "roamer", "--network", "gwa", *SLEEPER)
        node.docker("network", "connect", "gwin", "roamer")
        node.docker("network", "connect", "gwb", "roamer")
        assert _default_route(node, "roamer").startswith("default via 10.243.0.1 dev eth0")
        node.docker("network", "disconnect", "gwa", "roamer")
        assert _default_route(node, "roamer").startswith("default via 10.244.0.1 dev eth2")
        gw = _settings(node, "roamer")["gwb"]["Gateway"]
        assert gw == "10.244.0.1"
        # the route works: the node answers on an address of no network the container is on
        # (gwa's DNS server refuses a stranger, but it answers)
        assert _probe_in(node, "roamer", "dns", "10.243.0.1", "roamer", "A", "3").get("rcode") == 5
        # left with an internal network only: no way out; a new network brings the route back
        node.docker("network", "disconnect", "gwb", "roamer")
        assert _default_route(node, "roamer") == ""
        node.docker("network", "connect", "gwc", "roamer")
        assert _default_route(node, "roamer").startswith("default via 10.245.0.1")
    finally:
        node.docker("rm", "-f", "roamer", check=False)
        node.docker("network", "rm", *nets, "gwin", check=False)
