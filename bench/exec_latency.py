"""`docker exec CID true` latency against a real node, next to a bare `crun exec` into the same
container in the same run, plus the memory each running container costs (conmon included).

    python bench/exec_latency.py                  # 20 timed runs after 2 warm-ups, 10 idle containers
    python bench/exec_latency.py --runs 50 --containers 20

Starts its own node (tests/support/node.py) in a fresh temporary directory, imports a busybox
built from the host's busybox-static, runs one `sleep` container and times:

- `docker exec CID true`: the docker CLI process from fork to exit (HEAD /_ping, inspect,
  exec create, exec start as a hijacked stream, exec inspect for the exit code);
- `docker version`: the CLI's own floor (Go start-up, one round trip);
- bare `crun exec CID /bin/true` with the node's `crun --root`, from a throwaway private mount
  namespace (`unshare -m`, cgroup2 `unified` hidden as crun needs on these hybrid hosts): the
  floor, nothing but crun joining the container's namespaces and cgroups.

The ratio of the two medians has a target of <= 3x; the script exits 1 above it. The memory
rows are bench/run_latency.py's (node VmRSS delta + conmon VmRSS per running container, and
the same on a PSS basis); target <= 2 MiB per container. Everything it made is removed on the
way out, also when a step fails. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run_latency import (
    MemoryFigures,
    Summary,
    _LABEL,
    _docker,
    _environment,
    _mem,
    _row,
    busybox_node,
    measure_memory,
    summarize,
    time_command,
)

TARGET_RATIO = 3.0
TARGET_PER_CONTAINER_MIB = 2.0


# ---- the CLI's five requests from a Python client ---------------------------------------------

def measure_api_exec(docker_host: str, cid: str, runs: int, warmup: int = 2) -> list[float]:
    """Seconds per `docker exec CID true` as the CLI speaks it (ping, inspect and exec create on
    one keep-alive connection, exec start hijacked on a second, exec inspect), without the
    CLI process: what the node itself takes."""
    from tests.support.http import UnixConnection

    path = docker_host[len("unix://"):]
    start_body = json.dumps({"Detach": False, "Tty": False}).encode()
    create_body = json.dumps({"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        conn = UnixConnection(path)
        conn.request("HEAD", "/_ping")
        conn.getresponse().read()
        conn.request("GET", f"/v1.50/containers/{cid}/json")
        conn.getresponse().read()
        conn.request("POST", f"/v1.50/containers/{cid}/exec", body=create_body,
                     headers={"Content-Type": "application/json"})
        exec_id = json.loads(conn.getresponse().read())["Id"]
        with socket.socket(socket.AF_UNIX) as hijack:
            hijack.connect(path)
            hijack.sendall(f"POST /v1.50/exec/{exec_id}/start HTTP/1.1\r\nHost: api\r\n"
                           f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(start_body)}\r\n\r\n".encode() + start_body)
            hijack.shutdown(socket.SHUT_WR)  # as the CLI does without -i
            while hijack.recv(65536):
                pass
        conn.request("GET", f"/v1.50/exec/{exec_id}/json")
        if json.loads(conn.getresponse().read())["ExitCode"] != 0:
            raise RuntimeError("exec of `true` did not exit 0")
        conn.close()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


# ---- the CLI alone: a stub that answers at once ------------------------------------------------

def measure_cli_exec_floor(node, cid: str, runs: int, warmup: int = 2) -> list[float]:
    """Seconds per `docker exec CID true` against a stub on a unix socket that replays the
    node's own answers (inspect, exec create, an upgrade that ends at once, exec inspect)
    without doing anything: the docker CLI's own cost of an exec on this host."""
    import threading
    import uuid

    from tests.support.http import request

    host = node.docker_host
    inspect = request(host, "GET", f"/v1.50/containers/{cid}/json")[2]
    exec_id = json.loads(request(host, "POST", f"/v1.50/containers/{cid}/exec",
                                 {"Cmd": ["true"], "AttachStdout": True})[2])["Id"]
    request(host, "POST", f"/v1.50/exec/{exec_id}/start", {"Detach": True})
    while json.loads(body := request(host, "GET", f"/v1.50/exec/{exec_id}/json")[2])["Running"]:
        time.sleep(0.01)
    answers = {"containers": ("200 OK", inspect), "exec": ("201 Created", json.dumps({"Id": exec_id}).encode()),
               "exec-json": ("200 OK", body), "_ping": ("200 OK", b"")}
    path = f"/tmp/appl-stub-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)

    def answer(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    if not (data := conn.recv(65536)):
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                               if k.lower() == "content-length"), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                target = lines[0].split()[1]
                if target.endswith("/start"):
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    return
                key = ("_ping" if target == "/_ping" else "exec-json" if "/exec/" in target
                       else "exec" if target.endswith("/exec") else "containers")
                status, payload = answers[key]
                conn.sendall(f"HTTP/1.1 {status}\r\nApi-Version: 1.50\r\nOstype: linux\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                             + payload)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        return time_command(dataclasses.replace(node, docker_host=f"unix://{path}"), ["exec", cid, "true"],
                            runs, warmup)
    finally:
        server.close()
        os.unlink(path)


# ---- bare crun exec, in a throwaway mount namespace ------------------------------------------

def measure_bare_crun_exec(crun_root: Path, cid: str, runs: int, warmup: int = 2) -> list[float]:
    """Seconds per `crun --root crun_root exec cid /bin/true`, timed inside a child process run
    under `unshare --mount` (crun refuses the hybrid layout while cgroup2 `unified` is visible;
    unshare/umount is not possible in a caller that already has threads)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, str(Path(__file__).resolve()),
            "--child", str(crun_root), cid, str(runs), str(warmup)]
    done = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"crun exec child failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(crun_root: str, cid: str, runs: int, warmup: int) -> list[float]:
    from bench.bare_crun import _hide_unified

    _hide_unified()
    crun = shutil.which("crun")
    if crun is None:
        raise RuntimeError("crun not found")
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            # stdio to /dev/null: the exec'd process inherits crun's, and a pipe would be timed too
            rc = subprocess.run([crun, "--root", crun_root, "exec", cid, "/bin/true"], check=False,
                                stdin=subprocess.DEVNULL, stdout=null, stderr=null).returncode
        elapsed = time.perf_counter() - t0
        if rc != 0:
            err = subprocess.run([crun, "--root", crun_root, "exec", cid, "/bin/true"], check=False,
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
            raise RuntimeError(f"crun exec exited {rc}: {err.stderr.strip()}")
        if i >= warmup:
            times.append(elapsed)
    return times


# ---- report ----------------------------------------------------------------------------------



def report(exec_: Summary, api: Summary, floor: Summary, cli: Summary, bare: Summary, mem: MemoryFigures) -> str:
    ratio = exec_.median_ms / bare.median_ms
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    per_mib, per_pss_mib = mem.per_container_kib / 1024, mem.per_container_pss_kib / 1024
    mem_verdict = "OK" if per_mib <= TARGET_PER_CONTAINER_MIB else "ABOVE TARGET"
    n = mem.containers
    return "\n".join([
        f"{'latency (ms, wall clock)':<{_LABEL + 2}}{'median':>8} {'p90':>8} {'min':>8} {'max':>8} {'n':>4}",
        _row("docker exec CID true", exec_),
        _row("the same five requests from Python (no CLI)", api),
        _row("docker exec CID true against a stub (the CLI alone)", floor),
        _row("docker version (CLI start + /_ping + /version)", cli),
        _row("bare crun exec CID /bin/true (node's crun root)", bare),
        (f"  {'ratio docker exec / bare crun exec (medians)':<{_LABEL}}{ratio:7.2f}x   "
         f"target <= {TARGET_RATIO:.0f}x: {verdict}"),
        (f"  {'ratio without the CLI: Python client / bare crun exec':<{_LABEL}}"
         f"{api.median_ms / bare.median_ms:7.2f}x"),
        (f"  {'the CLI alone / bare crun exec':<{_LABEL}}{floor.median_ms / bare.median_ms:7.2f}x   "
         f"(docker exec >= this + 1x for crun itself)"),
        (f"  {'split of the docker exec median':<{_LABEL}}CLI floor {cli.median_ms:.1f} + "
         f"crun exec {bare.median_ms:.1f} + spawn/engine/API rest "
         f"{exec_.median_ms - cli.median_ms - bare.median_ms:.1f}"),
        "",
        f"{'memory (MiB)':<{_LABEL + 2}}{'value':>8}",
        _mem("node VmRSS, idle", mem.idle_kib),
        _mem(f"node VmRSS with {n} more running containers", mem.running_kib,
             f"delta {(mem.running_kib - mem.idle_kib) / 1024:+.2f}"),
        _mem(f"conmon VmRSS, sum over {len(mem.conmon_rss_kib)} monitors", sum(mem.conmon_rss_kib),
             f"each {min(mem.conmon_rss_kib) / 1024:.2f}..{max(mem.conmon_rss_kib) / 1024:.2f}"),
        _mem(f"conmon PSS, sum over {len(mem.conmon_pss_kib)} monitors", sum(mem.conmon_pss_kib)),
        _mem(f"per extra running container, RSS: (node delta + conmon)/{n}", mem.per_container_kib,
             f"target <= {TARGET_PER_CONTAINER_MIB:.0f} MiB: {mem_verdict}"),
        _mem("per extra running container, PSS basis", mem.per_container_pss_kib,
             f"{'OK' if per_pss_mib <= TARGET_PER_CONTAINER_MIB else 'ABOVE TARGET'} on this basis"),
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        crun_root, cid, runs, warmup = argv[1], argv[2], int(argv[3]), int(argv[4])
        print(json.dumps(_child(crun_root, cid, runs, warmup)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per figure (at least 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    ap.add_argument("--containers", type=int, default=10, help="sleep containers for the memory figures")
    args = ap.parse_args(argv)
    runs = max(args.runs, 20)

    with busybox_node() as (node, idle_fresh):
        cid = _docker(node, "run", "-d", "--name", "exec-target", "busybox", "sleep", "3600")

        print(f"timing {runs} x `docker exec CID true` and {runs} x bare `crun exec` "
              f"after {args.warmup} warm-ups each ...", flush=True)
        exec_ = summarize(time_command(node, ["exec", cid, "true"], runs, args.warmup))
        api = summarize(measure_api_exec(node.docker_host, cid, runs, args.warmup))
        floor = summarize(measure_cli_exec_floor(node, cid, runs, args.warmup))
        cli = summarize(time_command(node, ["version"], runs, args.warmup))
        bare = summarize(measure_bare_crun_exec(node.data_root / "run" / "crun", cid, runs, args.warmup))
        _docker(node, "rm", "-f", cid)  # the memory figures count every conmon of the node
        print(f"starting {args.containers} x `sleep 300` for the memory figures ...", flush=True)
        mem = measure_memory(node, args.containers, idle_fresh)
    print()
    print(_environment())
    print(report(exec_, api, floor, cli, bare, mem))
    return 0 if exec_.median_ms / bare.median_ms <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
