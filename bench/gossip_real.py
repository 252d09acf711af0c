"""Failure detection and join convergence on real loopback sockets: appliance vs stock Serf.

    python bench/gossip_real.py                # 5 + 5 members, 10 rounds (~1.5 min)
    python bench/gossip_real.py -n 7 -r 20 --json

Two clusters run side by side in the same run, both with memberlist's default LAN timings:
N real ``appliance serve`` processes and N stock ``serf agent``s (/usr/bin/serf).  Each round:

* **kill**: one non-seed member of each cluster is SIGKILLed at the same moment; every
  survivor is polled (appliance: GET /appliance/members; Serf: its msgpack RPC ``members``)
  every ``--poll`` seconds until it says ``failed``.  Reported: kill -> first survivor says
  failed, and kill -> every survivor says failed (the issue's "detection time").
* **join**: a fresh member joins each cluster through the seed.  Reported: join start ->
  every member (the newcomer included) has seen every live member alive.  Serf's join starts
  at the RPC ``join`` call and is polled; ours starts when the new node's agent starts and
  ends at the last first sighting, both read from the nodes' own `docker events` (type node,
  nanosecond times), because `appliance serve` only answers once it is already joined.

Loopback only; every process is started here and ended by its PID; nodes get free ports.
Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import msgpack

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.cluster.members_cli import fetch  # noqa: E402
from tests.support.node import (  # noqa: E402
    Node, delete_netns, destroy_node, ensure_netns, node_data_root, start_node,
)
from tests.support.ports import free_port  # noqa: E402

SERF = shutil.which("serf") or "/usr/bin/serf"


class SerfRPC:
    """The two calls of Serf's agent RPC this bench needs (msgpack over TCP)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._unpacker = msgpack.Unpacker(raw=False)
        self._seq = 0
        self._call("handshake", {"Version": 1}, reply=False)

    def _read(self):  # noqa: ANN202
        while True:
            for obj in self._unpacker:
                return obj
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("serf RPC closed")
            self._unpacker.feed(data)

    def _call(self, command: str, body: dict | None = None, reply: bool = True):  # noqa: ANN202
        self._seq += 1
        out = msgpack.packb({"Command": command, "Seq": self._seq})
        if body is not None:
            out += msgpack.packb(body)
        self._sock.sendall(out)
        header = self._read()
        if header.get("Error"):
            raise RuntimeError(header["Error"])
        return self._read() if reply else None

    def members(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self._call("members")["Members"]}

    def join(self, addr: str) -> None:
        self._call("join", {"Existing": [addr], "Replay": False})

    def close(self) -> None:
        self._sock.close()


class SerfMember:
    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.port, self.rpc_port = free_port(), free_port()
        self.log = open(log_dir / f"{name}.log", "wb")
        self.proc = subprocess.Popen([SERF, "agent", "-node", name, "-bind", f"127.0.0.1:{self.port}",
                                      "-rpc-addr", f"127.0.0.1:{self.rpc_port}", "-tag", "role=bench"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.rpc = SerfRPC(self.rpc_port)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    self.proc.wait()
                    self.log.close()
                    text = (log_dir / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"serf agent {name} did not start:\n{text[-2000:]}") from None
                time.sleep(0.02)

    def view(self) -> dict[str, str]:
        return self.rpc.members()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.rpc.close()
        self.log.close()


class ApplianceMember:
    def __init__(self, name: str, stack: contextlib.ExitStack, seed: str | None, netns: str) -> None:
        self.name = name
        self.port = free_port()
        root = stack.enter_context(node_data_root())
        args = ("--gossip-bind", f"127.0.0.1:{self.port}", "--bridge", "none") + (("--join", seed) if seed else ())
        # One network namespace for all appliance nodes: its loopback is their LAN (each test
        # node would otherwise get a namespace of its own and could not reach the others).
        self.node: Node = start_node(root, name=name, extra_args=args, netns=netns)
        stack.callback(destroy_node, self.node)

    def doc(self) -> dict:
        status, doc = fetch(self.node.docker_host, timeout=5)
        if status != 200:
            raise RuntimeError(doc)
        return doc

    def view(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.doc()["Members"]}

    def kill(self) -> None:
        self.node.proc.kill()
        self.node.proc.wait(10)


def poll_failed(clusters: dict[str, list], victims: dict[str, str], t_kill: dict[str, float],
                interval: float, timeout: float) -> dict[str, list[float]]:
    """Per cluster: each survivor's delay from the kill to saying the victim failed."""
    seen: dict[str, dict[str, float]] = {kind: {} for kind in clusters}
    end = time.time() + timeout
    while time.time() < end:
        for kind, members in clusters.items():
            for m in members:
                if m.name in seen[kind]:
                    continue
                if m.view().get(victims[kind]) == "failed":
                    seen[kind][m.name] = time.time() - t_kill[kind]
        if all(len(seen[k]) == len(clusters[k]) for k in clusters):
            break
        time.sleep(interval)
    return {kind: sorted(seen[kind].values()) for kind in clusters}


def serf_join(members: list[SerfMember], newcomer: SerfMember, seed: SerfMember, interval: float,
              timeout: float) -> float:
    everyone = [*members, newcomer]
    live = {m.name for m in everyone}
    t0 = time.time()
    newcomer.rpc.join(f"127.0.0.1:{seed.port}")
    reported = False
    while time.time() - t0 < timeout:
        views = {m.name: m.view() for m in everyone}
        if all({n for n, s in v.items() if s == "alive"} >= live for v in views.values()):
            return time.time() - t0
        if not reported and time.time() - t0 > 2.0:
            reported = True
            print(f"  slow serf join of {newcomer.name}: {views}", flush=True)
        time.sleep(interval)
    return float("nan")


def node_events(member: ApplianceMember, since: float) -> list[dict]:
    """The node's `docker events` of type node since ``since`` (history only: until now)."""
    query = urllib.parse.urlencode({"since": f"{since:.9f}", "until": f"{time.time() + 1:.9f}",
                                    "filters": json.dumps({"type": ["node"]})})
    conn = _UnixHTTP(member.node.docker_host[len("unix://"):])
    try:
        conn.request("GET", f"/events?{query}")
        body = conn.getresponse().read()
    finally:
        conn.close()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def appliance_join(members: list[ApplianceMember], newcomer: ApplianceMember, timeout: float,
                   since: float) -> tuple[float, int]:
    """(seconds from the newcomer's agent start to the last first sighting, suspicions of the
    newcomer meanwhile): first sightings are each node's first `join` event for the other."""
    everyone = [*members, newcomer]
    live = {m.name for m in everyone}
    end = time.time() + timeout
    while time.time() < end:
        if all({n for n, st in m.view().items() if st == "alive"} >= live for m in everyone):
            break
        time.sleep(0.02)
    else:
        return float("nan"), 0
    firsts: list[float] = []
    start = None
    suspicions = 0
    for m in everyone:
        seen: dict[str, float] = {}
        for ev in node_events(m, since):
            actor, t = ev["Actor"]["ID"], ev["timeNano"] / 1e9
            if ev["Action"] == "join":
                seen.setdefault(actor, t)
            elif ev["Action"] == "suspect" and actor == newcomer.name:
                suspicions += 1
        if m is newcomer:
            start = seen[newcomer.name]  # its own agent start
            firsts += [t for name, t in seen.items() if name in live and name != newcomer.name]
        else:
            firsts.append(seen[newcomer.name])
    return max(firsts) - start, suspicions


def summary(values: list[float]) -> str:
    vals = [v for v in values if v == v]
    if not vals:
        return "-"
    return f"{statistics.median(vals):6.2f} s  ({min(vals):.2f}-{max(vals):.2f})"


def run(n: int, rounds: int, interval: float) -> dict:
    results = {kind: {"first_failed": [], "all_failed": [], "join": []} for kind in ("appliance", "serf")}
    with contextlib.ExitStack() as stack, node_data_root() as scratch:
        netns = ensure_netns(f"appl-gb{os.getpid()}")
        stack.callback(delete_netns, netns)
        counter = {"appliance": 0, "serf": 0}

        def new_serf() -> SerfMember:
            counter["serf"] += 1
            m = SerfMember(f"serf{counter['serf']}", scratch)
            stack.callback(m.kill)
            return m

        def new_app(seed: str | None) -> ApplianceMember:
            counter["appliance"] += 1
            return ApplianceMember(f"app{counter['appliance']}", stack, seed, netns)

        print(f"starting {n} appliance nodes and {n} serf agents on loopback ...", flush=True)
        serfs = [new_serf() for _ in range(n)]
        for m in serfs[1:]:
            m.rpc.join(f"127.0.0.1:{serfs[0].port}")
        apps = [new_app(None)]
        app_seed = f"127.0.0.1:{apps[0].port}"
        apps += [new_app(app_seed) for _ in range(n - 1)]
        clusters = {"appliance": apps, "serf": serfs}
        deadline = time.time() + 30
        while not all(all(s == "alive" for s in m.view().values()) and len(m.view()) == n
                      for ms in clusters.values() for m in ms):
            if time.time() > deadline:
                raise RuntimeError("the clusters did not form")
            time.sleep(0.1)
        time.sleep(2.0)  # let the first probe rounds settle

        for r in range(1, rounds + 1):
            victims = {"appliance": apps[1], "serf": serfs[1]}  # never the seed
            t_kill = {}
            for kind, victim in victims.items():
                t_kill[kind] = time.time()
                victim.kill()
            apps.remove(victims["appliance"])
            serfs.remove(victims["serf"])
            delays = poll_failed(clusters, {k: v.name for k, v in victims.items()}, t_kill, interval, 60.0)
            for kind in clusters:
                d = delays[kind]
                complete = len(d) == len(clusters[kind])
                results[kind]["first_failed"].append(d[0] if d else float("nan"))
                results[kind]["all_failed"].append(d[-1] if complete else float("nan"))
            newcomer = new_serf()
            results["serf"]["join"].append(serf_join(serfs, newcomer, serfs[0], interval, 30.0))
            serfs.append(newcomer)
            t_before = time.time()
            newcomer_app = new_app(app_seed)
            took, suspected = appliance_join(apps, newcomer_app, 30.0, t_before)
            results["appliance"]["join"].append(took)
            if suspected:
                print(f"  {newcomer_app.name} was suspected {suspected} time(s) while it started", flush=True)
            apps.append(newcomer_app)
            print(f"round {r}: all-failed appliance {results['appliance']['all_failed'][-1]:.2f} s, "
                  f"serf {results['serf']['all_failed'][-1]:.2f} s; join appliance "
                  f"{results['appliance']['join'][-1]:.3f} s, serf {results['serf']['join'][-1]:.3f} s", flush=True)
    return results


def verdict(ours: list[float], theirs: list[float], *, resamples: int = 4000) -> str:
    """Compare the medians of kill -> every node says failed.  One round varies by ~2 s
    (where the dead member sits in each prober's round robin), so the difference of the
    medians gets a 90 % bootstrap interval: "within noise" when it straddles zero."""
    ours = [v for v in ours if v == v]
    theirs = [v for v in theirs if v == v]
    if not ours or not theirs:
        return "no data"
    rng = random.Random(0)
    diffs = sorted(statistics.median(rng.choices(ours, k=len(ours)))
                   - statistics.median(rng.choices(theirs, k=len(theirs))) for _ in range(resamples))
    lo, hi = diffs[int(0.05 * resamples)], diffs[int(0.95 * resamples) - 1]
    m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
    if m_ours <= m_theirs:
        word = "met"
    elif lo <= 0:
        word = "met within noise"
    else:
        word = "NOT met"
    return (f"{word}: median {m_ours:.2f} s vs {m_theirs:.2f} s; difference {m_ours - m_theirs:+.2f} s, "
            f"90 % bootstrap interval [{lo:+.2f}, {hi:+.2f}] s over {len(ours)}/{len(theirs)} rounds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5, help="members per cluster (default 5)")
    parser.add_argument("-r", "--rounds", type=int, default=10,
                        help="kill + join rounds (default 10; 20+ for a sharper verdict)")
    parser.add_argument("--poll", type=float, default=0.02, help="polling interval in seconds (default 0.02)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args()
    if not os.path.exists(SERF):
        print(f"no serf at {SERF} (apt-get install serf)", file=sys.stderr)
        return 2
    if args.n < 3:
        parser.error("-n must be at least 3 (a victim and two observers)")
    res = run(args.n, args.rounds, args.poll)
    print(f"\ngossip on loopback, {args.n} appliance nodes vs {args.n} serf agents, same run, LAN defaults, "
          f"{args.rounds} rounds, polled every {args.poll * 1000:.0f} ms")
    print(f"{'':34}{'appliance':28}{'serf':28}")
    for key, label in (("first_failed", "kill -> first says failed"), ("all_failed", "kill -> every node says failed"),
                       ("join", "late join -> all see all alive")):
        print(f"{label:34}{summary(res['appliance'][key]):28}{summary(res['serf'][key]):28}")
    outcome = verdict(res["appliance"]["all_failed"], res["serf"]["all_failed"])
    print(f"\ntarget (detection no slower than Serf's): {outcome}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
