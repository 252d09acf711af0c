"""RootScope: container paths resolve inside the container's root, like FollowSymlinkInScope."""

import errno
import os

import pytest

from appliance.engine.filesystem.scope import Mount, RootScope


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hostname").write_text("container\n")
    (r / "a" / "b").mkdir(parents=True)
    (r / "file").write_text("f")
    os.symlink("/", r / "escape")
    os.symlink("../../../../etc", r / "escape2")
    os.symlink("etc", r / "rel")
    os.symlink("/loop", r / "loop")
    os.symlink("/a/b", r / "a" / "abs")
    os.symlink("../../escape/etc", r / "a" / "b" / "up")
    return r


@pytest.mark.parametrize("path, canonical", [
    ("/", "/"),
    ("", "/"),
    ("/etc/hostname", "/etc/hostname"),
    ("/escape/etc/hostname", "/etc/hostname"),
    ("/escape/escape/escape/etc", "/etc"),
    ("/escape2/hostname", "/etc/hostname"),
    ("/../../../etc/hostname", "/etc/hostname"),
    ("/rel/hostname", "/etc/hostname"),
    ("/a/abs/../b/./", "/a/b"),   # ".." after a symlink: the target's parent (kernel semantics)
    ("/a/b/up/hostname", "/etc/hostname"),
    ("/missing/x/../y", "/missing/y"),
    ("/missing/../etc", "/etc"),
    ("/file/..", "/"),
])
def test_resolve_stays_inside_the_root(root, path, canonical):
    with RootScope(root) as scope:
        assert scope.resolve(path) == canonical


def test_link_loops_and_paths_through_files_are_errors(root):
    with RootScope(root) as scope:
        with pytest.raises(OSError) as loop:
            scope.resolve("/loop/x")
        assert loop.value.errno == errno.ELOOP
        with pytest.raises(OSError) as notdir:
            scope.resolve("/file/x/y")
        assert notdir.value.errno == errno.ENOTDIR


def test_open_dir_never_follows_a_symlink(root):
    """A canonical path has no symlinks; if one appears there (a race), the open fails."""
    with RootScope(root) as scope:
        fd = scope.open_dir("/a/b")
        os.close(fd)
        with pytest.raises(OSError) as exc:
            scope.open_dir("/escape")
        assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)
        pfd, name = scope.open_parent("/escape")
        try:
            assert os.path.islink(os.readlink(f"/proc/self/fd/{pfd}") + "/" + name)
        finally:
            os.close(pfd)


def test_lstat_does_not_follow_the_final_symlink(root):
    with RootScope(root) as scope:
        st = scope.lstat("/escape")
        assert os.path.stat.S_ISLNK(st.st_mode)


def test_mounts_are_seen_where_the_container_sees_them_and_their_symlinks_stay_in_scope(root, tmp_path):
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    (vol / "sub" / "f").write_text("in volume")
    os.symlink("/", vol / "toroot")
    os.symlink("/rel", root / "a" / "link-to-rel")
    with RootScope(root, [Mount("/a/link-to-rel/data", vol, rw=False)]) as scope:
        assert scope.resolve("/etc/data/sub/f") == "/etc/data/sub/f"
        assert scope.mount_of("/etc/data/sub/f") == ("/etc/data", False)
        assert scope.mount_of("/etc/hostname") is None
        # a symlink inside the volume that points at "/" means the container's root
        assert scope.resolve("/etc/data/toroot/etc/hostname") == "/etc/hostname"
        pfd, name = scope.open_parent("/etc/data/sub/f")
        try:
            with open(os.open(name, os.O_RDONLY, dir_fd=pfd)) as f:
                assert f.read() == "in volume"
        finally:
            os.close(pfd)
        assert scope.is_mount_point("/etc/data")
        assert scope.lstat("/etc/data").st_ino == os.stat(vol).st_ino


def test_read_file_reads_the_containers_file_never_the_hosts(root):
    os.symlink("../../../../../../etc", root / "a" / "hostetc")
    with RootScope(root) as scope:
        assert scope.read_file("/escape/etc/hostname") == b"container\n"
        assert scope.read_file("/a/hostetc/hostname") == b"container\n"
        assert scope.read_file("/a/hostetc/passwd") is None  # the host's /etc/passwd is not reachable
        assert scope.read_file("/etc") is None


def test_a_bind_mounted_file_is_read_from_its_source(root, tmp_path):
    src = tmp_path / "host-file"
    src.write_text("from the bind source\n")
    (root / "etc" / "bound").write_text("")  # the placeholder a runtime mounts onto
    with RootScope(root, [Mount("/rel/bound", src, rw=True)]) as scope:
        assert scope.resolve("/escape/etc/bound") == "/etc/bound"
        assert scope.read_file("/etc/bound") == b"from the bind source\n"
        assert scope.lstat("/etc/bound").st_size == len("from the bind source\n")
        assert scope.is_mount_point("/etc/bound") and scope.mount_of("/etc/bound") == ("/etc/bound", True)
        with pytest.raises(OSError) as exc:
            scope.resolve("/etc/bound/x")
        assert exc.value.errno == errno.ENOTDIR
