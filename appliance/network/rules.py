"""Packet filter and NAT rules in the node's namespace: network walls and published ports.

`render()` is pure: from the networks and published ports it writes the complete contents of
our own chains as `iptables-restore --noflush` input (each chain flushed and refilled in one
atomic transaction), so applying is idempotent and nothing of a removed network or port can
linger. `Firewall` is the shell that runs iptables (the nf_tables backend; there is no `nft` CLI
on these hosts). Built-in chains get one jump each into ours, added once (`ensure_hooks`).

Chains:

    filter FORWARD     -> APPL-FORWARD    walls between networks, internal networks, ingress
    filter INPUT       -> APPL-INPUT      internal networks reach the node only for DNS
    nat PREROUTING     -> APPL-DNAT       published ports (traffic to a local address)
    nat OUTPUT         -> APPL-DNAT       the same for connections made on the node itself
    nat POSTROUTING    -> APPL-POSTROUTING outbound NAT (only when enabled)

Per network (bridge B): traffic within B passes (the bridge switches it; the node turns
br_netfilter off in its namespace, and should someone turn it on, FORWARD accepts it); from B to
any other of our bridges is dropped (APPL-ISOLATE); from B out
of the node passes unless the network is internal; into B from outside passes only as a reply
or to a published port (conntrack DNAT state). Internal networks: nothing in or out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import trio

from ..errors import SystemError_

log = logging.getLogger(__name__)

FORWARD = "APPL-FORWARD"
ISOLATE = "APPL-ISOLATE"
INPUT = "APPL-INPUT"
DNAT = "APPL-DNAT"
POSTROUTING = "APPL-POSTROUTING"

#: (table, built-in chain, the rule that jumps to ours). Inserted first in the built-in chain.
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("filter", "FORWARD", f"-j {FORWARD}"),
    ("filter", "INPUT", f"-j {INPUT}"),
    ("nat", "PREROUTING", f"-m addrtype --dst-type LOCAL -j {DNAT}"),
    ("nat", "OUTPUT", f"! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j {DNAT}"),
    ("nat", "POSTROUTING", f"-j {POSTROUTING}"),
)
_CHAINS = {"filter": (FORWARD, ISOLATE, INPUT), "nat": (DNAT, POSTROUTING)}


@dataclass(frozen=True, slots=True)
class BridgeWall:
    bridge: str
    subnet: str
    gateway: str
    internal: bool = False
    masquerade: bool = False


@dataclass(frozen=True, slots=True)
class PortRule:
    proto: str  # tcp | udp
    host_ip: str  # "" or "0.0.0.0": every local address
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


def render(walls: Sequence[BridgeWall], ports: Iterable[PortRule]) -> str:
    f: list[str] = ["*filter"]
    f += [f":{c} - [0:0]" for c in _CHAINS["filter"]]
    f += [f"-F {c}" for c in _CHAINS["filter"]]
    f.append(f"-A {FORWARD} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    # Internal networks first: a connection from one to a published port on its gateway is
    # DNATed to another bridge, and must not pass as "published" below.
    for w in walls:
        if w.internal:
            f.append(f"-A {FORWARD} -i {w.bridge} ! -o {w.bridge} -j DROP")
            f.append(f"-A {FORWARD} -o {w.bridge} ! -i {w.bridge} -j DROP")
    for w in walls:
        if not w.internal:
            f.append(f"-A {FORWARD} -o {w.bridge} -m conntrack --ctstate DNAT -j ACCEPT")
    for w in walls:
        f.append(f"-A {FORWARD} -i {w.bridge} -o {w.bridge} -j ACCEPT")
        if w.internal:
            f.append(f"-A {INPUT} -i {w.bridge} -d {w.gateway}/32 -p udp --dport 53 -j ACCEPT")
            f.append(f"-A {INPUT} -i {w.bridge} -d {w.gateway}/32 -p tcp --dport 53 -j ACCEPT")
            f.append(f"-A {INPUT} -i {w.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
            f.append(f"-A {INPUT} -i {w.bridge} -j DROP")
        else:
            f.append(f"-A {FORWARD} -i {w.bridge} -j {ISOLATE}")
            f.append(f"-A {FORWARD} -i {w.bridge} -j ACCEPT")
            f.append(f"-A {FORWARD} -o {w.bridge} -j DROP")
        f.append(f"-A {ISOLATE} -o {w.bridge} -j DROP")
    f.append("COMMIT")
    n: list[str] = ["*nat"]
    n += [f":{c} - [0:0]" for c in _CHAINS["nat"]]
    n += [f"-F {c}" for c in _CHAINS["nat"]]
    for p in sorted(ports, key=lambda p: (p.proto, p.host_port, p.host_ip)):
        n.append(f"-A {DNAT} {port_rule(p)}")
    for w in walls:
        if w.masquerade and not w.internal:
            n.append(f"-A {POSTROUTING} -s {w.subnet} ! -o {w.bridge} -j MASQUERADE")
    n.append("COMMIT")
    return "\n".join(f + n) + "\n"


def port_rule(p: PortRule) -> str:
    """The DNAT rule of one published port, without its -A/-D verb (full and incremental
    updates must spell it identically for -D to find it)."""
    dst = f"-d {p.host_ip}/32 " if p.host_ip not in ("", "0.0.0.0") else ""
    return (f"{DNAT} {dst}! -i {p.bridge} -p {p.proto} -m {p.proto} --dport {p.host_port} "
            f"-j DNAT --to-destination {p.container_ip}:{p.container_port}").removeprefix(f"{DNAT} ")


def render_ports(verb: str, ports: Iterable[PortRule]) -> str:
    """An incremental change: add (-A) or delete (-D) some published ports' rules, nothing else.
    One iptables-restore costs ~10 ms on these hosts, a full render ~30 ms."""
    lines = [f"-{verb} {DNAT} {port_rule(p)}" for p in ports]
    return "*nat\n" + "\n".join(lines) + "\nCOMMIT\n" if lines else ""


def missing_hooks(saved: str) -> list[tuple[str, str, str]]:
    """The hooks absent from `iptables-save` output (pure, so the check is testable)."""
    table = ""
    present: set[tuple[str, str, str]] = set()
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A "):
            chain, _, rule = line[3:].partition(" ")
            present.add((table, chain, rule.strip()))
    return [h for h in HOOKS if h not in present]


def render_hooks(hooks: Sequence[tuple[str, str, str]]) -> str:
    out: list[str] = []
    for table in ("filter", "nat"):
        mine = [h for h in hooks if h[0] == table]
        if not mine:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in _CHAINS[table]]
        out += [f"-I {chain} 1 {rule}" for _, chain, rule in mine]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def render_teardown() -> str:
    """Remove our chains and hooks entirely (node uninstall; tests)."""
    out: list[str] = []
    for table in ("filter", "nat"):
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in _CHAINS[table]]
        out += [f"-D {chain} {rule}" for t, chain, rule in HOOKS if t == table]
        out += [f"-F {c}" for c in _CHAINS[table]]
        out += [f"-X {c}" for c in _CHAINS[table]]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


class Firewall:
    """Runs iptables-restore in the node's namespace. Calls are serialised by the caller."""

    def __init__(self, restore: str = "iptables-restore", save: str = "iptables-save"):
        self._restore, self._save = restore, save
        self._last: str | None = None

    async def _run(self, argv: list[str], stdin: bytes = b"") -> str:
        try:
            done = await trio.run_process(argv, stdin=stdin, capture_stdout=True, capture_stderr=True,
                                          check=False)
        except FileNotFoundError as exc:
            raise SystemError_(f"{argv[0]} is not installed: {exc}") from exc
        if done.returncode != 0:
            raise SystemError_(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode(errors="replace")

    async def ensure_hooks(self) -> None:
        saved = await self._run([self._save])
        hooks = missing_hooks(saved)
        if hooks:
            await self._run([self._restore, "-w", "--noflush"], render_hooks(hooks).encode())

    async def apply(self, walls: Sequence[BridgeWall], ports: Iterable[PortRule]) -> None:
        text = render(walls, ports)
        if text == self._last:
            return
        await self._run([self._restore, "-w", "--noflush"], text.encode())
        self._last = text

    async def add_ports(self, ports: Sequence[PortRule]) -> None:
        text = render_ports("A", ports)
        if text:
            await self._run([self._restore, "-w", "--noflush"], text.encode())
            self._last = None

    async def remove_ports(self, ports: Sequence[PortRule]) -> None:
        text = render_ports("D", ports)
        if text:
            self._last = None
            try:
                await self._run([self._restore, "-w", "--noflush"], text.encode())
            except SystemError_ as exc:  # a rule already gone (a full apply raced it): converge
                log.info("removing port rules: %s", exc.message)

    async def teardown(self) -> None:
        await self._run([self._restore, "-w", "--noflush"], render_teardown().encode())
        self._last = None
