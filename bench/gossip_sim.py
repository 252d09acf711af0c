"""Simulated gossip cost and failure detection for growing clusters (no sockets, fake clock).

    python bench/gossip_sim.py                 # N = 10, 100, 1000
    python bench/gossip_sim.py -n 10 50 500 --seed 7 --loss 0.05

For each N: join convergence (a real bulk join for N <= --join-max, else the cluster is
bootstrapped as if a join had settled), steady-state UDP messages and bytes per node per
second, TCP push/pull bytes per node per second (long-run: full state size over the scaled
push/pull interval), and the time from killing one node to the
first and to the last survivor declaring it dead.  LAN defaults (memberlist/Serf).
Numbers come from SimCluster and are deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.cluster.swim.broadcast import push_pull_scale  # noqa: E402
from appliance.cluster.swim.sim import SimCluster  # noqa: E402
from appliance.cluster.swim.state import State  # noqa: E402


def measure(n: int, *, seed: int, loss: float, join_max: int, steady: float) -> dict[str, float | str]:
    wall = time.perf_counter()
    c = SimCluster(seed, loss=loss)
    if n <= join_max:
        names = c.add_many(n)
        converged = c.run_until_true(c.converged, timeout=120.0, step=0.05)
        join = f"{converged:.2f} s" if converged is not None else "> 120 s"
    else:
        names = c.bootstrap(n)
        join = "bootstrapped"
    # Start measuring after the first, staggered push/pull round (memberlist staggers the
    # first one over the unscaled 30 s; later ones come every pushPullScale(30 s, n)).
    c.run_until(35.0)
    p0, b0 = c.packets_sent(), c.bytes_sent()
    c.run_for(steady)
    p1, b1 = c.packets_sent(), c.bytes_sent()
    msgs = sum(p1[x] - p0[x] for x in names) / n / steady
    udp_bytes = sum(b1[x] - b0[x] for x in names) / n / steady
    # Push/pull comes every pushPullScale(30 s, n) per node, too rarely for a short window
    # at large n: use the measured size of one full state and the interval.  Each node
    # sends one state per exchange it starts and one per exchange it answers.
    state_bytes = len(c.hosts[names[0]].core.push_pull_message(False))
    tcp_bytes = 2 * state_bytes / push_pull_scale(30.0, n)
    victim = names[n // 2]
    c.kill(victim)
    t_kill = c.now
    step = 0.05 if n <= 100 else 0.25
    first = c.run_until_true(lambda: any(c.sees(o, victim) == State.DEAD for o in c.up()), timeout=120.0, step=step)
    every = c.run_until_true(lambda: c.all_see(victim, (State.DEAD,)), timeout=120.0, step=step)
    return {
        "n": n,
        "join": join,
        "msgs": msgs,
        "udp": udp_bytes,
        "tcp": tcp_bytes,
        "first": (first - t_kill) if first is not None else float("nan"),
        "every": (every - t_kill) if every is not None else float("nan"),
        "wall": time.perf_counter() - wall,
    }


def lifeguard(seed: int) -> str:
    """Accusations by one slow member (1.5 s input backlog), with and without Lifeguard."""
    out = []
    for label, overrides in (("lifeguard", {}), ("plain SWIM", {"awareness_max_multiplier": 1, "suspicion_max_timeout_mult": 1})):
        c = SimCluster(seed, **overrides)
        names = c.add_many(50)
        c.run_until_true(c.converged, timeout=60.0)
        c.slow(names[7], 1.5)
        start = c.now
        c.run_for(120.0)
        raised = c.hosts[names[7]].core.stats.suspicions_raised
        false = len(c.false_deaths(start, [x for x in names if x != names[7]]))
        out.append(f"{label}: {raised} suspicions raised by the slow member, {false} healthy members declared dead")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loss", type=float, default=0.0, help="UDP loss probability")
    parser.add_argument("--join-max", type=int, default=100, help="largest N to simulate a real bulk join for")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state to measure")
    parser.add_argument("--no-lifeguard", action="store_true", help="skip the slow-member comparison")
    args = parser.parse_args()
    print(f"seed={args.seed} loss={args.loss:.0%} LAN defaults (probe 1 s, gossip 200 ms x 3, push/pull 30 s)")
    header = f"{'N':>6} {'join':>14} {'msg/node/s':>11} {'UDP B/node/s':>13} {'TCP B/node/s':>13} {'1st dead':>9} {'all dead':>9} {'wall':>7}"
    print(header)
    print("-" * len(header))
    for n in args.n:
        r = measure(n, seed=args.seed, loss=args.loss, join_max=args.join_max, steady=args.steady)
        print(
            f"{r['n']:>6} {r['join']:>14} {r['msgs']:>11.2f} {r['udp']:>13.0f} {r['tcp']:>13.0f} "
            f"{r['first']:>8.2f}s {r['every']:>8.2f}s {r['wall']:>6.1f}s",
            flush=True,
        )
    if not args.no_lifeguard:
        print(lifeguard(args.seed))


if __name__ == "__main__":
    main()
