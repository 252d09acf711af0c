"""Restart policies, pure: dockerd's validation messages and its restart manager's decision.

The decision is moby restartmanager.ShouldRestart: the back-off starts at 100 ms, doubles on
every exit and is capped at one minute; a run that lasted 10 s or more resets it to 100 ms.
The back-off is updated on every exit, whether or not the container is restarted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameter

NO, ALWAYS, ON_FAILURE, UNLESS_STOPPED = "no", "always", "on-failure", "unless-stopped"
POLICIES = (NO, ALWAYS, ON_FAILURE, UNLESS_STOPPED)

BACKOFF_FIRST = 0.1
BACKOFF_MULTIPLIER = 2
BACKOFF_MAX = 60.0
RESET_AFTER = 10.0  # seconds a run must last for the back-off to start over


def validate(name: str, max_retries: int) -> None:
    """moby api/types/container ValidateRestartPolicy; "" is accepted (older clients)."""
    if name in (ALWAYS, UNLESS_STOPPED, NO):
        if max_retries != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            if max_retries < 0:
                msg += " and cannot be negative"
            raise InvalidParameter(msg)
    elif name == ON_FAILURE:
        if max_retries < 0:
            raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    elif name != "":
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of "
                               f"'{NO}', '{ALWAYS}', '{ON_FAILURE}', or '{UNLESS_STOPPED}'")


@dataclass(frozen=True, slots=True)
class Decision:
    restart: bool
    delay: float      # seconds to wait before starting again (the new back-off)


def next_backoff(previous: float, ran_for: float) -> float:
    """The restart manager's timeout after an exit: reset by a long run, else doubled."""
    if ran_for >= RESET_AFTER:
        previous = 0.0
    if previous == 0.0:
        delay = BACKOFF_FIRST
    elif previous < BACKOFF_MAX:
        delay = previous * BACKOFF_MULTIPLIER
    else:
        delay = previous
    return min(delay, BACKOFF_MAX)


def should_restart(name: str, max_retries: int, *, exit_code: int, manually_stopped: bool,
                   restart_count: int, ran_for: float, backoff: float) -> Decision:
    """Whether a container that just exited is started again, and after how long.

    manually_stopped: `docker stop`/`kill` asked for this exit (or the node is shutting
    down); restart_count: restarts so far in this run of the policy (RestartCount)."""
    if name in (NO, ""):
        return Decision(False, backoff)
    delay = next_backoff(backoff, ran_for)
    if name == ALWAYS:
        restart = True
    elif name == UNLESS_STOPPED:
        restart = not manually_stopped
    elif name == ON_FAILURE:
        restart = exit_code != 0 and (max_retries == 0 or restart_count < max_retries)
    else:
        restart = False
    return Decision(restart, delay)


def restart_on_boot(name: str, max_retries: int, *, exit_code: int, manually_stopped: bool,
                    restart_count: int) -> bool:
    """dockerd's restore(): a container that has run before and is not running when the node
    starts is started if its policy says so (`always` even if it was stopped by hand)."""
    return should_restart(name, max_retries, exit_code=exit_code, manually_stopped=manually_stopped,
                          restart_count=restart_count, ran_for=0.0, backoff=0.0).restart
