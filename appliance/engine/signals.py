"""Signal names as the docker CLI sends them ("KILL", "SIGHUP", "9")."""

from __future__ import annotations

import signal

from ..errors import InvalidParameter


def parse_signal(value: str | int | None, default: int = signal.SIGKILL) -> int:
    if value in (None, ""):
        return default
    text = str(value).upper()
    if text.isdigit():
        num = int(text)
        if 0 < num < signal.NSIG:
            return num
        raise InvalidParameter(f"Invalid signal: {value}")
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {value}") from None
