"""What the node tells the world about the cluster: snapshots, node events, its own tags.

Pure: the agent (the trio shell) feeds these from the gossip core; the API formats them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .swim.state import State

__all__ = ["STATUS", "MemberInfo", "ClusterSnapshot", "event_action", "node_tags", "api_address", "ROLE"]

#: Our nodes' ``role`` tag; Serf agents and other memberlist nodes carry their own.
ROLE = "appliance"

#: memberlist state -> the word Serf prints in ``serf members``.
STATUS = {State.ALIVE: "alive", State.SUSPECT: "suspect", State.DEAD: "failed", State.LEFT: "left"}


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    host: str
    port: int
    status: str  # alive | suspect | failed | left
    incarnation: int
    tags: dict[str, str]
    last_change: float  # unix time of the last state change we saw
    local: bool = False


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """One consistent view of the gossip agent, for ``appliance members``, /info and /_health."""

    name: str
    state: str  # starting | running | leaving | left | stopped
    addr: tuple[str, int] | None = None
    joined: bool = False
    seeds: tuple[str, ...] = ()
    members: tuple[MemberInfo, ...] = field(default_factory=tuple)

    @property
    def gossip_up(self) -> bool:
        return self.state == "running"

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUS.values(), 0)
        for m in self.members:
            out[m.status] += 1
        return out


def event_action(old: State | None, new: State | None) -> str | None:
    """The ``docker events`` action (type ``node``) for a member transition; None: no event.

    join: first seen, or back after failed/left.  alive: a suspicion was refuted.
    update: tags changed.  suspect, fail, leave: as Serf says.  Reaping a long-gone
    member is housekeeping, not news.
    """
    if new is None:
        return None
    if new == State.ALIVE:
        if old in (None, State.DEAD, State.LEFT):
            return "join"
        return "alive" if old == State.SUSPECT else "update"
    return {State.SUSPECT: "suspect", State.DEAD: "fail", State.LEFT: "leave"}[new]


def api_address(urls: list[str] | tuple[str, ...], advertise_ip: str) -> str:
    """The API address other nodes should use: the first TCP listener (a wildcard host
    replaced by ``advertise_ip``), else the first listener as it is (a unix socket)."""
    for url in urls:
        if url.startswith("tcp://"):
            host, _, port = url[len("tcp://"):].rpartition(":")
            host = host.strip("[]")
            try:
                wildcard = ipaddress.ip_address(host).is_unspecified
            except ValueError:
                wildcard = False
            if wildcard:
                host = advertise_ip
            if ":" in host:
                host = f"[{host}]"
            return f"tcp://{host}:{port}"
    return urls[0] if urls else ""


def node_tags(*, api: str, underlay: str, role: str = ROLE) -> dict[str, str]:
    """The static part of our Serf tags (capacity.capacity_tags adds the rest)."""
    tags = {"role": role, "underlay": underlay}
    if api:
        tags["api"] = api
    return tags
