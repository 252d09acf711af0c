"""Networks: Docker's network API, and the two hooks the container lifecycle calls.

    create / list / inspect / remove / prune / connect / disconnect     `docker network ...`
    plan_endpoints + configure_container      at container create (NetworkingConfig, --ip, aliases)
    attach_container(rec) -> Sandbox          at start: namespace, veths, addresses, ports, DNS,
                                              hosts files; gives ContainerSpec.netns_path + mounts
    detach_container(cid, forget=)            at exit (forget=False) and remove (forget=True)
    rename_container(rec)                     after `docker rename`: the DNS names follow at once
    reconcile(known, running)                 after a restart / kill -9

State lives in the store: NetworkRecord (networks, network_names), EndpointRecord (endpoints,
"<cid>/<nid>"), ip_leases ("<nid>/<ip>" -> cid) and SandboxRecord (sandboxes). An address is
leased in the same write transaction that records the endpoint, and released only after its
veth is gone, so it is never handed out twice, across restarts and kill -9 too. Kernel state
(bridges, veths, pinned namespaces, iptables) is derived from the store and rebuilt or removed
by `run()` and `reconcile()`.

Every mutation holds one trio.Lock: wiring a container takes ~2 ms, so one lock costs little and
rules out network-removal-while-attaching races. No store transaction spans an await.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import trio

from ..errors import (
    ApplianceError,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotImplementedYet,
    SystemError_,
)
from ..network import hostsfiles, ipam
from ..network import ports as portmod
from ..network.dns import DnsEntry, DnsRegistry, DnsServer
from ..network.rules import BridgeWall, Firewall, PortRule
from ..network.wiring import (
    Plug,
    Spare,
    Wiring,
    bridge_mac,
    bridge_name,
    host_ifname,
    mac_for,
)
from ..runtime.spec import MountSpec
from ..store import Store
from ..store.records import (
    ContainerRecord,
    EndpointRecord,
    NetworkRecord,
    PublishedPort,
    SandboxRecord,
)
from .events import EventLog
from .filters import labels_match, parse_docker_time, value_matches
from .naming import new_id

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
DEFAULT_NETWORK = "bridge"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_IFNAME = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
SETUP_FAILED = "failed to set up container networking: "
HOST_REFUSED = ("host networking is not available on this node: every container runs in its own "
                "network namespace (use -p to publish ports)")


_CONFIG_FILES = (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"), ("/etc/resolv.conf", "resolv.conf"))


@dataclass(frozen=True)
class NetworkOptions:
    """The node's networking configuration (from Config; every field has a safe default).

    The default bridge uses 10.213.0.0/16 and user networks without --subnet get a /20 from
    10.216.0.0/13: ranges none of Docker (172.17-31/16, 192.168/16), Podman (10.88/16),
    Kubernetes' usual pod/service ranges (10.244/16, 10.96/12) or the common cloud VPC defaults
    (172.31/16, 10.0/16) use. Auto-picked subnets also skip every route the node already has.
    """

    default_subnet: str = "10.213.0.0/16"
    default_bridge: str = "appl0"
    address_pools: tuple[tuple[str, int], ...] = (("10.216.0.0/13", 20),)
    mtu: int = 1500
    #: Upstream resolvers for the embedded DNS; None: the nameservers of `resolv_conf`.
    dns_upstreams: tuple[str, ...] | None = None
    dns_port: int = 53
    dns_timeout: float = 2.0
    resolv_conf: str = "/etc/resolv.conf"
    #: MASQUERADE from every non-internal network out of the node's other interfaces.
    outbound_nat: bool = False
    #: Set net.ipv4.ip_forward=1 in the node's namespace (published ports and egress need it).
    ip_forward: bool = True
    #: Leave br_netfilter on in the node's namespace (frames within a bridge through iptables and
    #: conntrack). Off by default: no rule of ours needs it (walls stand between bridges, which is
    #: routed traffic; a container reaching a published port on its own network goes through the
    #: proxy), and it costs 10-20% of container-to-container throughput (bench/network_setup.py).
    bridge_netfilter: bool = False
    #: This node's share of each network's dynamic range (see network/ipam.py).
    node_slice: ipam.NodeSlice = field(default_factory=ipam.NodeSlice)
    #: Spare sandboxes made ahead, off the attach's path: a pinned namespace with loopback up
    #: and its sysctls (unshare alone is ~0.4 ms), and the files dir. Creating a file costs
    #: 0.4-0.9 ms of kernel time on these hosts' ext4, renaming one ~0.01 ms, and an attach
    #: needs five (pin, dir, hosts, hostname, resolv.conf). A burst past the spares makes its own.
    spares: int = 4


@dataclass(frozen=True)
class EndpointConfig:
    """What a client asked for one network (NetworkingConfig.EndpointsConfig[name])."""

    aliases: tuple[str, ...] = ()
    ipv4_address: str = ""


@dataclass(frozen=True)
class EndpointPlan:
    """Validated at create, before the container record is written (see plan_endpoints)."""

    none: bool = False
    networks: tuple[tuple[str, EndpointConfig], ...] = ()  # (network id, config), in order


@dataclass(frozen=True)
class Sandbox:
    """attach_container's answer: what the OCI spec needs."""

    netns_path: str
    mounts: tuple[MountSpec, ...]
    endpoints: tuple[EndpointRecord, ...] = ()
    ports: tuple[PublishedPort, ...] = ()


@dataclass(frozen=True)
class EndpointView:
    record: EndpointRecord
    network: NetworkRecord
    container_name: str = ""


@dataclass(frozen=True)
class NetworkView:
    record: NetworkRecord
    endpoints: tuple[EndpointView, ...] = ()


@dataclass(frozen=True)
class ContainerNetworks:
    """A container's network state for inspect (NetworkSettings) and `docker port`."""

    sandbox: SandboxRecord | None
    endpoints: tuple[EndpointView, ...] = ()
    ports: tuple[PublishedPort, ...] = ()
    network_mode: str = "default"


@dataclass
class _Reaping:
    """A detached container whose host veths may still exist: its namespace was unpinned and
    the kernel removes them in the background. Its leases (`"<nid>/<ip>"` keys) are released
    once no veth carries them, or at the deadline after deleting the veths here."""

    cid: str
    ifnames: tuple[str, ...]
    leases: tuple[str, ...]
    deadline: float


_BRIDGE_NETFILTER = ("bridge/bridge-nf-call-iptables", "bridge/bridge-nf-call-ip6tables",
                     "bridge/bridge-nf-call-arptables")

#: How long the reaper waits for the kernel before deleting a detached container's veths itself
#: (a namespace someone else still holds, e.g. an `nsenter`, does not die when unpinned).
REAP_PATIENCE = 1.0
#: The reaper's polling interval (one batched netlink lookup for every pending veth).
REAP_INTERVAL = 0.01
#: Spares are made once no attach has run for this long: between starts, not during a burst
#: (where they would compete with the attaches for the CPU).
SPARE_QUIET = 0.02


@dataclass
class _Live:
    """In-memory state of a running container's published ports."""

    reservation: portmod.Reservation | None = None
    proxies: trio.CancelScope = field(default_factory=trio.CancelScope)


class NetworkService:
    def __init__(self, store: Store, events: EventLog, node: str, tenant: str, *, data_root: Path,
                 owner_uid: int = 0, options: NetworkOptions = NetworkOptions(),
                 wiring: Wiring | None = None, firewall: Firewall | None = None):
        self._store, self._events, self._node, self._tenant = store, events, node, tenant
        self._opts = options
        self._netns_dir = Path(data_root) / "netns"
        self._files_dir = Path(data_root) / "netfiles"
        self._owner = owner_uid
        self._wiring = wiring or Wiring()
        self._firewall = firewall or Firewall()
        self._lock = trio.Lock()
        self._registry = DnsRegistry()
        upstreams = options.dns_upstreams
        if upstreams is None:
            upstreams = self._host_resolv().nameservers
        self._dns = DnsServer(self._registry, upstreams, timeout=options.dns_timeout)
        self._responders: dict[str, trio.CancelScope] = {}
        self._live: dict[str, _Live] = {}
        self._reaping: dict[str, _Reaping] = {}
        self._reap_wakeup = trio.Event()
        self._spare_dir = Path(data_root) / "netspare"  # spares, and detached files dirs to delete
        self._spares: list[tuple[str, Spare]] = []
        self._spare_wakeup = trio.Event()
        self._last_attach = float("-inf")
        self._nursery: trio.Nursery | None = None

    # ---- lifetime -----------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Owns the DNS servers and the port proxies. Before `started()`: built-in networks,
        forwarding, firewall hooks, every bridge, and the sandboxes the store knows re-adopted
        (DNS names, port reservations). Call `reconcile()` once the containers are known."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with self._lock:
                await self._startup()
            nursery.start_soon(self._reaper)
            nursery.start_soon(self._make_spares)
            task_status.started()
            await trio.sleep_forever()

    async def _startup(self) -> None:
        self._netns_dir.mkdir(parents=True, exist_ok=True)
        self._files_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_builtins()
        if self._opts.ip_forward:
            await trio.to_thread.run_sync(self._wiring.set_sysctl, "ipv4/ip_forward", "1")
        if not self._opts.bridge_netfilter:
            for key in _BRIDGE_NETFILTER:  # per namespace; absent while br_netfilter is not loaded
                with contextlib.suppress(FileNotFoundError):
                    await trio.to_thread.run_sync(self._wiring.set_sysctl, key, "0")
        await self._firewall.ensure_hooks()
        for net in self._bridge_networks():
            await self._bring_up(net)
        with self._store.read() as txn:
            sandboxes = list(txn.sandboxes.values())
        for sb in sandboxes:
            self._readopt(sb)
        await self._apply_firewall()

    def _ensure_builtins(self) -> None:
        with self._store.write() as txn:
            for name in PREDEFINED:
                if txn.network_names.get(name):
                    continue
                rec = NetworkRecord(id=new_id(), name=name, node=self._node, tenant=self._tenant,
                                    created=time.time_ns(), driver={"none": "null"}.get(name, name),
                                    builtin=True)
                if name == DEFAULT_NETWORK:
                    pool = ipam.parse_pool(self._opts.default_subnet)
                    rec = replace(rec, subnet=str(pool.subnet), gateway=str(pool.gateway),
                                  bridge=self._opts.default_bridge, mtu=self._opts.mtu,
                                  options=self._default_bridge_options())
                txn.networks.put(rec.id, rec)
                txn.network_names.put(name, rec.id)

    def _default_bridge_options(self) -> dict[str, str]:
        return {"com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                OPT_MASQUERADE: str(self._opts.outbound_nat).lower(),
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                OPT_BRIDGE_NAME: self._opts.default_bridge,
                OPT_MTU: str(self._opts.mtu)}

    def _bridge_networks(self) -> list[NetworkRecord]:
        with self._store.read() as txn:
            return [n for n in txn.networks.values() if n.driver == "bridge"]

    async def _bring_up(self, net: NetworkRecord) -> None:
        """The network's bridge (idempotent) and its DNS server."""
        pool = ipam.parse_pool(net.subnet, net.ip_range, net.gateway)
        await trio.to_thread.run_sync(self._wiring.ensure_bridge, net.bridge, net.gateway,
                                      pool.prefix_len, net.mtu, bridge_mac(net.id))
        self._registry.set_network(net.id, net.name, resolves_names=not net.builtin)
        if net.id not in self._responders and self._nursery is not None:
            try:
                await self._nursery.start(self._responder, net.id, net.gateway, not net.internal)
            except OSError as exc:
                log.warning("no embedded DNS on network %s (%s:%s): %s", net.name, net.gateway,
                            self._opts.dns_port, exc)

    async def _responder(self, network_id: str, address: str, forward: bool,
                         task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._responders[network_id] = scope
            try:
                await self._dns.serve(network_id, address, self._opts.dns_port, forward=forward,
                                      task_status=task_status)
            finally:
                if self._responders.get(network_id) is scope:
                    del self._responders[network_id]

    def _readopt(self, sb: SandboxRecord) -> None:
        """After a restart: the running container's DNS names and published ports again."""
        with self._store.read() as txn:
            rec = txn.containers.get(sb.container_id)
        # Names from the container's current record (a rename may have been committed just
        # before the node stopped, without its endpoints).
        endpoints = self._refresh_dns_names(rec) if rec is not None else self._endpoints_of(sb.container_id)
        for ep in endpoints:
            if ep.ip:
                self._registry.add(DnsEntry(ep.container_id, ep.network_id,
                                            ipaddress.IPv4Address(ep.ip), tuple(ep.dns_names)))
        if not sb.ports:
            return
        gw = _gateway_endpoint(endpoints, self._networks_by_id())
        if gw is None:
            return
        reqs = [portmod.PortRequest(p.container_port, p.proto, p.host_ip, p.host_port) for p in sb.ports]
        try:
            reservation = portmod.reserve(reqs, self._published_except(sb.container_id),
                                          f"{sb.container_id[:12]} ({gw.endpoint_id})", gw.ip)
        except (SystemError_, InvalidParameter, OSError) as exc:
            log.warning("container %s: cannot take its published ports back: %s", sb.container_id[:12],
                        getattr(exc, "message", exc))
            return
        self._start_proxies(sb.container_id, reservation, gw.ip)

    # ---- lookups ------------------------------------------------------------------------------

    def _find(self, term: str) -> NetworkRecord:
        """dockerd's FindNetwork: full id, full name, then unique id prefix."""
        with self._store.read() as txn:
            rec = txn.networks.get(term) if len(term) == 64 else None
            if rec:
                return rec
            nid = txn.network_names.get(term)
            if nid:
                found = txn.networks.get(nid)
                if found:
                    return found
            hits = txn.networks.keys_with_prefix(term) if term else []
            if len(hits) > 1:
                raise InvalidParameter(f"network {term} is ambiguous ({len(hits)} matches found based on ID prefix)")
            if hits:
                found = txn.networks.get(hits[0])
                if found:
                    return found
        raise NotFound(f"network {term} not found")

    def _networks_by_id(self) -> dict[str, NetworkRecord]:
        with self._store.read() as txn:
            return {n.id: n for n in txn.networks.values()}

    def _endpoints_of(self, cid: str) -> list[EndpointRecord]:
        with self._store.read() as txn:
            keys = txn.endpoints.keys_with_prefix(cid + "/")
            eps = [txn.endpoints.get(k) for k in keys]
        return sorted((e for e in eps if e is not None), key=lambda e: e.order)

    def _active_endpoints(self, nid: str) -> list[EndpointRecord]:
        with self._store.read() as txn:
            return [e for e in txn.endpoints.values() if e.network_id == nid and e.ip]

    def _container_names(self) -> dict[str, str]:
        with self._store.read() as txn:
            return {cid: name for name, cid in txn.names.items()}

    def get(self, term: str) -> NetworkRecord:
        return self._find(term)

    def inspect(self, term: str) -> NetworkView:
        net = self._find(term)
        names = self._container_names()
        eps = tuple(EndpointView(e, net, names.get(e.container_id, "")) for e in self._active_endpoints(net.id))
        return NetworkView(net, eps)

    def list(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[NetworkView]:
        """GET /networks with dockerd's filters: driver, id, label, name, scope, type, dangling."""
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in ("driver", "id", "label", "name", "scope", "type", "dangling"):
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling = None
        if "dangling" in filters:
            value = filters["dangling"][-1].lower()
            if value not in ("true", "false", "1", "0"):
                raise InvalidParameter(f"invalid filter 'dangling={filters['dangling'][-1]}'")
            dangling = value in ("true", "1")
        for t in filters.get("type", []):
            if t not in ("custom", "builtin"):
                raise InvalidParameter(f"invalid filter: 'type'='{t}'")
        with self._store.read() as txn:
            nets = sorted(txn.networks.values(), key=lambda n: n.name)
            used = {e.network_id for e in txn.endpoints.values() if e.ip}
        out = []
        for net in nets:
            if "driver" in filters and net.driver not in filters["driver"]:
                continue
            if "id" in filters and not any(value_matches(p, net.id) for p in filters["id"]):
                continue
            if "name" in filters and not any(value_matches(p, net.name) for p in filters["name"]):
                continue
            if "scope" in filters and "local" not in filters["scope"]:
                continue
            if "type" in filters and ("builtin" if net.builtin else "custom") not in filters["type"]:
                continue
            if not labels_match(net.labels, filters):
                continue
            if dangling is not None and dangling == (net.id in used or net.builtin):
                continue
            out.append(NetworkView(net))
        return out

    # ---- create / remove / prune --------------------------------------------------------------

    async def create(self, name: str, *, driver: str = "", subnet: str = "", ip_range: str = "",
                     gateway: str = "", internal: bool = False, attachable: bool = False,
                     labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
                     enable_ipv6: bool = False, ipam_driver: str = "", extra_subnets: int = 0) -> NetworkRecord:
        """POST /networks/create. Nothing is left behind when it fails."""
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        if not name or not _NETWORK_NAME.match(name):
            raise InvalidParameter(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        driver = driver or "bridge"
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if ipam_driver not in ("", "default"):
            raise NotFound(f'plugin "{ipam_driver}" not found')
        if enable_ipv6:
            raise NotImplementedYet("IPv6 networks are not supported on this node")
        if extra_subnets:
            raise NotImplementedYet("more than one IPv4 subnet per network is not supported on this node")
        options = dict(options or {})
        mtu = _int_option(options, OPT_MTU, self._opts.mtu, 68, 65535)
        nid = new_id()
        bridge = options.get(OPT_BRIDGE_NAME) or bridge_name(nid)
        if not _IFNAME.match(bridge):
            raise InvalidParameter(f"invalid bridge name {bridge!r}: at most 15 of [a-zA-Z0-9_.-]")
        if subnet:
            pool = ipam.parse_pool(subnet, ip_range, gateway)
        elif ip_range or gateway:
            raise InvalidParameter("invalid network config:\n* ip-range and gateway need a subnet")
        else:
            pool = None
        routes = await trio.to_thread.run_sync(self._wiring.routes)
        async with self._lock:
            with self._store.read() as txn:
                if txn.network_names.get(name):
                    raise Conflict(f"network with name {name} already exists")
                others = [n for n in txn.networks.values() if n.subnet]
            if any(n.bridge == bridge for n in others):
                raise Conflict(f"bridge name {bridge} is already used by another network")
            taken = [ipaddress.IPv4Network(n.subnet) for n in others]
            if pool is None:
                pool = ipam.parse_pool(str(ipam.pick_subnet(
                    [(ipaddress.IPv4Network(b), size) for b, size in self._opts.address_pools],
                    taken + [r for r in routes if not _ours(r, others)])))
            ipam.check_overlap(pool.subnet, taken)
            rec = NetworkRecord(id=nid, name=name, node=self._node, tenant=self._tenant, created=time.time_ns(),
                                driver="bridge", subnet=str(pool.subnet), gateway=str(pool.gateway),
                                ip_range=str(pool.ip_range) if pool.ip_range else "", internal=internal,
                                attachable=attachable, labels=dict(labels or {}), options=options,
                                user_subnet=bool(subnet), bridge=bridge, mtu=mtu)
            with self._store.write() as txn:
                if txn.network_names.get(name):
                    raise Conflict(f"network with name {name} already exists")
                txn.networks.put(nid, rec)
                txn.network_names.put(name, nid)
            try:
                await self._bring_up(rec)
                await self._apply_firewall()
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._tear_down_network(rec)
                raise
        self._events.publish("network", "create", nid, {"name": name, "type": "bridge"})
        return rec

    async def remove(self, term: str) -> None:
        net = self._find(term)
        if net.builtin:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            active = self._active_endpoints(net.id)
            if active:
                names = self._container_names()
                listed = ", ".join(f'name:"{names.get(e.container_id, e.container_id[:12])}" '
                                   f'id:"{e.endpoint_id[:12]}"' for e in active)
                raise Forbidden(f"error while removing network: network {net.name} has active endpoints ({listed})")
            await self._tear_down_network(net)
        self._events.publish("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    async def _tear_down_network(self, net: NetworkRecord) -> None:
        with self._store.write() as txn:
            txn.networks.delete(net.id)
            if txn.network_names.get(net.name) == net.id:
                txn.network_names.delete(net.name)
            for key, _ in txn.ip_leases.items_with_prefix(net.id + "/"):
                txn.ip_leases.delete(key)
            for ep in list(txn.endpoints.values()):  # stopped containers' requests to join it
                if ep.network_id == net.id:
                    txn.endpoints.delete(f"{ep.container_id}/{net.id}")
        scope = self._responders.pop(net.id, None)
        if scope is not None:
            scope.cancel()
        self._registry.drop_network(net.id)
        if net.bridge:
            await trio.to_thread.run_sync(self._wiring.delete_bridge, net.bridge)
        await self._apply_firewall()

    async def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Unused user networks (until=, label=, label!=); the names removed."""
        filters = {k: list(v) for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidParameter(f"invalid filter '{key}'")
        until = None
        if "until" in filters:
            until = _parse_until(filters["until"][-1])
        removed = []
        for view in self.list():
            net = view.record
            if net.builtin or not labels_match(net.labels, filters):
                continue
            if until is not None and net.created >= until:
                continue
            try:
                await self.remove(net.id)
            except (Forbidden, NotFound):
                continue
            removed.append(net.name)
        self._events.publish("network", "prune", "", {"reclaimed": "0"})
        return removed

    # ---- endpoints at create ------------------------------------------------------------------

    def plan_endpoints(self, network_mode: str, endpoints: Mapping[str, EndpointConfig] | None = None,
                       container_name: str = "") -> EndpointPlan:
        """Validate HostConfig.NetworkMode + NetworkingConfig at create (raises dockerd's errors);
        the plan is then written by configure_container once the container record exists."""
        endpoints = dict(endpoints or {})
        mode = network_mode or "default"
        if mode == "host":
            raise InvalidParameter(HOST_REFUSED)
        if mode.startswith("container:"):
            raise NotImplementedYet("--network container:<id> is not supported on this node")
        if mode == "none":
            extra = [n for n in endpoints if n not in ("none", "default")]
            if extra:
                raise InvalidParameter("container cannot be connected to multiple networks with one of "
                                       "the networks in private (none) mode")
            return EndpointPlan(none=True)
        first = DEFAULT_NETWORK if mode == "default" else mode
        order = [first] + [n for n in endpoints if n not in (first, "default")]
        planned: list[tuple[str, EndpointConfig]] = []
        for name in order:
            net = self._find(name)
            if any(nid == net.id for nid, _ in planned):
                continue
            if net.name == "none" or net.name == "host":
                if net.name == "host":
                    raise InvalidParameter(HOST_REFUSED)
                raise InvalidParameter("container cannot be connected to multiple networks with one of "
                                       "the networks in private (none) mode")
            cfg = endpoints.get(name) or (endpoints.get("default") if name == first else None) or EndpointConfig()
            self._check_endpoint_config(net, cfg)
            planned.append((net.id, cfg))
        return EndpointPlan(networks=tuple(planned))

    def _check_endpoint_config(self, net: NetworkRecord, cfg: EndpointConfig) -> None:
        if net.builtin and cfg.ipv4_address:
            raise InvalidParameter("user specified IP address is supported on user defined networks only")
        if net.builtin and cfg.aliases:
            raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        if cfg.ipv4_address:
            if not net.user_subnet:
                raise InvalidParameter(f"invalid config for network {net.name}: invalid endpoint settings:\n"
                                       "user specified IP address is supported only when connecting to "
                                       "networks with user configured subnets")
            try:
                ipam.check_static(ipam.parse_pool(net.subnet, net.ip_range, net.gateway), cfg.ipv4_address, ())
            except InvalidParameter as exc:
                raise InvalidParameter(f"invalid config for network {net.name}: invalid endpoint settings:\n"
                                       f"{exc.message}") from None
            except Forbidden:
                pass  # the gateway etc.: dockerd says "Address already in use" at start

    def configure_container(self, rec: ContainerRecord, plan: EndpointPlan) -> None:
        """Write the plan's endpoint requests (after the container record is committed)."""
        with self._store.write() as txn:
            for order, (nid, cfg) in enumerate(plan.networks):
                txn.endpoints.put(f"{rec.id}/{nid}", EndpointRecord(
                    container_id=rec.id, network_id=nid, node=self._node, tenant=self._tenant,
                    order=order, aliases=list(cfg.aliases), requested_ip=cfg.ipv4_address))

    # ---- the lifecycle hooks ------------------------------------------------------------------

    async def attach_container(self, rec: ContainerRecord) -> Sandbox:
        """At start, before the OCI bundle is written: lease addresses, make the namespace and
        its veths, reserve published ports, program DNAT, write hosts files, register DNS names.
        All or nothing: a failure undoes every step and raises dockerd's error."""
        async with self._lock:
            try:
                return await self._attach_locked(rec)
            except BaseException as exc:
                with trio.CancelScope(shield=True):
                    await self._teardown(rec.id, forget=False)
                if isinstance(exc, ApplianceError):  # dockerd 28's words for any of them, same status
                    raise type(exc)(SETUP_FAILED + exc.message) from exc
                raise
            finally:
                self._last_attach = trio.current_time()
                if len(self._spares) < self._opts.spares:
                    self._spare_wakeup.set()

    async def _attach_locked(self, rec: ContainerRecord) -> Sandbox:
        cid = rec.id
        pin = self._netns_dir / cid
        eps = self._endpoints_of(cid)
        if not eps:
            plan = self.plan_endpoints(rec.host_config.network_mode)
            if not plan.none:
                self.configure_container(rec, plan)
                eps = self._endpoints_of(cid)
        none = not eps
        nets = self._networks_by_id()
        for ep in eps:
            if ep.network_id not in nets:
                raise NotFound(f"network {ep.network_id} not found")
        hostname = rec.config.hostname or cid[:12]
        sandbox = SandboxRecord(container_id=cid, node=self._node, tenant=self._tenant, sandbox_id=new_id(),
                                netns=str(pin), hostname=hostname, none=none)
        wanted = {f"{e.network_id}/{e.requested_ip}" for e in eps if e.requested_ip}
        if any(wanted.intersection(job.leases) for job in self._reaping.values()):
            await self._reap(list(self._reaping.values()))  # a static address still held by a dying veth
        try:
            eps, stale = self._plan_leases(rec, eps, nets)
        except SystemError_:
            if not self._reaping:
                raise
            await self._reap(list(self._reaping.values()))  # a full pool: wait for the dying
            eps, stale = self._plan_leases(rec, eps, nets)
        gw = _gateway_endpoint(eps, nets)
        reservation = None
        requests = portmod.requests_from(
            _bindings(rec), rec.config.exposed_ports, rec.host_config.publish_all_ports)
        if requests and gw is not None:
            reservation = portmod.reserve(requests, self._published_except(cid),
                                          f"{rec.name} ({gw.endpoint_id})", gw.ip)
            self._live[cid] = _Live(reservation)
        published = [PublishedPort(p.proto, p.container_port, p.host_ip, p.host_port)
                     for p in (reservation.published if reservation else [])]
        sandbox = replace(sandbox, ports=published)
        plugs = [Plug(bridge=nets[e.network_id].bridge, host_ifname=e.host_ifname, ifname=e.ifname,
                      ip=e.ip, prefix_len=e.prefix_len, gateway=e.gateway if e is gw else None,
                      mtu=nets[e.network_id].mtu) for e in eps]
        files = self._files(rec, eps, nets, none)

        # The leases' commit (its fsync), the wiring and the DNAT rules overlap: the lock keeps
        # the plan valid, and the attach answers only once all three are done. A crash before
        # the commit leaves a namespace, veths and rules without a record: the reconcile sweeps
        # the first two, and startup's full firewall render drops the rules.
        committed = False

        async def commit() -> None:
            nonlocal committed
            await trio.to_thread.run_sync(self._commit_leases, cid, eps, stale, sandbox)
            committed = True
            # A previous run's veths may still be dying: the wiring deletes them by name, and
            # this commit replaced that run's leases, so the reaper must not release them now.
            self._reaping.pop(cid, None)

        rules = _port_rules(published, gw, nets) if published else []
        spare = self._spares.pop() if self._spares else None
        try:
            await _concurrently(
                commit, partial(trio.to_thread.run_sync, self._prepare_sync, pin, plugs, cid, files, spare),
                *([partial(self._firewall.add_ports, rules)] if rules else []))
        except BaseException:
            if rules and not committed:  # the undo finds no sandbox record naming them
                with trio.CancelScope(shield=True):
                    await self._firewall.remove_ports(rules)
            raise
        if published:
            self._start_proxies(cid, reservation, gw.ip)
        for ep in eps:
            self._registry.add(DnsEntry(cid, ep.network_id, ipaddress.IPv4Address(ep.ip), tuple(ep.dns_names)))
            self._events.publish("network", "connect", ep.network_id,
                                 {"container": cid, "name": nets[ep.network_id].name, "type": "bridge"})
        mounts = tuple(MountSpec(dest, str(self._files_dir / cid / fname), "bind", ("rbind", "rw"))
                       for dest, fname in _CONFIG_FILES)
        return Sandbox(str(pin), mounts, tuple(eps), tuple(published))

    def _plan_leases(self, rec: ContainerRecord, eps: list[EndpointRecord],
                     nets: dict[str, NetworkRecord]) -> tuple[list[EndpointRecord], list[str]]:
        """Under the lock, from a read transaction: an address per endpoint (the endpoints as
        they will be recorded) and the container's stale leases to drop. `_commit_leases`
        writes them; nobody else leases while the lock is held."""
        out, stale = [], []
        with self._store.read() as txn:
            for index, ep in enumerate(eps):
                updated, mine = self._choose(txn, rec, ep, nets[ep.network_id], index)
                out.append(updated)
                stale += mine
        return out, stale

    def _commit_leases(self, cid: str, eps: list[EndpointRecord], stale: list[str],
                       sandbox: SandboxRecord) -> None:
        """In a worker thread (the commit's fsync keeps the event loop free): one write
        transaction with the leases, the endpoints and the sandbox record. Checks again that
        every address is free, so a broken plan can never hand one out twice."""
        with self._store.write() as txn:
            for key in stale:
                if txn.ip_leases.get(key) == cid:
                    txn.ip_leases.delete(key)
            for ep in eps:
                key = f"{ep.network_id}/{ep.ip}"
                if txn.ip_leases.get(key) not in (None, cid):
                    raise Forbidden(ipam.ADDRESS_IN_USE)
                txn.ip_leases.put(key, cid)
                txn.endpoints.put(f"{cid}/{ep.network_id}", ep)
            txn.sandboxes.put(cid, sandbox)

    def _lease_one(self, txn, rec: ContainerRecord, ep: EndpointRecord, net: NetworkRecord,
                   index: int) -> EndpointRecord:
        """In a write transaction: an address for one endpoint, leased and recorded."""
        updated, mine = self._choose(txn, rec, ep, net, index)
        for key in mine:
            txn.ip_leases.delete(key)
        txn.ip_leases.put(f"{net.id}/{updated.ip}", rec.id)
        txn.endpoints.put(f"{rec.id}/{net.id}", updated)
        return updated

    def _choose(self, txn, rec: ContainerRecord, ep: EndpointRecord, net: NetworkRecord,
                index: int) -> tuple[EndpointRecord, list[str]]:
        """An address for one endpoint: the endpoint as it will be recorded, and the
        container's own leases on that network to drop first (a previous run's, never released
        after a crash: start clean)."""
        cid = rec.id
        pool = ipam.parse_pool(net.subnet, net.ip_range, net.gateway)
        prefix = net.id + "/"
        leases = {key[len(prefix):]: owner for key, owner in txn.ip_leases.items_with_prefix(prefix)}
        mine = [prefix + ip for ip, owner in leases.items() if owner == cid]
        leased = {int(ipaddress.IPv4Address(ip)) for ip, owner in leases.items() if owner != cid}
        if ep.requested_ip:
            try:
                ip = ipam.check_static(pool, ep.requested_ip, leased)
            except InvalidParameter as exc:
                raise InvalidParameter(f"invalid config for network {net.name}: invalid endpoint settings:\n"
                                       f"{exc.message}") from None
        else:
            try:
                ip = ipam.allocate(pool, leased, self._opts.node_slice)
            except LookupError:
                raise SystemError_(f"no available IPv4 addresses on this network's address pools: "
                                   f"{net.name} ({net.id})") from None
        names = _dns_names(rec, ep, net)
        updated = replace(ep, endpoint_id=new_id(), ip=str(ip), prefix_len=pool.prefix_len,
                          gateway="" if net.internal else str(pool.gateway), mac=mac_for(str(ip)),
                          ifname=f"eth{index}", host_ifname=host_ifname(cid, net.id), dns_names=names)
        return updated, mine

    def _files(self, rec: ContainerRecord, eps: list[EndpointRecord], nets: dict[str, NetworkRecord],
               none: bool) -> dict[str, str]:
        host = self._host_resolv()
        hostname = rec.config.hostname or rec.id[:12]
        extra = [tuple(h.split(":", 1)) for h in rec.host_config.extra_hosts if ":" in h]
        resolver = nets[eps[0].network_id].gateway if eps else None  # the embedded DNS server
        return {
            "hosts": hostsfiles.hosts(hostname, rec.config.domainname, [e.ip for e in eps], extra),
            "hostname": hostsfiles.hostname(hostname),
            "resolv.conf": hostsfiles.resolv_conf(host, resolver=None if none else resolver,
                                                  dns=rec.host_config.dns, dns_search=rec.host_config.dns_search,
                                                  dns_options=rec.host_config.dns_options),
        }

    def _host_resolv(self) -> hostsfiles.HostResolvConf:
        try:
            with open(self._opts.resolv_conf) as f:
                return hostsfiles.parse_resolv_conf(f.read(), self._opts.resolv_conf)
        except OSError:
            return hostsfiles.HostResolvConf(path=self._opts.resolv_conf)

    def _prepare_sync(self, pin: Path, plugs: list[Plug], cid: str, files: dict[str, str],
                      spare: tuple[str, Spare] | None = None) -> None:
        """In a worker thread: namespace + veths + the three files (a spare's, if given)."""
        if spare is not None:
            folder = self._files_dir / cid
            if not os.path.lexists(folder):  # else a leftover is in the way: rewritten below
                with contextlib.suppress(OSError):
                    os.rename(self._spare_dir / f"files-{spare[0]}", folder)
        self._wiring.create_sandbox(pin, plugs, spare[1] if spare is not None else None)
        self._write_files(cid, files)

    async def _make_spares(self) -> None:
        await trio.to_thread.run_sync(self._clear_spares)  # a previous run's
        while True:
            while len(self._spares) < self._opts.spares:
                while (quiet := self._last_attach + SPARE_QUIET - trio.current_time()) > 0:
                    await trio.sleep(quiet)
                self._spares.append(await trio.to_thread.run_sync(self._make_spare))
            await self._spare_wakeup.wait()  # after an attach
            self._spare_wakeup = trio.Event()

    def _make_spare(self) -> tuple[str, Spare]:
        """A spare namespace, and a dir with the three files owned as `_write_files` leaves them."""
        token = new_id()[:16]
        self._spare_dir.mkdir(exist_ok=True)
        folder = self._spare_dir / f"files-{token}"
        folder.mkdir()
        for _, fname in _CONFIG_FILES:
            fd = os.open(folder / fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                os.fchown(fd, self._owner, self._owner)
            finally:
                os.close(fd)
        return token, self._wiring.make_spare(self._spare_dir / f"ns-{token}", self._spare_dir / f"pin-{token}")

    def _clear_spares(self) -> None:
        from ..network import netns

        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self._spare_dir):
                if entry.startswith("ns-"):
                    netns.remove_pinned(self._spare_dir / entry)
        shutil.rmtree(self._spare_dir, ignore_errors=True)

    def _write_files(self, cid: str, files: dict[str, str]) -> None:
        folder = self._files_dir / cid
        folder.mkdir(parents=True, exist_ok=True)
        for fname, content in files.items():
            path = folder / fname
            # In place: a bind-mounted file must keep its inode, or the container keeps the old one.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, content.encode(), 0)
                os.fchown(fd, self._owner, self._owner)
            finally:
                os.close(fd)

    def config_files(self, cid: str) -> dict[str, str]:
        """The node-written files a container sees at /etc/hosts, /etc/hostname, /etc/resolv.conf."""
        folder = self._files_dir / cid
        return {dest: str(folder / fname) for dest, fname in _CONFIG_FILES if (folder / fname).exists()}

    async def detach_container(self, cid: str, *, forget: bool = False) -> None:
        """At exit (forget=False: the container's network requests stay for its next start) and
        at remove (forget=True). Idempotent; safe for a container that never started."""
        async with self._lock:
            with trio.CancelScope(shield=True):
                await self._teardown(cid, forget=forget)

    async def _teardown(self, cid: str, *, forget: bool) -> None:
        live = self._live.pop(cid, None)
        if live is not None:
            live.proxies.cancel()
            if live.reservation is not None:
                live.reservation.close()
        self._registry.remove_container(cid)
        with self._store.read() as txn:
            sandbox = txn.sandboxes.get(cid)
        eps = self._endpoints_of(cid)
        nets = self._networks_by_id()
        ifnames = [e.host_ifname or host_ifname(cid, e.network_id) for e in eps]
        # The kernel first: an address goes back to the pool only once no veth carries it and
        # no DNAT rule points at it.
        gw = _gateway_endpoint(eps, nets)
        if sandbox is not None and sandbox.ports and gw is not None:
            await self._firewall.remove_ports(_port_rules(sandbox.ports, gw, nets))
        leases = tuple(f"{ep.network_id}/{ep.ip}" for ep in eps if ep.ip)
        if self._nursery is not None and leases:
            # Unpin and let the kernel remove the veths; the reaper releases the leases after.
            job = _Reaping(cid, tuple(ifnames), leases, trio.current_time() + REAP_PATIENCE)
            await trio.to_thread.run_sync(self._release_sync, cid)
            self._reaping[cid] = job
            self._reap_wakeup.set()
        elif cid in self._reaping:  # detached before (exit, then remove): its veths are being reaped
            await trio.to_thread.run_sync(self._release_sync, cid)
        else:
            await trio.to_thread.run_sync(self._destroy_sync, cid, ifnames)
        with self._store.write() as txn:
            for ep in eps:
                if ep.ip and cid not in self._reaping and txn.ip_leases.get(f"{ep.network_id}/{ep.ip}") == cid:
                    txn.ip_leases.delete(f"{ep.network_id}/{ep.ip}")
                if forget:
                    txn.endpoints.delete(f"{cid}/{ep.network_id}")
                elif ep.ip:
                    txn.endpoints.put(f"{cid}/{ep.network_id}", replace(
                        ep, endpoint_id="", ip="", prefix_len=0, gateway="", mac="", ifname="",
                        host_ifname="", dns_names=[]))
            txn.sandboxes.delete(cid)
        if sandbox is not None:
            for ep in eps:
                if ep.ip and ep.network_id in nets:
                    self._events.publish("network", "disconnect", ep.network_id,
                                         {"container": cid, "name": nets[ep.network_id].name, "type": "bridge"})

    def _release_sync(self, cid: str) -> None:
        """In a worker thread: unpin the namespace, and the files dir out of the way (a rename;
        the reaper deletes it)."""
        self._wiring.release_sandbox(self._netns_dir / cid)
        folder = self._files_dir / cid
        try:
            os.rename(folder, self._spare_dir / f"gone-{cid}-{new_id()[:8]}")
        except OSError:  # no files (never started), or no spare dir yet
            shutil.rmtree(folder, ignore_errors=True)

    def _destroy_sync(self, cid: str, ifnames: list[str]) -> None:
        self._wiring.destroy_sandbox(self._netns_dir / cid, ifnames)
        shutil.rmtree(self._files_dir / cid, ignore_errors=True)

    def _unplug_all(self, names: list[str]) -> None:
        for name in names:
            self._wiring.unplug(name)

    def _sweep_gone_files(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self._spare_dir):
                if entry.startswith("gone-"):
                    shutil.rmtree(self._spare_dir / entry, ignore_errors=True)

    async def _reaper(self) -> None:
        """Releases the leases of detached containers once the kernel has removed their veths
        (one batched netlink lookup every REAP_INTERVAL for all of them, one write transaction
        for all that are done); deletes them itself past REAP_PATIENCE."""
        while True:
            await self._reap_wakeup.wait()
            self._reap_wakeup = trio.Event()
            while self._reaping:
                await trio.sleep(REAP_INTERVAL)
                names = [n for job in self._reaping.values() for n in job.ifnames]
                # Inline: one batched lookup answers in microseconds, less than a thread hop.
                present = self._wiring.present(names)
                async with self._lock:
                    now = trio.current_time()
                    done = [job for job in self._reaping.values()
                            if not present.intersection(job.ifnames) or now >= job.deadline]
                    if done:
                        await self._reap(done, present)
            await trio.to_thread.run_sync(self._sweep_gone_files)

    async def _reap(self, jobs: list[_Reaping], present: set[str] | None = None) -> None:
        """Under the lock: the jobs' veths gone (`present`: those that still exist, if known;
        else wait for the kernel until the jobs' deadlines), then their leases released."""
        if not jobs:
            return
        names = [n for job in jobs for n in job.ifnames]
        if present is None:
            deadline = max(job.deadline for job in jobs)
            while (present := self._wiring.present(names)) and trio.current_time() < deadline:
                await trio.sleep(REAP_INTERVAL)
        names = [n for n in names if n in present]
        if names:
            await trio.to_thread.run_sync(self._unplug_all, names)
        with self._store.write() as txn:
            for job in jobs:
                if self._reaping.get(job.cid) is not job:
                    continue
                del self._reaping[job.cid]
                for key in job.leases:
                    if txn.ip_leases.get(key) == job.cid:
                        txn.ip_leases.delete(key)

    async def settle(self) -> None:
        """Wait until every detached container's veths are gone and its leases released (tests
        and benches count interfaces and leases; the node itself never needs to)."""
        async with self._lock:
            await self._reap(list(self._reaping.values()))

    async def reconcile(self, known: Iterable[str], running: Iterable[str] | None = None) -> None:
        """Make kernel and store agree with the containers that exist (`known`) and run
        (`running`, default: all known). Stale sandboxes, leases, endpoints of removed
        containers, pins, veths and bridges nobody owns are removed."""
        known = set(known)
        running = set(known if running is None else running)
        async with self._lock:
            with self._store.read() as txn:
                sandboxes = [s.container_id for s in txn.sandboxes.values()]
                endpoint_owners = {e.container_id for e in txn.endpoints.values()}
            for cid in sandboxes:
                if cid not in running:
                    with trio.CancelScope(shield=True):
                        await self._teardown(cid, forget=cid not in known)
            for cid in endpoint_owners - known:
                with trio.CancelScope(shield=True):
                    await self._teardown(cid, forget=True)
            with trio.CancelScope(shield=True):
                await self._reap(list(self._reaping.values()))  # before any lease is dropped below
            with self._store.write() as txn:
                live = {(e.network_id, e.ip): e.container_id for e in txn.endpoints.values() if e.ip}
                for key, owner in txn.ip_leases.items():
                    nid, _, ip = key.partition("/")
                    if live.get((nid, ip)) != owner or owner not in running:
                        txn.ip_leases.delete(key)
                wanted_ifs = {e.host_ifname for e in txn.endpoints.values() if e.host_ifname}
                wanted_bridges = {n.bridge for n in txn.networks.values() if n.bridge}
                pinned = {s.container_id for s in txn.sandboxes.values()}
            await trio.to_thread.run_sync(self._sweep, wanted_ifs, wanted_bridges, pinned)
            await self._apply_firewall()

    def _sweep(self, wanted_ifs: set[str], wanted_bridges: set[str], pinned: set[str]) -> None:
        from ..network import netns
        from ..network.wiring import BRIDGE_PREFIX, VETH_PREFIX

        for link in self._wiring.links():
            if link.kind == "veth" and link.name.startswith(VETH_PREFIX) and link.name not in wanted_ifs:
                log.info("removing leftover veth %s", link.name)
                self._wiring.unplug(link.name)
            elif link.kind == "bridge" and link.name.startswith(BRIDGE_PREFIX) and link.name not in wanted_bridges:
                log.info("removing leftover bridge %s", link.name)
                self._wiring.delete_bridge(link.name)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self._netns_dir):
                if entry not in pinned:
                    netns.remove_pinned(self._netns_dir / entry)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self._files_dir):
                if entry not in pinned:
                    shutil.rmtree(self._files_dir / entry, ignore_errors=True)

    # ---- connect / disconnect -----------------------------------------------------------------

    async def connect(self, term: str, rec: ContainerRecord, cfg: EndpointConfig = EndpointConfig()) -> None:
        """POST /networks/{id}/connect, on a created, stopped or running container."""
        net = self._find(term)
        if net.name == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        if net.name == "none" or rec.host_config.network_mode == "none":
            raise Forbidden("container cannot be connected to multiple networks with one of the networks "
                            "in private (none) mode")
        self._check_endpoint_config(net, cfg)
        running = rec.state.status == "running"
        async with self._lock:
            eps = self._endpoints_of(rec.id)
            if not eps and rec.host_config.network_mode not in ("none",):
                # A container created before its requests were recorded: make them explicit first.
                plan = self.plan_endpoints(rec.host_config.network_mode)
                self.configure_container(rec, plan)
                eps = self._endpoints_of(rec.id)
            if any(e.network_id == net.id for e in eps):
                raise Forbidden(f"endpoint with name {rec.name} already exists in network {net.name}")
            order = max((e.order for e in eps), default=-1) + 1
            ep = EndpointRecord(container_id=rec.id, network_id=net.id, node=self._node, tenant=self._tenant,
                                order=order, aliases=list(cfg.aliases), requested_ip=cfg.ipv4_address)
            with self._store.write() as txn:
                txn.endpoints.put(f"{rec.id}/{net.id}", ep)
            if running:
                try:
                    await self._plug_running(rec, ep, net, eps)
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await self._unplug_running(rec.id, net, forget=True)
                    raise
        self._events.publish("network", "connect", net.id, {"container": rec.id, "name": net.name, "type": "bridge"})

    async def _plug_running(self, rec: ContainerRecord, ep: EndpointRecord, net: NetworkRecord,
                            others: list[EndpointRecord]) -> None:
        used = {e.ifname for e in others if e.ifname}
        index = next(i for i in range(len(used) + 1) if f"eth{i}" not in used)
        with self._store.write() as txn:
            ep = self._lease_one(txn, rec, ep, net, index)
        has_gateway = any(e.ip and e.gateway for e in others)
        plug = Plug(bridge=net.bridge, host_ifname=ep.host_ifname, ifname=ep.ifname, ip=ep.ip,
                    prefix_len=ep.prefix_len, gateway=None if has_gateway else (ep.gateway or None), mtu=net.mtu)
        pin = self._netns_dir / rec.id
        await trio.to_thread.run_sync(self._wiring.plug, pin, plug)
        self._registry.add(DnsEntry(rec.id, net.id, ipaddress.IPv4Address(ep.ip), tuple(ep.dns_names)))
        await self._rewrite_hosts(rec)

    async def disconnect(self, term: str, rec: ContainerRecord, force: bool = False) -> None:
        """POST /networks/{id}/disconnect, on a stopped or running container."""
        net = self._find(term)
        if net.name == "host":
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        async with self._lock:
            eps = self._endpoints_of(rec.id)
            if not eps and rec.host_config.network_mode != "none":
                self.configure_container(rec, self.plan_endpoints(rec.host_config.network_mode))
                eps = self._endpoints_of(rec.id)
            if not any(e.network_id == net.id for e in eps) and not force:
                raise Forbidden(f"container {rec.id} is not connected to network {net.name}")
            carrier = _gateway_endpoint(eps, self._networks_by_id())
            await self._unplug_running(rec.id, net, forget=True)
            if carrier is not None and carrier.network_id == net.id:
                await self._reelect_gateway(rec.id)
            await self._rewrite_hosts(rec)
        self._events.publish("network", "disconnect", net.id, {"container": rec.id, "name": net.name, "type": "bridge"})

    async def _unplug_running(self, cid: str, net: NetworkRecord, *, forget: bool) -> None:
        with self._store.read() as txn:
            ep = txn.endpoints.get(f"{cid}/{net.id}")
        if ep is None:
            return
        with self._store.read() as txn:
            sandbox = txn.sandboxes.get(cid)
        nets = self._networks_by_id()
        if sandbox is not None and sandbox.ports and _gateway_endpoint(self._endpoints_of(cid), nets) == ep:
            # Its published ports ride on this endpoint: unpublish them (no DNAT rule may point
            # at an address about to return to the pool).
            await self._firewall.remove_ports(_port_rules(sandbox.ports, ep, nets))
            live = self._live.pop(cid, None)
            if live is not None:
                live.proxies.cancel()
                if live.reservation is not None:
                    live.reservation.close()
            with self._store.write() as txn:
                txn.sandboxes.put(cid, replace(sandbox, ports=[]))
        if ep.host_ifname:
            await trio.to_thread.run_sync(self._wiring.unplug, ep.host_ifname)
        self._registry.remove(net.id, cid)
        with self._store.write() as txn:
            if ep.ip and txn.ip_leases.get(f"{net.id}/{ep.ip}") == cid:
                txn.ip_leases.delete(f"{net.id}/{ep.ip}")
            if forget:
                txn.endpoints.delete(f"{cid}/{net.id}")

    async def _reelect_gateway(self, cid: str) -> None:
        """The endpoint that carried the default route is gone (with its route): as dockerd,
        the next non-internal network in connection order carries it now, if any is left."""
        with self._store.read() as txn:
            sandbox = txn.sandboxes.get(cid)
        gw = _gateway_endpoint(self._endpoints_of(cid), self._networks_by_id()) if sandbox else None
        if gw is not None:
            await trio.to_thread.run_sync(self._wiring.set_default_route, self._netns_dir / cid,
                                          gw.ifname, gw.gateway)

    # ---- rename -------------------------------------------------------------------------------

    def rename_container(self, rec: ContainerRecord) -> None:
        """After `docker rename` committed `rec`: a running container answers to its new name
        (and no longer to the old one) in the embedded DNS at once, as in dockerd; its endpoint
        records carry the new name, so a restarted node re-adopts it under that name. A stopped
        container has no DNS names; its next start takes the current name."""
        for ep in self._refresh_dns_names(rec):
            if ep.ip:
                self._registry.add(DnsEntry(rec.id, ep.network_id, ipaddress.IPv4Address(ep.ip),
                                            tuple(ep.dns_names)))

    def _refresh_dns_names(self, rec: ContainerRecord) -> list[EndpointRecord]:
        """The container's endpoints, the DNS names of those in use recomputed from `rec` (one
        write transaction, only if a name changed)."""
        nets = self._networks_by_id()
        eps = self._endpoints_of(rec.id)
        fresh = [replace(e, dns_names=_dns_names(rec, e, nets[e.network_id]))
                 if e.ip and e.network_id in nets else e for e in eps]
        changed = [e for old, e in zip(eps, fresh) if e.dns_names != old.dns_names]
        if changed:
            with self._store.write() as txn:
                for ep in changed:
                    txn.endpoints.put(f"{rec.id}/{ep.network_id}", ep)
        return fresh

    async def _rewrite_hosts(self, rec: ContainerRecord) -> None:
        with self._store.read() as txn:
            sandbox = txn.sandboxes.get(rec.id)
        if sandbox is None:
            return
        eps = [e for e in self._endpoints_of(rec.id) if e.ip]
        hostname = rec.config.hostname or rec.id[:12]
        extra = [tuple(h.split(":", 1)) for h in rec.host_config.extra_hosts if ":" in h]
        content = hostsfiles.hosts(hostname, rec.config.domainname, [e.ip for e in eps], extra)
        await trio.to_thread.run_sync(self._write_files, rec.id, {"hosts": content})

    # ---- published ports, firewall ------------------------------------------------------------

    def _published_except(self, cid: str) -> list[portmod.Published]:
        return [p for other, live in self._live.items() if other != cid and live.reservation
                for p in live.reservation.published]

    def _start_proxies(self, cid: str, reservation: portmod.Reservation, container_ip: str) -> None:
        live = self._live.setdefault(cid, _Live())
        live.reservation = reservation
        if self._nursery is not None:
            self._nursery.start_soon(self._proxies, live.proxies, reservation, container_ip)

    @staticmethod
    async def _proxies(scope: trio.CancelScope, reservation: portmod.Reservation, container_ip: str) -> None:
        """One container's userland proxies (loopback and hairpin traffic); cancelled at detach."""
        with scope:
            async with trio.open_nursery() as nursery:
                for pub, sock in reservation.items:
                    nursery.start_soon(portmod.proxy, sock, pub.proto, (container_ip, pub.container_port))

    async def _apply_firewall(self) -> None:
        nets = [n for n in self._bridge_networks()]
        walls = [BridgeWall(n.bridge, n.subnet, n.gateway, n.internal,
                            masquerade=n.options.get(OPT_MASQUERADE, str(self._opts.outbound_nat)).lower() == "true"
                            if not n.builtin else self._opts.outbound_nat)
                 for n in nets]
        by_id = {n.id: n for n in nets}
        rules = []
        with self._store.read() as txn:
            sandboxes = list(txn.sandboxes.values())
        for sb in sandboxes:
            gw = _gateway_endpoint(self._endpoints_of(sb.container_id), by_id) if sb.ports else None
            if gw is not None:
                rules += _port_rules(sb.ports, gw, by_id)
        await self._firewall.apply(walls, rules)

    # ---- inspect helpers ----------------------------------------------------------------------

    def container_networks(self, rec: ContainerRecord) -> ContainerNetworks:
        """NetworkSettings for inspect: endpoints (running: with addresses), published ports."""
        with self._store.read() as txn:
            sandbox = txn.sandboxes.get(rec.id)
        nets = self._networks_by_id()
        eps = tuple(EndpointView(e, nets[e.network_id], rec.name) for e in self._endpoints_of(rec.id)
                    if e.network_id in nets)
        mode = rec.host_config.network_mode or "default"
        if not eps and mode not in ("none", "host") and not mode.startswith("container:"):
            # Never configured (or forgotten): show the network its mode names, unwired.
            try:
                net = self._find(DEFAULT_NETWORK if mode == "default" else mode)
            except NotFound:
                net = None
            if net is not None:
                eps = (EndpointView(EndpointRecord(rec.id, net.id, self._node, self._tenant), net, rec.name),)
        return ContainerNetworks(sandbox, eps, tuple(sandbox.ports) if sandbox else (),
                                 rec.host_config.network_mode or "default")


# ---- helpers ------------------------------------------------------------------------------------


def build_init_layer(init: Path, lowers: Sequence[Path], owner_uid: int = 0) -> None:
    """Docker's init layer: the empty files the node bind-mounts /etc/hosts, /etc/hostname and
    /etc/resolv.conf onto (crun does not create a missing file target), in a layer of their own
    under the container's writable layer, so `docker diff` and `commit` never see them.

    Only what no image layer has is made; a made directory copies the owner and mode of the
    image's own (topmost) one, since overlayfs shows the topmost layer's directory attributes."""
    for dest, _ in _CONFIG_FILES:
        rel = dest.lstrip("/")
        if any(os.path.lexists(layer / rel) for layer in lowers) or os.path.lexists(init / rel):
            continue
        parts = Path(rel).parts
        for depth in range(1, len(parts)):
            sub = Path(*parts[:depth])
            target = init / sub
            if target.exists():
                continue
            model = next((layer / sub for layer in lowers if (layer / sub).is_dir()
                          and not (layer / sub).is_symlink()), None)
            target.mkdir(parents=True)
            st = model.lstat() if model is not None else None
            os.chmod(target, st.st_mode & 0o7777 if st else 0o755)
            os.lchown(target, st.st_uid if st else owner_uid, st.st_gid if st else owner_uid)
        fd = os.open(init / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.fchown(fd, owner_uid, owner_uid)
        os.close(fd)
    init.mkdir(exist_ok=True)



async def _concurrently(*jobs: Callable[[], Awaitable[object]]) -> None:
    """Run the jobs side by side until all are done, then raise the first one's error (plain,
    not grouped: the attach's undo and dockerd's messages need the error itself)."""
    errors: list[Exception] = []

    async def one(job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception as exc:  # noqa: BLE001 -- not swallowed: the first is raised below
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(one, job)
    if errors:
        raise errors[0]


def _gateway_endpoint(eps: Sequence[EndpointRecord], nets: Mapping[str, NetworkRecord]) -> EndpointRecord | None:
    """The endpoint that carries the default route (and published ports): the first non-internal."""
    for ep in sorted(eps, key=lambda e: e.order):
        net = nets.get(ep.network_id)
        if ep.ip and net is not None and not net.internal:
            return ep
    return None


def _dns_names(rec: ContainerRecord, ep: EndpointRecord, net: NetworkRecord) -> list[str]:
    """What an endpoint answers to in the embedded DNS: the container's name, the endpoint's
    aliases, the short id and the hostname; nothing on the default bridge (as dockerd)."""
    if net.builtin:
        return []
    return list(dict.fromkeys(n for n in (rec.name, *ep.aliases, rec.id[:12], rec.config.hostname) if n))


def _port_rules(ports: Iterable[PublishedPort], gw: EndpointRecord,
                nets: Mapping[str, NetworkRecord]) -> list[PortRule]:
    bridge = nets[gw.network_id].bridge
    return [PortRule(p.proto, p.host_ip, p.host_port, gw.ip, p.container_port, bridge) for p in ports]


def _bindings(rec: ContainerRecord) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for b in rec.host_config.port_bindings:
        out.setdefault(b.port, []).append((b.host_ip, b.host_port))
    return out


def _ours(route: ipaddress.IPv4Network, nets: Sequence[NetworkRecord]) -> bool:
    return any(route == ipaddress.IPv4Network(n.subnet) for n in nets if n.subnet)


def _int_option(options: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        raise InvalidParameter(f"invalid {key} value: {options[key]!r}") from None
    if not lo <= value <= hi:
        raise InvalidParameter(f"invalid {key} value: {value} (must be {lo}-{hi})")
    return value


def _parse_until(value: str) -> int:
    """`until=` as a timestamp or a Go duration (10m, 2h30m) before now; ns since the epoch."""
    try:
        return parse_docker_time(value, time.time_ns())
    except ValueError:
        raise InvalidParameter(f"invalid filter 'until={value}'") from None
