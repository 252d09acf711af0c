"""`docker run --rm busybox true` latency against a real node, next to the bare crun floor, plus
the node's memory: idle RSS and RSS per extra running container.

    python bench/run_latency.py                  # 20 timed runs after 2 warm-ups, 10 idle containers
    python bench/run_latency.py --runs 50 --containers 20

Starts its own node (tests/support/node.py) in a fresh temporary directory, imports a busybox
built from the host's busybox-static, measures, then removes every container, stops the node and
deletes the directory. Needs root, crun, conmon and the docker CLI (APPLIANCE_TEST_DOCKER or
/usr/local/bin/docker). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bare_crun import measure_bare_crun, measure_runtime_lifecycle
from tests.support.busybox import build_rootfs, rootfs_tar_bytes
from tests.support.node import DOCKER, Node, destroy_node, node_data_root, start_node

TARGET_RATIO = 3.0


# ---- statistics -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    n: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float


def summarize(seconds: list[float]) -> Summary:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[max(0, math.ceil(0.9 * len(ms)) - 1)]  # nearest rank
    return Summary(len(ms), statistics.median(ms), p90, ms[0], ms[-1])


# ---- process memory ---------------------------------------------------------------------------

def vm_rss_kib(pid: int) -> int:
    """VmRSS of pid in KiB (resident: anon + file-backed + shmem, shared pages counted in full)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pss_kib(pid: int) -> int:
    """Pss of pid in KiB: shared pages divided among the processes mapping them."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss for pid {pid}")


def conmon_pids(data_root: Path) -> list[int]:
    """The conmon monitors of this node's containers: argv[0] is conmon and the argv names data_root."""
    marker = str(data_root).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"conmon" and any(marker in a for a in argv):
            pids.append(int(entry))
    return pids


# ---- the measurements -------------------------------------------------------------------------

def _docker(node: Node, *args: str) -> str:
    res = subprocess.run([DOCKER, *args], check=False, env=node.env(), stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} -> rc {res.returncode}: {res.stderr.decode().strip()}\n"
                           f"node log tail:\n{node.log_tail()}")
    return res.stdout.decode().strip()


def time_command(node: Node, args: list[str], runs: int, warmup: int) -> list[float]:
    """Wall seconds of `docker ARGS`, from fork to exit, for `runs` runs after `warmup` ones."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        res = subprocess.run([DOCKER, *args], check=False, env=node.env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        elapsed = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} -> rc {res.returncode}: {res.stderr.decode().strip()}")
        if i >= warmup:
            times.append(elapsed)
    return times


@dataclass(frozen=True)
class MemoryFigures:
    idle_fresh_kib: int      # node VmRSS right after start + busybox import
    idle_kib: int            # node VmRSS after the latency runs, no container running
    running_kib: int         # node VmRSS with `containers` sleep containers running
    conmon_rss_kib: list[int]
    conmon_pss_kib: list[int]
    node_pss_idle_kib: int
    node_pss_running_kib: int
    workload_rss_kib: list[int]  # the containers' own processes (busybox sleep), not counted
    containers: int

    @property
    def per_container_kib(self) -> float:
        return (self.running_kib - self.idle_kib + sum(self.conmon_rss_kib)) / self.containers

    @property
    def per_container_pss_kib(self) -> float:
        return (self.node_pss_running_kib - self.node_pss_idle_kib + sum(self.conmon_pss_kib)) / self.containers


def measure_memory(node: Node, containers: int, idle_fresh_kib: int) -> MemoryFigures:
    pid = node.proc.pid
    idle, idle_pss = vm_rss_kib(pid), pss_kib(pid)
    ids = [_docker(node, "run", "-d", "--name", f"idle{i}", "busybox", "sleep", "300")
           for i in range(containers)]
    running, running_pss = vm_rss_kib(pid), pss_kib(pid)
    monitors = conmon_pids(node.data_root)
    if len(monitors) != containers:
        raise RuntimeError(f"expected {containers} conmon monitors, found {len(monitors)}: {monitors}")
    workload = [int(p) for p in _docker(node, "inspect", "-f", "{{.State.Pid}}", *ids).split()]
    figures = MemoryFigures(idle_fresh_kib=idle_fresh_kib, idle_kib=idle, running_kib=running,
                            conmon_rss_kib=[vm_rss_kib(p) for p in monitors],
                            conmon_pss_kib=[pss_kib(p) for p in monitors],
                            node_pss_idle_kib=idle_pss, node_pss_running_kib=running_pss,
                            workload_rss_kib=[vm_rss_kib(p) for p in workload], containers=containers)
    _docker(node, "rm", "-f", *ids)
    return figures


# ---- report -----------------------------------------------------------------------------------

_LABEL = 58


def _row(label: str, s: Summary) -> str:
    return f"  {label:<{_LABEL}}{s.median_ms:8.1f} {s.p90_ms:8.1f} {s.min_ms:8.1f} {s.max_ms:8.1f} {s.n:4d}"


def _mem(label: str, kib: float, note: str = "") -> str:
    return f"  {label:<{_LABEL}}{kib / 1024:8.2f}" + (f"   {note}" if note else "")


def report(run: Summary, cli: Summary, lifecycle: Summary, bare: Summary, mem: MemoryFigures) -> str:
    ratio = run.median_ms / bare.median_ms
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    rest = run.median_ms - cli.median_ms - lifecycle.median_ms
    n = mem.containers
    lines = [
        f"{'latency (ms, wall clock)':<{_LABEL + 2}}{'median':>8} {'p90':>8} {'min':>8} {'max':>8} {'n':>4}",
        _row("docker run --rm busybox true", run),
        _row("docker version (CLI start + /_ping + /version)", cli),
        _row("Runtime lifecycle (overlay+conmon+crun, no API)", lifecycle),
        _row("bare crun create+start+wait+delete of /bin/true", bare),
        (f"  {'ratio docker run / bare crun (medians)':<{_LABEL}}{ratio:7.2f}x   "
         f"target <= {TARGET_RATIO:.0f}x: {verdict}"),
        (f"  {'split of the docker run median':<{_LABEL}}CLI floor {cli.median_ms:.1f} + runtime "
         f"{lifecycle.median_ms:.1f} + engine/API rest {rest:.1f}"),
        "",
        f"{'memory (MiB)':<{_LABEL + 2}}{'value':>8}",
        _mem("node VmRSS, idle after start + busybox import", mem.idle_fresh_kib),
        _mem("node VmRSS, idle after the latency runs", mem.idle_kib),
        _mem(f"node VmRSS with {n} running containers", mem.running_kib,
             f"delta {(mem.running_kib - mem.idle_kib) / 1024:+.2f}"),
        _mem(f"conmon VmRSS, sum over {len(mem.conmon_rss_kib)} monitors", sum(mem.conmon_rss_kib),
             f"each {min(mem.conmon_rss_kib) / 1024:.2f}..{max(mem.conmon_rss_kib) / 1024:.2f}"),
        _mem(f"per extra running container: (node delta + conmon)/{n}", mem.per_container_kib,
             f"PSS basis {mem.per_container_pss_kib / 1024:.2f}"),
        _mem("not counted: container process (busybox sleep) VmRSS", statistics.median(mem.workload_rss_kib),
             "median; crun exits after start"),
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def busybox_node():
    """A real node with busybox imported, and its VmRSS (KiB) right after: removed afterwards."""
    with node_data_root() as work:  # o+x all the way down, as user-namespaced containers need
        tar = work / "busybox.tar"
        tar.write_bytes(rootfs_tar_bytes(build_rootfs(work / "rootfs")))
        node = start_node(work / "node", name=f"bench{os.getpid()}")
        try:
            _docker(node, "import", str(tar), "busybox")
            yield node, vm_rss_kib(node.proc.pid)
        finally:
            destroy_node(node)


def _environment() -> str:
    crun = subprocess.run(["crun", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    conmon = subprocess.run(["conmon", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"host: {platform.node()}  kernel {platform.release()}  cpus {len(os.sched_getaffinity(0))}  "
            f"python {platform.python_version()}  loadavg {load}\n"
            f"{crun[0] if crun else 'crun ?'}; {conmon[0] if conmon else 'conmon ?'}; docker CLI {DOCKER}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per figure (at least 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first (docker figures)")
    ap.add_argument("--containers", type=int, default=10, help="sleep containers for the RSS figure")
    args = ap.parse_args(argv)
    runs = max(args.runs, 20)

    with busybox_node() as (node, idle_fresh):
        print(f"timing {runs} x `docker run --rm busybox true` after {args.warmup} warm-ups ...", flush=True)
        run = summarize(time_command(node, ["run", "--rm", "busybox", "true"], runs, args.warmup))
        cli = summarize(time_command(node, ["version"], runs, args.warmup))
        print(f"timing {runs} x Runtime lifecycle and bare crun lifecycle ...", flush=True)
        lifecycle = summarize(measure_runtime_lifecycle(runs))
        bare = summarize(measure_bare_crun(runs))
        print(f"starting {args.containers} x `sleep 300` for the memory figures ...", flush=True)
        mem = measure_memory(node, args.containers, idle_fresh)
    print()
    print(_environment())
    print(report(run, cli, lifecycle, bare, mem))
    return 0 if run.median_ms / bare.median_ms <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
