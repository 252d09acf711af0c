"""An attached, non-tty exec run by `crun exec` as the node's own child, without conmon.

`docker exec CID cmd` (no -t, no -d) is the hot case: a monitor that outlives the node buys
nothing there, because the client's stream ends with the node anyway. crun joins the
container's namespaces, cgroups, seccomp and capabilities exactly as under conmon; its stdio
are our pipes, and it exits with the process's code (128+signal if it was killed). That
saves conmon's start-up and its two-step attach handshake (runtime/execs.py), about half the
time of an exec start.

crun's own errors go to a JSON log in the exec's directory (`--log`); a failure in its child
after the fork also reaches the process's stderr, so the engine sends an exec here only when
it has found the command in the container's root (engine/process.py executable_in), and
leaves the rest to conmon, which reports crun's errors apart from the output.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Self

import trio

from appliance.errors import SystemError_
from appliance.runtime.argv import ExecPaths

_CHUNK = 32 * 1024
_CRUN_FAILED = 255  # crun's own exit status when it could not run the process


class PipeExecSession:
    """A running piped exec: it is its own attach (receive/send/send_eof/close), wait() gives
    the exit code. The readers of both pipes run in the nursery given to start_readers() until
    the pipes end."""

    def __init__(self, paths: ExecPaths, process: trio.Process, stdin: trio.abc.SendStream | None) -> None:
        self.paths = paths
        self.exec_id = paths.exec_id
        self.attach = self
        self._process = process
        self._stdin = stdin
        self._pid = 0
        self._send, self._receive = trio.open_memory_channel[tuple[int, bytes]](16)
        self._open_readers = 0

    def start_readers(self, nursery: trio.Nursery) -> None:
        for stream, pipe in ((1, self._process.stdout), (2, self._process.stderr)):
            assert pipe is not None
            self._open_readers += 1
            nursery.start_soon(self._read, stream, pipe)

    async def _read(self, stream: int, pipe: trio.abc.ReceiveStream) -> None:
        """Forward one pipe until EOF; once the session is closed, discard what follows, so
        a process whose client went away never blocks on a full pipe."""
        listening = True
        try:
            while chunk := await pipe.receive_some(_CHUNK):
                if listening:
                    try:
                        await self._send.send((stream, chunk))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        listening = False
        finally:
            await pipe.aclose()
            self._open_readers -= 1
            if self._open_readers == 0:
                self._send.close()

    @property
    def pid(self) -> int:
        """The process's host pid, once crun has written it (0 before)."""
        if not self._pid:
            try:
                self._pid = int(self.paths.pidfile.read_text())
            except (FileNotFoundError, ValueError):
                pass
        return self._pid

    # -- RuntimeAttach -------------------------------------------------------------------------

    async def receive(self) -> tuple[int, bytes] | None:
        """Next output chunk as (1 stdout | 2 stderr, bytes); None once both pipes ended."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def send(self, data: bytes) -> None:
        if self._stdin is None:
            raise trio.ClosedResourceError("stdin is not open")
        await self._stdin.send_all(data)

    def send_eof(self) -> None:
        """The process sees EOF on its stdin."""
        stdin, self._stdin = self._stdin, None
        if stdin is not None:
            stdin.close()  # a pipe: close is immediate

    # -- lifetime ------------------------------------------------------------------------------

    async def wait(self) -> int:
        """The exec's exit code: the process's, 128+signal if it was killed; 127/126 when
        crun itself could not run it (the command vanished between the check and the exec)."""
        code = await self._process.wait()
        if code < 0:
            return 128 - code
        if code == _CRUN_FAILED:
            failure = crun_failure(self.paths)
            if failure is not None:
                return 127 if "not found" in failure else 126
        return code

    def close(self) -> None:
        """Stop listening: stdin gets EOF, later output is discarded. The process goes on
        (wait() still reaps crun)."""
        self.send_eof()
        self._receive.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def crun_failure(paths: ExecPaths) -> str | None:
    """crun's last error message for this exec, from its --log (None: it reported none)."""
    try:
        lines = paths.crun_log.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") == "error":
            return str(entry.get("msg", ""))
    return None


async def start_pipe_exec(argv: list[str], paths: ExecPaths, *, stdin: bool) -> PipeExecSession:
    """Spawn argv (crun_exec_argv) in paths.dir with pipes; the caller starts the readers."""
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=str(paths.dir), start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")})
    except OSError as exc:
        raise SystemError_(f"cannot run {argv[0]}: {exc.strerror}") from None
    return PipeExecSession(paths, process, process.stdin)
