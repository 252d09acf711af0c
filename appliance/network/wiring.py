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

import errno
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from . import netns, rtnl
from .gateway import set_default_route as _set_default_route
from .rtnl import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    Link,
    Netlink,
)

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


@dataclass(slots=True)
class Spare:
    """A sandbox made ahead of need: a namespace pinned at `ns` (loopback up, CONTAINER_SYSCTLS
    written), a netlink socket opened inside it, and an empty file `pin` to move it onto. Made in
    one worker thread and used (or dropped) in another, never by two at once."""

    ns: Path
    pin: Path
    inside: Netlink


class Wiring:
    """Wiring operations in the node's namespace (that of the calling thread)."""

    def make_spare(self, ns: Path, pin: Path) -> Spare:
        """A spare sandbox (see Spare). Both paths must be new."""
        os.close(os.open(pin, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        inside: list[Netlink] = []
        try:
            netns.create_pinned(ns, CONTAINER_SYSCTLS, setup=lambda: inside.append(Netlink()))
            _check(inside[0].batch([_LO_UP]), (0,))
        except BaseException:
            for nl in inside:
                nl.close()
            netns.remove_pinned(ns)
            pin.unlink(missing_ok=True)
            raise
        return Spare(ns, pin, inside[0])

    def drop_spare(self, spare: Spare) -> None:
        spare.inside.close()
        netns.remove_pinned(spare.ns)
        spare.pin.unlink(missing_ok=True)

    def ensure_bridge(self, name: str, gateway: str, prefix_len: int, mtu: int, mac: str) -> None:
        with Netlink() as nl:
            index = nl.add_bridge(name, mtu, mac)
            nl.add_address(index, gateway, prefix_len)

    def delete_bridge(self, name: str) -> bool:
        with Netlink() as nl:
            return nl.delete_link(name)

    def create_sandbox(self, pin: Path, plugs: list[Plug] = (), spare: Spare | None = None) -> None:
        """The container's namespace (idempotent) with every plug in `plugs` wired: `spare`'s
        moved onto `pin` if given (and nothing is pinned there yet), else a new one. Either way
        the namespace is wired through a socket opened inside it when it was made, so no thread
        has to enter it again. `spare` is used up (or dropped) either way."""
        inside: list[Netlink] = []
        fresh = False
        try:
            if spare is not None and not os.path.lexists(pin):
                try:
                    os.rename(spare.pin, pin)
                    netns.move_pinned(spare.ns, pin)
                    inside.append(spare.inside)
                    spare = None
                except OSError:
                    pass  # made below as without a spare
            if not inside:
                netns.create_pinned(pin, CONTAINER_SYSCTLS, setup=lambda: inside.append(Netlink()))
                fresh = bool(inside)
            for plug in plugs:
                self._plug(pin, plug, inside[0] if inside else None, lo_up=fresh and plug is plugs[0])
            if fresh and not plugs:
                _check(inside[0].batch([_LO_UP]), (0,))
        finally:
            for nl in inside:
                nl.close()
            if spare is not None:
                self.drop_spare(spare)

    def plug(self, pin: Path, plug: Plug) -> None:
        """Wire one endpoint into an existing namespace; a half-made veth is removed on error."""
        self._plug(pin, plug, None, lo_up=False)

    def _plug(self, pin: Path, plug: Plug, ctr: Netlink | None, *, lo_up: bool) -> None:
        """Four round trips: the bridge's index; [remove a leftover veth, make the veth] in one
        batch; the peer's index inside; [lo up, address, peer up, default route] in one batch."""
        with Netlink() as node:
            bridge = node.link(plug.bridge)
            if bridge is None:
                raise OSError(19, f"bridge {plug.bridge} does not exist")
            fd = os.open(pin, os.O_RDONLY | os.O_CLOEXEC)
            try:
                # The leftover: a crash between create and record, or a dying namespace's veth.
                _check(node.batch([
                    (RTM_DELLINK, 0, rtnl.link_by_name(plug.host_ifname)),
                    (RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, rtnl.new_veth(
                        plug.host_ifname, plug.mtu, bridge.index, plug.ifname, fd, mac_for(plug.ip))),
                ]), (0, errno.ENODEV, errno.ENOENT), (0,))
            finally:
                os.close(fd)
            try:
                if ctr is None:
                    with netns.entered(pin):
                        opened = Netlink()
                    with opened:
                        _configure_inside(opened, plug, lo_up)
                else:
                    _configure_inside(ctr, plug, lo_up)
            except BaseException:
                node.delete_link(plug.host_ifname)
                raise

    #: (pin, ifname, gateway): the default route moved to another endpoint (network/gateway.py).
    set_default_route = staticmethod(_set_default_route)

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

    def release_sandbox(self, pin: Path) -> None:
        """Unpin only; idempotent. A namespace nobody else holds then dies in the kernel's own
        time, taking its veths (both ends) with it: ~40 ms later, in batches, off the caller's
        path, where deleting a veth here takes ~20 ms each. Until `present()` no longer names
        its host ends, the addresses they carried must stay leased."""
        netns.remove_pinned(pin)

    def present(self, names: list[str]) -> set[str]:
        """Which of these links exist (one batched lookup per 32 names)."""
        found: set[str] = set()
        with Netlink() as nl:
            for start in range(0, len(names), 32):
                chunk = names[start:start + 32]
                codes = nl.batch([(rtnl.RTM_GETLINK, 0, rtnl.link_by_name(n)) for n in chunk])
                for name, code in zip(chunk, codes, strict=True):
                    if code == 0:
                        found.add(name)
                    elif code not in (errno.ENODEV, errno.ENOENT):
                        raise OSError(code, os.strerror(code))
        return found

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


#: lo is always index 1 in a new namespace.
_LO_UP = (RTM_NEWLINK, 0, rtnl.set_up(1))


def _configure_inside(ctr: Netlink, plug: Plug, lo_up: bool) -> None:
    link = ctr.link(plug.ifname)
    if link is None:
        raise OSError(errno.ENODEV, f"{plug.ifname} did not appear in the container's namespace")
    requests = [_LO_UP] if lo_up else []
    requests += [(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, rtnl.new_addr(link.index, plug.ip, plug.prefix_len)),
                 (RTM_NEWLINK, 0, rtnl.set_up(link.index))]
    if plug.gateway:
        requests.append((RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, rtnl.default_route(plug.gateway, link.index)))
    allowed = [(0,)] * len(requests)
    allowed[1 if lo_up else 0] = (0, errno.EEXIST)  # the address: already there is fine
    _check(ctr.batch(requests), *allowed)


def _check(codes: list[int], *allowed: tuple[int, ...]) -> None:
    """Raise the first errno of a batch that its request does not allow."""
    for code, ok in zip(codes, allowed, strict=True):
        if code not in ok:
            raise OSError(code, os.strerror(code))
