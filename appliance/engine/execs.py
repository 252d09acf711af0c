"""`docker exec`: exec instances (kept in memory, as dockerd keeps them) run through the runtime.

Start is called by the hijack path with a get_streams callback: the exec is resolved and
validated first (errors are JSON), then the client is upgraded, then the process starts with
its attach socket already connected, so no output is lost.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ..errors import ApplianceError, Conflict, InvalidParameter, NotFound
from ..runtime.conmon_proto import CommandNotExecutable, CommandNotFound
from ..runtime.spec import ExecSpec
from .attach import AttachClient, AttachConns, AttachOptions, pump
from .detach import DEFAULT_DETACH_KEYS
from .naming import new_id
from .process import (
    command_line,
    exec_failure,
    executable_in,
    merge_env,
    resolve_user_in,
)

log = logging.getLogger(__name__)

_KEEP = 4096  # finished exec instances remembered for inspect (dockerd keeps them until the container goes)


@dataclass
class ExecConfig:
    cmd: list[str]
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    privileged: bool = False
    console_size: tuple[int, int] = (0, 0)
    detach_keys: bytes = DEFAULT_DETACH_KEYS


@dataclass
class ExecInstance:
    id: str
    container_id: str
    config: ExecConfig
    running: bool = False
    exit_code: int | None = None
    started: bool = False
    session: object = field(default=None, repr=False)  # the running process's runtime session

    @property
    def pid(self) -> int:
        return getattr(self.session, "pid", 0) or 0


class ExecService:
    def __init__(self, containers, runtime):
        self._containers, self._runtime = containers, runtime
        self._execs: collections.OrderedDict[str, ExecInstance] = collections.OrderedDict()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Owns detached execs (`docker exec -d`)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def create(self, ref: str, config: ExecConfig) -> ExecInstance:
        rec = self._containers.get(ref)
        if not config.cmd:
            raise InvalidParameter("No exec command specified")
        if config.privileged:
            raise InvalidParameter("privileged exec is not supported: every process stays isolated")
        _check_runnable(rec)
        inst = ExecInstance(id=new_id(), container_id=rec.id, config=config)
        self._execs[inst.id] = inst
        self._event(inst, f"exec_create: {command_line(config.cmd)}")
        while len(self._execs) > _KEEP:
            self._execs.popitem(last=False)
        return inst

    def get(self, exec_id: str) -> ExecInstance:
        inst = self._execs.get(exec_id)
        if inst is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return inst

    def _prepare(self, exec_id: str) -> tuple[ExecInstance, ExecSpec]:
        inst = self.get(exec_id)
        if inst.started:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        rec = self._containers.get(inst.container_id)
        _check_runnable(rec)
        cfg = inst.config
        uid, gid, gids = resolve_user_in(self._runtime.paths(rec.id).rootfs, cfg.user or rec.config.user)
        env = merge_env(rec.config.env, cfg.env)
        if cfg.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        spec = ExecSpec(args=tuple(cfg.cmd), env=tuple(env), cwd=cfg.working_dir or rec.config.working_dir or "/",
                        uid=uid, gid=gid, additional_gids=tuple(gids), tty=cfg.tty,
                        open_stdin=cfg.attach_stdin)
        inst.started = True
        return inst, spec

    async def start(self, exec_id: str, get_streams: Callable[[bool], Awaitable[AttachClient]]) -> None:
        inst, spec = self._prepare(exec_id)
        client = await get_streams(inst.config.tty)
        try:
            session = await self._open_session(inst, spec)
        except (CommandNotFound, CommandNotExecutable) as exc:
            inst.exit_code = 127 if isinstance(exc, CommandNotFound) else 126
            await client.send_output(1, (_docker_exec_error(exc, inst.config.cmd[0]) + "\r\n").encode())
            await client.close_output()
            return
        except ApplianceError as exc:
            inst.exit_code = 126
            await client.send_output(1, (f"OCI runtime exec failed: {exc.message}\r\n").encode())
            await client.close_output()
            return
        inst.running, inst.session = True, session
        try:
            height, width = inst.config.console_size
            if inst.config.tty and height and width:
                await self._runtime.resize_exec(inst.container_id, inst.id, height, width)
            conns = AttachConns(session.attach, session.attach if inst.config.attach_stdin else None)
            opts = AttachOptions(stdin=inst.config.attach_stdin, stdout=inst.config.attach_stdout,
                                 stderr=inst.config.attach_stderr,
                                 detach_keys=inst.config.detach_keys if inst.config.tty else None)
            detached = await pump(client, conns, opts, stdin_once=True, tty=inst.config.tty,
                                  close_output=False)
            if not detached:
                self._exited(inst, await session.wait())
        finally:
            if inst.exit_code is None:
                # Detached, the client went away, or we were cancelled: the process goes on,
                # and a task the service owns records its end.
                assert self._nursery is not None, "ExecService.run() owns running execs"
                session.attach.close()
                self._nursery.start_soon(self._finish, inst, session)
            else:
                with trio.CancelScope(shield=True):
                    await session.aclose()
        await client.close_output()

    async def _open_session(self, inst: ExecInstance, spec: ExecSpec):
        """The process started, attached: `crun exec` as our own child for a non-tty command
        found in the image's root (runtime/pipe_exec.py), else through conmon, which also
        reports crun's errors apart from the process's output."""
        self._event(inst, f"exec_start: {command_line(inst.config.cmd)}")
        rootfs = self._runtime.paths(inst.container_id).rootfs
        # A few lookups in the container's root, like resolve_user_in's: cheaper than a thread hop.
        if not spec.tty and executable_in(rootfs, spec.args[0], spec.env):
            assert self._nursery is not None, "ExecService.run() owns the output readers"
            return await self._runtime.exec_piped(inst.container_id, inst.id, spec, self._nursery)
        return await self._runtime.exec(inst.container_id, inst.id, spec, attach=True)

    async def _finish(self, inst: ExecInstance, session) -> None:
        async with session:
            self._exited(inst, await session.wait())

    def _exited(self, inst: ExecInstance, code: int) -> None:
        inst.exit_code, inst.running = code, False
        self._event(inst, "exec_die", exitCode=str(code))

    def _event(self, inst: ExecInstance, action: str, **extra: str) -> None:
        self._containers.publish_event(inst.container_id, action, execID=inst.id, **extra)

    async def start_detached(self, exec_id: str) -> None:
        """`docker exec -d`: answers once the process runs, as dockerd does (an inspect or a
        resize right after sees it running); conmon keeps it, a task of the service records
        its end."""
        inst, spec = self._prepare(exec_id)
        assert self._nursery is not None, "ExecService.run() owns detached execs"
        self._event(inst, f"exec_start: {command_line(inst.config.cmd)}")
        try:
            session = await self._runtime.exec(inst.container_id, inst.id, spec, attach=False)
        except (CommandNotFound, CommandNotExecutable) as exc:
            inst.exit_code = 127 if isinstance(exc, CommandNotFound) else 126
            raise InvalidParameter(_docker_exec_error(exc, inst.config.cmd[0])) from exc
        inst.running, inst.session = True, session
        self._nursery.start_soon(self._finish, inst, session)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        inst = self.get(exec_id)
        if not inst.running:
            raise Conflict(f"Exec {exec_id} is not running")
        if inst.config.tty:
            await self._runtime.resize_exec(inst.container_id, inst.id, height, width)


def _check_runnable(rec) -> None:
    if rec.state.status == "paused":
        raise Conflict(f"Container {rec.id} is paused, unpause the container before exec")
    if rec.state.status != "running":
        raise Conflict(f"container {rec.id} is not running")


def _docker_exec_error(exc: ApplianceError, command: str) -> str:
    failure = exec_failure(exc, command) or exc.message.strip()
    return f"OCI runtime exec failed: exec failed: unable to start container process: {failure}: unknown"
