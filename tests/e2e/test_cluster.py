"""Three real `appliance serve` processes and two stock `serf agent`s in one cluster, on loopback.

The Serf agents are the independent judges.  Checkpoints, in order; at each one every live
member's view (``appliance members --json`` on our nodes, ``serf members`` on Serf's) must be
the same {name: status} map:

1. all five alive; Serf lists each appliance node with the tags the node itself advertises;
2. appliance node n3 is killed (SIGKILL): Serf and the appliances all say ``failed``;
3. Serf agent judge2 is killed (SIGKILL): the appliances (and judge1) say ``failed``;
4. appliance node n2 stops gracefully (SIGTERM): Serf says ``left``, and so does n1.

Then n1's ``docker events --filter type=node`` must have told the story.  Loopback only, free
ports only; the only processes killed are the ones this test started, by PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from appliance.cluster.members_cli import fetch
from tests.support.node import (
    DOCKER, REPO, Node, delete_netns, destroy_node, ensure_netns, node_data_root, start_node,
)
from tests.support.ports import free_port

SERF = shutil.which("serf") or "/usr/bin/serf"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SERF), reason="stock serf agent not installed (apt-get install serf)"),
    pytest.mark.skipif(not os.path.exists(DOCKER), reason=f"docker CLI not found at {DOCKER}"),
]

#: Generous bounds for each checkpoint; Serf's own default-LAN detection is about 6 s.
JOIN_DEADLINE = 15.0
DETECT_DEADLINE = 25.0
LEAVE_DEADLINE = 15.0


class SerfAgent:
    def __init__(self, name: str, log_dir: Path, *, netns: str, port: int | None = None,
                 join: int | None = None) -> None:
        self.name = name
        self.enter = ["nsenter", f"--net=/run/netns/{netns}"]  # the cluster's own loopback
        self.port, self.rpc = port or free_port(), free_port()
        self.log_path = log_dir / f"{name}.log"
        cmd = [SERF, "agent", "-node", name, "-bind", f"127.0.0.1:{self.port}", "-rpc-addr", f"127.0.0.1:{self.rpc}",
               "-tag", "role=judge", "-log-level", "debug"]
        if join is not None:
            cmd += ["-join", f"127.0.0.1:{join}"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*self.enter, *cmd], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def members(self) -> dict[str, tuple[str, dict[str, str]]]:
        res = subprocess.run([*self.enter, SERF, "members", "-rpc-addr", f"127.0.0.1:{self.rpc}", "-format", "json"],
                             capture_output=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.decode(errors="replace"))
        return {m["name"]: (m["status"], m["tags"]) for m in json.loads(res.stdout)["members"]}

    def view(self) -> dict[str, str]:
        return {name: status for name, (status, _tags) in self.members().items()}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # the PID this test started, nothing else
        self.proc.wait(10)


def node_view(node: Node) -> dict[str, str]:
    status, doc = fetch(node.docker_host, timeout=5)
    assert status == 200, doc
    return {m["Name"]: m["Status"] for m in doc["Members"]}


def node_self(node: Node) -> dict:
    _status, doc = fetch(node.docker_host, timeout=5)
    return next(m for m in doc["Members"] if m["Local"])


def poll(check, what: str, deadline: float, diagnostics=lambda: ""):  # noqa: ANN001, ANN201
    """Call check() until it returns a truthy value or deadline seconds pass."""
    end = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < end:
        try:
            last = check()
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {deadline} s waiting for {what}; last: {last!r}\n{diagnostics()}")


class Disagreement(dict):
    """The views that did not match (falsy, so poll() keeps going and reports the last one)."""

    def __bool__(self) -> bool:
        return False


def agree(views: dict[str, callable], expected: dict[str, str]) -> dict:
    """Every observer's {member: status} is `expected`: the views, else a Disagreement."""
    seen = {who: view() for who, view in views.items()}
    return seen if all(v == expected for v in seen.values()) else Disagreement(seen)


def test_three_appliance_nodes_and_two_serf_agents(tmp_path: Path) -> None:
    t_start = time.time()
    with ExitStack() as stack:
        roots = [stack.enter_context(node_data_root()) for _ in range(3)]
        # One network namespace for the whole cluster: its loopback is the "LAN" (never the host's).
        netns = ensure_netns(f"appl-cl{secrets.token_hex(4)}")
        stack.callback(delete_netns, netns)
        gossip = [free_port() for _ in range(3)]
        nodes: dict[str, Node] = {}
        judges: dict[str, SerfAgent] = {}

        def cleanup() -> None:
            for judge in judges.values():
                judge.kill()
            for node in nodes.values():
                destroy_node(node)

        stack.callback(cleanup)

        def views() -> dict[str, callable]:
            out = {f"appliance:{n}": (lambda node=node: node_view(node))
                   for n, node in nodes.items() if node.proc.poll() is None}
            out.update({f"serf:{j}": judge.view for j, judge in judges.items() if judge.proc.poll() is None})
            return out

        def logs() -> str:
            parts = [f"--- {n} log tail:\n{node.log_tail(25)}" for n, node in nodes.items()]
            parts += [f"--- {j} log tail:\n" + "\n".join(judge.log_path.read_text(errors="replace").splitlines()[-15:])
                      for j, judge in judges.items()]
            return "\n".join(parts)

        # n1 first, before any Serf agent exists: a cluster of one that keeps retrying its seeds
        # until judge1 answers or n2 reaches it.  Every node gets the same seed list, itself
        # included (a node skips its own address).
        judge_port = free_port()
        seeds = f"127.0.0.1:{gossip[0]},127.0.0.1:{judge_port}"

        def start(name: str, index: int) -> None:
            nodes[name] = start_node(roots[index], name=name, netns=netns, extra_args=(
                "--gossip-bind", f"127.0.0.1:{gossip[index]}", "--join", seeds, "--bridge", "none"))

        start("n1", 0)
        assert node_view(nodes["n1"]) == {"n1": "alive"}  # a cluster of one meanwhile
        judges["judge1"] = SerfAgent("judge1", tmp_path, netns=netns, port=judge_port)
        poll(lambda: "judge1" in judges["judge1"].view(), "judge1's RPC", 10.0, logs)  # `-join` gives up at once
        judges["judge2"] = SerfAgent("judge2", tmp_path, netns=netns, join=judge_port)
        start("n2", 1)
        start("n3", 2)

        # ---- 1. everyone alive, everywhere --------------------------------------------------
        everyone = {"n1": "alive", "n2": "alive", "n3": "alive", "judge1": "alive", "judge2": "alive"}
        poll(lambda: agree(views(), everyone), "all five members alive in every view", JOIN_DEADLINE, logs)

        def tags_match() -> bool:
            for judge in judges.values():
                listed = judge.members()
                for name, node in nodes.items():
                    own = node_self(node)["Tags"]
                    if listed[name] != ("alive", own):
                        return False
            return True

        poll(tags_match, "Serf to list every appliance node with the node's own tags", JOIN_DEADLINE, logs)
        tags = judges["judge1"].members()["n2"][1]
        assert tags["role"] == "appliance" and tags["underlay"] == "127.0.0.1"
        assert tags["api"] == nodes["n2"].docker_host
        assert {"mem_free", "cpu_free", "ncpu", "containers"} <= tags.keys()
        # The same answer through the CLI, and the health endpoint.
        cli = subprocess.run([sys.executable, "-m", "appliance", "members", "-H", nodes["n1"].docker_host, "--json"],
                             capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
        assert cli.returncode == 0, cli.stderr
        doc = json.loads(cli.stdout)
        assert {m["Name"]: m["Status"] for m in doc["Members"]} == everyone
        assert doc["Joined"] is True and doc["GossipAddr"] == f"127.0.0.1:{gossip[0]}"
        judge_entry = next(m for m in doc["Members"] if m["Name"] == "judge2")
        assert judge_entry["Tags"] == {"role": "judge"} and judge_entry["Addr"] == f"127.0.0.1:{judges['judge2'].port}"
        status, health = fetch(nodes["n1"].docker_host, "/_health")
        assert status == 200 and health["Members"]["alive"] == 5

        # ---- 2. kill an appliance node: failed, for Serf and for us ------------------------
        nodes["n3"].proc.kill()
        nodes["n3"].proc.wait(10)
        expected = {**everyone, "n3": "failed"}
        poll(lambda: agree(views(), expected), "n3 failed in every view", DETECT_DEADLINE, logs)

        # ---- 3. kill a Serf agent: our nodes detect it ---------------------------------------
        judges["judge2"].kill()
        expected = {**expected, "judge2": "failed"}
        poll(lambda: agree(views(), expected), "judge2 failed in every view", DETECT_DEADLINE, logs)

        # ---- 4. graceful stop: left, not failed ------------------------------------------------
        stopping = nodes["n2"]
        stopping.proc.send_signal(signal.SIGTERM)
        expected = {**expected, "n2": "left"}
        poll(lambda: agree({k: v for k, v in views().items() if k != "appliance:n2"}, expected),
             "n2 left in every view", LEAVE_DEADLINE, logs)
        stopping.proc.wait(15)

        # ---- docker events on n1 told the same story ----------------------------------------
        res = nodes["n1"].docker("events", "--since", str(int(t_start)), "--until", str(int(time.time()) + 1),
                                 "--filter", "type=node", "--format", "{{.Action}} {{.Actor.ID}}")
        events = res.stdout.decode().splitlines()
        for name in ("n2", "n3", "judge1", "judge2"):
            assert f"join {name}" in events, events
        assert events.index("fail n3") > events.index("join n3")
        assert "fail judge2" in events and "leave n2" in events, events
        assert "fail n2" not in events and "fail n1" not in events, events
        # Serf had no complaint about our nodes.
        complaints = [line for line in judges["judge1"].log_path.read_text(errors="replace").splitlines()
                      if ("[ERR]" in line or "[WARN]" in line) and re.search(r"\bn[123]\b", line)
                      and "failed" not in line.lower()]
        assert complaints == [], "\n".join(complaints)
