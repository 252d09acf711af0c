"""Pure pieces of the lifecycle work: --init in the OCI config, and the swap limit an update writes."""

from appliance.runtime.resources import memory_swap_limit
from appliance.runtime.spec import INIT_PATH, ContainerSpec, Resources, oci_config


def _config(**kw) -> dict:
    spec = ContainerSpec(id="c", args=("sleep", "1"), cgroup_path="/appliance/n/c", **kw)
    return oci_config(spec, "/r/rootfs", None, (1024, 1024))


def test_init_is_pid_1_bind_mounted_read_only():
    cfg = _config(init_binary="/usr/bin/tini-static")
    assert cfg["process"]["args"] == [INIT_PATH, "--", "sleep", "1"]
    assert cfg["mounts"][-1] == {"destination": "/sbin/docker-init", "type": "bind",
                                 "source": "/usr/bin/tini-static", "options": ["bind", "ro"]}


def test_no_init_by_default():
    cfg = _config()
    assert cfg["process"]["args"] == ["sleep", "1"]
    assert all(m["destination"] != INIT_PATH for m in cfg["mounts"])


def test_swap_limit_matches_what_create_writes():
    assert memory_swap_limit(Resources(memory=32, memory_swap=0)) == 64
    assert memory_swap_limit(Resources(memory=32, memory_swap=48)) == 48
    assert memory_swap_limit(Resources(memory=32, memory_swap=-1)) == -1
    assert memory_swap_limit(Resources()) == -1
