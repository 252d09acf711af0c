"""Gossip configuration: one frozen dataclass and memberlist's three profiles.

``lan()`` is memberlist's ``DefaultLANConfig`` (what Serf uses unchanged), ``wan()`` its
``DefaultWANConfig`` and ``local()`` its ``DefaultLocalConfig``; the Serf-layer fields take
Serf's ``DefaultConfig`` values.  Durations are seconds (floats), as the core's clock is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["SwimConfig", "lan", "wan", "local", "DEFAULT_PORT", "DEFAULT_VSN"]

#: memberlist's default bind port (UDP and TCP).
DEFAULT_PORT = 7946
#: [pmin, pmax, pcur, dmin, dmax, dcur]: memberlist protocol 1..5 speaking 2 (what Serf
#: sends), Serf delegate protocol 2..5 speaking 4 (accepted by Serf 0.9.4, measured).
DEFAULT_VSN = (1, 5, 2, 2, 5, 4)


@dataclass(frozen=True, slots=True)
class SwimConfig:
    # --- identity -------------------------------------------------------------------------
    #: Unique node name in the cluster (memberlist Name; Serf's -node).
    name: str
    #: Address the UDP and TCP sockets bind to.
    bind_addr: str = "0.0.0.0"
    #: Port for both UDP and TCP; 0 lets the transport pick a free one.
    bind_port: int = DEFAULT_PORT
    #: Address other nodes should use for us (4- or 16-byte IP on the wire); None: bind_addr.
    advertise_addr: str | None = None
    #: Port other nodes should use for us; None: the bound port.
    advertise_port: int | None = None
    #: Serf-style tags carried in node meta (0xFF + msgpack map, <= 512 bytes encoded).
    tags: dict[str, str] = field(default_factory=dict)
    #: Version vector sent in every alive and push/pull state.
    vsn: tuple[int, int, int, int, int, int] = DEFAULT_VSN

    # --- failure detection (SWIM + Lifeguard) ------------------------------------------------
    #: Time between probes of successive members (round robin). Scaled by awareness.
    #: 0 disables probing (only sensible in tests that play the peers by hand).
    probe_interval: float = 1.0
    #: How long to wait for a direct UDP ack before asking others (indirect) and TCP.
    probe_timeout: float = 0.5
    #: Peers asked to ping a target for us when the direct ping times out.
    indirect_checks: int = 3
    #: Suspicion timeout multiplier: min timeout = mult * max(1, log10 n) * probe_interval.
    suspicion_mult: int = 4
    #: max suspicion timeout = this * min; Lifeguard shrinks from max to min with confirmations.
    suspicion_max_timeout_mult: int = 6
    #: Lifeguard awareness: probe interval is scaled by up to this factor on a degraded node.
    awareness_max_multiplier: int = 8
    #: Never try the TCP fallback ping (memberlist DisableTcpPings).
    disable_tcp_pings: bool = False

    # --- dissemination -----------------------------------------------------------------------
    #: A broadcast is retransmitted mult * ceil(log10(n + 1)) times.
    retransmit_mult: int = 4
    #: Time between gossip rounds (0 disables gossip).
    gossip_interval: float = 0.2
    #: Random members each gossip round is sent to.
    gossip_nodes: int = 3
    #: Dead members stay gossip targets (and in the table) this long, so they can refute.
    gossip_to_the_dead_time: float = 30.0
    #: Largest datagram we build; piggybacked broadcasts fill packets up to it.
    udp_buffer_size: int = 1400

    # --- anti-entropy ------------------------------------------------------------------------
    #: Time between full state exchanges with one random member (0 disables); stretched
    #: above 32 members by memberlist's pushPullScale.
    push_pull_interval: float = 30.0
    #: Deadline for a whole TCP exchange (connect, request, reply).
    tcp_timeout: float = 10.0
    #: A dead (not left) node may come back at a new address after this long (0: never).
    dead_node_reclaim_time: float = 0.0

    # --- Serf layer ----------------------------------------------------------------------------
    #: Send Serf join/leave intents so stock Serf agents show 'left' rather than 'failed'.
    serf_intents: bool = True
    #: Serf ReconnectInterval: how often to try a push/pull with a failed member (0: never).
    reconnect_interval: float = 30.0
    #: Serf ReconnectTimeout: stop trying to reconnect to a failed member after this long.
    reconnect_timeout: float = 24 * 3600.0
    #: Serf BroadcastTimeout: longest wait for each leave broadcast (intent, then dead).
    broadcast_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node needs a name")
        if len(self.vsn) != 6 or not (0 < self.vsn[0] <= self.vsn[2] <= self.vsn[1]):
            raise ValueError(f"bad version vector {self.vsn!r}")
        if self.probe_interval > 0 and self.probe_timeout > self.probe_interval:
            raise ValueError("probe_timeout must not exceed probe_interval")

    def with_(self, **changes: Any) -> "SwimConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


def lan(name: str, **overrides: Any) -> SwimConfig:
    """memberlist DefaultLANConfig: a local-area network, ~1 s probes, ~6 s to detect."""
    return SwimConfig(name=name, **overrides)


def wan(name: str, **overrides: Any) -> SwimConfig:
    """memberlist DefaultWANConfig: slower, more tolerant timings for wide-area links."""
    base: dict[str, Any] = dict(
        tcp_timeout=30.0,
        suspicion_mult=6,
        push_pull_interval=60.0,
        probe_timeout=3.0,
        probe_interval=5.0,
        gossip_nodes=4,
        gossip_interval=0.5,
        gossip_to_the_dead_time=60.0,
    )
    base.update(overrides)
    return SwimConfig(name=name, **base)


def local(name: str, **overrides: Any) -> SwimConfig:
    """memberlist DefaultLocalConfig: loopback or one switch, quicker everything."""
    base: dict[str, Any] = dict(
        tcp_timeout=1.0,
        indirect_checks=1,
        retransmit_mult=2,
        suspicion_mult=3,
        push_pull_interval=15.0,
        probe_timeout=0.2,
        probe_interval=1.0,
        gossip_interval=0.1,
        gossip_to_the_dead_time=15.0,
    )
    base.update(overrides)
    return SwimConfig(name=name, **base)
