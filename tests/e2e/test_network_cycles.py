"""Fifty `docker run --rm` cycles through the real CLI leave the node's namespace as they found
it: interfaces, iptables rules, pinned network namespaces and leases (issue 5)."""

import json
import subprocess


def _in_node_netns(node, *cmd):
    return subprocess.run(["nsenter", f"--net=/run/netns/{node.netns}", *cmd], capture_output=True,
                          text=True, timeout=20, check=True).stdout


def _footprint(node):
    links = _in_node_netns(node, "ip", "-o", "link").splitlines()
    rules = [r for r in _in_node_netns(node, "iptables-save").splitlines() if r.startswith("-A")]
    pinned = sorted(p.name for p in (node.data_root / "netns").glob("*")) if (node.data_root / "netns").exists() else []
    return len(links), sorted(rules), pinned


def test_fifty_run_rm_cycles_leave_nothing_behind(node):
    node.docker("network", "create", "--subnet", "10.232.0.0/24", "cyc")
    keep = node.out("run", "-d", "--network", "cyc", "busybox", "sleep", "300")
    try:
        before = _footprint(node)
        ips = set()
        for i in range(50):
            args = ["run", "--rm"]
            if i % 2:
                args += ["-p", f"{21000 + i}:80"]  # one DNAT rule and proxy per cycle
            args += ["--network", "cyc" if i % 3 else "bridge", "busybox", "sh", "-c",
                     "ip -o -4 addr show eth0 | awk '{print $4}'"]
            ip = node.out(*args)
            assert ip.count("/") == 1, ip
            ips.add(ip)
        assert {ip.rsplit(".", 2)[0] for ip in ips} == {"10.213", "10.232"}  # both networks were used
        assert _footprint(node) == before
        containers = json.loads(node.out("network", "inspect", "cyc"))[0]["Containers"]
        assert list(containers) == [keep]
    finally:
        node.docker("rm", "-f", keep)
        node.docker("network", "rm", "cyc")


def test_frames_within_a_network_skip_iptables(node):
    """br_netfilter is off in the node's namespace (when the module is loaded at all), and two
    containers on one network still talk while a DROP-everything rule sits in FORWARD."""
    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    assert _in_node_netns(node, "sh", "-c", f"cat {knob} 2>/dev/null || echo absent").strip() in ("0", "absent")
    node.docker("network", "create", "br-nf")
    server = node.out("run", "-d", "--network", "br-nf", "busybox", "sh", "-c",
                      "echo pong > /tmp/i; exec httpd -f -p 80 -h /tmp")
    try:
        ip = json.loads(node.out("inspect", server))[0]["NetworkSettings"]["Networks"]["br-nf"]["IPAddress"]
        _in_node_netns(node, "iptables", "-I", "FORWARD", "1", "-j", "DROP")
        try:
            assert node.out("run", "--rm", "--network", "br-nf", "busybox", "wget", "-qO-",
                            f"http://{ip}/i") == "pong"
        finally:
            _in_node_netns(node, "iptables", "-D", "FORWARD", "1")
    finally:
        node.docker("rm", "-f", server)
        node.docker("network", "rm", "br-nf")
