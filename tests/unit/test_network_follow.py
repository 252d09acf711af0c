"""NetworkService over fake kernel seams: DNS names follow `docker rename` (at once and across a
node restart), and the default route is re-elected when its network is disconnected."""

from __future__ import annotations

import time
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
import trio

from appliance.engine.events import EventLog
from appliance.engine.networks import NetworkOptions, NetworkService
from appliance.store import open_store
from appliance.store.records import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    HostConfig,
)
from appliance.testing.network import FakeFirewall, FakeWiring


class World:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.store = open_store(tmp_path / "store")
        self.wiring = FakeWiring()

    def service(self) -> NetworkService:
        return NetworkService(self.store, EventLog(), "node1", "default", data_root=self.tmp,
                              options=NetworkOptions(ip_forward=False, dns_upstreams=(), resolv_conf="/nonexistent"),
                              wiring=self.wiring, firewall=FakeFirewall())

    def container(self, name: str, network_mode: str) -> ContainerRecord:
        cid = (name * 64)[:64]
        rec = ContainerRecord(id=cid, name=name, node="node1", tenant="default", created=time.time_ns(),
                              image_id="", config=ContainerConfig(hostname=cid[:12]),
                              host_config=HostConfig(network_mode=network_mode),
                              state=ContainerState(status="running"))
        self.put(rec)
        return rec

    def put(self, rec: ContainerRecord) -> None:
        with self.store.write() as txn:
            txn.containers.put(rec.id, rec)
            txn.names.put(rec.name, rec.id)

    def run(self, scenario, svc: NetworkService | None = None) -> None:
        svc = svc or self.service()

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(svc.run)
                await scenario(svc)
                nursery.cancel_scope.cancel()

        trio.run(main)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def _resolve(svc: NetworkService, asker: str, name: str) -> list[IPv4Address] | None:
    return svc._registry.lookup(asker, name)


def _dns_names(world: World, cid: str) -> list[list[str]]:
    with world.store.read() as txn:
        return [e.dns_names for e in txn.endpoints.values() if e.container_id == cid]


def test_rename_moves_the_dns_name_at_once(world):
    async def scenario(svc):
        await svc.create("front", subnet="10.50.0.0/24")
        web, cli = world.container("web", "front"), world.container("cli", "front")
        for rec in (web, cli):
            await svc.attach_container(rec)
        ip = _resolve(svc, cli.id, "web")
        assert ip
        renamed = replace(web, name="api")
        world.put(renamed)
        svc.rename_container(renamed)
        assert _resolve(svc, cli.id, "api") == ip and _resolve(svc, cli.id, "api.front") == ip
        assert _resolve(svc, cli.id, "web") is None and _resolve(svc, cli.id, "web.front") is None
        assert _resolve(svc, cli.id, web.id[:12]) == ip  # the other names stay
        assert _dns_names(world, web.id) == [["api", web.id[:12]]]
        # a container that does not run has no names; its next start takes the current one
        idle = world.container("idle", "front")
        svc.configure_container(idle, svc.plan_endpoints("front"))
        svc.rename_container(replace(idle, name="later"))
        assert _dns_names(world, idle.id) == [[]] and _resolve(svc, cli.id, "later") is None
        world.put(replace(idle, name="later"))
        await svc.attach_container(replace(idle, name="later"))
        assert _resolve(svc, cli.id, "later") and _resolve(svc, cli.id, "idle") is None

    world.run(scenario)


def test_rename_keeps_an_alias_equal_to_the_old_name(world):
    async def scenario(svc):
        from appliance.engine.networks import EndpointConfig

        await svc.create("front", subnet="10.51.0.0/24")
        web = world.container("web", "front")
        svc.configure_container(web, svc.plan_endpoints("front", {"front": EndpointConfig(aliases=("web",))}))
        await svc.attach_container(web)
        svc.rename_container(replace(web, name="api"))
        assert _resolve(svc, web.id, "web") and _resolve(svc, web.id, "api")

    world.run(scenario)


def test_a_restarted_node_readopts_under_the_current_name(world):
    """The node stopped after the rename's container commit, before the endpoints were updated."""
    state = {}

    async def first(svc):
        await svc.create("front", subnet="10.52.0.0/24")
        web, cli = world.container("web", "front"), world.container("cli", "front")
        await svc.attach_container(web)
        await svc.attach_container(cli)
        state["ip"], state["cli"], state["web"] = _resolve(svc, cli.id, "web"), cli.id, web.id
        with world.store.write() as txn:  # the rename's own transaction only
            txn.names.delete("web")
            txn.names.put("api", web.id)
            txn.containers.put(web.id, replace(web, name="api"))

    world.run(first)

    async def second(svc):
        assert _resolve(svc, state["cli"], "api") == state["ip"]
        assert _resolve(svc, state["cli"], "web") is None
        assert _dns_names(world, state["web"]) == [["api", state["web"][:12]]]

    world.run(second)


def test_disconnecting_the_gateway_network_reelects_the_next_one(world):
    async def scenario(svc):
        a = await svc.create("neta", subnet="10.60.0.0/24")
        await svc.create("inner", subnet="10.61.0.0/24", internal=True)
        c = await svc.create("netc", subnet="10.62.0.0/24")
        d = await svc.create("netd", subnet="10.63.0.0/24")
        rec = world.container("multi", "neta")
        pin = str(world.tmp / "netns" / rec.id)
        await svc.attach_container(rec)
        assert world.wiring.default_routes[pin] == ("eth0", a.gateway)
        await svc.connect("inner", rec)
        await svc.connect("netc", rec)
        assert world.wiring.default_routes[pin] == ("eth0", a.gateway)  # a later network takes nothing
        await svc.disconnect("neta", rec)
        assert world.wiring.default_routes[pin] == ("eth2", c.gateway)  # skips internal networks
        eps = svc.container_networks(rec).endpoints
        assert [(v.network.name, v.record.gateway) for v in eps] == [("inner", ""), ("netc", c.gateway)]
        # only an internal network left: no way out, no route; a new network brings one
        await svc.disconnect("netc", rec)
        assert pin not in world.wiring.default_routes
        await svc.connect("netd", rec)
        assert world.wiring.default_routes[pin] == ("eth0", d.gateway)
        await svc.disconnect("inner", rec)  # not the gateway's: the route stays
        assert world.wiring.default_routes[pin] == ("eth0", d.gateway)

    world.run(scenario)


def test_after_a_reelection_a_new_network_does_not_take_the_route(world):
    async def scenario(svc):
        await svc.create("neta", subnet="10.66.0.0/24")
        b = await svc.create("netb", subnet="10.67.0.0/24")
        await svc.create("netc", subnet="10.68.0.0/24")
        rec = world.container("hopper", "neta")
        pin = str(world.tmp / "netns" / rec.id)
        await svc.attach_container(rec)
        await svc.connect("netb", rec)
        await svc.disconnect("neta", rec)
        await svc.connect("netc", rec)
        assert world.wiring.default_routes[pin] == ("eth1", b.gateway)

    world.run(scenario)
