"""Client side of the JSON-lines agents tests run in other namespaces (runtime, network):
one request per line in, one {"ok", "value" | "type", "message", "traceback"} line out."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time


class AgentError(Exception):
    def __init__(self, type_: str, message: str, tb: str):
        super().__init__(f"{type_}: {message}\n--- in the agent ---\n{tb}")
        self.type, self.message = type_, message


class AgentProcess:
    """Speaks to `proc` (stdin/stdout pipes) one JSON line at a time."""

    name = "agent"

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._buf = b""

    def _reply(self, timeout: float):
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError(f"{self.name} did not answer in time")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise EOFError(f"{self.name} exited (rc={self.proc.wait()})")
                self._buf += chunk
        finally:
            sel.close()
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply["ok"]:
            raise AgentError(reply["type"], reply["message"], reply["traceback"])
        return reply["value"]

    def _send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
