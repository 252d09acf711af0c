"""docker-py (the `docker` package) against a real node: the second client that must just work.

docker-py negotiates its API version with GET /version, pools keep-alive connections through
requests, and reads container output through GET /logs rather than attach.
"""

from __future__ import annotations

import time

import pytest

docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def client(node):
    c = docker.DockerClient(base_url=node.docker_host, version="auto", timeout=30)
    try:
        yield c
    finally:
        for ctr in c.containers.list(all=True, filters={"label": "dockerpy-test"}):
            ctr.remove(force=True)
        c.close()


LABELS = {"dockerpy-test": "1"}


def test_version_negotiation_and_version(client):
    assert client.api.api_version == "1.50"
    v = client.version()
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux"
    assert v["Components"][0]["Name"] == "Engine"
    assert client.ping() is True


def test_info(client, node):
    info = client.info()
    assert info["Name"] == node.name
    assert info["OSType"] == "linux"
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0
    assert info["Images"] >= 1


def test_create_start_wait_logs_remove(client):
    ctr = client.containers.create("busybox", ["sh", "-c", "echo out; echo err >&2; exit 4"],
                                   name="dp-lifecycle", labels={**LABELS, "k": "v"})
    assert ctr.status == "created"
    assert ctr.labels["k"] == "v"
    ctr.start()
    assert ctr.wait(timeout=30) == {"StatusCode": 4, "Error": None}
    assert ctr.logs(stdout=True, stderr=False) == b"out\n"
    assert ctr.logs(stdout=False, stderr=True) == b"err\n"
    assert sorted(ctr.logs().splitlines()) == [b"err", b"out"]
    ctr.reload()
    assert ctr.status == "exited"
    assert ctr.attrs["State"]["ExitCode"] == 4
    assert ctr.name == "dp-lifecycle"
    assert client.containers.get("dp-lifecycle").id == ctr.id
    ctr.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ctr.id)


def test_run_attached_returns_output(client):
    out = client.containers.run("busybox", ["echo", "hello"], remove=True, labels=LABELS)
    assert out == b"hello\n"


def test_run_attached_with_remove_leaves_nothing(client):
    client.containers.run("busybox", ["true"], remove=True, name="dp-gone", labels=LABELS)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("dp-gone")


def test_run_attached_failure_raises_with_stderr(client):
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "echo boom >&2; exit 2"], name="dp-fail",
                              labels=LABELS)
    assert info.value.exit_status == 2
    assert info.value.stderr == b"boom\n"
    client.containers.get("dp-fail").remove()


def test_run_detached_stream_logs_and_wait(client):
    ctr = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done; exit 5"],
                                detach=True, labels=LABELS)
    try:
        streamed = b"".join(ctr.logs(stream=True, follow=True))
        assert streamed == b"line1\nline2\nline3\n"
        assert ctr.wait(timeout=30)["StatusCode"] == 5
        ctr.reload()
        assert ctr.status == "exited"
    finally:
        ctr.remove(force=True)


def test_list_and_filter(client):
    ctr = client.containers.run("busybox", ["sleep", "300"], detach=True, name="dp-list",
                                labels={**LABELS, "role": "lister"})
    try:
        running = client.containers.list(filters={"label": "role=lister"})
        assert [c.id for c in running] == [ctr.id]
        assert running[0].status == "running"
        assert ctr.id in [c.id for c in client.containers.list(all=True)]
    finally:
        ctr.remove(force=True)
    assert client.containers.list(all=True, filters={"label": "role=lister"}) == []


def test_images_list(client):
    tags = {t for img in client.images.list() for t in img.tags}
    assert "busybox:latest" in tags
    assert client.images.get("busybox").id.startswith("sha256:")


def test_events_history(client):
    since = time.time()
    client.containers.run("busybox", ["true"], remove=True, name="dp-events", labels=LABELS)
    evs = list(client.events(since=since, until=time.time() + 0.001, decode=True,
                             filters={"container": "dp-events"}))
    actions = [e["Action"] for e in evs if e["Action"] in ("create", "start", "die", "destroy")]
    assert actions == ["create", "start", "die", "destroy"]
    assert {e["Actor"]["Attributes"]["name"] for e in evs} == {"dp-events"}


def test_attach_with_logs_and_no_stream_returns_what_was_written(client):
    container = client.containers.run("busybox", ["sh", "-c", "echo hello; echo oops >&2; sleep 30"], detach=True)
    try:
        deadline = time.monotonic() + 5
        while b"oops" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        out = client.api.attach(container.id, stream=False, logs=True, stdout=True, stderr=False)
        assert out == b"hello\n"
        assert time.monotonic() - t0 < 5  # not held until the container exits
    finally:
        container.remove(force=True)
