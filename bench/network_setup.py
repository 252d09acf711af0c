"""Network setup time per container and TCP throughput, all inside namespaces made for the run.

    sudo python bench/network_setup.py [--n 200] [--seconds 3] [--json]

What it measures (every figure in one run, on this machine):

  setup      one endpoint = pinned netns + veth on the bridge + address + route + sysctls:
             - appliance's netlink path (network/wiring.py), per container, N times
             - the iproute2 path of linux-runtime-notes §4 (7 `ip` processes), for comparison
             - NetworkService.attach_container end to end (LMDB lease, wiring, hosts files,
               DNS entry), without and with one published port (iptables-restore)
  teardown   detach_container (veth delete, unpin, lease release)
  throughput one TCP stream, container -> container across the bridge, beside the same tool
             between two bare namespaces on a veth pair; then a published port from another
             namespace (iptables DNAT) and from the node's loopback (userland proxy)

Topology: appl-bench-<r>-node (the node: bridges live here) with up0 192.0.2.1/24 to
appl-bench-<r>-cli; appl-bench-<r>-a/-b, a bare veth pair 10.254.0.1/30 <-> .2. Nothing touches
the root namespace's interfaces; every namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NODE_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2"
CHUNK = 1 << 18


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


# ---- the throughput tool (runs inside a namespace) ----------------------------------------------


def tput_server(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        print("ready", flush=True)
        conn, _ = s.accept()
        buf = bytearray(CHUNK)
        total, start = 0, time.monotonic()
        with conn:
            while n := conn.recv_into(buf):
                total += n
        print(json.dumps({"bytes": total, "seconds": time.monotonic() - start}), flush=True)


def tput_client(ip: str, port: int, seconds: float) -> None:
    data = b"\0" * CHUNK
    with socket.create_connection((ip, port)) as s:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            s.sendall(data)


def throughput(server_ns: str, client_ns: str, ip: str, port: int, seconds: float,
               server_port: int | None = None) -> float:
    """Gbit/s of one stream, measured at the receiver."""
    py = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(["nsenter", f"--net={server_ns}", *py, "--tput-server", str(server_port or port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        subprocess.run(["nsenter", f"--net={client_ns}", *py, "--tput-client", ip, str(port), str(seconds)],
                       check=True)
        result = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    return result["bytes"] * 8 / result["seconds"] / 1e9


# ---- the worker: runs in the node namespace, in a private mount namespace -----------------------


def worker(args: dict) -> dict:
    import trio

    from appliance.engine.events import EventLog
    from appliance.engine.networks import NetworkOptions, NetworkService
    from appliance.network.wiring import Plug, Wiring, bridge_mac, host_ifname
    from appliance.store import open_store
    from appliance.store.records import (
        ContainerConfig,
        ContainerRecord,
        HostConfig,
        PortBindingSpec,
    )

    n, data = args["n"], Path(args["data"])
    out: dict = {}
    if args.get("no_br_nf"):  # per-namespace on these kernels: bridged frames skip iptables
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("0")
    wiring = Wiring()

    # 1. the wiring alone
    wiring.ensure_bridge("br-bench", "10.250.0.1", 16, 1500, bridge_mac("bench"))
    setup, teardown = [], []
    for i in range(n):
        pin = data / "pins" / f"w{i}"
        t = time.perf_counter()
        wiring.create_sandbox(pin, [Plug("br-bench", host_ifname(f"w{i}", "bench"), "eth0",
                                         f"10.250.{(i + 2) // 256}.{(i + 2) % 256}", 16, "10.250.0.1")])
        setup.append(time.perf_counter() - t)
    for i in range(n):
        t = time.perf_counter()
        wiring.destroy_sandbox(data / "pins" / f"w{i}", [host_ifname(f"w{i}", "bench")])
        teardown.append(time.perf_counter() - t)
    out["wiring_setup"], out["wiring_teardown"] = _stats(setup), _stats(teardown)

    # 2. the same with iproute2 subprocesses (the notes' recipe), fewer rounds
    ip_times = []
    for i in range(min(n, 30)):
        name, host = f"appl-bench-ip{i}", f"vbip{i}"
        t = time.perf_counter()
        for argv in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"],
                     ["ip", "link", "add", host, "mtu", "1500", "type", "veth", "peer", "name", "eth0",
                      "mtu", "1500", "netns", name],
                     ["ip", "link", "set", host, "master", "br-bench", "up"],
                     ["ip", "-n", name, "addr", "add", f"10.250.200.{i + 2}/16", "dev", "eth0"],
                     ["ip", "-n", name, "link", "set", "eth0", "up"],
                     ["ip", "-n", name, "route", "add", "default", "via", "10.250.0.1"]):
            subprocess.run(argv, check=True)
        ip_times.append(time.perf_counter() - t)
        subprocess.run(["ip", "link", "del", host], check=True)
        subprocess.run(["ip", "netns", "del", name], check=True)
    out["iproute2_setup"] = _stats(ip_times)
    wiring.delete_bridge("br-bench")

    # 3. the service end to end
    async def service_bench() -> dict:
        store = open_store(data / "store")
        svc = NetworkService(store, EventLog(), "bench", "default", data_root=data,
                             options=NetworkOptions(dns_upstreams=(), resolv_conf="/nonexistent"))
        res: dict = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            await svc.create("benchnet")

            def record(i: int, ports: bool) -> ContainerRecord:
                host = HostConfig(network_mode="benchnet",
                                  port_bindings=[PortBindingSpec("80/tcp", "", str(30000 + i))] if ports else [])
                rec = ContainerRecord(id=secrets.token_hex(32), name=f"b{i}", node="bench", tenant="default",
                                      created=time.time_ns(), image_id="", config=ContainerConfig(), host_config=host)
                with store.write() as txn:
                    txn.containers.put(rec.id, rec)
                    txn.names.put(rec.name, rec.id)
                svc.configure_container(rec, svc.plan_endpoints(host.network_mode))  # at create, as in the node
                return rec

            for label, ports, count in (("attach", False, n), ("attach_with_port", True, min(n, 50))):
                recs = [record(i, ports) for i in range(count)]
                times, down = [], []
                for rec in recs:
                    t = trio.current_time()
                    await svc.attach_container(rec)
                    times.append(trio.current_time() - t)
                for rec in recs:
                    t = trio.current_time()
                    await svc.detach_container(rec.id, forget=True)
                    down.append(trio.current_time() - t)
                res[label], res[label.replace("attach", "detach")] = _stats(times), _stats(down)

            # throughput: two containers on the bridge, one published port
            c1, c2 = record(900, False), record(901, True)
            s1 = await svc.attach_container(c1)
            s2 = await svc.attach_container(c2)
            ip2 = s2.endpoints[0].ip
            secs = args["seconds"]
            runs = {"container_to_container": [], "bare_veth_pair": []}
            for _ in range(args["rounds"]):  # interleaved, so drift hits both alike
                runs["container_to_container"].append(
                    await trio.to_thread.run_sync(throughput, s2.netns_path, s1.netns_path, ip2, 5001, secs))
                runs["bare_veth_pair"].append(await trio.to_thread.run_sync(
                    throughput, f"/run/netns/{args['bare_b']}", f"/run/netns/{args['bare_a']}", "10.254.0.2",
                    5001, secs))
            res["throughput_gbps"] = {k: statistics.median(v) for k, v in runs.items()}
            res["throughput_runs"] = runs
            res["published_dnat_gbps"] = await trio.to_thread.run_sync(
                throughput, s2.netns_path, f"/run/netns/{args['client']}", NODE_IP, 30901, secs, 80)
            res["published_proxy_gbps"] = await trio.to_thread.run_sync(
                throughput, s2.netns_path, f"/run/netns/{args['node']}", "127.0.0.1", 30901, secs, 80)
            await svc.detach_container(c1.id, forget=True)
            await svc.detach_container(c2.id, forget=True)
            await svc.remove("benchnet")
            nursery.cancel_scope.cancel()
        return res

    out.update(trio.run(service_bench))
    return out


def _stats(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "mean_ms": round(statistics.fmean(ms), 3), "p50_ms": round(ms[len(ms) // 2], 3),
            "p95_ms": round(ms[int(len(ms) * 0.95) - 1 if len(ms) > 1 else 0], 3)}


# ---- the driver ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-br-nf", action="store_true",
                    help="set bridge-nf-call-iptables=0 in the node namespace (intra-network frames skip iptables)")
    ap.add_argument("--worker")
    ap.add_argument("--tput-server", type=int)
    ap.add_argument("--tput-client", nargs=3)
    a = ap.parse_args()
    if a.tput_server:
        return tput_server(a.tput_server)
    if a.tput_client:
        return tput_client(a.tput_client[0], int(a.tput_client[1]), float(a.tput_client[2]))
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return None
    if os.geteuid() != 0:
        raise SystemExit("needs root (it makes network namespaces)")
    tag = secrets.token_hex(3)
    ns = {k: f"appl-bench-{tag}-{k}" for k in ("node", "cli", "a", "b")}
    data = Path(tempfile.mkdtemp(prefix="appl-bench-", dir="/tmp"))
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", ns["node"], "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", ns["cli"])
        sh("ip", "-n", ns["node"], "addr", "add", f"{NODE_IP}/24", "dev", "up0")
        sh("ip", "-n", ns["node"], "link", "set", "up0", "up")
        sh("ip", "-n", ns["cli"], "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        sh("ip", "-n", ns["cli"], "link", "set", "eth0", "up")
        sh("ip", "-n", ns["a"], "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", ns["b"])
        for side, addr in (("a", "10.254.0.1/30"), ("b", "10.254.0.2/30")):
            sh("ip", "-n", ns[side], "addr", "add", addr, "dev", "v0")
            sh("ip", "-n", ns[side], "link", "set", "v0", "up")
        args = {"n": a.n, "data": str(data), "seconds": a.seconds, "rounds": a.rounds, "node": ns["node"],
                "client": ns["cli"], "bare_a": ns["a"], "bare_b": ns["b"], "no_br_nf": a.no_br_nf}
        done = subprocess.run(["nsenter", f"--net=/run/netns/{ns['node']}", "unshare", "--mount",
                               "--propagation", "private", sys.executable, str(Path(__file__).resolve()),
                               "--worker", json.dumps(args)], check=True, capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    if a.json:
        print(json.dumps(result, indent=2))
        return None
    t = result["throughput_gbps"]
    print(f"setup per container, netlink (wiring.py)   mean {result['wiring_setup']['mean_ms']:6.2f} ms   "
          f"p95 {result['wiring_setup']['p95_ms']:6.2f} ms   (n={result['wiring_setup']['n']})")
    print(f"setup per container, iproute2 (7 x `ip`)   mean {result['iproute2_setup']['mean_ms']:6.2f} ms   "
          f"p95 {result['iproute2_setup']['p95_ms']:6.2f} ms   (n={result['iproute2_setup']['n']})")
    for key in ("attach", "attach_with_port", "detach", "detach_with_port", "wiring_teardown"):
        s = result[key]
        print(f"{key:42} mean {s['mean_ms']:6.2f} ms   p95 {s['p95_ms']:6.2f} ms   (n={s['n']})")
    print(f"TCP container->container over the bridge   {t['container_to_container']:6.2f} Gbit/s")
    print(f"TCP bare netns <-> netns on a veth pair     {t['bare_veth_pair']:6.2f} Gbit/s   "
          f"ratio {t['container_to_container'] / t['bare_veth_pair']:.2f}")
    print(f"published port via DNAT (other namespace)  {result['published_dnat_gbps']:6.2f} Gbit/s")
    print(f"published port via proxy (node loopback)   {result['published_proxy_gbps']:6.2f} Gbit/s")
    return None


if __name__ == "__main__":
    main()
