"""network/ipam.py: validation with dockerd's words, allocation, node slices, overlap, picking."""

import itertools
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.errors import Forbidden, InvalidParameter, Unavailable
from appliance.network import ipam
from appliance.network.ipam import NodeSlice, Pool


def test_gateway_defaults_to_the_first_address():
    pool = ipam.parse_pool("10.1.0.0/24")
    assert pool.gateway == IPv4Address("10.1.0.1")
    assert pool.prefix_len == 24
    assert pool.span() == (int(IPv4Address("10.1.0.1")), int(IPv4Address("10.1.0.254")))


def test_gateway_comes_from_the_ip_range_like_libnetwork():
    pool = ipam.parse_pool("10.1.0.0/16", ip_range="10.1.2.0/24")
    assert pool.gateway == IPv4Address("10.1.2.0")
    pool = ipam.parse_pool("10.1.0.0/16", ip_range="10.1.2.0/24", gateway="10.1.0.1")
    assert pool.gateway == IPv4Address("10.1.0.1")


@pytest.mark.parametrize("subnet, ip_range, gateway, message", [
    ("10.0.0/33", "", "", "invalid network config:\n* invalid subnet 10.0.0/33: invalid CIDR block notation"),
    ("banana", "", "", "invalid network config:\n* invalid subnet banana: invalid CIDR block notation"),
    ("10.1.2.3/16", "", "", "invalid network config:\n* invalid subnet 10.1.2.3/16: it should be 10.1.0.0/16"),
    ("10.0.0.0/24", "", "10.1.0.1",
     "invalid network config:\n* invalid gateway 10.1.0.1: parent subnet 10.0.0.0/24 doesn't contain this address"),
    ("10.0.0.0/24", "", "nope", "invalid network config:\n* invalid gateway nope: invalid address"),
    ("10.0.0.0/24", "10.0.0.0/16", "",
     "invalid network config:\n* invalid ip-range 10.0.0.0/16: CIDR block is bigger than its parent subnet 10.0.0.0/24"),
    ("10.0.0.0/24", "10.9.0.0/24", "",
     "invalid network config:\n* invalid ip-range 10.9.0.0/24: parent subnet 10.0.0.0/24 doesn't contain ip-range"),
    ("10.0.0.0/24", "10.0.0.5/28", "",
     "invalid network config:\n* invalid ip-range 10.0.0.5/28: it should be 10.0.0.0/28"),
])
def test_validation_messages_are_dockerds(subnet, ip_range, gateway, message):
    with pytest.raises(InvalidParameter) as exc:
        ipam.parse_pool(subnet, ip_range, gateway)
    assert exc.value.message == message


def test_every_error_is_reported_at_once():
    with pytest.raises(InvalidParameter) as exc:
        ipam.parse_pool("10.1.2.3/16", gateway="10.9.9.9")
    assert exc.value.message == ("invalid network config:\n* invalid subnet 10.1.2.3/16: it should be 10.1.0.0/16\n"
                                 "* invalid gateway 10.9.9.9: parent subnet 10.1.0.0/16 doesn't contain this address")


def test_ipv6_is_refused_clearly():
    with pytest.raises(InvalidParameter, match="IPv6"):
        ipam.parse_pool("fd00::/64")


def test_tiny_subnets_are_refused():
    with pytest.raises(InvalidParameter, match="too small"):
        ipam.parse_pool("10.0.0.0/31")


def test_allocate_lowest_free_skipping_gateway_and_leases():
    pool = ipam.parse_pool("10.1.0.0/29")  # .1 gateway, .2-.6 usable
    leased = {int(IPv4Address("10.1.0.2")), int(IPv4Address("10.1.0.4"))}
    assert ipam.allocate(pool, leased) == IPv4Address("10.1.0.3")
    leased |= {int(IPv4Address(f"10.1.0.{i}")) for i in (3, 5, 6)}
    with pytest.raises(LookupError):
        ipam.allocate(pool, leased)


def test_allocate_stays_inside_the_ip_range():
    pool = ipam.parse_pool("10.1.0.0/16", ip_range="10.1.5.0/30", gateway="10.1.0.1")
    got = []
    leased: set[int] = set()
    for _ in range(3):  # .0 is not the subnet's network address, so it is usable; .3 too
        ip = ipam.allocate(pool, leased)
        got.append(str(ip))
        leased.add(int(ip))
    assert got == ["10.1.5.0", "10.1.5.1", "10.1.5.2"]


def test_node_slices_partition_the_range():
    pool = ipam.parse_pool("10.2.0.0/24")
    spans = [pool.node_span(NodeSlice(i, 3)) for i in range(3)]
    first, last = pool.span()
    assert spans[0][0] == first and spans[-1][1] == last
    for (_, a_end), (b_start, _) in itertools.pairwise(spans):
        assert b_start == a_end + 1
    assert ipam.allocate(pool, set(), NodeSlice(1, 3)) == IPv4Address(spans[1][0])


@given(st.integers(1, 16), st.integers(20, 28))
def test_node_slices_never_overlap_and_cover_everything(count, prefix):
    pool = Pool(IPv4Network(f"10.0.0.0/{prefix}"), IPv4Address("10.0.0.1"))
    if pool.span()[1] - pool.span()[0] + 1 < count:
        with pytest.raises(InvalidParameter):
            pool.node_span(NodeSlice(0, count))
        return
    covered = []
    for i in range(count):
        lo, hi = pool.node_span(NodeSlice(i, count))
        assert lo <= hi
        covered.extend(range(lo, hi + 1))
    assert covered == list(range(pool.span()[0], pool.span()[1] + 1))


def test_static_address_rules():
    pool = ipam.parse_pool("10.3.0.0/24", ip_range="10.3.0.128/25")
    assert ipam.check_static(pool, "10.3.0.7", set()) == IPv4Address("10.3.0.7")  # outside the range is fine
    with pytest.raises(InvalidParameter) as exc:
        ipam.check_static(pool, "10.4.0.7", set())
    assert exc.value.message == "no configured subnet or ip-range contain the IP address 10.4.0.7"
    with pytest.raises(InvalidParameter, match="invalid IPv4 address: x"):
        ipam.check_static(pool, "x", set())
    for taken in ("10.3.0.128", "10.3.0.0", "10.3.0.255"):  # gateway (first of range), network, broadcast
        with pytest.raises(Forbidden, match="^Address already in use$"):
            ipam.check_static(pool, taken, set())
    with pytest.raises(Forbidden):
        ipam.check_static(pool, "10.3.0.9", {int(IPv4Address("10.3.0.9"))})


def test_overlap_message():
    ipam.check_overlap(IPv4Network("10.1.0.0/24"), [IPv4Network("10.2.0.0/16")])
    with pytest.raises(Forbidden) as exc:
        ipam.check_overlap(IPv4Network("10.1.0.0/24"), [IPv4Network("10.0.0.0/8")])
    assert exc.value.message == "invalid pool request: Pool overlaps with other one on this address space"


def test_pick_subnet_skips_taken_and_routes():
    defaults = [(IPv4Network("10.216.0.0/22"), 24)]
    taken = [IPv4Network("10.216.0.0/24"), IPv4Network("10.216.1.128/25")]
    assert ipam.pick_subnet(defaults, taken) == IPv4Network("10.216.2.0/24")
    with pytest.raises(Unavailable, match="could not find an available"):
        ipam.pick_subnet(defaults, [IPv4Network("10.216.0.0/16")])
