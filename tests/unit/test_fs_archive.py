"""Tar streams out of a tree, tars into a container directory, and the overlay diff.

These run against plain directories standing in for a container root (owners shifted by
100000, as the node's user namespace does); whiteouts and opaque markers are made the way
overlayfs makes them (0/0 character devices, trusted.overlay.opaque=y), which needs root.
"""

import gzip
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from appliance.engine.filesystem.changes import (
    CHANGE_ADD,
    CHANGE_DELETE,
    CHANGE_MODIFY,
    upper_changes,
)
from appliance.engine.filesystem.commit import (
    EMPTY_LAYER_DIFF_ID,
    child_config,
    container_config,
    merge,
)
from appliance.engine.filesystem.extract import ExtractOptions, extract
from appliance.engine.filesystem.idmap import IdShift
from appliance.engine.filesystem.scope import RootScope
from appliance.engine.filesystem.tarstream import END_OF_ARCHIVE, TarWriter
from appliance.errors import InvalidParameter
from appliance.store.records import ContainerConfig
from tests.support.tarballs import tar_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)")

IDS = IdShift(100000, 65536)


def _tar_of_tree(path: Path, **kw) -> tarfile.TarFile:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        data = b"".join(TarWriter(IDS, **kw).tree(fd, root_name=None, prefix="")) + END_OF_ARCHIVE
    finally:
        os.close(fd)
    return tarfile.open(fileobj=io.BytesIO(data))


def _tar(*entries) -> bytes:
    return tar_of(entries)


def _entry(name, kind=tarfile.REGTYPE, *, mode=0o644, uid=0, gid=0, linkname="", data=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, gid, linkname
    info.mtime = 1_600_000_000
    return info, (data if data is not None else (b"x\n" if kind == tarfile.REGTYPE else None))


# ---- tar out -------------------------------------------------------------------------------


def test_tree_is_lexical_dirs_first_owners_in_the_containers_view(tmp_path):
    t = tmp_path / "t"
    (t / "b" / "c").mkdir(parents=True)
    (t / "a").write_text("hello")
    (t / "b.txt").write_text("")
    (t / "b" / "c" / "d").write_text("deep")
    os.symlink("../a", t / "b" / "link")
    os.link(t / "a", t / "hard")
    os.mkfifo(t / "fifo")
    for p in [t / "a", t / "b", t / "b" / "link"]:
        os.chown(p, 101000, 101000, follow_symlinks=False)
    os.chown(t / "b.txt", 5, 5)  # not mapped into the container: the overflow id
    os.chmod(t / "a", 0o4750)
    with _tar_of_tree(t) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == ["a", "b", "b/c", "b/c/d", "b/link", "b.txt", "fifo", "hard"]
        by = {m.name: m for m in members}
        assert (by["a"].uid, by["a"].gid, by["a"].mode, by["a"].size) == (1000, 1000, 0o4750, 5)
        assert tar.extractfile("b/c/d").read() == b"deep"
        assert by["b"].isdir() and by["b/link"].issym() and by["b/link"].linkname == "../a"
        assert by["b.txt"].uid == 65534
        assert by["fifo"].isfifo()
        assert by["hard"].islnk() and by["hard"].linkname == "a"
        assert all(m.uname == "" and m.gname == "" for m in members)


def test_whiteouts_become_docker_wh_files(tmp_path):
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq" / "new").write_text("n")
    os.mknod(upper / "etc" / "group", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    with _tar_of_tree(upper, whiteouts=True) as tar:
        names = [m.name for m in tar.getmembers()]
        assert names == ["etc", "etc/.wh.group", "opq", "opq/.wh..wh..opq", "opq/new"]
        wh = tar.getmember("etc/.wh.group")
        assert wh.isreg() and wh.size == 0 and wh.mode == 0o600


# ---- tar in --------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for d in ("tmp", "etc", "data"):
        (r / d).mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.symlink("/", r / "tmp" / "hostlink")
    return r


def _put(root: Path, dest: str, body: bytes, tmp_path: Path, **opts) -> None:
    spool = tmp_path / "body.tar"
    spool.write_bytes(body)
    with RootScope(root) as scope:
        extract(scope, scope.resolve(dest), spool, ExtractOptions(ids=IDS, **opts))


def test_files_land_with_shifted_owners_modes_and_implied_parents(root, tmp_path):
    body = _tar(_entry("new/deep/file", uid=1000, gid=1001, mode=0o4755),
                _entry("new/link", tarfile.SYMTYPE, linkname="deep/file"),
                _entry("/abs", data=b"abs"))
    _put(root, "/tmp", body, tmp_path)
    f = root / "tmp" / "new" / "deep" / "file"
    st = f.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (101000, 101001, 0o4755)
    assert st.st_mtime == 1_600_000_000
    implied = (root / "tmp" / "new" / "deep").stat()
    assert (implied.st_uid, stat.S_IMODE(implied.st_mode)) == (100000, 0o755)
    assert os.readlink(root / "tmp" / "new" / "link") == "deep/file"
    assert (root / "tmp" / "abs").read_bytes() == b"abs"  # an absolute name lands below the destination


@pytest.mark.parametrize("entry, message", [
    (_entry("../../evil"), '"../../evil" is outside of "/tmp"'),
    (_entry("a/../../evil"), '"../evil" is outside of "/tmp"'),
    (_entry("l", tarfile.SYMTYPE, linkname="../../etc"), 'invalid symlink "/tmp/l" -> "../../etc"'),
    (_entry("h", tarfile.LNKTYPE, linkname="../etc/passwd"), 'invalid hardlink "/etc/passwd" -> "../etc/passwd"'),
    (_entry("big-uid", uid=70000), "Container ID 70000 cannot be mapped to a host ID"),
])
def test_breakouts_are_refused_and_nothing_is_written(root, tmp_path, entry, message):
    body = _tar(_entry("first"), entry)
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        _put(root, "/tmp", body, tmp_path)
    assert sorted(p.name for p in (root / "tmp").iterdir()) == ["hostlink"]


def test_symlink_then_write_through_stays_in_the_container(root, tmp_path):
    """dockerd unpacks in a chroot: an absolute link is the container's; so is what goes through it."""
    body = _tar(_entry("esc", tarfile.SYMTYPE, linkname="/"), _entry("esc/etc/pwned", data=b"p"),
                _entry("hostlink/tmp/through-existing", data=b"q"))
    _put(root, "/tmp", body, tmp_path)
    assert (root / "etc" / "pwned").read_bytes() == b"p"
    assert (root / "tmp" / "through-existing").read_bytes() == b"q"
    assert os.readlink(root / "tmp" / "esc") == "/"


def test_a_symlink_at_the_final_name_is_replaced_not_followed(root, tmp_path):
    os.symlink("/etc/passwd", root / "tmp" / "victim")
    _put(root, "/tmp", _tar(_entry("victim", data=b"new")), tmp_path)
    assert not (root / "tmp" / "victim").is_symlink()
    assert (root / "etc" / "passwd").read_text().startswith("root:")


def test_no_overwrite_dir_non_dir(root, tmp_path):
    (root / "tmp" / "adir").mkdir()
    (root / "tmp" / "afile").write_text("f")
    with pytest.raises(InvalidParameter, match='cannot overwrite directory "/tmp/adir" with non-directory "/tmp"'):
        _put(root, "/tmp", _tar(_entry("adir")), tmp_path, no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidParameter, match='cannot overwrite non-directory "/tmp/afile" with directory "/tmp"'):
        _put(root, "/tmp", _tar(_entry("afile", tarfile.DIRTYPE, mode=0o755)), tmp_path,
             no_overwrite_dir_non_dir=True)
    _put(root, "/tmp", _tar(_entry("adir")), tmp_path)  # without the flag, dockerd replaces
    assert (root / "tmp" / "adir").is_file()


def test_devices_are_skipped_and_empty_or_garbage_bodies(root, tmp_path):
    dev = tarfile.TarInfo("sda")
    dev.type, dev.devmajor, dev.devminor = tarfile.BLKTYPE, 8, 0
    _put(root, "/tmp", _tar((dev, None), _entry("after")), tmp_path)
    assert not (root / "tmp" / "sda").exists() and (root / "tmp" / "after").exists()
    _put(root, "/tmp", b"", tmp_path)
    _put(root, "/tmp", b"\0" * 1024, tmp_path)
    with pytest.raises(InvalidParameter, match="archive/tar: invalid tar header"):
        _put(root, "/tmp", b"this is not a tar" * 50, tmp_path)


def test_fifos_hard_links_and_compressed_bodies(root, tmp_path):
    body = _tar(_entry("orig", uid=7, mode=0o640), _entry("hard", tarfile.LNKTYPE, linkname="orig", uid=7, mode=0o640),
                _entry("pipe", tarfile.FIFOTYPE, uid=8, mode=0o620))
    _put(root, "/tmp", gzip.compress(body), tmp_path)
    orig, hard, pipe = ((root / "tmp" / n).lstat() for n in ("orig", "hard", "pipe"))
    assert orig.st_ino == hard.st_ino and orig.st_nlink == 2 and orig.st_uid == 100007
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o620 and pipe.st_uid == 100008


def test_nul_bytes_in_a_path_are_an_invalid_path(root):
    with RootScope(root) as scope, pytest.raises(OSError):
        scope.resolve("/tmp/a\0b")


def test_copy_uid_gid_owner_overrides_the_tars(root, tmp_path):
    _put(root, "/tmp", _tar(_entry("owned", uid=0)), tmp_path, chown=(1000, 1000))
    assert (root / "tmp" / "owned").stat().st_uid == 101000


def test_read_only_rootfs_refuses(root, tmp_path):
    with pytest.raises(InvalidParameter, match="container rootfs is marked read-only"):
        _put(root, "/tmp", _tar(_entry("x")), tmp_path, readonly_rootfs=True)


# ---- diff ------------------------------------------------------------------------------------


def test_upper_changes_in_dockers_order(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in ("etc", "home/app", "same", "var"):
        (lower / d).mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("p")
    (lower / "etc" / "group").write_text("g")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "passwd").write_text("changed")
    os.mknod(upper / "etc" / "group", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "home" / "app").mkdir(parents=True)
    os.setxattr(upper / "home" / "app", "trusted.overlay.opaque", b"y")
    (upper / "new" / "sub").mkdir(parents=True)
    (upper / "new" / "sub" / "f").write_text("")
    (upper / "same").mkdir()
    st = (lower / "same").stat()
    os.chmod(upper / "same", stat.S_IMODE(st.st_mode))
    os.utime(upper / "same", ns=(st.st_atime_ns, st.st_mtime_ns))
    (upper / "var").mkdir()
    (upper / "var" / "log").write_text("")
    os.utime(upper / "var", ns=(0, 0))
    changes = [(c.path, c.kind) for c in upper_changes(upper, [lower])]
    expected = [
        ("/etc", CHANGE_MODIFY), ("/etc/group", CHANGE_DELETE), ("/etc/passwd", CHANGE_MODIFY),
        ("/home", CHANGE_MODIFY), ("/home/app", CHANGE_DELETE),
        ("/new", CHANGE_ADD), ("/new/sub", CHANGE_ADD), ("/new/sub/f", CHANGE_ADD),
        ("/var", CHANGE_MODIFY), ("/var/log", CHANGE_ADD),
    ]
    # "/same" (equal size, mode and mtime to its lower copy) is left out, as dockerd does
    assert changes == expected
    assert upper_changes(tmp_path / "never-started", [lower]) == []


# ---- commit config ---------------------------------------------------------------------------


def test_container_config_and_merge_fill_from_the_container():
    own = container_config(ContainerConfig(image="busybox", cmd=["sh", "-c", "echo hi"], env=["A=1", "PATH=/bin"],
                                           hostname="abc", labels={"l": "1"}))
    assert list(own)[:3] == ["Hostname", "Domainname", "User"]
    assert own["Cmd"] == ["sh", "-c", "echo hi"] and own["Image"] == "busybox"
    user = {"Cmd": ["cat", "/f"], "Env": ["A=2"], "Labels": {"m": "2"}}
    merged = merge(user, own)
    assert merged["Cmd"] == ["cat", "/f"]
    assert merged["Env"] == ["A=2", "PATH=/bin"]
    assert merged["Labels"] == {"l": "1", "m": "2"}


def test_child_config_appends_one_layer_and_one_history_row():
    parent = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
              "history": [{"created": "2020-01-01T00:00:00Z", "comment": "Imported from -"}]}
    own = container_config(ContainerConfig(image="busybox", cmd=["sh", "-c", "x"]))
    blob = child_config(parent, config=own, container_config=own, container_id="c" * 64, author="me",
                        comment="msg", diff_id="sha256:" + "b" * 64, created_ns=1_700_000_000_000_000_000)
    cfg = json.loads(blob)
    assert list(cfg) == sorted(cfg)
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    assert cfg["history"][-1] == {"created": "2023-11-14T22:13:20Z", "author": "me", "created_by": "sh -c x",
                                  "comment": "msg"}
    assert (cfg["author"], cfg["container"], cfg["comment"]) == ("me", "c" * 64, "msg")
    empty = json.loads(child_config(parent, config=own, container_config=own, container_id="c", author="",
                                    comment="", diff_id=EMPTY_LAYER_DIFF_ID, created_ns=0))
    assert empty["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64]
    assert empty["history"][-1]["empty_layer"] is True
