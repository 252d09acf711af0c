"""Network setup time per container and TCP throughput, all inside namespaces made for the run.

    sudo python bench/network_setup.py [--n 200] [--seconds 3] [--json] [--no-throughput]

What it measures (every figure in one run, on this machine):

  setup      one endpoint = pinned netns + veth on the bridge + address + route + sysctls:
             - appliance's netlink path (network/wiring.py), per container, N times
             - the iproute2 path of linux-runtime-notes §4 (7 `ip` processes), for comparison
             - NetworkService.attach_container end to end (LMDB lease, wiring, hosts files,
               DNS entry), without and with one published port (iptables-restore), one at a
               time with --gap between them (the rest of a container start: the service makes
               its spare namespaces then), and in a burst (no gap: spares run out)
             - per step: where an attach's time goes (see STEPS)
  teardown   detach_container (unpin, DNAT rules, records), and how long after it the kernel
             has removed the veths and the leases are released (in the background)
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


#: Steps of an attach (and a detach) timed on their own: (label, object path, attribute). The
#: bench wraps these callables with a timer and calls through; nothing else changes. Steps in
#: worker threads overlap: `lease_commit` (+ `iptables_add`) runs beside `prepare`.
STEPS = (
    ("lease_plan", "svc", "_plan_leases"),          # read txn + IPAM, event loop
    ("lease_commit", "svc", "_commit_leases"),      # write txn + fsync, worker thread
    ("prepare", "svc", "_prepare_sync"),            # worker thread: everything below
    ("  sandbox", "wiring", "create_sandbox"),      # namespace (a spare's, or new) + veths
    ("  spare_used", "netns", "move_pinned"),       # n: how many attaches found a spare
    ("  veth", "wiring", "_plug"),                  # 4 netlink round trips
    ("  files", "svc", "_write_files"),             # hosts, hostname, resolv.conf
    ("iptables_add", "firewall", "add_ports"),      # one iptables-restore
    ("dns_register", "registry", "add"),
    ("spare_made", "svc", "_make_spare"),           # in the background, between attaches
    ("detach_release", "svc", "_release_sync"),     # unpin + files dir moved away
    ("iptables_remove", "firewall", "remove_ports"),
)


def _timed(steps: dict, label: str, owner, name: str) -> None:
    """Time every call of owner.name under `label` (absent steps are skipped, so this bench
    also runs against older versions for before/after figures)."""
    import functools
    import inspect

    fn = getattr(owner, name, None)
    if fn is None:
        return
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def timed(*a, **k):
            t = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                steps.setdefault(label, []).append(time.perf_counter() - t)
    else:
        @functools.wraps(fn)
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                steps.setdefault(label, []).append(time.perf_counter() - t)
    setattr(owner, name, timed)


def worker(args: dict) -> dict:
    import trio

    from appliance.engine.events import EventLog
    from appliance.engine.networks import NetworkOptions, NetworkService
    from appliance.network import netns
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

            steps: dict[str, list[float]] = {}
            owners = {"svc": svc, "netns": netns, "wiring": svc._wiring, "firewall": svc._firewall,
                      "registry": svc._registry}
            for label, owner, name in STEPS:
                _timed(steps, label, owners[owner], name)
            released: dict[str, float] = {}
            reap = getattr(svc, "_reap", None)

            async def timed_reap(jobs, *a, **k):
                await reap(jobs, *a, **k)
                for job in jobs:
                    released.setdefault(job.cid, time.perf_counter())
            if reap is not None:
                svc._reap = timed_reap

            gap = args["gap"]
            for label, ports, count, pause in (("attach", False, n, gap), ("attach_with_port", True, min(n, 50), gap),
                                               ("attach_burst", False, min(n, 50), 0.0)):
                recs = [record(i, ports) for i in range(count)]
                await trio.sleep(max(gap, 0.2))  # spares made
                steps.clear()
                times, down, detached = [], [], {}
                for rec in recs:
                    t = time.perf_counter()
                    await svc.attach_container(rec)
                    times.append(time.perf_counter() - t)
                    await trio.sleep(pause)
                res[label] = _stats(times)
                res[label + "_steps"] = {k: _stats(v) for k, v in steps.items() if not k.startswith(("detach", "iptables_rem"))}
                steps.clear()
                for rec in recs:
                    t = time.perf_counter()
                    await svc.detach_container(rec.id, forget=True)
                    detached[rec.id] = time.perf_counter()
                    down.append(detached[rec.id] - t)
                    await trio.sleep(pause)
                if hasattr(svc, "settle"):
                    await svc.settle()
                res[label.replace("attach", "detach")] = _stats(down)
                res[label.replace("attach", "detach") + "_steps"] = {k: _stats(v) for k, v in steps.items()}
                if released:
                    res[label.replace("attach", "released_after_detach")] = _stats(
                        [released[c] - t for c, t in detached.items() if c in released])

            if args["no_throughput"]:
                await svc.remove("benchnet")
                nursery.cancel_scope.cancel()
                return res
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
    ap.add_argument("--gap", type=float, default=0.05,
                    help="seconds between two attaches (and detaches): the rest of a container start")
    ap.add_argument("--no-throughput", action="store_true", help="setup and teardown figures only")
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
    load_start = os.getloadavg()
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
                "client": ns["cli"], "bare_a": ns["a"], "bare_b": ns["b"], "no_br_nf": a.no_br_nf,
                "gap": a.gap, "no_throughput": a.no_throughput}
        done = subprocess.run(["nsenter", f"--net=/run/netns/{ns['node']}", "unshare", "--mount",
                               "--propagation", "private", sys.executable, str(Path(__file__).resolve()),
                               "--worker", json.dumps(args)], check=True, capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["loadavg"] = {"start": load_start, "end": os.getloadavg()}
    finally:
        for name in ns.values():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    if a.json:
        print(json.dumps(result, indent=2))
        return None
    print(f"load average {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in result['loadavg']['end'])} at the end (1, 5, 15 min), "
          f"{os.cpu_count()} CPUs, gap {a.gap * 1000:.0f} ms")
    row = "{:44} mean {:7.2f} ms   p50 {:7.2f} ms   p95 {:7.2f} ms   (n={})"
    for key, title in (("wiring_setup", "setup per container, netlink (wiring.py)"),
                       ("iproute2_setup", "setup per container, iproute2 (7 x `ip`)"),
                       ("wiring_teardown", "teardown, netlink (delete veth + unpin)")):
        s = result[key]
        print(row.format(title, s["mean_ms"], s["p50_ms"], s["p95_ms"], s["n"]))
    for key in ("attach", "attach_with_port", "attach_burst"):
        for part in (key, key.replace("attach", "detach"), key.replace("attach", "released_after_detach")):
            if part not in result:
                continue
            s = result[part]
            print(row.format(part, s["mean_ms"], s["p50_ms"], s["p95_ms"], s["n"]))
        for part in (key + "_steps", key.replace("attach", "detach") + "_steps"):
            for label, _, _ in STEPS:
                if label in result[part]:
                    s = result[part][label]
                    print(row.format(f"    {label.strip():<22}" if not label.startswith("  ")
                                     else f"      {label.strip():<20}", s["mean_ms"], s["p50_ms"], s["p95_ms"], s["n"]))
    print("(attach steps in worker threads overlap: lease_commit and iptables_add run beside prepare)")
    if a.no_throughput:
        return None
    t = result["throughput_gbps"]
    print(f"TCP container->container over the bridge   {t['container_to_container']:6.2f} Gbit/s")
    print(f"TCP bare netns <-> netns on a veth pair     {t['bare_veth_pair']:6.2f} Gbit/s   "
          f"ratio {t['container_to_container'] / t['bare_veth_pair']:.2f}")
    print(f"published port via DNAT (other namespace)  {result['published_dnat_gbps']:6.2f} Gbit/s")
    print(f"published port via proxy (node loopback)   {result['published_proxy_gbps']:6.2f} Gbit/s")
    return None


if __name__ == "__main__":
    main()
