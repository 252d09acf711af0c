"""docker import / images / inspect / tag / rmi / history / save / load, and their errors.

Every test names its own images and removes them, so tests do not depend on each other's order.
Bad input is checked at the wire too (status and dockerd's message), and the layer store must be
exactly as before: no layer, blob, work dir or spooled body may survive a failed request.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
import urllib.parse
from datetime import datetime

import docker
import pytest

from tests.support.http import UnixConnection
from tests.support.tarballs import tar_of as _tar

API = "/v1.50"


# ---- helpers ---------------------------------------------------------------------------------


def _api(node, method: str, path: str, body: bytes | None = None, **params) -> tuple[int, bytes]:
    """One raw request to the node: (status, body)."""
    query = urllib.parse.urlencode(params, doseq=True)
    conn = UnixConnection(node.docker_host[len("unix://"):])
    try:
        conn.request(method, API + path + ("?" + query if query else ""), body=body,
                     headers={"Content-Type": "application/x-tar"} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _message(raw: bytes) -> str:
    return json.loads(raw)["message"]


def _store_state(node) -> dict[str, list[str]]:
    root = node.data_root / "image"
    return {d: sorted(p.name for p in (root / d).iterdir()) for d in ("layers", "blobs/sha256", "meta", "tmp", "spool")}


def _image_id(node, name: str) -> str:
    return node.out("image", "inspect", "-f", "{{.Id}}", name)


def _file(name: str, data: bytes = b"x\n", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1_600_000_000
    return info, data


def _entry(name: str, kind: bytes, linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


@pytest.fixture
def cleanup(node):
    """Names and ids a test made; removed (forced) afterwards, containers first."""
    made: dict[str, list[str]] = {"containers": [], "images": []}
    yield made
    if made["containers"]:
        node.docker("rm", "-f", *made["containers"], check=False)
    for image in reversed(made["images"]):
        node.docker("rmi", "-f", image, check=False)


@pytest.fixture(scope="module")
def client(node):
    c = docker.DockerClient(base_url=node.docker_host)
    yield c
    c.close()


# ---- import -------------------------------------------------------------------------------------


def test_import_with_changes_configures_what_run_does(node, busybox_tar, cleanup):
    cleanup["images"].append("conf:1")
    image_id = node.out(
        "import", "-m", "made by the test",
        "--change", 'CMD ["echo", "default command ran"]',
        "--change", "ENV FOO=bar GREETING=hello",
        "--change", "WORKDIR /srv/app",
        "--change", "USER 1000",
        "--change", "LABEL team=infra tier=db",
        "--change", "EXPOSE 8080/tcp 53/udp",
        str(busybox_tar), "conf:1")
    assert image_id == _image_id(node, "conf:1")

    assert node.out("run", "--rm", "conf:1") == "default command ran"
    out = node.out("run", "--rm", "conf:1", "sh", "-c", 'env | grep -E "^(FOO|GREETING)=" | sort; pwd; id -u')
    assert out.splitlines() == ["FOO=bar", "GREETING=hello", "/srv/app", "1000"]

    config = json.loads(node.out("image", "inspect", "-f", "{{json .Config}}", "conf:1"))
    assert config["Cmd"] == ["echo", "default command ran"]
    assert config["Env"] == ["FOO=bar", "GREETING=hello"]
    assert (config["WorkingDir"], config["User"]) == ("/srv/app", "1000")
    assert config["Labels"] == {"team": "infra", "tier": "db"}
    assert config["ExposedPorts"] == {"53/udp": {}, "8080/tcp": {}}
    assert node.out("history", "--format", "{{.Comment}}", "conf:1") == "made by the test"


def test_import_entrypoint_takes_cmd_then_run_arguments(node, busybox_tar, cleanup):
    cleanup["images"].append("ep:1")
    node.docker("import", "-c", 'ENTRYPOINT ["echo", "ep"]', "-c", 'CMD ["default"]', str(busybox_tar), "ep:1")
    assert node.out("run", "--rm", "ep:1") == "ep default"
    assert node.out("run", "--rm", "ep:1", "given") == "ep given"


def test_import_from_stdin_plain_and_gzip(node, busybox_tar, cleanup):
    cleanup["images"] += ["fromstdin:plain", "fromstdin:gz"]
    data = busybox_tar.read_bytes()
    plain = node.out("import", "-", "fromstdin:plain", input=data)
    gz = node.out("import", "-", "fromstdin:gz", input=gzip.compress(data, compresslevel=1))
    assert plain == _image_id(node, "fromstdin:plain") and gz == _image_id(node, "fromstdin:gz")
    # Same uncompressed bytes, same layer: the diff_id is the sha256 of the uncompressed tar.
    layers = {json.loads(node.out("image", "inspect", "-f", "{{json .RootFS.Layers}}", n))[0]
              for n in ("fromstdin:plain", "fromstdin:gz")}
    assert layers == {"sha256:" + hashlib.sha256(data).hexdigest()}
    assert node.out("history", "--format", "{{.Comment}}", "fromstdin:plain") == "Imported from -"
    assert node.out("run", "--rm", "fromstdin:gz", "cat", "/etc/group").startswith("root:x:0:")


def test_import_without_a_name_makes_a_dangling_image(node, busybox_tar, cleanup):
    image_id = node.out("import", str(busybox_tar))
    cleanup["images"].append(image_id)
    short = image_id[7:19]
    assert short in node.out("images", "--filter", "dangling=true", "-q").split()
    assert short not in node.out("images", "--filter", "dangling=false", "-q").split()
    assert node.out("image", "inspect", "-f", "{{json .RepoTags}}", image_id) == "[]"


# ---- listing, inspect, history --------------------------------------------------------------------


def test_images_filters_and_format(node, busybox_tar, cleanup):
    cleanup["images"] += ["lst/web:1", "lst/web:2", "lst/db:1"]
    web = node.out("import", "-c", "LABEL role=web", str(busybox_tar), "lst/web:1")
    node.docker("tag", "lst/web:1", "lst/web:2")
    db = node.out("import", "-c", "LABEL role=db", str(busybox_tar), "lst/db:1")

    def rows(*args):
        return node.out("images", *args, "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()

    assert sorted(rows("--filter", "reference=lst/*")) == sorted(
        [f"lst/web:1 {web[7:19]}", f"lst/web:2 {web[7:19]}", f"lst/db:1 {db[7:19]}"])
    # A reference filter lists only the matching tags of an image.
    assert rows("--filter", "reference=lst/web:2") == [f"lst/web:2 {web[7:19]}"]
    assert node.out("images", "-q", "--filter", "label=role=db") == db[7:19]
    # -q prints an image once per tag, as the docker CLI does with dockerd.
    assert node.out("images", "-q", "--no-trunc", "--filter", "label=role=web").split() == [web, web]
    assert rows("--filter", "reference=lst/*", "--filter", "label=role=db") == [f"lst/db:1 {db[7:19]}"]


def test_inspect_reports_layers_size_created_and_config(node, busybox_tar, cleanup):
    cleanup["images"].append("insp:1")
    before = time.time()
    node.docker("import", "-c", "ENV A=1", str(busybox_tar), "insp:1")
    after = time.time()
    info = json.loads(node.out("image", "inspect", "insp:1"))[0]
    data = busybox_tar.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        content = sum(m.size for m in tar.getmembers() if m.isreg())
    assert info["RootFS"] == {"Type": "layers", "Layers": ["sha256:" + hashlib.sha256(data).hexdigest()]}
    assert info["Size"] == content
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    created = datetime.fromisoformat(info["Created"].replace("Z", "+00:00")[:26] + "+00:00").timestamp()
    assert before - 1 <= created <= after + 1
    assert info["RepoTags"] == ["insp:1"]
    assert info["Config"]["Env"] == ["A=1"]
    history = json.loads(node.out("history", "--no-trunc", "--format", "{{json .}}", "insp:1"))
    assert history["ID"] == info["Id"] and history["Comment"] == "Imported from -"


def test_docker_py_sees_the_same_image(node, client, busybox_tar, cleanup):
    cleanup["images"].append("pyimg:1")
    image_id = node.out("import", "-c", "LABEL via=cli", str(busybox_tar), "pyimg:1")
    image = client.images.get("pyimg:1")
    assert image.id == image_id
    assert image.tags == ["pyimg:1"]
    assert image.labels == {"via": "cli"}
    image.tag("pyimg", "2")
    cleanup["images"].append("pyimg:2")
    assert sorted(client.images.get(image_id).tags) == ["pyimg:1", "pyimg:2"]
    assert [i.id for i in client.images.list(filters={"label": "via=cli"})] == [image_id]


# ---- tag and rmi ---------------------------------------------------------------------------------


def test_rmi_of_one_tag_keeps_the_image_and_its_other_tags(node, busybox_tar, cleanup):
    image_id = node.out("import", str(busybox_tar), "multi:a")
    cleanup["images"] += ["multi:a", "multi:b", image_id]
    node.docker("tag", "multi:a", "multi:b")
    node.docker("tag", image_id[7:19], "other/multi")
    assert node.out("rmi", "multi:a") == "Untagged: multi:a"
    assert sorted(json.loads(node.out("image", "inspect", "-f", "{{json .RepoTags}}", image_id))) == [
        "multi:b", "other/multi:latest"]
    # By id with two tags left: refused unless forced.
    res = node.docker("rmi", image_id[7:19], check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == (
        f"Error response from daemon: conflict: unable to delete {image_id[7:19]} (must be forced) - "
        "image is referenced in multiple repositories")
    out = node.out("rmi", "-f", image_id[7:19]).splitlines()
    assert sorted(out[:2]) == ["Untagged: multi:b", "Untagged: other/multi:latest"]
    assert out[2:] == [f"Deleted: {image_id}"]
    assert image_id[7:19] not in node.out("images", "-aq").split()


def test_rmi_of_the_last_tag_deletes_the_image_and_its_layer(node, cleanup):
    layer = _tar([_file("only-here.txt", b"unique content for this test\n")])
    diff_id = hashlib.sha256(layer).hexdigest()
    image_id = node.out("import", "-", "lonely", input=layer)
    cleanup["images"].append(image_id)
    assert diff_id in _store_state(node)["layers"]
    assert node.out("rmi", "lonely").splitlines() == ["Untagged: lonely:latest", f"Deleted: {image_id}"]
    state = _store_state(node)
    assert diff_id not in state["layers"] and diff_id not in state["blobs/sha256"]
    assert f"{diff_id}.json" not in state["meta"]


def test_rmi_refused_while_a_container_uses_the_image_and_forced_removal(node, busybox_tar, cleanup):
    image_id = node.out("import", "-c", 'CMD ["echo", "still runs"]', str(busybox_tar), "used:1")
    short = image_id[7:19]
    cleanup["images"] += ["used:1", image_id]
    cid = node.out("create", "used:1")
    cleanup["containers"].append(cid)

    res = node.docker("rmi", "used:1", check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == (
        f'Error response from daemon: conflict: unable to remove repository reference "used:1" (must force) - '
        f"container {cid[:12]} is using its referenced image {short}")
    status, body = _api(node, "DELETE", "/images/used:1")
    assert status == 409 and "must force" in _message(body)
    res = node.docker("rmi", short, check=False)
    assert res.stderr.decode().strip() == (
        f"Error response from daemon: conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {cid[:12]}")

    # Forced: untagged and deleted as far as the user can see, but the container still starts.
    assert node.out("rmi", "-f", "used:1").splitlines() == ["Untagged: used:1", f"Deleted: {image_id}"]
    assert short not in node.out("images", "-aq").split()
    assert node.docker("image", "inspect", image_id, check=False).returncode == 1
    assert node.out("start", "-a", cid) == "still runs"
    node.docker("rm", cid)
    # The layers go at the next image change once no container needs them.
    node.docker("tag", "busybox", "gc-trigger")
    node.docker("rmi", "gc-trigger")
    assert short not in (p[:12] for p in (node.data_root / "image" / "retired").iterdir())


def test_rmi_force_cannot_delete_an_image_a_running_container_uses(node, busybox_tar, cleanup):
    image_id = node.out("import", str(busybox_tar), "running:1")
    short = image_id[7:19]
    cleanup["images"] += ["running:1", image_id]
    cid = node.out("run", "-d", "running:1", "sleep", "300")
    cleanup["containers"].append(cid)
    # By name with -f: only the tag goes; the image stays, dangling.
    assert node.out("rmi", "-f", "running:1") == "Untagged: running:1"
    assert short in node.out("images", "-q", "--filter", "dangling=true").split()
    res = node.docker("rmi", "-f", short, check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == (
        f"Error response from daemon: conflict: unable to delete {short} (cannot be forced) - "
        f"image is being used by running container {cid[:12]}")


def test_rmi_of_an_unknown_image_is_404(node, client):
    res = node.docker("rmi", "no-such-image", check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == "Error response from daemon: No such image: no-such-image:latest"
    status, body = _api(node, "DELETE", "/images/no-such-image:v2")
    assert (status, _message(body)) == (404, "No such image: no-such-image:v2")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.remove("no-such-image")


def test_image_prune_removes_unused_dangling_images_and_all_unused_with_a(node, cleanup):
    def layer(tag: bytes) -> bytes:
        return _tar([_file("payload", tag * 1000)])

    dangling = node.out("import", "-c", "LABEL prune=me", "-", input=layer(b"a"))
    used = node.out("import", "-c", "LABEL prune=me", "-", input=layer(b"b"))
    tagged = node.out("import", "-c", "LABEL prune=me", "-", "prune-tagged:1", input=layer(b"c"))
    other = node.out("import", "-c", "LABEL prune=other", "-", input=layer(b"d"))
    cleanup["images"] += [dangling, used, "prune-tagged:1", tagged, other]
    cid = node.out("create", used, "true")
    cleanup["containers"].append(cid)

    out = node.out("image", "prune", "-f", "--filter", "label=prune=me")
    assert out.splitlines() == ["Deleted Images:", f"deleted: {dangling}", "", "Total reclaimed space: 1kB"]
    ids = node.out("images", "-aq", "--no-trunc").split()
    assert dangling not in ids and {used, tagged, other} <= set(ids)

    out = node.out("image", "prune", "-a", "-f", "--filter", "label=prune=me")
    assert out.splitlines() == ["Deleted Images:", "untagged: prune-tagged:1", f"deleted: {tagged}", "",
                                "Total reclaimed space: 1kB"]
    ids = node.out("images", "-aq", "--no-trunc").split()
    assert tagged not in ids and {used, other} <= set(ids)


# ---- invalid names ---------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ({"repo": "Upper"}, "invalid reference format: repository name (library/Upper) must be lowercase"),
    ({"repo": "x:bad!tag"}, "invalid reference format"),
    ({"repo": "x", "tag": "bad!tag"}, "invalid tag format"),
    ({"repo": "ok", "changes": "FROM scratch"}, "FROM is not a valid change command"),
    ({"repo": "ok", "changes": "ENV"}, "ENV requires at least one argument"),
])
def test_import_rejects_bad_names_and_changes_with_400(node, busybox_tar, params, message):
    before = _store_state(node)
    status, body = _api(node, "POST", "/images/create", busybox_tar.read_bytes(), fromSrc="-", **params)
    assert (status, _message(body)) == (400, message)
    assert _store_state(node) == before
    assert "ok" not in node.out("images", "--format", "{{.Repository}}").split()


def test_tag_rejects_bad_names_with_400(node, client):
    for repo, tag, message in [("Upper", "", ("invalid reference format: repository name (library/Upper) must be "
                                              "lowercase")),
                               ("good", "bad!tag", "invalid tag format"),
                               ("sha256", "", "refusing to create an ambiguous tag using digest algorithm as name")]:
        status, body = _api(node, "POST", "/images/busybox/tag", repo=repo, tag=tag)
        assert (status, _message(body)) == (400, message)
    # The new name is checked before the image is looked up, as dockerd does.
    status, body = _api(node, "POST", "/images/no-such-image/tag", repo="Upper")
    assert status == 400
    status, body = _api(node, "POST", "/images/no-such-image/tag", repo="fine")
    assert (status, _message(body)) == (404, "No such image: no-such-image:latest")
    with pytest.raises(docker.errors.APIError) as exc:
        client.images.get("busybox").tag("Upper")
    assert exc.value.status_code == 400
    res = node.docker("tag", "busybox", "Upper", check=False)
    assert res.returncode == 1 and b"must be lowercase" in res.stderr


# ---- hostile and broken layers ---------------------------------------------------------------------


HOSTILE_LAYERS = {
    "dotdot": ([_file("ok.txt"), _file("../escaped.txt")], "invalid layer: path '../escaped.txt' escapes the layer"),
    "absolute": ([_file("/etc/escaped.txt")], "invalid layer: absolute path '/etc/escaped.txt'"),
    "device": ([_entry("dev/mem2", tarfile.CHRTYPE)], "invalid layer: device node 'dev/mem2' is not allowed"),
    "block-device": ([_entry("dev/sda9", tarfile.BLKTYPE)], "invalid layer: device node 'dev/sda9' is not allowed"),
    "symlink-escape": ([_entry("etc", tarfile.SYMTYPE, "/etc"), _file("etc/escaped.txt")],
                       "invalid layer: path 'etc' goes through a symlink or a non-directory"),
    "symlink-dotdot": ([_entry("up", tarfile.SYMTYPE, "../../.."), _file("up/escaped.txt")],
                       "invalid layer: path 'up' goes through a symlink or a non-directory"),
    "hardlink-out": ([_entry("pw", tarfile.LNKTYPE, "../../etc/passwd")],
                     "invalid layer: path '../../etc/passwd' escapes the layer"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_LAYERS))
def test_hostile_layer_is_400_and_leaves_nothing(node, kind):
    entries, message = HOSTILE_LAYERS[kind]
    before = _store_state(node)
    status, body = _api(node, "POST", "/images/create", _tar(entries), fromSrc="-", repo=f"hostile-{kind}")
    assert (status, _message(body)) == (400, message)
    assert _store_state(node) == before
    assert before["tmp"] == [] and before["spool"] == []
    assert f"hostile-{kind}" not in node.out("images", "--format", "{{.Repository}}").split()
    assert not (node.data_root.parent / "escaped.txt").exists()


def test_garbage_import_through_the_cli_is_an_error_response(node):
    before = _store_state(node)
    res = node.docker("import", "-", "garbage", input=b"this is not a tar archive\n" * 100, check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == "Error response from daemon: invalid layer tar: invalid header"
    res = node.docker("import", "-", "garbage", input=b"\x1f\x8b\x08" + b"broken gzip" * 10, check=False)
    assert res.returncode == 1 and res.stderr.startswith(b"Error response from daemon: gzip: ")
    assert _store_state(node) == before
    assert "garbage" not in node.out("images", "--format", "{{.Repository}}").split()


# ---- save and load ---------------------------------------------------------------------------------


def test_save_and_load_round_trip_through_files_and_pipes(node, busybox_tar, cleanup, tmp_path):
    image_id = node.out("import", "-c", 'CMD ["echo", "round trip"]', str(busybox_tar), "trip:1")
    cleanup["images"] += ["trip:1", "trip:2"]
    node.docker("tag", "trip:1", "trip:2")
    archive = tmp_path / "trip.tar"
    node.docker("save", "-o", str(archive), "trip:1", "trip:2")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
    assert {"manifest.json", "index.json", "oci-layout", "repositories", f"blobs/sha256/{image_id[7:]}"} <= names
    assert manifest[0]["Config"] == f"blobs/sha256/{image_id[7:]}"
    assert sorted(manifest[0]["RepoTags"]) == ["trip:1", "trip:2"]

    node.docker("rmi", "trip:1", "trip:2")
    assert sorted(node.out("load", "-i", str(archive)).splitlines()) == ["Loaded image: trip:1", "Loaded image: trip:2"]
    assert _image_id(node, "trip:1") == image_id == _image_id(node, "trip:2")
    assert node.out("run", "--rm", "trip:2") == "round trip"

    # stdout -> stdin, by id: no tags travel, so the load reports the id.
    piped = node.docker("save", image_id).stdout
    node.docker("rmi", "trip:1", "trip:2")
    assert node.out("load", input=piped) == f"Loaded image ID: {image_id}"
    assert node.out("images", "-q", "--no-trunc", "--filter", "dangling=true").split().count(image_id) == 1
    node.docker("tag", image_id, "trip:1")
    state = _store_state(node)
    assert state["tmp"] == [] and state["spool"] == []


def test_load_tells_when_a_tag_moves_to_another_image(node, busybox_tar, cleanup, tmp_path):
    first = node.out("import", "-c", "LABEL n=1", str(busybox_tar), "moving:1")
    cleanup["images"] += ["moving:1", first]
    archive = tmp_path / "m.tar"
    node.docker("save", "-o", str(archive), "moving:1")
    second = node.out("import", "-c", "LABEL n=2", str(busybox_tar), "moving:1")
    cleanup["images"].append(second)
    assert node.out("load", "-i", str(archive)).splitlines() == [
        f"The image moving:1 already exists, renaming the old one with ID {second} to empty string",
        "Loaded image: moving:1"]
    assert _image_id(node, "moving:1") == first


def _legacy_archive(layer: bytes, images: list[tuple[str, str, list[str]]]) -> bytes:
    """A docker-archive as Docker before 25 wrote it: <v1id>/{VERSION,json,layer.tar}, <config>.json,
    manifest.json and repositories; a layer shared by two images is a symlink to the first copy."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    entries, manifest, repositories = [], [], {}
    first_v1 = None
    for i, (cmd, created_by, tags) in enumerate(images):
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "created": f"2020-01-0{i + 1}T00:00:00Z",
            "config": {"Cmd": ["echo", cmd], "Env": ["PATH=/bin:/usr/bin"]},
            "history": [{"created": f"2020-01-0{i + 1}T00:00:00Z", "created_by": created_by}],
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }, separators=(",", ":")).encode()
        config_hex = hashlib.sha256(config).hexdigest()
        v1 = hashlib.sha256(f"v1 id {i}".encode()).hexdigest()
        entries.append(_entry(v1, tarfile.DIRTYPE))
        entries.append(_file(f"{v1}/VERSION", b"1.0"))
        entries.append(_file(f"{v1}/json", json.dumps({"id": v1, "os": "linux"}).encode()))
        if first_v1 is None:
            entries.append(_file(f"{v1}/layer.tar", layer))
            first_v1 = v1
        else:
            entries.append(_entry(f"{v1}/layer.tar", tarfile.SYMTYPE, f"../{first_v1}/layer.tar"))
        entries.append(_file(f"{config_hex}.json", config))
        manifest.append({"Config": f"{config_hex}.json", "RepoTags": tags, "Layers": [f"{v1}/layer.tar"]})
        for tag in tags:
            repo, _, t = tag.rpartition(":")
            repositories.setdefault(repo, {})[t] = v1
    entries.append(_file("manifest.json", json.dumps(manifest).encode()))
    entries.append(_file("repositories", json.dumps(repositories).encode()))
    return _tar(entries)


def test_load_of_a_legacy_archive(node, busybox_tar, cleanup, tmp_path):
    cleanup["images"] += ["legacy:one", "legacy:two", "legacy/other:1"]
    archive = tmp_path / "legacy.tar"
    archive.write_bytes(_legacy_archive(busybox_tar.read_bytes(), [
        ("from legacy one", "/bin/sh -c #(nop) ADD file:abc in /", ["legacy:one"]),
        ("from legacy two", "/bin/sh -c #(nop) ADD file:def in /", ["legacy:two", "legacy/other:1"]),
    ]))
    assert node.out("load", "-i", str(archive)).splitlines() == [
        "Loaded image: legacy:one", "Loaded image: legacy:two", "Loaded image: legacy/other:1"]
    assert node.out("run", "--rm", "legacy:one") == "from legacy one"
    assert node.out("run", "--rm", "legacy/other:1") == "from legacy two"
    assert node.out("history", "--no-trunc", "--format", "{{.CreatedBy}}", "legacy:two") == \
        "/bin/sh -c #(nop) ADD file:def in /"
    with tarfile.open(archive) as tar:
        config_name = json.load(tar.extractfile("manifest.json"))[0]["Config"]
    assert _image_id(node, "legacy:one") == "sha256:" + config_name[:-len(".json")]


def test_load_of_a_non_archive_or_a_broken_one_leaves_nothing(node, client, tmp_path):
    before = _store_state(node)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"definitely not a tar\n" * 200)
    res = node.docker("load", "-i", str(garbage), check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == "invalid archive: invalid header"
    status, body = _api(node, "POST", "/images/load", garbage.read_bytes())
    assert status == 200
    assert json.loads(body.splitlines()[-1])["errorDetail"]["message"] == "invalid archive: invalid header"
    with pytest.raises(docker.errors.ImageLoadError):
        client.images.load(garbage.read_bytes())

    # All or nothing: the first image's new layer goes again when the second image is bad.
    good_layer = _tar([_file("good.txt", b"a layer only this test has\n")])
    bad_layer = _tar([_file("../bad.txt")])
    archive = _legacy_archive(good_layer, [("x", "x", ["halfway:good"])])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    manifest = json.loads({m.name: d for m, d in entries}["manifest.json"])
    bad_config = json.dumps({"os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(bad_layer).hexdigest()]}}).encode()
    manifest.append({"Config": "bad.json", "RepoTags": ["halfway:bad"], "Layers": ["bad/layer.tar"]})
    entries = [(m, d) for m, d in entries if m.name != "manifest.json"] + [
        _file("bad.json", bad_config), _file("bad/layer.tar", bad_layer),
        _file("manifest.json", json.dumps(manifest).encode())]
    res = node.docker("load", input=_tar(entries), check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == "invalid layer: path '../bad.txt' escapes the layer"
    assert _store_state(node) == before
    assert "halfway" not in node.out("images", "--format", "{{.Repository}}").split()


def test_save_of_an_unknown_image_is_404(node):
    res = node.docker("save", "busybox", "no-such-image", check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == "Error response from daemon: No such image: no-such-image:latest"
    assert _store_state(node)["spool"] == []


# ---- events -------------------------------------------------------------------------------------


def test_image_events_between_since_and_until(node, busybox_tar, cleanup, tmp_path):
    since = f"{time.time() - 0.001:.6f}"
    image_id = node.out("import", str(busybox_tar), "evt:1")
    cleanup["images"] += ["evt:1", "evt:2"]
    node.docker("tag", "evt:1", "evt:2")
    node.docker("rmi", "evt:2")
    archive = tmp_path / "evt.tar"
    node.docker("save", "-o", str(archive), "evt:1")
    node.docker("rmi", "evt:1")
    node.docker("load", "-i", str(archive))
    until = f"{time.time() + 0.001:.6f}"
    out = node.out("events", "--since", since, "--until", until, "--filter", f"image={image_id}",
                   "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
    assert out.splitlines() == [
        f"image tag {image_id} evt:1",
        f"image import {image_id} {image_id}",
        f"image tag {image_id} evt:2",
        f"image untag {image_id} {image_id}",
        f"image save {image_id} {image_id}",
        f"image untag {image_id} {image_id}",
        f"image delete {image_id} {image_id}",
        f"image load {image_id} {image_id}",
    ]
