"""state.py: the alive/suspect/dead/left x incarnation rules, one row at a time."""

from __future__ import annotations

import random

import pytest

from appliance.cluster.swim.codec import Alive, Dead, PushNodeState, Suspect
from appliance.cluster.swim.errors import LocalProtocolError, RemoteProtocolError
from appliance.cluster.swim.state import MemberTable, State

VSN = bytes([1, 5, 2, 2, 5, 4])
IP = {name: bytes([10, 0, 0, i]) for i, name in enumerate(["me", "a", "b", "c", "d"], 1)}


def alive(name: str, inc: int, meta: bytes = b"", port: int = 7946, addr: bytes | None = None) -> Alive:
    return Alive(inc, name, addr or IP[name], port, meta, VSN)


@pytest.fixture
def table() -> MemberTable:
    t = MemberTable("me", IP["me"], 7946, b"m0", VSN, 0.0, rng=random.Random(7))
    for name in ("a", "b", "c"):
        t.apply_alive(alive(name, 1), 0.0)
    return t


def state(t: MemberTable, name: str) -> tuple[State, int]:
    m = t.get(name)
    assert m is not None
    return m.state, m.incarnation


# --------------------------------------------------------------------------- alive


def test_new_member_joins(table: MemberTable) -> None:
    change = table.apply_alive(alive("d", 5, b"tags"), 1.0)
    assert change is not None
    assert (change.old, change.new, change.gossip) == (None, State.ALIVE, alive("d", 5, b"tags"))
    assert state(table, "d") == (State.ALIVE, 5)
    assert table.get("d").meta == b"tags"


@pytest.mark.parametrize("inc", [0, 1])
def test_alive_at_same_or_older_incarnation_ignored(table: MemberTable, inc: int) -> None:
    assert table.apply_alive(alive("a", inc, b"new"), 1.0) is None
    assert table.get("a").meta == b""


def test_alive_with_newer_incarnation_updates_meta(table: MemberTable) -> None:
    change = table.apply_alive(alive("a", 2, b"new"), 1.0)
    assert change is not None and change.meta_changed and change.visible
    assert (change.old, change.new) == (State.ALIVE, State.ALIVE)
    assert table.get("a").meta == b"new"


def test_alive_refutes_suspicion_and_death(table: MemberTable) -> None:
    table.apply_suspect(Suspect(1, "a", "b"), 1.0)
    change = table.apply_alive(alive("a", 2), 2.0)
    assert (change.old, change.new) == (State.SUSPECT, State.ALIVE)
    assert table.get("a").suspicion is None
    table.apply_dead(Dead(2, "b", "c"), 3.0)
    change = table.apply_alive(alive("b", 3), 4.0)
    assert (change.old, change.new) == (State.DEAD, State.ALIVE)


def test_conflicting_address_refused_unless_left(table: MemberTable) -> None:
    with pytest.raises(RemoteProtocolError, match="conflicting address"):
        table.apply_alive(alive("a", 9, addr=b"\x0a\x09\x09\x09"), 1.0)
    assert state(table, "a") == (State.ALIVE, 1)
    table.apply_dead(Dead(1, "a", "a"), 2.0)  # a left gracefully
    change = table.apply_alive(alive("a", 2, addr=b"\x0a\x09\x09\x09", port=8000), 3.0)
    assert (change.old, change.new) == (State.LEFT, State.ALIVE)
    assert table.get("a").address == ("10.9.9.9", 8000)


def test_dead_node_reclaimed_after_reclaim_time() -> None:
    t = MemberTable("me", IP["me"], 7946, b"", VSN, 0.0, dead_node_reclaim_time=10.0)
    t.apply_alive(alive("a", 1), 0.0)
    t.apply_dead(Dead(1, "a", "me"), 1.0)
    with pytest.raises(RemoteProtocolError):
        t.apply_alive(alive("a", 1, port=9000), 5.0)
    assert t.apply_alive(alive("a", 1, port=9000), 12.0) is not None


@pytest.mark.parametrize("vsn", [bytes([0, 5, 2, 2, 5, 4]), bytes([1, 0, 2, 2, 5, 4]), bytes([5, 1, 2, 2, 5, 4])])
def test_alive_with_bad_versions_refused(table: MemberTable, vsn: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        table.apply_alive(Alive(1, "d", IP["d"], 7946, b"", vsn), 1.0)
    assert "d" not in table


def test_alive_with_bad_address_refused(table: MemberTable) -> None:
    with pytest.raises(RemoteProtocolError):
        table.apply_alive(Alive(1, "d", b"\x01\x02", 7946, b"", VSN), 1.0)


# --------------------------------------------------------------------------- suspect


def test_suspect_starts_suspicion(table: MemberTable) -> None:
    change = table.apply_suspect(Suspect(1, "a", "b"), 5.0)
    assert (change.old, change.new, change.gossip) == (State.ALIVE, State.SUSPECT, Suspect(1, "a", "b"))
    m = table.get("a")
    assert m.state == State.SUSPECT and m.suspicion is not None
    # 4 members: k = 4 - 2 = 2, min = 4 * max(1, log10 4) * 1 s = 4 s, max = 6 * min = 24 s.
    assert (m.suspicion.k, m.suspicion.lo, m.suspicion.hi) == (2, 4.0, 24.0)
    assert m.suspicion.deadline() == 5.0 + 24.0


def test_stale_suspect_ignored(table: MemberTable) -> None:
    table.apply_alive(alive("a", 3), 0.0)
    assert table.apply_suspect(Suspect(2, "a", "b"), 1.0) is None
    assert table.apply_suspect(Suspect(1, "zz", "b"), 1.0) is None
    assert state(table, "a") == (State.ALIVE, 3)


def test_independent_confirmations_shrink_the_timeout(table: MemberTable) -> None:
    table.apply_suspect(Suspect(1, "a", "b"), 0.0)
    assert table.apply_suspect(Suspect(1, "a", "b"), 1.0) is None  # the accuser again
    change = table.apply_suspect(Suspect(1, "a", "c"), 1.0)
    assert change is not None and not change.visible and change.gossip == Suspect(1, "a", "c")
    assert table.get("a").suspicion.deadline() == pytest.approx(11.381)
    table.apply_suspect(Suspect(1, "a", "me"), 2.0)
    assert table.get("a").suspicion.deadline() == 4.0  # k reached: min timeout from the start
    assert table.apply_suspect(Suspect(1, "a", "d"), 2.0) is None  # no more counted


def test_expire_suspicion_only_after_deadline(table: MemberTable) -> None:
    table.apply_suspect(Suspect(1, "a", "b"), 0.0)
    assert table.expire_suspicion("a", 23.999) is None
    change = table.expire_suspicion("a", 24.0)
    assert (change.old, change.new, change.gossip) == (State.SUSPECT, State.DEAD, Dead(1, "a", "me"))


def test_suspect_about_dead_or_left_ignored(table: MemberTable) -> None:
    table.apply_dead(Dead(1, "a", "b"), 0.0)
    table.apply_dead(Dead(1, "b", "b"), 0.0)
    assert table.apply_suspect(Suspect(1, "a", "c"), 1.0) is None
    assert table.apply_suspect(Suspect(1, "b", "c"), 1.0) is None


# --------------------------------------------------------------------------- dead / left


def test_dead_from_another_is_dead_from_itself_is_left(table: MemberTable) -> None:
    assert table.apply_dead(Dead(1, "a", "b"), 1.0).new == State.DEAD
    assert table.apply_dead(Dead(1, "b", "b"), 1.0).new == State.LEFT
    assert table.apply_dead(Dead(1, "a", "c"), 2.0) is None  # already dead
    assert table.apply_dead(Dead(0, "c", "b"), 2.0) is None  # stale
    assert state(table, "c") == (State.ALIVE, 1)


# --------------------------------------------------------------------------- ourselves


def test_refute_suspicion_about_ourselves(table: MemberTable) -> None:
    change = table.apply_suspect(Suspect(7, "me", "a"), 1.0)
    assert change.refuted
    assert change.gossip == Alive(8, "me", IP["me"], 7946, b"m0", VSN)
    assert state(table, "me") == (State.ALIVE, 8)


def test_refute_death_unless_leaving(table: MemberTable) -> None:
    change = table.apply_dead(Dead(1, "me", "a"), 1.0)
    assert change.refuted and state(table, "me") == (State.ALIVE, 2)
    table.start_leave()
    change = table.leave_self(2.0)
    assert (change.old, change.new, change.gossip) == (State.ALIVE, State.LEFT, Dead(2, "me", "me"))
    assert table.apply_suspect(Suspect(2, "me", "a"), 3.0) is None
    assert table.apply_alive(Alive(9, "me", IP["me"], 7946, b"", VSN), 3.0) is None


def test_someone_speaking_for_us_is_refuted(table: MemberTable) -> None:
    # A restarted process with our name (or stale state) at our incarnation but other meta.
    assert table.apply_alive(Alive(1, "me", IP["me"], 7946, b"m0", VSN), 1.0) is None
    change = table.apply_alive(Alive(1, "me", IP["me"], 7946, b"other", VSN), 1.0)
    assert change.refuted and change.gossip.incarnation == 2 and change.gossip.meta == b"m0"
    change = table.apply_alive(Alive(40, "me", IP["me"], 7946, b"m0", VSN), 1.0)
    assert change.refuted and change.gossip.incarnation == 41


def test_local_meta_update(table: MemberTable) -> None:
    change = table.set_local_meta(b"m1", 1.0)
    assert change.meta_changed and change.gossip.incarnation == 2 and change.gossip.meta == b"m1"


def test_illegal_local_updates_raise_and_change_nothing(table: MemberTable) -> None:
    with pytest.raises(LocalProtocolError):
        table.set_local_meta(b"x" * 513, 1.0)
    assert table.local.meta == b"m0" and table.local.incarnation == 1
    with pytest.raises(LocalProtocolError):
        table.leave_self(1.0)
    table.start_leave()
    with pytest.raises(LocalProtocolError):
        table.start_leave()
    with pytest.raises(LocalProtocolError):
        table.set_local_meta(b"m2", 1.0)
    assert table.local.meta == b"m0"
    table.leave_self(2.0)
    with pytest.raises(LocalProtocolError):
        table.leave_self(3.0)


# --------------------------------------------------------------------------- push/pull merge


def test_merge_remote_state(table: MemberTable) -> None:
    remote = (
        PushNodeState("a", IP["a"], 7946, b"", 1, int(State.DEAD), VSN),  # dead there: suspect here
        PushNodeState("b", IP["b"], 7946, b"", 1, int(State.LEFT), VSN),
        PushNodeState("d", IP["d"], 7946, b"x", 3, int(State.ALIVE), VSN),
        PushNodeState("me", IP["me"], 7946, b"", 4, int(State.DEAD), VSN),  # we are dead there
        PushNodeState("e", b"\x01", 7946, b"", 1, int(State.ALIVE), VSN),  # broken entry
    )
    changes, errors = table.merge(remote, 1.0)
    assert len(errors) == 1
    assert state(table, "a")[0] == State.SUSPECT
    assert state(table, "b")[0] == State.LEFT
    assert state(table, "d") == (State.ALIVE, 3)
    assert state(table, "me") == (State.ALIVE, 5)  # refuted above the remote's 4
    assert any(c.refuted for c in changes)
