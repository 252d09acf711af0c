"""docker stats / top: the pure parsers (/proc files, cgroup blkio, ps output) and the JSON that
the docker CLI computes its columns from (docker/cli stats_helpers.go formulas replayed here)."""

import json

import pytest

from appliance.api.routes.stats import stats_json
from appliance.engine.stats import (
    NO_SAMPLE,
    NetStats,
    StatsFrame,
    StatsSample,
    custom_fields,
    mem_total,
    parse_net_dev,
    parse_ps_output,
    ps_pids_arg,
    system_cpu_ns,
    validate_ps_args,
)
from appliance.errors import InvalidParameter, SystemError_
from appliance.runtime.cgroups import BlkioEntry, CgroupStats, parse_blkio

PROC_STAT = """cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
cpu1 1335202 35226 458158 13345880 2467 0 6322 0 31249 0
intr 1462898 0 0
"""


def test_system_cpu_is_the_first_seven_cpu_fields_in_ns():
    ticks = 10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195  # steal and guest left out
    assert system_cpu_ns(PROC_STAT, 100) == ticks * 10_000_000
    with pytest.raises(ValueError):
        system_cpu_ns("cpu 1 2 3\n")


def test_mem_total():
    assert mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n") == 24684092 * 1024
    assert mem_total("") == 0


def test_net_dev_leaves_out_loopback():
    text = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    4800      48    0    0    0     0          0         0     4800      48    0    0    0     0       0          0
  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0
"""
    assert parse_net_dev(text) == {"eth0": NetStats(1000, 10, 1, 2, 2000, 20, 3, 4)}


def test_blkio_lines_per_device_and_no_total():
    text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n"
    entries = parse_blkio(text)
    assert entries[:2] == (BlkioEntry(8, 0, "Read", 4096), BlkioEntry(8, 0, "Write", 8192))
    assert len(entries) == 6
    assert parse_blkio("Total 0\n") == ()


# ---- top -----------------------------------------------------------------------------------

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 Nov27 ?        00:00:10 /init --flag
100000     15182   15179  0 00:31 ?        00:00:00 sleep 1000
100000     15190   15182  0 00:31 ?        00:00:00 sh -c echo  two  spaces
"""


def test_ps_rows_are_filtered_to_the_container_and_the_last_column_keeps_spaces():
    result = parse_ps_output(PS_EF, [15182, 15190])
    assert result.titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert result.processes == [
        ["100000", "15182", "15179", "0", "00:31", "?", "00:00:00", "sleep 1000"],
        ["100000", "15190", "15182", "0", "00:31", "?", "00:00:00", "sh -c echo two spaces"],
    ]


def test_ps_thread_rows_follow_their_process():
    out = "PID TTY TIME CMD\n15 ? 0:00 sleep\n- - 0:00 -\n16 ? 0:00 other\n- - 0:00 -\n"
    assert parse_ps_output(out, [15]).processes == [["15", "?", "0:00", "sleep"], ["-", "-", "0:00", "-"]]


def test_ps_custom_columns_get_a_leading_pid_column_that_is_dropped():
    out = "  PID USER COMMAND\n   7 100000 sh\n   8 root  bash\n"
    result = parse_ps_output(out, [7], extra_pid_column=True)
    assert result.titles == ["USER", "COMMAND"] and result.processes == [["100000", "sh"]]
    with pytest.raises(SystemError_):
        parse_ps_output("USER COMMAND\n", [7])
    with pytest.raises(SystemError_):
        parse_ps_output("PID CMD\nabc x\n", [7])


@pytest.mark.parametrize("args,custom", [
    (["-ef"], False), (["aux"], False), (["-o", "pid,comm"], True), (["-opid"], True),
    (["o", "pid"], True), (["--format", "pid"], True), (["--format=pid"], True), (["efocmd"], True),
    (["-C", "ocmd"], False), (["-U", "ocmd"], False), (["eUocmd"], False), (["--user", "ocmd"], False),
    (["--user=x", "-o", "pid"], True),
])
def test_custom_fields_like_dockerd(args, custom):
    assert custom_fields(args) is custom


def test_ps_args_may_not_rename_the_pid_column():
    validate_ps_args("-o pid=PID,user")
    with pytest.raises(InvalidParameter, match='specifying "user=PID" is not allowed'):
        validate_ps_args("-o user=PID")
    assert ps_pids_arg([3, 1, 2]) == "-q3,1,2"


# ---- stats JSON ------------------------------------------------------------------------------

def _sample(read_ns, cpu_ns, system_ns, usage, inactive_file, limit=64 << 20):
    cg = CgroupStats(memory_usage=usage, memory_limit=limit, memory_max_usage=usage, memory_failcnt=0,
                     memory_stat={"total_inactive_file": inactive_file, "cache": inactive_file, "dirty": 1},
                     cpu_usage_ns=cpu_ns, cpu_percpu_ns=(cpu_ns,), cpu_user_ns=cpu_ns, cpu_system_ns=0,
                     pids_current=3, pids_limit=None,
                     blkio_service_bytes=(BlkioEntry(254, 0, "Read", 100), BlkioEntry(254, 0, "Write", 200),
                                          BlkioEntry(254, 0, "Total", 300)))
    return StatsSample(read_ns=read_ns, cgroup=cg, system_cpu_ns=system_ns, online_cpus=2, memory_limit=limit)


def _cli_columns(doc):
    """docker/cli 28 stats_helpers.go: CPU %, memory used (v1: minus total_inactive_file), block I/O."""
    cpu_delta = doc["cpu_stats"]["cpu_usage"]["total_usage"] - doc["precpu_stats"]["cpu_usage"]["total_usage"]
    system_delta = doc["cpu_stats"].get("system_cpu_usage", 0) - doc["precpu_stats"].get("system_cpu_usage", 0)
    cpu = cpu_delta / system_delta * doc["cpu_stats"]["online_cpus"] * 100 if cpu_delta > 0 and system_delta > 0 else 0
    mem = doc["memory_stats"]
    used = mem["usage"] - mem["stats"]["total_inactive_file"]
    ops = doc["blkio_stats"]["io_service_bytes_recursive"] or []
    read = sum(e["value"] for e in ops if e["op"][:1] in "rR")
    write = sum(e["value"] for e in ops if e["op"][:1] in "wW")
    return cpu, used, mem["limit"], read, write


def test_stats_json_gives_the_cli_its_columns():
    pre = _sample(1_000_000_000, cpu_ns=1_000_000_000, system_ns=10_000_000_000, usage=0, inactive_file=0)
    cur = _sample(2_000_000_000, cpu_ns=1_500_000_000, system_ns=12_000_000_000, usage=30 << 20,
                  inactive_file=10 << 20)
    doc = json.loads(json.dumps(stats_json(StatsFrame("c" * 64, "web", cur, pre))))
    assert list(doc)[:11] == ["read", "preread", "pids_stats", "blkio_stats", "num_procs", "storage_stats",
                              "cpu_stats", "precpu_stats", "memory_stats", "name", "id"]
    assert doc["name"] == "/web" and doc["read"] == "1970-01-01T00:00:02Z"
    assert doc["preread"] == "1970-01-01T00:00:01Z"
    cpu, used, limit, read, write = _cli_columns(doc)
    assert cpu == pytest.approx(50.0)        # 0.5 s of 2 s of 2 CPUs' time, times 2 CPUs
    assert used == 20 << 20 and limit == 64 << 20
    assert (read, write) == (100, 200)
    assert doc["pids_stats"] == {"current": 3}          # no limit: omitted like Go's omitempty
    assert "dirty" not in doc["memory_stats"]["stats"]  # only the keys dockerd copies
    assert "failcnt" not in doc["memory_stats"]
    assert "networks" not in doc


def test_stats_json_of_a_stopped_container_is_dockerds_empty_frame():
    doc = stats_json(StatsFrame("c" * 64, "gone", NO_SAMPLE, NO_SAMPLE))
    assert doc["read"] == doc["preread"] == "0001-01-01T00:00:00Z"
    assert doc["memory_stats"] == {} and doc["pids_stats"] == {}
    assert doc["cpu_stats"] == {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    assert doc["blkio_stats"]["io_service_bytes_recursive"] is None
