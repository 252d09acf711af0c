"""Real-parts networking tests, each inside network namespaces the test makes and deletes.

Topology per test (nothing touches the machine's interfaces or its root namespace):

    appl-test-<r>-node     the node's namespace: the agent (NetworkService) runs here
      up0 192.0.2.1/24 ─── veth ─── eth0 192.0.2.2/24 in appl-test-<r>-cli (an outside client)
    container namespaces   made by the service, pinned in the agent's mount namespace and
                           reached from here through /proc/<agent pid>/root/<pin>

192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed anywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from appliance.runtime.mountns import release_pinned_namespace
from tests.support.agent import AgentError, AgentProcess  # noqa: F401  (AgentError: used by tests)

REPO = Path(__file__).resolve().parents[2]
NODE_IP = "192.0.2.1"
CLIENT_IP = "192.0.2.2"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables-restore", "iptables-save", "nsenter", "unshare", "busybox"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: rc={done.returncode} {done.stderr.strip()}")
    return done


class Agent(AgentProcess):
    """Client of one net_agent process in the node namespace."""

    name = "network agent"

    def __init__(self, node_ns: str, data: Path, options: dict):
        self.node_ns, self.data, self.options = node_ns, data, options
        super().__init__(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node_ns}", sys.executable, "-m", "tests.network.net_agent",
             str(data), json.dumps(options)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}))
        self.pid = self._reply(30)["pid"]

    def __call__(self, method: str, timeout: float = 30, **args):
        self._send({"method": method, "args": args})
        return self._reply(timeout)

    def netns(self, cid: str) -> str:
        """A path that reaches the container's pinned namespace from this (the test's) mount namespace."""
        return f"/proc/{self.pid}/root{self.data}/netns/{cid}"


class Topology:
    def __init__(self, tag: str):
        self.node = f"appl-test-{tag}-node"
        self.client = f"appl-test-{tag}-cli"
        self.processes: list[subprocess.Popen] = []
        self.data = Path(tempfile.mkdtemp(prefix="appl-net-", dir="/tmp"))
        self.agents: list[Agent] = []

    def build(self) -> None:
        for ns in (self.node, self.client):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # Made from inside the node namespace: no interface ever exists in the root namespace.
        sh("ip", "-n", self.node, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
           "netns", self.client)
        sh("ip", "-n", self.node, "addr", "add", f"{NODE_IP}/24", "dev", "up0")
        sh("ip", "-n", self.node, "link", "set", "up0", "up")
        sh("ip", "-n", self.client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", self.client, "link", "set", "eth0", "up")

    def agent(self, **options) -> Agent:
        options.setdefault("dns_upstreams", [])
        options.setdefault("resolv_conf", "/nonexistent")
        a = Agent(self.node, self.data, options)
        self.agents.append(a)
        return a

    def spawn(self, netns: str, *argv: str) -> subprocess.Popen:
        """A long-running process (a server) inside a namespace; killed at teardown."""
        proc = subprocess.Popen(["nsenter", f"--net={netns}", *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def serve_py(self, netns: str, *args: str, udp_port: int | None = None) -> subprocess.Popen:
        """One of probe.py's servers (upstream, sink, udpecho) inside a namespace."""
        proc = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-m", "tests.network.probe", *args],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        if udp_port is not None:
            wait_listening(netns, udp_port, udp=True)
        return proc

    def node_path(self) -> str:
        return f"/run/netns/{self.node}"

    def client_path(self) -> str:
        return f"/run/netns/{self.client}"

    def httpd(self, netns: str, text: str, port: int = 80) -> subprocess.Popen:
        www = self.data / f"www-{secrets.token_hex(4)}"
        www.mkdir()
        (www / "index.html").write_text(text)
        proc = self.spawn(netns, "busybox", "httpd", "-f", "-p", str(port), "-h", str(www))
        wait_listening(netns, port)
        return proc

    def probe(self, netns: str, *args: str, timeout: float = 20) -> dict:
        done = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-m", "tests.network.probe", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def teardown(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for a in self.agents:
            a.close()
        release_pinned_namespace(self.data)
        for ns in (self.node, self.client):
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.data, ignore_errors=True)


def wait_listening(netns: str, port: int, timeout: float = 5, udp: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh("nsenter", f"--net={netns}", "busybox", "netstat", "-lun" if udp else "-ltn", check=False).stdout
        if f":{port} " in out:
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {port} in {netns}")


@pytest.fixture
def topo():
    reason = _unavailable()
    if reason:
        pytest.skip(f"network tests: {reason}")
    t = Topology(secrets.token_hex(3))
    try:
        t.build()
        yield t
    finally:
        t.teardown()
        left = [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith("appl-test-")
                and (n == t.node or n == t.client)]
        assert not left, f"namespaces left behind: {left}"
