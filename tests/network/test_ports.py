"""Published ports: DNAT from outside, the proxy for the node's own loopback, clean conflicts."""

from __future__ import annotations

import pytest

from .conftest import NODE_IP, AgentError


def test_published_port_reachable_on_the_node_address_and_loopback(topo):
    agent = topo.agent()
    web = agent("ctr_create", name="web", ports=[["80/tcp", "", "8080"], ["80/tcp", NODE_IP, "8081"]])
    started = agent("ctr_start", cid=web)
    assert sorted((p["host_ip"], p["host_port"]) for p in started["ports"]) == [("0.0.0.0", 8080), (NODE_IP, 8081)]
    topo.httpd(agent.netns(web), "published!")
    # from another machine: DNAT in the node's namespace
    assert topo.probe(topo.client_path(), "connect", NODE_IP, "8080")["data"].endswith("published!")
    assert topo.probe(topo.client_path(), "connect", NODE_IP, "8081")["data"].endswith("published!")
    # on the node itself: loopback goes through the userland proxy
    assert topo.probe(topo.node_path(), "connect", "127.0.0.1", "8080")["data"].endswith("published!")
    # from a container on another network, through the node's address
    agent("net_create", name="other")
    peer = agent("ctr_create", name="peer", network_mode="other")
    agent("ctr_start", cid=peer)
    assert topo.probe(agent.netns(peer), "connect", NODE_IP, "8080")["data"].endswith("published!")
    # hairpin: the container reaches its own published port
    assert topo.probe(agent.netns(web), "connect", NODE_IP, "8080")["data"].endswith("published!")
    settings = agent("settings", cid=web)
    assert {(p["proto"], p["container_port"], p["host_port"]) for p in settings["ports"]} == {
        ("tcp", 80, 8080), ("tcp", 80, 8081)}
    agent("ctr_stop", cid=web)
    assert not topo.probe(topo.client_path(), "connect", NODE_IP, "8080", "1")["ok"]
    assert not topo.probe(topo.node_path(), "connect", "127.0.0.1", "8080", "1")["ok"]


def test_publish_all_and_udp(topo):
    agent = topo.agent()
    c = agent("ctr_create", name="c", exposed=["80/tcp", "53/udp"], publish_all=True)
    started = agent("ctr_start", cid=c)
    ports = {(p["proto"], p["container_port"]): p["host_port"] for p in started["ports"]}
    assert set(ports) == {("tcp", 80), ("udp", 53)} and all(p >= 1024 for p in ports.values())
    topo.httpd(agent.netns(c), "dash-P")
    topo.serve_py(agent.netns(c), "udpecho", "53", udp_port=53)
    assert topo.probe(topo.client_path(), "connect", NODE_IP, str(ports["tcp", 80]))["data"].endswith("dash-P")
    assert topo.probe(topo.client_path(), "udp", NODE_IP, str(ports["udp", 53]), "ping")["data"] == "echo:ping"
    assert topo.probe(topo.node_path(), "udp", "127.0.0.1", str(ports["udp", 53]), "lo")["data"] == "echo:lo"


def test_a_taken_port_is_a_clean_conflict(topo):
    agent = topo.agent()
    first = agent("ctr_create", name="first", ports=[["80/tcp", "", "8080"]])
    agent("ctr_start", cid=first)
    before, leases = agent("counts"), agent("leases")
    second = agent("ctr_create", name="second", ports=[["80/tcp", "", "8080"]])
    with pytest.raises(AgentError) as exc:
        agent("ctr_start", cid=second)
    assert exc.value.type == "SystemError_"  # dockerd: 500
    assert "Bind for 0.0.0.0:8080 failed: port is already allocated" in exc.value.message
    assert exc.value.message.startswith("failed to set up container networking: "
                                        "driver failed programming external connectivity on endpoint second (")
    assert agent("counts") == before and agent("leases") == leases  # nothing half-made
    # a port some other process on the node holds
    topo.httpd(topo.node_path(), "not a container", port=9090)
    third = agent("ctr_create", name="third", ports=[["80/tcp", "", "9090"]])
    with pytest.raises(AgentError) as exc:
        agent("ctr_start", cid=third)
    assert exc.value.type == "SystemError_"
    assert "failed to bind host port for 0.0.0.0:9090:" in exc.value.message
    assert "address already in use" in exc.value.message
    assert agent("counts") == before and agent("leases") == leases


def test_disconnecting_the_publishing_network_unpublishes(topo):
    agent = topo.agent()
    c = agent("ctr_create", name="c", ports=[["80/tcp", "", "8090"]])
    agent("ctr_start", cid=c)
    topo.httpd(agent.netns(c), "soon gone")
    assert topo.probe(topo.client_path(), "connect", NODE_IP, "8090")["ok"]
    rules = agent("counts")["rules"]
    agent("disconnect", term="bridge", cid=c)
    assert agent("counts")["rules"] == rules - 1
    assert agent("settings", cid=c)["ports"] == []
    assert not topo.probe(topo.client_path(), "connect", NODE_IP, "8090", "1")["ok"]
    agent("ctr_rm", cid=c)
    assert agent("counts")["rules"] == rules - 1
