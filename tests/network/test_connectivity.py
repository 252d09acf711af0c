"""Own IPs on a bridge, walls between networks, internal networks, outbound NAT: real TCP."""

from __future__ import annotations

from .conftest import CLIENT_IP, NODE_IP, sh


def _ip(started: dict, index: int = 0) -> str:
    return started["endpoints"][index]["ip"]


def test_two_containers_share_port_80_and_reach_each_other(topo):
    agent = topo.agent()
    c1, c2 = agent("ctr_create", name="c1"), agent("ctr_create", name="c2")
    s1, s2 = agent("ctr_start", cid=c1), agent("ctr_start", cid=c2)
    assert _ip(s1) != _ip(s2)
    assert s1["endpoints"][0]["gateway"] == s2["endpoints"][0]["gateway"] == "10.213.0.1"
    topo.httpd(agent.netns(c1), "hello from c1")
    topo.httpd(agent.netns(c2), "hello from c2")
    assert topo.probe(agent.netns(c1), "connect", _ip(s2), "80")["data"].endswith("hello from c2")
    assert topo.probe(agent.netns(c2), "connect", _ip(s1), "80")["data"].endswith("hello from c1")
    # inside: only lo and eth0, the address, the MAC derived from it, a default route
    addr = sh("nsenter", f"--net={agent.netns(c1)}", "ip", "-o", "-4", "addr").stdout
    assert f"eth0    inet {_ip(s1)}/16" in addr.replace("\\", "") or f"{_ip(s1)}/16" in addr
    links = sh("nsenter", f"--net={agent.netns(c1)}", "ip", "-o", "link").stdout
    assert [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()] == ["lo", "eth0"]
    assert s1["endpoints"][0]["mac"] in links
    assert "default via 10.213.0.1 dev eth0" in sh("nsenter", f"--net={agent.netns(c1)}", "ip", "route").stdout
    # unprivileged ports and ping, as dockerd sets them
    port_start = sh("nsenter", f"--net={agent.netns(c1)}", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert port_start.stdout.strip() == "0"
    files = agent("files", cid=c1)
    assert files["hosts"].endswith(f"{_ip(s1)}\t{c1[:12]}\n")
    assert files["hostname"] == f"{c1[:12]}\n"
    assert "nameserver 10.213.0.1" in files["resolv.conf"]


def test_networks_are_walled_off(topo):
    agent = topo.agent()
    agent("net_create", name="front")
    agent("net_create", name="back")
    a1 = agent("ctr_create", name="a1", network_mode="front")
    a2 = agent("ctr_create", name="a2", network_mode="front")
    b1 = agent("ctr_create", name="b1", network_mode="back")
    sa1, sa2, sb1 = (agent("ctr_start", cid=c) for c in (a1, a2, b1))
    for cid in (a1, a2, b1):
        topo.httpd(agent.netns(cid), f"hello from {cid[:6]}")
    assert topo.probe(agent.netns(a1), "connect", _ip(sa2), "80")["ok"]
    blocked = topo.probe(agent.netns(a1), "connect", _ip(sb1), "80", "1")
    assert not blocked["ok"], blocked
    blocked = topo.probe(agent.netns(b1), "connect", _ip(sa1), "80", "1")
    assert not blocked["ok"], blocked
    # the default bridge is walled from user networks too
    d1 = agent("ctr_create", name="d1")
    sd1 = agent("ctr_start", cid=d1)
    assert not topo.probe(agent.netns(d1), "connect", _ip(sa1), "80", "1")["ok"]
    assert not topo.probe(agent.netns(a1), "connect", _ip(sd1), "80", "1")["ok"]


def test_internal_network_has_no_way_out(topo):
    agent = topo.agent()
    agent("net_create", name="vault", internal=True)
    agent("net_create", name="open")
    inside = agent("ctr_create", name="inside", network_mode="vault")
    peer = agent("ctr_create", name="peer", network_mode="vault")
    outside = agent("ctr_create", name="outside", network_mode="open")
    s_in, s_peer, _ = (agent("ctr_start", cid=c) for c in (inside, peer, outside))
    # a server on the outside client, with a route back to the containers through the node
    sh("ip", "-n", topo.client, "route", "add", "10.0.0.0/8", "via", NODE_IP)
    topo.httpd(topo.client_path(), "outside world")
    topo.httpd(topo.node_path(), "the node itself", port=8081)
    topo.httpd(agent.netns(peer), "peer")
    assert "default" not in sh("nsenter", f"--net={agent.netns(inside)}", "ip", "route").stdout
    assert topo.probe(agent.netns(inside), "connect", _ip(s_peer), "80")["ok"]  # its own network works
    assert not topo.probe(agent.netns(inside), "connect", CLIENT_IP, "80", "1")["ok"]
    assert not topo.probe(agent.netns(inside), "connect", NODE_IP, "8081", "1")["ok"]
    gateway = s_in["endpoints"][0]["ip"].rsplit(".", 1)[0] + ".1"
    assert not topo.probe(agent.netns(inside), "connect", gateway, "8081", "1")["ok"]
    # while a container on a normal network gets out (routed, no NAT) and reaches the node
    assert topo.probe(agent.netns(outside), "connect", CLIENT_IP, "80")["data"].endswith("outside world")
    assert topo.probe(agent.netns(outside), "connect", NODE_IP, "8081")["data"].endswith("the node itself")
    # and nothing from outside gets in unasked
    assert not topo.probe(topo.client_path(), "connect", _ip(s_peer), "80", "1")["ok"]


def test_outbound_nat_when_enabled(topo):
    agent = topo.agent(outbound_nat=True)
    c = agent("ctr_create", name="c")
    agent("ctr_start", cid=c)
    topo.httpd(topo.client_path(), "nat works")  # the client has no route back to 10.213/16
    got = topo.probe(agent.netns(c), "connect", CLIENT_IP, "80")
    assert got["data"].endswith("nat works")


def test_none_network_is_loopback_only(topo):
    agent = topo.agent()
    c = agent("ctr_create", name="lonely", network_mode="none")
    started = agent("ctr_start", cid=c)
    assert started["endpoints"] == []
    links = sh("nsenter", f"--net={agent.netns(c)}", "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and " lo:" in links[0] and "UP" in links[0]
    files = agent("files", cid=c)
    assert files["hosts"].splitlines()[-1] == "ff02::2\tip6-allrouters"
    agent("ctr_rm", cid=c)
    assert agent("counts")["pins"] == []
