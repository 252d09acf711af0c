"""The embedded DNS server, queried from inside container namespaces over real UDP."""

from __future__ import annotations

from .conftest import sh

UPSTREAM = "127.0.0.1:5300"
SILENT = "127.0.0.1:5301"


def _gw(started: dict) -> str:
    return started["endpoints"][0]["gateway"]


def _nameserver(agent, cid: str) -> str:
    """The server the container's resolv.conf names (internal networks have no gateway route)."""
    return next(line.split()[1] for line in agent("files", cid=cid)["resolv.conf"].splitlines()
                if line.startswith("nameserver"))


def test_names_aliases_short_ids_on_the_same_network_only(topo):
    agent = topo.agent()
    agent("net_create", name="front")
    agent("net_create", name="back")
    web = agent("ctr_create", name="web", network_mode="front", endpoints={"front": {"aliases": ["www"]}})
    cli = agent("ctr_create", name="cli", network_mode="front")
    db = agent("ctr_create", name="db", network_mode="back")
    s_web, s_cli, s_db = (agent("ctr_start", cid=c) for c in (web, cli, db))
    ns, server = agent.netns(cli), _gw(s_cli)
    web_ip = s_web["endpoints"][0]["ip"]
    for name in ("web", "www", web[:12], "WEB", "web.front"):
        got = topo.probe(ns, "dns", server, name)
        assert got["rcode"] == 0 and got["addresses"] == [web_ip], (name, got)
    other = topo.probe(ns, "dns", server, "db")  # lives on another network
    assert other["rcode"] == 3 and other["addresses"] == []
    aaaa = topo.probe(ns, "dns", server, "web", "AAAA")  # a name of ours without IPv6: NODATA
    assert aaaa["rcode"] == 0 and aaaa["records"] == []
    ptr = topo.probe(ns, "dns", server, ".".join(reversed(web_ip.split("."))) + ".in-addr.arpa", "PTR")
    assert ptr["records"][0][2] == "web.front"
    # db sees its own network's names only, through its own gateway
    assert topo.probe(agent.netns(db), "dns", _gw(s_db), "web")["rcode"] == 3
    assert topo.probe(agent.netns(db), "dns", _gw(s_db), "db")["addresses"] == [s_db["endpoints"][0]["ip"]]
    # the resolv.conf the container gets points at the server
    assert f"nameserver {server}" in agent("files", cid=cli)["resolv.conf"]
    # a stranger (the node itself, not an endpoint) is refused
    assert topo.probe(topo.node_path(), "dns", server, "web")["rcode"] == 5
    # names go away with the container
    agent("ctr_stop", cid=web)
    assert topo.probe(ns, "dns", server, "web")["rcode"] == 3


def test_other_queries_are_answered_cleanly_never_hang(topo):
    agent = topo.agent()
    agent("net_create", name="n1")
    c = agent("ctr_create", name="c", network_mode="n1")
    s = agent("ctr_start", cid=c)
    got = topo.probe(agent.netns(c), "dns", _gw(s), "example.com", "A", "3")
    assert not got["timeout"] and got["rcode"] == 3 and got["elapsed"] < 1


def test_forwarding_to_the_node_resolvers(topo):
    topo.serve_py(topo.node_path(), "upstream", "127.0.0.1", "5300", "203.0.113.7", udp_port=5300)
    agent = topo.agent(dns_upstreams=[UPSTREAM])
    agent("net_create", name="n1")
    agent("net_create", name="sealed", internal=True)
    c = agent("ctr_create", name="c", network_mode="n1")
    i = agent("ctr_create", name="i", network_mode="sealed")
    s, si = agent("ctr_start", cid=c), agent("ctr_start", cid=i)
    got = topo.probe(agent.netns(c), "dns", _gw(s), "example.com")
    assert got["rcode"] == 0 and got["addresses"] == ["203.0.113.7"] and got["id"] == 4242
    # an internal network's server does not forward: there is no way out, also not by DNS
    assert si["endpoints"][0]["gateway"] == ""
    sealed = topo.probe(agent.netns(i), "dns", _nameserver(agent, i), "example.com")
    assert sealed["rcode"] == 3
    assert topo.probe(agent.netns(i), "dns", _nameserver(agent, i), "i")["addresses"] == [si["endpoints"][0]["ip"]]
    # the default bridge forwards too, but resolves no container names
    d = agent("ctr_create", name="d")
    sd = agent("ctr_start", cid=d)
    assert topo.probe(agent.netns(d), "dns", _gw(sd), "example.com")["addresses"] == ["203.0.113.7"]
    assert topo.probe(agent.netns(d), "dns", _gw(sd), "c")["addresses"] == ["203.0.113.7"]  # forwarded


def test_a_silent_upstream_gives_servfail_in_time(topo):
    topo.serve_py(topo.node_path(), "sink", "127.0.0.1", "5301", udp_port=5301)
    agent = topo.agent(dns_upstreams=[SILENT], dns_timeout=0.5)
    agent("net_create", name="n1")
    c = agent("ctr_create", name="c", network_mode="n1")
    s = agent("ctr_start", cid=c)
    got = topo.probe(agent.netns(c), "dns", _gw(s), "example.com", "A", "5")
    assert not got["timeout"] and got["rcode"] == 2 and got["elapsed"] < 2, got
    # names of ours still answer at once meanwhile
    assert topo.probe(agent.netns(c), "dns", _gw(s), "c")["rcode"] == 0


def test_busybox_nslookup_inside_the_container(topo):
    agent = topo.agent()
    agent("net_create", name="n1")
    a = agent("ctr_create", name="alpha", network_mode="n1")
    b = agent("ctr_create", name="beta", network_mode="n1", endpoints={"n1": {"aliases": ["b-alias"]}})
    agent("ctr_start", cid=a)
    sb = agent("ctr_start", cid=b)
    server = sb["endpoints"][0]["gateway"]
    out = sh("nsenter", f"--net={agent.netns(a)}", "busybox", "nslookup", "-type=a", "b-alias", server,
             check=False, timeout=10)
    assert sb["endpoints"][0]["ip"] in out.stdout, out


def test_tcp_on_the_same_address_several_queries_then_idle_close(topo):
    agent = topo.agent()
    agent("net_create", name="n1")
    web = agent("ctr_create", name="web", network_mode="n1", endpoints={"n1": {"aliases": ["www"]}})
    cli = agent("ctr_create", name="cli", network_mode="n1")
    s_web, s_cli = agent("ctr_start", cid=web), agent("ctr_start", cid=cli)
    web_ip = s_web["endpoints"][0]["ip"]
    got = topo.probe(agent.netns(cli), "dnstcp", _gw(s_cli), "12", "web", "www", "nosuch")
    assert [(a["id"], a["rcode"], a["addresses"]) for a in got["answers"]] == [
        (0, 0, [web_ip]), (1, 0, [web_ip]), (2, 3, [])], got
    assert got["closed_after"] is not None and 7 < got["closed_after"] < 10, got  # idle: 8 s
    # a stranger (the node itself) is refused over TCP as over UDP
    assert topo.probe(topo.node_path(), "dnstcp", _gw(s_cli), "1", "web")["answers"][0]["rcode"] == 5
