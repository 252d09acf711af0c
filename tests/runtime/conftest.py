"""Fixtures for the runtime integration tests: a node state dir, a busybox layer, and the
in-namespace driver process (ns_agent.py). Teardown checks that nothing leaked: mounts,
cgroups, conmon processes, and the pinned namespace."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from appliance.runtime import cgroups
from appliance.runtime.mountinfo import read_mountinfo
from appliance.runtime.mountns import pinned_namespace_exists, release_pinned_namespace
from tests.support.agent import AgentError, AgentProcess  # noqa: F401  (AgentError: used by tests)
from tests.support.busybox import build_rootfs

REPO = Path(__file__).resolve().parents[2]
CAP_SYS_ADMIN = 1 << 21


def _integration_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("crun", "conmon", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    with open("/proc/self/status") as f:
        capeff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    if not capeff & CAP_SYS_ADMIN:
        return "needs CAP_SYS_ADMIN"
    if not Path("/sys/fs/cgroup/memory").is_dir():
        return "needs cgroup v1 hierarchies"
    return None


class Agent(AgentProcess):
    """Client of one ns_agent process."""

    name = "runtime agent"

    def __init__(self, state_dir: Path, lower: Path, cgroup_parent: str):
        super().__init__(subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.ns_agent", str(state_dir), str(lower), cgroup_parent],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}))
        assert self._reply(30) == "ready"

    def __call__(self, method: str, timeout: float = 30, **args):
        self._send({"method": method, "args": args, "timeout": timeout})
        return self._reply(timeout + 5)


def tree_fingerprint(root: Path) -> str:
    """Every path, its type, mode, owner, size, mtime and content: proof a layer is untouched."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_uid} {st.st_gid} {st.st_size} {st.st_mtime_ns}\n".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class Node:
    def __init__(self, state_dir: Path, lower: Path, cgroup_parent: str):
        self.state_dir = state_dir
        self.lower = lower
        self.cgroup_parent = cgroup_parent
        self.agent = Agent(state_dir, lower, cgroup_parent)
        self.lower_fingerprint = tree_fingerprint(lower)

    def spawn_agent(self) -> Agent:
        return Agent(self.state_dir, self.lower, self.cgroup_parent)

    def cgroup_file(self, controller: str, cid: str, name: str) -> str:
        return (cgroups.CGROUP_ROOT / controller / self.cgroup_parent.strip("/") / cid / name).read_text()


@pytest.fixture(scope="session")
def node():
    reason = _integration_unavailable()
    if reason:
        pytest.skip(f"runtime integration tests: {reason}")
    # Short and world-searchable: conmon's socket paths must fit in 108 bytes, and a
    # user-namespaced container root (host uid 100000) must be able to reach its bundle.
    state_dir = Path(tempfile.mkdtemp(prefix="appliance-test-", dir="/tmp"))
    state_dir.chmod(0o711)
    cgroup_parent = "/" + state_dir.name
    lower = build_rootfs(state_dir / "lower")
    n = None
    try:
        n = Node(state_dir, lower, cgroup_parent)
        yield n
    finally:
        problems = []
        if n is not None:
            try:
                left = n.agent("leftovers")
                if left:
                    problems.append(f"containers left behind: {left}")
                for cid in left:
                    n.agent("remove", id=cid)
                mounted = n.agent("mounts")
                if [m for m in mounted if not m.startswith(str(state_dir / "ns"))]:
                    problems.append(f"mounts left in the node namespace: {mounted}")
            finally:
                n.agent.close()
            if cgroups.children(cgroup_parent):
                problems.append(f"cgroups left: {sorted(cgroups.children(cgroup_parent))}")
            if tree_fingerprint(lower) != n.lower_fingerprint:
                problems.append("the image layer was modified")
        release_pinned_namespace(state_dir)
        if pinned_namespace_exists(state_dir):
            problems.append("pinned namespace still mounted")
        host_mounts = [m.mount_point for m in read_mountinfo() if m.mount_point.startswith(str(state_dir))]
        if host_mounts:
            problems.append(f"host mounts left: {host_mounts}")
        for _ in range(100):  # conmon exits right after its container; allow it a moment
            stray = [p for p in _processes_mentioning(str(state_dir)) if p != os.getpid()]
            if not stray:
                break
            time.sleep(0.05)
        else:
            problems.append(f"processes left: {stray}")
            for pid in stray:  # ours: their command line names our private state dir
                os.kill(pid, signal.SIGKILL)
        busy = cgroups.remove(cgroup_parent)
        if busy:
            problems.append(f"cgroups busy: {busy}")
        if not host_mounts:
            shutil.rmtree(state_dir, ignore_errors=True)
        assert not problems, problems


@pytest.fixture
def agent(node):
    return node.agent
