"""Issue 3 gaps: terminal size and SIGWINCH for run -it, start -ai, attach and exec -it; exec -it
line editing and exit codes; several tty clients at once; --detach-keys on run and exec; health
start period; exec bad input (126, 409, resize); `docker stats` streamed with block I/O; and
docker-py's exec, archive, top, pause, update, commit, diff and export against a real node.

tty sessions run the real CLI on a pseudo-terminal (tests/e2e/test_attach.py's Pty): the window
is set on it with TIOCSWINSZ and the CLI told with SIGWINCH, as a terminal emulator does."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tarfile
import termios
import time
from pathlib import Path

import pytest

from tests.e2e.test_attach import Pty
from tests.support.http import request
from tests.support.node import DOCKER
from tests.support.poll import inspect, until


def set_window(cli: Pty, rows: int, cols: int) -> None:
    """What a terminal emulator does when its window changes: new size, then SIGWINCH."""
    fcntl.ioctl(cli.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    cli.proc.send_signal(signal.SIGWINCH)


def stty_size(cli: Pty, tag: str) -> str:
    """`stty size` in the shell on the other end; the tag keeps each answer apart."""
    cli.send(f"echo {tag}''-$(stty size)-\r".encode())
    cli.expect(f"{tag}-".encode())
    size = cli.expect(b"-\r\n").decode()
    # The next prompt before the next line: busybox's line editor drops what is typed while
    # it sets the terminal back up (with any daemon; a person waits for the prompt as well).
    cli.expect(b"# ")
    return size


def window_follows(cli: Pty, rows: int, cols: int) -> None:
    """The container's tty takes the window's new size after a SIGWINCH. The CLI listens for
    the signal only once its first resize is answered, and the shell can see that size
    first, so a signal sent at once may come too early (with dockerd too): send it again
    while waiting, as a user dragging the window would."""
    want = f"{rows} {cols}"
    deadline = time.monotonic() + 10
    seen: list[str] = []
    for n in range(1000):
        set_window(cli, rows, cols)
        try:
            got = stty_size(cli, f"w{n}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sizes seen: {seen}") from None
        if got == want:
            return
        seen.append(got)
        assert time.monotonic() < deadline, f"window still {got!r}, want {want!r}"
        time.sleep(0.05)


# ---- terminal size ------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["run", "start-ai", "attach", "exec"])
def test_tty_size_is_the_clients_window_and_follows_sigwinch(node, form):
    name = f"win-{form}"
    if form == "run":
        argv = ("run", "-it", "--name", name, "busybox", "sh")
    elif form == "start-ai":
        node.docker("create", "-it", "--name", name, "busybox", "sh")
        argv = ("start", "-ai", name)
    else:
        node.docker("run", "-dit", "--name", name, "busybox", "sh")
        argv = ("attach", name) if form == "attach" else ("exec", "-it", name, "sh")
    try:
        with Pty(node, *argv, rows=27, cols=83) as cli:
            if form != "attach":  # an attach joins a shell whose prompt was printed before
                cli.expect(b"/ # ")
            until(lambda: stty_size(cli, "first") == "27 83", what="the client's window at start")
            window_follows(cli, 41, 123)
            window_follows(cli, 12, 40)
            cli.send(b"exit 6\r")
            assert cli.wait() == 6
        if form != "exec":
            assert node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name) == "exited 6"
        else:  # the exec's shell ended, the container's did not
            assert node.out("inspect", "-f", "{{.State.Status}}", name) == "running"
    finally:
        node.docker("rm", "-f", name)


def test_exec_it_prompt_line_editing_and_exit_code(node):
    node.docker("run", "-d", "--name", "edit", "busybox", "sleep", "300")
    try:
        with Pty(node, "exec", "-it", "-w", "/tmp", "-e", "WHO=tty", "edit", "sh") as cli:
            cli.expect(b"/tmp # ")
            # the line discipline and the shell's editor run in the container: a backspace
            # erases, left-arrow moves the cursor, ctrl-u kills the line
            cli.send(b"echo abX\x7fc\r")
            cli.expect(b"abc\r\n")
            cli.send(b"echo 13\x1b[D2\r")
            cli.expect(b"123\r\n")
            cli.send(b"echo wrong\x15echo $WHO-$(tty)\r")
            cli.expect(b"tty-/dev/pts/")
            cli.send(b"test -t 0 && echo is''atty\r")
            cli.expect(b"isatty\r\n")
            cli.send(b"exit 9\r")
            assert cli.wait() == 9
            assert b"wrong" not in cli.output
    finally:
        node.docker("rm", "-f", "edit")


# ---- several tty clients ------------------------------------------------------------------------

def test_several_tty_clients_share_the_terminal_and_detach_alone(node):
    node.docker("run", "-dit", "--name", "shared", "busybox", "sh")
    try:
        with Pty(node, "attach", "shared") as one, Pty(node, "attach", "shared") as two:
            # both are attached once each sees what the other typed
            def both_see(tag: bytes) -> bool:
                one.send(b"echo " + tag[:2] + b"''" + tag[2:] + b"\r")
                try:
                    one.expect(tag + b"\r\n", timeout=1)
                    two.expect(tag + b"\r\n", timeout=1)
                except AssertionError:
                    return False
                return True

            until(lambda: both_see(b"ready%d" % time.monotonic_ns()), what="both clients attached")
            two.send(b"echo from''two\r")
            one.expect(b"fromtwo\r\n")
            two.expect(b"fromtwo\r\n")
            one.send(b"\x10\x11")
            # `docker attach` ends with the escape as its error, as with dockerd (`run -it` exits 0)
            assert one.wait() == 1
            # the other client keeps the terminal
            two.send(b"echo still''two\r")
            two.expect(b"stilltwo\r\n")
            two.send(b"\x10\x11")
            assert two.wait() == 1
        assert node.out("inspect", "-f", "{{.State.Status}}", "shared") == "running"
    finally:
        node.docker("rm", "-f", "shared")


# ---- long output to a client with stdin ---------------------------------------------------------

LOUD = "i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.002; done; echo fin''ished; read x"


def test_run_it_keeps_streaming_past_hundreds_of_output_chunks(node):
    """conmon copies output to every attach connection, the one kept for stdin too; if nobody
    reads that one, conmon blocks once its buffer is full (~200 packets) and the container's
    output stops for every client, its log included."""
    with Pty(node, "run", "-it", "--rm", "--name", "loud-tty", "busybox", "sh", "-c", LOUD) as cli:
        before = cli.expect(b"finished", timeout=20)
        cli.send(b"\r")
        assert cli.wait() == 0
    assert before.split(b"\r\n")[:600] == [b"tick %d" % i for i in range(600)]


def test_run_i_keeps_streaming_past_hundreds_of_output_chunks(node):
    proc = subprocess.Popen([DOCKER, "run", "-i", "--rm", "--name", "loud-pipe", "busybox", "sh", "-c", LOUD],
                            env=node.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = b""
        deadline = time.monotonic() + 20
        while b"finished" not in out:
            assert time.monotonic() < deadline, f"output stopped: {out[-200:]!r}"
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, proc.stderr.read()
                out += chunk
        assert out.split(b"\n")[:600] == [b"tick %d" % i for i in range(600)]
        proc.stdin.write(b"\n")
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ---- detach keys on run and exec ----------------------------------------------------------------

def test_run_and_exec_with_custom_detach_keys(node):
    try:
        with Pty(node, "run", "-it", "--detach-keys", "ctrl-x,y", "--name", "dk", "busybox", "sh") as cli:
            cli.expect(b"/ # ")
            cli.send(b"\x10\x11")  # the default keys mean nothing now: they reach the shell
            cli.send(b"echo a''live\r")
            cli.expect(b"alive\r\n")
            cli.send(b"\x18y")
            assert cli.wait() == 0  # `run -it` takes the escape as success
        assert node.out("inspect", "-f", "{{.State.Status}}", "dk") == "running"
        with Pty(node, "exec", "-it", "--detach-keys", "ctrl-x,y", "dk", "sh", "-c",
                 "echo exec''ready; while true; do sleep 0.1; done") as cli:
            cli.expect(b"execready")
            cli.send(b"\x18y")
            assert cli.wait() == 1  # the CLI reports a detached exec as an error, as with dockerd
        assert "while true" in node.out("exec", "dk", "ps", "-o", "args")
    finally:
        node.docker("rm", "-f", "dk")


# ---- health start period ------------------------------------------------------------------------

def test_failures_in_the_start_period_do_not_count(node):
    since = time.time()
    cid = node.out("run", "-d", "--health-cmd", "cat /tmp/up", "--health-interval", "100ms",
                   "--health-retries", "1", "--health-start-period", "10s", "--health-start-interval", "100ms",
                   "busybox", "sh", "-c", "sleep 1.5; echo up > /tmp/up; sleep 300")
    try:
        # several failed probes inside the start period: still starting, no streak
        health = until(lambda: (h := inspect(node, cid)["State"]["Health"]) and len(h["Log"]) >= 3 and h,
                       what="three probes")
        if health["Status"] == "starting":
            assert health["FailingStreak"] == 0
            assert all(e["ExitCode"] == 1 for e in health["Log"])
            assert node.out("ps", "--filter", f"id={cid}", "--format", "{{.Status}}").endswith("(health: starting)")
        until(lambda: inspect(node, cid)["State"]["Health"]["Status"] == "healthy", what="healthy")
        assert inspect(node, cid)["Config"]["Healthcheck"]["StartPeriod"] == 10_000_000_000
        actions = node.out("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter",
                           f"container={cid}", "--filter", "event=health_status", "--format", "{{.Action}}")
        assert actions.splitlines() == ["health_status: healthy"]  # never unhealthy on the way
        # after a success the period is over: one failure (retries 1) is unhealthy
        node.docker("exec", cid, "rm", "/tmp/up")
        until(lambda: inspect(node, cid)["State"]["Health"]["Status"] == "unhealthy", what="unhealthy")
    finally:
        node.docker("rm", "-f", cid)


# ---- exec bad input -----------------------------------------------------------------------------

def test_exec_bad_input_gets_dockers_answers(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        res = node.docker("exec", cid, "/etc/passwd", check=False)
        assert res.returncode == 126 and b"permission denied" in res.stdout
        res = node.docker("exec", cid, "/no/such", check=False)
        assert res.returncode == 127

        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/exec",
                                  {"Cmd": ["sleep", "30"], "Tty": True})
        assert status == 201
        eid = json.loads(body)["Id"]
        status, _, body = request(node.docker_host, "POST", f"/v1.50/exec/{eid}/resize?h=10&w=10")
        assert (status, json.loads(body)["message"]) == (409, f"Exec {eid} is not running")
        for query, message in (("h=abc&w=80", 'strconv.ParseUint: parsing "abc": invalid syntax'),
                               ("h=-1&w=80", 'strconv.ParseUint: parsing "-1": invalid syntax'),
                               ("h=99999999999&w=80", 'strconv.ParseUint: parsing "99999999999": value out of range'),
                               ("h=24", 'strconv.ParseUint: parsing "": invalid syntax')):
            status, _, body = request(node.docker_host, "POST", f"/v1.50/exec/{eid}/resize?{query}")
            assert (status, json.loads(body)["message"]) == (400, message), query
        status, _, body = request(node.docker_host, "POST", "/v1.50/exec/nope/resize?h=10&w=10")
        assert (status, json.loads(body)["message"]) == (404, "No such exec instance: nope")
        status, _, body = request(node.docker_host, "GET", "/v1.50/exec/nope/json")
        assert (status, json.loads(body)["message"]) == (404, "No such exec instance: nope")

        # a tty exec, running: any uint32 is taken (the kernel's 16-bit winsize clamps it)
        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/exec",
                                  {"Cmd": ["sleep", "30"], "Tty": True})
        eid = json.loads(body)["Id"]
        status, _, _ = request(node.docker_host, "POST", f"/v1.50/exec/{eid}/start",
                               {"Detach": True, "Tty": True})
        assert status == 200
        # the detached start answers once the process runs, as dockerd's does
        assert json.loads(request(node.docker_host, "GET", f"/v1.50/exec/{eid}/json")[2])["Running"]
        for query in ("h=70000&w=4000000000", "h=30&w=90"):
            status, _, body = request(node.docker_host, "POST", f"/v1.50/exec/{eid}/resize?{query}")
            assert status == 200, (query, body)

        node.docker("kill", cid)
        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/exec", {"Cmd": ["true"]})
        assert (status, json.loads(body)["message"]) == (409, f"container {cid} is not running")
        res = node.docker("exec", cid, "true", check=False)
        assert res.returncode == 1
        assert res.stderr.decode().strip() == f"Error response from daemon: container {cid} is not running"
        status, _, body = request(node.docker_host, "POST", "/v1.50/containers/nope/exec", {"Cmd": ["true"]})
        assert (status, json.loads(body)["message"]) == (404, "No such container: nope")
    finally:
        node.docker("rm", "-f", cid)


def test_a_non_executable_command_is_126_naming_it_like_docker(node):
    res = node.docker("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert res.returncode == 126
    assert b'unable to start container process: exec: "/etc/passwd": permission denied' in res.stderr, res.stderr


def test_exec_of_a_non_executable_command_names_it_like_docker(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    try:
        res = node.docker("exec", cid, "/etc/passwd", check=False)
        assert res.returncode == 126
        assert (b'OCI runtime exec failed: exec failed: unable to start container process: exec: "/etc/passwd": '
                b"permission denied: unknown") in res.stdout + res.stderr
    finally:
        node.docker("rm", "-f", cid)


# ---- docker stats streamed, block I/O -----------------------------------------------------------

ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def _whole_disk(path) -> str | None:
    """MAJ:MIN of the block device holding path (the disk, not a partition), or None."""
    st = os.stat(path)
    dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not dev.exists():
        return None
    if (dev / "partition").exists():
        dev = dev.resolve().parent
    return (dev / "dev").read_text().strip()


def test_cli_stats_stream_updates_and_counts_block_io(node):
    cid = node.out("run", "-d", "--name", "st-io", "busybox", "sh", "-c", "while true; do sleep 0.2; done")
    disk = _whole_disk(node.data_root)
    if disk is None:
        pytest.skip("the data root is on no block device")
    # This kernel counts v1 blkio throttle I/O only for cgroups with a throttle rule on the
    # device (without one it reports 0 even at the root, for dockerd as well): a rule of
    # 1 TiB/s, which limits nothing, stands in for `--device-write-bps`.
    cgroup = Path("/sys/fs/cgroup/blkio/appliance") / node.name / cid
    (cgroup / "blkio.throttle.write_bps_device").write_text(f"{disk} {1 << 40}\n")
    cli = subprocess.Popen([DOCKER, "stats", "--format", "{{.Name}}|{{.PIDs}}|{{.BlockIO}}|{{.MemUsage}}", "st-io"],
                           env=node.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        # direct writes are charged to the container's blkio cgroup as it issues them
        node.docker("exec", cid, "dd", "if=/dev/zero", "of=/io", "bs=1M", "count=8", "oflag=direct")
        node.docker("exec", "-d", cid, "sleep", "30")
        rows: list[list[str]] = []
        deadline = time.monotonic() + 15
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([cli.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(cli.stdout.fileno(), 65536)
                assert chunk, cli.stderr.read()
                buf += chunk
            lines = ANSI.sub(b"\n", buf).decode(errors="replace").splitlines()
            rows = [line.strip().split("|") for line in lines if line.startswith("st-io|")]
            if len(rows) >= 3 and int(rows[-1][1]) >= 2 and not rows[-1][2].endswith(" 0B"):
                break
        assert len(rows) >= 3, buf  # a stream: the CLI prints each new sample
        last = rows[-1]
        assert int(last[1]) >= 2, rows  # PIDs: the loop's shell and the exec'd sleep (and its sleep)
        _, written = last[2].split(" / ")
        assert written.endswith("MB") and 8 <= float(written[:-2]) < 100, last
        used, limit = last[3].split(" / ")
        assert used.endswith(("KiB", "MiB")) and limit.endswith("GiB"), last
    finally:
        cli.kill()
        cli.wait(5)
        node.docker("rm", "-f", cid)


# ---- docker-py ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dpy(node):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=node.docker_host, version="auto", timeout=30)
    try:
        yield client
    finally:
        client.close()


def test_dockerpy_exec_run_forms(dpy):
    ctr = dpy.containers.run("busybox", ["sleep", "300"], detach=True, environment={"BASE": "1"})
    try:
        code, out = ctr.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert (code, sorted(out.splitlines())) == (3, [b"err", b"out"])  # two pipes: either order
        code, (out, err) = ctr.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert (code, out, err) == (0, b"out\n", b"err\n")
        code, out = ctr.exec_run(["sh", "-c", 'id -u; pwd; echo "$BASE $EXTRA"'], user="1000", workdir="/tmp",
                                 environment={"EXTRA": "2"})
        assert (code, out.decode().splitlines()) == (0, ["1000", "/tmp", "1 2"])
        code, out = ctr.exec_run(["sh", "-c", "tty; stty size"], tty=True)
        assert code == 0 and out.startswith(b"/dev/pts/"), out
        result = ctr.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"], stream=True)
        assert b"".join(result.output) == b"1\n2\n3\n"
        code, out = ctr.exec_run(["no-such-tool"])
        assert code == 127 and b"executable file not found in $PATH" in out
        ctr.exec_run(["sh", "-c", "echo bg > /tmp/bg"], detach=True)
        until(lambda: ctr.exec_run(["cat", "/tmp/bg"]).output == b"bg\n", what="the detached exec's file")

        # stdin through the hijacked socket; its half-close is EOF for the process
        eid = dpy.api.exec_create(ctr.id, ["sh", "-c", "wc -c"], stdin=True)["Id"]
        sock = dpy.api.exec_start(eid, socket=True)
        raw = sock._sock
        raw.sendall(b"12345")
        raw.shutdown(socket.SHUT_WR)
        data = b""
        raw.settimeout(10)
        while chunk := raw.recv(4096):
            data += chunk
        sock.close()
        assert data[8:].strip() == b"5" and data[0] == 1  # one stdout frame
        assert dpy.api.exec_inspect(eid)["ExitCode"] == 0
    finally:
        ctr.remove(force=True)


def test_dockerpy_archive_top_pause_update_commit_diff_export(dpy, node):
    docker = pytest.importorskip("docker")
    ctr = dpy.containers.run("busybox", ["sleep", "300"], detach=True, mem_limit="64m")
    image = None
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("dir/file")
            info.size, info.mode, info.uid, info.gid = 3, 0o640, 1000, 1000
            tar.addfile(info, io.BytesIO(b"abc"))
        assert ctr.put_archive("/tmp", buf.getvalue()) is True
        assert ctr.exec_run(["stat", "-c", "%a %u %g", "/tmp/dir/file"]).output == b"640 1000 1000\n"
        chunks, stat = ctr.get_archive("/tmp/dir")
        assert stat["name"] == "dir" and stat["mode"] == 0o755 | (1 << 31)  # Go's os.ModeDir
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.getmember("dir/file")
            assert (member.mode, member.uid, tar.extractfile(member).read()) == (0o640, 1000, b"abc")
        with pytest.raises(docker.errors.NotFound):
            ctr.get_archive("/no/such")

        top = ctr.top()
        assert "PID" in top["Titles"] and any("sleep 300" in " ".join(p) for p in top["Processes"])

        ctr.pause()
        ctr.reload()
        assert ctr.status == "paused"
        ctr.unpause()
        ctr.update(mem_limit="48m", memswap_limit="96m", cpu_period=100_000, cpu_quota=50_000)
        host = dpy.api.inspect_container(ctr.id)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["CpuPeriod"], host["CpuQuota"]) == \
            (48 * 1024**2, 96 * 1024**2, 100_000, 50_000)
        cgroup = Path("/sys/fs/cgroup")
        path = f"appliance/{node.name}/{ctr.id}"
        assert (cgroup / "memory" / path / "memory.limit_in_bytes").read_text().strip() == str(48 * 1024**2)
        assert (cgroup / "cpu" / path / "cpu.cfs_quota_us").read_text().strip() == "50000"
        with pytest.raises(docker.errors.APIError) as err:
            ctr.update(mem_limit="1k")
        assert err.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(err.value)

        changes = {(c["Path"], c["Kind"]) for c in ctr.diff()}
        assert ("/tmp/dir/file", 1) in changes and ("/tmp", 0) in changes
        image = ctr.commit("dpy-committed", "v1", changes=["ENV FROM_COMMIT=1", 'CMD ["cat", "/tmp/dir/file"]'])
        assert "FROM_COMMIT=1" in image.attrs["Config"]["Env"]
        assert dpy.containers.run(image.id, remove=True) == b"abc"

        exported = b"".join(ctr.export())
        with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
            assert tar.extractfile("tmp/dir/file").read() == b"abc"
            assert "bin/busybox" in tar.getnames()
    finally:
        ctr.remove(force=True)
        if image is not None:
            dpy.images.remove(image.id, force=True)


def test_dockerpy_restart_policy_and_health_in_inspect(dpy):
    ctr = dpy.containers.run("busybox", ["sh", "-c", "exit 2"], detach=True,
                             restart_policy={"Name": "unless-stopped"})
    try:
        until(lambda: dpy.api.inspect_container(ctr.id)["RestartCount"] >= 2, what="two restarts")
        ctr.stop(timeout=0)
        state = dpy.api.inspect_container(ctr.id)["State"]
        assert (state["Status"], state["Restarting"]) == ("exited", False)
    finally:
        ctr.remove(force=True)
    ctr = dpy.containers.run("busybox", ["sleep", "300"], detach=True,
                             healthcheck={"test": ["CMD", "true"], "interval": 100_000_000, "retries": 1})
    try:
        until(lambda: dpy.api.inspect_container(ctr.id)["State"]["Health"]["Status"] == "healthy", what="healthy")
        ctr.reload()
        assert ctr.health == "healthy"
    finally:
        ctr.remove(force=True)
