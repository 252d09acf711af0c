"""conmon wire formats, command lines and mountinfo parsing: bytes in, values out."""

from pathlib import Path

import pytest

from appliance.errors import SystemError_
from appliance.runtime.argv import NodeDirs, conmon_argv
from appliance.runtime.conmon_proto import (
    CommandNotExecutable,
    CommandNotFound,
    RuntimeCreateError,
    SyncPipeReader,
    container_pid,
    decode_attach_packet,
    encode_reopen_log,
    encode_resize,
)
from appliance.runtime.mountinfo import parse_mountinfo


def test_sync_pipe_messages_across_reads():
    r = SyncPipeReader()
    assert r.feed(b'{"data": 26') == []
    assert r.feed(b'57}\n{"data": 5}\n') == [{"data": 2657}, {"data": 5}]
    assert container_pid({"data": 2657}) == 2657


@pytest.mark.parametrize("message,kind", [
    ("executable file `/nonexistent` not found in $PATH: No such file or directory\n", CommandNotFound),
    ('exec: "foo": executable file not found in $PATH', CommandNotFound),
    ("open executable: Permission denied", CommandNotExecutable),
    ("open executable: Operation not permitted", CommandNotExecutable),
    ("setrlimit `RLIMIT_NOFILE`: Operation not permitted", RuntimeCreateError),
])
def test_create_errors_are_typed(message, kind):
    with pytest.raises(kind) as e:
        container_pid({"data": -1, "message": message})
    assert type(e.value) is kind
    assert isinstance(e.value, SystemError_)
    assert e.value.message == message.strip()


def test_bad_sync_messages():
    with pytest.raises(SystemError_):
        container_pid({"data": "x"})
    with pytest.raises(SystemError_):
        SyncPipeReader().feed(b"{nope\n")


def test_attach_packets_map_to_docker_streams():
    assert decode_attach_packet(b"\x02hello") == (1, b"hello")
    assert decode_attach_packet(b"\x03oops") == (2, b"oops")
    assert decode_attach_packet(b"\x09x") is None
    assert decode_attach_packet(b"") is None


def test_ctl_messages():
    assert encode_resize(40, 100) == b"1 40 100\n"
    assert encode_reopen_log() == b"2 0 0\n"


def test_conmon_argv():
    dirs = NodeDirs(Path("/s"))
    p = dirs.container("0123456789abcdef")
    argv = conmon_argv(conmon="conmon", runtime="/usr/bin/crun", runtime_root=dirs.crun_root,
                       paths=p, stdin=True, leave_stdin_open=True, tty=False)
    assert argv[:3] == ["conmon", "--api-version", "1"]
    joined = " ".join(argv)
    for part in ("-c 0123456789abcdef", "-u 0123456789abcdef", "--full-attach", "--no-sync-log", "-b /s/containers/0123456789abcdef",
                 "-p /s/containers/0123456789abcdef/ctr.pid", "-P /s/containers/0123456789abcdef/conmon.pid",
                 "--persist-dir /s/containers/0123456789abcdef/persist",
                 "-l k8s-file:/s/containers/0123456789abcdef/ctr.log",
                 "--runtime-arg --root --runtime-arg /s/run/crun", "-i --leave-stdin-open"):
        assert part in joined
    assert "-s" not in argv and "-t" not in argv  # never systemd: there is none here
    assert "--socket-dir-path" not in argv  # the socket lives in the bundle, no symlink
    plain = conmon_argv(conmon="conmon", runtime="crun", runtime_root=dirs.crun_root, paths=p,
                        stdin=False, leave_stdin_open=True, tty=True)
    assert "-i" not in plain and "--leave-stdin-open" not in plain and "-t" in plain


def test_mountinfo_parse_unescapes_paths():
    text = ("65 42 0:4 mnt:[4026532177] /tmp/a\\040b/ns/mnt rw - nsfs nsfs rw\n"
            "80 27 0:50 / /x/rootfs rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u\n")
    a, b = parse_mountinfo(text)
    assert a.mount_point == "/tmp/a b/ns/mnt" and a.fstype == "nsfs" and a.root == "mnt:[4026532177]"
    assert b.fstype == "overlay" and b.source == "overlay" and b.options.startswith("rw,lowerdir")
