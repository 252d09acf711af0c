"""`docker exec` through conmon: one conmon per exec session, like podman.

conmon runs `crun exec --detach --process process.json <cid>`, reports the exec's pid and
then its exit code on the sync pipe, and keeps a log and an exit file in the session's
own directory. With attach, the handshake is (conmon-notes.md §3):

  1. conmon's launcher blocks on _OCI_STARTPIPE before forking; one byte releases it;
  2. the daemon writes {"data": 0} on _OCI_ATTACHPIPE once the attach socket listens;
  3. we connect, so no output can be missed, and a second start byte runs crun exec;
  4. the sync pipe carries {"data": pid}, later {"data": exit code}.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Self

import trio

from appliance.errors import Conflict, SystemError_
from appliance.runtime.argv import ExecPaths
from appliance.runtime.attach import AttachConnection
from appliance.runtime.conmon_proto import SyncPipeReader, container_pid


class _SyncStream:
    """The sync pipe, read message by message."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._reader = SyncPipeReader()
        self._pending: list[dict] = []

    async def next(self) -> dict | None:
        while not self._pending:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                return None
            self._pending.extend(self._reader.feed(chunk))
        return self._pending.pop(0)

    def close(self) -> None:
        self._stream.close()


class ExecSession:
    """A running exec. Use `async with`; wait() gives the exit code."""

    def __init__(self, paths: ExecPaths, pid: int, conmon_pid: int, sync: _SyncStream,
                 attach: AttachConnection | None) -> None:
        self.paths = paths
        self.exec_id = paths.exec_id
        self.pid = pid
        self.conmon_pid = conmon_pid
        self.attach = attach
        self._sync = sync

    async def wait(self) -> int:
        """The exec's exit code (128+signal if killed)."""
        message = await self._sync.next()
        if message is not None and isinstance(message.get("data"), int):
            return message["data"]
        code = read_exit_code(self.paths)
        if code is None:
            raise SystemError_(f"exec {self.exec_id} ended without an exit code")
        return code

    async def aclose(self) -> None:
        if self.attach is not None:
            self.attach.close()
        self._sync.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def read_exit_code(paths: ExecPaths) -> int | None:
    try:
        return int(paths.exit_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


async def _expect(stream: trio.lowlevel.FdStream, what: str) -> dict:
    reader = SyncPipeReader()
    while True:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise SystemError_(f"conmon exited before {what}")
        messages = reader.feed(chunk)
        if messages:
            return messages[0]


def write_exec_dir(paths: ExecPaths, process: dict) -> None:
    try:
        paths.dir.mkdir(parents=True)
    except FileExistsError:
        raise Conflict(f"exec {paths.exec_id} already exists") from None
    paths.exits.mkdir()
    paths.process.write_text(json.dumps(process))


async def start_exec(*, argv: list[str], paths: ExecPaths, attach: bool,
                     timeout: float) -> ExecSession:
    """Launch conmon for an exec whose directory write_exec_dir() prepared."""
    return await _launch(argv, paths, attach, timeout)


async def _launch(argv: list[str], paths: ExecPaths, attach: bool, timeout: float) -> ExecSession:
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    sync = _SyncStream(sync_r)
    child_fds = [sync_w]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "_OCI_SYNCPIPE": str(sync_w)}
    attach_stream = start_stream = None
    if attach:
        attach_r, attach_w = os.pipe2(os.O_CLOEXEC)
        start_r, start_w = os.pipe2(os.O_CLOEXEC)
        attach_stream = trio.lowlevel.FdStream(attach_r)
        start_stream = trio.lowlevel.FdStream(start_w)
        child_fds += [attach_w, start_r]
        env.update({"_OCI_ATTACHPIPE": str(attach_w), "_OCI_STARTPIPE": str(start_r)})
    launcher: trio.Process | None = None
    conn: AttachConnection | None = None
    ok = False
    try:
        with trio.fail_after(timeout):
            try:
                launcher = await trio.lowlevel.open_process(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, cwd=str(paths.dir), env=env, pass_fds=child_fds)
            finally:
                for fd in child_fds:
                    os.close(fd)
            if attach_stream is not None and start_stream is not None:
                await start_stream.send_all(b"0")      # 1: let the launcher fork
                await launcher.wait()
                ready = await _expect(attach_stream, "its attach socket was ready")
                if ready.get("data") != 0:
                    container_pid(ready)  # raises the typed error
                conn = await AttachConnection.connect(paths.dir, paths.exec_id)
                await start_stream.send_all(b"0")      # 2: run crun exec
            else:
                await launcher.wait()
            message = await sync.next()
        if message is None:
            raise SystemError_(f"conmon exited without starting exec {paths.exec_id}")
        if message.get("data", -1) < 0 and "not running" in str(message.get("message", "")):
            raise Conflict(str(message.get("message")).strip())
        pid = container_pid(message)
        conmon_pid = int(paths.conmon_pidfile.read_text())
        ok = True
        return ExecSession(paths, pid, conmon_pid, sync, conn)
    except trio.TooSlowError:
        raise SystemError_(f"timed out after {timeout:g}s starting exec {paths.exec_id}") from None
    finally:
        for stream in (attach_stream, start_stream):
            if stream is not None:
                stream.close()  # EOF on the start pipe releases a launcher still waiting on it
        if launcher is not None and launcher.returncode is None:
            # The launcher is our child: reap it even when cancelled.
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + 5
                await launcher.wait()
            if launcher.returncode is None:
                launcher.kill()
                with trio.CancelScope(shield=True):
                    await launcher.wait()
        if not ok:
            if conn is not None:
                conn.close()
            sync.close()
