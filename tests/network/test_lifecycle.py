"""Endpoints over a container's life: cycles leave nothing, connect/disconnect while running,
bad input changes nothing, leases survive kill -9, reconcile cleans up after a crash."""

from __future__ import annotations

import pytest

from .conftest import AgentError, sh


def _error(call) -> AgentError:
    with pytest.raises(AgentError) as exc:
        call()
    return exc.value


def test_fifty_cycles_leave_interfaces_rules_and_leases_unchanged(topo):
    agent = topo.agent()
    agent("net_create", name="n1")
    keep = agent("ctr_create", name="keep", network_mode="n1")
    agent("ctr_start", cid=keep)
    before = agent("counts")
    leases_before = agent("leases")
    for i in range(50):
        ports = [["80/tcp", "", str(20000 + i)]] if i % 2 else []
        cid = agent("ctr_create", name=f"cycle{i}", network_mode="n1" if i % 3 else "default", ports=ports)
        started = agent("ctr_start", cid=cid)
        assert started["endpoints"][0]["ip"]
        if i % 2:
            assert agent("counts")["rules"] == before["rules"] + 1  # one DNAT rule per port
        agent("ctr_rm", cid=cid)
    after = agent("counts")
    assert after == before, (before, after)
    assert agent("leases") == leases_before
    assert sh("ip", "-n", topo.node, "-o", "link").stdout.count("\n") == before["links"]


def test_connect_and_disconnect_a_running_container(topo):
    agent = topo.agent()
    agent("net_create", name="front", subnet="10.50.0.0/24")
    agent("net_create", name="back", subnet="10.60.0.0/24")
    app = agent("ctr_create", name="app", network_mode="front")
    db = agent("ctr_create", name="db", network_mode="back")
    s_app, s_db = agent("ctr_start", cid=app), agent("ctr_start", cid=db)
    topo.httpd(agent.netns(db), "db here")
    topo.httpd(agent.netns(app), "app here")
    assert not topo.probe(agent.netns(app), "connect", s_db["endpoints"][0]["ip"], "80", "1")["ok"]

    agent("connect", term="back", cid=app, aliases=["api"], ip="10.60.0.42")
    addrs = sh("nsenter", f"--net={agent.netns(app)}", "ip", "-o", "-4", "addr").stdout
    assert "eth1" in addrs and "10.60.0.42/24" in addrs
    routes = sh("nsenter", f"--net={agent.netns(app)}", "ip", "route").stdout
    assert routes.count("default") == 1 and "default via 10.50.0.1 dev eth0" in routes
    assert topo.probe(agent.netns(app), "connect", s_db["endpoints"][0]["ip"], "80")["data"].endswith("db here")
    assert topo.probe(agent.netns(db), "dns", "10.60.0.1", "api")["addresses"] == ["10.60.0.42"]
    assert topo.probe(agent.netns(db), "dns", "10.60.0.1", "app")["addresses"] == ["10.60.0.42"]
    hosts = agent("files", cid=app)["hosts"]
    assert f"{s_app['endpoints'][0]['ip']}\t{app[:12]}" in hosts and f"10.60.0.42\t{app[:12]}" in hosts
    view = agent("net_inspect", term="back")
    assert {e["container_id"] for e in view["endpoints"]} == {app, db}
    assert _error(lambda: agent("connect", term="back", cid=app)).message == \
        "endpoint with name app already exists in network back"

    agent("disconnect", term="back", cid=app)
    assert "eth1" not in sh("nsenter", f"--net={agent.netns(app)}", "ip", "-o", "link").stdout
    assert not topo.probe(agent.netns(app), "connect", s_db["endpoints"][0]["ip"], "80", "1")["ok"]
    assert topo.probe(agent.netns(db), "dns", "10.60.0.1", "api")["rcode"] == 3
    assert "10.60.0.42" not in agent("files", cid=app)["hosts"]
    assert not any(k.endswith("/10.60.0.42") for k in agent("leases"))
    err = _error(lambda: agent("disconnect", term="back", cid=app))
    assert err.type == "Forbidden" and err.message == f"container {app} is not connected to network back"


def test_connect_a_stopped_container_takes_effect_at_start(topo):
    agent = topo.agent()
    agent("net_create", name="extra", subnet="10.70.0.0/24")
    c = agent("ctr_create", name="c")
    agent("connect", term="extra", cid=c, ip="10.70.0.9")
    started = agent("ctr_start", cid=c)
    assert [e["ip"] for e in started["endpoints"]][1] == "10.70.0.9"
    assert started["endpoints"][0]["network_id"] != started["endpoints"][1]["network_id"]


def test_bad_input_gets_dockers_errors_and_changes_nothing(topo):
    agent = topo.agent()
    agent("net_create", name="n1", subnet="10.80.0.0/16", labels={"team": "a"})
    before, leases = agent("counts"), agent("leases")
    err = _error(lambda: agent("net_create", name="n2", subnet="10.80.5.0/24"))
    assert (err.type, err.message) == ("Forbidden", "invalid pool request: Pool overlaps with other one on this address space")
    err = _error(lambda: agent("net_create", name="n3", subnet="10.0.0/33"))
    assert (err.type, err.message) == ("InvalidParameter",
                                       "invalid network config:\n* invalid subnet 10.0.0/33: invalid CIDR block notation")
    err = _error(lambda: agent("net_create", name="n1"))
    assert (err.type, err.message) == ("Conflict", "network with name n1 already exists")
    err = _error(lambda: agent("net_create", name="bridge"))
    assert (err.type, err.message) == ("Forbidden", "operation is not permitted on predefined bridge network ")
    err = _error(lambda: agent("ctr_create", name="x1", network_mode="n1", endpoints={"n1": {"ip": "10.99.0.5"}}))
    assert err.message == ("invalid config for network n1: invalid endpoint settings:\n"
                           "no configured subnet or ip-range contain the IP address 10.99.0.5")
    err = _error(lambda: agent("ctr_create", name="x2", network_mode="nope"))
    assert (err.type, err.message) == ("NotFound", "network nope not found")
    err = _error(lambda: agent("ctr_create", name="x3", endpoints={"default": {"ip": "10.213.0.9"}}))
    assert err.message == "user specified IP address is supported on user defined networks only"
    err = _error(lambda: agent("ctr_create", name="x4", endpoints={"default": {"aliases": ["a"]}}))
    assert err.message == "network-scoped alias is supported only for containers in user defined networks"
    err = _error(lambda: agent("ctr_create", name="x5", network_mode="host"))
    assert err.type == "InvalidParameter" and "host networking is not available" in err.message
    # an address already taken: refused at start, with nothing left configured
    a = agent("ctr_create", name="a", network_mode="n1", endpoints={"n1": {"ip": "10.80.0.5"}})
    agent("ctr_start", cid=a)
    mid, mid_leases = agent("counts"), agent("leases")
    b = agent("ctr_create", name="b", network_mode="n1", endpoints={"n1": {"ip": "10.80.0.5"}})
    err = _error(lambda: agent("ctr_start", cid=b))
    assert (err.type, err.message) == ("Forbidden", "failed to set up container networking: Address already in use")
    assert agent("counts") == mid and agent("leases") == mid_leases
    # connecting to a missing network; removing a network in use (dockerd's 403)
    err = _error(lambda: agent("connect", term="ghost", cid=a))
    assert (err.type, err.message) == ("NotFound", "network ghost not found")
    err = _error(lambda: agent("net_rm", term="n1"))
    ep = agent("net_inspect", term="n1")["endpoints"][0]["endpoint_id"]
    assert (err.type, err.message) == (
        "Forbidden", f'error while removing network: network n1 has active endpoints (name:"a" id:"{ep[:12]}")')
    err = _error(lambda: agent("net_rm", term="bridge"))
    assert (err.type, err.message) == ("Forbidden", "bridge is a pre-defined network and cannot be removed")
    agent("ctr_rm", cid=a)
    agent("ctr_rm", cid=b)
    agent("net_rm", term="n1")
    after = agent("counts")
    assert after["links"] == before["links"] - 1 and after["pins"] == []  # n1's bridge went with it
    assert agent("leases") == {} == {k: v for k, v in leases.items() if not v}


def test_leases_survive_kill9_and_reconcile_cleans_up(topo):
    agent = topo.agent()
    agent("net_create", name="n1", subnet="10.90.0.0/24")
    c1 = agent("ctr_create", name="c1", network_mode="n1")
    c2 = agent("ctr_create", name="c2", network_mode="n1")
    ip1 = agent("ctr_start", cid=c1)["endpoints"][0]["ip"]
    topo.httpd(agent.netns(c1), "still here")
    agent.kill9()

    agent = topo.agent()  # the same data root: a restarted node
    assert agent("leases") == {f"{agent('net_inspect', term='n1')['id']}/{ip1}": c1}
    ip2 = agent("ctr_start", cid=c2)["endpoints"][0]["ip"]
    assert ip2 != ip1  # never handed out twice
    agent("reconcile")  # c1 and c2 are both running: kept
    assert topo.probe(agent.netns(c2), "connect", ip1, "80")["data"].endswith("still here")
    assert topo.probe(agent.netns(c2), "dns", "10.90.0.1", "c1")["addresses"] == [ip1]  # re-adopted

    # c1's container died while the node was down: reconcile releases everything of it
    agent("reconcile", running=[c2])
    assert ip1 not in "".join(agent("leases"))
    assert sorted(agent("counts")["pins"]) == [c2]
    assert topo.probe(agent.netns(c2), "dns", "10.90.0.1", "c1")["rcode"] == 3
    c3 = agent("ctr_create", name="c3", network_mode="n1")
    assert agent("ctr_start", cid=c3)["endpoints"][0]["ip"] == ip1  # now free again


def test_reconcile_removes_leftovers_nobody_owns(topo):
    agent = topo.agent()
    agent("net_create", name="n1")
    c = agent("ctr_create", name="c", network_mode="n1", ports=[["80/tcp", "", "8088"]])
    agent("ctr_start", cid=c)
    baseline_rules = agent("counts")["rules"]
    # the container record vanished (removed while the node was down)
    agent("reconcile", known=[], running=[])
    counts = agent("counts")
    assert counts["pins"] == [] and not any(n.startswith("va") for n in counts["link_names"])
    assert counts["rules"] == baseline_rules - 1 and agent("leases") == {}
    assert [e["ip"] for e in agent("settings", cid=c)["endpoints"]] == [""]  # as configured, unwired


def test_network_list_filters_inspect_prune(topo):
    agent = topo.agent()
    agent("net_create", name="alpha", labels={"env": "prod"})
    agent("net_create", name="beta", labels={"env": "dev"}, internal=True)
    assert agent("net_list") == ["alpha", "beta", "bridge", "host", "none"]
    assert agent("net_list", filters={"label": ["env=prod"]}) == ["alpha"]
    assert agent("net_list", filters={"type": ["builtin"]}) == ["bridge", "host", "none"]
    assert agent("net_list", filters={"name": ["^b"]}) == ["beta", "bridge"]
    assert agent("net_list", filters={"dangling": ["true"]}) == ["alpha", "beta"]
    c = agent("ctr_create", name="user", network_mode="alpha")
    agent("ctr_start", cid=c)
    assert agent("net_list", filters={"dangling": ["true"]}) == ["beta"]
    view = agent("net_inspect", term="alpha")
    assert view["endpoints"][0]["container_id"] == c and view["subnet"].startswith("10.216.")
    assert agent("net_inspect", term=view["id"][:6])["name"] == "alpha"
    assert agent("net_prune") == ["beta"]
    agent("ctr_stop", cid=c)
    assert agent("net_prune", filters={"label!": ["env=prod"]}) == []
    assert agent("net_prune") == ["alpha"]
    actions = [(t, a) for t, a, _, _ in agent("events")]
    assert ("network", "create") in actions and ("network", "connect") in actions
    assert ("network", "disconnect") in actions and ("network", "destroy") in actions
