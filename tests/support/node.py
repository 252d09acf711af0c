"""Start a real `appliance serve` process for a test and tear down everything it made."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCKER = os.environ.get("APPLIANCE_TEST_DOCKER", "/usr/local/bin/docker")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    data_root: Path
    name: str
    docker_host: str
    proc: subprocess.Popen
    log_path: Path
    docker_config: Path
    netns: str = ""
    extra_env: dict = field(default_factory=dict)

    def env(self) -> dict:
        return {**os.environ, "DOCKER_HOST": self.docker_host, "DOCKER_CONFIG": str(self.docker_config),
                **self.extra_env}

    def docker(self, *args: str, input: bytes | str | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess:
        if isinstance(input, str):
            input = input.encode()
        res = subprocess.run([DOCKER, *args], input=input, capture_output=True, timeout=timeout,
                             env=self.env(), stdin=None if input is not None else subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> rc {res.returncode}\n"
                                 f"stdout: {res.stdout.decode(errors='replace')}\n"
                                 f"stderr: {res.stderr.decode(errors='replace')}\n"
                                 f"node log tail:\n{self.log_tail()}")
        return res

    def out(self, *args: str, **kw) -> str:
        return self.docker(*args, **kw).stdout.decode().strip()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@contextlib.contextmanager
def node_data_root():
    """A short data root whose every ancestor is o+x, as user-namespaced container root needs
    (pytest's own tmp dirs are 0700); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="appl-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        # Whatever happened to the node (it may never have become ready), its pinned mount
        # namespace must go, or the directory cannot be removed and the mount outlives the test.
        # Nodes may live in the root itself or one level down (bench/: ROOT/node).
        for root in [path, *(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []:
            release_pin(root)
            delete_netns(netns_name(root))
        shutil.rmtree(path, ignore_errors=True)


def start_node(data_root: Path, *, name: str | None = None, extra_args: tuple[str, ...] = (),
               timeout: float = 30, program: tuple[str, ...] = (sys.executable, "-m", "appliance"),
               gossip_bind: str | None = "127.0.0.1:0", netns: str | None = None) -> Node:
    """``gossip_bind``: passed as --gossip-bind unless extra_args has one; loopback and a free
    port by default, so test nodes never take the well-known 7946 or listen off loopback.

    ``netns``: the network namespace the node runs in (its bridge, rules and container veths
    live there, never in the machine's). None: the data root's own namespace, made on first
    start and kept across restarts of the node, removed with the data root."""
    data_root.mkdir(parents=True, exist_ok=True)
    netns = netns or ensure_netns(netns_name(data_root))
    name = name or f"t{secrets.token_hex(4)}"
    sock = data_root / "docker.sock"
    log_path = data_root / "node.log"
    if gossip_bind and "--gossip-bind" not in extra_args:
        extra_args = ("--gossip-bind", gossip_bind, *extra_args)
    cmd = [*program, "serve", "--data-root", str(data_root),
           "-H", f"unix://{sock}", "--node-name", name, "--log-level", "debug", *extra_args]
    log = open(log_path, "ab")
    from_source = program[1:3] == ("-m", "appliance")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if from_source:
        env["PYTHONPATH"] = str(REPO)
    # A zipapp must run on its own: not from the checkout's cwd or PYTHONPATH.
    # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup hierarchies.
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", *cmd], stdout=subprocess.PIPE, stderr=log,
                            cwd=REPO if from_source else data_root, env=env)
    log.close()
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(b"export DOCKER_HOST="):
            break
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}:\n{log_path.read_text()}")
    else:
        proc.kill()
        raise RuntimeError(f"node not ready after {timeout}s:\n{log_path.read_text()}")
    host = line.decode().strip().split("=", 1)[1]
    config_dir = data_root / "docker-config"
    config_dir.mkdir(exist_ok=True)
    return Node(data_root=data_root, name=name, docker_host=host, proc=proc, log_path=log_path,
                docker_config=config_dir, netns=netns)


def stop_node(node: Node, *, sig: int = signal.SIGTERM) -> None:
    if node.proc.poll() is None:
        node.proc.send_signal(sig)
        try:
            node.proc.wait(10)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(5)
    if node.proc.stdout:
        node.proc.stdout.close()


def _pids_of_node(data_root: Path) -> list[int]:
    """conmon monitors (and their containers) this node started: found by their bundle paths."""
    pids = []
    marker = str(data_root).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if cmdline.startswith(b"conmon\0") or b"/conmon\0" in cmdline.split(b"\0", 1)[0] + b"\0":
            if marker in cmdline:
                pids.append(int(entry))
    return pids


def destroy_node(node: Node) -> None:
    """Remove containers through the API, stop the node, then clean what could be left."""
    if node.proc.poll() is None:
        ids = node.docker("ps", "-aq", check=False).stdout.decode().split()
        if ids:
            node.docker("rm", "-f", *ids, check=False, timeout=60)
    stop_node(node)
    for pid in _pids_of_node(node.data_root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    release_node_leftovers(node.data_root, node.name)
    if node.netns == netns_name(node.data_root):  # its own namespace, not one a test shares
        delete_netns(node.netns)


def netns_name(data_root: Path) -> str:
    return f"appl-{data_root.name.removeprefix('appl-')}"


def ensure_netns(name: str) -> str:
    """A network namespace for test nodes, with loopback up (made by the test, never the host's)."""
    if not Path(f"/run/netns/{name}").exists():
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def delete_netns(name: str) -> None:
    if Path(f"/run/netns/{name}").exists():
        subprocess.run(["ip", "netns", "del", name], check=False)


def release_pin(data_root: Path) -> None:
    if (data_root / "ns").is_dir():
        subprocess.run([sys.executable, "-m", "appliance", "release-namespace", "--data-root", str(data_root)],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def release_node_leftovers(data_root: Path, name: str) -> None:
    release_pin(data_root)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / "appliance" / name
        if parent.is_dir():
            for child in sorted(parent.rglob("*"), reverse=True):
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
            try:
                parent.rmdir()
            except OSError:
                pass


@contextlib.contextmanager
def restartable_node(busybox_tar: Path, prefix: str):
    """A node of the test's own that the test may stop and start again: yields a holder whose
    "node" a restart replaces (the data root and namespace stay)."""
    with node_data_root() as root:
        holder = {"node": start_node(root, name=f"{prefix}{secrets.token_hex(4)}")}
        holder["node"].docker("import", str(busybox_tar), "busybox")
        try:
            yield holder
        finally:
            destroy_node(holder["node"])
