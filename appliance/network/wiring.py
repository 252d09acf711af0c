"""The node's L2/L3 plumbing: a bridge per network, a pinned namespace per container, a veth per
(container, network), addresses, routes, MTU. Synchronous; the engine calls it through
`trio.to_thread.run_sync`. Everything is idempotent, so a retry or a reconcile after kill -9
converges instead of failing on what is already there (or already gone).

Topology, all in the namespace the node runs in ("the node's namespace"):

    bridge <br>  gateway/prefix, MTU, fixed MAC        one per network in use
      └── <host veth> ─── eth<N> in DATA/netns/<cid>  one per endpoint; address, default route

Names: bridges and host-side veths are derived from ids (`bridge_name`, `host_ifname`), so
teardown needs no record, and the reconcile can recognise our interfaces by prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from . import netns
from .rtnl import Link, Netlink

#: Host-side veths: VETH_PREFIX + 11 hex chars of sha1(container id, network id) (15 chars max).
VETH_PREFIX = "va"
#: Bridges of user networks: BRIDGE_PREFIX + the first 12 chars of the network id.
BRIDGE_PREFIX = "br-"

#: Written in every container namespace (Docker does the same: ports below 1024 and ping work for
#: an unprivileged container root, who has no CAP_NET_BIND_SERVICE in the node's user namespace).
CONTAINER_SYSCTLS = {
    "ipv4/ip_unprivileged_port_start": "0",
    "ipv4/ping_group_range": "0 2147483647",
}


def bridge_name(network_id: str, builtin_name: str = "") -> str:
    return builtin_name or BRIDGE_PREFIX + network_id[:12]


def host_ifname(container_id: str, network_id: str) -> str:
    digest = hashlib.sha1(f"{container_id}/{network_id}".encode()).hexdigest()
    return VETH_PREFIX + digest[:11]


def mac_for(ip: str) -> str:
    """02:42 + the IPv4 address, as Docker derived MACs: unique per address on a network, and a
    reused address keeps its MAC, so no peer holds a stale ARP entry."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def bridge_mac(network_id: str) -> str:
    """A fixed MAC for a bridge (else it takes its lowest port's and changes as ports come and go)."""
    digest = hashlib.sha1(network_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


@dataclass(frozen=True, slots=True)
class Plug:
    """One endpoint to wire: a veth from `bridge` into the namespace at `pin`."""

    bridge: str
    host_ifname: str
    ifname: str  # inside the container: eth0, eth1, ...
    ip: str
    prefix_len: int
    gateway: str | None  # None: no default route through this endpoint
    mtu: int = 1500


class Wiring:
    """Wiring operations in the node's namespace (that of the calling thread)."""

    def ensure_bridge(self, name: str, gateway: str, prefix_len: int, mtu: int, mac: str) -> None:
        with Netlink() as nl:
            index = nl.add_bridge(name, mtu, mac)
            nl.add_address(index, gateway, prefix_len)

    def delete_bridge(self, name: str) -> bool:
        with Netlink() as nl:
            return nl.delete_link(name)

    def create_sandbox(self, pin: Path, plugs: list[Plug] = ()) -> None:
        """The container's namespace (idempotent) with every plug in `plugs` wired."""
        inside: list[Netlink] = []
        try:
            netns.create_pinned(pin, CONTAINER_SYSCTLS, setup=lambda: _lo_up(inside))
            for plug in plugs:
                self.plug(pin, plug)
        finally:
            for nl in inside:
                nl.close()

    def plug(self, pin: Path, plug: Plug) -> None:
        """Wire one endpoint into an existing namespace; a half-made veth is removed on error."""
        with Netlink() as node:
            bridge = node.link(plug.bridge)
            if bridge is None:
                raise OSError(19, f"bridge {plug.bridge} does not exist")
            node.delete_link(plug.host_ifname)  # a leftover of a crash between create and record
            fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
            try:
                node.add_veth(plug.host_ifname, plug.mtu, bridge.index, plug.ifname, fd, mac_for(plug.ip))
            finally:
                os.close(fd)
            try:
                with netns.entered(pin):
                    ctr = Netlink()
                with ctr:
                    link = ctr.link(plug.ifname)
                    if link is None:
                        raise OSError(19, f"{plug.ifname} did not appear in {pin}")
                    ctr.add_address(link.index, plug.ip, plug.prefix_len)
                    ctr.set_up(link.index)
                    if plug.gateway:
                        ctr.add_default_route(plug.gateway, link.index)
            except BaseException:
                node.delete_link(plug.host_ifname)
                raise

    def unplug(self, host_ifname: str) -> bool:
        """Deleting the host end deletes both ends; idempotent."""
        with Netlink() as nl:
            return nl.delete_link(host_ifname)

    def destroy_sandbox(self, pin: Path, host_ifnames: list[str]) -> None:
        """Unplug every endpoint and unpin; idempotent. The namespace goes with its last process."""
        with Netlink() as nl:
            for name in host_ifnames:
                nl.delete_link(name)
        netns.remove_pinned(pin)

    def links(self) -> list[Link]:
        with Netlink() as nl:
            return nl.links()

    def routes(self) -> list[ipaddress.IPv4Network]:
        with Netlink() as nl:
            return [r.dst for r in nl.routes() if r.dst.prefixlen > 0]

    def addresses(self) -> list[ipaddress.IPv4Interface]:
        with Netlink() as nl:
            return [a for _, a in nl.addresses()]

    def set_sysctl(self, key: str, value: str) -> None:
        """A sysctl of the node's namespace (e.g. ipv4/ip_forward)."""
        with open(f"/proc/sys/net/{key}", "w") as f:
            f.write(value)


def _lo_up(keep: list[Netlink]) -> None:
    nl = Netlink()
    keep.append(nl)
    with contextlib.suppress(OSError):
        nl.set_up(1)  # lo is always index 1 in a new namespace
