"""Bare crun lifecycle of /bin/true from a busybox rootfs: the floor under `docker run --rm`.

    python bench/bare_crun.py [N]          prints medians for bare crun and for the runtime driver

measure_bare_crun(n) -> list of seconds, one per `crun create; crun start; wait; crun delete`
of /bin/true. The bundle is the one appliance's runtime would write (same oci_config,
Docker's seccomp profile and capabilities, cgroupsPath, no user namespace), so a ratio
against `docker run --rm` isolates what conmon, the engine and the API add.
measure_runtime_lifecycle(n) times the same through appliance.runtime.Runtime (overlay
mount, conmon, pidfd wait, delete) for the middle of that gap.

Both run in a child process in a throwaway private mount namespace: crun needs the cgroup2
`unified` mount hidden on hybrid-cgroup hosts, and unshare/setns are not possible in a
caller that already has threads. The caller's process is left as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PR_SET_CHILD_SUBREAPER = 36


def _run_child(mode: str, n: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(n)]
    argv = ["unshare", "--mount", "--propagation", "private", *argv]
    done = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"bench child failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_bare_crun(n: int = 20) -> list[float]:
    """Seconds per bare crun lifecycle of /bin/true, n runs (after 2 warm-up runs)."""
    return _run_child("bare", n)


def measure_runtime_lifecycle(n: int = 20) -> list[float]:
    """Seconds per Runtime prepare_rootfs/create/start/wait_exit/remove of /bin/true."""
    return _run_child("runtime", n)


# -- child side ---------------------------------------------------------------------------

def _setup(work: Path) -> tuple[Path, str]:
    from tests.support.busybox import build_rootfs

    rootfs = build_rootfs(work / "rootfs")
    return rootfs, f"/appliance-bench-{secrets.token_hex(4)}"


def _spec(cid: str, cgroup_parent: str):
    from appliance.runtime.spec import ContainerSpec

    return ContainerSpec(id=cid, args=("/bin/true",), env=("PATH=/bin:/usr/bin",), hostname="bench",
                         cgroup_path=f"{cgroup_parent}/{cid}")


def _hide_unified() -> None:
    # The child runs under `unshare --mount --propagation private`: a throwaway namespace
    # (no pin needed, nothing outlives the bench), where cgroup2 `unified` can be hidden.
    from appliance.runtime import syscalls
    from appliance.runtime.mountinfo import mount_points

    if "/sys/fs/cgroup/unified" in mount_points():
        syscalls.umount2("/sys/fs/cgroup/unified", syscalls.MNT_DETACH)


def _child_bare(n: int) -> list[float]:
    import ctypes
    import resource

    from appliance.runtime import cgroups
    from appliance.runtime.seccomp import default_seccomp
    from appliance.runtime.spec import DEFAULT_CAPABILITIES, oci_config

    _hide_unified()
    # Our containers' inits are re-parented to us, so we can waitpid() them like an engine.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    crun = shutil.which("crun")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    work = Path(tempfile.mkdtemp(prefix="bare-crun-"))
    rootfs, parent = _setup(work)
    root = work / "crun-root"
    times = []
    try:
        for i in range(n + 2):
            cid = f"b{i}"
            bundle = work / cid
            bundle.mkdir()
            config = oci_config(_spec(cid, parent), str(rootfs), default_seccomp(DEFAULT_CAPABILITIES),
                                (hard, hard))
            config["root"]["readonly"] = True  # the shared rootfs itself: never written
            (bundle / "config.json").write_text(json.dumps(config))
            t0 = time.perf_counter()
            with open(bundle / "crun.err", "wb") as err:
                # The container inherits create's stdio: a pipe there would stay open until
                # the container exits (after start), so crun's stderr goes to a file. No
                # per-call timeout: Popen.wait(timeout) polls with sleeps and would be timed
                # too; the parent bounds the whole child instead.
                quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": err}
                if subprocess.run([crun, "--root", str(root), "create", "--bundle", str(bundle),
                                   "--pid-file", str(bundle / "pid"), cid], check=False, **quiet).returncode:
                    raise RuntimeError(f"crun create failed: {(bundle / 'crun.err').read_text()}")
                pid = int((bundle / "pid").read_text())
                subprocess.run([crun, "--root", str(root), "start", cid], check=True, **quiet)
                _, status = os.waitpid(pid, 0)
                subprocess.run([crun, "--root", str(root), "delete", cid], check=True, **quiet)
            elapsed = time.perf_counter() - t0
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"/bin/true exited {status}")
            if i >= 2:
                times.append(elapsed)
    finally:
        for state in root.glob("*"):  # a run that failed half-way
            subprocess.run([crun, "--root", str(root), "delete", "--force", state.name], check=False,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        cgroups.remove(parent)
        shutil.rmtree(work, ignore_errors=True)
    return times


def _child_runtime(n: int) -> list[float]:
    import trio

    from appliance.runtime import cgroups
    from appliance.runtime.monitor import Runtime

    _hide_unified()
    work = Path(tempfile.mkdtemp(prefix="rt-bench-", dir="/tmp"))
    rootfs, parent = _setup(work)

    async def main() -> list[float]:
        rt = Runtime(work / "node", cgroup_parent=parent)
        times = []
        for i in range(n + 2):
            cid = secrets.token_hex(32)
            t0 = time.perf_counter()
            try:
                merged = await rt.prepare_rootfs(cid, [rootfs])
                launched = await rt.create(_spec(cid, parent), merged)
                await rt.start(cid)
                status = await rt.wait_exit(cid, launched.conmon_pid)
            finally:
                await rt.remove(cid)
            elapsed = time.perf_counter() - t0
            if status.code != 0:
                raise RuntimeError(f"/bin/true exited {status.code}")
            if i >= 2:
                times.append(elapsed)
        return times

    try:
        return trio.run(main)
    finally:
        cgroups.remove(parent)
        shutil.rmtree(work, ignore_errors=True)


def _summary(label: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (f"{label}: median {statistics.median(ms):.1f} ms  min {ms[0]:.1f}  max {ms[-1]:.1f}  "
            f"(n={len(ms)})")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        mode, n = sys.argv[2], int(sys.argv[3])
        times = _child_bare(n) if mode == "bare" else _child_runtime(n)
        print(json.dumps(times))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    n = max(n, 20)
    print(_summary("bare crun create+start+wait+delete of /bin/true", measure_bare_crun(n)))
    print(_summary("appliance Runtime (overlay+conmon+crun) lifecycle", measure_runtime_lifecycle(n)))


if __name__ == "__main__":
    main()
