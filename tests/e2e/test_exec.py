"""docker exec: plain, -i, -u/-w/-e, -d, exit codes, missing binary, stopped container."""

import time


def test_exec_forms(node):
    node.docker("run", "-d", "--name", "ex", "-e", "BASE=1", "busybox", "sleep", "300")
    try:
        res = node.docker("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
        assert (res.returncode, res.stdout, res.stderr) == (5, b"out\n", b"err\n")
        assert node.out("exec", "-i", "ex", "sh", "-c", "wc -l", input="a\nb\nc\n") == "3"
        out = node.out("exec", "-u", "1000", "-w", "/tmp", "-e", "EXTRA=2", "ex", "sh", "-c",
                       'id -u; pwd; echo "$BASE $EXTRA"')
        assert out.splitlines() == ["1000", "/tmp", "1 2"]
        assert node.out("exec", "ex", "sh", "-c", "echo $$") != "1"  # not the container's init
        node.docker("exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d")
        deadline = time.monotonic() + 5
        while node.docker("exec", "ex", "cat", "/tmp/d", check=False).returncode and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.out("exec", "ex", "cat", "/tmp/d") == "detached"
        status = node.out("exec", "ex", "grep", "-E", "^(CapEff|Seccomp|NoNewPrivs):", "/proc/self/status")
        assert status.split() == ["CapEff:", "00000000a80425fb", "NoNewPrivs:", "1", "Seccomp:", "2"]
    finally:
        node.docker("rm", "-f", "ex")


def test_exec_missing_binary_is_127_and_stopped_container_is_refused(node):
    node.docker("run", "-d", "--name", "ex2", "busybox", "sleep", "300")
    res = node.docker("exec", "ex2", "no-such-tool", check=False)
    assert res.returncode == 127
    assert b'exec: "no-such-tool": executable file not found in $PATH' in res.stdout + res.stderr
    node.docker("kill", "ex2")
    res = node.docker("exec", "ex2", "true", check=False)
    assert res.returncode == 1
    assert b"is not running" in res.stderr
    node.docker("rm", "ex2")
