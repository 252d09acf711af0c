"""members.py, addresses.py, the cluster routes over a fake agent, `appliance members` output,
and the serve flags: pure tables, no sockets."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest
import trio

from appliance.__main__ import _gossip_options, _parser
from appliance.api.app import create_app
from appliance.api.routes.cluster import info_labels, info_section
from appliance.cluster.addresses import format_hostport, parse_hostport
from appliance.cluster.members import ClusterSnapshot, MemberInfo, api_address, event_action, node_tags
from appliance.cluster.members_cli import format_table
from appliance.cluster.swim.state import State

A, S, D, L = State.ALIVE, State.SUSPECT, State.DEAD, State.LEFT


@pytest.mark.parametrize(
    ("old", "new", "action"),
    [
        (None, A, "join"),
        (D, A, "join"),  # back after a failure (refuted, or restarted)
        (L, A, "join"),
        (S, A, "alive"),  # suspicion refuted
        (A, A, "update"),  # tags changed
        (A, S, "suspect"),
        (S, D, "fail"),
        (A, D, "fail"),
        (A, L, "leave"),
        (S, L, "leave"),
        (D, None, None),  # reaped long after: housekeeping
        (L, None, None),
    ],
)
def test_event_action_table(old: State | None, new: State | None, action: str | None) -> None:
    assert event_action(old, new) == action


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        (["unix:///run/a.sock", "tcp://0.0.0.0:2375"], "tcp://10.0.0.5:2375"),
        (["tcp://127.0.0.1:2375"], "tcp://127.0.0.1:2375"),
        (["tcp://[::]:2375"], "tcp://10.0.0.5:2375"),
        (["unix:///run/a.sock"], "unix:///run/a.sock"),
        ([], ""),
    ],
)
def test_api_address_prefers_tcp_and_fills_in_wildcards(urls: list[str], expected: str) -> None:
    assert api_address(urls, "10.0.0.5") == expected


def test_node_tags() -> None:
    assert node_tags(api="tcp://10.0.0.5:2375", underlay="10.0.0.5") == {
        "role": "appliance", "underlay": "10.0.0.5", "api": "tcp://10.0.0.5:2375"}
    assert "api" not in node_tags(api="", underlay="10.0.0.5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("10.0.0.1", ("10.0.0.1", 7946)),
        ("node-a.example:7000", ("node-a.example", 7000)),
        ("[::1]:7000", ("::1", 7000)),
        ("[::1]", ("::1", 7946)),
        ("::1", ("::1", 7946)),
        (":7000", ("0.0.0.0", 7000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text, 7946) == expected


@pytest.mark.parametrize("bad", ["", "1.2.3.4:x", "1.2.3.4:70000", "[::1", "[::1]x"])
def test_parse_hostport_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(bad, 7946)


def test_format_hostport() -> None:
    assert format_hostport("::1", 1) == "[::1]:1" and format_hostport("1.2.3.4", 5) == "1.2.3.4:5"


# ----------------------------------------------------------------------------- serve flags


def _serve(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["serve", *argv])


def test_serve_defaults_bind_every_interface_on_7946_with_fallback() -> None:
    opts = _gossip_options(_serve())
    assert opts == {"join": ()}  # Config's defaults: 0.0.0.0:7946, fallback to a free port if taken


def test_serve_gossip_flags() -> None:
    opts = _gossip_options(_serve("--join", "10.0.0.1:7000,10.0.0.2", "--join", "seed.example:7946",
                                  "--gossip-bind", "127.0.0.1:0", "--advertise", "10.0.0.9"))
    assert opts == {"join": ("10.0.0.1:7000", "10.0.0.2", "seed.example:7946"),
                    "gossip_bind": ("127.0.0.1", 0), "gossip_port_fallback": False,
                    "advertise": ("10.0.0.9", None)}
    assert _gossip_options(_serve("--gossip-bind", "10.0.0.1"))["gossip_bind"] == ("10.0.0.1", 7946)


@pytest.mark.parametrize("argv", [("--gossip-bind", "somehost:7946"), ("--advertise", "0.0.0.0"),
                                  ("--join", "1.2.3.4:notaport")])
def test_serve_gossip_flags_rejected(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        _gossip_options(_serve(*argv))


# ----------------------------------------------------------------------------- routes


def _snapshot(state: str = "running") -> ClusterSnapshot:
    return ClusterSnapshot(
        name="n1", state=state, addr=("127.0.0.1", 7946), joined=True, seeds=("127.0.0.1:7947",),
        members=(
            MemberInfo("judge", "127.0.0.1", 7950, "failed", 3, {"role": "judge"}, 1_700_000_000.0),
            MemberInfo("n1", "127.0.0.1", 7946, "alive", 2, {"role": "appliance", "mem_free": "8G"},
                       1_700_000_100.0, local=True),
        ),
    )


class FakeAgent:
    def __init__(self, snap: ClusterSnapshot) -> None:
        self.snap = snap

    def snapshot(self) -> ClusterSnapshot:
        return self.snap


class FakeEngine:
    """Only what the cluster blueprint reads; the other blueprints just register their routes."""

    def __init__(self, cluster: FakeAgent | None) -> None:
        self.cluster = cluster

    def __getattr__(self, name: str) -> None:
        return None


async def _get(app, path: str, method: str = "GET") -> tuple[int, dict | bytes]:
    """One ASGI request straight into the app (it is wrapped in the version-prefix shim)."""
    sent: list[dict] = []
    scope = {"type": "http", "http_version": "1.1", "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [(b"host", b"x")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def _request(cluster: FakeAgent | None, path: str, method: str = "GET") -> tuple[int, dict | bytes]:
    app = create_app(FakeEngine(cluster))
    return trio.run(_get, app, path, method)


def test_members_route() -> None:
    status, body = _request(FakeAgent(_snapshot()), "/appliance/members")
    assert status == 200
    assert body["Node"] == "n1" and body["GossipAddr"] == "127.0.0.1:7946" and body["Joined"] is True
    assert body["Counts"] == {"alive": 1, "suspect": 0, "failed": 1, "left": 0}
    assert body["Members"][1] == {"Name": "n1", "Addr": "127.0.0.1:7946", "Status": "alive", "Incarnation": 2,
                                  "Tags": {"role": "appliance", "mem_free": "8G"},
                                  "LastChange": 1_700_000_100.0, "Local": True}
    status, body = _request(FakeAgent(_snapshot()), "/v1.47/appliance/members")
    assert status == 200


def test_members_route_without_gossip_is_503_in_dockers_shape() -> None:
    status, body = _request(None, "/appliance/members")
    assert (status, body) == (503, {"message": "this node runs without gossip"})


@pytest.mark.parametrize(("state", "status"), [("running", 200), ("starting", 503), ("leaving", 503),
                                               ("left", 503), ("stopped", 503)])
def test_health_follows_gossip(state: str, status: int) -> None:
    code, body = _request(FakeAgent(_snapshot(state)), "/_health")
    assert code == status
    assert body["Gossip"] == state and body["Status"] == ("ok" if status == 200 else "unavailable")
    assert body["Members"]["alive"] == 1
    code, body = _request(FakeAgent(_snapshot(state)), "/_health", "HEAD")
    assert (code, body) == (status, b"")


def test_info_section_and_labels() -> None:
    agent = FakeAgent(_snapshot())
    assert info_section(agent)["Members"] == {"alive": 1, "suspect": 0, "failed": 1, "left": 0}
    assert info_section(agent)["Nodes"][0] == {"Name": "judge", "Addr": "127.0.0.1:7950", "Status": "failed",
                                               "Role": "judge"}
    assert info_labels(agent) == [
        "appliance.cluster.gossip=127.0.0.1:7946 (running)",
        "appliance.cluster.members=1 alive, 0 suspect, 1 failed, 0 left",
        "appliance.cluster.member=judge 127.0.0.1:7950 failed",
        "appliance.cluster.member=n1 127.0.0.1:7946 alive",
    ]
    assert info_section(None) is None and info_labels(None) == []


def test_members_table() -> None:
    status, body = _request(FakeAgent(_snapshot()), "/appliance/members")
    lines = format_table(body, now=1_700_000_130.0).splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "STATUS", "INCARNATION", "TAGS", "LAST", "CHANGE"]
    assert lines[1].split() == ["judge", "127.0.0.1:7950", "failed", "3", "role=judge", "2m10s", "ago"]
    assert lines[2].split() == ["n1", "(this", "node)", "127.0.0.1:7946", "alive", "2",
                                "mem_free=8G,role=appliance", "30s", "ago"]
    assert lines[3] == "gossip running on 127.0.0.1:7946; 1 alive, 1 failed"


def test_cluster_modules_stay_below_the_api() -> None:
    """The agent and its pure helpers import no API framework; the pure ones no trio either."""
    root = Path(__file__).resolve().parents[2] / "appliance" / "cluster"

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / name).read_text())
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
        return out

    for pure in ("capacity.py", "members.py"):
        assert not imports(pure) & {"trio", "socket", "quart", "hypercorn", "lmdb", "time"}, pure
    assert not imports("agent.py") & {"quart", "hypercorn", "lmdb"}
