"""agent.py on real loopback sockets and trio's autojumping mock clock (as test_transport.py):
join retries with back-off, node events, capacity tags and their rate limit, leave, crash
detection, the default-port fallback.  Protocol timeouts pass in virtual time."""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio
import trio.testing

from appliance.cluster.agent import AgentConfig, ClusterAgent, join_backoff
from appliance.cluster.capacity import HostLoad
from tests.support.ports import free_port

GiB = 1 << 30


@dataclass
class Harness:
    agent: ClusterAgent
    events: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    load: HostLoad = HostLoad(mem_available=8 * GiB, ncpu=4, load1=0.0, containers=0)

    def actions(self, actor: str) -> list[str]:
        return [action for _t, action, name, _a in self.events if name == actor]


def make(name: str, **overrides) -> Harness:  # noqa: ANN003
    cfg = AgentConfig(name=name, **{"bind_host": "127.0.0.1", "bind_port": 0, **overrides})
    box: dict[str, Harness] = {}

    def publish(action: str, actor: str, attrs: dict[str, str]) -> None:
        box["h"].events.append((trio.current_time(), action, actor, attrs))

    harness = Harness(ClusterAgent(cfg, publish=publish, sample=lambda: box["h"].load, rng=random.Random(7)))
    box["h"] = harness
    return harness


def status_of(h: Harness, name: str) -> str | None:
    for m in h.agent.snapshot().members:
        if m.name == name:
            return m.status
    return None


async def wait_until(predicate, step: float = 0.01) -> float:  # noqa: ANN001
    with trio.fail_after(120):  # virtual seconds: a protocol bug, not slowness
        while not predicate():
            await trio.sleep(step)
    return trio.current_time()


def run(main) -> None:  # noqa: ANN001
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    ("attempt", "u", "expected"),
    [(1, 0.5, 1.0), (2, 0.5, 2.0), (3, 0.5, 4.0), (6, 0.5, 30.0), (60, 0.5, 30.0), (1, 0.0, 0.8), (2, 0.999999, 2.4)],
)
def test_join_backoff(attempt: int, u: float, expected: float) -> None:
    assert join_backoff(attempt, initial=1.0, cap=30.0, u=u) == pytest.approx(expected, abs=1e-5)


def test_join_retries_with_backoff_until_a_seed_answers() -> None:
    seed_port = free_port()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            b = make("b", seeds=(f"127.0.0.1:{seed_port}",))
            await nursery.start(b.agent.run)
            t0 = trio.current_time()
            snap = b.agent.snapshot()
            assert snap.state == "running" and not snap.joined and [m.name for m in snap.members] == ["b"]
            assert b.actions("b") == ["join"]  # our own join, at start
            await trio.sleep(0.5)  # the first attempt was refused; b backs off (1 s +- 20 %)
            assert not b.agent.snapshot().joined
            a = make("a", bind_port=seed_port)
            await nursery.start(a.agent.run)
            joined = await wait_until(lambda: b.agent.snapshot().joined)
            assert 0.8 <= joined - t0 <= 1.3
            await wait_until(lambda: status_of(a, "b") == "alive" and status_of(b, "a") == "alive")
            assert a.actions("b") == ["join"] and b.actions("a") == ["join"]
            attrs = b.events[-1][3]
            assert attrs["name"] == "a" and attrs["addr"] == f"127.0.0.1:{seed_port}" and attrs["status"] == "alive"
            assert attrs["role"] == "appliance" and attrs["underlay"] == "127.0.0.1" and attrs["mem_free"] == "8G"
            nursery.cancel_scope.cancel()

    run(main)


def test_being_joined_by_another_member_ends_the_join_retries() -> None:
    async def main() -> None:
        attempts = 0

        async def refuse(stream: trio.SocketStream) -> None:
            nonlocal attempts
            attempts += 1
            await stream.aclose()  # a seed that hangs up: the join push/pull fails

        async with trio.open_nursery() as nursery:
            (listener,) = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
            seed = f"127.0.0.1:{listener.socket.getsockname()[1]}"
            a = make("a", seeds=(seed,))
            await nursery.start(a.agent.run)
            await wait_until(lambda: attempts >= 3)
            assert not a.agent.snapshot().joined
            b = make("b", seeds=(f"127.0.0.1:{a.agent.cluster.addr[1]}",))
            await nursery.start(b.agent.run)
            await wait_until(lambda: a.agent.snapshot().joined)
            before = attempts
            await trio.sleep(120)
            assert attempts <= before + 1  # at most the attempt already under way
            nursery.cancel_scope.cancel()

    run(main)


def test_seeds_that_are_only_ourselves_make_a_cluster_of_one() -> None:
    port = free_port()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = make("a", bind_port=port, seeds=(f"127.0.0.1:{port}",))
            await nursery.start(a.agent.run)
            await wait_until(lambda: a.agent.snapshot().joined)
            assert [m.status for m in a.agent.snapshot().members] == ["alive"]
            nursery.cancel_scope.cancel()

    run(main)


def test_capacity_tags_change_with_buckets_at_most_every_tag_min_interval() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = make("a", capacity_interval=1.0, tag_min_interval=5.0)
            await nursery.start(a.agent.run)
            t0 = trio.current_time()
            b = make("b", seeds=(f"127.0.0.1:{a.agent.cluster.addr[1]}",))
            await nursery.start(b.agent.run)
            await wait_until(lambda: status_of(b, "a") == "alive")

            def a_seen_by_b():  # noqa: ANN202
                return next(m for m in b.agent.snapshot().members if m.name == "a")

            assert a_seen_by_b().tags["containers"] == "0" and a_seen_by_b().incarnation == 1
            a.load = HostLoad(8 * GiB, 4, 0.0, containers=5)  # bucket 0 -> 4
            changed = await wait_until(lambda: a_seen_by_b().tags["containers"] == "4")
            assert changed - t0 >= 5.0  # not before tag_min_interval after the first tags
            assert a_seen_by_b().incarnation == 2
            # Within the bucket (and inside the hysteresis band): nothing goes out, ever.
            a.load = HostLoad(int(7.6 * GiB), 4, 0.3, containers=7)
            await trio.sleep(30)
            assert a_seen_by_b().incarnation == 2
            assert b.actions("a") == ["join", "update"]
            # A real change again, right after: published, but after the interval.
            a.load = HostLoad(1 * GiB, 4, 0.0, containers=7)
            t1 = trio.current_time()
            await wait_until(lambda: a_seen_by_b().tags["mem_free"] == "1G")
            assert trio.current_time() - t1 <= 1.5 and a_seen_by_b().incarnation == 3
            nursery.cancel_scope.cancel()

    run(main)


def test_leave_is_left_for_the_others_and_ends_the_agent() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = make("a")
            await nursery.start(a.agent.run)
            b = make("b", seeds=(f"127.0.0.1:{a.agent.cluster.addr[1]}",))
            done = trio.Event()

            async def run_b(task_status=trio.TASK_STATUS_IGNORED):  # noqa: ANN001, ANN202
                await b.agent.run(task_status=task_status)
                done.set()

            await nursery.start(run_b)
            await wait_until(lambda: status_of(a, "b") == "alive")
            await b.agent.leave()
            assert b.agent.state == "left" and not b.agent.snapshot().gossip_up
            with trio.fail_after(1):
                await done.wait()  # run() returned: the agent's tasks are gone
            await wait_until(lambda: status_of(a, "b") == "left")
            assert a.actions("b") == ["join", "leave"]
            await b.agent.leave()  # a second leave is a no-op
            nursery.cancel_scope.cancel()

    run(main)


def test_a_crashed_member_is_suspected_then_failed() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = make("a", forget_after=100.0)
            await nursery.start(a.agent.run)
            seed = f"127.0.0.1:{a.agent.cluster.addr[1]}"
            b = make("b", seeds=(seed,), forget_after=100.0)
            c = make("c", seeds=(seed,))
            await nursery.start(b.agent.run)
            await nursery.start(c.agent.run)
            await wait_until(lambda: all(len(h.agent.snapshot().members) == 3 for h in (a, b, c)))
            c.agent.cluster.stop()  # a crash: no leave
            await wait_until(lambda: c.agent.state == "stopped")
            await wait_until(lambda: status_of(a, "c") == "failed" and status_of(b, "c") == "failed")
            for h in (a, b):
                acts = h.actions("c")
                assert acts[0] == "join" and acts[-1] == "fail", acts
                assert set(acts[1:-1]) <= {"suspect"}
            last = next(m for m in a.agent.snapshot().members if m.name == "c").last_change
            assert last > 0
            # The core reaps c after gossip_to_the_dead_time (30 s); like Serf, the agent keeps
            # listing it as failed (for forget_after, 24 h by default; 100 s here).
            await wait_until(lambda: a.agent.cluster.core.member("c") is None)
            assert status_of(a, "c") == "failed"
            assert next(m for m in a.agent.snapshot().members if m.name == "c").last_change == last
            await trio.sleep(101)
            assert status_of(a, "c") is None
            # b counts from when *it* saw c fail; over real loopback sockets under a mock clock a
            # loaded machine can deliver that news to b some virtual seconds after a.
            await wait_until(lambda: status_of(b, "c") is None)
            assert a.actions("c")[-1] == "fail"  # reaping is not news
            nursery.cancel_scope.cancel()

    run(main)


def test_default_port_taken_falls_back_to_a_free_one_only_if_allowed() -> None:
    async def main() -> None:
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as squatter:
            await squatter.bind(("127.0.0.1", 0))
            taken = squatter.getsockname()[1]
            async with trio.open_nursery() as nursery:
                a = make("a", bind_port=taken, port_fallback=True)
                await nursery.start(a.agent.run)
                assert a.agent.state == "running" and a.agent.cluster.addr[1] not in (0, taken)
                strict = make("s", bind_port=taken)
                with pytest.RaisesGroup(pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EADDRINUSE)):
                    await nursery.start(strict.agent.run)
                nursery.cancel_scope.cancel()

    run(main)
