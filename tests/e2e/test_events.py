"""`docker events` against a real node: history windows, filters, the JSON shape, live delivery.

The filter table at the end pins moby daemon/events/filter.go semantics on the pure EventFilter.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from dataclasses import dataclass

import pytest

from appliance.engine.events import Event, EventFilter
from tests.support.node import DOCKER

LIFECYCLE = ["create", "start", "die", "destroy"]


@dataclass(frozen=True)
class RunRm:
    """One `docker run --rm` with a label and exit code 3, and the wall-clock window around it."""

    name: str
    cid: str
    since: str
    until: str
    since_ns: int
    until_ns: int


def _stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _events(node, *args: str) -> list[dict]:
    out = node.out("events", *args, "--format", "{{json .}}", timeout=30)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run_rm(node) -> RunRm:
    since_ns = time.time_ns()
    res = node.docker("run", "--rm", "--name", "ev-rm", "--label", "team=blue", "busybox",
                      "sh", "-c", "exit 3", check=False)
    assert res.returncode == 3, res.stderr
    # The CLI returns once the wait for removal ends; destroy is published before that.
    until_ns = time.time_ns()
    window = ("--since", _stamp(since_ns), "--until", _stamp(until_ns))
    created = _events(node, *window, "--filter", "event=create", "--filter", "container=ev-rm")
    assert len(created) == 1, created
    return RunRm("ev-rm", created[0]["Actor"]["ID"], window[1], window[3], since_ns, until_ns)


def _window(r: RunRm) -> tuple[str, ...]:
    return ("--since", r.since, "--until", r.until)


# ---- history window ------------------------------------------------------------------------------

def test_run_rm_lifecycle_in_order(node, run_rm):
    evs = _events(node, *_window(run_rm), "--filter", f"container={run_rm.cid}")
    assert all(e["Actor"]["ID"] == run_rm.cid for e in evs)
    lifecycle = [e["Action"] for e in evs if e["Action"] in LIFECYCLE]
    assert lifecycle == LIFECYCLE, [e["Action"] for e in evs]
    die = next(e for e in evs if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    stamps = [e["timeNano"] for e in evs]
    assert stamps == sorted(stamps)
    assert run_rm.since_ns <= stamps[0] and stamps[-1] <= run_rm.until_ns


def test_json_format_fields(node, run_rm):
    evs = _events(node, *_window(run_rm), "--filter", "event=start", "--filter", "container=ev-rm")
    assert len(evs) == 1
    ev = evs[0]
    assert ev["Type"] == "container" and ev["Action"] == "start" and ev["scope"] == "local"
    assert ev["Actor"]["ID"] == run_rm.cid and len(run_rm.cid) == 64
    assert ev["Actor"]["Attributes"] == {"image": "busybox", "name": "ev-rm", "team": "blue"}
    assert isinstance(ev["timeNano"], int) and ev["time"] == ev["timeNano"] // 1_000_000_000
    # the pre-1.22 fields the CLI still reads
    assert (ev["status"], ev["id"], ev["from"]) == ("start", run_rm.cid, "busybox")


def test_default_format_line(node, run_rm):
    out = node.out("events", *_window(run_rm), "--filter", "event=die", "--filter", "container=ev-rm")
    line, = out.splitlines()
    assert line.endswith(f" container die {run_rm.cid} (execDuration=0, exitCode=3, image=busybox, name=ev-rm, "
                         "team=blue)"), line


def test_filter_event_die(node, run_rm):
    node.docker("run", "--rm", "--name", "ev-zero", "busybox", "true")
    evs = _events(node, "--since", run_rm.since, "--until", _stamp(time.time_ns()), "--filter", "event=die",
                  "--filter", "container=ev-rm", "--filter", "container=ev-zero")
    assert {e["Action"] for e in evs} == {"die"}
    codes = {e["Actor"]["Attributes"]["name"]: e["Actor"]["Attributes"]["exitCode"] for e in evs}
    assert codes == {"ev-rm": "3", "ev-zero": "0"}


def test_filter_container_by_name_and_id_prefix(node, run_rm):
    node.docker("run", "--rm", "--name", "ev-other", "busybox", "true")
    now = _stamp(time.time_ns())
    by_name = _events(node, "--since", run_rm.since, "--until", now, "--filter", "container=ev-rm")
    by_id = _events(node, "--since", run_rm.since, "--until", now, "--filter", f"container={run_rm.cid[:12]}")
    assert by_name == by_id
    assert {e["Actor"]["ID"] for e in by_name} == {run_rm.cid}
    both = _events(node, "--since", run_rm.since, "--until", now,
                   "--filter", "container=ev-rm", "--filter", "container=ev-other", "--filter", "event=start")
    assert sorted(e["Actor"]["Attributes"]["name"] for e in both) == ["ev-other", "ev-rm"]


def test_filter_label(node, run_rm):
    node.docker("run", "--rm", "--label", "team=red", "busybox", "true")
    now = _stamp(time.time_ns())
    blue = _events(node, "--since", run_rm.since, "--until", now, "--filter", "label=team=blue")
    assert {e["Actor"]["ID"] for e in blue} == {run_rm.cid}
    assert [e["Action"] for e in blue if e["Action"] in LIFECYCLE] == LIFECYCLE
    any_team = _events(node, "--since", run_rm.since, "--until", now, "--filter", "label=team",
                       "--filter", "event=create")
    assert sorted(e["Actor"]["Attributes"]["team"] for e in any_team) == ["blue", "red"]


def test_filter_type_and_image_events(node, run_rm, busybox_tar):
    t0 = _stamp(time.time_ns())
    node.docker("import", str(busybox_tar), "ev-img:1")
    node.docker("tag", "ev-img:1", "ev-img:2")
    node.docker("rmi", "ev-img:2")
    now = _stamp(time.time_ns())
    images = _events(node, "--since", t0, "--until", now, "--filter", "type=image")
    assert images and {e["Type"] for e in images} == {"image"}
    actions = [e["Action"] for e in images]
    for action in ("import", "tag", "untag"):
        assert action in actions, actions
    tag = next(e for e in images if e["Action"] == "tag" and e["Actor"]["Attributes"]["name"] == "ev-img:2")
    assert tag["Actor"]["ID"].startswith("sha256:")
    # an image filter matches image events by name, tag stripped, and container events by image
    by_image = _events(node, "--since", t0, "--until", now, "--filter", "image=ev-img")
    assert {e["Actor"]["Attributes"]["name"] for e in by_image} >= {"ev-img:1", "ev-img:2"}
    containers = _events(node, *_window(run_rm), "--filter", "type=container")
    assert containers and {e["Type"] for e in containers} == {"container"}
    from_busybox = _events(node, *_window(run_rm), "--filter", "image=busybox", "--filter", "type=container")
    assert {e["Actor"]["ID"] for e in from_busybox} == {run_rm.cid}
    node.docker("rmi", "ev-img:1")


def test_until_before_since_is_refused(node, run_rm):
    res = node.docker("events", "--since", run_rm.until, "--until", run_rm.since, check=False)
    assert res.returncode != 0
    assert (f"Error response from daemon: `since` time ({run_rm.until}) cannot be after "
            f"`until` time ({run_rm.since})") in res.stderr.decode()


def test_until_alone_replays_history(node, run_rm):
    evs = _events(node, "--until", run_rm.until, "--filter", "container=ev-rm")
    assert [e["Action"] for e in evs if e["Action"] in LIFECYCLE] == LIFECYCLE


# ---- live stream --------------------------------------------------------------------------------

def _listeners(node) -> int:
    return int(node.out("info", "--format", "{{.NEventsListener}}"))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _read_lines(proc: subprocess.Popen, want: int, timeout: float) -> list[str]:
    """Up to `want` lines from proc's stdout within timeout (the pipe is read raw, never blocking)."""
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while buf.count(b"\n") < want:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode().splitlines()


def test_live_events_reach_a_running_subscriber(node):
    base = _listeners(node)
    proc = subprocess.Popen([DOCKER, "events", "--filter", "type=container", "--filter", "container=ev-live",
                             "--format", "{{json .}}"], env=node.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _listeners(node) > base, 10, "the events subscription")
        node.docker("run", "--rm", "--name", "ev-live", "busybox", "true")
        lines = _read_lines(proc, 4, timeout=10)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    evs = [json.loads(line) for line in lines]
    assert [e["Action"] for e in evs if e["Action"] in LIFECYCLE] == LIFECYCLE, lines
    assert {e["Actor"]["Attributes"]["name"] for e in evs} == {"ev-live"}
    _wait_for(lambda: _listeners(node) == base, 10, "the subscription to end after the client left")


def test_live_stream_ends_at_until(node):
    start = time.time_ns()
    until = _stamp(start + 3_000_000_000)
    proc = subprocess.Popen([DOCKER, "events", "--since", _stamp(start), "--until", until,
                             "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}"],
                            env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        node.docker("run", "--rm", "--name", "ev-until", "busybox", "true")
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode().split() == ["ev-until"]
    assert time.time_ns() >= start + 3_000_000_000  # it ran until `until`, not to the first event


# ---- filter semantics (pure, moby daemon/events/filter.go) ---------------------------------------

CID = "a" * 64
IMG = "sha256:" + "b" * 64
CTR_DIE = Event("container", "die", CID, {"image": "busybox:latest", "name": "web-1", "exitCode": "0",
                                           "team": "blue"})
IMG_TAG = Event("image", "tag", IMG, {"name": "docker.io/library/busybox:1.36"})
VOL = Event("volume", "create", "data", {"driver": "local"})
HEALTH = Event("container", "health_status: healthy", CID, {"name": "web-1", "image": "busybox"})


@pytest.mark.parametrize("filters, event, expected", [
    ({}, CTR_DIE, True),
    ({"type": ["container"]}, CTR_DIE, True),
    ({"type": ["image"]}, CTR_DIE, False),
    ({"type": ["image", "volume"]}, VOL, True),
    ({"event": ["die"]}, CTR_DIE, True),
    ({"event": ["di"]}, CTR_DIE, False),                   # exact, not prefix
    ({"event": ["health_status"]}, HEALTH, True),          # moby #25798: fuzzy for these three
    ({"container": ["web-1"]}, CTR_DIE, True),
    ({"container": ["web"]}, CTR_DIE, True),               # name prefix
    ({"container": ["aaaa"]}, CTR_DIE, True),              # ID prefix
    ({"container": ["other"]}, CTR_DIE, False),
    ({"container": ["web"]}, VOL, False),
    ({"image": ["busybox"]}, CTR_DIE, True),               # tag stripped
    ({"image": ["busybox:latest"]}, CTR_DIE, True),
    ({"image": ["busybox"]}, IMG_TAG, True),               # image events by `name`, normalized
    ({"image": [IMG]}, IMG_TAG, True),
    ({"image": ["alpine"]}, CTR_DIE, False),
    ({"image": ["busybox"]}, VOL, False),
    ({"label": ["team"]}, CTR_DIE, True),
    ({"label": ["team=blue"]}, CTR_DIE, True),
    ({"label": ["team=red"]}, CTR_DIE, False),
    ({"label": ["team=blue", "tier"]}, CTR_DIE, False),    # every label must match
    ({"label": ["driver=local"]}, VOL, True),
    ({"volume": ["da"]}, VOL, True),
    ({"scope": ["swarm"]}, CTR_DIE, False),
    ({"type": ["container"], "event": ["die"], "container": ["web-1"]}, CTR_DIE, True),
    ({"type": ["container"], "event": ["start"], "container": ["web-1"]}, CTR_DIE, False),
])
def test_event_filter_semantics(filters, event, expected):
    assert EventFilter.from_filters(filters).matches(event) is expected
