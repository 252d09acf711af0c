"""The container driver: crun through OCI bundles, with conmon as each container's monitor.

conmon runs `crun create`, then holds the container's stdio (log file, attach socket),
records the exit code and OOM to files and outlives this process, so containers survive a
node restart. The driver runs crun itself for start, kill, state and delete.

A container's life here: prepare_rootfs -> create -> start -> wait_exit -> cleanup (a run
ends; the writable layer and log stay for a restart) -> ... -> remove (all gone).

Small local metadata work (pidfiles, mount(2), cgroupfs reads) runs inline: it is
sub-millisecond and never waits on anything. Work proportional to data (bundle writes
and deletion) goes to a worker thread; crun and conmon run via trio's process API.

The whole process must already be in the node's mount namespace
(mountns.enter_private_mount_namespace), where crun works on hybrid-cgroup hosts and where
the overlay mounts live.

conmon double-forks; its daemon is re-parented to PID 1, not to us (we are deliberately not
a subreaper, so we never have conmon zombies to reap). Exits are awaited with a pidfd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import shutil
import struct
import subprocess
import termios
from dataclasses import dataclass
from pathlib import Path

import trio

from appliance.errors import Conflict, NotFound, SystemError_
from appliance.runtime import cgroups
from appliance.runtime import resources as resources_mod
from appliance.runtime import rootfs as rootfs_mod
from appliance.runtime import sysfs as sysfs_mod
from appliance.runtime.argv import (
    ContainerPaths,
    ExecPaths,
    NodeDirs,
    conmon_argv,
    crun_exec_argv,
    exec_conmon_argv,
    runtime_argv,
)
from appliance.runtime.attach import AttachConnection
from appliance.runtime.conmon_proto import SyncPipeReader, container_pid, encode_resize
from appliance.runtime.execs import (
    ExecSession,
    read_exit_code,
    start_exec,
    write_exec_dir,
)
from appliance.runtime.mountinfo import read_mountinfo
from appliance.runtime.pipe_exec import PipeExecSession, start_pipe_exec
from appliance.runtime.sealed import sealed_copy
from appliance.runtime.seccomp import default_seccomp
from appliance.runtime.spec import (
    ContainerSpec,
    ExecSpec,
    IdMap,
    Resources,
    needs_sysfs,
    oci_config,
    oci_process,
)

_SUN_PATH_MAX = 107          # sun_path is 108 bytes including the NUL
_CONMON_TERM_NAME = len("/conmon-term.XXXXXX")


@dataclass(frozen=True, slots=True)
class Launched:
    pid: int          # the container's init, as seen from the host
    conmon_pid: int


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int              # 128+signal for a signalled init, like Docker
    oom_killed: bool
    finished_at_ns: int    # when conmon recorded the exit (ns since the epoch)


# docker-init for --init. Containers need not have a libc, so a static tini comes first
# (Debian's docker.io points its docker-init at tini-static for the same reason).
_INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/libexec/docker/docker-init", "/usr/bin/docker-init",
                    "/usr/bin/tini")


def find_init_binary() -> str | None:
    """The host binary bind-mounted as /sbin/docker-init for `--init`; None if there is none."""
    for path in _INIT_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def _default_runtime() -> str:
    found = shutil.which("crun") or shutil.which("runc")
    if found is None:
        raise SystemError_("no OCI runtime found: install crun (or runc)")
    return found


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _remove_run_files(p: ContainerPaths) -> None:
    """Files that describe one run; a stale exit file would end the next run at once."""
    for f in (p.config, p.pidfile, p.conmon_pidfile, p.attach, p.ctl, p.bundle / "winsz",
              p.bundle / "oom"):
        f.unlink(missing_ok=True)
    for d in (p.persist, p.exits, p.execs):
        shutil.rmtree(d, ignore_errors=True)


def _unmount_run(p: ContainerPaths) -> None:
    """The mounts one run holds: the overlay and the node-made sysfs (runtime/sysfs.py)."""
    sysfs_mod.unmount(p.sysfs)
    rootfs_mod.unmount(p.rootfs)


def _unread(fd: int) -> int:
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


async def _fifos_drained(fds: list[int], timeout: float = 1.0) -> None:
    """Wait (bounded) until conmon has read everything written to these FIFOs."""
    with trio.move_on_after(timeout):
        while any(_unread(fd) for fd in fds):
            await trio.sleep(0.001)
    await trio.lowlevel.checkpoint()


def _is_conmon_of(pid: int, cid: str) -> bool:
    """Whether pid is still the conmon we started for cid (pids are reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if not args or not os.path.basename(args[0]).startswith(b"conmon"):
        return False  # also a zombie, whose cmdline is empty: it has exited
    try:
        return args[args.index(b"-c") + 1] == cid.encode()
    except (ValueError, IndexError):
        return False


class Runtime:
    """Creates, starts, signals, waits for and removes containers on this node.

    Safe to share between tasks; calls for different containers run concurrently. Calls
    for one container should be serialized by the caller (the engine's per-container lock).
    """

    def __init__(self, state_dir: Path, *, runtime_path: str | None = None,
                 conmon_path: str = "conmon", cgroup_parent: str | None = None,
                 nofile: tuple[int, int] | None = None, create_timeout: float = 60.0) -> None:
        self.dirs = NodeDirs(Path(state_dir).resolve())
        self.runtime_path = runtime_path or _default_runtime()
        # What we execute: the same binary, from a sealed copy (runtime/sealed.py).
        self.runtime_exec = sealed_copy(self.runtime_path) or self.runtime_path
        self.conmon_path = shutil.which(conmon_path) or conmon_path
        self.cgroup_parent = cgroup_parent
        if nofile is None:
            # Raising a hard limit needs CAP_SYS_RESOURCE, so containers get ours (soft = hard).
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            nofile = (hard, hard)
        self.nofile = nofile
        self.create_timeout = create_timeout
        self.init_binary = find_init_binary()
        # conmon binds a tty's console socket at $TMPDIR/conmon-term.XXXXXX by full path.
        longest = len(str(self.dirs.tmp)) + _CONMON_TERM_NAME
        if longest > _SUN_PATH_MAX:
            raise SystemError_(f"state dir {state_dir} is too long for conmon's console sockets "
                               f"({longest} > {_SUN_PATH_MAX} bytes); use a shorter path")
        for d in (self.dirs.containers, self.dirs.crun_root, self.dirs.tmp):
            d.mkdir(parents=True, exist_ok=True)
        # A user-namespaced container's root (e.g. host uid 100000) must be able to walk
        # to its bundle: crun sets the rootfs up as that user.
        self.dirs.containers.chmod(0o711)

    # -- paths ---------------------------------------------------------------------------

    def paths(self, cid: str) -> ContainerPaths:
        if not cid or "/" in cid or cid in (".", ".."):
            raise NotFound(f"No such container: {cid}")
        return self.dirs.container(cid)

    def log_path(self, cid: str) -> Path:
        return self.paths(cid).log

    def bundle_ids(self) -> set[str]:
        """Ids that have a bundle directory on this node."""
        try:
            return {e.name for e in os.scandir(self.dirs.containers) if e.is_dir()}
        except FileNotFoundError:
            return set()

    def container_pid(self, cid: str) -> int | None:
        """The init pid recorded at create (for re-adopting containers after a restart)."""
        return _read_int(self.paths(cid).pidfile)

    def conmon_pid(self, cid: str) -> int | None:
        """The monitor pid recorded at create; pass it to wait_exit after a restart."""
        return _read_int(self.paths(cid).conmon_pidfile)

    # -- running crun ----------------------------------------------------------------------

    async def _crun(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = await trio.run_process(runtime_argv(self.runtime_exec, self.dirs.crun_root, *args),
                                      stdin=subprocess.DEVNULL, capture_stdout=True,
                                      capture_stderr=True, check=False)
        if check and done.returncode != 0:
            raise SystemError_(f"{os.path.basename(self.runtime_path)} {args[0]} failed: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        return done

    # -- lifecycle -----------------------------------------------------------------------

    async def prepare_rootfs(self, cid: str, lower_dirs: list[Path], *,
                             idmap: IdMap | None = None) -> Path:
        """Mount the container's overlay (layers topmost first) and return its path.

        Pass the container's idmap when it gets a user namespace: the writable layer is
        then owned by the id container root maps to (the image layers must already be
        shifted the same way, userns-remap style, to be writable through the overlay).
        mount(2) is sub-millisecond, so it runs inline."""
        p = self.paths(cid)
        p.bundle.mkdir(mode=0o711, exist_ok=True)
        owner = (idmap.host_base, idmap.host_base) if idmap is not None else None
        if owner is not None:
            blocked = rootfs_mod.unsearchable_ancestor(p.bundle, *owner)
            if blocked is not None:
                # crun would fail later with only "make `.../rootfs` private: Permission denied"
                raise SystemError_(f"{blocked} (mode {blocked.stat().st_mode & 0o777:o}) is not searchable "
                                   f"by user-namespaced containers (host uid {owner[0]}): chmod o+x it")
        rootfs_mod.mount_overlay([Path(d) for d in lower_dirs], p.upper, p.work, p.rootfs,
                                 owner=owner)
        await trio.lowlevel.checkpoint()
        return p.rootfs

    def _write_bundle(self, spec: ContainerSpec, rootfs: Path, p: ContainerPaths) -> None:
        seccomp = None if spec.seccomp_unconfined else default_seccomp(spec.capabilities)
        p.bundle.mkdir(mode=0o711, exist_ok=True)
        sysfs_source = None
        if needs_sysfs(spec):  # crun cannot mount this container's sysfs: runtime/sysfs.py
            sysfs_mod.mount(Path(spec.netns_path), p.sysfs)
            sysfs_source = str(p.sysfs)
        config = oci_config(spec, str(rootfs), seccomp, self.nofile, sysfs_source=sysfs_source)
        _remove_run_files(p)  # a previous run's, if cleanup() was skipped
        for d in (p.persist, p.exits):
            d.mkdir(exist_ok=True)
        tmp = p.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(p.config)

    async def create(self, spec: ContainerSpec, rootfs: Path) -> Launched:
        """Write config.json and have conmon create the container (state `created`).

        Raises conmon_proto.CommandNotFound / CommandNotExecutable / RuntimeCreateError
        (all SystemError_) with crun's message when the runtime refuses.
        """
        p = self.paths(spec.id)
        await trio.to_thread.run_sync(self._write_bundle, spec, Path(rootfs), p)
        argv = conmon_argv(conmon=self.conmon_path, runtime=self.runtime_exec,
                           runtime_root=self.dirs.crun_root, paths=p,
                           stdin=spec.open_stdin,
                           # conmon closes stdin when ANY attach client hangs up unless told
                           # not to; a tty's EOF is a ctrl-D through the pty instead, so a
                           # client detaching must never end a tty container's shell.
                           leave_stdin_open=not spec.stdin_once or spec.tty,
                           tty=spec.tty)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "TMPDIR": str(self.dirs.tmp), "_OCI_SYNCPIPE": str(write_fd)}
        sync = trio.lowlevel.FdStream(read_fd)
        async with sync:
            try:
                # The launcher forks conmon's daemon and exits in ~3 ms; run_process reaps it.
                launcher = await trio.run_process(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    capture_stderr=True, check=False, cwd=str(p.bundle), env=env,
                    pass_fds=(write_fd,))
            finally:
                os.close(write_fd)  # conmon's daemon holds the other copy
            if launcher.returncode != 0:
                raise SystemError_(f"conmon failed: {launcher.stderr.decode(errors='replace').strip()}")
            message = await self._first_sync_message(sync, spec.id)
        pid = container_pid(message)
        conmon_pid = _read_int(p.conmon_pidfile)
        if conmon_pid is None:
            raise SystemError_(f"conmon did not record its pid for container {spec.id}")
        return Launched(pid, conmon_pid)

    async def _first_sync_message(self, sync: trio.lowlevel.FdStream, cid: str) -> dict:
        reader = SyncPipeReader()
        with trio.move_on_after(self.create_timeout):
            while True:
                chunk = await sync.receive_some(4096)
                if not chunk:
                    raise SystemError_(f"conmon exited without creating container {cid}")
                messages = reader.feed(chunk)
                if messages:
                    return messages[0]
        raise SystemError_(f"timed out after {self.create_timeout:g}s creating container {cid}")

    async def start(self, cid: str) -> None:
        await self._crun("start", cid)

    async def kill(self, cid: str, signal: int, *, all: bool = False,
                   missing_ok: bool = False) -> bool:
        """Send signal to the container's init (all=True: every process in it).

        Returns False, without raising, when the container is no longer running: callers
        racing an exit (stop's TERM-then-KILL) need not care which came first. A container
        this node has no trace of raises NotFound, unless missing_ok."""
        args = ["kill", *(["--all"] if all else []), cid, str(int(signal))]
        done = await self._crun(*args, check=False)
        if done.returncode == 0:
            return True
        current = await self.state(cid)
        if current in ("running", "created", "paused"):
            raise SystemError_(f"cannot kill container {cid}: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        if current is None and not missing_ok and not self.paths(cid).bundle.exists():
            raise NotFound(f"No such container: {cid}")
        return False

    async def pause(self, cid: str) -> None:
        """Freeze every process of the container (the v1 freezer cgroup, via crun)."""
        await self._crun("pause", cid)

    async def resume(self, cid: str) -> None:
        await self._crun("resume", cid)

    def update_resources(self, cid: str, resources: Resources) -> None:
        """Apply new limits to a running (or paused) container's cgroups now. Raises
        resources.MemoryBelowUsage when the memory limit cannot be met."""
        try:
            path = json.loads(self.paths(cid).config.read_text())["linux"]["cgroupsPath"]
        except (FileNotFoundError, ValueError, KeyError):
            raise Conflict(f"Container {cid} is not running") from None
        resources_mod.apply(path, resources)

    async def state(self, cid: str) -> str | None:
        """crun's view: "created", "running", "paused", "stopped"; None if crun has no such
        container (never created, or deleted)."""
        done = await self._crun("state", cid, check=False)
        if done.returncode != 0:
            return None
        return json.loads(done.stdout)["status"]

    def exit_status(self, cid: str) -> ExitStatus | None:
        """The recorded exit, if conmon has written it (non-blocking)."""
        p = self.paths(cid)
        exit_file = p.persist / "exit"
        try:
            st = exit_file.stat()
            code = int(exit_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # conmon creates `oom` in its persist dir, and also in its cwd (the bundle).
        oom = (p.persist / "oom").exists() or (p.bundle / "oom").exists()
        return ExitStatus(code, oom, st.st_mtime_ns)

    async def wait_exit(self, cid: str, conmon_pid: int) -> ExitStatus:
        """Wait for the container to exit and return its status.

        Waits on a pidfd of conmon, which exits right after recording the exit; works for a
        conmon started by an earlier node process too (it need not be our child)."""
        try:
            pidfd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            try:
                if _is_conmon_of(conmon_pid, cid):
                    await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        status = self.exit_status(cid)
        if status is None:
            if not self.paths(cid).config.exists():
                # cleanup()/remove() ran while we waited
                raise NotFound(f"No such container: {cid}")
            raise SystemError_(f"the monitor of container {cid} exited without recording "
                               "an exit code")
        return status

    async def cleanup(self, cid: str) -> None:
        """Release what one run of the container holds: its runtime state and processes
        (killed if still running), overlay and sysfs mounts, cgroups and per-run files. The
        writable layer and the log stay, as Docker keeps them across stop/start, and the next
        prepare_rootfs + create starts a new run. Idempotent; fine on half-made runs."""
        p = self.paths(cid)
        cgroup_paths = set()
        try:
            cgroup_paths.add(json.loads(p.config.read_text())["linux"]["cgroupsPath"])
        except (FileNotFoundError, ValueError, KeyError):
            pass
        if self.cgroup_parent:
            cgroup_paths.add(f"{self.cgroup_parent.rstrip('/')}/{cid}")
        # crun keeps its state in <root>/<id>; without it there is nothing for crun to do,
        # which saves a process spawn on every start of a fresh container.
        if (self.dirs.crun_root / cid).exists():
            done = await self._crun("delete", "--force", cid, check=False)
            if done.returncode != 0 and await self.state(cid) is not None:
                raise SystemError_(f"cannot delete container {cid}: "
                                   f"{done.stderr.decode(errors='replace').strip()}")
        await self._wait_conmon_gone(cid, p)
        await trio.to_thread.run_sync(_unmount_run, p)
        for path in cgroup_paths:
            await self._remove_cgroup(path)
        await trio.to_thread.run_sync(_remove_run_files, p)

    async def remove(self, cid: str) -> None:
        """cleanup(), then delete everything else: writable layer, log, bundle."""
        p = self.paths(cid)
        await self.cleanup(cid)
        await trio.to_thread.run_sync(rootfs_mod.remove_rootfs, p.rootfs, p.upper, p.work)
        if rootfs_mod.is_mounted(p.sysfs):  # never rmtree through a mount
            raise SystemError_(f"{p.sysfs} is still mounted")
        await trio.to_thread.run_sync(shutil.rmtree, p.bundle, True)

    async def _wait_conmon_gone(self, cid: str, p: ContainerPaths, timeout: float = 10.0) -> None:
        # conmon writes into the bundle when the container dies; let it finish before the
        # bundle is removed.
        conmon_pid = _read_int(p.conmon_pidfile)
        if conmon_pid is None:
            return
        try:
            pidfd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            return
        try:
            if _is_conmon_of(conmon_pid, cid):
                with trio.move_on_after(timeout):
                    await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)

    async def _remove_cgroup(self, path: str) -> None:
        # A killed container's tasks can take a moment to leave the cgroup.
        for _ in range(50):
            if not cgroups.remove(path):
                return
            await trio.sleep(0.02)
        busy = cgroups.remove(path)
        if busy:
            raise SystemError_(f"cgroup of container still busy: {busy[0]}")

    # -- I/O -------------------------------------------------------------------------------

    async def open_attach(self, cid: str) -> AttachConnection:
        """Attach to the container's stdio. Connect before start() to miss no output."""
        return await AttachConnection.connect(self.paths(cid).bundle, cid)

    async def resize(self, cid: str, height: int, width: int) -> None:
        """Resize the container's tty (no effect without one)."""
        await self._write_ctl(self.paths(cid).ctl, cid, encode_resize(height, width))

    async def _write_ctl(self, ctl: Path, cid: str, message: bytes) -> None:
        """Send one message on conmon's ctl FIFO, one at a time.

        conmon 2.1.6 parses only the first line of each read (read_from_ctrl_buffer hands
        it `ctlbuf`, not the line), on ctl and again on the winsz FIFO it relays resizes
        through, so two messages read together apply the first twice and lose the second.
        So: wait until both FIFOs are empty, write, and wait until conmon has read it all,
        which also means a resize is in force when this returns. Bounded waits."""
        # O_NONBLOCK: opening a FIFO for writing would otherwise block until a reader
        # exists; conmon keeps ctl open for reading while it lives, so ENXIO means gone.
        try:
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Conflict(f"container {cid} is not running") from None
        except OSError as e:
            if e.errno == errno.ENXIO:  # no reader: conmon is gone
                raise Conflict(f"container {cid} is not running") from None
            raise
        fds = [fd]
        try:
            with contextlib.suppress(OSError):
                fds.append(os.open(ctl.with_name("winsz"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            await _fifos_drained(fds)
            os.write(fd, message)
            await _fifos_drained(fds)
        finally:
            for f in fds:
                os.close(f)

    # -- exec ------------------------------------------------------------------------------

    async def exec(self, cid: str, exec_id: str, spec: ExecSpec, *, attach: bool) -> ExecSession:
        """Start spec in running container cid. With attach, session.attach is connected
        before the process runs (no output is missed); without, output goes only to the
        session's log. Raises Conflict if the container is not running, and the typed
        create errors (CommandNotFound, ...) if crun cannot start the process."""
        paths = ExecPaths(self.paths(cid), exec_id)
        if not paths.container.config.exists():
            raise NotFound(f"No such container: {cid}")
        process = oci_process(spec, self.nofile)
        await trio.to_thread.run_sync(write_exec_dir, paths, process)
        argv = exec_conmon_argv(conmon=self.conmon_path, runtime=self.runtime_exec,
                                runtime_root=self.dirs.crun_root, paths=paths, attach=attach,
                                stdin=attach and spec.open_stdin, tty=spec.tty)
        return await start_exec(argv=argv, paths=paths, attach=attach, timeout=self.create_timeout)

    async def exec_piped(self, cid: str, exec_id: str, spec: ExecSpec, nursery: trio.Nursery) -> PipeExecSession:
        """Start a non-tty spec in running container cid with `crun exec` as our own child
        (runtime/pipe_exec.py): output arrives through the returned session, whose pipe
        readers run in nursery. The caller has made sure the command exists."""
        if spec.tty:
            raise ValueError("a tty exec goes through conmon (exec)")
        paths = ExecPaths(self.paths(cid), exec_id)
        if not paths.container.config.exists():
            raise NotFound(f"No such container: {cid}")
        write_exec_dir(paths, oci_process(spec, self.nofile))  # two small writes: no thread hop
        argv = crun_exec_argv(runtime=self.runtime_exec, runtime_root=self.dirs.crun_root, paths=paths)
        session = await start_pipe_exec(argv, paths, stdin=spec.open_stdin)
        session.start_readers(nursery)
        return session

    def exec_exit_code(self, cid: str, exec_id: str) -> int | None:
        """An exec's recorded exit code (also after a node restart), None while it runs."""
        return read_exit_code(ExecPaths(self.paths(cid), exec_id))

    def exec_log_path(self, cid: str, exec_id: str) -> Path:
        return ExecPaths(self.paths(cid), exec_id).log

    async def resize_exec(self, cid: str, exec_id: str, height: int, width: int) -> None:
        await self._write_ctl(ExecPaths(self.paths(cid), exec_id).dir / "ctl", cid,
                              encode_resize(height, width))

    async def remove_exec(self, cid: str, exec_id: str) -> None:
        """Forget a finished exec (its directory). The container's delete removes all."""
        await trio.to_thread.run_sync(shutil.rmtree, ExecPaths(self.paths(cid), exec_id).dir, True)

    # -- cgroups ---------------------------------------------------------------------------

    def stats(self, cid: str) -> cgroups.CgroupStats:
        try:
            path = json.loads(self.paths(cid).config.read_text())["linux"]["cgroupsPath"]
        except (FileNotFoundError, ValueError, KeyError):
            raise NotFound(f"No such container: {cid}") from None
        return cgroups.read_stats(path)

    # -- reconcile -------------------------------------------------------------------------

    def leftovers(self, known_ids: set[str] | frozenset[str]) -> set[str]:
        """Ids with any trace on this node (bundle, crun state, overlay or sysfs mount, cgroup
        under cgroup_parent) that the engine does not know; remove(cid) clears each. Cheap: a
        few directory scans and one mountinfo read."""
        found = set(self.bundle_ids())
        try:
            found.update(e.name for e in os.scandir(self.dirs.crun_root) if e.is_dir())
        except FileNotFoundError:
            pass
        prefix = str(self.dirs.containers) + "/"
        for m in read_mountinfo():
            if m.mount_point.startswith(prefix):
                found.add(m.mount_point[len(prefix):].split("/", 1)[0])
        if self.cgroup_parent:
            found.update(cgroups.children(self.cgroup_parent))
        return found - set(known_ids)
