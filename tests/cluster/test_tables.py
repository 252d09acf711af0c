"""memberlist's table tests, ported as our spec: same rows, same numbers.

suspicion_test.go, awareness_test.go, queue_test.go and the formula tests of util_test.go.
Where the Go test sleeps and allows 25 ms of fudge, we assert the exact instant instead.
"""

from __future__ import annotations

import random

import pytest

from appliance.cluster.swim.awareness import Awareness
from appliance.cluster.swim.broadcast import BroadcastQueue, push_pull_scale, retransmit_limit
from appliance.cluster.swim.state import MemberTable, State
from appliance.cluster.swim.suspicion import Suspicion, remaining, suspicion_timeout

# --------------------------------------------------------------------------- suspicion_test.go


@pytest.mark.parametrize(
    ("n", "k", "elapsed", "lo", "hi", "expected"),
    [
        (0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 3, 2.0, 2.0, 30.0, 14.0),  # the 14 s row
        (2, 3, 3.0, 2.0, 30.0, 4.81),
        (3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 3, 10.0, 2.0, 30.0, -8.0),
    ],
)
def test_remaining_suspicion_time(n: int, k: int, elapsed: float, lo: float, hi: float, expected: float) -> None:
    # TestSuspicion_remainingSuspicionTime
    assert remaining(n, k, elapsed, lo, hi) == pytest.approx(expected, abs=1e-9)


# TestSuspicion_Timer: k=3, min=500ms, max=2s; (confirmations, (from, new info)...) -> timeout.
# Go lists 810 ms for two confirmations with 25 ms of fudge; the formula gives 811 ms exactly.
TIMER_CASES = [
    (0, [], 2.0),
    (1, [("me", False), ("foo", True)], 1.25),
    (1, [("me", False), ("foo", True), ("foo", False), ("foo", False)], 1.25),
    (2, [("me", False), ("foo", True), ("bar", True)], 0.811),
    (3, [("me", False), ("foo", True), ("bar", True), ("baz", True)], 0.5),
    (3, [("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)], 0.5),
]


@pytest.mark.parametrize(("num_confirmations", "confirmations", "expected"), TIMER_CASES)
def test_suspicion_timer(num_confirmations: int, confirmations: list[tuple[str, bool]], expected: float) -> None:
    start = 100.0
    s = Suspicion("me", 3, 0.5, 2.0, start)
    for i, (who, new_info) in enumerate(confirmations):
        # Confirmations arrive over time; the deadline is still measured from the start.
        assert s.confirm(who) is new_info, (i, who)
    assert s.n == num_confirmations
    assert s.deadline() == pytest.approx(start + expected, abs=1e-9)
    # A late confirmation after the timer "fired" changes nothing once k is reached,
    # and before that only pulls the deadline in (never past the minimum).
    s.confirm("late")
    assert s.deadline() >= start + 0.5 - 1e-9


def test_suspicion_timer_immediate() -> None:
    # TestSuspicion_Timer_Immediate: k=1, a confirmation 200 ms in puts the deadline behind us.
    s = Suspicion("me", 1, 0.1, 30.0, start=0.0)
    assert s.confirm("foo")
    assert s.deadline() <= 0.2


def test_suspicion_without_expected_confirmations_starts_at_min() -> None:
    s = Suspicion("me", 0, 4.0, 24.0, start=10.0)
    assert s.deadline() == 14.0
    assert not s.confirm("other")


# --------------------------------------------------------------------------- util_test.go formulas


@pytest.mark.parametrize(
    ("n", "expected"), [(5, 1.0), (10, 1.0), (50, 1.698), (100, 2.0), (500, 2.698), (1000, 3.0)]
)
def test_suspicion_timeout(n: int, expected: float) -> None:
    # TestSuspicionTimeout: suspicionTimeout(3, n, time.Second) / 3
    assert suspicion_timeout(3, n, 1.0) / 3 == pytest.approx(expected, abs=1e-9)


def test_retransmit_limit() -> None:
    # TestRetransmitLimit
    assert retransmit_limit(3, 0) == 0
    assert retransmit_limit(3, 1) == 3
    assert retransmit_limit(3, 99) == 6


def test_push_pull_scale() -> None:
    # TestPushPullScale
    for n in range(0, 33):
        assert push_pull_scale(1.0, n) == 1.0
    for n in range(33, 65):
        assert push_pull_scale(1.0, n) == 2.0
    for n in range(65, 129):
        assert push_pull_scale(1.0, n) == 3.0


def _table(n: int, *, seed: int = 1) -> MemberTable:
    from appliance.cluster.swim.codec import Alive

    table = MemberTable("test0", b"\x0a\x00\x00\x00", 7946, b"", bytes([1, 5, 2, 2, 5, 4]), 0.0, rng=random.Random(seed))
    for i in range(1, n):
        table.apply_alive(Alive(1, f"test{i}", bytes([10, 0, i // 256, i % 256]), 7946, b"", bytes([1, 5, 2, 2, 5, 4])), 0.0)
    return table


def test_k_random_nodes() -> None:
    # TestKRandomNodes: 90 nodes, a third alive; filter out test0 and non-alive ones.
    from appliance.cluster.swim.codec import Dead, Suspect

    table = _table(90)
    for i in range(90):
        if i % 3 == 1:
            table.apply_suspect(Suspect(1, f"test{i}", "x"), 0.0)
        elif i % 3 == 2:
            table.apply_dead(Dead(1, f"test{i}", "x"), 0.0)

    def exclude(m):  # noqa: ANN001, ANN202
        return m.name == "test0" or m.state != State.ALIVE

    picks = [table.k_random(3, exclude) for _ in range(3)]
    assert picks[0] != picks[1] and picks[0] != picks[2] and picks[1] != picks[2]
    for pick in picks:
        assert len(pick) == 3 and len(set(id(m) for m in pick)) == 3
        assert all(m.name != "test0" and m.state == State.ALIVE for m in pick)

    # The very-small path: only test3 and test6 qualify among the first 8.
    small = _table(8)
    for i in range(8):
        if i % 3 == 1:
            small.apply_suspect(Suspect(1, f"test{i}", "x"), 0.0)
        elif i % 3 == 2:
            small.apply_dead(Dead(1, f"test{i}", "x"), 0.0)
    pick = small.k_random(3, exclude)
    assert sorted(m.name for m in pick) == ["test3", "test6"]


def test_reap_respects_gossip_to_the_dead_time() -> None:
    # TestMoveDeadNodes: dead/left for 20 s are dropped with a 15 s window; 10 s ones stay.
    from appliance.cluster.swim.codec import Dead

    table = _table(9)
    old = {"test1": "dead", "test4": "left", "test8": "left", "test6": "dead"}
    for name, how in old.items():
        table.apply_dead(Dead(1, name, name if how == "left" else "x"), 0.0)
    table.apply_dead(Dead(1, "test2", "x"), 10.0)
    table.apply_dead(Dead(1, "test3", "test3"), 10.0)
    # Walk the probe order past its end to trigger the wrap-around reset at t=20.
    reaped = []
    for _ in range(20):
        _target, changes = table.next_probe_target(20.0, 15.0)
        reaped.extend(c.name for c in changes)
    assert sorted(reaped) == sorted(old)
    assert sorted(m.name for m in table) == ["test0", "test2", "test3", "test5", "test7"]


# --------------------------------------------------------------------------- awareness_test.go

AWARENESS_CASES = [
    (0, 0, 1.0),
    (-1, 0, 1.0),
    (-10, 0, 1.0),
    (1, 1, 2.0),
    (-1, 0, 1.0),
    (10, 7, 8.0),
    (-1, 6, 7.0),
    (-1, 5, 6.0),
    (-1, 4, 5.0),
    (-1, 3, 4.0),
    (-1, 2, 3.0),
    (-1, 1, 2.0),
    (-1, 0, 1.0),
    (-1, 0, 1.0),
]


def test_awareness() -> None:
    # TestAwareness
    a = Awareness(8)
    for i, (delta, score, timeout) in enumerate(AWARENESS_CASES):
        a.apply_delta(delta)
        assert a.score == score, i
        assert a.scale(1.0) == timeout, i


# --------------------------------------------------------------------------- queue_test.go


def _names(q: BroadcastQueue) -> list[str | None]:
    return [b.name for b in q.ordered_view(reverse=True)]


def test_limited_broadcast_less() -> None:
    # TestLimitedBroadcastLess: fewer transmits first; then longer; then newer.
    q = BroadcastQueue(1)
    q.queue(b"x" * 10, "b", transmits=1)
    q.queue(b"x" * 10, "a", transmits=0)
    assert [b.name for b in q.ordered_view()] == ["a", "b"]
    q = BroadcastQueue(1)
    q.queue(b"x" * 10, "b")
    q.queue(b"x" * 12, "a")
    assert [b.name for b in q.ordered_view()] == ["a", "b"]
    q = BroadcastQueue(1)
    q.queue(b"x" * 12, "b")
    q.queue(b"x" * 12, "a")
    assert [b.name for b in q.ordered_view()] == ["a", "b"]  # a is newer


def test_transmit_limited_queue() -> None:
    # TestTransmitLimited_Queue
    q = BroadcastQueue(1)
    for name in ("test", "foo", "bar"):
        q.queue(b"", name)
    assert len(q) == 3
    assert _names(q) == ["test", "foo", "bar"]
    q.queue(b"", "test")  # invalidates the previous "test"
    assert len(q) == 3
    assert _names(q) == ["foo", "bar", "test"]


def test_transmit_limited_get_broadcasts() -> None:
    # TestTransmitLimited_GetBroadcasts: 4 x 18 bytes, limit 80.
    q = BroadcastQueue(3)
    for i, name in enumerate(("test", "foo", "bar", "baz"), 1):
        q.queue(f"{i}. this is a test.".encode(), name)
    assert len(q.get_broadcasts(2, 80, 10)) == 4  # 2 bytes overhead: all four
    assert len(q.get_broadcasts(3, 80, 10)) == 3  # 3 bytes overhead: three


def test_transmit_limited_get_broadcasts_limit() -> None:
    # TestTransmitLimited_GetBroadcasts_Limit
    q = BroadcastQueue(1)
    assert retransmit_limit(1, 10) == 2
    for i, name in enumerate(("test", "foo", "bar", "baz"), 1):
        q.queue(f"{i}. this is a test.".encode(), name)
    assert len(q.get_broadcasts(3, 80, 10)) == 3
    assert len(q.get_broadcasts(3, 80, 10)) == 3
    assert len(q.get_broadcasts(3, 80, 10)) == 2  # only two not expired
    assert len(q.get_broadcasts(3, 80, 10)) == 0


def test_transmit_limited_prune() -> None:
    # TestTransmitLimited_Prune
    q = BroadcastQueue(1)
    for i, name in enumerate(("test", "foo", "bar", "baz"), 1):
        q.queue(f"{i}. this is a test.".encode(), name)
    q.prune(2)
    assert len(q) == 2
    assert not q.pending("test") and not q.pending("foo")
    assert _names(q) == ["bar", "baz"]


def test_transmit_limited_ordering() -> None:
    # TestTransmitLimited_ordering
    q = BroadcastQueue(1)
    for name, transmits in (("node0", 0), ("node1", 10), ("node2", 3), ("node3", 4), ("node4", 7)):
        q.queue(name.encode(), name, transmits=transmits)
    assert [b.transmits for b in q.ordered_view(reverse=True)] == [10, 7, 4, 3, 0]


def test_named_replace_then_relays_keeps_all() -> None:
    # TestTransmitLimitedQueue_NamedReplaceThenRelaysKeepsAll
    q = BroadcastQueue(4)
    q.queue(b"a" * 115, "node-3")
    q.queue(b"b" * 115, "node-3")
    q.queue(b"c" * 115, "node-1")
    q.queue(b"d" * 115, "node-2")
    assert len(q) == 3
    assert any(m[:1] == b"b" for m in q.get_broadcasts(2, 1398, 3))


def test_reinsert_after_idle_keeps_all() -> None:
    # TestTransmitLimitedQueue_ReinsertAfterIdleKeepsAll
    q = BroadcastQueue(4)
    overhead, limit = 2, 2 + 115
    q.queue(b"a" * 115, "node-a")
    got = q.get_broadcasts(overhead, limit, 3)
    assert [m[:1] for m in got] == [b"a"] and len(q) == 1
    q.queue(b"b" * 115, "node-b")
    q.queue(b"c" * 115, "node-c")
    assert len(q) == 3
    seen: set[bytes] = set()
    for i in range(5):
        for m in q.get_broadcasts(overhead, limit, 3):
            seen.add(m[:1])
        assert len(q) == 3, i
    assert seen == {b"a", b"b", b"c"}


def test_each_broadcast_sent_exactly_limit_times() -> None:
    q = BroadcastQueue(4)
    q.queue(b"x" * 50, "n")
    sends = 0
    while q.get_broadcasts(2, 1400, 9):
        sends += 1
    assert sends == retransmit_limit(4, 9) == 4
