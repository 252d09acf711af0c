"""/networks routes over the real NetworkService with fake kernel seams (no root needed)."""

from __future__ import annotations

import json
import time

import pytest
import trio

from appliance.api.app import create_app
from appliance.engine.events import EventLog
from appliance.engine.networks import NetworkOptions, NetworkService
from appliance.errors import NotFound
from appliance.store import open_store
from appliance.store.records import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    HostConfig,
)
from appliance.testing.network import FakeFirewall, FakeWiring


class FakeContainers:
    def __init__(self) -> None:
        self.records: dict[str, ContainerRecord] = {}

    def get(self, ref: str) -> ContainerRecord:
        for rec in self.records.values():
            if ref in (rec.id, rec.name):
                return rec
        raise NotFound(f"No such container: {ref}")


class FakeEngine:
    def __init__(self, networks, containers) -> None:
        self.networks, self.containers = networks, containers

    def __getattr__(self, name: str) -> None:
        return None


async def _call(app, method: str, path: str, body: dict | None = None, query: str = ""):
    sent: list[dict] = []
    raw = json.dumps(body).encode() if body is not None else b""
    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    done = False

    async def receive():
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await trio.sleep_forever()

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(data) if data.strip() else None


@pytest.fixture
def world(tmp_path):
    store = open_store(tmp_path / "store")
    wiring, firewall = FakeWiring(), FakeFirewall()
    svc = NetworkService(store, EventLog(), "node1", "default", data_root=tmp_path,
                         options=NetworkOptions(ip_forward=False, dns_upstreams=(), resolv_conf="/nonexistent"),
                         wiring=wiring, firewall=firewall)
    containers = FakeContainers()
    rec = ContainerRecord(id="c" * 64, name="web", node="node1", tenant="default", created=time.time_ns(),
                          image_id="", config=ContainerConfig(hostname="cccccccccccc"), host_config=HostConfig(),
                          state=ContainerState(status="created"))
    containers.records[rec.id] = rec
    with store.write() as txn:
        txn.containers.put(rec.id, rec)
        txn.names.put(rec.name, rec.id)
    yield create_app(FakeEngine(svc, containers)), svc, wiring, firewall, rec


def _run(world, scenario):
    app, svc, *_ = world

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            await scenario(app)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_create_inspect_list_remove(world):
    _, _, wiring, firewall, _ = world

    async def scenario(app):
        status, body = await _call(app, "POST", "/v1.50/networks/create", {
            "Name": "front", "Driver": "bridge", "Internal": True, "Labels": {"a": "b"},
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.40.0.0/24", "IPRange": "10.40.0.128/25"}]}})
        assert status == 201 and body["Warning"] == "" and len(body["Id"]) == 64
        nid = body["Id"]
        status, net = await _call(app, "GET", f"/networks/{nid[:10]}")
        assert status == 200
        assert net["Name"] == "front" and net["Internal"] is True and net["Scope"] == "local"
        assert net["IPAM"] == {"Driver": "default", "Options": {},
                               "Config": [{"Subnet": "10.40.0.0/24", "IPRange": "10.40.0.128/25",
                                           "Gateway": "10.40.0.128"}]}
        assert net["Labels"] == {"a": "b"} and net["Containers"] == {}
        assert f"br-{nid[:12]}" in wiring.bridges
        assert any(w.internal and w.bridge == f"br-{nid[:12]}" for w in firewall.walls)
        status, listed = await _call(app, "GET", "/networks", query='filters={"type":{"custom":true}}')
        assert [n["Name"] for n in listed] == ["front"]
        status, listed = await _call(app, "GET", "/networks")
        assert sorted(n["Name"] for n in listed) == ["bridge", "front", "host", "none"]
        bridge = next(n for n in listed if n["Name"] == "bridge")
        assert bridge["IPAM"]["Config"] == [{"Subnet": "10.213.0.0/16", "Gateway": "10.213.0.1"}]
        assert bridge["Options"]["com.docker.network.bridge.name"] == "appl0"
        assert (await _call(app, "DELETE", "/networks/front"))[0] == 204
        assert (await _call(app, "GET", "/networks/front")) == (404, {"message": "network front not found"})
        assert f"br-{nid[:12]}" not in wiring.bridges

    _run(world, scenario)


def test_errors_have_dockers_status_and_message(world):
    async def scenario(app):
        assert await _call(app, "POST", "/networks/create", {"Name": "host"}) == (
            403, {"message": "operation is not permitted on predefined host network "})
        assert await _call(app, "POST", "/networks/create", {
            "Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.2.3/16"}]}}) == (
            400, {"message": "invalid network config:\n* invalid subnet 10.1.2.3/16: it should be 10.1.0.0/16"})
        assert (await _call(app, "POST", "/networks/create", {"Name": "a", "IPAM": {"Config": [{"Subnet": "10.5.0.0/16"}]}}))[0] == 201
        assert await _call(app, "POST", "/networks/create", {"Name": "b", "IPAM": {"Config": [{"Subnet": "10.5.1.0/24"}]}}) == (
            403, {"message": "invalid pool request: Pool overlaps with other one on this address space"})
        assert await _call(app, "POST", "/networks/create", {"Name": "a"}) == (
            409, {"message": "network with name a already exists"})
        assert await _call(app, "POST", "/networks/create", {"Name": "o", "Driver": "overlay"}) == (
            404, {"message": 'plugin "overlay" not found'})
        assert await _call(app, "DELETE", "/networks/none") == (
            403, {"message": "none is a pre-defined network and cannot be removed"})
        assert await _call(app, "POST", "/networks/ghost/connect", {"Container": "web"}) == (
            404, {"message": "network ghost not found"})
        assert await _call(app, "POST", "/networks/a/connect", {"Container": "nobody"}) == (
            404, {"message": "No such container: nobody"})

    _run(world, scenario)


def test_connect_disconnect_prune(world):
    _, svc, _, _, rec = world

    async def scenario(app):
        await _call(app, "POST", "/networks/create", {"Name": "n1", "IPAM": {"Config": [{"Subnet": "10.6.0.0/24"}]}})
        await _call(app, "POST", "/networks/create", {"Name": "spare"})
        status, _ = await _call(app, "POST", "/networks/n1/connect", {
            "Container": "web", "EndpointConfig": {"Aliases": ["api"], "IPAMConfig": {"IPv4Address": "10.6.0.9"}}})
        assert status == 200
        settings = svc.container_networks(rec)
        assert [(v.network.name, v.record.requested_ip, v.record.aliases) for v in settings.endpoints] == [
            ("bridge", "", []), ("n1", "10.6.0.9", ["api"])]
        assert (await _call(app, "POST", "/networks/n1/connect", {"Container": "web"}))[0] == 403
        status, body = await _call(app, "POST", "/networks/prune")
        assert status == 200 and sorted(body["NetworksDeleted"]) == ["n1", "spare"]  # stopped: not in use
        assert [v.network.name for v in svc.container_networks(rec).endpoints] == ["bridge"]
        assert await _call(app, "POST", "/networks/bridge/disconnect", {"Container": "web"}) == (200, None)
        assert svc.container_networks(rec).endpoints[0].record.endpoint_id == ""

    _run(world, scenario)


def test_init_layer_holds_only_missing_mount_targets_with_the_images_dir_attributes(tmp_path):
    import os

    from appliance.engine.networks import build_init_layer

    image = tmp_path / "layer"
    (image / "etc").mkdir(parents=True)
    os.chmod(image / "etc", 0o750)
    os.chown(image / "etc", 100000, 100001)
    (image / "etc" / "hosts").write_text("image's own\n")
    (image / "etc" / "resolv.conf").symlink_to("../run/elsewhere")
    init = tmp_path / "init"
    build_init_layer(init, [image], owner_uid=100000)
    made = sorted(str(p.relative_to(init)) for p in init.rglob("*"))
    assert made == ["etc", "etc/hostname"]  # the image has hosts, and resolv.conf as a link
    st = (init / "etc").lstat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o750, 100000, 100001)
    assert (init / "etc" / "hostname").read_text() == ""
    assert (init / "etc" / "hostname").lstat().st_uid == 100000
    assert not (image / "etc" / "hostname").exists()  # the image layer is never written
    build_init_layer(init, [image], owner_uid=100000)  # idempotent across restarts
