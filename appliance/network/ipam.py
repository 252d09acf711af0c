"""IPv4 address management, pure: pools, validation with dockerd's messages, overlap checks,
subnet picking, and allocation inside a per-node slice of a pool.

No I/O and no store: the engine passes the addresses already leased (read in the same LMDB write
transaction that records the new lease, so an address is never handed out twice) and writes the
result back.

Per-node ranges. A pool's allocatable addresses (the ip-range if given, else the subnet, minus
network, broadcast and gateway) are split into `NodeSlice.count` contiguous slices; node
`NodeSlice.index` allocates dynamically only in its own slice. Today every node uses the whole
pool (index 0 of 1). When a network spans nodes, each node gets a slice and can allocate without
asking the others; a static `--ip` may be anywhere in the subnet and is checked against every
lease of the network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from ..errors import Forbidden, InvalidParameter, Unavailable

#: dockerd's message for two networks sharing addresses (libnetwork ipamapi.ErrPoolOverlap,
#: wrapped by the allocator as "invalid pool request").
POOL_OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"
ADDRESS_IN_USE = "Address already in use"


@dataclass(frozen=True, slots=True)
class NodeSlice:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"bad node slice {self.index}/{self.count}")


@dataclass(frozen=True, slots=True)
class Pool:
    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None = None

    @property
    def prefix_len(self) -> int:
        return self.subnet.prefixlen

    def span(self) -> tuple[int, int]:
        """First and last allocatable address (ints) of the whole pool, gateway not excluded."""
        net = self.ip_range or self.subnet
        first, last = int(net.network_address), int(net.broadcast_address)
        lo, hi = int(self.subnet.network_address) + 1, int(self.subnet.broadcast_address) - 1
        return max(first, lo), min(last, hi)

    def node_span(self, node: NodeSlice = NodeSlice()) -> tuple[int, int]:
        """This node's contiguous part of span(): equal slices, the last one takes the remainder."""
        first, last = self.span()
        total = last - first + 1
        if total < node.count:
            raise InvalidParameter(f"pool {self.subnet} is too small for {node.count} node ranges")
        size = total // node.count
        start = first + node.index * size
        end = last if node.index == node.count - 1 else start + size - 1
        return start, end


def _parse_prefix(text: str) -> IPv4Network | None:
    """A CIDR with host bits allowed (checked separately, as netip.ParsePrefix does)."""
    if "/" not in text:
        return None
    try:
        return IPv4Network(text, strict=False)
    except ValueError:
        return None


def parse_pool(subnet: str, ip_range: str = "", gateway: str = "") -> Pool:
    """One IPAM.Config entry, validated as dockerd's ValidateIPAM does (every error reported)."""
    errors: list[str] = []
    net = _parse_prefix(subnet)
    if net is None:
        if _is_ipv6_prefix(subnet):
            raise InvalidParameter("invalid network config:\n* IPv6 networks are not supported on this node")
        raise InvalidParameter(f"invalid network config:\n* invalid subnet {subnet}: invalid CIDR block notation")
    if str(net) != subnet.strip():
        errors.append(f"invalid subnet {subnet}: it should be {net}")
    rng = None
    if ip_range:
        rng = _parse_prefix(ip_range)
        if rng is None:
            errors.append(f"invalid ip-range {ip_range}: invalid CIDR block notation")
        else:
            if rng.prefixlen < net.prefixlen:
                errors.append(f"invalid ip-range {ip_range}: CIDR block is bigger than its parent subnet {net}")
            if str(rng) != ip_range.strip():
                errors.append(f"invalid ip-range {ip_range}: it should be {rng}")
            if not rng.overlaps(net):
                errors.append(f"invalid ip-range {ip_range}: parent subnet {net} doesn't contain ip-range")
    gw = None
    if gateway:
        try:
            gw = IPv4Address(gateway)
        except ValueError:
            errors.append(f"invalid gateway {gateway}: invalid address")
        else:
            if gw not in net:
                errors.append(f"invalid gateway {gateway}: parent subnet {net} doesn't contain this address")
    if errors:
        raise InvalidParameter("invalid network config:\n" + "\n".join("* " + e for e in errors))
    if net.prefixlen > 30:
        raise InvalidParameter(f"invalid network config:\n* subnet {net} is too small for a bridge network")
    pool = Pool(subnet=net, gateway=IPv4Address(0), ip_range=rng)
    if gw is None:
        # libnetwork asks the pool (the ip-range, if any) for the gateway: its first address.
        gw = IPv4Address(pool.span()[0])
    return Pool(subnet=net, gateway=gw, ip_range=rng)


def _is_ipv6_prefix(text: str) -> bool:
    try:
        ipaddress.IPv6Network(text, strict=False)
        return True
    except ValueError:
        return False


def check_overlap(subnet: IPv4Network, others: Iterable[IPv4Network]) -> None:
    for other in others:
        if subnet.overlaps(other):
            raise Forbidden(POOL_OVERLAP)


def pick_subnet(defaults: Iterable[tuple[IPv4Network, int]], taken: Collection[IPv4Network]) -> IPv4Network:
    """The first subnet of `size` carved from each default pool that overlaps nothing in `taken`
    (other networks, and the node's own routes)."""
    for base, size in defaults:
        for candidate in base.subnets(new_prefix=size):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among "
                      "the defaults to assign to the network")


def allocate(pool: Pool, leased: Collection[int], node: NodeSlice = NodeSlice()) -> IPv4Address:
    """The lowest free address of this node's slice. Raises LookupError when it is full (the
    caller words dockerd's message, which names the network)."""
    first, last = pool.node_span(node)
    gw = int(pool.gateway)
    for value in range(first, last + 1):
        if value != gw and value not in leased:
            return IPv4Address(value)
    raise LookupError("pool exhausted")


def check_static(pool: Pool, address: str, leased: Collection[int]) -> IPv4Address:
    """A user's `--ip`: anywhere in the subnet, not the gateway, network, broadcast or a lease."""
    try:
        ip = IPv4Address(address)
    except ValueError:
        raise InvalidParameter(f"invalid IPv4 address: {address}") from None
    if ip.is_unspecified:
        raise InvalidParameter(f"invalid IPv4 address: {address}")
    if ip not in pool.subnet:
        raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {address}")
    if (ip == pool.gateway or ip == pool.subnet.network_address or ip == pool.subnet.broadcast_address
            or int(ip) in leased):
        raise Forbidden(ADDRESS_IN_USE)
    return ip
