"""Container lifecycle: create, start, stop, kill, remove, wait, rename, attach, and the supervisor.

The supervisor is the nursery in `run()`: one task per running container waits on its monitor
(conmon) and records the exit. On start it reconciles the store with what really runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from ..errors import (
    ApplianceError, Conflict, InvalidParameter, NotFound, NotModified,
)
from ..runtime import spec as rspec
from ..runtime.conmon_proto import CommandNotExecutable, CommandNotFound
from ..runtime.logfile import LogFollower, select
from ..store import Store
from ..store.records import ContainerConfig, ContainerRecord, HostConfig, MountPoint
from . import mounts as mount_rules
from .attach import AttachClient, AttachConns, AttachOptions, pump
from .events import EventLog
from .naming import check_container_name, generated_name, new_id
from .process import merge_env, resolve_user_in
from .signals import parse_signal

log = logging.getLogger(__name__)

MIN_MEMORY = 6 * 1024 * 1024


@dataclass
class _Watch:
    """State-change notifications for `wait`: an Event replaced on every change."""

    changed: trio.Event = field(default_factory=trio.Event)
    exits: int = 0
    last_exit: int = 0
    removed: bool = False

    def notify(self) -> None:
        ev, self.changed = self.changed, trio.Event()
        ev.set()


@dataclass
class _StartWaiter:
    """An attach that arrived before start: start() hands it conmon connections before `crun start`."""

    wants_stdin: bool
    ready: trio.Event = field(default_factory=trio.Event)
    conns: AttachConns | None = None


@dataclass(frozen=True)
class NodeLimits:
    ncpu: int
    nofile: tuple[int, int]
    idmap: rspec.IdMap | None
    cgroup_parent: str


class ContainerService:
    def __init__(self, *, store: Store, events: EventLog, images, volumes, runtime, node: str,
                 tenant: str, limits: NodeLimits):
        self._store, self._events, self._images, self._volumes = store, events, images, volumes
        self._runtime, self._node, self._tenant, self._limits = runtime, node, tenant, limits
        self._watches: dict[str, _Watch] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._start_waiters: dict[str, list[_StartWaiter]] = {}
        self._nursery: trio.Nursery | None = None

    # ---- supervisor -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._reconcile()
            task_status.started()
            await trio.sleep_forever()

    async def _reconcile(self) -> None:
        """Make the store true after a restart or kill -9, and remove leftovers of deleted containers."""
        with self._store.read() as txn:
            records = list(txn.containers.values())
        for rec in records:
            if rec.state.status == "removing":
                await self._finish_remove(rec, remove_volumes=True)
                continue
            if rec.state.status not in ("running", "created"):
                continue
            status = self._runtime.exit_status(rec.id)
            conmon_pid = rec.state.conmon_pid or self._runtime.conmon_pid(rec.id)
            if status is not None:
                await self._record_exit(rec.id, status)
            elif conmon_pid and _alive(conmon_pid):
                pid = rec.state.pid or self._runtime.container_pid(rec.id)
                if rec.state.status == "created":  # acknowledged start was in flight: it did start
                    self._update_state(rec.id, status="running", pid=pid, conmon_pid=conmon_pid,
                                       started_at=time.time_ns())
                self._spawn_supervisor(rec.id, conmon_pid)
            elif rec.state.status == "running":
                await self._runtime.cleanup(rec.id)
                self._update_state(rec.id, status="exited", exit_code=255, pid=0,
                                   finished_at=time.time_ns(), error="container monitor lost")
        known = {r.id for r in records}
        for leftover in self._runtime.leftovers(known):
            log.info("removing leftovers of deleted container %s", leftover)
            await self._runtime.remove(leftover)

    def _spawn_supervisor(self, cid: str, conmon_pid: int) -> None:
        assert self._nursery is not None, "ContainerService.run() owns the supervisors"
        self._nursery.start_soon(self._supervise, cid, conmon_pid)

    async def _supervise(self, cid: str, conmon_pid: int) -> None:
        status = await self._runtime.wait_exit(cid, conmon_pid)
        await self._record_exit(cid, status)

    async def _record_exit(self, cid: str, status) -> None:
        # Store first: cleanup deletes the exit file, and a crash between the two must not lose the code.
        rec = self._update_state(cid, status="exited", exit_code=status.code, oom_killed=status.oom_killed,
                                 pid=0, finished_at=status.finished_at_ns or time.time_ns())
        await self._runtime.cleanup(cid)
        if rec is None:
            return
        if status.oom_killed:
            self._publish(rec, "oom")
        duration = max(0, (rec.state.finished_at - rec.state.started_at) // 1_000_000_000)
        self._publish(rec, "die", exitCode=str(status.code), execDuration=str(duration))
        watch = self._watch(cid)
        watch.exits += 1
        watch.last_exit = status.code
        watch.notify()
        if rec.host_config.auto_remove:
            await self.remove(cid, force=True, remove_volumes=True)

    # ---- lookups ------------------------------------------------------------------------------

    def _lookup(self, ref: str) -> ContainerRecord | None:
        with self._store.read() as txn:
            rec = txn.containers.get(ref) if len(ref) == 64 else None
            if rec:
                return rec
            cid = txn.names.get(ref.lstrip("/"))
            if cid:
                return txn.containers.get(cid)
            if not ref or not all(c in "0123456789abcdef" for c in ref):
                return None
            hits = txn.containers.keys_with_prefix(ref)
            if len(hits) > 1:
                raise InvalidParameter(f"Multiple IDs found with provided prefix: {ref}")
            return txn.containers.get(hits[0]) if hits else None

    def get(self, ref: str) -> ContainerRecord:
        rec = self._lookup(ref)
        if rec is None:
            raise NotFound(f"No such container: {ref}")
        return rec

    def list(self) -> list[ContainerRecord]:
        with self._store.read() as txn:
            return sorted(txn.containers.values(), key=lambda r: r.created, reverse=True)

    def counts(self) -> dict[str, int]:
        out = {"running": 0, "paused": 0, "stopped": 0}
        for rec in self.list():
            out["running" if rec.state.status == "running" else "stopped"] += 1
        return out

    def is_running(self, cid: str) -> bool:
        rec = self._lookup(cid)
        return rec is not None and rec.state.status == "running"

    def change_event(self, cid: str) -> trio.Event:
        """Set at this container's next state change."""
        return self._watch(cid).changed

    def _watch(self, cid: str) -> _Watch:
        return self._watches.setdefault(cid, _Watch())

    def _lock(self, cid: str) -> trio.Lock:
        return self._locks.setdefault(cid, trio.Lock())

    def _update_state(self, cid: str, **changes) -> ContainerRecord | None:
        with self._store.write() as txn:
            rec = txn.containers.get(cid)
            if rec is None:
                return None
            rec.state = replace(rec.state, **changes)
            txn.containers.put(cid, rec)
        self._watch(cid).notify()
        return rec

    def _publish(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**rec.config.labels, "image": rec.config.image, "name": rec.name, **extra}
        self._events.publish("container", action, rec.id, attrs)

    # ---- create -------------------------------------------------------------------------------

    def create(self, name: str | None, config: ContainerConfig, host: HostConfig) -> tuple[ContainerRecord, list[str]]:
        """Validate everything, then create volumes and commit the record; nothing half-made on error."""
        if name:
            name = check_container_name(name)
        self._check_limits(host)
        image = self._images.resolve(config.image)
        icfg = self._images.runtime_config(image)
        path, args = _command(config, icfg)
        mounts = mount_rules.resolve(host, list((icfg.get("Volumes") or {}).keys()), config.volumes)
        cid = new_id()
        config = replace(config, hostname=config.hostname or cid[:12],
                         env=merge_env(icfg.get("Env") or [], config.env, default_path=True),
                         working_dir=config.working_dir or icfg.get("WorkingDir") or "",
                         user=config.user or icfg.get("User") or "",
                         labels={**(icfg.get("Labels") or {}), **config.labels},
                         stop_signal=config.stop_signal or icfg.get("StopSignal") or "")
        if name is None:
            name = self._free_generated_name()
        self._check_name_free(name)
        created_volumes: list[str] = []
        try:
            resolved = []
            for m in mounts:
                if m.type == "volume":
                    vol = self._volumes.create(m.name or None, anonymous=not m.name)
                    if not m.name:
                        created_volumes.append(vol.name)
                    m = replace(m, name=vol.name, source=vol.mountpoint)
                resolved.append(m)
            rec = ContainerRecord(id=cid, name=name, node=self._node, tenant=self._tenant,
                                  created=time.time_ns(), image_id=image.id, config=config,
                                  host_config=host, path=path, args=args, mounts=resolved)
            with self._store.write() as txn:
                other = txn.names.get(name)
                if other:
                    raise _name_conflict(name, other)
                txn.containers.put(cid, rec)
                txn.names.put(name, cid)
        except BaseException:
            for vol in created_volumes:
                self._volumes.remove(vol, force=True)
            raise
        self._publish(rec, "create")
        return rec, []

    def _check_limits(self, host: HostConfig) -> None:
        if host.memory < 0 or host.memory_swap < -1 or host.cpu_shares < 0 or host.cpu_quota < -1 \
                or host.cpu_period < 0 or host.nano_cpus < 0:
            raise InvalidParameter("invalid resource value: limits must not be negative")
        if 0 < host.memory < MIN_MEMORY:
            raise InvalidParameter("Minimum memory limit allowed is 6MB")
        if host.memory and host.memory_swap > 0 and host.memory_swap < host.memory:
            raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
        ncpu = self._limits.ncpu
        if host.nano_cpus and (host.nano_cpus < 10_000_000 or host.nano_cpus > ncpu * 1_000_000_000):
            raise InvalidParameter(
                f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        if host.nano_cpus and (host.cpu_quota > 0 or host.cpu_period > 0):
            raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if host.cpu_period and not 1000 <= host.cpu_period <= 1_000_000:
            raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second (i.e. 1000000)")
        if host.cpu_quota > 0 and host.cpu_quota < 1000:
            raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if host.restart_policy not in ("", "no", "always", "unless-stopped", "on-failure"):
            raise InvalidParameter(f"invalid restart policy '{host.restart_policy}'")
        if host.auto_remove and host.restart_policy not in ("", "no"):
            raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
        if host.network_mode not in ("", "default", "bridge", "none", "host"):
            raise NotFound(f"network {host.network_mode} not found")

    def _free_generated_name(self) -> str:
        with self._store.read() as txn:
            for _ in range(32):
                name = generated_name()
                if txn.names.get(name) is None:
                    return name
        return f"{generated_name()}_{new_id()[:6]}"

    def _check_name_free(self, name: str) -> None:
        with self._store.read() as txn:
            other = txn.names.get(name)
        if other:
            raise _name_conflict(name, other)

    # ---- start --------------------------------------------------------------------------------

    async def start(self, ref: str) -> None:
        cid = self.get(ref).id
        async with self._lock(cid):
            rec = self.get(cid)
            if rec.state.status == "running":
                raise NotModified("container already started")
            if rec.state.status == "removing":
                raise Conflict(f"container {cid} is marked for removal and cannot be started")
            await self._start_locked(rec)

    async def _start_locked(self, rec: ContainerRecord) -> None:
        cid = rec.id
        await self._runtime.cleanup(cid)  # a previous run's bundle and rootfs
        try:
            image = self._images.get_by_id(rec.image_id)
            rootfs = await self._runtime.prepare_rootfs(cid, self._images.lower_dirs(image),
                                                         idmap=self._limits.idmap)
            _ensure_dir(rootfs, rec.config.working_dir or "/", self._limits.idmap)
            for m in rec.mounts:  # Docker copies the image's files into a new, empty volume
                if m.type == "volume" and "nocopy" not in m.mode.split(","):
                    await self._volumes.populate(m.name, rootfs, m.destination)
            uid, gid, gids = resolve_user_in(rootfs, rec.config.user)
            launched = await self._runtime.create(self._spec(rec, uid, gid, gids), rootfs)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._runtime.cleanup(cid)
            code = 127 if isinstance(exc, CommandNotFound) else 126 if isinstance(exc, CommandNotExecutable) else 128
            self._update_state(cid, status="exited" if rec.state.started_at else "created",
                               exit_code=code, error=getattr(exc, "message", str(exc)))
            self._fail_start_waiters(cid)
            if rec.host_config.auto_remove:  # the CLI waits for condition=removed after a failed start
                await self._finish_remove(self._update_state(cid, status="removing") or rec, True)
            if isinstance(exc, ApplianceError) and code in (126, 127):
                raise InvalidParameter(_docker_start_error(exc)) from exc
            raise
        try:
            height, width = rec.host_config.console_size
            if rec.config.tty and height and width:  # before start, so the first prompt fits
                await self._runtime.resize(cid, height, width)
            await self._hand_over_attachers(cid)
            started_at = time.time_ns()  # before `crun start`: no output can predate StartedAt
            await self._runtime.start(cid)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._runtime.kill(cid, signal.SIGKILL, missing_ok=True)
            raise
        finally:
            self._spawn_supervisor(cid, launched.conmon_pid)
        rec = self._update_state(cid, status="running", pid=launched.pid, conmon_pid=launched.conmon_pid,
                                 started_at=started_at, finished_at=0, exit_code=0, oom_killed=False,
                                 error="")
        self._publish(rec, "start")

    def _spec(self, rec: ContainerRecord, uid: int, gid: int, gids: tuple[int, ...]) -> rspec.ContainerSpec:
        cfg, host = rec.config, rec.host_config
        env = [*cfg.env]
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.insert(0, f"HOSTNAME={cfg.hostname}")
        if cfg.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        return rspec.ContainerSpec(
            id=rec.id, args=(rec.path, *rec.args), env=tuple(env), cwd=cfg.working_dir or "/",
            uid=uid, gid=gid, additional_gids=tuple(gids), hostname=cfg.hostname, tty=cfg.tty,
            readonly_rootfs=host.readonly_rootfs, mounts=tuple(_mount_spec(m) for m in rec.mounts),
            resources=rspec.Resources(memory=host.memory, memory_swap=host.memory_swap,
                                      nano_cpus=host.nano_cpus, cpu_shares=host.cpu_shares,
                                      cpu_period=host.cpu_period, cpu_quota=host.cpu_quota,
                                      pids_limit=host.pids_limit),
            idmap=self._limits.idmap, cgroup_path=f"{self._limits.cgroup_parent}/{rec.id}",
            netns_path=None, open_stdin=cfg.open_stdin, stdin_once=cfg.stdin_once)

    async def _hand_over_attachers(self, cid: str) -> None:
        for waiter in self._start_waiters.pop(cid, []):
            output = await self._runtime.open_attach(cid)
            stdin = await self._runtime.open_attach(cid) if waiter.wants_stdin else None
            waiter.conns = AttachConns(output, stdin)
            waiter.ready.set()

    def _fail_start_waiters(self, cid: str) -> None:
        for waiter in self._start_waiters.pop(cid, []):
            waiter.ready.set()  # conns stays None: the attach ends without output

    # ---- stop, kill, restart ------------------------------------------------------------------

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        if rec.state.status != "running":
            raise NotModified("container already stopped")
        stop_signal = parse_signal(sig or rec.config.stop_signal or None, default=signal.SIGTERM)
        if timeout is None:
            timeout = rec.config.stop_timeout if rec.config.stop_timeout is not None else 10
        await self._stop(rec, stop_signal, timeout)
        self._publish(self.get(rec.id), "stop")

    async def _stop(self, rec: ContainerRecord, stop_signal: int, timeout: int) -> None:
        self._publish(rec, "kill", signal=str(stop_signal))
        await self._runtime.kill(rec.id, stop_signal, missing_ok=True)
        if await self._wait_not_running(rec.id, None if timeout < 0 else timeout):
            return
        self._publish(rec, "kill", signal=str(int(signal.SIGKILL)))
        await self._runtime.kill(rec.id, signal.SIGKILL, missing_ok=True)
        await self._wait_not_running(rec.id, None)

    async def _wait_not_running(self, cid: str, timeout: float | None) -> bool:
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            while True:
                watch = self._watch(cid)
                changed = watch.changed
                rec = self._lookup(cid)
                if rec is None or rec.state.status != "running":
                    return True
                await changed.wait()
        return False

    async def kill(self, ref: str, sig: str | None = None) -> None:
        rec = self.get(ref)
        signum = parse_signal(sig)
        if rec.state.status != "running":
            raise Conflict(f"cannot kill container: {ref}: container {rec.id} is not running")
        self._publish(rec, "kill", signal=str(signum))
        await self._runtime.kill(rec.id, signum, missing_ok=True)
        if signum == signal.SIGKILL:
            await self._wait_not_running(rec.id, 10)

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        if rec.state.status == "running":
            await self.stop(ref, timeout, sig)
        await self.start(rec.id)
        self._publish(self.get(rec.id), "restart")

    # ---- remove, rename, prune ----------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, remove_volumes: bool = False) -> None:
        rec = self.get(ref)
        if rec.state.status == "running":
            if not force:
                raise Conflict(f'cannot remove container "/{rec.name}": container is running: '
                               "stop the container before removing or force remove")
            await self._runtime.kill(rec.id, signal.SIGKILL, missing_ok=True)
            await self._wait_not_running(rec.id, 10)
        rec = self._update_state(rec.id, status="removing")
        if rec is not None:
            await self._finish_remove(rec, remove_volumes)

    async def _finish_remove(self, rec: ContainerRecord, remove_volumes: bool) -> None:
        with trio.CancelScope(shield=True):
            await self._runtime.remove(rec.id)
        with self._store.write() as txn:
            if txn.containers.delete(rec.id) and txn.names.get(rec.name) == rec.id:
                txn.names.delete(rec.name)
        if remove_volumes:
            for m in rec.mounts:
                if m.type == "volume" and self._is_anonymous(m.name) and not self._volumes.users(m.name):
                    self._volumes.remove(m.name, force=True)
        self._publish(rec, "destroy")
        watch = self._watches.pop(rec.id, _Watch())
        watch.removed = True
        watch.notify()
        self._locks.pop(rec.id, None)

    def _is_anonymous(self, name: str) -> bool:
        try:
            return self._volumes.get(name).anonymous
        except NotFound:
            return False

    def rename(self, ref: str, new_name: str) -> None:
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        rec = self.get(ref)
        new_name = check_container_name(new_name)
        if new_name == rec.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        with self._store.write() as txn:
            other = txn.names.get(new_name)
            if other:
                raise _name_conflict(new_name, other)
            txn.names.delete(rec.name)
            txn.names.put(new_name, rec.id)
            old = rec.name
            rec.name = new_name
            txn.containers.put(rec.id, rec)
        self._publish(rec, "rename", oldName=f"/{old}")

    async def prune(self, keep: Callable[[ContainerRecord], bool]) -> list[str]:
        removed = []
        for rec in self.list():
            if rec.state.status in ("exited", "created", "dead") and not keep(rec):
                await self.remove(rec.id, remove_volumes=False)
                removed.append(rec.id)
        return removed

    # ---- wait and attach ----------------------------------------------------------------------

    def prepare_wait(self, ref: str, condition: str) -> Callable[[], Awaitable[int]]:
        """Resolve now (so a missing container is a JSON 404), wait later (after headers are sent)."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        rec = self.get(ref)
        cid = rec.id
        watch = self._watch(cid)
        exits_seen = watch.exits

        async def wait() -> int:
            while True:
                w = self._watches.get(cid, watch)
                changed = w.changed
                current = self._lookup(cid)
                if condition == "removed":
                    if w.removed or current is None:
                        return w.last_exit if w.exits else (current.state.exit_code if current else rec.state.exit_code)
                elif condition == "next-exit":
                    if w.exits > exits_seen:
                        return w.last_exit
                    if current is None:
                        return w.last_exit
                else:
                    if current is None or current.state.status != "running":
                        return current.state.exit_code if current else w.last_exit
                await changed.wait()

        return wait

    async def attach(self, ref: str, opts: AttachOptions,
                     get_streams: Callable[[bool], Awaitable[AttachClient]]) -> None:
        rec = self.get(ref)
        if rec.state.status == "removing":
            raise Conflict(f"container {rec.id} is marked for removal")
        if not opts.stream:  # logs=1&stream=0: what was written so far, then the end
            client = await get_streams(rec.config.tty)
            if opts.logs:
                await self._replay_log(rec, opts, client)
            await client.close_output()
            return
        wants_stdin = opts.stdin and rec.config.open_stdin
        waiter = None
        if rec.state.status != "running":  # `start -a` attaches first: stream from the next start
            waiter = _StartWaiter(wants_stdin)
            self._start_waiters.setdefault(rec.id, []).append(waiter)
        try:
            client = await get_streams(rec.config.tty)
            self._publish(rec, "attach")
            if opts.logs:
                await self._replay_log(rec, opts, client)
            if waiter is not None:
                await waiter.ready.wait()
                conns = waiter.conns
            else:
                conns = AttachConns(await self._runtime.open_attach(rec.id),
                                    await self._runtime.open_attach(rec.id) if wants_stdin else None)
            if conns is None:
                await client.close_output()
                return
            try:
                await pump(client, conns, replace(opts, stdin=wants_stdin), rec.config.stdin_once)
            finally:
                await conns.aclose()
        finally:
            if waiter is not None and waiter in self._start_waiters.get(rec.id, []):
                self._start_waiters[rec.id].remove(waiter)

    @contextlib.asynccontextmanager
    async def mounted_rootfs(self, ref: str) -> AsyncIterator[tuple[ContainerRecord, Path]]:
        """The container's assembled root filesystem for cp/export/diff/commit, running or not.

        Holds the container's lifecycle lock, so it cannot start, stop or be removed meanwhile;
        a stopped container's overlay is mounted for the duration and unmounted after."""
        cid = self.get(ref).id
        async with self._lock(cid):
            rec = self.get(cid)
            if rec.state.status == "running":
                yield rec, self._runtime.paths(cid).rootfs
                return
            image = self._images.get_by_id(rec.image_id)
            rootfs = await self._runtime.prepare_rootfs(cid, self._images.lower_dirs(image),
                                                        idmap=self._limits.idmap)
            try:
                yield rec, rootfs
            finally:
                with trio.CancelScope(shield=True):
                    await self._runtime.cleanup(cid)

    def upper_dir(self, cid: str) -> Path:
        """The container's own writable layer (what `docker diff` and `commit` read)."""
        return self._runtime.paths(cid).upper

    async def _replay_log(self, rec: ContainerRecord, opts: AttachOptions, client: AttachClient) -> None:
        entries = await LogFollower(self._runtime.log_path(rec.id)).read_available(final=True)
        for entry in select(entries, stdout=opts.stdout, stderr=opts.stderr):
            await client.send_output(1 if entry.stream == "stdout" else 2, entry.data)

    async def resize(self, ref: str, height: int, width: int) -> None:
        rec = self.get(ref)
        if rec.state.status != "running":
            raise Conflict(f"Container {rec.id} is not running")
        if rec.config.tty and height and width:
            await self._runtime.resize(rec.id, height, width)

    def log_path(self, ref: str) -> tuple[ContainerRecord, Path]:
        rec = self.get(ref)
        return rec, self._runtime.log_path(rec.id)


# ---- pure helpers -------------------------------------------------------------------------------

def _name_conflict(name: str, other: str) -> Conflict:
    return Conflict(f'Conflict. The container name "/{name}" is already in use by container "{other}". '
                    "You have to remove (or rename) that container to be able to reuse that name.")


def _command(config: ContainerConfig, icfg: dict) -> tuple[str, list[str]]:
    """Docker's rule: --entrypoint replaces the image's and drops the image's CMD."""
    entrypoint = config.entrypoint if config.entrypoint is not None else (icfg.get("Entrypoint") or [])
    if config.cmd is not None:
        cmd = config.cmd
    elif config.entrypoint is not None:
        cmd = []
    else:
        cmd = icfg.get("Cmd") or []
    full = [*entrypoint, *cmd]
    if not full or not full[0]:
        raise InvalidParameter("no command specified")
    return full[0], full[1:]


def _mount_spec(m: MountPoint) -> rspec.MountSpec:
    if m.type == "tmpfs":
        opts = ["nosuid", "nodev", "noexec", *[o for o in m.options.split(",") if o]]
        return rspec.MountSpec(m.destination, "tmpfs", "tmpfs", tuple(opts))
    return rspec.MountSpec(m.destination, m.source, "bind", ("rbind", "rprivate", "rw" if m.rw else "ro"))


def _ensure_dir(rootfs: Path, workdir: str, idmap) -> None:
    """Docker creates a missing working directory, owned by container root."""
    target = rootfs / workdir.lstrip("/")
    if workdir in ("", "/") or target.exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    if idmap is not None:
        os.chown(target, idmap.host_base, idmap.host_base)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _docker_start_error(exc: ApplianceError) -> str:
    """Reword crun's failure as dockerd does; the CLI picks exit 127/126 from these words."""
    text = exc.message.strip()
    m = re.search(r"[`'\"]([^`'\"]+)[`'\"]", text)
    what = m.group(1) if m else text
    if isinstance(exc, CommandNotFound):
        detail = "executable file not found in $PATH" if "$PATH" in text else "no such file or directory"
    elif isinstance(exc, CommandNotExecutable):
        detail = "permission denied"
    else:
        return f"failed to create task for container: OCI runtime create failed: {text}"
    return (f"failed to create task for container: OCI runtime create failed: unable to start "
            f'container process: exec: "{what}": {detail}')
