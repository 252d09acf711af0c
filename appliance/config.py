"""The node's configuration: parsed once in __main__, passed down, never read from os.environ elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_ROOT = Path("/var/lib/appliance")
DEFAULT_HOST = "unix:///run/appliance.sock"
#: Gossip (memberlist/Serf wire) default, as Serf and dockerd's swarm: every interface, 7946.
#: If 7946 is taken and the port was not asked for, the node binds a free port instead.
DEFAULT_GOSSIP_BIND = ("0.0.0.0", 7946)


@dataclass(frozen=True)
class Config:
    data_root: Path = DEFAULT_DATA_ROOT
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    node_name: str = ""
    tenant: str = "default"
    log_level: str = "info"
    userns: bool = True
    #: Gossip bind (host, port); the port may be 0 (a free one).
    gossip_bind: tuple[str, int] = DEFAULT_GOSSIP_BIND
    #: True when --gossip-bind was not given: a taken default port falls back to a free one.
    gossip_port_fallback: bool = True
    #: --advertise: (host, port or None) the other members should use for us.
    advertise: tuple[str, int | None] | None = None
    #: --join: HOST:PORT seeds, retried with back-off until one answers.
    join: tuple[str, ...] = ()
    #: --bridge: the default network's bridge; "none" gives every container loopback only.
    bridge: str = "appl0"
    extra: dict = field(default_factory=dict)


def parse_listen_address(host: str) -> tuple[str, str, int]:
    """-H in dockerd's forms: ("unix", path, 0) or ("tcp", address, port); ValueError otherwise."""
    if host.startswith("unix://") and len(host) > len("unix://"):
        return "unix", host[len("unix://"):], 0
    if host.startswith("tcp://"):
        addr, sep, port = host[len("tcp://"):].rpartition(":")
        if sep and port.isdigit() and int(port) < 65536:
            return "tcp", addr or "127.0.0.1", int(port)
    raise ValueError(f"unsupported -H {host!r}: use unix:///PATH or tcp://ADDR:PORT")
