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
    res = node.docker("exec", "-d", "ex2", "no-such-tool", check=False)  # detached: the start answers it
    assert res.returncode != 0
    assert b'exec: "no-such-tool": executable file not found in $PATH' in res.stderr
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


def _exec_dirs(node, cid):
    return sorted((node.data_root / "containers" / cid / "execs").iterdir())


def test_exec_runs_without_a_monitor_unless_the_command_is_outside_the_image(node):
    """A plain exec of a command in the image runs `crun exec` directly (no conmon: its
    directory has crun's log and no conmon pid); one found only on a volume goes through
    conmon, and both give the same answers."""
    import shutil

    tools = node.data_root / "exec-tools"
    tools.mkdir(mode=0o755, exist_ok=True)
    shutil.copy2("/bin/busybox", tools / "busybox")
    cid = node.out("run", "-d", "-v", f"{tools}:/tools:ro", "busybox", "sleep", "300")
    try:
        assert node.out("exec", cid, "echo", "from-image") == "from-image"
        (fast,) = _exec_dirs(node, cid)
        assert (fast / "crun.log").exists() and not (fast / "conmon.pid").exists()
        res = node.docker("exec", cid, "/tools/busybox", "sh", "-c", "echo from-volume; echo e >&2; exit 4", check=False)
        assert (res.returncode, res.stdout, res.stderr) == (4, b"from-volume\n", b"e\n")
        slow = [d for d in _exec_dirs(node, cid) if d != fast]
        assert len(slow) == 1 and (slow[0] / "conmon.pid").exists()
        # Flow control through the pipes: 2 MB out, nothing lost or reordered.
        big = node.docker("exec", cid, "sh", "-c", "seq 1 300000").stdout
        assert big == "".join(f"{i}\n" for i in range(1, 300001)).encode()
        # stdin reaches the process and its end is EOF.
        assert node.out("exec", "-i", cid, "sh", "-c", "cat; echo end", input="a\nb\n") == "a\nb\nend"
    finally:
        node.docker("rm", "-f", cid)


def test_exec_whose_client_goes_away_still_records_its_exit(node):
    """The process runs on and its exit code is kept, as with dockerd (here: the direct
    `crun exec` path, whose reaping the exec service takes over when the client is gone)."""
    import json
    import socket

    from tests.support.http import request

    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/exec",
                                  {"Cmd": ["sh", "-c", "sleep 0.3; echo x; sleep 0.3; echo y; exit 3"], "AttachStdout": True,
                                   "AttachStderr": True})
        assert status == 201
        eid = json.loads(body)["Id"]
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(node.docker_host[len("unix://"):])
        start = json.dumps({"Detach": False, "Tty": False}).encode()
        sock.sendall(f"POST /v1.50/exec/{eid}/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                     f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(start)}"
                     f"\r\n\r\n".encode() + start)
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        sock.close()  # gone before the process ends
        deadline = time.monotonic() + 10
        while True:
            info = json.loads(request(node.docker_host, "GET", f"/v1.50/exec/{eid}/json")[2])
            if not info["Running"] and info["ExitCode"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (info["Running"], info["ExitCode"]) == (False, 3)
    finally:
        node.docker("rm", "-f", cid)


def test_exec_events(node):
    since = time.time()
    node.docker("run", "-d", "--name", "exev", "busybox", "sleep", "300")
    try:
        node.docker("exec", "exev", "true")
        node.docker("exec", "exev", "sh", "-c", "exit 2", check=False)
        out = node.out("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter",
                       "container=exev", "--format",
                       "{{.Action}}|{{.Actor.Attributes.name}}|{{.Actor.Attributes.exitCode}}|{{.Actor.Attributes.execID}}")
        rows = [line.split("|") for line in out.splitlines() if line.startswith("exec_")]
        actions = [(a, name, code) for a, name, code, _ in rows]
        assert actions == [("exec_create: true ", "exev", "<no value>"), ("exec_start: true ", "exev", "<no value>"),
                           ("exec_die", "exev", "0"),
                           ("exec_create: sh -c exit 2", "exev", "<no value>"),
                           ("exec_start: sh -c exit 2", "exev", "<no value>"), ("exec_die", "exev", "2")]
        ids = [r[3] for r in rows]
        assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5] and len(ids[0]) == 64
    finally:
        node.docker("rm", "-f", "exev")
