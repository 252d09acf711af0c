"""Where a container's files live, and the conmon/crun command lines (pure).

Layout under the node's state dir:

    containers/<id>/            the OCI bundle; conmon's cwd
        upper/  work/  ctr.log      outlive a run: the writable layer and the log
        rootfs/                     the overlay mount point, mounted while a run exists
        sysfs/                      the container's /sys, mounted in its netns while a run exists
        config.json  ctr.pid  conmon.pid  ctl  winsz  attach  oom    one run's
        persist/exit  persist/oom   exit code and OOM flag, written by conmon
        exits/<id>                  exit code again (conmon's --exit-dir)
        execs/<exec id>/            one exec session each (ExecPaths)
    run/crun/                   crun --root
    run/tmp/                    TMPDIR for conmon's console sockets (tty containers)

The attach socket is bound in the bundle itself (conmon --full-attach). conmon 2.1.6 binds
it through /proc/self/fd/<dir fd>/attach and so do we when connecting, so sun_path's
108-byte limit never applies to it, and there is no socket-dir symlink to go stale or to
collide between ids sharing a 12-character prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ContainerPaths:
    id: str
    bundle: Path

    @property
    def config(self) -> Path:
        return self.bundle / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    @property
    def sysfs(self) -> Path:
        return self.bundle / "sysfs"

    @property
    def upper(self) -> Path:
        return self.bundle / "upper"

    @property
    def work(self) -> Path:
        return self.bundle / "work"

    @property
    def log(self) -> Path:
        return self.bundle / "ctr.log"

    @property
    def pidfile(self) -> Path:
        return self.bundle / "ctr.pid"

    @property
    def conmon_pidfile(self) -> Path:
        return self.bundle / "conmon.pid"

    @property
    def persist(self) -> Path:
        return self.bundle / "persist"

    @property
    def exits(self) -> Path:
        return self.bundle / "exits"

    @property
    def ctl(self) -> Path:
        return self.bundle / "ctl"

    @property
    def execs(self) -> Path:
        return self.bundle / "execs"

    @property
    def attach(self) -> Path:
        return self.bundle / "attach"


@dataclass(frozen=True, slots=True)
class NodeDirs:
    state_dir: Path

    @property
    def containers(self) -> Path:
        return self.state_dir / "containers"

    @property
    def crun_root(self) -> Path:
        return self.state_dir / "run" / "crun"

    @property
    def tmp(self) -> Path:
        return self.state_dir / "run" / "tmp"

    def container(self, cid: str) -> ContainerPaths:
        return ContainerPaths(cid, self.containers / cid)


def runtime_argv(runtime: str, root: Path, *args: str) -> list[str]:
    return [runtime, "--root", str(root), *args]


def conmon_argv(*, conmon: str, runtime: str, runtime_root: Path, paths: ContainerPaths,
                stdin: bool, leave_stdin_open: bool, tty: bool) -> list[str]:
    """podman's flag set (minus --exit-command and -s: there is no systemd here).

    conmon runs only `create` itself; the driver runs `start`. --leave-stdin-open keeps the
    container's stdin open when an attach client (or the node) goes away; without it the
    first client to disconnect closes stdin, which is what Docker's StdinOnce wants.
    """
    argv = [
        conmon, "--api-version", "1",
        "-c", paths.id, "-u", paths.id, "-n", paths.id,
        "-r", runtime, "-b", str(paths.bundle),
        "-p", str(paths.pidfile), "-P", str(paths.conmon_pidfile),
        "--exit-dir", str(paths.exits), "--persist-dir", str(paths.persist),
        "--full-attach",
        "-l", f"k8s-file:{paths.log}",
        # No fsync of the log at exit: Docker's json-file does not sync either, and a flush
        # per container exit costs milliseconds on `docker run --rm`.
        "--no-sync-log",
        "--runtime-arg", "--root", "--runtime-arg", str(runtime_root),
    ]
    if stdin:
        argv.append("-i")
        if leave_stdin_open:
            argv.append("--leave-stdin-open")
    if tty:
        argv.append("-t")
    return argv


@dataclass(frozen=True, slots=True)
class ExecPaths:
    """One exec session's own directory: conmon re-creates ctl/winsz/attach in its -b
    directory and names its exit file after the container id, so sharing the container's
    would clobber them and fake a container exit."""

    container: ContainerPaths
    exec_id: str

    @property
    def dir(self) -> Path:
        return self.container.execs / self.exec_id

    @property
    def process(self) -> Path:
        return self.dir / "process.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "exec.pid"

    @property
    def conmon_pidfile(self) -> Path:
        return self.dir / "conmon.pid"

    @property
    def exits(self) -> Path:
        return self.dir / "exits"

    @property
    def exit_file(self) -> Path:
        return self.dir / "exit"

    @property
    def log(self) -> Path:
        return self.dir / "exec.log"

    @property
    def attach(self) -> Path:
        return self.dir / "attach"

    @property
    def crun_log(self) -> Path:
        return self.dir / "crun.log"


def exec_conmon_argv(*, conmon: str, runtime: str, runtime_root: Path, paths: ExecPaths,
                     attach: bool, stdin: bool, tty: bool) -> list[str]:
    """conmon running `crun exec --detach` of paths.process in container paths.container."""
    argv = [
        conmon, "--api-version", "1",
        "-c", paths.container.id, "-u", paths.exec_id, "-n", paths.container.id,
        "-r", runtime, "-b", str(paths.dir),
        "-p", str(paths.pidfile), "-P", str(paths.conmon_pidfile),
        "--exit-dir", str(paths.exits), "--persist-dir", str(paths.dir),
        "-l", f"k8s-file:{paths.log}", "--no-sync-log", "--full-attach",
        "--runtime-arg", "--root", "--runtime-arg", str(runtime_root),
        "-e", "--exec-process-spec", str(paths.process),
    ]
    if attach:
        argv.append("--exec-attach")
    if stdin:
        argv.append("-i")
    if tty:
        # A tty exec's EOF is a ctrl-D byte through the pty: keeping stdin open across client
        # closes lets a detaching `docker exec -it` client leave the shell running.
        argv += ["-t", "--leave-stdin-open"]
    return argv


def crun_exec_argv(*, runtime: str, runtime_root: Path, paths: ExecPaths) -> list[str]:
    """`crun exec` of paths.process in the foreground (runtime/pipe_exec.py): crun waits for
    the process and exits with its code; its own errors go to paths.crun_log as JSON."""
    return [runtime, "--root", str(runtime_root), "--log", str(paths.crun_log), "--log-format", "json",
            "exec", "--process", str(paths.process), "--pid-file", str(paths.pidfile), paths.container.id]
