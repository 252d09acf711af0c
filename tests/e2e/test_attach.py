"""docker attach: tty and non-tty, several clients at once, detach keys (CLI and server side),
docker start -ai, and bad input. tty sessions run the real CLI under a pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import socket
import struct
import subprocess
import termios
import time

import pytest

from tests.support.http import request
from tests.support.node import DOCKER


class Pty:
    """The docker CLI on a pseudo-terminal we hold the master side of; every wait is bounded."""

    def __init__(self, node, *args: str, rows: int = 30, cols: int = 100):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen([DOCKER, *args], stdin=slave, stdout=slave, stderr=slave, env=node.env(),
                                     start_new_session=True)
        os.close(slave)
        self.output = b""

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI closed its side
            chunk = b""
        self.output += chunk
        return bool(chunk)

    def expect(self, marker: bytes, timeout: float = 10) -> bytes:
        """Wait for marker in the output after what was consumed so far; consume through it."""
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._pump(left) and self.proc.poll() is not None):
                raise AssertionError(f"{marker!r} not seen; output so far: {self.output[-500:]!r}")
        before, _, self.output = self.output.partition(marker)
        return before

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"CLI still running; output: {self.output[-500:]!r}")
            self._pump(0.05)
        while self._pump(0):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hijack(node, path: str, body: bytes = b"") -> tuple[socket.socket, bytes, bytes]:
    """A raw attach like docker-py's attach_socket: (socket, response head, bytes after it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(node.docker_host[len("unix://"):])
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head, rest


def recv_until(sock: socket.socket, marker: bytes, already: bytes = b"", timeout: float = 10) -> bytes:
    data = already
    deadline = time.monotonic() + timeout
    while marker not in data:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}: {data!r}")
        data += chunk
    return data


def recv_to_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def status_of(node, ref) -> str:
    return node.out("inspect", "-f", "{{.State.Status}}", ref)


# ---- tty ----------------------------------------------------------------------------------------

def test_run_it_detach_then_attach_and_detach_again_keeps_the_shell(node):
    with Pty(node, "run", "-it", "--name", "shell", "busybox", "sh") as cli:
        cli.expect(b"/ # ")
        cli.send(b"echo one''two\r")
        cli.expect(b"onetwo\r\n")
        cli.send(b"\x10\x11")  # ctrl-p ctrl-q
        assert cli.wait() == 0
    try:
        assert status_of(node, "shell") == "running"  # the shell did not get EOF
        with Pty(node, "attach", "--detach-keys", "ctrl-a,x", "shell") as cli:
            cli.send(b"echo back''again\r")
            cli.expect(b"backagain\r\n")
            cli.send(b"\x01x")
            cli.wait()
            assert b"read escape sequence" in cli.output
        assert status_of(node, "shell") == "running"
        with Pty(node, "attach", "shell") as cli:
            cli.send(b"exit 3\r")
            assert cli.wait() == 3
        assert node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "shell") == "exited 3"
    finally:
        node.docker("rm", "-f", "shell")


def test_start_ai_with_a_tty(node):
    node.docker("create", "-it", "--name", "later-tty", "busybox", "sh")
    try:
        with Pty(node, "start", "-ai", "later-tty", rows=33, cols=77) as cli:
            cli.expect(b"/ # ")
            cli.send(b"stty size; echo o''k\r")
            cli.expect(b"33 77\r\nok\r\n")
            cli.send(b"exit 4\r")
            assert cli.wait() == 4
    finally:
        node.docker("rm", "-f", "later-tty")


def test_ctrl_d_through_the_pty_ends_a_tty_shell(node):
    with Pty(node, "run", "--rm", "-it", "--name", "eof-tty", "busybox", "sh") as cli:
        cli.expect(b"/ # ")
        cli.send(b"\x04")  # EOF is a key press on a terminal, not the end of the connection
        assert cli.wait() == 0
    assert node.out("ps", "-aq", "--filter", "name=eof-tty") == ""


def test_server_side_detach_keys_with_partial_matches_flushed(node):
    since = time.time()
    cid = node.out("run", "-dit", "--name", "echoer", "busybox", "cat")
    try:
        sock, head, rest = hijack(node, f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1"
                                        "&detachKeys=a,b")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        with sock:
            # "a" is held back, "X" breaks the match and both go through; "b" alone is no start
            sock.sendall(b"1aX")
            sock.sendall(b"b2\r")
            out = recv_until(sock, b"1aXb2\r\n", rest)
            sock.sendall(b"3a")
            sock.sendall(b"b4\r")  # "ab" detaches; "3" went before, "4\r" after is dropped
            out += recv_to_eof(sock)
        assert b"1aXb2" in out and b"4" not in out.split(b"1aXb2", 1)[1]
        assert status_of(node, cid) == "running"
        # default keys when the query has none; cat never saw the "3"-line finished, so the
        # next line it prints begins with it
        sock, _, rest = hijack(node, f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
        with sock:
            sock.sendall(b"5\r")
            recv_until(sock, b"35\r\n", rest)
            sock.sendall(b"\x10\x11")
            recv_to_eof(sock)
        assert status_of(node, cid) == "running"
        actions = node.out("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                           "--filter", "container=echoer", "--format", "{{.Action}}").split()
        assert actions.count("detach") == 2
    finally:
        node.docker("rm", "-f", cid)


# ---- non-tty ------------------------------------------------------------------------------------

def test_several_clients_attached_at_once_see_the_same_output(node):
    cid = node.out("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                   "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done")
    clients = [subprocess.Popen([DOCKER, "attach", "--no-stdin", "--sig-proxy=false", cid], env=node.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(3)]
    try:
        seen = []
        for c in clients:
            lines = []
            deadline = time.monotonic() + 10
            while len(lines) < 25 and time.monotonic() < deadline:
                ready, _, _ = select.select([c.stdout], [], [], 0.5)
                if ready:
                    lines.append(c.stdout.readline().decode().strip())
            seen.append(lines)
        firsts = [int(lines[0].split()[1]) for lines in seen]
        start = max(firsts)
        common = [[line for line in lines if int(line.split()[1]) >= start][:15] for lines in seen]
        assert common[0] == common[1] == common[2]
        assert common[0] == [f"tick {i}" for i in range(start, start + 15)]  # nothing lost, nothing doubled
    finally:
        for c in clients:
            c.kill()
            c.wait(5)
    assert status_of(node, cid) == "running"  # the clients going away did not touch the container
    node.docker("rm", "-f", cid)


def test_non_tty_attach_with_stdin(node):
    cid = node.out("run", "-di", "--name", "reader", "busybox", "sh", "-c", "read line; echo got $line; exit 4")
    cli = subprocess.Popen([DOCKER, "attach", cid], env=node.env(), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the CLI copies its stdin only once attached; stdin stays open until the answer is
        # in, since an EOF would end a non-StdinOnce attach (with dockerd too) and race it
        cli.stdin.write(b"hello\n")
        cli.stdin.flush()
        ready, _, _ = select.select([cli.stdout], [], [], 10)
        assert ready and cli.stdout.readline() == b"got hello\n"
        cli.stdin.close()
        assert cli.wait(10) == 4
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)
        node.docker("rm", "-f", cid)


def test_stdin_eof_of_a_non_stdin_once_attach_ends_it_and_leaves_the_container(node):
    cid = node.out("run", "-di", "busybox", "cat")
    try:
        sock, _, rest = hijack(node, f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
        with sock:
            sock.sendall(b"ping\n")
            recv_until(sock, b"ping\n", rest)
            sock.shutdown(socket.SHUT_WR)
            recv_to_eof(sock, timeout=5)  # the attach ends...
        assert status_of(node, cid) == "running"  # ...and cat still has its stdin
        sock, _, rest = hijack(node, f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
        with sock:
            sock.sendall(b"pong\n")
            recv_until(sock, b"pong\n", rest)
    finally:
        node.docker("rm", "-f", cid)


# ---- bad input ----------------------------------------------------------------------------------

def test_attach_to_missing_or_removed_containers(node):
    res = node.docker("attach", "gone", check=False)
    assert res.returncode == 1 and b"No such container: gone" in res.stderr
    status, _, body = request(node.docker_host, "POST", "/v1.50/containers/gone/attach?stream=1&stdout=1",
                              headers={"Connection": "Upgrade", "Upgrade": "tcp"})
    assert (status, json.loads(body)["message"]) == (404, "No such container: gone")
    res = node.docker("attach", node.out("create", "busybox", "true"), check=False)
    assert b"cannot attach to a stopped container, start it first" in res.stderr
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    cli = subprocess.Popen([DOCKER, "attach", "--no-stdin", cid], env=node.env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        node.docker("rm", "-f", cid)
        cli.communicate(timeout=10)  # not left hanging
        assert cli.returncode != 0
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(5)


def test_invalid_detach_keys_are_a_400_before_the_upgrade(node):
    cid = node.out("run", "-dit", "busybox", "cat")
    try:
        status, _, body = request(node.docker_host, "POST",
                                  f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&detachKeys=ctrl-foo",
                                  headers={"Connection": "Upgrade", "Upgrade": "tcp"})
        assert (status, json.loads(body)["message"]) == (400, "Invalid detach keys (ctrl-foo) provided")
    finally:
        node.docker("rm", "-f", cid)


@pytest.mark.parametrize("query, message", [
    ("h=99999999999&w=80", 'strconv.ParseUint: parsing "99999999999": value out of range'),
    ("h=-1&w=80", 'strconv.ParseUint: parsing "-1": invalid syntax'),
    ("h=24", 'strconv.ParseUint: parsing "": invalid syntax'),
])
def test_resize_with_absurd_sizes_is_a_400(node, query, message):
    cid = node.out("run", "-dit", "busybox", "cat")
    try:
        status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/resize?{query}")
        assert (status, json.loads(body)["message"]) == (400, message)
        status, _, _ = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/resize?h=70000&w=4000000000")
        assert status == 200  # dockerd takes any uint32 (the kernel's winsize is 16-bit: clamped)
        status, _, _ = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/resize?h=1000&w=2000")
        assert status == 200
        deadline = time.monotonic() + 5  # conmon applies it from its ctl fifo, a moment later
        while node.out("exec", cid, "sh", "-c", "stty size < /proc/1/fd/0") != "1000 2000":
            assert time.monotonic() < deadline, "resize never reached the container's tty"
            time.sleep(0.05)
    finally:
        node.docker("rm", "-f", cid)
    cid = node.out("create", "-t", "busybox", "true")
    status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/resize?h=10&w=10")
    assert (status, json.loads(body)["message"]) == (409, f"Container {cid} is not running")
    node.docker("rm", cid)


def test_attach_to_a_restarting_container_is_a_409(node):
    cid = node.out("run", "-d", "--restart", "always", "busybox", "false")
    try:
        deadline = time.monotonic() + 15
        while True:
            assert time.monotonic() < deadline, "never caught it restarting"
            if node.out("inspect", "-f", "{{.State.Restarting}}", cid) != "true":
                time.sleep(0.02)
                continue
            status, _, body = request(node.docker_host, "POST", f"/v1.50/containers/{cid}/attach?stream=1&stdout=1",
                                      headers={"Connection": "Upgrade", "Upgrade": "tcp"})
            if status == 409:
                assert json.loads(body)["message"] == \
                    f"container {cid} is restarting, wait until the container is running"
                break
    finally:
        node.docker("rm", "-f", cid)


def test_docker_py_attach_with_logs_and_no_stream_gets_the_output(node):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=node.docker_host, version="1.50", timeout=30)
    try:
        for _ in range(5):  # the lost-output race was one run in three
            ctr = client.containers.run("busybox", ["sh", "-c", "echo hello; sleep 30"], detach=True)
            try:
                deadline = time.monotonic() + 5
                while b"hello" not in ctr.logs() and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert client.api.attach(ctr.id, stream=False, logs=True, stdout=True) == b"hello\n"
            finally:
                ctr.remove(force=True)
    finally:
        client.close()
