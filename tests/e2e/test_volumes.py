"""docker volume create / ls / inspect / rm / prune, and volumes in containers (-v, --mount, VOLUME).

Each test names its own volumes and containers and removes them. Volume data lives on the host
under the node's data root; container root is the user-namespace base uid (100000) there.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import docker
import pytest
from tests.support.http import UnixConnection

API = "/v1.50"
ANON = "com.docker.volume.anonymous"
USERNS_ROOT = 100000


def _api(node, method: str, path: str, body: dict | None = None, **params) -> tuple[int, bytes]:
    query = urllib.parse.urlencode(params)
    conn = UnixConnection(node.docker_host[len("unix://"):])
    try:
        conn.request(method, API + path + ("?" + query if query else ""),
                     body=json.dumps(body).encode() if body is not None else None,
                     headers={"Content-Type": "application/json"} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _volumes(node, *args) -> list[str]:
    return node.out("volume", "ls", "-q", *args).split()


def _err(res) -> str:
    return res.stderr.decode().strip()


@pytest.fixture
def made(node):
    """Containers and volumes a test created; removed afterwards (containers first)."""
    objs: dict[str, list[str]] = {"containers": [], "volumes": []}
    yield objs
    if objs["containers"]:
        node.docker("rm", "-f", "-v", *objs["containers"], check=False)
    if objs["volumes"]:
        node.docker("volume", "rm", "-f", *objs["volumes"], check=False)


@pytest.fixture(scope="module")
def client(node):
    c = docker.DockerClient(base_url=node.docker_host)
    yield c
    c.close()


# ---- the volume commands ---------------------------------------------------------------------


def test_create_inspect_ls_and_rm(node, made):
    made["volumes"] += ["vol-a", "vol-b"]
    assert node.out("volume", "create", "--label", "team=infra", "--label", "tier=db",
                    "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "vol-a") == "vol-a"
    assert node.out("volume", "create", "vol-b") == "vol-b"
    assert node.out("volume", "create", "vol-b") == "vol-b"  # idempotent, as the local driver is

    info = json.loads(node.out("volume", "inspect", "vol-a"))[0]
    assert (info["Name"], info["Driver"], info["Scope"]) == ("vol-a", "local", "local")
    assert info["Labels"] == {"team": "infra", "tier": "db"}
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert info["Mountpoint"] == str(node.data_root / "volumes" / "vol-a" / "_data")
    assert info["CreatedAt"].endswith("Z") and len(info["CreatedAt"]) == len("2006-01-02T15:04:05Z")

    assert {"vol-a", "vol-b"} <= set(_volumes(node))
    assert _volumes(node, "--filter", "name=vol-a") == ["vol-a"]
    assert _volumes(node, "--filter", "name=^vol-") == ["vol-a", "vol-b"]
    assert _volumes(node, "--filter", "label=team=infra") == ["vol-a"]
    assert _volumes(node, "--filter", "label=tier", "--filter", "name=vol") == ["vol-a"]
    assert {"vol-a", "vol-b"} <= set(_volumes(node, "--filter", "dangling=true"))
    assert node.out("volume", "ls", "--filter", "name=vol-b", "--format", "{{.Driver}} {{.Name}}") == "local vol-b"

    assert node.out("volume", "rm", "vol-a", "vol-b") == "vol-a\nvol-b"
    assert not {"vol-a", "vol-b"} & set(_volumes(node))
    assert not (node.data_root / "volumes" / "vol-a").exists()


def test_unknown_volume_is_404(node, client):
    res = node.docker("volume", "rm", "no-such-vol", check=False)
    assert (res.returncode, _err(res)) == (1, "Error response from daemon: get no-such-vol: no such volume")
    res = node.docker("volume", "inspect", "no-such-vol", check=False)
    assert res.returncode == 1 and "get no-such-vol: no such volume" in _err(res)
    status, body = _api(node, "DELETE", "/volumes/no-such-vol")
    assert (status, json.loads(body)["message"]) == (404, "get no-such-vol: no such volume")
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("no-such-vol")
    assert node.docker("volume", "rm", "-f", "no-such-vol").returncode == 0  # -f forgives a missing one


@pytest.mark.parametrize(("name", "message"), [
    ("a/b", ('create a/b: "a/b" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')),
    ("bad$name", ('create bad$name: "bad$name" includes invalid characters for a local volume name, only '
                 '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                 "use absolute path")),
    ("-lead", ('create -lead: "-lead" includes invalid characters for a local volume name, only '
              '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')),
    ("x", "create x: volume name is too short, names should be at least two alphanumeric characters"),
])
def test_invalid_volume_names_are_400(node, name, message):
    status, body = _api(node, "POST", "/volumes/create", {"Name": name, "Driver": "local"})
    assert (status, json.loads(body)["message"]) == (400, message)
    assert name not in _volumes(node)


def test_invalid_names_and_options_through_the_cli(node, made):
    res = node.docker("volume", "create", "a/b", check=False)
    assert res.returncode == 1 and _err(res).startswith('Error response from daemon: create a/b: "a/b" includes')
    res = node.docker("run", "--rm", "-v", "bad$name:/x", "busybox", "true", check=False)
    assert res.returncode == 125
    assert 'create bad$name: "bad$name" includes invalid characters' in _err(res)
    for opts, message in [(["-o", "foo=bar"], 'invalid option: "foo"'),
                          (["-o", "type=tmpfs"], 'missing required option: "device"')]:
        res = node.docker("volume", "create", *opts, "opt-vol", check=False)
        assert _err(res) == f"Error response from daemon: create opt-vol: {message}"
    assert not (node.data_root / "volumes" / "opt-vol").exists()
    assert not any(n.startswith(("a", "bad", "opt")) for n in _volumes(node))


def test_rm_of_a_volume_in_use_is_409_even_forced(node, made):
    made["volumes"].append("busy-vol")
    cid = node.out("create", "-v", "busy-vol:/d", "busybox", "true")
    made["containers"].append(cid)
    expected = f"Error response from daemon: remove busy-vol: volume is in use - [{cid}]"
    for args in (["volume", "rm", "busy-vol"], ["volume", "rm", "-f", "busy-vol"]):
        res = node.docker(*args, check=False)
        assert (res.returncode, _err(res)) == (1, expected)
    status, _ = _api(node, "DELETE", "/volumes/busy-vol")
    assert status == 409
    assert "busy-vol" not in _volumes(node, "--filter", "dangling=true")
    node.docker("rm", cid)
    assert "busy-vol" in _volumes(node, "--filter", "dangling=true")
    node.docker("volume", "rm", "busy-vol")


def test_prune_removes_unused_anonymous_volumes_and_all_removes_named(node, made):
    named, kept_by_user = "prune-named", "prune-used"
    anon = node.out("volume", "create")  # no name: anonymous, as dockerd labels it
    made["volumes"] += [named, kept_by_user, anon]
    node.docker("volume", "create", named)
    assert json.loads(node.out("volume", "inspect", "-f", "{{json .Labels}}", anon)) == {ANON: ""}
    cid = node.out("create", "-v", f"{kept_by_user}:/d", "-v", "/anon-in-use", "busybox", "true")
    made["containers"].append(cid)
    in_use_anon = next(m["Name"] for m in json.loads(node.out("inspect", "-f", "{{json .Mounts}}", cid))
                   if m["Destination"] == "/anon-in-use")

    out = node.out("volume", "prune", "-f")
    assert anon in out and named not in out and in_use_anon not in out
    volumes = set(_volumes(node))
    assert anon not in volumes and {named, kept_by_user, in_use_anon} <= volumes

    out = node.out("volume", "prune", "--all", "-f")
    assert named in out and kept_by_user not in out
    assert named not in _volumes(node) and kept_by_user in _volumes(node)


# ---- volumes in containers --------------------------------------------------------------------


def test_named_volume_data_outlives_containers_and_belongs_to_container_root(node, made):
    made["volumes"].append("keep-vol")
    node.docker("run", "--rm", "-v", "keep-vol:/d", "busybox", "sh", "-c", "echo kept > /d/file && mkdir /d/sub")
    assert node.out("run", "--rm", "-v", "keep-vol:/data", "busybox", "cat", "/data/file") == "kept"
    host = node.data_root / "volumes" / "keep-vol" / "_data"
    for path in (host, host / "file", host / "sub"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (USERNS_ROOT, USERNS_ROOT), path
    # A non-root user in the container cannot write into root's 0755 volume dir.
    res = node.docker("run", "--rm", "-u", "1000", "-v", "keep-vol:/d", "busybox", "touch", "/d/x", check=False)
    assert res.returncode == 1 and b"Permission denied" in res.stderr


def test_anonymous_volume_from_v_and_from_image_volume_and_rm_v(node, made, busybox_tar):
    made["volumes"].append("named-survivor")
    node.docker("import", "--change", "VOLUME /data", str(busybox_tar), "with-volume:1")
    try:
        a = node.out("run", "-d", "-v", "/scratch", "-v", "named-survivor:/named", "busybox", "sh", "-c",
                     "echo a > /scratch/f")
        b = node.out("run", "-d", "with-volume:1", "sh", "-c", "echo b > /data/f")
        made["containers"] += [a, b]
        for cid in (a, b):
            assert node.out("wait", cid) == "0"
        mounts = {m["Destination"]: m for cid in (a, b)
                  for m in json.loads(node.out("inspect", "-f", "{{json .Mounts}}", cid))}
        for dest in ("/scratch", "/data"):
            m = mounts[dest]
            assert m["Type"] == "volume" and len(m["Name"]) == 64 and m["RW"] is True
            assert m["Source"] == str(node.data_root / "volumes" / m["Name"] / "_data")
            assert json.loads(node.out("volume", "inspect", "-f", "{{json .Labels}}", m["Name"])) == {ANON: ""}
        assert (node.data_root / "volumes" / mounts["/data"]["Name"] / "_data" / "f").read_text() == "b\n"

        node.docker("rm", "-v", a)  # anonymous volumes go with -v; named ones never do
        node.docker("rm", b)        # without -v the anonymous volume stays
        volumes = set(_volumes(node))
        assert mounts["/scratch"]["Name"] not in volumes
        assert {"named-survivor", mounts["/data"]["Name"]} <= volumes
        made["volumes"].append(mounts["/data"]["Name"])
    finally:
        node.docker("rmi", "-f", "with-volume:1", check=False)


def test_mount_flag_volume_and_readonly(node, made):
    made["volumes"].append("mnt-vol")
    node.docker("run", "--rm", "--mount", "type=volume,src=mnt-vol,dst=/m", "busybox", "sh", "-c",
                "echo via-mount > /m/f")
    res = node.docker("run", "--rm", "--mount", "type=volume,source=mnt-vol,target=/m,readonly", "busybox",
                      "sh", "-c", "cat /m/f; echo nope > /m/g", check=False)
    assert res.returncode == 1
    assert res.stdout == b"via-mount\n"
    assert b"Read-only file system" in res.stderr
    res = node.docker("run", "--rm", "-v", "mnt-vol:/m:ro", "busybox", "touch", "/m/g", check=False)
    assert res.returncode == 1 and b"Read-only file system" in res.stderr
    assert not (node.data_root / "volumes" / "mnt-vol" / "_data" / "g").exists()
    cid = node.out("create", "--mount", "type=volume,src=mnt-vol,dst=/m,readonly", "busybox", "true")
    made["containers"].append(cid)
    [m] = json.loads(node.out("inspect", "-f", "{{json .Mounts}}", cid))
    assert (m["Type"], m["Name"], m["Destination"], m["RW"]) == ("volume", "mnt-vol", "/m", False)


def test_docker_py_volume_api(node, client, made):
    made["volumes"].append("py-vol")
    vol = client.volumes.create("py-vol", labels={"via": "py"})
    assert vol.attrs["Labels"] == {"via": "py"}
    assert [v.name for v in client.volumes.list(filters={"label": "via=py"})] == ["py-vol"]
    container = client.containers.run("busybox", ["sh", "-c", "echo py > /v/f && cat /v/f"],
                                      volumes={"py-vol": {"bind": "/v", "mode": "rw"}}, detach=True)
    try:
        assert container.wait()["StatusCode"] == 0
        assert container.logs() == b"py\n"
        with pytest.raises(docker.errors.APIError) as exc:
            vol.remove()
        assert exc.value.status_code == 409
    finally:
        container.remove()
    vol.remove()
    assert "py-vol" not in _volumes(node)


def test_new_volume_gets_the_image_content_at_its_mount_point(node, made, busybox_tar):
    made["volumes"] += ["etc-copy", "home-copy", "nocopy-vol"]
    assert node.out("run", "--rm", "-v", "etc-copy:/etc", "busybox", "head", "-n1", "/etc/passwd") \
        == "root:x:0:0:root:/root:/bin/sh"
    # The mount point keeps the image directory's owner and mode.
    assert node.out("run", "--rm", "-v", "home-copy:/home/app", "busybox", "stat", "-c", "%u %a", "/home/app") \
        == "1000 755"
    # Nothing of the image's /etc; only the mount points of the node-written files, as with dockerd.
    assert node.out("run", "--rm", "-v", "nocopy-vol:/etc:nocopy", "busybox", "ls", "-A", "/etc").split() \
        == ["hostname", "hosts", "resolv.conf"]
    node.docker("import", "--change", "VOLUME /etc", str(busybox_tar), "etc-volume:1")
    try:
        cid = node.out("run", "-d", "etc-volume:1", "cat", "/etc/group")
        made["containers"].append(cid)
        assert node.out("wait", cid) == "0"
        assert node.out("logs", cid).startswith("root:x:0:")
    finally:
        node.docker("rmi", "-f", "etc-volume:1", check=False)


def test_populate_copies_image_content_into_an_empty_volume_only(tmp_path):
    """VolumeService.populate, the copy-up the start path needs, on plain directories."""
    import stat

    import trio

    from appliance.engine.events import EventLog
    from appliance.engine.volumes import VolumeService
    from appliance.store import open_store

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc" / "sub").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (rootfs / "etc" / "sub" / "secret").write_text("s")
    os.chmod(rootfs / "etc" / "sub" / "secret", 0o600)
    os.chown(rootfs / "etc" / "sub", 1234, 4321)
    os.symlink("/etc/passwd", rootfs / "etc" / "abs-link")  # copied as a link, never followed
    os.mkfifo(rootfs / "etc" / "fifo")
    (rootfs / "real" / "home").mkdir(parents=True)
    (rootfs / "real" / "home" / "f").write_text("via link")
    os.symlink("/real/home", rootfs / "home")  # an image path through a symlink, resolved in scope
    os.symlink("../../../..", rootfs / "escape")

    store = open_store(tmp_path / "store")
    try:
        vols = VolumeService(store, EventLog(), tmp_path / "volumes", "n", "t", owner_uid=USERNS_ROOT)
        for name in ("pop-etc", "pop-home", "pop-full", "pop-escape"):
            vols.create(name)
        data = {n: tmp_path / "volumes" / n / "_data" for n in ("pop-etc", "pop-home", "pop-full", "pop-escape")}
        (data["pop-full"] / "mine").write_text("already here")

        assert trio.run(vols.populate, "pop-etc", rootfs, "/etc") is True
        etc = data["pop-etc"]
        assert (etc / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"
        assert os.readlink(etc / "abs-link") == "/etc/passwd"
        assert stat.S_ISFIFO(os.lstat(etc / "fifo").st_mode)
        assert stat.S_IMODE(os.stat(etc / "sub" / "secret").st_mode) == 0o600
        assert (os.stat(etc / "sub").st_uid, os.stat(etc / "sub").st_gid) == (1234, 4321)
        assert os.stat(etc).st_uid == os.stat(rootfs / "etc").st_uid  # the mount point takes the image dir's owner

        assert trio.run(vols.populate, "pop-home", rootfs, "/home") is True
        assert (data["pop-home"] / "f").read_text() == "via link"
        assert trio.run(vols.populate, "pop-full", rootfs, "/etc") is False  # not empty: untouched
        assert sorted(os.listdir(data["pop-full"])) == ["mine"]
        assert trio.run(vols.populate, "pop-etc", rootfs, "/no/such/dir") is False
        # A link climbing out of the rootfs stays inside it: it resolves to the rootfs itself.
        assert trio.run(vols.populate, "pop-escape", rootfs, "/escape/etc") is True
        assert (data["pop-escape"] / "passwd").exists()
        assert not (data["pop-escape"] / "volumes").exists()
    finally:
        store.close()
