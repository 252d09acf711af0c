"""Real containers: crun + conmon from a busybox layer, driven by the in-namespace agent.

Each isolation test asserts the specific observable that would change if the isolation
were missing (a capability mask, a uid on the host, a throttling counter, ...).
"""

from __future__ import annotations

import signal
import stat
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import AgentError, tree_fingerprint


def status_field(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(name + ":"))


def poll(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Wait for a condition the kernel reports asynchronously; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- lifecycle ----------------------------------------------------------------------------

def test_exit_code_propagates(agent):
    r = agent("run", args=["sh", "-c", "exit 7"])
    assert r["code"] == 7
    assert r["oom_killed"] is False
    assert abs(r["finished_at_ns"] / 1e9 - time.time()) < 60


def test_sigkill_gives_137_and_kill_after_exit_is_harmless(agent):
    c = agent("run_detached", args=["sleep", "100"])
    try:
        assert agent("state", id=c["id"]) == "running"
        assert agent("kill", id=c["id"], signal=int(signal.SIGKILL)) is True
        status = agent("wait", id=c["id"], conmon_pid=c["conmon_pid"])
        assert status["code"] == 137
        assert agent("state", id=c["id"]) == "stopped"
        assert agent("kill", id=c["id"], signal=int(signal.SIGTERM)) is False
    finally:
        agent("remove", id=c["id"])
    assert agent("state", id=c["id"]) is None


def test_created_container_waits_for_start(agent):
    c = agent("create", args=["sh", "-c", "echo started"])
    try:
        assert agent("state", id=c["id"]) == "created"
        assert agent("logs", id=c["id"]) == []
        agent("start", id=c["id"])
        assert agent("wait", id=c["id"], conmon_pid=c["conmon_pid"])["code"] == 0
        assert [e["data"] for e in agent("logs", id=c["id"])] == ["started\n"]
    finally:
        agent("remove", id=c["id"])


@pytest.mark.parametrize("args,kind", [
    (["/nonexistent"], "CommandNotFound"),
    (["no-such-command"], "CommandNotFound"),
    (["/etc/passwd"], "CommandNotExecutable"),
])
def test_create_errors_are_typed_for_dockers_exit_codes(agent, args, kind):
    before = set(agent("leftovers"))
    with pytest.raises(AgentError) as e:
        agent("create", args=args)
    assert e.value.type == kind
    assert "executable" in e.value.message
    # conmon gave up; the half-made container is removable like any other
    [cid] = set(agent("leftovers")) - before
    agent("remove", id=cid)
    assert cid not in agent("leftovers")


# -- isolation ----------------------------------------------------------------------------

def test_docker_capabilities_seccomp_and_no_new_privs(agent):
    r = agent("run", args=["sh", "-c", "grep -E '^(CapEff|CapBnd|CapInh|Seccomp|NoNewPrivs):' /proc/self/status"])
    fields = dict(line.split(":\t") for line in r["stdout"].splitlines())
    assert fields["CapEff"] == "00000000a80425fb"
    assert fields["CapBnd"] == "00000000a80425fb"
    assert fields["CapInh"] == "0000000000000000"
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "1"


def test_seccomp_profile_refuses_namespace_creation(agent):
    # unshare(CLONE_NEWUSER) needs no capability, so only the seccomp profile stops it.
    script = "unshare -U true; echo rc=$?"
    confined = agent("run", args=["sh", "-c", script])
    assert "rc=1" in confined["stdout"] and "Operation not permitted" in confined["stderr"]
    unconfined = agent("run", args=["sh", "-c", script], spec={"seccomp_unconfined": True})
    assert "rc=0" in unconfined["stdout"]


def test_masked_and_readonly_paths(agent):
    # This kernel has no /proc/kcore (CONFIG_PROC_KCORE unset); the other masked files
    # exist and are non-empty on the host, and read empty inside.
    for path in ("/proc/keys", "/proc/timer_list", "/proc/interrupts"):
        assert Path(path).read_bytes(), path
    r = agent("run", args=["sh", "-c",
                           ("cat /proc/kcore; echo kcore=$?; "
                           "wc -c < /proc/keys; wc -c < /proc/timer_list; wc -c < /proc/interrupts; "
                           "ls /sys/firmware | wc -l; "
                           "echo 1 > /proc/sysrq-trigger; echo sysrq=$?; "
                           "echo x > /proc/sys/kernel/domainname; echo procsys=$?; "
                           "touch /sys/x; echo sys=$?")])
    out = r["stdout"].split()
    assert out[0] == "kcore=1"
    assert out[1:5] == ["0", "0", "0", "0"]
    assert out[5:] == ["sysrq=1", "procsys=1", "sys=1"]


def test_hostname_pid_and_network_namespaces(agent):
    r = agent("run", args=["sh", "-c", "hostname; echo pid=$$; ls /sys/class/net"], spec={"hostname": "box1"})
    assert r["stdout"].split() == ["box1", "pid=1", "lo"]


def test_user_namespace_root_is_host_uid_100000(agent, node):
    c = agent("run_detached", args=["sh", "-c", "touch /made-by-root; exec sleep 100"],
              spec={"idmap": {"host_base": 100000, "size": 65536}})
    try:
        assert status_field(c["pid"], "Uid").split() == ["100000"] * 4
        assert status_field(c["pid"], "Gid").split() == ["100000"] * 4
        with open(f"/proc/{c['pid']}/uid_map") as f:
            assert f.read().split() == ["0", "100000", "65536"]
        made = poll(lambda: (node.state_dir / "node/containers" / c["id"] / "upper/made-by-root").exists())
        assert made
        assert (node.state_dir / "node/containers" / c["id"] / "upper/made-by-root").stat().st_uid == 100000
    finally:
        agent("kill", id=c["id"], signal=9)
        agent("remove", id=c["id"])


def test_user_namespace_joining_a_prepared_netns(agent):
    # crun cannot mount sysfs from a userns into a netns the host userns owns, so the node
    # mounts one from inside that netns and it is bound at /sys: /sys/class/net lists the
    # netns's devices (loopback only), never the machine's, and stays read-only.
    netns = agent("make_netns", name="n1")
    try:
        r = agent("run", args=["sh", "-c", ("tail -n +3 /proc/net/dev | cut -d: -f1; id -u; "
                                           "cat /proc/self/uid_map; ls /sys/class/net; "
                                           "touch /sys/x; echo sys=$?; ls /sys/firmware | wc -l")],
                  spec={"idmap": {"host_base": 100000, "size": 65536}, "netns_path": netns})
        assert r["code"] == 0, r["stderr"]
        assert r["stdout"].split() == ["lo", "0", "0", "100000", "65536", "lo", "sys=1", "0"]
        assert not [m for m in agent("mounts") if m.endswith("/sysfs")]  # the run's end unmounted it
    finally:
        agent("drop_netns", path=netns)


def test_sysfs_mount_lives_with_the_run_and_the_leftover_sweep_clears_it(agent, node):
    netns = agent("make_netns", name="n2")
    try:
        c = agent("run_detached", args=["sleep", "100"],
                  spec={"idmap": {"host_base": 100000, "size": 65536}, "netns_path": netns})
        sysfs = str(node.state_dir / "node/containers" / c["id"] / "sysfs")
        assert sysfs in agent("mounts")
        assert c["id"] in agent("leftovers")  # what a restarted node that lost the record would sweep
        agent("remove", id=c["id"])
        assert sysfs not in agent("mounts")
        assert not (node.state_dir / "node/containers" / c["id"]).exists()
    finally:
        agent("drop_netns", path=netns)


def test_memory_limit_oom_kills(agent):
    r = agent("run", args=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
              spec={"resources": {"memory": 32 << 20}})
    assert r["oom_killed"] is True
    assert r["code"] == 137


def test_oom_of_a_child_is_reported_even_if_init_survives(agent):
    r = agent("run", args=["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?"],
              spec={"resources": {"memory": 32 << 20}})
    assert "dd=137" in r["stdout"]
    assert r["code"] == 0 and r["oom_killed"] is True


def test_pids_limit_holds_a_fork_storm(agent, node):
    # Bounded at 100 forks so that a missing limit cannot hurt the host; with the limit the
    # cgroup never holds more than 20 tasks and the kernel counts refused forks.
    c = agent("run_detached", args=["sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 100 & i=$((i+1)); done; wait"],
              spec={"resources": {"pids_limit": 20}})
    try:
        refused = poll(lambda: int(node.cgroup_file("pids", c["id"], "pids.events").split()[1]) > 0)
        assert refused
        assert node.cgroup_file("pids", c["id"], "pids.max").strip() == "20"
        assert int(node.cgroup_file("pids", c["id"], "pids.current")) <= 20
        stats = agent("stats", id=c["id"])
        assert stats["pids_limit"] == 20 and stats["pids_current"] <= 20
    finally:
        agent("kill", id=c["id"], signal=9, all=True)
        agent("wait", id=c["id"], conmon_pid=c["conmon_pid"])
        agent("remove", id=c["id"])


def test_cpu_quota_throttles(agent, node):
    c = agent("run_detached", args=["sh", "-c", "while :; do :; done"],
              spec={"resources": {"nano_cpus": 200_000_000}})
    try:
        assert node.cgroup_file("cpu", c["id"], "cpu.cfs_quota_us").strip() == "20000"
        assert node.cgroup_file("cpu", c["id"], "cpu.cfs_period_us").strip() == "100000"

        def throttled():
            stat_ = dict(line.split() for line in node.cgroup_file("cpu", c["id"], "cpu.stat").splitlines())
            return int(stat_["nr_throttled"]) > 0
        assert poll(throttled, timeout=5)
        assert agent("stats", id=c["id"])["cpu_throttling"]["nr_throttled"] > 0
    finally:
        agent("kill", id=c["id"], signal=9)
        agent("wait", id=c["id"], conmon_pid=c["conmon_pid"])
        agent("remove", id=c["id"])


# -- filesystem ---------------------------------------------------------------------------

def test_writes_land_only_in_upper(agent, node):
    before = tree_fingerprint(node.lower)
    c = agent("run_detached", args=["sh", "-c", ("echo hi >/hello.txt; echo x >>/etc/passwd; "
                                                "rm /bin/vi; mkdir -p /var/lib/app")])
    try:
        assert agent("wait", id=c["id"], conmon_pid=c["conmon_pid"])["code"] == 0
        upper = node.state_dir / "node/containers" / c["id"] / "upper"
        assert (upper / "hello.txt").read_text() == "hi\n"
        assert (upper / "etc/passwd").read_text().endswith("x\n")
        whiteout = (upper / "bin/vi").lstat()
        assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
        assert (upper / "var/lib/app").is_dir()
        assert not (node.lower / "hello.txt").exists()
        assert (node.lower / "bin/vi").is_symlink()
        assert not (node.lower / "etc/passwd").read_text().endswith("x\n")
        assert tree_fingerprint(node.lower) == before
    finally:
        agent("remove", id=c["id"])


def test_readonly_rootfs(agent):
    r = agent("run", args=["sh", "-c", "touch /x; echo rc=$?"], spec={"readonly_rootfs": True})
    assert "rc=1" in r["stdout"] and "Read-only file system" in r["stderr"]


# -- stdio --------------------------------------------------------------------------------

def test_logs_keep_streams_apart_and_join_partial_lines(agent):
    r = agent("run", args=["sh", "-c", "echo out; echo err >&2; printf 'part'; sleep 0.1; echo ial; printf 'tail'"])
    assert [(e["stream"], e["data"]) for e in r["entries"]] == [
        ("stdout", "out\n"), ("stderr", "err\n"), ("stdout", "partial\n"), ("stdout", "tail")]


def test_attach_receives_output_and_delivers_stdin(agent):
    r = agent("attach_run", args=["sh", "-c", "echo ready; read line; echo got $line; echo err >&2; cat; echo eof"],
              spec={"open_stdin": True, "stdin_once": True}, stdin=["hello\n", "more\n"], eof=True)
    assert r["code"] == 0
    out = "".join(text for stream, text in r["chunks"] if stream == 1)
    err = "".join(text for stream, text in r["chunks"] if stream == 2)
    assert out == "ready\ngot hello\nmore\neof\n"
    assert err == "err\n"


def test_tty_attach_and_resize(agent):
    r = agent("attach_run", args=["sh", "-c", "stty size; echo to-stderr >&2"],
              spec={"tty": True}, resize=[40, 100])
    text = "".join(t for _, t in r["chunks"])
    assert {s for s, _ in r["chunks"]} == {1}  # a tty has one stream
    assert "40 100\r\n" in text and "to-stderr\r\n" in text


def test_log_follower_sees_everything_until_exit(agent):
    r = agent("follow_run", args=["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done; echo bye >&2"])
    assert [(e["stream"], e["data"]) for e in r["entries"]] == [
        ("stdout", "line1\n"), ("stdout", "line2\n"), ("stdout", "line3\n"), ("stderr", "bye\n")]


# -- cleanup and restarts -----------------------------------------------------------------

def test_restart_keeps_writable_layer_and_log(agent, node):
    first = agent("create", args=["sh", "-c", "echo run1; echo kept > /state; exit 3"])
    cid = first["id"]
    try:
        agent("start", id=cid)
        assert agent("wait", id=cid, conmon_pid=first["conmon_pid"])["code"] == 3
        agent("cleanup", id=cid)
        assert str(node.state_dir / "node/containers" / cid / "rootfs") not in agent("mounts")
        assert not any((h / node.cgroup_parent.strip("/") / cid).exists() for h in Path("/sys/fs/cgroup").iterdir())
        second = agent("create", cid=cid, args=["sh", "-c", "echo run2 $(cat /state)"])
        agent("start", id=cid)
        # a stale exit file from run 1 would make this return 3 at once
        assert agent("wait", id=cid, conmon_pid=second["conmon_pid"])["code"] == 0
        assert [e["data"] for e in agent("logs", id=cid)] == ["run1\n", "run2 kept\n"]
    finally:
        agent("remove", id=cid)

def test_remove_clears_mount_cgroups_processes_and_files(agent, node):
    c = agent("run_detached", args=["sleep", "100"], spec={"resources": {"memory": 64 << 20}})
    bundle = node.state_dir / "node/containers" / c["id"]
    # Longer than sun_path's 108 bytes, yet attach works (through /proc/self/fd).
    assert len(str(bundle / "attach")) > 107
    assert str(bundle / "rootfs") in agent("mounts")
    assert (cgroup := Path("/sys/fs/cgroup/memory") / node.cgroup_parent.strip("/") / c["id"]).is_dir()
    assert (bundle / "attach").is_socket()
    agent("remove", id=c["id"])  # on a running container: kills it
    assert str(bundle / "rootfs") not in agent("mounts")
    assert not any((h / node.cgroup_parent.strip("/") / c["id"]).exists()
                   for h in Path("/sys/fs/cgroup").iterdir())
    assert not cgroup.exists()
    assert not bundle.exists()
    assert status_field(c["pid"], "State").startswith("Z") if Path(f"/proc/{c['pid']}").exists() else True
    assert agent("state", id=c["id"]) is None
    agent("remove", id=c["id"])  # idempotent


def test_remove_of_half_made_container_and_leftover_listing(agent, node):
    cid = agent("prepare_only", write="scratch")
    assert cid in agent("leftovers")
    agent("remove", id=cid)
    agent("remove", id=cid)
    assert cid not in agent("leftovers")
    assert not (node.state_dir / "node/containers" / cid).exists()


def test_container_survives_driver_death_and_is_readopted(node):
    first = node.spawn_agent()
    try:
        c = first("run_detached", args=["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done"])
    finally:
        first.kill9()
    second = node.spawn_agent()  # enters the same pinned namespace
    try:
        assert second("state", id=c["id"]) == "running"
        assert str(node.state_dir / "node/containers" / c["id"] / "rootfs") in second("mounts")
        ticks = second("attach_existing", id=c["id"], count=2)
        assert all(s == 1 and t.startswith("tick ") for s, t in ticks)
        assert second("kill", id=c["id"], signal=9) is True
        assert second("wait", id=c["id"], conmon_pid=c["conmon_pid"])["code"] == 137
        second("remove", id=c["id"])
        assert c["id"] not in second("leftovers")
    finally:
        second.close()


# -- exec ---------------------------------------------------------------------------------

@pytest.fixture
def sleeper(agent):
    c = agent("run_detached", args=["sleep", "100"])
    yield c
    agent("remove", id=c["id"])


def test_exec_attached_output_exit_code_and_confinement(agent, sleeper):
    r = agent("exec_run", id=sleeper["id"], args=[
        "sh", "-c", ("echo out; echo err >&2; cat /proc/1/comm; "
                    "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; exit 5")])
    assert r["code"] == 5 and r["recorded"] == 5
    out = "".join(t for s, t in r["chunks"] if s == 1)
    assert "".join(t for s, t in r["chunks"] if s == 2) == "err\n"
    assert out.startswith("out\nsleep\n")  # the container's pid namespace: its init is pid 1
    assert "CapEff:\t00000000a80425fb" in out and "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out
    assert next(e["data"] for e in r["log"] if e["stream"] == "stdout") == "out\n"


def test_exec_stdin_and_detached_exec(agent, sleeper):
    r = agent("exec_run", id=sleeper["id"], args=["sh", "-c", "cat > /tmp/x; echo done"],
              spec={"open_stdin": True}, stdin=["from ", "stdin\n"], eof=True)
    assert r["code"] == 0 and r["chunks"] == [[1, "done\n"]]
    detached = agent("exec_run", id=sleeper["id"], args=["sh", "-c", "cat /tmp/x; exit 3"], attach=False)
    assert detached["code"] == 3 and detached["chunks"] == []
    assert [e["data"] for e in detached["log"]] == ["from stdin\n"]


def test_exec_errors(agent, sleeper):
    with pytest.raises(AgentError) as e:
        agent("exec_run", id=sleeper["id"], args=["no-such-command"])
    assert e.value.type == "CommandNotFound"
    agent("kill", id=sleeper["id"], signal=9)
    agent("wait", id=sleeper["id"], conmon_pid=sleeper["conmon_pid"])
    with pytest.raises(AgentError) as e:
        agent("exec_run", id=sleeper["id"], args=["true"], attach=False)
    assert e.value.type == "Conflict" and "not running" in e.value.message
