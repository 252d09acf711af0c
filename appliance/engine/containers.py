"""Container lifecycle: create, start, stop, kill, pause, update, remove, wait, rename, attach,
and the supervisor.

The supervisor is the nursery in `run()`: one task per live container waits on its monitor
(conmon), runs its health checks, records the exit and applies the restart policy (back-off
included, in the same task). On start it reconciles the store with what really runs and starts
what the restart policies say should run.

States (ContainerState.status): created -> running <-> paused; running -> restarting (a policy
restart is waiting out its back-off) -> running; running | restarting -> exited; any -> removing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from ..errors import (
    ApplianceError,
    Conflict,
    InvalidParameter,
    NotFound,
    NotModified,
    SystemError_,
)
from ..runtime import spec as rspec
from ..runtime.conmon_proto import CommandNotExecutable, CommandNotFound
from ..runtime.logfile import LogFollower, select
from ..runtime.resources import MemoryBelowUsage
from ..store import Store
from ..store.records import (
    LIVE_STATUSES,
    ContainerConfig,
    ContainerRecord,
    HealthResult,
    HealthState,
    HostConfig,
    MountPoint,
)
from . import health as health_rules
from . import mounts as mount_rules
from . import restart as restart_policy
from .attach import AttachClient, AttachConns, AttachOptions, pump
from .detach import parse_detach_keys
from .events import EventLog
from .naming import check_container_name, generated_name, new_id
from .networks import build_init_layer
from .process import command_line, exec_failure, merge_env, resolve_user_in
from .signals import parse_signal

log = logging.getLogger(__name__)

MIN_MEMORY = 6 * 1024 * 1024
_PROCESS_STATUSES = ("running", "paused")  # a process exists (maybe frozen)


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


@dataclass
class _RunControl:
    """In-memory restart-manager state of one container (as dockerd keeps it: not persisted)."""

    backoff: float = 0.0               # the back-off after the last exit (restart.next_backoff)
    exit_on_next: bool = False         # stop/kill asked for this exit: no policy restart after it
    manual_restart: bool = False       # `docker restart` in progress: no auto-remove in between
    wakeup: trio.CancelScope | None = None  # the back-off sleep of a pending policy restart
    probe: trio.CancelScope | None = None   # the health probe in flight


@dataclass(frozen=True)
class ResourceUpdate:
    """`docker update`: what to change (None / 0: keep), as dockerd's UpdateConfig."""

    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    pids_limit: int | None = None
    restart_policy: str = ""           # "" keeps the policy
    restart_max_retries: int = 0


@dataclass(frozen=True)
class NodeLimits:
    ncpu: int
    nofile: tuple[int, int]
    idmap: rspec.IdMap | None
    cgroup_parent: str


class ContainerService:
    def __init__(self, *, store: Store, events: EventLog, images, volumes, runtime, node: str,
                 tenant: str, limits: NodeLimits, networks=None):
        self._store, self._events, self._images, self._volumes = store, events, images, volumes
        self._networks = networks  # engine.networks.NetworkService; None: loopback-only containers
        self._runtime, self._node, self._tenant, self._limits = runtime, node, tenant, limits
        self._watches: dict[str, _Watch] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._start_waiters: dict[str, list[_StartWaiter]] = {}
        self._control: dict[str, _RunControl] = {}
        self._nursery: trio.Nursery | None = None

    # ---- supervisor -------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            to_start = await self._reconcile()
            for cid in to_start:  # dockerd's restore(): policy restarts before the API is ready
                await self._boot_start(cid)
            task_status.started()
            await trio.sleep_forever()

    async def _reconcile(self) -> list[str]:
        """Make the store true after a restart or kill -9, and remove leftovers of deleted
        containers. Returns the containers the restart policies want started again."""
        with self._store.read() as txn:
            records = list(txn.containers.values())
        to_start = []
        for rec in records:
            status = rec.state.status
            if status == "removing":
                await self._finish_remove(rec, remove_volumes=True)
                continue
            if status == "restarting":  # the node went down during a back-off
                rec = self._update_state(rec.id, status="exited") or rec
            elif status in ("running", "paused", "created"):
                rec = await self._readopt(rec)
                if rec is None:  # its exit was recorded and it was auto-removed
                    continue
            if rec.state.status == "exited" and rec.state.started_at and self._wants_boot_start(rec):
                to_start.append(rec.id)
        known = {r.id for r in records}
        for leftover in self._runtime.leftovers(known):
            log.info("removing leftovers of deleted container %s", leftover)
            await self._runtime.remove(leftover)
        if self._networks is not None:  # sandboxes, leases and veths of what no longer runs
            with self._store.read() as txn:
                alive = {r.id for r in txn.containers.values() if r.state.status in _PROCESS_STATUSES}
            await self._networks.reconcile(known, alive)
        return to_start

    async def _readopt(self, rec: ContainerRecord) -> ContainerRecord | None:
        """A container the store says has (or was getting) a process: adopt it again, or record
        how it ended while no node was watching. None if that removed it (--rm)."""
        cid = rec.id
        exit_status = self._runtime.exit_status(cid)
        conmon_pid = rec.state.conmon_pid or self._runtime.conmon_pid(cid)
        if exit_status is not None:
            await self._record_exit(cid, exit_status, boot=True)
        elif conmon_pid and _alive(conmon_pid):
            pid = rec.state.pid or self._runtime.container_pid(cid)
            if rec.state.status == "created":  # acknowledged start was in flight: it did start
                self._update_state(cid, status="running", pid=pid, conmon_pid=conmon_pid,
                                   started_at=time.time_ns())
            elif rec.state.status == "paused" and await self._runtime.state(cid) == "running":
                self._update_state(cid, status="running")  # resumed behind our back
            self._spawn_supervisor(cid, conmon_pid)
        elif rec.state.status in _PROCESS_STATUSES:
            await self._end_run(cid)
            self._update_state(cid, status="exited", exit_code=255, pid=0, finished_at=time.time_ns(),
                               error="container monitor lost",
                               health=health_rules.stopped(rec.state.health))
        return self._lookup(cid)

    def _wants_boot_start(self, rec: ContainerRecord) -> bool:
        host = rec.host_config
        return restart_policy.restart_on_boot(
            host.restart_policy, host.restart_max_retries, exit_code=rec.state.exit_code,
            manually_stopped=rec.state.manually_stopped, restart_count=rec.restart_count)

    async def _boot_start(self, cid: str) -> None:
        try:
            async with self._lock(cid):
                rec = self.get(cid)
                if rec.state.status == "exited":
                    await self._start_locked(self._reset_restart_manager(rec))
        except (ApplianceError, OSError) as exc:
            log.warning("could not restart container %s at node start: %s", cid, getattr(exc, "message", exc))

    def _reset_restart_manager(self, rec: ContainerRecord) -> ContainerRecord:
        """dockerd ResetRestartManager(true), done by every explicit start: back-off and
        RestartCount start over."""
        control = self._ctl(rec.id)
        control.backoff, control.exit_on_next = 0.0, False
        if not rec.restart_count:
            return rec
        with self._store.write() as txn:
            fresh = txn.containers.get(rec.id)
            if fresh is None:
                return rec
            fresh.restart_count = 0
            txn.containers.put(rec.id, fresh)
        return fresh

    async def _end_run(self, cid: str) -> None:
        """Undo one run: the runtime's bundle and mounts, and the network sandbox (idempotent).
        The two are independent, and both sit on `docker run --rm`'s critical path: in parallel."""
        if self._networks is None:
            await self._runtime.cleanup(cid)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._runtime.cleanup, cid)
            nursery.start_soon(self._networks.detach_container, cid)

    def _spawn_supervisor(self, cid: str, conmon_pid: int) -> None:
        assert self._nursery is not None, "ContainerService.run() owns the supervisors"
        self._nursery.start_soon(self._supervise, cid, conmon_pid)

    async def _supervise(self, cid: str, conmon_pid: int) -> None:
        """One run of a container: its health checks while it lives, then its exit and
        (policy permitting) its next start after the back-off."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._health_loop, cid)
            try:
                status = await self._runtime.wait_exit(cid, conmon_pid)
            except NotFound:  # removed while we waited
                nursery.cancel_scope.cancel()
                return
            except SystemError_ as exc:
                log.warning("container %s: %s", cid, exc.message)
                status = None
            nursery.cancel_scope.cancel()
        if status is None:
            rec = self._update_state(cid, status="exited", exit_code=255, pid=0, finished_at=time.time_ns(),
                                     error="container monitor lost")
            with trio.CancelScope(shield=True):
                await self._end_run(cid)
            if rec is not None:
                self._publish(rec, "die", exitCode="255", execDuration="0")
            return
        delay = await self._record_exit(cid, status)
        if delay is not None:
            await self._restart_after(cid, delay)

    async def _record_exit(self, cid: str, status, *, boot: bool = False) -> float | None:
        """Store the exit, clean the run up, publish `die`; apply the restart policy. Returns
        the back-off to wait before a policy restart, or None if the container stays down.
        boot: the exit happened while no node ran; node start decides about restarts."""
        before = self._lookup(cid)
        if before is None:
            return None
        control = self._ctl(cid)
        finished_at = status.finished_at_ns or time.time_ns()
        ran_for = max(0.0, (finished_at - before.state.started_at) / 1e9)
        host = before.host_config
        decision = restart_policy.should_restart(
            host.restart_policy, host.restart_max_retries, exit_code=status.code,
            manually_stopped=before.state.manually_stopped, restart_count=before.restart_count,
            ran_for=ran_for, backoff=control.backoff)
        control.backoff = decision.delay
        restart = (decision.restart and not boot and not control.exit_on_next
                   and before.state.status in _PROCESS_STATUSES)
        # Store first: cleanup deletes the exit file, and a crash between the two must not lose the code.
        with self._store.write() as txn:
            rec = txn.containers.get(cid)
            if rec is None:
                return None
            rec.state = replace(rec.state, status="restarting" if restart else "exited",
                                exit_code=status.code, oom_killed=status.oom_killed, pid=0,
                                finished_at=finished_at, health=health_rules.stopped(rec.state.health))
            if restart:
                rec.restart_count += 1
            txn.containers.put(cid, rec)
        with trio.CancelScope(shield=True):
            await self._end_run(cid)
        if status.oom_killed:
            self._publish(rec, "oom")
        self._publish(rec, "die", exitCode=str(status.code), execDuration=str(int(ran_for)))
        watch = self._watch(cid)
        watch.exits += 1
        watch.last_exit = status.code
        watch.notify()
        if restart:
            return decision.delay
        if rec.host_config.auto_remove and not control.manual_restart:
            await self.remove(cid, force=True, remove_volumes=True)
        return None

    async def _restart_after(self, cid: str, delay: float) -> None:
        """Wait out the back-off, then start again unless stop/kill/rm came first."""
        control = self._ctl(cid)
        with trio.CancelScope() as scope:
            control.wakeup = scope
            await trio.sleep(delay)
        if control.wakeup is scope:
            control.wakeup = None
        async with self._lock(cid):
            rec = self._lookup(cid)
            if rec is None or rec.state.status != "restarting":
                return
            try:
                await self._start_locked(rec)
            except (ApplianceError, OSError) as exc:
                log.info("restart of container %s failed: %s", cid, getattr(exc, "message", exc))
                self._update_state(cid, status="exited")

    def _cancel_restart(self, rec: ContainerRecord) -> ContainerRecord:
        """stop/kill/rm of a container waiting to be restarted: it stays down (dockerd's
        restart-manager Cancel)."""
        control = self._ctl(rec.id)
        control.exit_on_next = True
        if control.wakeup is not None:
            control.wakeup.cancel()
        return self._update_state(rec.id, status="exited", manually_stopped=True) or rec

    # ---- health checks ------------------------------------------------------------------------

    async def _health_loop(self, cid: str) -> None:
        """Probe the container while it runs (paused: wait); part of its supervisor task."""
        rec = self._lookup(cid)
        if rec is None or health_rules.probe_args(rec.config.healthcheck) is None:
            return
        run_started = rec.state.started_at
        while True:
            changed = self.change_event(cid)
            rec = self._lookup(cid)
            if rec is None or rec.state.started_at != run_started or rec.state.status not in _PROCESS_STATUSES:
                return
            if rec.state.status == "paused":
                await changed.wait()
                continue
            cfg = rec.config.healthcheck
            status = rec.state.health.status if rec.state.health else health_rules.STARTING
            await trio.sleep(health_rules.next_delay(cfg, status, run_started, time.time_ns()))
            rec = self._lookup(cid)
            if rec is None or rec.state.started_at != run_started or rec.state.status != "running":
                continue
            result = await self._probe(rec)
            if result is not None:
                self._apply_probe(cid, run_started, result)

    async def _probe(self, rec: ContainerRecord):
        cfg = rec.config.healthcheck
        args = health_rules.probe_args(cfg)
        try:
            uid, gid, gids = resolve_user_in(self._runtime.paths(rec.id).rootfs, rec.config.user)
        except ApplianceError as exc:
            return _probe_error(exc)
        spec = rspec.ExecSpec(args=tuple(args), env=tuple(rec.config.env), cwd=rec.config.working_dir or "/",
                              uid=uid, gid=gid, additional_gids=tuple(gids))
        control = self._ctl(rec.id)
        exec_id, line = new_id(), command_line(args)
        # A probe is an exec to dockerd, and its events say so.
        self._publish(rec, f"exec_create: {line}", execID=exec_id)
        self._publish(rec, f"exec_start: {line}", execID=exec_id)
        with trio.CancelScope() as scope:
            control.probe = scope
            result = await health_rules.run_probe(self._runtime, rec.id, exec_id, spec,
                                                  health_rules.timeout_ns(cfg))
        if control.probe is scope:
            control.probe = None
        if scope.cancelled_caught:
            return None
        if result.exit_code >= 0:  # the process ran to its end (not killed at the timeout)
            self._publish(rec, "exec_die", execID=exec_id, exitCode=str(result.exit_code))
        return result

    def _apply_probe(self, cid: str, run_started: int, result) -> None:
        with self._store.write() as txn:
            rec = txn.containers.get(cid)
            if rec is None or rec.state.started_at != run_started or rec.state.status != "running":
                return
            old = rec.state.health.status if rec.state.health else health_rules.STARTING
            new = health_rules.apply_result(rec.state.health, rec.config.healthcheck, result, run_started)
            rec.state = replace(rec.state, health=new)
            txn.containers.put(cid, rec)
        if new.status != old:
            self._publish(rec, f"health_status: {new.status}")

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
        for rec in self.list():  # dockerd's state counter: restarting counts as stopped
            status = rec.state.status
            out[status if status in ("running", "paused") else "stopped"] += 1
        return out

    def is_running(self, cid: str) -> bool:
        """Whether the container has a process (running or paused): its log may still grow."""
        rec = self._lookup(cid)
        return rec is not None and rec.state.status in _PROCESS_STATUSES

    def change_event(self, cid: str) -> trio.Event:
        """Set at this container's next state change."""
        return self._watch(cid).changed

    def _watch(self, cid: str) -> _Watch:
        return self._watches.setdefault(cid, _Watch())

    def _lock(self, cid: str) -> trio.Lock:
        return self._locks.setdefault(cid, trio.Lock())

    def _ctl(self, cid: str) -> _RunControl:
        return self._control.setdefault(cid, _RunControl())

    def _update_state(self, cid: str, **changes) -> ContainerRecord | None:
        with self._store.write() as txn:
            rec = txn.containers.get(cid)
            if rec is None:
                return None
            rec.state = replace(rec.state, **changes)
            txn.containers.put(cid, rec)
        self._watch(cid).notify()
        return rec

    def publish_event(self, cid: str, action: str, **extra: str) -> None:
        """A container event from another service (execs), with the container's attributes."""
        rec = self._lookup(cid)
        if rec is not None:
            self._publish(rec, action, **extra)

    def _publish(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**rec.config.labels, "image": rec.config.image, "name": rec.name, **extra}
        self._events.publish("container", action, rec.id, attrs)

    # ---- create -------------------------------------------------------------------------------

    def create(self, name: str | None, config: ContainerConfig, host: HostConfig,
               endpoints: dict | None = None) -> tuple[ContainerRecord, list[str]]:
        """Validate everything, then create volumes and commit the record; nothing half-made on error."""
        if name:
            name = check_container_name(name)
        self._check_limits(host)
        plan = (self._networks.plan_endpoints(host.network_mode, endpoints, name or "")
                if self._networks is not None else None)
        image = self._images.resolve(config.image)
        icfg = self._images.runtime_config(image)
        path, args = _command(config, icfg)
        mounts = mount_rules.resolve(host, list((icfg.get("Volumes") or {}).keys()), config.volumes)
        healthcheck = health_rules.merge(config.healthcheck, health_rules.from_image(icfg.get("Healthcheck")))
        health_rules.validate(healthcheck)
        if host.init and self._runtime.init_binary is None:
            raise InvalidParameter("docker-init binary not found on this node: install tini to use --init")
        cid = new_id()
        config = replace(config, hostname=config.hostname or cid[:12],
                         env=merge_env(icfg.get("Env") or [], config.env, default_path=True),
                         working_dir=config.working_dir or icfg.get("WorkingDir") or "",
                         user=config.user or icfg.get("User") or "",
                         labels={**(icfg.get("Labels") or {}), **config.labels},
                         stop_signal=config.stop_signal or icfg.get("StopSignal") or "",
                         exposed_ports=sorted({*config.exposed_ports, *(icfg.get("ExposedPorts") or {})}),
                         healthcheck=healthcheck)
        if host.memory > 0 and host.memory_swap == 0:
            host = replace(host, memory_swap=2 * host.memory)  # dockerd: swap as large as memory
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
        if plan is not None:
            self._networks.configure_container(rec, plan)
        self._publish(rec, "create")
        return rec, []

    def _check_limits(self, host: HostConfig) -> None:
        _check_resources(host.memory, host.memory_swap, host.cpu_shares, host.cpu_quota, host.cpu_period,
                         host.nano_cpus, self._limits.ncpu)
        restart_policy.validate(host.restart_policy, host.restart_max_retries)
        if host.auto_remove and host.restart_policy not in ("", "no"):
            raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
        if self._networks is None and host.network_mode not in ("", "default", "bridge", "none", "host"):
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
            if rec.state.status == "paused":
                raise Conflict("cannot start a paused container, try unpause instead")
            if rec.state.status in LIVE_STATUSES:
                raise NotModified("container already started")
            if rec.state.status == "removing":
                raise Conflict(f"container {cid} is marked for removal and cannot be started")
            await self._start_locked(self._reset_restart_manager(rec))

    async def _start_locked(self, rec: ContainerRecord) -> None:
        cid = rec.id
        control = self._ctl(cid)
        control.exit_on_next = False
        await self._end_run(cid)  # a previous run's bundle, rootfs and network
        try:
            image = self._images.get_by_id(rec.image_id)
            rootfs = await self._runtime.prepare_rootfs(cid, self._lower_dirs(cid, image),
                                                         idmap=self._limits.idmap)
            _ensure_dir(rootfs, rec.config.working_dir or "/", self._limits.idmap)
            for m in rec.mounts:  # Docker copies the image's files into a new, empty volume
                if m.type == "volume" and "nocopy" not in m.mode.split(","):
                    await self._volumes.populate(m.name, rootfs, m.destination)
            uid, gid, gids = resolve_user_in(rootfs, rec.config.user)
            sandbox = None
            if self._networks is not None:
                sandbox = await self._networks.attach_container(rec)
            launched = await self._runtime.create(self._spec(rec, uid, gid, gids, sandbox), rootfs)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._end_run(cid)
            code = 127 if isinstance(exc, CommandNotFound) else 126 if isinstance(exc, CommandNotExecutable) else 128
            self._update_state(cid, status="exited" if rec.state.started_at else "created",
                               exit_code=code, error=getattr(exc, "message", str(exc)))
            self._fail_start_waiters(cid)
            if rec.host_config.auto_remove:  # the CLI waits for condition=removed after a failed start
                await self._finish_remove(self._update_state(cid, status="removing") or rec, True)
            if isinstance(exc, ApplianceError) and code in (126, 127):
                raise InvalidParameter(_docker_start_error(exc, rec.path)) from exc
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
        health = HealthState() if health_rules.probe_args(rec.config.healthcheck) else rec.state.health
        rec = self._update_state(cid, status="running", pid=launched.pid, conmon_pid=launched.conmon_pid,
                                 started_at=started_at, finished_at=0, exit_code=0, oom_killed=False,
                                 error="", manually_stopped=False, health=health)
        self._publish(rec, "start")

    def _lower_dirs(self, cid: str, image) -> list[Path]:
        """Image layers, topmost first, under the container's init layer when networking needs one."""
        lowers = self._images.lower_dirs(image)
        if self._networks is None:
            return lowers
        init = self._runtime.paths(cid).bundle / "init"
        self._runtime.paths(cid).bundle.mkdir(mode=0o711, exist_ok=True)
        build_init_layer(init, lowers, self._limits.idmap.host_base if self._limits.idmap else 0)
        return [init, *lowers]

    def _spec(self, rec: ContainerRecord, uid: int, gid: int, gids: tuple[int, ...],
              sandbox=None) -> rspec.ContainerSpec:
        cfg, host = rec.config, rec.host_config
        mounts = [_mount_spec(m) for m in rec.mounts]
        if sandbox is not None:  # /etc/hosts, /etc/hostname, /etc/resolv.conf, unless the user mounts one
            taken = {m.destination for m in mounts}
            mounts += [m for m in sandbox.mounts if m.destination not in taken]
        env = [*cfg.env]
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.insert(0, f"HOSTNAME={cfg.hostname}")
        if cfg.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        init_binary = None
        if host.init:
            init_binary = self._runtime.init_binary
            if init_binary is None:
                raise InvalidParameter("docker-init binary not found on this node: install tini to use --init")
        return rspec.ContainerSpec(
            id=rec.id, args=(rec.path, *rec.args), env=tuple(env), cwd=cfg.working_dir or "/",
            uid=uid, gid=gid, additional_gids=tuple(gids), hostname=cfg.hostname, tty=cfg.tty,
            readonly_rootfs=host.readonly_rootfs, mounts=tuple(mounts),
            resources=_resources(host), idmap=self._limits.idmap,
            cgroup_path=f"{self._limits.cgroup_parent}/{rec.id}",
            netns_path=sandbox.netns_path if sandbox is not None else None,
            open_stdin=cfg.open_stdin, stdin_once=cfg.stdin_once,
            init_binary=init_binary)

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
        if rec.state.status not in LIVE_STATUSES:
            raise NotModified("container already stopped")
        stop_signal = parse_signal(sig or rec.config.stop_signal or None, default=signal.SIGTERM)
        if timeout is None:
            timeout = rec.config.stop_timeout if rec.config.stop_timeout is not None else 10
        if rec.state.status == "restarting":
            rec = self._cancel_restart(rec)
        else:
            await self._stop(rec, stop_signal, timeout)
        self._publish(self._lookup(rec.id) or rec, "stop")

    async def _stop(self, rec: ContainerRecord, stop_signal: int, timeout: int) -> None:
        await self._signal(rec, stop_signal, cancels_restart=True)
        if await self._wait_not_running(rec.id, None if timeout < 0 else timeout):
            return
        current = self._lookup(rec.id)
        if current is not None and current.state.status in _PROCESS_STATUSES:
            await self._signal(current, signal.SIGKILL, cancels_restart=True)
        await self._wait_not_running(rec.id, None)

    async def _signal(self, rec: ContainerRecord, signum: int, *, cancels_restart: bool) -> None:
        """dockerd killWithSignal: mark the container manually stopped, cancel its restart
        policy for this exit if asked, signal it, and thaw it if it was paused (the signal is
        delivered once it runs)."""
        control = self._ctl(rec.id)
        if cancels_restart:
            control.exit_on_next = True
        rec = self._update_state(rec.id, manually_stopped=True) or rec
        self._publish(rec, "kill", signal=str(signum))
        await self._runtime.kill(rec.id, signum, missing_ok=True)
        if rec.state.status == "paused" and cancels_restart:
            await self._resume(rec)

    async def _wait_not_running(self, cid: str, timeout: float | None) -> bool:
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            while True:
                watch = self._watch(cid)
                changed = watch.changed
                rec = self._lookup(cid)
                if rec is None or rec.state.status not in _PROCESS_STATUSES:
                    return True
                await changed.wait()
        return False

    async def kill(self, ref: str, sig: str | None = None) -> None:
        rec = self.get(ref)
        signum = parse_signal(sig)
        if rec.state.status not in LIVE_STATUSES:
            raise Conflict(f"cannot kill container: {ref}: container {rec.id} is not running")
        if rec.state.status == "restarting":
            self._cancel_restart(rec)
            return
        # A kill with the stop signal (any signal when none is configured) means "stay down".
        configured = rec.config.stop_signal
        stop_like = signum == signal.SIGKILL or not configured or parse_signal(configured) == signum
        await self._signal(rec, signum, cancels_restart=stop_like)
        if signum == signal.SIGKILL:
            await self._wait_not_running(rec.id, 10)

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        control = self._ctl(rec.id)
        control.manual_restart = True
        try:
            if rec.state.status in LIVE_STATUSES:
                await self.stop(ref, timeout, sig)
            await self.start(rec.id)
        finally:
            control.manual_restart = False
        self._publish(self.get(rec.id), "restart")

    # ---- pause, unpause, update ---------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        cid = self.get(ref).id
        async with self._lock(cid):
            rec = self.get(cid)
            if rec.state.status == "paused":
                raise Conflict(f"Container {cid} is already paused")
            if rec.state.status == "restarting":
                raise Conflict(f"Container {cid} is restarting, wait until the container is running")
            if rec.state.status != "running":
                raise Conflict(f"Container {cid} is not running")
            probe = self._ctl(cid).probe
            if probe is not None:  # dockerd stops health monitoring while paused
                probe.cancel()
            try:
                await self._runtime.pause(cid)
            except SystemError_ as exc:
                raise SystemError_(f"Cannot pause container {cid}: {exc.message}") from None
            rec = self._update_state(cid, status="paused", health=health_rules.stopped(rec.state.health))
        self._publish(rec, "pause")

    async def unpause(self, ref: str) -> None:
        cid = self.get(ref).id
        async with self._lock(cid):
            rec = self.get(cid)
            if rec.state.status != "paused":
                raise Conflict(f"Container {cid} is not paused")
            await self._resume(rec)

    async def _resume(self, rec: ContainerRecord) -> None:
        try:
            await self._runtime.resume(rec.id)
        except SystemError_ as exc:
            raise SystemError_(f"Cannot unpause container {rec.id}: {exc.message}") from None
        current = self._lookup(rec.id)
        if current is not None and current.state.status == "paused":
            rec = self._update_state(rec.id, status="running") or rec
        self._publish(rec, "unpause")

    async def update(self, ref: str, req: ResourceUpdate) -> list[str]:
        """`docker update`: new limits (applied at once to a live container) and restart policy."""
        _check_resources(req.memory, req.memory_swap, req.cpu_shares, req.cpu_quota, req.cpu_period,
                         req.nano_cpus, self._limits.ncpu)
        if req.restart_policy:
            restart_policy.validate(req.restart_policy, req.restart_max_retries)
        cid = self.get(ref).id
        async with self._lock(cid):
            rec = self.get(cid)
            if rec.state.status in ("removing", "dead"):
                raise Conflict(f'Cannot update container {cid}: container is marked for removal and cannot be "update"')
            try:
                host = _updated_host_config(rec.host_config, req)
            except Conflict as exc:
                raise Conflict(f"Cannot update container {cid}: {exc.message}") from None
            if rec.state.status in _PROCESS_STATUSES and _resources(host) != _resources(rec.host_config):
                try:
                    self._runtime.update_resources(cid, _resources(host))
                except MemoryBelowUsage as exc:
                    with contextlib.suppress(ApplianceError):
                        self._runtime.update_resources(cid, _resources(rec.host_config))
                    raise Conflict(f"Cannot update container {cid}: {exc.message}") from None
                except SystemError_ as exc:
                    raise SystemError_(f"Cannot update container {cid}: {exc.message}") from None
            with self._store.write() as txn:
                fresh = txn.containers.get(cid)
                if fresh is None:
                    raise NotFound(f"No such container: {ref}")
                fresh.host_config = host
                txn.containers.put(cid, fresh)
        self._publish(fresh, "update")
        return []

    # ---- remove, rename, prune ----------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, remove_volumes: bool = False) -> None:
        rec = self.get(ref)
        status = rec.state.status
        if status in LIVE_STATUSES:
            if not force:
                if status == "paused":
                    raise Conflict(f'cannot remove container "/{rec.name}": container is paused and '
                                   "must be unpaused first")
                raise Conflict(f'cannot remove container "/{rec.name}": container is {status}: '
                               "stop the container before removing or force remove")
            if status == "restarting":
                self._cancel_restart(rec)
            else:
                await self._signal(rec, signal.SIGKILL, cancels_restart=True)
                await self._wait_not_running(rec.id, 10)
        async with self._lock(rec.id):  # not while a cp/commit holds its filesystem
            rec = self._update_state(rec.id, status="removing")
            if rec is not None:
                await self._finish_remove(rec, remove_volumes)

    async def _finish_remove(self, rec: ContainerRecord, remove_volumes: bool) -> None:
        with trio.CancelScope(shield=True):
            await self._runtime.remove(rec.id)
            if self._networks is not None:
                await self._networks.detach_container(rec.id, forget=True)
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
        control = self._control.pop(rec.id, None)
        if control is not None and control.wakeup is not None:
            control.wakeup.cancel()

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
        if self._networks is not None:  # the embedded DNS follows at once, as dockerd's
            self._networks.rename_container(rec)
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
        """Resolve now (so a missing container is a JSON 404), wait later (after headers are sent).

        As dockerd's State.Wait: a live container (restarting included) satisfies not-running
        at its next exit, whether or not a restart policy then starts it again."""
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
                    if current is None:
                        return w.last_exit
                    if w.exits > exits_seen:
                        return w.last_exit
                    if current.state.status not in LIVE_STATUSES:
                        return current.state.exit_code
                await changed.wait()

        return wait

    async def attach(self, ref: str, opts: AttachOptions,
                     get_streams: Callable[[bool], Awaitable[AttachClient]],
                     detach_keys: str = "") -> None:
        keys = parse_detach_keys(detach_keys)  # dockerd checks the keys before the container
        rec = self.get(ref)
        if rec.state.status == "removing":
            raise Conflict(f"container {rec.id} is marked for removal")
        if rec.state.status == "paused":
            raise Conflict(f"container {ref} is paused, unpause the container before attach")
        if rec.state.status == "restarting":
            raise Conflict(f"container {ref} is restarting, wait until the container is running")
        tty = rec.config.tty
        if not opts.stream:  # logs=1&stream=0: what was written so far, then the end
            client = await get_streams(tty)
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
            client = await get_streams(tty)
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
                detached = await pump(client, conns, replace(opts, stdin=wants_stdin,
                                                             detach_keys=keys if tty else None),
                                      rec.config.stdin_once, tty=tty)
            finally:
                await conns.aclose()
            if detached:
                self._publish(self._lookup(rec.id) or rec, "detach")
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
            if rec.state.status in _PROCESS_STATUSES:
                yield rec, self._runtime.paths(cid).rootfs
                return
            image = self._images.get_by_id(rec.image_id)
            rootfs = await self._runtime.prepare_rootfs(cid, self._lower_dirs(cid, image),
                                                        idmap=self._limits.idmap)
            try:
                yield rec, rootfs
            finally:
                with trio.CancelScope(shield=True):
                    await self._end_run(cid)

    def upper_dir(self, cid: str) -> Path:
        """The container's own writable layer (what `docker diff` and `commit` read)."""
        return self._runtime.paths(cid).upper

    async def _replay_log(self, rec: ContainerRecord, opts: AttachOptions, client: AttachClient) -> None:
        entries = await LogFollower(self._runtime.log_path(rec.id)).read_available(final=True)
        for entry in select(entries, stdout=opts.stdout, stderr=opts.stderr):
            await client.send_output(1 if entry.stream == "stdout" else 2, entry.data)

    async def resize(self, ref: str, height: int, width: int) -> None:
        rec = self.get(ref)
        if rec.state.status not in _PROCESS_STATUSES:
            raise Conflict(f"Container {rec.id} is not running")
        if rec.config.tty and height and width:
            # The kernel's winsize holds 16-bit values; dockerd accepts 32-bit ones and the
            # runtime truncates, here they are clamped.
            await self._runtime.resize(rec.id, min(height, 65535), min(width, 65535))
            self._publish(rec, "resize", height=str(height), width=str(width))

    def log_path(self, ref: str) -> tuple[ContainerRecord, Path]:
        rec = self.get(ref)
        return rec, self._runtime.log_path(rec.id)


# ---- pure helpers -------------------------------------------------------------------------------

def _probe_error(exc: ApplianceError) -> HealthResult:
    now = time.time_ns()
    return HealthResult(now, now, -1, exc.message)


def _resources(host: HostConfig) -> rspec.Resources:
    return rspec.Resources(memory=host.memory, memory_swap=host.memory_swap, nano_cpus=host.nano_cpus,
                           cpu_shares=host.cpu_shares, cpu_period=host.cpu_period, cpu_quota=host.cpu_quota,
                           pids_limit=host.pids_limit)


def _check_resources(memory: int, memory_swap: int, cpu_shares: int, cpu_quota: int, cpu_period: int,
                     nano_cpus: int, ncpu: int) -> None:
    """dockerd's verifyPlatformContainerResources checks shared by create and update."""
    if memory < 0 or memory_swap < -1 or cpu_shares < 0 or cpu_quota < -1 or cpu_period < 0 or nano_cpus < 0:
        raise InvalidParameter("invalid resource value: limits must not be negative")
    if 0 < memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    if memory and memory_swap > 0 and memory_swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if nano_cpus and (nano_cpus < 10_000_000 or nano_cpus > ncpu * 1_000_000_000):
        raise InvalidParameter(
            f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if nano_cpus and (cpu_quota > 0 or cpu_period > 0):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if cpu_period and not 1000 <= cpu_period <= 1_000_000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1 second (i.e. 1000000)")
    if cpu_quota > 0 and cpu_quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")


def _updated_host_config(host: HostConfig, req: ResourceUpdate) -> HostConfig:
    """moby container.UpdateContainer: merge an update into the host config, with its
    conflict messages (raised as Conflict, without the "Cannot update container" prefix)."""
    if req.nano_cpus > 0 and host.cpu_period > 0:
        raise Conflict("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
    if req.nano_cpus > 0 and host.cpu_quota > 0:
        raise Conflict("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
    if req.cpu_period > 0 and host.nano_cpus > 0:
        raise Conflict("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
    if req.cpu_quota > 0 and host.nano_cpus > 0:
        raise Conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    changes: dict = {}
    for name in ("cpu_shares", "nano_cpus", "cpu_period", "cpu_quota"):
        if getattr(req, name):
            changes[name] = getattr(req, name)
    if req.memory:
        if req.memory > host.memory_swap and req.memory_swap == 0:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, "
                           "update the memoryswap at the same time")
        changes["memory"] = req.memory
    if req.memory_swap:
        changes["memory_swap"] = req.memory_swap
    if req.pids_limit is not None:
        changes["pids_limit"] = max(req.pids_limit, 0)
    if req.restart_policy:
        if req.restart_policy != "no" and host.auto_remove:
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
        changes["restart_policy"] = req.restart_policy
        changes["restart_max_retries"] = req.restart_max_retries
    return replace(host, **changes)


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


def _docker_start_error(exc: ApplianceError, command: str) -> str:
    """Reword crun's failure as dockerd does; the CLI picks exit 127/126 from these words."""
    failure = exec_failure(exc, command)
    if failure is None:
        return f"failed to create task for container: OCI runtime create failed: {exc.message.strip()}"
    return f"failed to create task for container: OCI runtime create failed: unable to start container process: {failure}"
