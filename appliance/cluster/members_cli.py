"""`appliance members`: ask a running node (GET /appliance/members) and print a table.

Plain stdlib HTTP over the node's unix socket or TCP; no trio, no node internals.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time

__all__ = ["fetch", "format_table", "main"]

MEMBERS_PATH = "/appliance/members"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(host: str, timeout: float) -> http.client.HTTPConnection:
    if host.startswith("unix://"):
        return _UnixConnection(host[len("unix://"):], timeout)
    if host.startswith("tcp://"):
        addr, _, port = host[len("tcp://"):].rpartition(":")
        return http.client.HTTPConnection(addr.strip("[]") or "127.0.0.1", int(port), timeout=timeout)
    raise ValueError(f"unsupported -H {host!r}: use unix:///PATH or tcp://ADDR:PORT")


def fetch(host: str, path: str = MEMBERS_PATH, timeout: float = 10.0) -> tuple[int, dict]:
    """(status, decoded JSON body) of GET ``path`` on the node at ``host``."""
    conn = _connection(host, timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        doc = {"message": body.decode(errors="replace")}
    return resp.status, doc


def _ago(unix: float, now: float) -> str:
    if not unix:
        return "-"
    secs = max(0, int(now - unix))
    if secs < 60:
        return f"{secs}s ago"
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s ago"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m ago"


def format_table(doc: dict, now: float | None = None) -> str:
    """The members table (what `serf members` shows, plus incarnation and last change)."""
    now = time.time() if now is None else now
    header = ("NAME", "ADDRESS", "STATUS", "INCARNATION", "TAGS", "LAST CHANGE")
    rows = [header]
    for m in doc.get("Members", []):
        name = m["Name"] + (" (this node)" if m.get("Local") else "")
        tags = ",".join(f"{k}={v}" for k, v in sorted(m.get("Tags", {}).items()))
        rows.append((name, m["Addr"], m["Status"], str(m["Incarnation"]), tags or "-",
                     _ago(m.get("LastChange", 0), now)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    counts = doc.get("Counts", {})
    summary = ", ".join(f"{counts[k]} {k}" for k in ("alive", "suspect", "failed", "left") if counts.get(k))
    lines.append(f"gossip {doc.get('State', '?')} on {doc.get('GossipAddr') or '-'}"
                 + ("" if doc.get("Joined", True) else " (not joined yet)") + (f"; {summary}" if summary else ""))
    return "\n".join(lines)


def main(host: str, *, as_json: bool = False) -> int:
    try:
        status, doc = fetch(host)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"appliance members: cannot reach the node at {host}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"appliance members: {doc.get('message', status)}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if as_json else format_table(doc))
    return 0
