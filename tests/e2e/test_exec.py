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


def test_exec_it_detach_keys_leave_the_process_running(node):
    import os
    import pty
    import subprocess

    node.docker("run", "-d", "--name", "ex3", "busybox", "sleep", "300")
    try:
        master, slave = pty.openpty()
        proc = subprocess.Popen(["/usr/local/bin/docker", "exec", "-it", "ex3", "sh", "-c",
                                 "echo started > /tmp/s; while true; do sleep 0.1; done"],
                                stdin=slave, stdout=slave, stderr=slave, env=node.env())
        os.close(slave)
        deadline = time.monotonic() + 10
        while node.docker("exec", "ex3", "cat", "/tmp/s", check=False).returncode and time.monotonic() < deadline:
            time.sleep(0.05)
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        assert proc.wait(timeout=10) == 1  # the CLI reports a detached exec as an error, as with dockerd
        assert b"read escape sequence" in os.read(master, 4096)
        os.close(master)
        ps = node.out("exec", "ex3", "ps", "-o", "args")
        assert "while true" in ps  # the detached exec's shell still runs
        node.docker("pause", "ex3")
        res = node.docker("exec", "ex3", "true", check=False)
        assert b"is paused, unpause the container before exec" in res.stderr
        node.docker("unpause", "ex3")
        bad = node.docker("exec", "--detach-keys", "ctrl-", "ex3", "true", check=False)
        assert bad.returncode != 0 and b"Invalid escape keys (ctrl-) provided" in bad.stderr
    finally:
        node.docker("rm", "-f", "ex3")
