"""Go's path/filepath and os.FileMode as docker cp needs them; id shifting of owners and capabilities."""

import stat
import struct

import pytest

from appliance.engine.filesystem import paths
from appliance.engine.filesystem.idmap import OVERFLOW_ID, IdShift
from appliance.errors import InvalidParameter


@pytest.mark.parametrize("raw, cleaned", [
    ("", "."), ("/", "/"), ("//a//b/", "/a/b"), ("/a/./b/.", "/a/b"), ("/a/../../b", "/b"),
    ("/..", "/"), ("a/../..", ".."), ("../a", "../a"), ("a/b/../c", "a/c"), ("./", "."),
])
def test_clean_is_filepath_clean(raw, cleaned):
    assert paths.clean(raw) == cleaned


@pytest.mark.parametrize("raw, expected", [
    ("", "."), ("/", "/"), ("/dir/", "dir"), ("/dir/.", "."), ("a", "a"), ("//", "/"), ("/a/b", "b"),
])
def test_base_is_filepath_base(raw, expected):
    assert paths.base(raw) == expected


def test_split_and_dir():
    assert paths.split("/a/b") == ("/a/", "b")
    assert paths.split("/a/b/") == ("/a/b/", "")
    assert paths.split("a") == ("", "a")
    assert paths.dirname("/a/b") == "/a"
    assert paths.dirname("/a") == "/"
    assert paths.dirname("a") == "."


def test_join_ignores_empty_elements_and_keeps_absolute_names_below():
    assert paths.join("/tmp", "/etc/x") == "/tmp/etc/x"
    assert paths.join("/tmp", "../x") == "/x"
    assert paths.join("", "") == ""


@pytest.mark.parametrize("path, expected", [
    ("dir", "/dir"), ("/dir/", "/dir/"), ("/dir/.", "/dir/."), ("dir/./", "/dir/./"), ("/", "/"),
    (".", "/."), ("/a/../b/.", "/b/."), ("/a//b//", "/a/b/"),
])
def test_container_abs_keeps_the_trailing_dot_or_slash(path, expected):
    assert paths.container_abs(path) == expected


def test_is_within():
    assert paths.is_within("/tmp/x", "/tmp")
    assert paths.is_within("/tmp", "/tmp")
    assert not paths.is_within("/tmpx", "/tmp")
    assert paths.is_within("/anything", "/")


@pytest.mark.parametrize("st_mode, go_mode", [
    (stat.S_IFDIR | 0o755, (1 << 31) | 0o755),            # 2147484141, as pitfall 8 of the wire notes
    (stat.S_IFREG | 0o644, 0o644),
    (stat.S_IFLNK | 0o777, (1 << 27) | 0o777),
    (stat.S_IFREG | stat.S_ISUID | 0o755, (1 << 23) | 0o755),
    (stat.S_IFREG | stat.S_ISGID | 0o755, (1 << 22) | 0o755),
    (stat.S_IFDIR | stat.S_ISVTX | 0o777, (1 << 31) | (1 << 20) | 0o777),
    (stat.S_IFCHR | 0o666, (1 << 26) | (1 << 21) | 0o666),
    (stat.S_IFBLK | 0o660, (1 << 26) | 0o660),
    (stat.S_IFIFO | 0o600, (1 << 25) | 0o600),
    (stat.S_IFSOCK | 0o755, (1 << 24) | 0o755),
])
def test_go_file_mode(st_mode, go_mode):
    assert paths.go_file_mode(st_mode) == go_mode


def test_mtime_is_rfc3339_nano_utc():
    assert paths.format_mtime(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert paths.format_mtime(0) == "1970-01-01T00:00:00Z"


def test_ids_shift_both_ways_with_dockerds_error():
    ids = IdShift(100000, 65536)
    assert ids.to_host(0) == 100000
    assert ids.to_host(65535) == 165535
    with pytest.raises(InvalidParameter, match="Container ID 65536 cannot be mapped to a host ID"):
        ids.to_host(65536)
    assert ids.to_container(101000) == 1000
    assert ids.to_container(0) == OVERFLOW_ID
    assert IdShift(0).to_container(0) == 0


def test_capabilities_get_the_container_root_id_and_lose_it_again():
    ids = IdShift(100000, 65536)
    v2 = struct.pack("<I", 0x02000000) + bytes(range(16))
    v3 = ids.capability_to_host(v2)
    assert len(v3) == 24 and struct.unpack("<I", v3[20:])[0] == 100000
    assert ids.capability_to_container(v3) == v2
    foreign = v3[:20] + struct.pack("<I", 5)
    assert ids.capability_to_container(foreign) is None
    assert ids.capability_to_host(b"\x01") is None
