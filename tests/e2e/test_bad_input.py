"""Bad input gets dockerd's JSON error and status: never a 500, never a traceback, nothing half-made."""

import json

import pytest

from tests.support.http import request


def _create(node, body, name=None):
    path = "/v1.50/containers/create" + (f"?name={name}" if name else "")
    return request(node.docker_host, "POST", path, body=body)


def _assert_docker_error(status, headers, body, want_status, fragment):
    assert status == want_status, body
    assert headers["content-type"].startswith("application/json")
    message = json.loads(body)["message"]
    assert fragment in message, message
    assert "Traceback" not in message


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "invalid JSON"),
    (b"", "invalid JSON"),
])
def test_malformed_json_is_400(node, body, fragment):
    before = node.out("ps", "-aq")
    status, headers, raw = request(node.docker_host, "POST", "/v1.50/containers/create", body=body,
                                   headers={"Content-Type": "application/json"})
    _assert_docker_error(status, headers, raw, 400, fragment)
    assert node.out("ps", "-aq") == before


@pytest.mark.parametrize("host_config, fragment", [
    ({"Memory": "lots"}, "cannot unmarshal string into Go struct field HostConfig.Memory of type int64"),
    ({"Memory": -5}, "must not be negative"),
    ({"Memory": 1 << 70}, "cannot unmarshal number"),
    ({"NanoCpus": 99_000_000_000}, "Range of CPUs is from 0.01 to"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms"),
    ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "can't create 'AutoRemove' container"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
    ({"Binds": ["relative:/x", "/a:b"]}, "mount path must be absolute"),
    ({"Binds": ["bad/name:/x"]}, "includes invalid characters for a local volume name"),
    ({"Mounts": [{"Type": "bind", "Source": "/definitely/not/here", "Target": "/x"}]},
     "bind source path does not exist"),
    ({"Mounts": [{"Type": "nfs", "Target": "/x"}]}, "mount type unknown"),
    ({"Binds": ["/tmp:/same", "/tmp:/same"]}, "Duplicate mount point"),
    ({"Privileged": True}, "privileged"),
])
def test_bad_host_config_is_400_and_creates_nothing(node, host_config, fragment):
    before = (node.out("ps", "-aq"), node.out("volume", "ls", "-q"))
    status, headers, raw = _create(node, {"Image": "busybox", "Cmd": ["true"], "HostConfig": host_config})
    _assert_docker_error(status, headers, raw, 400, fragment)
    assert (node.out("ps", "-aq"), node.out("volume", "ls", "-q")) == before


def test_unknown_image_is_404_so_the_cli_tries_a_pull(node):
    status, headers, raw = _create(node, {"Image": "nosuch", "Cmd": ["true"]})
    _assert_docker_error(status, headers, raw, 404, "No such image: nosuch:latest")


def test_invalid_image_reference_is_400(node):
    status, headers, raw = _create(node, {"Image": "UPPER", "Cmd": ["true"]})
    _assert_docker_error(status, headers, raw, 400, "must be lowercase")


def test_no_command_is_400(node):
    status, headers, raw = _create(node, {"Image": "busybox"})
    _assert_docker_error(status, headers, raw, 400, "no command specified")


def test_name_conflict_is_409_and_bad_name_is_400(node):
    status, _, raw = _create(node, {"Image": "busybox", "Cmd": ["true"]}, name="taken")
    assert status == 201, raw
    status, headers, raw = _create(node, {"Image": "busybox", "Cmd": ["true"]}, name="taken")
    _assert_docker_error(status, headers, raw, 409, 'The container name "/taken" is already in use')
    status, headers, raw = _create(node, {"Image": "busybox", "Cmd": ["true"]}, name="-bad")
    _assert_docker_error(status, headers, raw, 400, "Invalid container name (-bad)")
    node.docker("rm", "taken")


def test_lifecycle_errors_use_dockers_statuses(node):
    cid = node.out("create", "busybox", "sleep", "300")
    status, headers, raw = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/kill")
    _assert_docker_error(status, headers, raw, 409, "is not running")
    status, _, _ = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/stop")
    assert status == 304
    node.docker("start", cid)
    status, _, _ = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/start")
    assert status == 304
    status, headers, raw = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/kill?signal=NOPE")
    _assert_docker_error(status, headers, raw, 400, "Invalid signal: NOPE")
    status, headers, raw = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/wait?condition=soon")
    _assert_docker_error(status, headers, raw, 400, "invalid condition")
    status, headers, raw = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/rename?name=")
    _assert_docker_error(status, headers, raw, 400, "Neither old nor new names may be empty")
    status, headers, raw = request(node.docker_host, "DELETE", f"/v1.50/containers/{cid}")
    _assert_docker_error(status, headers, raw, 409, "container is running")
    status, headers, raw = request(node.docker_host, "GET", f"/v1.50/containers/{cid}/logs")
    _assert_docker_error(status, headers, raw, 400, "you must choose at least one stream")
    status, headers, raw = request(node.docker_host, "GET", "/v1.50/containers/json?filters=%7Bbad")
    _assert_docker_error(status, headers, raw, 400, "invalid filter")
    node.docker("rm", "-f", cid)


def test_attach_to_a_missing_container_is_a_json_404_before_any_upgrade(node):
    status, headers, raw = request(node.docker_host, "POST", "/v1.50/containers/missing/attach?stream=1",
                                   headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    _assert_docker_error(status, headers, raw, 404, "No such container: missing")


def test_unknown_method_is_a_json_404_and_every_answer_names_the_api(node):
    status, headers, raw = request(node.docker_host, "PUT", "/v1.50/info")
    _assert_docker_error(status, headers, raw, 404, "page not found")
    status, headers, _ = request(node.docker_host, "GET", "/v1.50/containers/json")
    assert status == 200 and headers["api-version"] == "1.50" and headers["ostype"] == "linux"
    status, headers, raw = request(node.docker_host, "POST", "/v1.50/containers/create",
                                   body=b'{"Image": "busybox"}', headers={"Content-Type": "text/plain"})
    _assert_docker_error(status, headers, raw, 400, "unsupported Content-Type header (text/plain)")
