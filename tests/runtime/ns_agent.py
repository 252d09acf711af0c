"""The runtime driver under test, as a child process living in the node mount namespace.

Integration tests talk to it over stdin/stdout, one JSON object per line: {"method", "args"}
in, {"ok": true, "value"} or {"ok": false, "type", "message", "traceback"} out. Keeping
the driver here keeps the pytest process itself out of namespace tricks; the tests read
host-side facts (cgroups, /proc/<pid>/status, the layer dirs) from outside, as an operator
would. Methods mirror Runtime's API, plus a few composites that must happen inside one
process (attach, log following).

Run: python -m tests.runtime.ns_agent STATE_DIR LOWER_DIR CGROUP_PARENT
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import traceback
from contextlib import aclosing
from pathlib import Path

from appliance.runtime.mountns import enter_private_mount_namespace


def _main() -> None:
    state_dir, lower, cgroup_parent = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    # First thing, while this process has a single thread.
    enter_private_mount_namespace(state_dir)
    import trio  # noqa: F401  (imported after the namespace switch on purpose)

    trio_main(state_dir, lower, cgroup_parent)


def trio_main(state_dir: Path, lower: Path, cgroup_parent: str) -> None:
    import trio

    from appliance.runtime.logfile import LogFollower, parse_log
    from appliance.runtime.monitor import Runtime
    from appliance.runtime.mountinfo import read_mountinfo
    from appliance.runtime.spec import (
        ContainerSpec,
        ExecSpec,
        IdMap,
        MountSpec,
        Resources,
    )

    rt = Runtime(state_dir / "node", cgroup_parent=cgroup_parent)
    env = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=test")

    def build_spec(cid: str, args: list[str], spec: dict) -> ContainerSpec:
        spec = dict(spec)
        kw: dict = {}
        if "resources" in spec:
            kw["resources"] = Resources(**spec.pop("resources"))
        if "idmap" in spec:
            kw["idmap"] = IdMap(**spec.pop("idmap"))
        if "mounts" in spec:
            kw["mounts"] = tuple(MountSpec(m["destination"], m["source"], m["type"], tuple(m["options"]))
                                 for m in spec.pop("mounts"))
        for key in ("env", "additional_gids", "capabilities"):
            if key in spec:
                kw[key] = tuple(spec.pop(key))
        kw.setdefault("env", env)
        return ContainerSpec(id=cid, args=tuple(args), cgroup_path=f"{cgroup_parent}/{cid}", **kw, **spec)

    def entries_json(entries) -> list:
        return [{"stream": e.stream, "data": e.data.decode(errors="replace"), "time_ns": e.time_ns}
                for e in entries]

    def status_json(st) -> dict:
        return {"code": st.code, "oom_killed": st.oom_killed, "finished_at_ns": st.finished_at_ns}

    async def create(args: list[str], spec: dict | None = None, cid: str | None = None) -> dict:
        cid = cid or secrets.token_hex(32)
        s = build_spec(cid, args, spec or {})
        rootfs = await rt.prepare_rootfs(cid, [lower], idmap=s.idmap)
        launched = await rt.create(s, rootfs)
        return {"id": cid, "pid": launched.pid, "conmon_pid": launched.conmon_pid}

    async def start(id: str) -> None:
        await rt.start(id)

    async def run_detached(args: list[str], spec: dict | None = None) -> dict:
        made = await create(args, spec)
        await rt.start(made["id"])
        return made

    async def kill(id: str, signal: int, all: bool = False) -> bool:
        return await rt.kill(id, signal, all=all)

    async def state(id: str) -> str | None:
        return await rt.state(id)

    async def wait(id: str, conmon_pid: int) -> dict:
        return status_json(await rt.wait_exit(id, conmon_pid))

    async def remove(id: str) -> None:
        await rt.remove(id)

    async def cleanup(id: str) -> None:
        await rt.cleanup(id)

    async def logs(id: str) -> list:
        return entries_json(parse_log(rt.log_path(id).read_bytes()))

    async def run(args: list[str], spec: dict | None = None) -> dict:
        """create, start, wait, read the log, remove."""
        made = await create(args, spec)
        try:
            await rt.start(made["id"])
            status = await rt.wait_exit(made["id"], made["conmon_pid"])
            entries = parse_log(rt.log_path(made["id"]).read_bytes())
        finally:
            await rt.remove(made["id"])
        return {**status_json(status), "pid": made["pid"], "entries": entries_json(entries),
                "stdout": b"".join(e.data for e in entries if e.stream == "stdout").decode(errors="replace"),
                "stderr": b"".join(e.data for e in entries if e.stream == "stderr").decode(errors="replace")}

    async def attach_run(args: list[str], spec: dict | None = None, stdin: list[str] = (),
                         eof: bool = False, resize: list[int] | None = None) -> dict:
        """Attach before start, feed stdin, collect output until the attach socket's EOF."""
        made = await create(args, spec)
        cid = made["id"]
        chunks = []
        try:
            async with await rt.open_attach(cid) as conn:
                if resize:
                    await rt.resize(cid, *resize)
                await rt.start(cid)
                for piece in stdin:
                    await conn.send(piece.encode())
                if eof:
                    conn.send_eof()
                while (got := await conn.receive()) is not None:
                    chunks.append([got[0], got[1].decode(errors="replace")])
            status = await rt.wait_exit(cid, made["conmon_pid"])
        finally:
            await rt.remove(cid)
        return {**status_json(status), "chunks": chunks}

    async def attach_existing(id: str, count: int) -> list:
        """Attach to a running container and return its next `count` output chunks."""
        out = []
        async with await rt.open_attach(id) as conn:
            while len(out) < count and (got := await conn.receive()) is not None:
                out.append([got[0], got[1].decode(errors="replace")])
        return out

    async def follow_run(args: list[str], spec: dict | None = None) -> dict:
        """Follow the log of a running container until it exits and the log is drained."""
        made = await create(args, spec)
        cid = made["id"]
        got = []
        try:
            follower = LogFollower(rt.log_path(cid))
            exited = trio.Event()

            async def waiter():
                await rt.wait_exit(cid, made["conmon_pid"])
                exited.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await rt.start(cid)
                async with aclosing(follower.follow(exited)) as entries:
                    async for entry in entries:
                        got.append(entry)
        finally:
            await rt.remove(cid)
        return {"entries": entries_json(got)}

    async def exec_run(id: str, args: list[str], attach: bool = True, stdin: list[str] = (),
                       eof: bool = False, spec: dict | None = None) -> dict:
        """Run an exec to completion; with attach, collect its output from the socket."""
        exec_id = secrets.token_hex(32)
        es = ExecSpec(args=tuple(args), env=env, **(spec or {}))
        chunks = []
        async with await rt.exec(id, exec_id, es, attach=attach) as session:
            if attach:
                for piece in stdin:
                    await session.attach.send(piece.encode())
                if eof:
                    session.attach.send_eof()
                while (got := await session.attach.receive()) is not None:
                    chunks.append([got[0], got[1].decode(errors="replace")])
            code = await session.wait()
        log = entries_json(parse_log(rt.exec_log_path(id, exec_id).read_bytes()))
        recorded = rt.exec_exit_code(id, exec_id)
        await rt.remove_exec(id, exec_id)
        return {"code": code, "recorded": recorded, "chunks": chunks, "log": log,
                "pid": session.pid}

    async def prepare_only(write: str | None = None) -> str:
        """A half-made container: overlay mounted, no bundle config, nothing running."""
        cid = secrets.token_hex(32)
        rootfs = await rt.prepare_rootfs(cid, [lower])
        if write:
            (rootfs / write).write_text("x")
        return cid

    async def mounts() -> list:
        prefix = str(state_dir) + "/"
        return [m.mount_point for m in read_mountinfo() if m.mount_point.startswith(prefix)]

    async def leftovers() -> list:
        return sorted(rt.leftovers(set()))

    async def stats(id: str) -> dict:
        s = rt.stats(id)
        return {"memory_limit": s.memory_limit, "memory_usage": s.memory_usage,
                "pids_current": s.pids_current, "pids_limit": s.pids_limit,
                "cpu_usage_ns": s.cpu_usage_ns, "cpu_throttling": s.cpu_throttling}

    async def make_netns(name: str) -> str:
        """A fresh network namespace (loopback only) pinned to a file under the state dir;
        the machine's interfaces are never touched."""
        path = state_dir / "netns" / name
        path.parent.mkdir(exist_ok=True)
        path.touch()
        await trio.run_process(["unshare", f"--net={path}", "true"], capture_stdout=True, capture_stderr=True)
        return str(path)

    async def drop_netns(path: str) -> None:
        from appliance.runtime import syscalls
        syscalls.umount2(path, syscalls.MNT_DETACH)
        os.unlink(path)

    methods = {f.__name__: f for f in (
        create, start, run_detached, kill, state, wait, remove, cleanup, logs, run, attach_run,
        attach_existing, follow_run, exec_run, prepare_only, mounts, leftovers, stats, make_netns, drop_netns)}

    async def serve() -> None:
        stdin = trio.lowlevel.FdStream(os.dup(0))
        stdout = trio.lowlevel.FdStream(os.dup(1))
        buf = b""
        await stdout.send_all(b'{"ok": true, "value": "ready"}\n')
        while True:
            while b"\n" not in buf:
                chunk = await stdin.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            request = json.loads(line)
            try:
                with trio.fail_after(request.get("timeout", 30)):
                    value = await methods[request["method"]](**request.get("args", {}))
                reply = {"ok": True, "value": value}
            except Exception as e:  # noqa: BLE001 - the test process re-raises it as AgentError
                reply = {"ok": False, "type": type(e).__name__, "message": str(e),
                         "traceback": traceback.format_exc()}
            await stdout.send_all(json.dumps(reply).encode() + b"\n")

    trio.run(serve)


if __name__ == "__main__":
    _main()
