"""Each isolation property, observed from inside and outside a container run by the real CLI.

Every assertion names a concrete observable that would change if the isolation were removed.
"""

import json
import os
import time

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def _status(node, *extra):
    out = node.out("run", "--rm", *extra, "busybox", "cat", "/proc/self/status")
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_capabilities_seccomp_and_no_new_privs(node):
    status = _status(node)
    assert status["CapEff"].strip() == DOCKER_DEFAULT_CAPS
    assert status["CapBnd"].strip() == DOCKER_DEFAULT_CAPS
    assert status["Seccomp"].strip() == "2"
    assert status["NoNewPrivs"].strip() == "1"


def test_seccomp_profile_blocks_new_user_namespaces(node):
    res = node.docker("run", "--rm", "busybox", "unshare", "-U", "true", check=False)
    assert res.returncode != 0
    assert b"Operation not permitted" in res.stderr


def test_container_root_is_an_unprivileged_host_uid(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        pid = int(node.out("inspect", "-f", "{{.State.Pid}}", cid))
        with open(f"/proc/{pid}/status") as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        assert uid_line.split()[1:] == ["100000"] * 4
        inside = node.out("run", "--rm", "busybox", "cat", "/proc/self/uid_map").split()
        assert inside == ["0", "100000", "65536"]
    finally:
        node.docker("rm", "-f", cid)


def test_every_namespace_is_private(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        pid = int(node.out("inspect", "-f", "{{.State.Pid}}", cid))
        for ns in ("pid", "mnt", "uts", "ipc", "net", "user"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    finally:
        node.docker("rm", "-f", cid)
    out = node.out("run", "--rm", "busybox", "sh", "-c",
                   "echo $$; ls /proc | grep -c '^[0-9]'; ip -o link | cut -d: -f2 | tr -d ' ' | cut -d@ -f1")
    pid1, nprocs, *links = out.split()
    assert pid1 == "1"
    assert int(nprocs) <= 3  # sh, ls, grep: nothing of the host
    assert links == ["lo", "eth0"]  # its own loopback and veth end: none of the node's interfaces
    out = node.out("run", "--rm", "--network", "none", "busybox", "sh", "-c", "ip -o link | wc -l")
    assert out == "1"  # --network none: loopback only


def test_masked_and_read_only_proc_paths(node):
    out = node.out("run", "--rm", "busybox", "sh", "-c",
                   "wc -c < /proc/timer_list; wc -c < /proc/keys; "
                   "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable; "
                   "touch /sys/x 2>/dev/null && echo sysfs-writable; echo end")
    assert out.split() == ["0", "0", "end"]


def test_memory_hog_is_oom_killed_inside_its_limit(node):
    res = node.docker("run", "--name", "hog", "-m", "16m", "busybox", "sh", "-c",
                      "dd if=/dev/zero of=/dev/null bs=64M count=1", check=False)
    assert res.returncode == 137
    state = json.loads(node.out("inspect", "hog"))[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    node.docker("rm", "hog")


def test_pids_limit_holds_a_fork_storm_and_the_host_stays_responsive(node):
    # ash gives up at its first failed fork, so the storm runs in a child shell and the parent
    # (PID 1) reports with builtins only: it cannot fork once the limit is reached.
    script = ("sh -c 'while :; do sleep 3 & done' 2>/dev/null; "
              "read c < /sys/fs/cgroup/pids/pids.current; read m < /sys/fs/cgroup/pids/pids.max; "
              "read e < /sys/fs/cgroup/pids/pids.events; echo $c $m $e")
    t0 = time.monotonic()
    out = node.out("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c", script, timeout=60)
    current, limit, _, refused = out.split()
    assert limit == "20"
    assert 15 <= int(current) <= 20
    assert int(refused) > 0  # forks were refused by the pids controller
    assert node.out("version", "--format", "{{.Server.APIVersion}}") == "1.50"
    assert time.monotonic() - t0 < 30


def test_cpus_sets_a_quota_that_throttles(node):
    out = node.out("run", "--rm", "--cpus", "0.2", "busybox", "sh", "-c",
                   "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; "
                   "timeout 1 sh -c 'while :; do :; done'; grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat")
    quota, period, _, throttled = out.split()
    assert (quota, period) == ("20000", "100000")
    assert int(throttled) > 0


def test_writes_go_to_the_containers_own_upper_dir(node):
    node.docker("run", "--name", "writer", "busybox", "sh", "-c",
                "echo hi > /hello; echo x >> /etc/passwd; rm /bin/vi")
    out = node.out("run", "--rm", "busybox", "sh", "-c",
                   "test -e /hello && echo leaked; grep -c . /etc/passwd; test -e /bin/vi && echo vi-present")
    assert out.split() == ["3", "vi-present"]
    layers = node.data_root / "image" / "layers"
    assert not list(layers.glob("*/hello"))
    node.docker("rm", "writer")


def _node_mounts(node, cid: str) -> list[str]:
    """The container's mounts in the node's (private) mount namespace."""
    with open(f"/proc/{node.proc.pid}/mountinfo") as f:
        return [line.split()[4] for line in f if f"/containers/{cid}/" in line.split()[4] + "/"]


def test_sys_is_the_containers_own_sysfs(node):
    # Not the host's /sys (the machine's interfaces and MACs): a sysfs mounted in the
    # container's network namespace, read-only, with the masked paths still masked.
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        mac = node.out("inspect", "-f", "{{.NetworkSettings.MacAddress}}", cid)
        out = node.out("exec", cid, "sh", "-c",
                       "echo $(ls /sys/class/net); cat /sys/class/net/eth0/address; "
                       "awk '$5 == \"/sys\"' /proc/self/mountinfo | sed 's/.* - //'; "
                       "echo 1 > /sys/class/net/lo/mtu 2>/dev/null && echo mtu-writable; "
                       "touch /sys/x 2>/dev/null && echo sysfs-writable; ls /sys/firmware | wc -l")
        lines = out.splitlines()
        assert lines[0].split() == ["eth0", "lo"]
        assert lines[1] == mac
        fstype, _source, options = lines[2].split()
        assert fstype == "sysfs" and "ro" in options.split(",")
        assert lines[3:] == ["0"]
        # the pinned sysfs lives with the run
        assert f"{node.data_root}/containers/{cid}/sysfs" in _node_mounts(node, cid)
        node.docker("stop", "-t", "0", cid)
        assert not [m for m in _node_mounts(node, cid) if m.endswith("/sysfs")]
        node.docker("start", cid)  # a new run, a new namespace: a new sysfs
        assert node.out("exec", cid, "ls", "/sys/class/net").split() == ["eth0", "lo"]
    finally:
        node.docker("rm", "-f", cid)
    assert _node_mounts(node, cid) == []


def test_sys_follows_networks_connected_later_and_none_has_loopback_only(node):
    assert node.out("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").split() == ["lo"]
    node.docker("network", "create", "sysnet")
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        node.docker("network", "connect", "sysnet", cid)
        assert node.out("exec", cid, "ls", "/sys/class/net").split() == ["eth0", "eth1", "lo"]
        node.docker("network", "disconnect", "sysnet", cid)
        assert node.out("exec", cid, "ls", "/sys/class/net").split() == ["eth0", "lo"]
    finally:
        node.docker("rm", "-f", cid)
        node.docker("network", "rm", "sysnet")
    assert _node_mounts(node, cid) == []
