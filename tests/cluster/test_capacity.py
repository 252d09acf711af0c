"""capacity.py: bucket tables, hysteresis at the edges, tag size, the publish throttle."""

from __future__ import annotations

import pytest

from appliance.cluster import capacity
from appliance.cluster.capacity import Buckets, HostLoad, TagThrottle, pow2_floor, stable_bucket
from appliance.cluster.members import node_tags
from appliance.cluster.swim.serf import encode_tags

GiB = 1 << 30
MiB = 1 << 20


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (0.99, 0), (1, 1), (1.9, 1), (2, 2), (3, 2), (4, 4), (1023, 512), (1024, 1024), (1025, 1024)],
)
def test_pow2_floor(value: float, expected: int) -> None:
    assert pow2_floor(value) == expected


@pytest.mark.parametrize(
    ("value", "previous", "expected"),
    [
        (5.0, None, 4),  # no history: plain floor
        (3.7, 4, 4),  # just under the lower edge (within 10 %): stays
        (3.5, 4, 2),  # clearly under: moves
        (8.5, 4, 4),  # just over the upper edge (within 10 %): stays
        (8.9, 4, 8),  # clearly over: moves
        (0.5, 1, 0),  # 1's range [1, 2) less 10 % starts at 0.9: 0.5 is out
        (1.05, 0, 0),  # 0's range [0, 1) +10 %: 1.05 stays 0
        (1.2, 0, 1),
    ],
)
def test_stable_bucket_hysteresis(value: float, previous: int | None, expected: int) -> None:
    assert stable_bucket(value, previous) == expected


def test_memory_below_the_floor_is_zero_and_buckets_in_powers_of_two_mib() -> None:
    assert capacity.buckets(HostLoad(200 * MiB, 4, 0.0, 0)).mem_free_mib == 0
    assert capacity.buckets(HostLoad(300 * MiB, 4, 0.0, 0)).mem_free_mib == 256
    assert capacity.buckets(HostLoad(int(11.5 * GiB), 4, 0.0, 0)).mem_free_mib == 8192


def test_buckets_from_a_sample_and_sticky_edges() -> None:
    first = capacity.buckets(HostLoad(mem_available=9 * GiB, ncpu=8, load1=1.5, containers=5))
    assert first == Buckets(mem_free_mib=8192, cpu_free=4, ncpu=8, containers=4)
    # Memory drifts just under 8 GiB, load just over 4 free CPUs' edge, one container stops:
    wobble = capacity.buckets(HostLoad(int(7.8 * GiB), 8, 4.2, 4), first)
    assert wobble == first
    # Real changes move the buckets.
    moved = capacity.buckets(HostLoad(3 * GiB, 8, 7.5, 17), first)
    assert moved == Buckets(mem_free_mib=2048, cpu_free=0, ncpu=8, containers=16)


def test_overloaded_host_has_no_free_cpu() -> None:
    assert capacity.buckets(HostLoad(GiB, 2, 9.0, 0)).cpu_free == 0


@pytest.mark.parametrize(("mib", "text"), [(0, "0"), (256, "256M"), (512, "512M"), (1024, "1G"), (65536, "64G")])
def test_memory_tag_format_round_trips(mib: int, text: str) -> None:
    assert capacity.format_mib(mib) == text
    assert capacity.parse_size(text) == mib * MiB


def test_parse_size_rejects_junk() -> None:
    for bad in ("", "1T", "G", "-1G", "1.5G"):
        with pytest.raises(ValueError):
            capacity.parse_size(bad)


def test_tags_fit_memberlist_meta_even_at_their_largest() -> None:
    """Serf tags travel in node meta: 0xFF + msgpack, at most 512 bytes."""
    worst = Buckets(mem_free_mib=1 << 40, cpu_free=1 << 20, ncpu=1 << 20, containers=1 << 30)
    tags = {**node_tags(api="tcp://[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                        underlay="ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            **capacity.capacity_tags(worst)}
    assert len(encode_tags(tags)) <= 512


def test_throttle_publishes_only_changes_and_not_too_often() -> None:
    t = TagThrottle(5.0, {"a": "1"}, now=100.0)
    assert t.offer(101.0, {"a": "1"}) is None  # nothing new
    assert t.offer(102.0, {"a": "2"}) is None  # new, but only 2 s since the last publish
    assert t.offer(104.9, {"a": "3"}) is None
    assert t.offer(105.0, {"a": "3"}) == {"a": "3"}  # 5 s: the newest tags win
    assert t.offer(106.0, {"a": "3"}) is None
    assert t.offer(200.0, {"a": "3"}) is None  # unchanged, however long it has been
    assert t.offer(200.0, {"a": "4"}) == {"a": "4"}
    assert (t.published, t.published_at) == ({"a": "4"}, 200.0)
