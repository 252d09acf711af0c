"""The network service under test, as a child process living in a test's "node" namespace.

Started by conftest as `nsenter --net=/run/netns/<node> python -m tests.network.net_agent DATA
OPTIONS_JSON`; it enters the node's pinned mount namespace (as `appliance serve` does), runs
NetworkService.run, and answers one JSON request per stdin line: {"method", "args"} in,
{"ok": true, "value"} or {"ok": false, "type", "message", "traceback"} out. It plays the part of
ContainerService: writes ContainerRecords and calls the lifecycle hooks where containers.py will.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from appliance.runtime.mountns import enter_private_mount_namespace


def _main() -> None:
    data = Path(sys.argv[1])
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    enter_private_mount_namespace(data)  # first, while single-threaded
    import trio

    trio.run(_serve, data, options)


async def _serve(data: Path, options: dict) -> None:
    import trio

    from appliance.engine.events import EventLog
    from appliance.engine.naming import new_id
    from appliance.engine.networks import EndpointConfig, NetworkOptions, NetworkService
    from appliance.errors import ApplianceError
    from appliance.network.ipam import NodeSlice
    from appliance.store import open_store
    from appliance.store.records import (
        ContainerConfig,
        ContainerRecord,
        ContainerState,
        HostConfig,
        PortBindingSpec,
    )

    if "node_slice" in options:
        options["node_slice"] = NodeSlice(*options["node_slice"])
    for key in ("dns_upstreams", "address_pools"):
        if key in options and options[key] is not None:
            options[key] = tuple(tuple(x) if isinstance(x, list) else x for x in options[key])
    store = open_store(data / "store")
    events = EventLog()
    svc = NetworkService(store, events, "node1", "default", data_root=data, options=NetworkOptions(**options))

    def record(cid: str) -> ContainerRecord:
        with store.read() as txn:
            rec = txn.containers.get(cid)
        if rec is None:
            raise KeyError(cid)
        return rec

    def set_status(cid: str, status: str) -> None:
        with store.write() as txn:
            rec = txn.containers.get(cid)
            rec.state = ContainerState(status=status)
            txn.containers.put(cid, rec)

    def ep_json(view) -> dict:
        return {"network": view.network.name, "network_id": view.network.id, **asdict(view.record)}

    async def net_create(name: str, **kw):
        return (await svc.create(name, **kw)).id

    async def net_rm(term: str):
        await svc.remove(term)

    async def net_prune(filters: dict | None = None):
        return await svc.prune(filters or {})

    async def net_inspect(term: str):
        view = svc.inspect(term)
        return {**asdict(view.record), "endpoints": [ep_json(e) for e in view.endpoints]}

    async def net_list(filters: dict | None = None):
        return [v.record.name for v in svc.list(filters or {})]

    async def ctr_create(name: str, network_mode: str = "default", endpoints: dict | None = None,
                         ports: list | None = None, exposed: list | None = None, publish_all: bool = False,
                         hostname: str = "", extra_hosts: list | None = None):
        cid = new_id()
        cfgs = {k: EndpointConfig(tuple(v.get("aliases", ())), v.get("ip", "")) for k, v in (endpoints or {}).items()}
        plan = svc.plan_endpoints(network_mode, cfgs, name)
        host = HostConfig(network_mode=network_mode, publish_all_ports=publish_all,
                          port_bindings=[PortBindingSpec(*p) for p in ports or []], extra_hosts=extra_hosts or [])
        rec = ContainerRecord(id=cid, name=name, node="node1", tenant="default", created=time.time_ns(),
                              image_id="", config=ContainerConfig(hostname=hostname or cid[:12],
                                                                  exposed_ports=exposed or []),
                              host_config=host)
        with store.write() as txn:
            txn.containers.put(cid, rec)
            txn.names.put(name, cid)
        svc.configure_container(rec, plan)
        return cid

    async def ctr_start(cid: str):
        sb = await svc.attach_container(record(cid))
        set_status(cid, "running")
        return {"netns": sb.netns_path, "mounts": [m.source for m in sb.mounts],
                "endpoints": [{"network_id": e.network_id, "ip": e.ip, "ifname": e.ifname, "gateway": e.gateway,
                               "mac": e.mac, "host_ifname": e.host_ifname} for e in sb.endpoints],
                "ports": [asdict(p) for p in sb.ports]}

    async def ctr_stop(cid: str):
        await svc.detach_container(cid)
        set_status(cid, "exited")

    async def ctr_rm(cid: str):
        await svc.detach_container(cid, forget=True)
        with store.write() as txn:
            rec = txn.containers.get(cid)
            txn.containers.delete(cid)
            if rec is not None:
                txn.names.delete(rec.name)

    async def connect(term: str, cid: str, aliases: list | None = None, ip: str = ""):
        await svc.connect(term, record(cid), EndpointConfig(tuple(aliases or ()), ip))

    async def disconnect(term: str, cid: str, force: bool = False):
        await svc.disconnect(term, record(cid), force)

    async def reconcile(known: list | None = None, running: list | None = None):
        with store.read() as txn:
            recs = list(txn.containers.values())
        if known is None:
            known = [r.id for r in recs]
        if running is None:
            running = [r.id for r in recs if r.state.status == "running"]
        await svc.reconcile(known, running)

    async def settings(cid: str):
        nets = svc.container_networks(record(cid))
        return {"sandbox": asdict(nets.sandbox) if nets.sandbox else None,
                "endpoints": [ep_json(e) for e in nets.endpoints], "ports": [asdict(p) for p in nets.ports]}

    async def files(cid: str):
        folder = data / "netfiles" / cid
        return {p.name: p.read_text() for p in folder.iterdir()} if folder.exists() else {}

    async def leases():
        await svc.settle()  # detached containers' veths go in the background; count after
        with store.read() as txn:
            return dict(txn.ip_leases.items())

    async def counts():
        await svc.settle()
        links = (await trio.run_process(["ip", "-o", "link"], capture_stdout=True)).stdout.decode().splitlines()
        saved = (await trio.run_process(["iptables-save"], capture_stdout=True)).stdout.decode().splitlines()
        pins = sorted(os.listdir(data / "netns")) if (data / "netns").exists() else []
        return {"links": len(links), "link_names": sorted(l.split(":")[1].strip().split("@")[0] for l in links),
                "rules": len([l for l in saved if l.startswith("-A ")]), "pins": pins}

    async def events_(since: int = 0):
        return [(e.type, e.action, e.actor_id, e.attributes) for e in list(events._history)[since:]]

    methods = {f.__name__.rstrip("_"): f for f in (
        net_create, net_rm, net_prune, net_inspect, net_list, ctr_create, ctr_start, ctr_stop, ctr_rm,
        connect, disconnect, reconcile, settings, files, leases, counts, events_)}

    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        _write({"ok": True, "value": {"pid": os.getpid()}})
        while True:
            while b"\n" not in buf:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    nursery.cancel_scope.cancel()
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            try:
                value = await methods[req["method"]](**req.get("args", {}))
                reply = {"ok": True, "value": value}
            except ApplianceError as exc:
                reply = {"ok": False, "type": type(exc).__name__, "message": exc.message,
                         "traceback": traceback.format_exc()}
            except Exception as exc:  # noqa: BLE001  reported to the test, which fails with the traceback
                reply = {"ok": False, "type": type(exc).__name__, "message": str(exc),
                         "traceback": traceback.format_exc()}
            _write(reply)


def _write(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    _main()
