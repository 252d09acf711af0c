"""/containers/{id}/stats and /containers/{id}/top: thin handlers over engine.stats.

The JSON is moby's api/types/container StatsResponse as dockerd fills it on cgroup v1 (the
`omitempty` fields left out when zero, like Go's encoder), one object per line when streamed.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response, request

from ...engine.stats import StatsFrame, StatsSample, StatsService
from ...runtime.timestamps import format_rfc3339nano
from .params import flag

#: memory.stat keys dockerd copies into memory_stats.stats on cgroup v1 (daemon/stats_unix.go)
MEMORY_STAT_KEYS = (
    "active_anon", "active_file", "cache", "hierarchical_memory_limit",
    "hierarchical_memsw_limit", "inactive_anon", "inactive_file", "mapped_file", "pgfault",
    "pgmajfault", "pgpgin", "pgpgout", "rss", "rss_huge", "swap", "total_active_anon",
    "total_active_file", "total_cache", "total_inactive_anon", "total_inactive_file",
    "total_mapped_file", "total_pgfault", "total_pgmajfault", "total_pgpgin", "total_pgpgout",
    "total_rss", "total_rss_huge", "total_swap", "total_unevictable", "total_writeback",
    "unevictable", "writeback",
)
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as dockerd sends for "no reading"
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")


def blueprint(engine, stats: StatsService | None = None) -> Blueprint:
    bp = Blueprint("stats", __name__)
    service = stats or getattr(engine, "stats", None) or StatsService(engine.containers, engine.events)

    @bp.get("/containers/<ref>/stats")
    async def container_stats(ref):
        stream = flag("stream", True)
        frames = service.open_stream(ref, stream=stream, one_shot=flag("one-shot"))

        async def body():
            yield b""  # headers now: the CLI and docker-py wait for them before reading
            async for frame in frames():
                yield json.dumps(stats_json(frame)).encode() + b"\n"

        return Response(body(), content_type="application/json")

    @bp.get("/containers/<ref>/top")
    async def container_top(ref):
        result = await service.top(ref, request.args.get("ps_args", ""))
        return Response(json.dumps({"Titles": result.titles, "Processes": result.processes}),
                        content_type="application/json")

    return bp


def stats_json(frame: StatsFrame) -> dict:
    cur, pre = frame.current, frame.previous
    cg = cur.cgroup
    out = {
        "read": _time(cur.read_ns),
        "preread": _time(pre.read_ns),
        "pids_stats": _pids(cur),
        "blkio_stats": _blkio(cur),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(cur),
        "precpu_stats": _cpu(pre),
        "memory_stats": _memory(cur),
        "name": "/" + frame.name,
        "id": frame.id,
    }
    if cg is not None and cur.networks:
        out["networks"] = {
            name: {"rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets, "rx_errors": n.rx_errors,
                   "rx_dropped": n.rx_dropped, "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                   "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped}
            for name, n in sorted(cur.networks.items())}
    return out


def _time(ns: int) -> str:
    return format_rfc3339nano(ns) if ns else _ZERO_TIME


def _omit_zero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def _pids(s: StatsSample) -> dict:
    cg = s.cgroup
    if cg is None:
        return {}
    return _omit_zero({"current": cg.pids_current or 0, "limit": cg.pids_limit or 0})


def _blkio(s: StatsSample) -> dict:
    out: dict = dict.fromkeys(_BLKIO_KEYS)
    cg = s.cgroup
    if cg is not None:
        out["io_service_bytes_recursive"] = [_blkio_entry(e) for e in cg.blkio_service_bytes] or None
        out["io_serviced_recursive"] = [_blkio_entry(e) for e in cg.blkio_serviced] or None
    return out


def _blkio_entry(e) -> dict:
    return {"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}


def _cpu(s: StatsSample) -> dict:
    cg = s.cgroup
    usage: dict = {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}
    throttling = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    out: dict = {"cpu_usage": usage}
    if cg is not None:
        usage = {"total_usage": cg.cpu_usage_ns or 0}
        if cg.cpu_percpu_ns:
            usage["percpu_usage"] = list(cg.cpu_percpu_ns)
        usage["usage_in_kernelmode"] = cg.cpu_system_ns or 0
        usage["usage_in_usermode"] = cg.cpu_user_ns or 0
        out["cpu_usage"] = usage
        if s.system_cpu_ns:
            out["system_cpu_usage"] = s.system_cpu_ns
        if s.online_cpus:
            out["online_cpus"] = s.online_cpus
        t = cg.cpu_throttling
        throttling = {"periods": t.get("nr_periods", 0), "throttled_periods": t.get("nr_throttled", 0),
                      "throttled_time": t.get("throttled_time", 0)}
    out["throttling_data"] = throttling
    return out


def _memory(s: StatsSample) -> dict:
    cg = s.cgroup
    if cg is None:
        return {}
    stats = {k: cg.memory_stat[k] for k in MEMORY_STAT_KEYS if k in cg.memory_stat}
    return _omit_zero({"usage": cg.memory_usage or 0, "max_usage": cg.memory_max_usage or 0,
                       "stats": stats, "failcnt": cg.memory_failcnt or 0, "limit": s.memory_limit})
