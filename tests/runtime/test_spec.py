"""oci_config: Docker's defaults and the mapping of each ContainerSpec field."""

import json

import pytest

from appliance.errors import InvalidParameter
from appliance.runtime.seccomp import default_seccomp
from appliance.runtime.spec import (
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    READONLY_PATHS,
    ContainerSpec,
    IdMap,
    MountSpec,
    Resources,
    container_env,
    needs_sysfs,
    oci_config,
)


def spec(**kw) -> ContainerSpec:
    base = {"id": "c1", "args": ("sh", "-c", "true"), "env": ("PATH=/bin",), "hostname": "h1",
                "cgroup_path": "/appliance/n1/c1"}
    base.update(kw)
    return ContainerSpec(**base)


def config(s: ContainerSpec | None = None, **kw) -> dict:
    return oci_config(s or spec(), "/r/rootfs", kw.pop("seccomp", None), kw.pop("nofile", (20000, 20000)),
                      **kw)


def test_process_fields():
    c = config(spec(uid=1000, gid=1000, additional_gids=(10, 20), cwd="/app", tty=True))
    p = c["process"]
    assert p["args"] == ["sh", "-c", "true"]
    assert p["env"] == ["PATH=/bin"]
    assert p["cwd"] == "/app"
    assert p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}
    assert p["noNewPrivileges"] is True
    assert c["hostname"] == "h1"
    assert c["root"] == {"path": "/r/rootfs", "readonly": False}
    assert c["linux"]["cgroupsPath"] == "/appliance/n1/c1"


def test_docker_default_capabilities_only_in_bounding_effective_permitted():
    caps = config()["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(DEFAULT_CAPABILITIES)
    assert len(DEFAULT_CAPABILITIES) == 14
    assert "inheritable" not in caps and "ambient" not in caps
    # CapEff a80425fb is exactly these bits
    bits = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
            "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
            "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
            "CAP_SETFCAP": 31}
    assert sum(1 << bits[c] for c in DEFAULT_CAPABILITIES) == 0xA80425FB


def test_rlimit_nofile_is_the_given_clamp():
    assert config(nofile=(1024, 20000))["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 20000}]


def test_namespaces_fresh_network_and_no_userns_by_default():
    ns = config()["linux"]["namespaces"]
    assert sorted(n["type"] for n in ns) == ["ipc", "mount", "network", "pid", "uts"]
    assert all("path" not in n for n in ns)
    assert "uidMappings" not in config()["linux"]


def test_netns_path_is_joined():
    ns = config(spec(netns_path="/run/netns/x"))["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in ns


def test_user_namespace_maps_root_to_host_base():
    linux = config(spec(idmap=IdMap(200000, 65536)))["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert linux["gidMappings"] == linux["uidMappings"]


def test_masked_and_readonly_paths_are_dockers():
    linux = config()["linux"]
    assert linux["maskedPaths"] == list(MASKED_PATHS)
    assert "/proc/kcore" in MASKED_PATHS and "/sys/firmware" in MASKED_PATHS
    assert linux["readonlyPaths"] == list(READONLY_PATHS)
    assert "/proc/sys" in READONLY_PATHS and "/proc/sysrq-trigger" in READONLY_PATHS


def test_default_mounts():
    mounts = {m["destination"]: m for m in config()["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
                            "/dev/shm"]
    assert mounts["/sys"]["type"] == "sysfs" and "ro" in mounts["/sys"]["options"]
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert f"size={64 * 1024 * 1024}" in mounts["/dev/shm"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]


def test_sysfs_is_the_nodes_own_mount_in_a_userns_joining_a_host_netns():
    # The kernel refuses crun's sysfs mount there, and the host's /sys would show the machine's
    # interfaces: the node mounts one inside the netns (runtime/sysfs.py) and it is bound,
    # read-only. The fresh-netns case keeps a real sysfs.
    s = spec(idmap=IdMap(), netns_path="/run/netns/x")
    assert needs_sysfs(s)
    sys_mount = next(m for m in config(s, sysfs_source="/data/containers/c1/sysfs")["mounts"]
                     if m["destination"] == "/sys")
    assert sys_mount == {"destination": "/sys", "type": "bind", "source": "/data/containers/c1/sysfs",
                         "options": ["bind", "nosuid", "noexec", "nodev", "ro"]}
    with pytest.raises(ValueError):
        config(s)  # never the host's /sys
    assert not needs_sysfs(spec(idmap=IdMap())) and not needs_sysfs(spec(netns_path="/run/netns/x"))
    fresh = next(m for m in config(spec(idmap=IdMap()))["mounts"] if m["destination"] == "/sys")
    assert fresh["type"] == "sysfs"


def test_user_mounts_follow_and_replace_defaults_at_or_below():
    s = spec(mounts=(MountSpec("/data", "/srv/d", "bind", ("rbind", "ro")),
                     MountSpec("/dev/shm", "tmpfs", "tmpfs", ("size=1m",))))
    mounts = config(s)["mounts"]
    dests = [m["destination"] for m in mounts]
    assert dests.count("/dev/shm") == 1
    assert mounts[-2:] == [
        {"destination": "/data", "type": "bind", "source": "/srv/d", "options": ["rbind", "ro"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}]
    dev = config(spec(mounts=(MountSpec("/dev", "tmpfs", "tmpfs", ()),)))["mounts"]
    assert [m["destination"] for m in dev if m["destination"].startswith("/dev")] == ["/dev"]


def test_device_allowlist_starts_with_deny_all_and_denies_fuse():
    rules = config()["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    allowed = {(r.get("type"), r.get("major"), r.get("minor")) for r in rules if r["allow"]}
    for dev in [("c", 1, 3), ("c", 1, 5), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1),
                ("c", 136, None)]:
        assert dev in allowed
    assert rules[-1] == {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}


def test_resources():
    r = config(spec(resources=Resources(memory=32 << 20, pids_limit=64, nano_cpus=500_000_000,
                                        cpu_shares=512)))["linux"]["resources"]
    assert r["memory"] == {"limit": 32 << 20, "swap": 64 << 20}  # Docker: swap defaults to 2x
    assert r["pids"] == {"limit": 64}
    assert r["cpu"] == {"shares": 512, "period": 100000, "quota": 50000}


@pytest.mark.parametrize("res,expected", [
    (Resources(), None),
    (Resources(memory=100, memory_swap=-1), {"limit": 100, "swap": -1}),
    (Resources(memory=100, memory_swap=300), {"limit": 100, "swap": 300}),
])
def test_memory_swap(res, expected):
    assert config(spec(resources=res))["linux"]["resources"].get("memory") == expected


def test_unlimited_pids_and_explicit_cpu_period_quota():
    r = config(spec(resources=Resources(pids_limit=-1, cpu_period=50000, cpu_quota=25000)))
    res = r["linux"]["resources"]
    assert "pids" not in res
    assert res["cpu"] == {"period": 50000, "quota": 25000}


def test_invalid_resources_are_docker_errors():
    with pytest.raises(InvalidParameter, match="Nano CPUs and CPU Quota"):
        config(spec(resources=Resources(nano_cpus=1, cpu_quota=1000)))
    with pytest.raises(InvalidParameter, match="larger than memory limit"):
        config(spec(resources=Resources(memory=200, memory_swap=100)))
    with pytest.raises(InvalidParameter):
        config(spec(args=()))


def test_readonly_rootfs_and_seccomp_are_passed_through():
    profile = default_seccomp(DEFAULT_CAPABILITIES)
    c = oci_config(spec(readonly_rootfs=True), "/r", profile, (1, 1))
    assert c["root"]["readonly"] is True
    assert c["linux"]["seccomp"] is profile
    assert "seccomp" not in config()["linux"]


def test_config_is_json():
    json.dumps(config(spec(idmap=IdMap(), mounts=(MountSpec("/a", "/b"),))))


def test_container_env_follows_docker_precedence():
    env = container_env(["PATH=/img", "A=1"], ["A=2", "B=3"], hostname="h", tty=True)
    assert env == ("PATH=/img", "HOSTNAME=h", "TERM=xterm", "A=2", "B=3")
    assert container_env([], [], hostname="h", tty=False)[0].startswith("PATH=/usr/local/sbin")
