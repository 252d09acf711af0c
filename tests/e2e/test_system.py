"""System endpoints against a real node: version negotiation, /_ping, /info, errors.

The docker CLI where it is the client that matters; raw HTTP over the unix socket where the
exact headers or bodies are the contract (reference/docker-cli-wire.md §1).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess

import pytest

from tests.support.node import DOCKER
from tests.support.http import UnixConnection

TOO_OLD = ("client version 1.12 is too old. Minimum supported API version is 1.24, "
           "please upgrade your client to a newer version")
TOO_NEW = "client version 9.99 is too new. Maximum supported API version is 1.50"


def _request(node, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = UnixConnection(node.docker_host.removeprefix("unix://"), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def _json_error(status: int, headers, body: bytes) -> str:
    assert headers["Content-Type"] == "application/json", (status, body)
    data = json.loads(body)
    assert list(data) == ["message"] and isinstance(data["message"], str), data
    return data["message"]


def _meminfo_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def _info(node) -> dict:
    return json.loads(node.out("info", "--format", "{{json .}}"))


# ---- version negotiation ------------------------------------------------------------------------

def test_docker_version_shows_server_api_and_minimum(node):
    out = node.out("version")
    server = out.split("Server:", 1)[1]
    assert re.search(r"API version:\s+1\.50 \(minimum version 1\.24\)", server), out
    assert node.out("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}} "
                    "{{.Server.MinAPIVersion}} {{.Server.Os}}") == "1.50 1.50 1.24 linux"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_ping_headers(node, method):
    status, headers, body = _request(node, method, "/_ping")
    assert status == 200
    assert headers["Api-Version"] == "1.50"
    assert headers["Ostype"] == "linux"
    assert headers["Docker-Experimental"] == "false"
    assert headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert headers["Pragma"] == "no-cache"
    assert len(headers.get_all("Api-Version")) == 1
    if method == "HEAD":
        assert body == b"" and headers["Content-Length"] == "0"
    else:
        assert body == b"OK"


def test_versioned_ping_and_boundaries(node):
    assert _request(node, "GET", "/v1.50/_ping")[2] == b"OK"
    for version in ("1.24", "1.41", "1.50"):
        status, _, body = _request(node, "GET", f"/v{version}/version")
        assert status == 200, (version, body)
        assert json.loads(body)["ApiVersion"] == "1.50"


@pytest.mark.parametrize("version, message", [("1.12", TOO_OLD), ("9.99", TOO_NEW)])
def test_out_of_range_versions_are_dockerds_400(node, version, message):
    status, headers, body = _request(node, "GET", f"/v{version}/info")
    assert status == 400
    assert _json_error(status, headers, body) == message


def test_pinned_older_api_version_works(node):
    env = {**node.env(), "DOCKER_API_VERSION": "1.41"}
    ps = subprocess.run([DOCKER, "ps", "-a"], check=False, env=env, capture_output=True, timeout=30)
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.decode().startswith("CONTAINER ID")
    ver = subprocess.run([DOCKER, "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}"],
                         check=False, env=env, capture_output=True, timeout=30)
    assert ver.stdout.decode().strip() == "1.41 1.50", ver.stderr


def test_pinned_too_old_api_version_is_refused_through_the_cli(node):
    env = {**node.env(), "DOCKER_API_VERSION": "1.23"}
    ps = subprocess.run([DOCKER, "ps"], check=False, env=env, capture_output=True, timeout=30)
    assert ps.returncode != 0
    assert ("Error response from daemon: client version 1.23 is too old. Minimum supported API "
            "version is 1.24") in ps.stderr.decode()


# ---- docker info --------------------------------------------------------------------------------

def test_info_reports_the_host(node):
    info = _info(node)
    ncpu = len(os.sched_getaffinity(0))
    release = os.uname().release
    assert info["NCPU"] == ncpu
    assert info["MemTotal"] == _meminfo_total_bytes()
    assert info["Name"] == node.name
    assert info["KernelVersion"] == release
    assert info["OSType"] == "linux"
    assert info["Driver"] == "overlay2"
    assert info["DefaultRuntime"] == "crun" and "crun" in info["Runtimes"]
    assert info["DockerRootDir"] == str(node.data_root)
    assert info["ServerVersion"].startswith("28.")
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    human = node.out("info")
    for line in (f" Name: {node.name}", " Storage Driver: overlay2", " Runtimes: crun",
                 " Default Runtime: crun", f" Kernel Version: {release}", f" CPUs: {ncpu}",
                 " Logging Driver: json-file"):
        assert f"\n{line}\n" in human, (line, human)


def test_info_counts_containers_and_images(node):
    before = _info(node)
    images = set(node.out("images", "-q", "--no-trunc").split())
    assert before["Images"] == len(images) >= 1
    names = ["info-created", "info-exited", "info-running"]
    try:
        node.docker("create", "--name", names[0], "busybox", "true")
        node.docker("run", "--name", names[1], "busybox", "true")
        node.docker("run", "-d", "--name", names[2], "busybox", "sleep", "300")
        after = _info(node)
        assert after["Containers"] == before["Containers"] + 3
        assert after["ContainersRunning"] == before["ContainersRunning"] + 1
        assert after["ContainersStopped"] == before["ContainersStopped"] + 2
        assert after["ContainersPaused"] == 0
        human = node.out("info")
        assert (f" Containers: {after['Containers']}\n  Running: {after['ContainersRunning']}\n"
                f"  Paused: 0\n  Stopped: {after['ContainersStopped']}\n") in human, human
    finally:
        node.docker("rm", "-f", *names, check=False)


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1.50/nope", "/nope", "/v1.50/containers/abc/nope/deeper"])
def test_unknown_path_is_404_page_not_found(node, path):
    status, headers, body = _request(node, "GET", path)
    assert status == 404
    assert _json_error(status, headers, body) == "page not found"


MALFORMED = [
    b"{bad",
    b'{"Image": "busybox"',
    b"[1]",
    b'"busybox"',
    b"null",
    b"\xff\xfe{}",
    b'{"Image": 5}',
    b'{"Image": "busybox", "Cmd": {"a": 1}}',
    b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": []}',
    b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": "lots"}}',
    b'{"Image": "busybox", "Cmd": ["true"], "Labels": {"a": 1}}',
    b'{"Image": "busybox", "Cmd": ["true"], "Tty": "yes"}',
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_create_body_is_400_json(node, body):
    status, headers, data = _request(node, "POST", "/v1.50/containers/create", body=body,
                                     headers={"Content-Type": "application/json"})
    assert status == 400, data
    assert _json_error(status, headers, data)


# Wrongly typed fields the node may accept or refuse, but must never answer with a 500.
ODD_FIELDS = [
    '"Env": [1]', '"Entrypoint": 5', '"ExposedPorts": [1]', '"Volumes": [1]', '"Healthcheck": 5',
    '"NetworkingConfig": 5', '"HostConfig": {"Binds": [5]}', '"HostConfig": {"PortBindings": [1]}',
    '"HostConfig": {"RestartPolicy": "x"}', '"HostConfig": {"Mounts": [5]}', '"HostConfig": {"Ulimits": 5}',
    '"HostConfig": {"Devices": 5}', '"HostConfig": {"LogConfig": {"Type": 5}}', '"HostConfig": {"Tmpfs": [1]}',
    '"HostConfig": {"Memory": 1e30}', '"HostConfig": {"CapAdd": 5}', '"HostConfig": {"ConsoleSize": "x"}',
]


def test_oddly_typed_create_fields_never_500(node):
    created = []
    try:
        for field in ODD_FIELDS:
            body = f'{{"Image": "busybox", "Cmd": ["true"], {field}}}'.encode()
            status, headers, data = _request(node, "POST", "/v1.50/containers/create", body=body,
                                             headers={"Content-Type": "application/json"})
            assert status in (201, 400), (field, status, data)
            if status == 201:
                created.append(json.loads(data)["Id"])
            else:
                assert _json_error(status, headers, data), field
    finally:
        if created:
            node.docker("rm", "-f", *created, check=False)
