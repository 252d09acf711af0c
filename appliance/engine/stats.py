"""Resource usage of running containers: `docker stats` samples and `docker top` process lists.

As in dockerd (daemon/stats, daemon/top_unix.go), on cgroup v1: CPU from cpuacct, memory from
the memory controller (limit capped at the host's MemTotal), PIDs from the pids controller,
block I/O from blkio's throttle counters, the host's CPU time from /proc/stat, and `top` runs
the host's `ps` and keeps the rows whose PID is in the container's cgroup. The engine hands
out typed samples; api/ turns them into Docker's JSON.

A container's cgroup is found through its bundle's config.json (cgroupsPath), so this needs
only ContainerService's public view (log_path gives the bundle) and no runtime internals.
The parsers of /proc files and of ps output are pure functions at the bottom.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ..errors import Conflict, InvalidParameter, NotFound, SystemError_
from ..runtime import cgroups
from ..runtime.cgroups import CgroupStats

#: dockerd's collector interval: one sample per second per stream.
INTERVAL = 1.0
#: states in which the container has processes (paused: frozen, still counted, as in dockerd)
_LIVE = ("running", "paused")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class NetStats:
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


@dataclass(frozen=True, slots=True)
class StatsSample:
    """One reading of one container. read_ns == 0: no reading (the container is not running)."""

    read_ns: int = 0
    cgroup: CgroupStats | None = None
    system_cpu_ns: int = 0       # the host's CPU time, /proc/stat, read next to the cgroup's
    online_cpus: int = 0
    memory_limit: int = 0        # the cgroup's limit, or the host's MemTotal when lower
    networks: dict[str, NetStats] = field(default_factory=dict)


NO_SAMPLE = StatsSample()


@dataclass(frozen=True, slots=True)
class StatsFrame:
    """What one line of a stats stream reports: a reading and the one before it (precpu)."""

    id: str
    name: str
    current: StatsSample
    previous: StatsSample


@dataclass(frozen=True, slots=True)
class ProcessList:
    titles: list[str]
    processes: list[list[str]]


class StatsService:
    def __init__(self, containers, events=None, *, interval: float = INTERVAL,
                 proc: Path = Path("/proc")) -> None:
        self._containers = containers
        self._events = events
        self.interval = interval
        self._proc = Path(proc)
        self._machine_memory = mem_total(_read_text(self._proc / "meminfo"))
        # cid -> (config.json inode, mtime_ns, cgroupsPath): config.json is parsed once per run
        self._cgroup_paths: dict[str, tuple[int, int, str]] = {}

    # ---- stats ------------------------------------------------------------------------------

    def open_stream(self, ref: str, *, stream: bool = True,
                    one_shot: bool = False) -> Callable[[], AsyncIterator[StatsFrame]]:
        """Resolve now (a missing container is a JSON 404), stream later (after the headers).

        stream: a frame now, then one every `interval` until the container is removed; a
        stopped container gives empty frames meanwhile, as dockerd's collector publishes.
        Not stream: one frame, with precpu from a reading `interval` earlier so CPU % is
        meaningful (dockerd primes its cpu stats the same way); one_shot skips that wait
        and leaves precpu empty."""
        if stream and one_shot:
            raise InvalidParameter("cannot have stream=true and one-shot=true")
        rec = self._containers.get(ref)
        cid = rec.id

        async def frames() -> AsyncIterator[StatsFrame]:
            previous = NO_SAMPLE
            if not stream:
                current = self.sample(cid)
                if current.read_ns and not one_shot:
                    await trio.sleep(self.interval)
                    previous, current = current, self.sample(cid)
                yield StatsFrame(cid, self._name(cid, rec.name), current, previous)
                return
            next_at = trio.current_time()
            while True:
                try:
                    name = self._containers.get(cid).name
                except NotFound:
                    return  # removed: dockerd closes the stream
                current = self.sample(cid)
                yield StatsFrame(cid, name, current, previous)
                previous = current
                next_at = max(next_at + self.interval, trio.current_time())
                await trio.sleep_until(next_at)

        return frames

    def _name(self, cid: str, fallback: str) -> str:
        try:
            return self._containers.get(cid).name
        except NotFound:
            return fallback

    def sample(self, cid: str) -> StatsSample:
        """Read the container's cgroup counters now; NO_SAMPLE if it is not running."""
        rec = self._containers.get(cid)
        if rec.state.status not in _LIVE:
            return NO_SAMPLE
        path = self._cgroup_path(cid)
        if path is None:
            return NO_SAMPLE
        cg = cgroups.read_stats(path)
        system_ns = system_cpu_ns(_read_text(self._proc / "stat"), _CLK_TCK)
        read_ns = time.time_ns()
        limit = cg.memory_limit or 0
        if self._machine_memory and (limit == 0 or limit > self._machine_memory):
            limit = self._machine_memory
        networks = {}
        if rec.state.pid:
            networks = parse_net_dev(_read_text(self._proc / str(rec.state.pid) / "net" / "dev"))
        return StatsSample(read_ns=read_ns, cgroup=cg, system_cpu_ns=system_ns,
                           online_cpus=online_cpus(), memory_limit=limit, networks=networks)

    def _cgroup_path(self, cid: str) -> str | None:
        _, log_path = self._containers.log_path(cid)
        config = Path(log_path).parent / "config.json"
        try:
            st = config.stat()
        except FileNotFoundError:
            self._cgroup_paths.pop(cid, None)
            return None
        cached = self._cgroup_paths.get(cid)
        if cached and cached[:2] == (st.st_ino, st.st_mtime_ns):
            return cached[2]
        path = cgroups.container_cgroup(config)
        if path is not None:
            if len(self._cgroup_paths) > 4096:
                self._cgroup_paths.clear()
            self._cgroup_paths[cid] = (st.st_ino, st.st_mtime_ns, path)
        return path

    # ---- top --------------------------------------------------------------------------------

    async def top(self, ref: str, ps_args: str = "") -> ProcessList:
        """`ps ps_args` (default -ef) on the host, restricted to the container's processes.

        Columns are the host's view, as with dockerd: a user-namespaced container's root
        shows as its host uid (e.g. 100000)."""
        custom = bool(ps_args)
        ps_args = ps_args or "-ef"
        validate_ps_args(ps_args)
        rec = self._containers.get(ref)
        if rec.state.status not in _LIVE:
            raise Conflict(f"Container {rec.id} is not running")
        path = self._cgroup_path(rec.id)
        if path is None:
            raise Conflict(f"Container {rec.id} is not running")
        pids = cgroups.procs(path)
        args = ps_args.split(" ")
        extra_pid_column = custom and custom_fields(args)
        if extra_pid_column:
            args = ["-opid", *args]
        done = await _ps([*args, ps_pids_arg(pids)])
        if done.returncode != 0:
            # some ps options (f, -C) can't be combined with -q: list everything and filter
            done = await _ps(args)
            if done.returncode != 0:
                first = done.stderr.decode(errors="replace").split("\n", 1)[0]
                raise SystemError_(f"ps: {first or f'exit status {done.returncode}'}")
        result = parse_ps_output(done.stdout.decode(errors="replace"), pids, extra_pid_column)
        if self._events is not None:
            self._events.publish("container", "top", rec.id,
                                 {**rec.config.labels, "image": rec.config.image, "name": rec.name})
        return result


async def _ps(args: list[str]) -> subprocess.CompletedProcess:
    return await trio.run_process(["ps", *args], stdin=subprocess.DEVNULL, capture_stdout=True,
                                  capture_stderr=True, check=False)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


# ---- pure parsers ---------------------------------------------------------------------------

def system_cpu_ns(proc_stat: str, clk_tck: int = 100) -> int:
    """The host's CPU time in ns as dockerd computes it: the first seven fields of the `cpu`
    line of /proc/stat (user nice system idle iowait irq softirq), in clock ticks."""
    for line in proc_stat.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            if len(parts) < 8:
                raise ValueError("invalid number of cpu fields in /proc/stat")
            return sum(int(v) for v in parts[1:8]) * (1_000_000_000 // clk_tck)
    return 0


def online_cpus() -> int:
    """CPUs this process may run on (dockerd: sched_getaffinity)."""
    return len(os.sched_getaffinity(0))


def mem_total(meminfo: str) -> int:
    """MemTotal of /proc/meminfo in bytes (0 if absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) * (1024 if len(parts) > 2 and parts[2] == "kB" else 1)
    return 0


def parse_net_dev(text: str) -> dict[str, NetStats]:
    """/proc/<pid>/net/dev of the container's network namespace, loopback left out (dockerd
    reports the container's endpoints, never lo)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if not sep or name == "lo" or len(fields) < 12 or not all(f.isdigit() for f in fields[:12]):
            continue
        v = [int(f) for f in fields[:12]]
        out[name] = NetStats(rx_bytes=v[0], rx_packets=v[1], rx_errors=v[2], rx_dropped=v[3],
                             tx_bytes=v[8], tx_packets=v[9], tx_errors=v[10], tx_dropped=v[11])
    return out


_PS_ARGS = re.compile(r"\s+(\S*)=\s*(PID\S*)")


def validate_ps_args(ps_args: str) -> None:
    """dockerd refuses renaming the PID column (`-o user=PID`): rows are matched by it."""
    for key, value in _PS_ARGS.findall(ps_args):
        if key != "pid":
            raise InvalidParameter(f'specifying "{key}={value}" is not allowed')


def ps_pids_arg(pids: list[int]) -> str:
    """-q1,2,3: ps prints only these processes."""
    return "-q" + ",".join(str(p) for p in pids)


_LONG_WITH_ARG = {"--cols", "--columns", "--Group", "--group", "--lines", "--pid", "--ppid",
                  "--quick-pid", "--rows", "--sid", "--sort", "--tty", "--User", "--user", "--width"}


def custom_fields(args: list[str]) -> bool:
    """Whether the ps arguments choose their own columns (o, -o, --format), in which case
    dockerd prepends -opid so rows can still be matched (moby top_unix.go customFields)."""
    skip = False
    for arg in args:
        if skip:  # the value of the previous option, like the `root` of `-U root`
            skip = False
            continue
        if arg.startswith(("-o", "o", "--format")):
            return True
        if len(arg) > 2 and arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            if name == "--format":
                return True
            if name in _LONG_WITH_ARG:
                skip = not eq
                continue
        if len(arg) >= 2 and arg[0] == "-":
            if arg[1] == "o":
                return True
            if arg[1] in "CGgOpqstuU":
                skip = len(arg) == 2
                continue
        for i, c in enumerate(arg):
            if c == "o":
                return True
            if c in "pqtUOk":
                skip = i + 1 == len(arg)
                break
    return False


def _fields(line: str) -> list[str]:
    """Split on ASCII whitespace only, like dockerd's fieldsASCII."""
    return [f for f in re.split(r"[\t\n\f\r ]+", line) if f]


def parse_ps_output(output: str, pids: list[int], extra_pid_column: bool = False) -> ProcessList:
    """ps output -> Titles and the rows of the container's processes (moby parsePSOutput).

    Rows whose PID is `-` (threads of `ps m`) follow the process row before them. The last
    column keeps its spaces (a command line)."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    first_col = 0
    if extra_pid_column:
        if not titles or titles[0] != "PID":
            raise SystemError_("Couldn't find PID field in ps output")
        pid_index, first_col = 0, 1
        titles = titles[1:]
    else:
        try:
            pid_index = titles.index("PID")
        except ValueError:
            raise SystemError_("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    processes: list[list[str]] = []
    previous_was_ours = False
    for line in lines[1:]:
        if not line:
            continue
        fields = _fields(line)
        if len(fields) <= pid_index:
            continue
        if fields[pid_index] == "-":
            if previous_was_ours:
                processes.append(_row(titles, fields[first_col:]))
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise SystemError_(f"Unexpected pid '{fields[pid_index]}'") from None
        previous_was_ours = pid in wanted
        if previous_was_ours:
            processes.append(_row(titles, fields[first_col:]))
    return ProcessList(titles, processes)


def _row(titles: list[str], fields: list[str]) -> list[str]:
    n = len(titles)
    if n == 0:
        return fields
    return [*fields[:n - 1], " ".join(fields[n - 1:])]
