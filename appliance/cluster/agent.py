"""The node's gossip agent: the trio shell that runs ``swim.transport`` for ``appliance serve``.

Task tree (owned by ``ClusterAgent.run``, started by serve.py with ``nursery.start``)::

    ClusterAgent.run
    ├── transport.run       UDP + TCP on the gossip port, the SWIM core
    ├── _relay_events       MemberChanged -> ``docker events`` (type ``node``), last-change times
    ├── _capacity_loop      samples the host every ``capacity_interval``; new tags when a bucket
    │                       changes, at most every ``tag_min_interval``
    └── _join_loop          only with seeds: push/pull with them, retrying with back-off until
                            one answers or another member reaches us; until then the node is a
                            cluster of one

Graceful stop: ``await agent.leave()`` (Serf leave intent, then dead-from-self, so Serf shows
``left``), then cancel.  Cancelling alone is a crash as far as the other members can tell.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Callable

import trio

from . import capacity
from .addresses import format_hostport, parse_hostport, private_ipv4
from .members import STATUS, ClusterSnapshot, MemberInfo, api_address, event_action, node_tags
from .swim import config as swim_config
from .swim import transport
from .swim.node import Addr, MemberChanged
from .swim.serf import encode_tags
from .swim.state import MemberView, State

__all__ = ["AgentConfig", "ClusterAgent", "join_backoff", "read_host_load"]

log = logging.getLogger(__name__)

#: publish(action, actor_id, attributes): one ``docker events`` entry of type ``node``.
PublishEvent = Callable[[str, str, dict[str, str]], None]


@dataclass(frozen=True, slots=True)
class AgentConfig:
    #: This node's member name (unique in the cluster).
    name: str
    #: Gossip bind address and port (UDP and TCP); port 0 picks a free one.
    bind_host: str = "0.0.0.0"
    bind_port: int = swim_config.DEFAULT_PORT
    #: The port was not asked for explicitly: if it is taken, bind a free one (and say so).
    port_fallback: bool = False
    #: Address (and port) the others should use for us; None: the bind address, or for a
    #: wildcard bind the host's first private IPv4 (memberlist's choice).
    advertise_host: str | None = None
    advertise_port: int | None = None
    #: ``HOST:PORT`` of members to join (hostnames resolved at every attempt).
    seeds: tuple[str, ...] = ()
    #: The node's API listeners (``tcp://`` / ``unix://``), for the ``api`` tag.
    api_urls: tuple[str, ...] = ()
    #: Host load is sampled this often; capacity tags change at most every ``tag_min_interval``.
    capacity_interval: float = 2.0
    tag_min_interval: float = 5.0
    #: Join retries: first wait, doubling up to the cap, +-20 % jitter.
    join_initial_backoff: float = 1.0
    join_max_backoff: float = 30.0
    #: Longest a graceful leave may take before we just stop.
    leave_timeout: float = 12.0
    #: The core forgets dead/left members after gossip_to_the_dead_time (30 s); like Serf
    #: (ReconnectTimeout, TombstoneTimeout: 24 h) we keep listing them as failed/left this long.
    forget_after: float = 24 * 3600.0


def join_backoff(attempt: int, *, initial: float, cap: float, jitter: float = 0.2, u: float = 0.5) -> float:
    """Seconds to wait after failed join ``attempt`` (1-based): initial * 2**(attempt-1),
    capped, scaled by 1 + jitter*(2u - 1) for u in [0, 1)."""
    base = min(cap, initial * (2 ** min(attempt - 1, 30)))
    return base * (1 + jitter * (2 * u - 1))


class ClusterAgent:
    """Membership for one node.  Construct, then ``await nursery.start(agent.run)``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        publish: PublishEvent,
        sample: Callable[[], capacity.HostLoad],
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._publish = publish
        self._sample = sample
        self._rng = rng or random.Random()
        self._state = "starting"
        self._cluster: transport.Cluster | None = None
        self._joined = not config.seeds
        self._last_change: dict[str, float] = {}
        #: Members the core has reaped: their last view, and when (trio clock) that happened.
        self._gone: dict[str, tuple[MemberInfo, float]] = {}
        self._base_tags: dict[str, str] = {}
        self._buckets: capacity.Buckets | None = None
        self._throttle: capacity.TagThrottle | None = None
        self._join_scope = trio.CancelScope()

    # ------------------------------------------------------------------ reading

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> str:
        return self._state

    @property
    def cluster(self) -> transport.Cluster | None:
        return self._cluster

    def snapshot(self) -> ClusterSnapshot:
        cluster = self._cluster
        if cluster is None:
            return ClusterSnapshot(self.name, self._state, joined=self._joined, seeds=self.config.seeds)
        now = trio.current_time()
        for name in [n for n, (_m, since) in self._gone.items() if now - since > self.config.forget_after]:
            del self._gone[name]
        known = {m.name: self._info(m) for m in cluster.members()}
        members = {**{n: m for n, (m, _since) in self._gone.items()}, **known}
        ordered = tuple(members[name] for name in sorted(members))
        return ClusterSnapshot(self.name, self._state, cluster.addr, self._joined, self.config.seeds, ordered)

    def _info(self, m: MemberView) -> MemberInfo:
        return MemberInfo(m.name, m.host, m.port, STATUS[m.state], m.incarnation, m.tags,
                          self._last_change.get(m.name, 0.0), local=m.name == self.name)

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[ClusterAgent] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        advertise = self._advertise_host()
        # memberlist's LAN timings, as Serf's: a mixed cluster judges everyone alike.
        swim_cfg = swim_config.lan(cfg.name, bind_addr=cfg.bind_host, bind_port=cfg.bind_port,
                                   advertise_addr=advertise, advertise_port=cfg.advertise_port)
        self._base_tags = node_tags(api=api_address(cfg.api_urls, advertise), underlay=advertise)
        self._buckets = capacity.buckets(self._sample())
        tags = {**self._base_tags, **capacity.capacity_tags(self._buckets)}
        self._throttle = capacity.TagThrottle(cfg.tag_min_interval, tags, trio.current_time())
        meta = encode_tags(tags)
        async with trio.open_nursery() as nursery:
            try:
                cluster = await nursery.start(self._gossip, swim_cfg, meta, nursery.cancel_scope)
            except OSError as exc:
                if not (cfg.port_fallback and exc.errno == errno.EADDRINUSE):
                    log.error("gossip: cannot bind %s: %s", format_hostport(cfg.bind_host, cfg.bind_port), exc)
                    raise
                log.warning("gossip port %d is taken; binding a free port instead (others must join "
                            "this node at the port `appliance members` shows)", cfg.bind_port)
                cluster = await nursery.start(self._gossip, swim_cfg.with_(bind_port=0), meta, nursery.cancel_scope)
            self._cluster = cluster
            self._last_change[self.name] = time.time()
            nursery.start_soon(self._relay_events, cluster.subscribe(1024))
            nursery.start_soon(self._capacity_loop)
            if cfg.seeds:
                nursery.start_soon(self._join_loop)
            self._state = "running"
            log.info("gossip: %s on %s (tags %s)", self.name, format_hostport(*cluster.addr), tags)
            self._publish("join", self.name, self._attributes(cluster.local_member()))
            task_status.started(self)

    async def leave(self) -> None:
        """Graceful leave (Serf shows ``left``); returns when the news is out or after
        ``leave_timeout``.  The agent's tasks end afterwards."""
        if self._state != "running" or self._cluster is None:
            return
        self._state = "leaving"
        self._join_scope.cancel()
        with trio.move_on_after(self.config.leave_timeout) as scope:
            await self._cluster.leave()
        if scope.cancelled_caught:
            log.warning("gossip: leave took longer than %.0f s; stopping anyway", self.config.leave_timeout)
            self._cluster.stop()
        self._state = "left"

    async def _gossip(self, swim_cfg: swim_config.SwimConfig, meta: bytes, agent_scope: trio.CancelScope,
                      *, task_status: trio.TaskStatus[transport.Cluster] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await transport.run(swim_cfg, meta=meta, task_status=task_status)
        finally:
            if self._cluster is not None:
                # Once up, the transport ends only when stopped or left: so does the agent.
                if self._state != "left":
                    self._state = "left" if self._state == "leaving" else "stopped"
                agent_scope.cancel()

    async def _relay_events(self, events: trio.MemoryReceiveChannel[MemberChanged]) -> None:
        async for ev in events:
            if ev.new is None:
                # Reaped by the core (long dead or left): Serf still lists it, and so do we.
                self._gone[ev.name] = (self._info(ev.member), trio.current_time())
                self._last_change.pop(ev.name, None)
                continue
            self._gone.pop(ev.name, None)
            if ev.new == State.ALIVE and ev.name != self.name and not self._joined:
                # Someone joined us (or we heard of them): we are part of a cluster now.
                log.info("gossip: in a cluster with %s", ev.name)
                self._joined = True
            if ev.old != ev.new or ev.name not in self._last_change:
                self._last_change[ev.name] = time.time()
            action = event_action(ev.old, ev.new)
            if action is not None:
                self._publish(action, ev.name, self._attributes(ev.member))

    async def _capacity_loop(self) -> None:
        assert self._throttle is not None and self._cluster is not None
        while True:
            await trio.sleep(self.config.capacity_interval)
            if self._state != "running":
                return
            self._buckets = capacity.buckets(self._sample(), self._buckets)
            tags = {**self._base_tags, **capacity.capacity_tags(self._buckets)}
            changed = self._throttle.offer(trio.current_time(), tags)
            if changed is not None:
                log.debug("gossip: new tags %s", changed)
                self._cluster.update_tags(changed)

    async def _join_loop(self) -> None:
        assert self._cluster is not None
        cfg = self.config
        with self._join_scope:
            attempt = 0
            while not self._joined:  # a seed answered, or another member reached us first
                attempt += 1
                seeds = await self._resolve_seeds()
                if not seeds:
                    log.info("gossip: every seed is this node; a cluster of one")
                    self._joined = True
                    return
                results = await self._cluster.join(seeds)
                if any(r.ok for r in results):
                    self._joined = True
                    log.info("gossip: joined through %s (attempt %d)",
                             ", ".join(format_hostport(*r.addr) for r in results if r.ok), attempt)
                    return
                delay = join_backoff(attempt, initial=cfg.join_initial_backoff, cap=cfg.join_max_backoff,
                                     u=self._rng.random())
                log.warning("gossip: no seed answered (%s); retrying in %.1f s",
                            "; ".join(f"{format_hostport(*r.addr)}: {r.error}" for r in results), delay)
                await trio.sleep(delay)

    async def _resolve_seeds(self) -> list[Addr]:
        assert self._cluster is not None
        own = self._cluster.addr
        family = trio.socket.AF_INET6 if ":" in own[0] else trio.socket.AF_INET
        out: list[Addr] = []
        for seed in self.config.seeds:
            host, port = parse_hostport(seed, swim_config.DEFAULT_PORT)
            try:
                ip = str(ipaddress.ip_address(host))
            except ValueError:
                try:
                    infos = await trio.socket.getaddrinfo(host, port, family=family, type=trio.socket.SOCK_STREAM)
                except OSError as exc:
                    log.warning("gossip: cannot resolve seed %s: %s", seed, exc)
                    continue
                if not infos:
                    continue
                ip = infos[0][4][0]
            if (ip, port) != own and (ip, port) not in out:
                out.append((ip, port))
        return out

    # ------------------------------------------------------------------ helpers

    def _advertise_host(self) -> str:
        cfg = self.config
        if cfg.advertise_host:
            return cfg.advertise_host
        if not ipaddress.ip_address(cfg.bind_host).is_unspecified:
            return cfg.bind_host
        found = private_ipv4()
        if found is None:
            log.warning("gossip: no non-loopback IPv4 address to advertise; using 127.0.0.1 "
                        "(only nodes on this host can join; set --advertise)")
            return "127.0.0.1"
        return found

    def _attributes(self, m: MemberView) -> dict[str, str]:
        return {**m.tags, "name": m.name, "addr": format_hostport(m.host, m.port), "status": STATUS[m.state]}


def read_host_load(ncpu: int, containers: int) -> capacity.HostLoad:
    """Sample this host (procfs, no disk I/O): MemAvailable and the 1-minute load average."""
    mem = 0
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"MemAvailable:"):
                mem = int(line.split()[1]) * 1024
                break
    return capacity.HostLoad(mem_available=mem, ncpu=ncpu, load1=os.getloadavg()[0], containers=containers)
