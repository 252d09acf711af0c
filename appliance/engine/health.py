"""Health checks: dockerd's rules as pure functions, and one probe run through the runtime's exec.

The rules are moby daemon/health.go's: the first probe runs one interval after start (the
start interval, 5 s by default, while a start period is in progress and the container is still
`starting`); a zero exit is healthy and clears the failing streak; any other result (a timeout
is exit -1) adds to the streak unless the container is still starting inside its start period;
`retries` failures in a row (3 by default) make it unhealthy. The last five results are kept,
each probe's output cut at 4096 bytes. When monitoring stops (exit, pause) the status becomes
unhealthy, as dockerd's CloseMonitorChannel does.

The probe loop itself lives with the supervisor (ContainerService), which owns the task.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import replace

import trio

from ..errors import ApplianceError, InvalidParameter
from ..runtime.logfile import parse_log
from ..store.records import HealthConfig, HealthResult, HealthState

log = logging.getLogger(__name__)

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
MIN_DURATION = 1_000_000  # containertypes.MinimumDuration, 1ms

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


# ---- configuration ---------------------------------------------------------------------------

def from_image(value) -> HealthConfig | None:
    """The image config's Healthcheck object (Docker JSON) as a HealthConfig."""
    if not isinstance(value, dict):
        return None

    def num(key: str) -> int:
        v = value.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0

    test = value.get("Test")
    return HealthConfig(test=[str(t) for t in test] if isinstance(test, list) else [],
                        interval=num("Interval"), timeout=num("Timeout"),
                        start_period=num("StartPeriod"), start_interval=num("StartInterval"),
                        retries=num("Retries"))


def merge(user: HealthConfig | None, image: HealthConfig | None) -> HealthConfig | None:
    """dockerd's merge(userConf, imageConf): unset fields of the container's come from the image's."""
    if image is None:
        return user
    if user is None:
        return image
    return HealthConfig(test=user.test or image.test,
                        interval=user.interval or image.interval,
                        timeout=user.timeout or image.timeout,
                        start_period=user.start_period or image.start_period,
                        start_interval=user.start_interval or image.start_interval,
                        retries=user.retries or image.retries)


def validate(cfg: HealthConfig | None) -> None:
    """dockerd's verifyContainerSettings checks, with its messages."""
    if cfg is None:
        return
    for value, what in ((cfg.interval, "Interval"), (cfg.timeout, "Timeout"),
                        (cfg.start_period, "StartPeriod"), (cfg.start_interval, "StartInterval")):
        if value != 0 and value < MIN_DURATION:
            raise InvalidParameter(f"{what} in Healthcheck cannot be less than 1ms")
    if cfg.retries < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def probe_args(cfg: HealthConfig | None) -> list[str] | None:
    """The command a probe runs, or None when no check is configured (none, NONE, unknown)."""
    if cfg is None or not cfg.test:
        return None
    kind, rest = cfg.test[0], list(cfg.test[1:])
    if kind == "CMD" and rest:
        return rest
    if kind == "CMD-SHELL" and rest:
        return ["/bin/sh", "-c", *rest]
    return None


def timeout_ns(cfg: HealthConfig) -> int:
    return cfg.timeout or DEFAULT_TIMEOUT


def next_delay(cfg: HealthConfig, status: str, started_at: int, now: int) -> float:
    """Seconds until the next probe, decided when the previous one finished (or at start)."""
    start_period = cfg.start_period or DEFAULT_START_PERIOD
    if now - started_at < start_period and status == STARTING:
        return (cfg.start_interval or DEFAULT_START_INTERVAL) / SECOND
    return (cfg.interval or DEFAULT_INTERVAL) / SECOND


# ---- results ---------------------------------------------------------------------------------

def apply_result(state: HealthState | None, cfg: HealthConfig, result: HealthResult,
                 started_at: int) -> HealthState:
    """The health after one probe (handleProbeResult)."""
    state = state or HealthState()
    retries = cfg.retries if cfg.retries > 0 else DEFAULT_RETRIES
    entries = [*state.log, result][-MAX_LOG_ENTRIES:]
    status, streak = state.status, state.failing_streak
    if result.exit_code == 0:
        status, streak = HEALTHY, 0
    else:
        in_start_period = (status == STARTING
                           and result.start - started_at < (cfg.start_period or DEFAULT_START_PERIOD))
        if not in_start_period:
            streak += 1
            if streak >= retries:
                status = UNHEALTHY
    return HealthState(status=status, failing_streak=streak, log=entries)


def stopped(state: HealthState | None) -> HealthState | None:
    """Monitoring stopped (the container exited or was paused): unhealthy, log kept."""
    if state is None:
        return None
    return replace(state, status=UNHEALTHY)


def limit_output(data: bytes) -> str:
    """limitedBuffer: the first 4096 bytes, "..." appended if there was more."""
    text = data[:MAX_OUTPUT].decode(errors="replace")
    return text + "..." if len(data) > MAX_OUTPUT else text


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(), for the timeout message ("30s", "500ms", "1m30s")."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    seconds = _trim(rest / SECOND) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


# ---- one probe (shell) -----------------------------------------------------------------------

async def run_probe(runtime, cid: str, exec_id: str, spec, timeout: int) -> HealthResult:
    """Run spec in container cid as exec exec_id and wait at most timeout ns for it.

    Never raises for a probe that could not run (the container stopping under it, say): that
    is a failed probe, exit -1 with the reason as output, as in dockerd. The process is
    killed if it overruns or if the caller is cancelled (the container was paused or
    exited); its exec directory is always removed."""
    start = time.time_ns()
    session = None
    finished = False
    try:
        try:
            session = await runtime.exec(cid, exec_id, spec, attach=False)
        except (ApplianceError, OSError) as exc:
            return HealthResult(start, time.time_ns(), -1,
                                f"OCI runtime exec failed: {getattr(exc, 'message', None) or exc}")
        async with session:
            with trio.move_on_after(timeout / SECOND):
                try:
                    code = await session.wait()
                except ApplianceError as exc:
                    finished = True
                    return HealthResult(start, time.time_ns(), -1, exc.message)
                finished = True
            if not finished:
                _kill(session.pid)
                finished = True
                return HealthResult(start, time.time_ns(), -1,
                                    f"Health check exceeded timeout ({go_duration(timeout)})")
        end = time.time_ns()
        data = await trio.to_thread.run_sync(_read, runtime.exec_log_path(cid, exec_id))
        output = b"".join(e.data for e in parse_log(data))
        return HealthResult(start, end, code, limit_output(output))
    finally:
        if session is not None and not finished:
            _kill(session.pid)
        with trio.CancelScope(shield=True):
            await runtime.remove_exec(cid, exec_id)


def _read(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except FileNotFoundError:
        return b""


def _kill(pid: int) -> None:
    """SIGKILL the probe process through a pidfd (never a reused pid)."""
    if pid <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except (ProcessLookupError, OSError):
        pass
    finally:
        os.close(fd)
