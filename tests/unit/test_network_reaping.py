"""NetworkService over a fake kernel whose veths die late, as real ones do once a namespace is
unpinned: a detached container's address stays leased until its veth is gone (or the reaper,
past its patience, deletes it), and nothing waits for that unless it needs the address."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from appliance.engine.events import EventLog
from appliance.engine.networks import (
    REAP_INTERVAL,
    REAP_PATIENCE,
    EndpointConfig,
    NetworkOptions,
    NetworkService,
)
from appliance.store import open_store
from appliance.store.records import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    HostConfig,
)
from appliance.testing.network import FakeFirewall, FakeWiring


class DyingWiring(FakeWiring):
    """release_sandbox leaves the veths `dying` until the test (the kernel) clears them."""

    def __init__(self) -> None:
        super().__init__()
        self.dying: set[str] = set()
        self.deleted: list[str] = []

    def release_sandbox(self, pin) -> None:
        for plug in self.sandboxes.pop(str(pin), []):
            self.dying.add(plug.host_ifname)

    def present(self, names):
        return super().present(names) | {n for n in names if n in self.dying}

    def plug(self, pin, plug) -> None:
        self.dying.discard(plug.host_ifname)  # the real one deletes a leftover of that name first
        super().plug(pin, plug)

    def unplug(self, host_ifname: str) -> bool:
        if host_ifname in self.dying:
            self.dying.discard(host_ifname)
            self.deleted.append(host_ifname)
            return True
        return super().unplug(host_ifname)


class World:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.store = open_store(tmp_path / "store")
        self.wiring = DyingWiring()
        self.svc = NetworkService(self.store, EventLog(), "node1", "default", data_root=tmp_path,
                                  # no spares: their worker threads would let the autojump
                                  # clock run past the reaper's patience
                                  options=NetworkOptions(ip_forward=False, dns_upstreams=(),
                                                         resolv_conf="/nonexistent", spares=0),
                                  wiring=self.wiring, firewall=FakeFirewall())

    def container(self, name: str, ip: str = "") -> ContainerRecord:
        cid = (name * 64)[:64]
        rec = ContainerRecord(id=cid, name=name, node="node1", tenant="default", created=time.time_ns(),
                              image_id="", config=ContainerConfig(hostname=cid[:12]),
                              host_config=HostConfig(network_mode="n"), state=ContainerState(status="running"))
        with self.store.write() as txn:
            txn.containers.put(rec.id, rec)
            txn.names.put(rec.name, rec.id)
        cfg = {"n": EndpointConfig(ipv4_address=ip)} if ip else None
        self.svc.configure_container(rec, self.svc.plan_endpoints("n", cfg))
        return rec

    def leases(self) -> dict[str, str]:
        with self.store.read() as txn:
            return {k.split("/", 1)[1]: v for k, v in txn.ip_leases.items()}

    def run(self, scenario) -> None:
        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(self.svc.run)
                await self.svc.create("n", subnet="10.9.0.0/24")
                await scenario(self.svc)
                nursery.cancel_scope.cancel()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def settled() -> None:
    """Every worker thread done and every task blocked (the reaper looks up veths in threads,
    which the autojump clock does not wait for)."""
    for _ in range(3):
        await trio.testing.wait_all_threads_completed()
        await trio.testing.wait_all_tasks_blocked()


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_an_address_stays_leased_until_its_veth_is_gone(world):
    async def scenario(svc):
        a = world.container("a")
        ip = (await svc.attach_container(a)).endpoints[0].ip
        await svc.detach_container(a.id, forget=True)
        assert world.wiring.dying and world.leases() == {ip: a.id}
        await trio.sleep(REAP_PATIENCE / 2)
        await settled()
        assert world.leases() == {ip: a.id}  # the kernel is slow: still held
        world.wiring.dying.clear()  # the kernel is done
        await trio.sleep(3 * REAP_INTERVAL)
        await settled()
        assert world.leases() == {} and world.wiring.deleted == []

    world.run(scenario)


def test_past_its_patience_the_reaper_deletes_the_veth_itself(world):
    async def scenario(svc):
        a = world.container("a")
        await svc.attach_container(a)
        await svc.detach_container(a.id, forget=True)
        await trio.sleep(REAP_PATIENCE + 3 * REAP_INTERVAL)  # someone holds the namespace
        await settled()
        assert world.wiring.deleted and not world.wiring.dying and world.leases() == {}

    world.run(scenario)


def test_a_static_address_held_by_a_dying_veth_is_handed_over(world):
    async def scenario(svc):
        a = world.container("a", ip="10.9.0.5")
        await svc.attach_container(a)
        await svc.detach_container(a.id, forget=True)
        b = world.container("b", ip="10.9.0.5")  # docker rm a; docker run --ip 10.9.0.5 b
        assert (await svc.attach_container(b)).endpoints[0].ip == "10.9.0.5"
        assert world.leases() == {"10.9.0.5": b.id} and world.wiring.deleted  # a's veth went first

    world.run(scenario)


def test_a_restart_keeps_its_new_lease_when_the_old_veth_dies(world):
    async def scenario(svc):
        a, other = world.container("a"), world.container("other")
        ip = (await svc.attach_container(a)).endpoints[0].ip
        await svc.detach_container(a.id)  # exit; the restart policy starts it again at once
        assert (await svc.attach_container(a)).endpoints[0].ip == ip
        world.wiring.dying.clear()
        await trio.sleep(REAP_PATIENCE + 3 * REAP_INTERVAL)
        await settled()
        assert world.leases() == {ip: a.id}
        assert (await svc.attach_container(other)).endpoints[0].ip != ip

    world.run(scenario)


def test_detach_twice_exit_then_remove_leaves_the_reaping_to_the_first(world):
    async def scenario(svc):
        a = world.container("a")
        ip = (await svc.attach_container(a)).endpoints[0].ip
        await svc.detach_container(a.id)  # exit
        await svc.detach_container(a.id, forget=True)  # --rm
        assert world.leases() == {ip: a.id} and world.wiring.deleted == []
        await svc.settle()
        assert world.leases() == {}

    world.run(scenario)
