"""LayerStore: content addressing, extraction fidelity, whiteouts, and hostile tars."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import struct
import tarfile
import threading
from pathlib import Path

import pytest

from appliance.errors import InvalidParameter, NotFound
from appliance.images.layers import Layer, LayerStore, member_parts
from tests.images.tarbuild import MTIME, dev, dir_, fifo, link, reg, sym, tar_bytes

SHIFT = 100000
STORE_DIRS = {"blobs", "blobs/sha256", "layers", "meta", "tmp"}


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "store", uid_shift=SHIFT)


def all_paths(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def add(store: LayerStore, *entries) -> Layer:
    return store.add(io.BytesIO(tar_bytes(*entries)))


# -- content addressing ----------------------------------------------------------------


def test_diff_id_is_sha256_of_uncompressed_tar_and_blob_kept_verbatim(store):
    data = tar_bytes(dir_("etc/"), reg("etc/hostname", b"box\n"), reg("bin/sh", b"x" * 3000))
    layer = store.add(io.BytesIO(data))
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert layer.tar_size == len(data)
    assert layer.size == 4 + 3000  # dockerd's layer size: the sum of the entries' sizes
    with store.open_tar(layer.diff_id) as f:
        assert f.read() == data
    assert store.has(layer.diff_id)
    assert store.get(layer.diff_id) == layer
    assert store.size(layer.diff_id) == 3004
    assert store.list_layers() == [layer]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress],
                         ids=["gzip", "bzip2", "xz"])
def test_compressed_input_gets_the_uncompressed_diff_id(store, compress):
    data = tar_bytes(reg("a", b"hello"))
    layer = store.add(io.BytesIO(compress(data)))
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    with store.open_tar(layer.diff_id) as f:
        assert f.read() == data


def test_multi_member_gzip_is_one_stream(store):
    data = tar_bytes(reg("a", b"hello" * 1000), reg("b", b"x"))
    half = len(data) // 2
    layer = store.add(io.BytesIO(gzip.compress(data[:half]) + gzip.compress(data[half:])))
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_truncated_gzip_is_rejected_and_leaves_nothing(store):
    blob = gzip.compress(tar_bytes(reg("a", b"hello" * 1000)))
    with pytest.raises(InvalidParameter, match="gzip"):
        store.add(io.BytesIO(blob[:-20]))
    assert all_paths(store.root) == STORE_DIRS


def test_garbage_after_gzip_is_rejected(store):
    blob = gzip.compress(tar_bytes(reg("a")))
    with pytest.raises(InvalidParameter):
        store.add(io.BytesIO(blob + b"junk"))


def test_zstd_is_refused(store):
    with pytest.raises(InvalidParameter, match="zstd"):
        store.add(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\0" * 100))


def test_not_a_tar_is_rejected(store):
    with pytest.raises(InvalidParameter):
        store.add(io.BytesIO(b"this is not a tar archive at all" * 40))
    assert all_paths(store.root) == STORE_DIRS


def test_empty_body_is_an_empty_layer(store):
    layer = store.add(io.BytesIO(b""))
    assert layer.diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert layer.size == 0
    assert os.listdir(store.path(layer.diff_id)) == []


def test_adding_twice_is_a_no_op(store):
    data = tar_bytes(reg("a", b"1"))
    first, new1 = store.add_new(io.BytesIO(data))
    inode = os.stat(store.path(first.diff_id) / "a").st_ino
    second, new2 = store.add_new(io.BytesIO(gzip.compress(data)))
    assert (first, new1, new2) == (second, True, False)
    assert os.stat(store.path(first.diff_id) / "a").st_ino == inode
    assert all_paths(store.root / "tmp") == set()


def test_concurrent_adds_of_the_same_layer(store):
    data = tar_bytes(*[reg(f"f{i}", b"x" * i) for i in range(50)])
    results: list[Layer] = []
    threads = [threading.Thread(target=lambda: results.append(store.add(io.BytesIO(data))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert len(store.list_layers()) == 1
    assert os.listdir(store.root / "tmp") == []


def test_missing_layer_is_not_found(store):
    missing = "sha256:" + "0" * 64
    assert not store.has(missing)
    for call in (store.get, store.path, store.open_tar, store.size):
        with pytest.raises(NotFound):
            call(missing)
    with pytest.raises(InvalidParameter):
        store.has("sha256:nothex")


def test_remove_and_du(store):
    layer = add(store, reg("a", b"x" * 10000))
    assert store.du() > 10000
    assert store.remove(layer.diff_id) is True
    assert store.remove(layer.diff_id) is False
    assert not store.has(layer.diff_id)
    assert all_paths(store.root) == STORE_DIRS


def test_recover_drops_half_done_work(store):
    layer = add(store, reg("a", b"x"))
    (store.root / "tmp" / "add-crashed").mkdir()
    (store.root / "layers" / ("f" * 64)).mkdir()  # renamed in, meta never written
    (store.root / "blobs" / "sha256" / ("f" * 64)).write_bytes(b"")
    store.recover()
    assert store.list_layers() == [layer]
    assert all_paths(store.root) - STORE_DIRS == {
        f"layers/{layer.diff_id[7:]}", f"layers/{layer.diff_id[7:]}/a",
        f"blobs/sha256/{layer.diff_id[7:]}", f"meta/{layer.diff_id[7:]}.json"}


# -- extraction fidelity -----------------------------------------------------------------


def test_ids_are_shifted_and_modes_kept(store):
    layer = add(
        store,
        dir_("./", mode=0o755),
        dir_("home/app/", mode=0o750, uid=1000, gid=1000),
        reg("home/app/file", b"data", mode=0o640, uid=1000, gid=100),
        reg("bin/su", b"su", mode=0o4755),
        reg("bin/wall", b"w", mode=0o2755, gid=5),
        dir_("tmp/", mode=0o1777),
        sym("bin/sh", "/bin/busybox", uid=0),
        fifo("run/pipe", mode=0o620),
    )
    root = store.path(layer.diff_id)
    st = os.lstat(root)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (SHIFT, SHIFT, 0o755)
    st = os.lstat(root / "home/app")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (SHIFT + 1000, SHIFT + 1000, 0o750)
    st = os.lstat(root / "home/app/file")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (SHIFT + 1000, SHIFT + 100, 0o640)
    assert (root / "home/app/file").read_bytes() == b"data"
    assert stat.S_IMODE(os.lstat(root / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(root / "bin/wall").st_mode) == 0o2755
    assert os.lstat(root / "bin/wall").st_gid == SHIFT + 5
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert os.lstat(root / "bin/sh").st_uid == SHIFT
    st = os.lstat(root / "run/pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    # implicit parents belong to container root
    st = os.lstat(root / "bin")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (SHIFT, 0o755)


def test_mtimes_kept_for_files_dirs_and_symlinks(store):
    layer = add(store, dir_("d/", mtime=MTIME + 1), reg("d/f", b"x", mtime=MTIME + 2),
                sym("d/l", "f", mtime=MTIME + 3), reg("d/g", mtime=1_600_000_000.25))
    root = store.path(layer.diff_id)
    assert os.lstat(root / "d").st_mtime == MTIME + 1  # set after its children
    assert os.lstat(root / "d/f").st_mtime == MTIME + 2
    assert os.lstat(root / "d/l").st_mtime == MTIME + 3
    assert os.lstat(root / "d/g").st_mtime_ns == 1_600_000_000_250_000_000


def test_no_shift(tmp_path):
    store = LayerStore(tmp_path / "s", uid_shift=0)
    layer = add(store, reg("f", uid=7, gid=8))
    st = os.lstat(store.path(layer.diff_id) / "f")
    assert (st.st_uid, st.st_gid) == (7, 8)


def test_user_xattrs_kept_and_trusted_ones_dropped(store):
    layer = add(store, reg("f", b"x", xattrs={"user.note": b"hi",
                                               "trusted.overlay.redirect": b"/etc"}))
    path = store.path(layer.diff_id) / "f"
    assert os.getxattr(path, "user.note") == b"hi"
    assert "trusted.overlay.redirect" not in os.listxattr(path)


def test_file_capabilities_become_v3_with_the_shifted_root(store):
    v2 = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # cap_net_raw, effective
    layer = add(store, reg("bin/ping", b"p", mode=0o755, xattrs={"security.capability": v2}))
    raw = os.getxattr(store.path(layer.diff_id) / "bin/ping", "security.capability")
    magic, permitted = struct.unpack("<II", raw[:8])
    assert magic == 0x03000001 and permitted == 1 << 13
    assert struct.unpack("<I", raw[20:24])[0] == SHIFT
    with store.open_tar(layer.diff_id) as f, tarfile.open(fileobj=f) as tar:
        member = tar.getmember("bin/ping")  # the blob keeps the original v2 value
    assert member.pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == v2


def test_hardlinks_share_an_inode(store):
    layer = add(store, reg("bin/busybox", b"bb", mode=0o755), link("bin/sh", "bin/busybox"),
                link("./usr/bin/env", "./bin/busybox"))
    root = store.path(layer.diff_id)
    ino = os.lstat(root / "bin/busybox").st_ino
    assert os.lstat(root / "bin/sh").st_ino == ino
    assert os.lstat(root / "usr/bin/env").st_ino == ino


def test_hardlink_to_a_symlink_links_the_symlink_itself(store):
    layer = add(store, sym("a", "/etc/passwd"), link("b", "a"))
    root = store.path(layer.diff_id)
    assert os.readlink(root / "b") == "/etc/passwd"


def test_later_entries_replace_earlier_ones(store):
    layer = add(store, reg("a", b"first"), reg("a", b"second"),
                dir_("d/"), reg("d/x", b"1"), reg("d", b"now a file"),
                reg("f", b"file"), dir_("f/"), reg("f/y", b"2"))
    root = store.path(layer.diff_id)
    assert (root / "a").read_bytes() == b"second"
    assert (root / "d").read_bytes() == b"now a file"
    assert (root / "f/y").read_bytes() == b"2"


def test_regular_file_over_a_symlink_does_not_write_through(store, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    layer = add(store, sym("a", str(victim)), reg("a", b"payload"))
    assert victim.read_bytes() == b"untouched"
    root = store.path(layer.diff_id)
    assert not os.path.islink(root / "a")
    assert (root / "a").read_bytes() == b"payload"


def test_directory_entry_over_a_symlink_replaces_it(store, tmp_path):
    victim = tmp_path / "victimdir"
    victim.mkdir()
    layer = add(store, sym("d", str(victim)), dir_("d/", mode=0o700), reg("d/x", b"1"))
    assert os.listdir(victim) == []
    assert os.stat(victim).st_uid == 0
    root = store.path(layer.diff_id)
    assert os.path.isdir(root / "d") and not os.path.islink(root / "d")


# -- whiteouts ---------------------------------------------------------------------------


def test_whiteouts_become_overlay_whiteouts(store):
    layer = add(store, dir_("etc/"), reg("etc/.wh.passwd", uid=0),
                dir_("var/cache/"), reg("var/cache/.wh..wh..opq"), reg("var/cache/new", b"n"),
                reg(".wh.gone"))
    root = store.path(layer.diff_id)
    st = os.lstat(root / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert st.st_uid == SHIFT
    assert stat.S_ISCHR(os.lstat(root / "gone").st_mode)
    assert not os.path.lexists(root / "etc/.wh.passwd")
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(root / "var/cache/.wh..wh..opq")
    assert (root / "var/cache/new").read_bytes() == b"n"


def test_opaque_marker_without_its_directory_entry(store):
    layer = add(store, reg("a/b/.wh..wh..opq"))
    root = store.path(layer.diff_id)
    assert os.getxattr(root / "a/b", "trusted.overlay.opaque") == b"y"


def test_aufs_metadata_is_skipped(store):
    layer = add(store, dir_(".wh..wh.plnk/"), reg(".wh..wh.plnk/123.456", b"x"),
                reg(".wh..wh.aufs"), reg("real", b"r"))
    assert sorted(os.listdir(store.path(layer.diff_id))) == ["real"]


# -- hostile tars ------------------------------------------------------------------------

def hostile_cases(victim: str) -> dict[str, list]:
    """Tars that must be refused. ``victim`` is an absolute directory outside the store
    holding ``passwd``: escapes aim there, never at the host's real /etc, so a regression
    cannot damage the machine running the tests. Each path through a symlink to "/" names
    the victim by its absolute path, exactly like "a" -> "/" then "a/etc/passwd"."""
    v = victim.lstrip("/")
    return {
        "dotdot": [reg("../x", b"evil")],
        "dotdot-inside": [dir_("a/"), reg("a/../../x", b"evil")],
        "absolute": [reg(f"/{v}/x", b"evil")],
        "symlink-parent-root": [sym("a", "/"), reg(f"a/{v}/passwd", b"evil")],
        "symlink-parent-relative": [sym("a", "../../.."), reg("a/x", b"evil")],
        "symlink-parent-deep": [dir_("d/"), sym("d/e", victim), reg("d/e/f/g", b"evil")],
        "symlink-replaces-dir-then-write": [dir_("a/"), sym("a", "/"), reg(f"a/{v}/x", b"evil")],
        "symlink-parent-dir-entry": [sym("a", victim), dir_("a/sub/", mode=0o777)],
        "symlink-parent-chmod-dir": [sym("a", "/"), dir_(f"a/{v}/", mode=0o777, uid=5)],
        "symlink-parent-hardlink": [reg("f", b"x"), sym("a", victim), link("a/f2", "f")],
        "hardlink-dotdot": [link("passwd", f"../../../../../../../../{v}/passwd")],
        "hardlink-dotdot-etc-passwd": [link("passwd", "../../etc/passwd")],
        "hardlink-absolute": [link("passwd", f"{victim}/passwd")],
        "hardlink-through-symlink": [sym("e", victim), link("passwd", "e/passwd")],
        "hardlink-missing": [link("a", "nothere")],
        "hardlink-to-dir": [dir_("d/"), link("a", "d")],
        "hardlink-to-itself": [link("a", "a")],
        "char-device": [dev("dev/null", tarfile.CHRTYPE, 1, 3)],
        "char-device-0-0": [dev("x", tarfile.CHRTYPE, 0, 0)],
        "block-device": [dev("dev/sda", tarfile.BLKTYPE, 8, 0)],
        "file-as-parent": [reg("f", b"x"), reg("f/child", b"y")],
        "uid-out-of-range": [reg("f", uid=70000)],
        "gid-out-of-range": [reg("f", gid=1 << 31)],
        "whiteout-dotdot-name": [reg("a/.wh...", b"")],
        "root-as-symlink": [sym(".", victim)],
        "whiteout-through-symlink": [sym("a", victim), reg("a/.wh.passwd")],
        "opaque-through-symlink": [sym("a", victim), reg("a/.wh..wh..opq")],
        "late-failure-after-many-files": [*[reg(f"ok{i}", b"x" * i) for i in range(30)],
                                          reg("../late", b"evil")],
    }


HOSTILE_IDS = list(hostile_cases("/victim"))


def snapshot(path: Path) -> list:
    out = []
    for p in sorted([path, *path.rglob("*")]):
        st = os.lstat(p)
        out.append((str(p), st.st_mode, st.st_uid, st.st_gid, st.st_nlink,
                    p.read_bytes() if p.is_file() else None, sorted(os.listxattr(p))))
    return out


@pytest.mark.parametrize("case", HOSTILE_IDS)
def test_hostile_tar_is_rejected_and_leaves_nothing(store, tmp_path, case):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    before = snapshot(victim)
    with pytest.raises(InvalidParameter):
        add(store, *hostile_cases(str(victim))[case])
    assert all_paths(store.root) == STORE_DIRS
    assert snapshot(victim) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "victim"]


def test_hostile_gzip_tar_is_rejected_too(store):
    with pytest.raises(InvalidParameter):
        store.add(io.BytesIO(gzip.compress(tar_bytes(sym("a", "/"), reg("a/etc/passwd")))))
    assert all_paths(store.root) == STORE_DIRS


def test_unsupported_tar_entry_type(store):
    info, _ = reg("x")
    info.type = b"V"  # GNU volume header
    with pytest.raises(InvalidParameter):
        add(store, (info, None))
    assert all_paths(store.root) == STORE_DIRS


def test_truncated_tar_is_rejected(store):
    data = tar_bytes(reg("a", b"x" * 5000))
    with pytest.raises(InvalidParameter):
        store.add(io.BytesIO(data[:2048]))
    assert all_paths(store.root) == STORE_DIRS


def test_symlinks_may_point_anywhere(store):
    layer = add(store, sym("etc/mtab", "/proc/self/mounts"), sym("up", "../../../.."))
    root = store.path(layer.diff_id)
    assert os.readlink(root / "etc/mtab") == "/proc/self/mounts"
    assert os.readlink(root / "up") == "../../../.."


@pytest.mark.parametrize("name,parts", [
    (".", ()), ("./", ()), ("a", ("a",)), ("./a/b/", ("a", "b")), ("a//b/./c", ("a", "b", "c")),
])
def test_member_parts(name, parts):
    assert member_parts(name) == parts


@pytest.mark.parametrize("name", ["/a", "../a", "a/../../b", "a/..", "a\x00b"])
def test_member_parts_rejects(name):
    with pytest.raises(InvalidParameter):
        member_parts(name)


def test_busybox_rootfs(store, tmp_path):
    from tests.support.busybox import build_rootfs, rootfs_tar_bytes

    data = rootfs_tar_bytes(build_rootfs(tmp_path / "rootfs"))
    layer = store.add(io.BytesIO(data))
    root = store.path(layer.diff_id)
    assert os.access(root / "bin/busybox", os.X_OK)
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert os.lstat(root / "home/app").st_uid == SHIFT + 1000
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0")
