"""Issue 5 ("every container its own IP and the full port range") item by item, through the real
docker CLI against a real node: what tests/e2e/test_networking.py does not prove yet.

The node runs in a network namespace the test made. An `uplink` fixture adds a second namespace
(an outside client, 192.0.2.2) wired to the node's namespace by a veth (the node's address
192.0.2.1, TEST-NET-1): published ports are reached the way another machine would reach them.
Nothing here touches the machine's own interfaces.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.node import REPO

HTTPD = "echo hello-from-$(hostname) > /var/www/index.html; exec httpd -f -p 80 -h /var/www"
SLEEP = ("busybox", "sleep", "300")
NODE_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2"
PREFIX = "failed to set up container networking: "  # dockerd 28 wraps every start-time network error


# ---- helpers --------------------------------------------------------------------------------------


def _in_node_netns(node, *cmd, timeout=20) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/run/netns/{node.netns}", *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _inspect(node, name: str) -> dict:
    return json.loads(node.out("inspect", name))[0]


def _nets(node, name: str) -> dict:
    return _inspect(node, name)["NetworkSettings"]["Networks"]


def _err(res: subprocess.CompletedProcess) -> str:
    """The daemon's message as the CLI prints it (without the usage hint `docker run` adds)."""
    text = res.stderr.decode()
    assert "Error response from daemon: " in text, text
    message = text.split("Error response from daemon: ", 1)[1].split("\n\nRun '", 1)[0]
    return re.sub(r"\nexit status \d+\n?$", "", message).rstrip("\n")


def _api(node, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    """One raw Engine API request on the node's socket: the status the CLI does not show."""
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(node.docker_host.removeprefix("unix://"))
    try:
        conn.request(method, f"/v1.50{path}", body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, (json.loads(data) if data else None)


def _probe(netns_args: list[str], *args: str, timeout: float = 20) -> dict:
    """tests/network/probe.py in a namespace (`--net=PATH` or `--target=PID --net`)."""
    done = subprocess.run(["nsenter", *netns_args, sys.executable, "-m", "tests.network.probe", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _in_container(node, name: str) -> list[str]:
    return [f"--target={_inspect(node, name)['State']['Pid']}", "--net"]


def _footprint(node) -> tuple:
    """What a failed request must not leave behind in the node's namespace and data root."""
    links = _in_node_netns(node, "ip", "-o", "link").stdout.splitlines()
    rules = sorted(r for r in _in_node_netns(node, "iptables-save").stdout.splitlines() if r.startswith("-A"))
    pins = sorted(p.name for p in (node.data_root / "netns").glob("*"))
    return len(links), rules, pins


class _Servers:
    """Long-running helper processes this module starts (killed by their own PIDs)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def udpecho(self, netns_args: list[str], port: int) -> None:
        self.start(["nsenter", *netns_args, sys.executable, "-m", "tests.network.probe", "udpecho", str(port)])

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.clear()


def _udp_until_answered(netns_args: list[str], ip: str, port: int, data: str) -> dict:
    """A datagram and its echo; repeated while the echo server (just started) is not bound yet."""
    deadline = time.monotonic() + 10
    while True:
        got = _probe(netns_args, "udp", ip, str(port), data, "0.5")
        if got["ok"] or time.monotonic() > deadline:
            return got


@pytest.fixture(scope="module")
def uplink(node):
    """An outside client namespace on a veth to the node's namespace (192.0.2.2 -> 192.0.2.1),
    with a route back to the containers' subnets through the node."""
    client = f"{node.netns}-cli"
    subprocess.run(["ip", "netns", "add", client], check=True)
    try:
        for argv in (["ip", "-n", client, "link", "set", "lo", "up"],
                     ["ip", "-n", node.netns, "link", "add", "up0", "type", "veth", "peer", "name", "eth0",
                      "netns", client],
                     ["ip", "-n", node.netns, "addr", "add", f"{NODE_IP}/24", "dev", "up0"],
                     ["ip", "-n", node.netns, "link", "set", "up0", "up"],
                     ["ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0"],
                     ["ip", "-n", client, "link", "set", "eth0", "up"],
                     ["ip", "-n", client, "route", "add", "10.0.0.0/8", "via", NODE_IP]):
            subprocess.run(argv, check=True)
        yield f"--net=/run/netns/{client}"
    finally:
        subprocess.run(["ip", "netns", "del", client], check=False)  # takes the veth (both ends) with it


@pytest.fixture
def servers():
    s = _Servers()
    try:
        yield s
    finally:
        s.stop()


# ---- default network ------------------------------------------------------------------------------


def test_default_bridge_inspect_agrees_with_the_kernel_and_the_files(node):
    cid = node.out("run", "-d", *SLEEP)
    try:
        info = _inspect(node, cid)
        top = info["NetworkSettings"]
        bridge_net = json.loads(node.out("network", "inspect", "bridge"))[0]
        ep = top["Networks"]["bridge"]
        # what the kernel says inside the container
        addr = node.out("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0").split()
        link = node.out("exec", cid, "ip", "-o", "link", "show", "eth0").split()
        mac = link[link.index("link/ether") + 1]
        route = node.out("exec", cid, "ip", "route")
        ip, prefix = addr[addr.index("inet") + 1].split("/")
        assert (top["IPAddress"], top["IPPrefixLen"], top["MacAddress"]) == (ip, int(prefix), mac)
        assert top["Gateway"] == bridge_net["IPAM"]["Config"][0]["Gateway"] == "10.213.0.1"
        assert f"default via {top['Gateway']} dev eth0" in route
        # Networks.bridge repeats the top-level values, as dockerd's does for the default bridge
        assert (ep["IPAddress"], ep["IPPrefixLen"], ep["Gateway"], ep["MacAddress"], ep["EndpointID"]) == \
            (ip, int(prefix), top["Gateway"], mac, top["EndpointID"])
        assert ep["NetworkID"] == bridge_net["Id"] and len(ep["EndpointID"]) == 64
        assert ep["Aliases"] is None and ep["DNSNames"] is None  # the default bridge has no DNS names
        assert bridge_net["Containers"][info["Id"]]["IPv4Address"] == f"{ip}/{prefix}"
        assert node.out("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid) == ip
        # the three files, in dockerd's format
        short = info["Id"][:12]
        assert node.out("exec", cid, "cat", "/etc/hostname") == short == info["Config"]["Hostname"]
        hosts = node.out("exec", cid, "cat", "/etc/hosts").splitlines()
        assert hosts[0] == "127.0.0.1\tlocalhost" and hosts[-1] == f"{ip}\t{short}"
        assert "::1\tlocalhost ip6-localhost ip6-loopback" in hosts
        resolv = node.out("exec", cid, "cat", "/etc/resolv.conf").splitlines()
        assert [line for line in resolv if line.startswith("nameserver")] == [f"nameserver {top['Gateway']}"]
        # the files' paths in inspect are the ones mounted
        assert info["HostnamePath"].endswith("hostname") and info["HostsPath"].endswith("hosts")
        assert info["ResolvConfPath"].endswith("resolv.conf")
    finally:
        node.docker("rm", "-f", cid)


def test_network_none_has_only_loopback_and_no_address(node):
    out = node.out("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                   "ip -o link | cut -d: -f2; ip -o -4 addr | cut -d' ' -f2; ip route")
    assert out.split() == ["lo", "lo"]  # one link, one (loopback) address, no route
    cid = node.out("run", "-d", "--network", "none", *SLEEP)
    try:
        settings = _inspect(node, cid)["NetworkSettings"]
        assert list(settings["Networks"]) == ["none"]
        assert settings["IPAddress"] == settings["Networks"]["none"]["IPAddress"] == ""
        assert cid not in json.loads(node.out("network", "inspect", "bridge"))[0]["Containers"]
    finally:
        node.docker("rm", "-f", cid)


# ---- docker network create / ls / inspect / rm / prune --------------------------------------------


def test_create_options_inspect_and_the_addresses_they_give(node):
    nid = node.out("network", "create", "--subnet", "10.150.0.0/24", "--gateway", "10.150.0.254",
                   "--ip-range", "10.150.0.128/25", "--label", "team=a", "--label", "flag", "ranged")
    try:
        net = json.loads(node.out("network", "inspect", "ranged"))[0]
        assert net["Id"] == nid and net["Name"] == "ranged" and net["Driver"] == "bridge"
        assert net["IPAM"]["Config"] == [{"Subnet": "10.150.0.0/24", "IPRange": "10.150.0.128/25",
                                          "Gateway": "10.150.0.254"}]
        assert net["Labels"] == {"team": "a", "flag": ""} and net["Internal"] is False
        assert node.out("network", "inspect", "-f", "{{.Name}}", nid[:10]) == "ranged"  # an id prefix
        node.docker("run", "-d", "--name", "ranged1", "--network", "ranged", *SLEEP)
        ep = _nets(node, "ranged1")["ranged"]
        # a dynamic address comes from the ip-range, the gateway is the one asked for
        assert ep["IPAddress"] == "10.150.0.128" and ep["Gateway"] == "10.150.0.254" and ep["IPPrefixLen"] == 24
        assert "default via 10.150.0.254 dev eth0" in node.out("exec", "ranged1", "ip", "route")
        # top-level fields stay empty on a user network (dockerd: default bridge only)
        assert _inspect(node, "ranged1")["NetworkSettings"]["IPAddress"] == ""
        members = json.loads(node.out("network", "inspect", "ranged"))[0]["Containers"]
        assert [(m["Name"], m["IPv4Address"]) for m in members.values()] == [("ranged1", "10.150.0.128/24")]
    finally:
        node.docker("rm", "-f", "ranged1", check=False)
        node.docker("network", "rm", "ranged", check=False)


def test_ls_filters_rm_and_prune(node):
    ids = {name: node.out("network", "create", *args, name) for name, args in
           {"lsa": ["--label", "env=prod"], "lsb": ["--label", "env=dev", "--internal"],
            "other": []}.items()}
    try:
        node.docker("run", "-d", "--name", "lsuser", "--network", "lsa", *SLEEP)

        def names(*filters: str) -> list[str]:
            args = [a for f in filters for a in ("--filter", f)]
            return node.out("network", "ls", *args, "--format", "{{.Name}}").split()

        assert names() == ["bridge", "host", "lsa", "lsb", "none", "other"]
        assert names("name=ls") == ["lsa", "lsb"]
        assert names(f"id={ids['lsb'][:8]}") == ["lsb"]
        assert names("label=env") == ["lsa", "lsb"] and names("label=env=prod") == ["lsa"]
        assert names("driver=bridge") == ["bridge", "lsa", "lsb", "other"]
        assert names("driver=null") == ["none"]
        assert names("type=custom") == ["lsa", "lsb", "other"]
        assert names("type=builtin") == ["bridge", "host", "none"]
        assert names("dangling=true") == ["lsb", "other"] and names("dangling=false") == ["bridge", "host", "lsa", "none"]
        assert node.out("network", "ls", "-q", "--no-trunc", "--filter", "name=other") == ids["other"]
        bad = node.docker("network", "ls", "--filter", "type=weird", check=False)
        assert bad.returncode != 0 and _err(bad) == "invalid filter: 'type'='weird'"
        # inspect several at once; rm several at once
        both = json.loads(node.out("network", "inspect", "lsa", "lsb"))
        assert [n["Name"] for n in both] == ["lsa", "lsb"] and both[1]["Internal"] is True
        # prune: unused user networks only, label filters respected
        assert node.out("network", "prune", "-f", "--filter", "label=env") == "Deleted Networks:\nlsb"
        assert node.out("network", "prune", "-f") == "Deleted Networks:\nother"
        assert names("type=custom") == ["lsa"]
        node.docker("rm", "-f", "lsuser")
        node.out("network", "create", "lsc")
        assert node.out("network", "rm", "lsa", "lsc").split() == ["lsa", "lsc"]
        assert names("type=custom") == []
        assert not any(line.split(":")[1].strip().startswith("br-") for line in
                       _in_node_netns(node, "ip", "-o", "link").stdout.splitlines())  # bridges gone too
    finally:
        node.docker("rm", "-f", "lsuser", check=False)
        node.docker("network", "rm", "lsa", "lsb", "lsc", "other", check=False)


# ---- run --network --ip --network-alias; connect / disconnect ----------------------------------------


def test_run_with_ip_and_alias_then_connect_and_disconnect_the_primary_network(node):
    node.docker("network", "create", "--subnet", "10.151.0.0/24", "front")
    node.docker("network", "create", "--subnet", "10.152.0.0/24", "back")
    try:
        node.docker("run", "-d", "--name", "svc", "--network", "front", "--ip", "10.151.0.77",
                    "--network-alias", "api", "--network-alias", "v1.api", *SLEEP)
        node.docker("run", "-d", "--name", "peer", "--network", "front", *SLEEP)
        ep = _nets(node, "svc")["front"]
        assert ep["IPAddress"] == "10.151.0.77" and ep["IPAMConfig"] == {"IPv4Address": "10.151.0.77"}
        assert ep["Aliases"] == ["api", "v1.api"]
        assert "10.151.0.77/24" in node.out("exec", "svc", "ip", "-o", "-4", "addr", "show", "eth0")
        for name in ("svc", "api", "v1.api"):
            assert "Address: 10.151.0.77" in node.out("exec", "peer", "nslookup", "-type=a", name), name
        # connect a running container to a second network with --ip and --alias
        node.docker("network", "connect", "--ip", "10.152.0.9", "--alias", "db", "back", "svc")
        back = _nets(node, "svc")["back"]
        assert back["IPAddress"] == "10.152.0.9" and back["Aliases"] == ["db"]
        assert "10.152.0.9/24" in node.out("exec", "svc", "ip", "-o", "-4", "addr", "show", "eth1")
        assert "10.152.0.9\t" in node.out("exec", "svc", "cat", "/etc/hosts")
        out = node.out("run", "--rm", "--network", "back", "busybox", "nslookup", "-type=a", "db")
        assert "Address: 10.152.0.9" in out
        # disconnect the network it was started on: eth0 goes, eth1 stays and takes the route
        node.docker("network", "disconnect", "front", "svc")
        assert list(_nets(node, "svc")) == ["back"]
        links = node.out("exec", "svc", "ip", "-o", "link")
        assert "eth0" not in links and "eth1" in links
        assert "default via 10.152.0.1 dev eth1" in node.out("exec", "svc", "ip", "route")
        assert "10.151.0.77" not in node.out("exec", "svc", "cat", "/etc/hosts")
        gone = node.docker("exec", "peer", "nslookup", "-type=a", "api", check=False)
        assert "10.151.0.77" not in gone.stdout.decode() and b"server can't find api" in gone.stdout
        # its address is free again
        assert node.out("run", "--rm", "--network", "front", "--ip", "10.151.0.77", "busybox",
                        "ip", "-o", "-4", "addr", "show", "eth0").split()[3] == "10.151.0.77/24"
    finally:
        node.docker("rm", "-f", "svc", "peer", check=False)
        node.docker("network", "rm", "front", "back", check=False)


# ---- embedded DNS --------------------------------------------------------------------------------


def test_dns_short_ids_other_networks_and_clean_answers(node):
    node.docker("network", "create", "--subnet", "10.153.0.0/24", "dnsa")
    node.docker("network", "create", "--subnet", "10.154.0.0/24", "dnsb")
    node.docker("network", "create", "--internal", "--subnet", "10.155.0.0/24", "dnsin")
    try:
        target = node.out("run", "-d", "--name", "target", "--network", "dnsa", *SLEEP)
        node.docker("run", "-d", "--name", "asker", "--network", "dnsa", *SLEEP)
        node.docker("run", "-d", "--name", "stranger", "--network", "dnsb", *SLEEP)
        node.docker("run", "-d", "--name", "sealed", "--network", "dnsin", *SLEEP)
        ip = _nets(node, "target")["dnsa"]["IPAddress"]
        assert _nets(node, "target")["dnsa"]["DNSNames"] == ["target", target[:12]]

        def lookup(asker: str, name: str, *server: str) -> tuple[int, str]:
            res = node.docker("exec", asker, "nslookup", "-type=a", name, *server, check=False, timeout=30)
            return res.returncode, res.stdout.decode() + res.stderr.decode()

        for name in (target[:12], "target", "target.dnsa"):
            rc, out = lookup("asker", name)
            assert rc == 0 and f"Address: {ip}" in out, (name, out)
        # a name of another network: not answered with its address, but answered at once
        rc, out = lookup("stranger", "target")
        assert rc != 0 and ip not in out and re.search(r"server can't find target: (NXDOMAIN|SERVFAIL)", out), out
        rc, out = lookup("stranger", target[:12])
        assert rc != 0 and ip not in out and "server can't find" in out, out
        # an internal network forwards nothing: a clean NXDOMAIN for names it does not know
        rc, out = lookup("sealed", "example.com")
        assert rc != 0 and "server can't find example.com: NXDOMAIN" in out, out
        sealed_ip = _nets(node, "sealed")["dnsin"]["IPAddress"]
        rc, out = lookup("sealed", "sealed")
        assert rc == 0 and f"Address: {sealed_ip}" in out, out
        # over TCP too (what a client falls back to for a truncated answer), internal network included
        for who, name, ip_ in (("asker", "target", ip), ("sealed", "sealed", sealed_ip)):
            server = node.out("exec", who, "awk", "/^nameserver/ {print $2}", "/etc/resolv.conf")
            got = _probe(_in_container(node, who), "dnstcp", server, "0.1", name)
            assert [(a["rcode"], a["addresses"]) for a in got["answers"]] == [(0, [ip_])], (who, got)
        # unknown names on a normal network go to the node's resolvers: a clean answer, no hang
        rc, out = lookup("asker", "no-such-name.example")
        assert rc != 0 and re.search(r"server can't find no-such-name.example: (NXDOMAIN|SERVFAIL)", out), out
        assert "timed out" not in out
        # another network's DNS server refuses a container that is none of its endpoints
        gw_a = _nets(node, "asker")["dnsa"]["Gateway"]
        rc, out = lookup("stranger", "target", gw_a)
        assert rc != 0 and "server can't find target: REFUSED" in out, out
    finally:
        node.docker("rm", "-f", "target", "asker", "stranger", "sealed", check=False)
        node.docker("network", "rm", "dnsa", "dnsb", "dnsin", check=False)


# ---- isolation ------------------------------------------------------------------------------------


def test_networks_are_walled_off_both_ways_and_internal_has_no_way_out(node, uplink, servers):
    node.docker("network", "create", "--subnet", "10.156.0.0/24", "walla")
    node.docker("network", "create", "--internal", "--subnet", "10.157.0.0/24", "wallin")
    www = node.data_root / "uplink-www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("outside world\n")
    try:
        for name, net in (("onbridge", "bridge"), ("ona", "walla"), ("ona2", "walla"), ("inner", "wallin"),
                          ("inner2", "wallin")):
            node.docker("run", "-d", "--name", name, "--hostname", name, "--network", net, "busybox", "sh", "-c",
                        HTTPD)
        node.docker("run", "-d", "--name", "pubweb", "--hostname", "pubweb", "-p", "18070:80", "busybox", "sh",
                    "-c", HTTPD)
        servers.start(["nsenter", uplink, "busybox", "httpd", "-f", "-p", f"{CLIENT_IP}:8099", "-h", str(www)])
        ip = {name: next(iter(_nets(node, name).values()))["IPAddress"]
              for name in ("onbridge", "ona", "ona2", "inner", "inner2")}

        def reach(src: str, dst_ip: str, port: int = 80) -> dict:
            return _probe(_in_container(node, src), "connect", dst_ip, str(port), "1")

        # the same network: reachable (so the refusals below are the walls, not a dead server)
        assert reach("ona", ip["ona2"])["data"].endswith("hello-from-ona2\n")
        assert reach("inner", ip["inner2"])["data"].endswith("hello-from-inner2\n")
        # out of the node: a normal network gets to the outside client and to a published port on
        # its gateway (so the refusals of the internal network below are its walls)
        assert reach("ona", CLIENT_IP, 8099)["data"].endswith("outside world\n")
        assert reach("ona", "10.156.0.1", 18070)["data"].endswith("hello-from-pubweb\n")
        assert "default" not in node.out("exec", "inner", "ip", "route")
        # across networks, either way, default bridge included: a real TCP connect fails; the
        # internal network gets out neither to the client nor to a published port; nothing from
        # outside gets into a container unpublished (all at once: each waits out its timeout)
        blocked = [(src, ip[dst], 80) for src, dst in (("ona", "onbridge"), ("onbridge", "ona"), ("ona", "inner"),
                                                       ("inner", "ona"), ("onbridge", "inner"), ("inner", "onbridge"))]
        blocked += [("inner", CLIENT_IP, 8099), ("inner", "10.157.0.1", 18070), ("inner", NODE_IP, 18070)]
        ns = {name: _in_container(node, name) for name in ("ona", "onbridge", "inner")}
        with ThreadPoolExecutor(len(blocked) + 1) as pool:
            tries = [pool.submit(_probe, ns[src], "connect", dst, str(port), "1") for src, dst, port in blocked]
            tries.append(pool.submit(_probe, [uplink], "connect", ip["ona"], "80", "1"))
            results = [t.result() for t in tries]
        assert not any(r["ok"] for r in results), [(b, r) for b, r in zip(blocked, results) if r["ok"]]
    finally:
        node.docker("rm", "-f", "onbridge", "ona", "ona2", "inner", "inner2", "pubweb", check=False)
        node.docker("network", "rm", "walla", "wallin", check=False)


# ---- published ports ------------------------------------------------------------------------------


def test_published_tcp_and_udp_on_the_node_address_and_docker_port(node, uplink, servers, busybox_tar):
    node.docker("run", "-d", "--name", "pubs", "--hostname", "pubs", "-p", "18053:53/udp",
                "-p", f"{NODE_IP}:18080:80", "-p", "127.0.0.1:18081:80/tcp", "busybox", "sh", "-c", HTTPD)
    node.docker("import", "--change", "EXPOSE 80", "--change", "EXPOSE 53/udp", str(busybox_tar), "exposer:1")
    node.docker("run", "-d", "--name", "puball", "--hostname", "puball", "-P", "exposer:1", "sh", "-c", HTTPD)
    try:
        assert node.out("port", "pubs").splitlines() == [
            "53/udp -> 0.0.0.0:18053", "80/tcp -> 127.0.0.1:18081", f"80/tcp -> {NODE_IP}:18080"]
        assert node.out("port", "pubs", "53/udp") == "0.0.0.0:18053"
        assert node.out("ps", "--filter", "name=pubs", "--format", "{{.Ports}}") == \
            f"0.0.0.0:18053->53/udp, 127.0.0.1:18081->80/tcp, {NODE_IP}:18080->80/tcp"
        # TCP from another machine, on the address it was published on only
        assert _probe([uplink], "connect", NODE_IP, "18080")["data"].endswith("hello-from-pubs\n")
        assert not _probe([f"--net=/run/netns/{node.netns}"], "connect", "127.0.0.1", "18080", "1")["ok"]
        assert _probe([f"--net=/run/netns/{node.netns}"], "connect", "127.0.0.1", "18081")["data"] \
            .endswith("hello-from-pubs\n")
        assert not _probe([uplink], "connect", NODE_IP, "18081", "1")["ok"]  # loopback-only stays so
        # UDP: a datagram from another machine (and from the node itself) reaches the container
        servers.udpecho(_in_container(node, "pubs"), 53)
        assert _udp_until_answered([uplink], NODE_IP, 18053, "ping")["data"] == "echo:ping"
        assert _probe([f"--net=/run/netns/{node.netns}"], "udp", "127.0.0.1", "18053", "lo")["data"] == "echo:lo"
        # -P: every EXPOSEd port, TCP and UDP, on an ephemeral host port
        mapped = {line.split(" -> ")[0]: line.split(" -> ")[1] for line in node.out("port", "puball").splitlines()}
        assert set(mapped) == {"80/tcp", "53/udp"}
        tcp_port, udp_port = (int(mapped[k].rsplit(":", 1)[1]) for k in ("80/tcp", "53/udp"))
        assert all(m.startswith("0.0.0.0:") for m in mapped.values()) and tcp_port >= 1024 and udp_port >= 1024
        assert _probe([uplink], "connect", NODE_IP, str(tcp_port))["data"].endswith("hello-from-puball\n")
        servers.udpecho(_in_container(node, "puball"), 53)
        assert _udp_until_answered([uplink], NODE_IP, udp_port, "dash-P")["data"] == "echo:dash-P"
        # from a container on another network, through the node's address
        node.docker("network", "create", "--subnet", "10.158.0.0/24", "pubpeer")
        out = node.out("run", "--rm", "--network", "pubpeer", "busybox", "wget", "-qO-", f"http://{NODE_IP}:18080/")
        assert out == "hello-from-pubs"
        # stopped: unpublished
        node.docker("stop", "-t", "0", "pubs")
        assert not _probe([uplink], "connect", NODE_IP, "18080", "1")["ok"]
        assert node.out("port", "pubs") == ""
    finally:
        node.docker("rm", "-f", "pubs", "puball", check=False)
        node.docker("network", "rm", "pubpeer", check=False)
        node.docker("rmi", "exposer:1", check=False)


def test_a_taken_port_is_a_clean_error_and_leaves_nothing(node, servers):
    node.docker("run", "-d", "--name", "holder", "-p", "18090:80", "-p", "18091:53/udp", *SLEEP)
    # a port some other process on the node holds
    blocker = "import socket, time\ns = socket.socket()\ns.bind(('0.0.0.0', 18092))\ns.listen()\ntime.sleep(600)"
    servers.start(["nsenter", f"--net=/run/netns/{node.netns}", sys.executable, "-c", blocker])
    deadline = time.monotonic() + 10
    while ":18092 " not in _in_node_netns(node, "busybox", "netstat", "-ltn").stdout:
        assert time.monotonic() < deadline, "the blocker never listened"
        time.sleep(0.05)
    before = _footprint(node)
    try:
        for spec, bound in (("18090:80", "Bind for 0.0.0.0:18090 failed: port is already allocated"),
                            ("127.0.0.1:18090:80", "Bind for 127.0.0.1:18090 failed: port is already allocated"),
                            ("18091:53/udp", "Bind for 0.0.0.0:18091 failed: port is already allocated")):
            res = node.docker("run", "-d", "--name", "clash", "-p", spec, *SLEEP, check=False)
            assert res.returncode == 125
            assert re.fullmatch(rf"{PREFIX}driver failed programming external connectivity on endpoint clash "
                                rf"\([0-9a-f]{{64}}\): {re.escape(bound)}", _err(res)), res.stderr
            # as dockerd: the container stays, created, with no address and no port
            state = _inspect(node, "clash")
            assert state["State"]["Status"] == "created" and state["State"]["Pid"] == 0
            assert node.out("port", "clash") == "" and _nets(node, "clash")["bridge"]["IPAddress"] == ""
            status, body = _api(node, "POST", "/containers/clash/start")  # dockerd's status: 500
            assert status == 500 and body["message"].startswith(PREFIX) and body["message"].endswith(bound)
            node.docker("rm", "clash")
        res = node.docker("run", "-d", "--name", "clash", "-p", "18092:80", *SLEEP, check=False)
        assert res.returncode == 125
        assert re.fullmatch(rf"{PREFIX}driver failed programming external connectivity on endpoint clash "
                            r"\([0-9a-f]{64}\): failed to bind host port for "
                            r"0\.0\.0\.0:18092:10\.213\.\d+\.\d+:80/tcp: address already in use", _err(res)), res.stderr
        # and the API status is dockerd's: 500, from the start
        status, body = _api(node, "POST", "/containers/clash/start")
        assert status == 500 and "18092" in body["message"] and body["message"].startswith(PREFIX)
        node.docker("rm", "clash")
        assert _footprint(node) == before
        # --rm: nothing at all is left
        res = node.docker("run", "--rm", "-p", "18090:80", "busybox", "true", check=False)
        assert res.returncode == 125 and "port is already allocated" in _err(res)
        assert node.out("ps", "-aq") == node.out("ps", "-q", "--filter", "name=holder")
        assert _footprint(node) == before
    finally:
        node.docker("rm", "-f", "holder", "clash", check=False)


# ---- bad input ------------------------------------------------------------------------------------


def test_bad_input_gets_dockerds_message_and_status_and_changes_nothing(node):
    node.docker("network", "create", "--subnet", "10.160.0.0/24", "--ip-range", "10.160.0.0/25", "taken")
    node.docker("run", "-d", "--name", "owner", "--network", "taken", "--ip", "10.160.0.5", *SLEEP)
    before = _footprint(node), node.out("network", "ls", "--format", "{{.ID}} {{.Name}}"), node.out("ps", "-aq")
    try:
        def refused(*args: str) -> str:
            res = node.docker(*args, check=False)
            assert res.returncode != 0, args
            return _err(res)

        # subnets: overlapping, malformed, not a network address; gateway / ip-range outside (the CLI
        # catches those two itself, so they go to the API as another client would send them)
        assert refused("network", "create", "--subnet", "10.160.0.0/16", "ov") == \
            "invalid pool request: Pool overlaps with other one on this address space"
        assert refused("network", "create", "--subnet", "10.160.0.128/25", "ov") == \
            "invalid pool request: Pool overlaps with other one on this address space"
        assert refused("network", "create", "--subnet", "10.161.0/33", "bad") == \
            "invalid network config:\n* invalid subnet 10.161.0/33: invalid CIDR block notation"
        assert refused("network", "create", "--subnet", "10.161.0.1/24", "bad") == \
            "invalid network config:\n* invalid subnet 10.161.0.1/24: it should be 10.161.0.0/24"
        for body, status, message in (
                ({"Subnet": "10.160.0.0/16"}, 403, "invalid pool request: Pool overlaps with other one on this address space"),
                ({"Subnet": "10.161.0/33"}, 400, "invalid network config:\n* invalid subnet 10.161.0/33: invalid CIDR block notation"),
                ({"Subnet": "10.161.0.1/24"}, 400, "invalid network config:\n* invalid subnet 10.161.0.1/24: it should be 10.161.0.0/24"),
                ({"Subnet": "10.161.0.0/24", "Gateway": "10.162.0.1"}, 400, "invalid network config:\n* invalid gateway 10.162.0.1: parent subnet 10.161.0.0/24 doesn't contain this address"),
                ({"Subnet": "10.161.0.0/24", "IPRange": "10.162.0.0/25"}, 400, "invalid network config:\n* invalid ip-range 10.162.0.0/25: parent subnet 10.161.0.0/24 doesn't contain ip-range")):
            got = _api(node, "POST", "/networks/create", {"Name": "bad", "IPAM": {"Config": [body]}})
            assert got == (status, {"message": message}), body
        got = _api(node, "POST", "/networks/create", {"Name": "taken"})
        assert got == (409, {"message": "network with name taken already exists"})
        # --ip outside the subnet: refused at create, no container made
        assert refused("run", "-d", "--name", "outside", "--network", "taken", "--ip", "10.99.0.5", *SLEEP) == \
            ("invalid config for network taken: invalid endpoint settings:\n"
             "no configured subnet or ip-range contain the IP address 10.99.0.5")
        status, body = _api(node, "POST", "/containers/create?name=outside", {
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "taken"},
            "NetworkingConfig": {"EndpointsConfig": {"taken": {"IPAMConfig": {"IPv4Address": "10.99.0.5"}}}}})
        assert (status, body["message"]) == (400, ("invalid config for network taken: invalid endpoint settings:\n"
                                                   "no configured subnet or ip-range contain the IP address 10.99.0.5"))
        # --ip already taken: refused at start (dockerd's 403 and words), the container stays created
        assert refused("run", "-d", "--name", "twin", "--network", "taken", "--ip", "10.160.0.5", *SLEEP) == \
            f"{PREFIX}Address already in use"
        assert _inspect(node, "twin")["State"]["Status"] == "created"
        status, body = _api(node, "POST", "/containers/twin/start")
        assert (status, body["message"]) == (403, f"{PREFIX}Address already in use")
        node.docker("rm", "twin")
        # connect: to a missing network (404), with a taken address (403, no prefix: not a start)
        node.docker("run", "-d", "--name", "joiner", *SLEEP)
        base = _footprint(node)
        assert refused("network", "connect", "nosuchnet", "joiner") == "network nosuchnet not found"
        assert _api(node, "POST", "/networks/nosuchnet/connect", {"Container": "joiner"}) == \
            (404, {"message": "network nosuchnet not found"})
        assert refused("network", "connect", "--ip", "10.160.0.5", "taken", "joiner") == "Address already in use"
        assert _api(node, "POST", "/networks/taken/connect",
                    {"Container": "joiner", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.160.0.5"}}}) == \
            (403, {"message": "Address already in use"})
        assert list(_nets(node, "joiner")) == ["bridge"] and _footprint(node) == base
        links = node.out("exec", "joiner", "ip", "-o", "link").splitlines()
        assert [line.split(":")[1].strip().split("@")[0] for line in links] == ["lo", "eth0"]
        node.docker("rm", "-f", "joiner")
        # removing a network in use: dockerd 28's 403 naming the endpoints
        ep = json.loads(node.out("network", "inspect", "taken"))[0]["Containers"]
        (entry,) = ep.values()
        message = (f'error while removing network: network taken has active endpoints '
                   f'(name:"owner" id:"{entry["EndpointID"][:12]}")')
        assert refused("network", "rm", "taken") == message
        assert _api(node, "DELETE", "/networks/taken") == (403, {"message": message})
        assert refused("network", "rm", "bridge") == "bridge is a pre-defined network and cannot be removed"
        # nothing half-made by any of it
        after = _footprint(node), node.out("network", "ls", "--format", "{{.ID}} {{.Name}}"), node.out("ps", "-aq")
        assert after == before
        assert node.out("exec", "owner", "ip", "-o", "-4", "addr", "show", "eth0").split()[3] == "10.160.0.5/24"
    finally:
        node.docker("rm", "-f", "owner", "outside", "twin", "joiner", check=False)
        node.docker("network", "rm", "taken", "ov", "bad", check=False)
