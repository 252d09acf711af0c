"""Every container its own IP and the full port range, through the real CLI (the node runs in a
network namespace the test made: its bridge, rules and veths never touch the machine's)."""

import json
import subprocess

HTTPD = "echo hello-from-$(hostname) > /var/www/index.html; exec httpd -f -p 80 -h /var/www"


def _ip(node, name, network="bridge"):
    return json.loads(node.out("inspect", name))[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def _in_node_netns(node, *cmd, timeout=10):
    return subprocess.run(["nsenter", f"--net=/run/netns/{node.netns}", *cmd], capture_output=True, timeout=timeout)


def test_two_containers_on_port_80_reach_each_other_by_ip(node):
    node.docker("run", "-d", "--name", "web1", "--hostname", "web1", "busybox", "sh", "-c", HTTPD)
    node.docker("run", "-d", "--name", "web2", "--hostname", "web2", "busybox", "sh", "-c", HTTPD)
    try:
        ip1, ip2 = _ip(node, "web1"), _ip(node, "web2")
        assert ip1 and ip2 and ip1 != ip2
        info = json.loads(node.out("inspect", "web1"))[0]
        settings = info["NetworkSettings"]
        assert settings["IPAddress"] == ip1 and settings["Gateway"] and settings["MacAddress"]
        assert node.out("exec", "web1", "wget", "-qO-", f"http://{ip2}/") == "hello-from-web2"
        assert node.out("exec", "web2", "wget", "-qO-", f"http://{ip1}/") == "hello-from-web1"
        hosts = node.out("exec", "web1", "cat", "/etc/hosts")
        assert f"{ip1}\tweb1" in hosts or f"{ip1} web1" in hosts
        assert node.out("exec", "web1", "cat", "/etc/hostname") == "web1"
        assert info["HostsPath"] and info["ResolvConfPath"]
    finally:
        node.docker("rm", "-f", "web1", "web2")


def test_user_networks_resolve_names_and_are_walls(node):
    node.docker("network", "create", "--subnet", "10.231.0.0/24", "--label", "team=a", "neta")
    node.docker("network", "create", "netb")
    try:
        node.docker("run", "-d", "--name", "srv", "--network", "neta", "--network-alias", "api", "busybox",
                    "sh", "-c", HTTPD)
        ip = _ip(node, "srv", "neta")
        assert ip.startswith("10.231.0.")
        for name in ("srv", "api"):
            out = node.out("run", "--rm", "--network", "neta", "busybox", "nslookup", name)
            assert ip in out, out
        assert node.out("run", "--rm", "--network", "neta", "busybox", "wget", "-qO-", f"http://{ip}/") \
            .startswith("hello-from-")
        # Another network: the name does not resolve and the address is unreachable.
        res = node.docker("run", "--rm", "--network", "netb", "busybox", "nslookup", "srv", check=False)
        assert ip not in res.stdout.decode()
        # (nc -w, not `timeout`: busybox timeout as PID 1 would signal itself, which PID 1 ignores)
        res = node.docker("run", "--rm", "--network", "netb", "busybox", "nc", "-w", "2", ip, "80", check=False)
        assert res.returncode != 0 and b"timed out" in res.stderr
        assert "neta" in node.out("network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}")
        busy = node.docker("network", "rm", "neta", check=False)
        assert busy.returncode != 0 and b"has active endpoints" in busy.stderr
    finally:
        node.docker("rm", "-f", "srv")
        node.docker("network", "rm", "neta", "netb", check=False)
    assert "neta" not in node.out("network", "ls", "--format", "{{.Name}}").split()


def test_published_port_is_reachable_on_the_node_and_a_taken_port_is_refused(node):
    node.docker("run", "-d", "--name", "pub", "--hostname", "pub", "-p", "8080:80", "busybox", "sh", "-c", HTTPD)
    try:
        assert "0.0.0.0:8080" in node.out("port", "pub")
        res = _in_node_netns(node, "/bin/busybox", "wget", "-qO-", "http://127.0.0.1:8080/")
        assert res.stdout.decode().strip() == "hello-from-pub", res.stderr
        taken = node.docker("run", "-d", "-p", "8080:80", "busybox", "sleep", "5", check=False)
        assert taken.returncode != 0 and b"8080" in taken.stderr
    finally:
        node.docker("rm", "-f", "pub")
        leftover = node.out("ps", "-aq", "--filter", "status=created")
        if leftover:
            node.docker("rm", "-f", *leftover.split())


def test_connect_and_disconnect_a_running_container(node):
    node.docker("network", "create", "--subnet", "10.232.0.0/24", "side")
    node.docker("run", "-d", "--name", "hub", "--hostname", "hub", "busybox", "sh", "-c", HTTPD)
    try:
        node.docker("network", "connect", "--ip", "10.232.0.50", "--alias", "center", "side", "hub")
        assert _ip(node, "hub", "side") == "10.232.0.50"
        links = node.out("exec", "hub", "sh", "-c", "ip -o -4 addr | awk '{print $2, $4}'")
        assert "10.232.0.50/24" in links
        out = node.out("run", "--rm", "--network", "side", "busybox", "nslookup", "center")
        assert "10.232.0.50" in out
        assert node.out("run", "--rm", "--network", "side", "busybox", "wget", "-qO-", "http://10.232.0.50/") \
            == "hello-from-hub"
        taken = node.docker("run", "--rm", "--network", "side", "--ip", "10.232.0.50", "busybox", "true",
                            check=False)
        assert taken.returncode != 0 and b"Address already in use" in taken.stderr  # dockerd's words
        node.docker("network", "disconnect", "side", "hub")
        assert "side" not in json.loads(node.out("inspect", "hub"))[0]["NetworkSettings"]["Networks"]
        assert "10.232.0.50" not in node.out("exec", "hub", "ip", "-o", "-4", "addr")
        missing = node.docker("network", "connect", "nosuchnet", "hub", check=False)
        assert missing.returncode != 0 and b"nosuchnet" in missing.stderr
    finally:
        node.docker("rm", "-f", "hub")
        node.docker("network", "rm", "side", check=False)


def test_internal_network_has_no_way_out_and_bad_subnets_are_refused(node):
    node.docker("network", "create", "--internal", "--subnet", "10.233.0.0/24", "inner")
    try:
        out = node.out("run", "--rm", "--network", "inner", "busybox", "ip", "route")
        assert "default" not in out  # no gateway route out of an internal network
        bad = node.docker("network", "create", "--subnet", "10.233.0.0/25", "overlap", check=False)
        assert bad.returncode != 0 and b"overlap" in bad.stderr.lower()
        bad = node.docker("network", "create", "--subnet", "10.300.0.0/24", "broken", check=False)
        assert bad.returncode != 0
        assert "broken" not in node.out("network", "ls", "--format", "{{.Name}}").split()
    finally:
        node.docker("network", "rm", "inner")


def test_publish_all_uses_the_images_exposed_ports(node, busybox_tar):
    node.docker("import", "--change", "EXPOSE 80", str(busybox_tar), "webimg:1")
    node.docker("run", "-d", "--name", "allpub", "--hostname", "allpub", "-P", "webimg:1", "sh", "-c", HTTPD)
    try:
        mapping = node.out("port", "allpub", "80/tcp").splitlines()[0]
        port = mapping.rsplit(":", 1)[1]
        res = _in_node_netns(node, "/bin/busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/")
        assert res.stdout.decode().strip() == "hello-from-allpub", res.stderr
    finally:
        node.docker("rm", "-f", "allpub")
        node.docker("rmi", "webimg:1")
