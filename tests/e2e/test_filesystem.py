"""docker cp (both ways), export, diff and commit with the real CLI, and the cp security rules.

Every test names its own containers and images and removes them. The host side is checked
too: a write into a running container lands in its overlay upper dir, owned by the shifted
ids; nothing ever appears outside the container's filesystem; a stopped container's overlay
is unmounted again afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import socket
import stat
import tarfile
import time
import urllib.parse
from pathlib import Path

import pytest
from tests.support.http import UnixConnection

API = "/v1.50"
SHIFT = 100000
DIR, SYMLINK = 1 << 31, 1 << 27


# ---- helpers ---------------------------------------------------------------------------------


def _api(node, method: str, url: str, body: bytes | None = None, **params):
    """One raw request: (status, headers, body)."""
    query = urllib.parse.urlencode(params, doseq=True)
    conn = UnixConnection(node.docker_host[len("unix://"):])
    try:
        conn.request(method, API + url + ("?" + query if query else ""), body=body,
                     headers={"Content-Type": "application/x-tar"} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _stat(node, ctr: str, path: str) -> dict:
    status, headers, _ = _api(node, "HEAD", f"/containers/{ctr}/archive", path=path)
    assert status == 200, status
    return json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))


def _message(raw: bytes) -> str:
    return json.loads(raw)["message"]


def _tar(*entries) -> bytes:
    """A tar from (name, type, data-or-linkname) triples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o644
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload or ""
                tar.addfile(info)
    return buf.getvalue()


def _exec(node, ctr: str, script: str, check: bool = True) -> str:
    return node.docker("exec", ctr, "sh", "-c", script, check=check).stdout.decode()


def _upper(node, cid: str) -> Path:
    return node.data_root / "containers" / cid / "upper"


def _mounted(node, cid: str) -> bool:
    """Whether the container's overlay is mounted in the node's (private) mount namespace."""
    with open(f"/proc/{node.proc.pid}/mountinfo") as f:
        return any(f"/containers/{cid}/rootfs " in line for line in f)


def _wait_unmounted(node, cid: str, timeout: float = 20) -> None:
    """A stopped container's overlay goes away (after a run, the supervisor unmounts it a bit later)."""
    deadline = time.monotonic() + timeout
    while _mounted(node, cid):
        assert time.monotonic() < deadline, "the stopped container's overlay stayed mounted"
        time.sleep(0.05)


@pytest.fixture(scope="module", autouse=True)
def _no_internal_errors(node):
    """Bad input and races are Docker errors, never a 500 with a traceback in the node's log."""
    yield
    text = node.log_path.read_text(errors="replace")
    assert "Traceback" not in text and "unexpected" not in text, text[-4000:]


@pytest.fixture
def names(node):
    """Unique names for this test's containers and images, all removed afterwards."""
    made: list[tuple[str, str]] = []

    def new(kind: str = "c") -> str:
        name = f"fs{kind}{secrets.token_hex(4)}"
        made.append((kind, name))
        return name

    yield new
    for kind, name in made:
        if kind == "i":
            node.docker("rmi", "-f", name, check=False)
        else:
            node.docker("rm", "-f", name, check=False)


@pytest.fixture
def running(node, names):
    name = names()
    cid = node.out("run", "-d", "--name", name, "busybox", "sleep", "600")
    return name, cid


def _local_tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    os.symlink("a.txt", src / "rel-link")
    os.symlink("/etc/passwd", src / "abs-link")
    os.chmod(src / "a.txt", 0o640)
    os.chmod(src / "sub", 0o750)
    os.chown(src / "a.txt", 1234, 2345)
    return src


# ---- docker cp into and out of a running container -----------------------------------------


def test_cp_file_into_running_container_lands_in_its_upper_dir_owned_by_shifted_ids(node, running, tmp_path):
    name, cid = running
    f = tmp_path / "hello.txt"
    f.write_text("hello\n")
    os.chown(f, 1234, 2345)
    os.chmod(f, 0o640)
    node.docker("cp", str(f), f"{name}:/tmp/")
    assert _exec(node, name, "stat -c '%u %g %a' /tmp/hello.txt; cat /tmp/hello.txt") == "1234 2345 640\nhello\n"
    on_host = _upper(node, cid) / "tmp" / "hello.txt"
    st = on_host.lstat()
    assert (st.st_uid, st.st_gid) == (SHIFT + 1234, SHIFT + 2345)
    node.docker("cp", str(f), f"{name}:/tmp/renamed")  # a destination that does not exist: the new name
    assert _exec(node, name, "cat /tmp/renamed") == "hello\n"
    # the container's own processes can use what was copied in as root
    root_file = tmp_path / "rootowned"
    root_file.write_text("r\n")
    node.docker("cp", str(root_file), f"{name}:/tmp/")
    _exec(node, name, "echo more >> /tmp/rootowned && rm /tmp/hello.txt")
    assert (_upper(node, cid) / "tmp" / "rootowned").stat().st_uid == SHIFT


def test_cp_directory_round_trip_keeps_modes_owners_and_symlinks(node, running, tmp_path):
    name, _ = running
    src = _local_tree(tmp_path)
    node.docker("cp", str(src), f"{name}:/tmp/")
    listing = _exec(node, name, "cd /tmp/src && stat -c '%n %u %g %a' a.txt sub && readlink rel-link && readlink abs-link")
    assert listing.splitlines() == ["a.txt 1234 2345 640", "sub 0 0 750", "a.txt", "/etc/passwd"]

    out = tmp_path / "back"
    node.docker("cp", f"{name}:/tmp/src", str(out))  # out does not exist: it becomes the directory
    assert (out / "a.txt").read_text() == "alpha\n"
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / "sub").stat().st_mode) == 0o750
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 10
    assert os.readlink(out / "rel-link") == "a.txt" and os.readlink(out / "abs-link") == "/etc/passwd"

    actions = node.out("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                       f"container={name}", "--format", "{{.Action}}").splitlines()
    assert "extract-to-dir" in actions and "archive-path" in actions
    raw = node.docker("cp", f"{name}:/tmp/src", "-").stdout  # the tar as dockerd sends it
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["src", "src/a.txt", "src/abs-link", "src/rel-link", "src/sub", "src/sub/b.bin"]
    assert (members["src/a.txt"].uid, members["src/a.txt"].gid) == (1234, 2345)  # the container's view
    assert members["src/rel-link"].issym() and members["src/rel-link"].linkname == "a.txt"


def test_cp_dot_and_trailing_slash_forms(node, running, tmp_path):
    name, _ = running
    _exec(node, name, "mkdir -p /tmp/d/inner && echo 1 > /tmp/d/one && echo 2 > /tmp/d/inner/two")
    into = tmp_path / "into"
    into.mkdir()
    node.docker("cp", f"{name}:/tmp/d/.", str(into))  # the contents, not the directory
    assert sorted(p.name for p in into.iterdir()) == ["inner", "one"]
    existing = tmp_path / "existing"
    existing.mkdir()
    node.docker("cp", f"{name}:/tmp/d", str(existing))  # an existing directory: copied below it
    assert (existing / "d" / "inner" / "two").read_text() == "2\n"
    assert _stat(node, name, "/tmp/d/.")["name"] == "."
    assert _stat(node, name, "/tmp/d/")["name"] == "d"

    local = tmp_path / "local"
    (local / "x").mkdir(parents=True)
    (local / "x" / "f").write_text("f\n")
    node.docker("cp", f"{local}/.", f"{name}:/tmp/d/")
    assert _exec(node, name, "cat /tmp/d/x/f") == "f\n"


def test_cp_archive_mode_gives_files_to_the_containers_user(node, names, tmp_path):
    name = names()
    node.docker("run", "-d", "--name", name, "-u", "app", "busybox", "sleep", "600")
    f = tmp_path / "mine"
    f.write_text("m\n")
    os.chown(f, 4321, 4321)
    node.docker("cp", str(f), f"{name}:/home/app/plain")
    node.docker("cp", "-a", str(f), f"{name}:/home/app/archived")
    out = _exec(node, name, "stat -c '%n %u %g' /home/app/plain /home/app/archived")
    assert out.splitlines() == ["/home/app/plain 4321 4321", "/home/app/archived 1000 1000"]
    _exec(node, name, "echo written-by-app >> /home/app/archived")  # uid 1000 owns it, in the container


def test_cp_follow_link_copies_the_target_and_plain_cp_copies_the_link(node, running, tmp_path):
    name, _ = running
    _exec(node, name, "echo target > /tmp/target && ln -s /tmp/target /tmp/lnk && ln -s target /tmp/rlnk")
    node.docker("cp", f"{name}:/tmp/lnk", str(tmp_path / "as-link"))
    assert os.readlink(tmp_path / "as-link") == "/tmp/target"
    node.docker("cp", "-L", f"{name}:/tmp/lnk", str(tmp_path / "followed"))
    assert not (tmp_path / "followed").is_symlink() and (tmp_path / "followed").read_text() == "target\n"
    node.docker("cp", "-L", f"{name}:/tmp/rlnk", str(tmp_path / "followed-rel"))
    assert (tmp_path / "followed-rel").read_text() == "target\n"


def test_stat_header_uses_go_file_modes_and_dockerd_errors(node, running):
    name, _ = running
    _exec(node, name, "mkdir -m 755 /tmp/sd && ln -s /tmp/sd /tmp/sl && printf 12345 > /tmp/sf && chmod 4754 /tmp/sf")
    d = _stat(node, name, "/tmp/sd")
    assert (d["name"], d["mode"], d["linkTarget"]) == ("sd", DIR | 0o755, "")
    assert d["mode"] == 2147484141
    link = _stat(node, name, "/tmp/sl")
    assert (link["mode"], link["linkTarget"]) == (SYMLINK | 0o777, "/tmp/sd")
    f = _stat(node, name, "/tmp/sf")
    assert (f["mode"], f["size"]) == ((1 << 23) | 0o754, 5)
    assert f["mtime"].endswith("Z")

    status, _, body = _api(node, "HEAD", f"/containers/{name}/archive", path="/missing")
    assert (status, body) == (404, b"")
    status, _, body = _api(node, "GET", f"/containers/{name}/archive", path="/missing")
    assert (status, _message(body)) == (404, f"Could not find the file /missing in container {name}")
    status, _, body = _api(node, "GET", f"/containers/{name}/archive")
    assert (status, _message(body)) == (400, "bad parameter: pathcannot be empty")
    res = node.docker("cp", f"{name}:/missing", ".", check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == f"Error response from daemon: Could not find the file /missing in container {name}"


def test_cp_into_paths_that_do_not_exist_or_do_not_fit(node, running, tmp_path):
    name, _ = running
    f = tmp_path / "f"
    f.write_text("f")
    res = node.docker("cp", str(f), f"{name}:/no/such/x", check=False)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == f"Error response from daemon: Could not find the file /no/such in container {name}"
    res = node.docker("cp", str(f), f"{name}:/etc/passwd/x", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: extraction point is not a directory"
    res = node.docker("cp", str(f), f"{name}:/no/such/dir/", check=False)
    assert res.returncode == 1 and res.stderr.decode().strip().endswith("no such directory")  # the CLI's own check
    clash = tmp_path / "clash" / "tmp"
    clash.parent.mkdir()
    clash.write_text("a file where /tmp is a directory")
    res = node.docker("cp", str(clash), f"{name}:/", check=False)
    assert res.stderr.decode().strip() == \
        'Error response from daemon: cannot overwrite directory "/tmp" with non-directory "/"'
    assert _exec(node, name, "test -d /tmp && echo dir") == "dir\n"


# ---- stopped containers ------------------------------------------------------------------------


def test_cp_both_ways_on_stopped_and_never_started_containers(node, names, tmp_path):
    name = names()
    cid = node.out("create", "--name", name, "busybox", "sh", "-c", "cat /in.txt > /out.txt")
    f = tmp_path / "in.txt"
    f.write_text("into a created container\n")
    node.docker("cp", str(f), f"{name}:/")
    assert not _mounted(node, cid)
    node.docker("start", "-a", name)
    node.docker("cp", f"{name}:/out.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "into a created container\n"
    _wait_unmounted(node, cid)
    assert _stat(node, name, "/out.txt")["size"] == len("into a created container\n")


def test_an_abandoned_download_releases_the_container(node, names):
    """The archive stream holds the container (as dockerd does) only while someone reads it."""
    name = names()
    cid = node.out("create", "--name", name, "busybox", "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=48 2>/dev/null")
    node.docker("start", "-a", name)
    _wait_unmounted(node, cid)  # the run's own overlay is gone: what follows is the download's
    conn = UnixConnection(node.docker_host[len("unix://"):])
    conn.request("GET", f"{API}/containers/{name}/archive?path=/big")
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read(1 << 16)) == 1 << 16
    assert _mounted(node, cid)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    _wait_unmounted(node, cid)
    node.docker("start", "-a", name, timeout=30)  # its lock is free again
    _wait_unmounted(node, cid)


def test_read_only_rootfs_refuses_writes(node, names, tmp_path):
    name = names()
    node.docker("create", "--name", name, "--read-only", "busybox", "true")
    f = tmp_path / "f"
    f.write_text("f")
    res = node.docker("cp", str(f), f"{name}:/tmp/", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: container rootfs is marked read-only"


# ---- security: everything stays inside the container ---------------------------------------


def test_symlinks_out_of_the_container_resolve_inside_it(node, running, tmp_path):
    name, cid = running
    marker = f"container-{secrets.token_hex(4)}"
    _exec(node, name, f"echo {marker} > /etc/appl-marker && ln -s / /escape && ln -s ../../../../etc /escape2")
    for src in ("/escape/etc/appl-marker", "/escape2/appl-marker", "/escape2/../../../../../etc/appl-marker"):
        out = tmp_path / secrets.token_hex(4)
        node.docker("cp", f"{name}:{src}", str(out))
        assert out.read_text() == marker + "\n", src
    status, _, body = _api(node, "GET", f"/containers/{name}/archive", path="/../../../../../../etc/appl-marker")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("appl-marker").read() == (marker + "\n").encode()
    assert _stat(node, name, "/escape")["linkTarget"] == "/"
    assert _stat(node, name, "/escape2")["linkTarget"] == "/etc"

    # /etc/hostname through the links: what the container itself sees, or dockerd's clean 404
    inside = node.docker("exec", name, "cat", "/etc/hostname", check=False)
    for src in ("/escape/etc/hostname", "/escape2/hostname"):
        out = tmp_path / secrets.token_hex(4)
        res = node.docker("cp", f"{name}:{src}", str(out), check=False)
        if inside.returncode == 0:
            assert res.returncode == 0 and out.read_bytes() == inside.stdout, src
        else:
            assert res.stderr.decode().strip() == \
                f"Error response from daemon: Could not find the file {src} in container {name}"

    token = f"appl-escape-{secrets.token_hex(4)}"
    f = tmp_path / token
    f.write_text("inside\n")
    assert not Path("/" + token).exists()
    node.docker("cp", str(f), f"{name}:/escape/")
    node.docker("cp", str(f), f"{name}:/escape2/")
    assert _exec(node, name, f"cat /{token} /etc/{token}") == "inside\ninside\n"
    assert (_upper(node, cid) / token).exists() and (_upper(node, cid) / "etc" / token).exists()
    assert not Path("/" + token).exists() and not Path("/etc/" + token).exists()


def test_put_tars_cannot_write_outside_the_destination_or_the_container(node, running):
    name, cid = running
    token = f"appl-evil-{secrets.token_hex(4)}"
    cases = [
        (_tar((f"../../../../{token}", tarfile.REGTYPE, b"x")), f'"../../../../{token}" is outside of "/tmp"'),
        (_tar(("ok", tarfile.REGTYPE, b"x"), ("up", tarfile.SYMTYPE, "../../../../etc")),
         'invalid symlink "/tmp/up" -> "../../../../etc"'),
        (_tar(("h", tarfile.LNKTYPE, "../etc/passwd")), 'invalid hardlink "/etc/passwd" -> "../etc/passwd"'),
    ]
    for body, message in cases:
        status, _, raw = _api(node, "PUT", f"/containers/{name}/archive", body=body, path="/tmp")
        assert (status, _message(raw)) == (400, message)
    assert _exec(node, name, "ls /tmp") == ""  # refused archives write nothing at all

    # absolute names land below the destination; a symlink to "/" then a file through it, and an
    # existing symlink of the container as the destination, all stay inside the container
    _exec(node, name, "ln -s / /tmp/hostlink")
    body = _tar((f"/{token}-abs", tarfile.REGTYPE, b"a"), ("esc", tarfile.SYMTYPE, "/"),
                (f"esc/etc/{token}-through", tarfile.REGTYPE, b"t"))
    assert _api(node, "PUT", f"/containers/{name}/archive", body=body, path="/tmp")[0] == 200
    body = _tar((f"{token}-via-dest", tarfile.REGTYPE, b"d"))
    assert _api(node, "PUT", f"/containers/{name}/archive", body=body, path="/tmp/hostlink")[0] == 200
    assert _exec(node, name, f"cat /tmp/{token}-abs /etc/{token}-through /{token}-via-dest") == "atd"
    for host_path in (f"/{token}-abs", f"/etc/{token}-through", f"/{token}-via-dest", f"/tmp/{token}-abs"):
        assert not Path(host_path).exists(), host_path
    assert (_upper(node, cid) / "etc" / f"{token}-through").stat().st_uid == SHIFT


def test_symlinks_inside_a_bind_mount_still_mean_the_containers_root(node, names, tmp_path):
    """A volume or bind source is a host directory; a link in it to "/" is still the container's "/"."""
    name = names()
    src = tmp_path / "bind"
    src.mkdir()
    os.chown(src, SHIFT, SHIFT)  # container root may write there
    node.docker("run", "-d", "--name", name, "-v", f"{src}:/data", "busybox", "sleep", "600")
    _exec(node, name, "ln -s / /data/toroot")
    f = tmp_path / "payload"
    f.write_text("p\n")
    node.docker("cp", str(f), f"{name}:/data/")  # into the mount: the container sees it at once
    assert (src / "payload").read_text() == "p\n"
    assert _exec(node, name, "cat /data/payload") == "p\n"
    node.docker("cp", str(f), f"{name}:/data/toroot/tmp/")
    assert _exec(node, name, "cat /tmp/payload") == "p\n"
    assert not (src / "tmp").exists()
    node.docker("cp", f"{name}:/data/toroot/etc/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh\n")

    bound = tmp_path / "bound.txt"
    bound.write_text("a bind-mounted file\n")
    ro = names()
    node.docker("create", "--name", ro, "-v", f"{src}:/ro:ro", "-v", f"{bound}:/etc/bound.txt", "busybox", "true")
    node.docker("cp", f"{ro}:/etc/bound.txt", str(tmp_path / "bound-copy"))  # the file the container sees
    assert (tmp_path / "bound-copy").read_text() == "a bind-mounted file\n"
    res = node.docker("cp", str(f), f"{ro}:/ro/", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: mounted volume is marked read-only"
    node.docker("cp", f"{ro}:/ro/payload", str(tmp_path / "from-ro"))  # reading is fine
    assert (tmp_path / "from-ro").read_text() == "p\n"


# ---- export, diff, commit -------------------------------------------------------------------------


def test_export_is_the_flattened_filesystem_in_the_containers_view(node, running, tmp_path):
    name, _ = running
    _exec(node, name, "echo e > /exported && chown 1000:1000 /exported && rm /etc/group")
    out = tmp_path / "export.tar"
    node.docker("export", "-o", str(out), name)
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("exported").read() == b"e\n"
    assert (members["exported"].uid, members["exported"].gid) == (1000, 1000)
    assert members["bin/busybox"].uid == 0 and members["bin"].isdir()
    assert "etc/passwd" in members and "etc/group" not in members
    assert not any(n.startswith(("/", "./")) for n in members)
    res = node.docker("export", "-o", str(tmp_path / "x.tar"), "no-such-ctr", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: No such container: no-such-ctr"


def test_diff_reports_adds_changes_and_deletes_like_docker(node, running):
    name, _ = running
    assert node.out("diff", name) == ""
    _exec(node, name, "mkdir -p /newdir/sub && touch /newdir/sub/f && echo x >> /etc/passwd && rm /etc/group "
                      "&& rm -r /home/app && mkdir /home/app")
    assert node.out("diff", name).splitlines() == [
        "C /etc", "D /etc/group", "C /etc/passwd", "C /home", "D /home/app",
        "A /newdir", "A /newdir/sub", "A /newdir/sub/f",
    ]
    status, _, body = _api(node, "GET", f"/containers/{name}/changes")
    assert status == 200 and json.loads(body)[1] == {"Path": "/etc/group", "Kind": 2}
    res = node.docker("diff", "no-such-ctr", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: No such container: no-such-ctr"


def test_commit_makes_a_runnable_image_with_the_changes_sharing_the_parent_layers(node, names):
    name, image = names(), names("i")
    node.docker("run", "--name", name, "busybox", "sh", "-c",
                "mkdir /data && echo committed > /data/f && chown 1000 /data/f && rm /etc/group")
    layers_dir = node.data_root / "image" / "layers"
    before = set(os.listdir(layers_dir))
    parent_layers = json.loads(node.out("image", "inspect", "busybox"))[0]["RootFS"]["Layers"]
    image_id = node.out("commit", "-m", "my message", "-a", "me <me@example.com>",
                        "--change", 'CMD ["cat", "/data/f"]', "--change", "ENV COMMITTED=1", name, image)
    assert image_id.startswith("sha256:")
    info = json.loads(node.out("image", "inspect", image))[0]
    assert info["Id"] == image_id and info["Author"] == "me <me@example.com>" and info["Comment"] == "my message"
    assert info["Config"]["Cmd"] == ["cat", "/data/f"] and "COMMITTED=1" in info["Config"]["Env"]
    assert info["RootFS"]["Layers"][:-1] == parent_layers and len(info["RootFS"]["Layers"]) == len(parent_layers) + 1
    assert len(set(os.listdir(layers_dir)) - before) == 1  # one new layer; the parent's are shared
    assert node.out("run", "--rm", image) == "committed"
    assert node.out("run", "--rm", image, "stat", "-c", "%u", "/data/f") == "1000"
    res = node.docker("run", "--rm", image, "ls", "/etc/group", check=False)
    assert res.returncode != 0  # the deletion is in the image too (a .wh. whiteout in the layer)
    history = node.out("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", image).splitlines()
    assert history[0].startswith("sh -c mkdir /data") and history[0].endswith("|my message")
    assert len(history) == 2

    # a container of the committed image, committed again: three layers, all changes kept
    child, image2 = names(), names("i")
    node.docker("run", "--name", child, image, "sh", "-c", "echo second > /data/g && rm /data/f")
    assert node.out("diff", child).splitlines() == ["C /data", "D /data/f", "A /data/g"]
    node.out("commit", child, image2)
    assert len(json.loads(node.out("image", "inspect", image2))[0]["RootFS"]["Layers"]) == len(parent_layers) + 2
    assert node.out("run", "--rm", image2, "sh", "-c", "cat /data/g; ls /data; ls /etc/group 2>&1 || true") \
        == "second\ng\nls: /etc/group: No such file or directory"


def test_commit_of_a_running_container_without_pause_and_an_unchanged_one(node, running, names):
    name, _ = running
    image = names("i")
    _exec(node, name, "echo live > /live")
    node.out("commit", "--pause=false", name, image)
    assert node.out("run", "--rm", image, "cat", "/live") == "live"
    paused_image = names("i")
    node.out("commit", name, paused_image)  # --pause defaults to true: frozen while read, thawed after
    assert node.out("inspect", "-f", "{{.State.Status}}", name) == "running"
    actions = node.out("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                       f"container={name}", "--format", "{{.Action}}").splitlines()
    assert actions[-3:] == ["pause", "commit", "unpause"]
    fresh, empty_image = names(), names("i")
    node.docker("create", "--name", fresh, "busybox", "true")
    node.out("commit", fresh, empty_image)
    parent = json.loads(node.out("image", "inspect", "busybox"))[0]["RootFS"]["Layers"]
    assert json.loads(node.out("image", "inspect", empty_image))[0]["RootFS"]["Layers"] == parent


def test_commit_and_cp_bad_input_gets_dockers_json_errors(node, running, tmp_path):
    name, _ = running
    status, _, body = _api(node, "POST", "/commit", container="no-such-ctr", repo="ok")
    assert (status, _message(body)) == (404, "No such container: no-such-ctr")
    status, _, body = _api(node, "POST", "/commit", container=name, repo="Bad/Name")
    assert status == 400 and "must be lowercase" in _message(body)
    status, _, body = _api(node, "POST", "/commit", container=name, repo="ok", changes="RUN echo")
    assert (status, _message(body)) == (400, "RUN is not a valid change command")
    res = node.docker("commit", "no-such-ctr", check=False)
    assert res.stderr.decode().strip() == "Error response from daemon: No such container: no-such-ctr"

    status, _, body = _api(node, "PUT", f"/containers/{name}/archive", body=b"not a tar at all" * 64, path="/tmp")
    assert (status, _message(body)) == (400, "archive/tar: invalid tar header")
    status, _, body = _api(node, "PUT", "/containers/no-such-ctr/archive", body=_tar(("f", tarfile.REGTYPE, b"x")),
                           path="/tmp")
    assert (status, _message(body)) == (404, "No such container: no-such-ctr")
    status, _, body = _api(node, "PUT", f"/containers/{name}/archive", body=b"", path="/tmp")
    assert status == 200  # an empty body is an empty archive, as Go's tar reader sees it
    for args in (("cp", "no-such-ctr:/etc", str(tmp_path)), ("cp", str(tmp_path), "no-such-ctr:/tmp")):
        res = node.docker(*args, check=False)
        assert res.stderr.decode().strip() == "Error response from daemon: No such container: no-such-ctr"
    assert _exec(node, name, "ls /tmp") == ""

