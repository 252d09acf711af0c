"""engine/filters.parse_docker_time: the one reading of since/until values (dockerd's GetTimestamp)."""

import datetime as dt

import pytest

from appliance.engine.filters import parse_docker_time

NOW = 1_800_000_000 * 10**9


@pytest.mark.parametrize("value, expected", [
    ("1700000000", 1_700_000_000 * 10**9),
    ("1700000000.5", 1_700_000_000 * 10**9 + 500_000_000),
    ("1700000000.123456789123", 1_700_000_000 * 10**9 + 123_456_789),
    ("10m", NOW - 600 * 10**9),
    ("2h30m", NOW - 9000 * 10**9),
    ("1.5s", NOW - 1_500_000_000),
    ("250ms", NOW - 250_000_000),
    ("2026-11-27T22:51:34.896867936Z", 1795819894 * 10**9 + 896_867_936),
    ("2026-11-27T22:51:34+01:00", 1795816294 * 10**9),
])
def test_forms(value, expected):
    assert parse_docker_time(value, NOW) == expected


def test_a_date_without_a_zone_is_local_time():
    assert parse_docker_time("2026-11-27", NOW) == int(dt.datetime(2026, 11, 27).timestamp()) * 10**9


@pytest.mark.parametrize("value", ["", "soon", "10x", "1700000000.", "m10", "1.2.3"])
def test_anything_else_is_refused(value):
    with pytest.raises(ValueError):
        parse_docker_time(value, NOW)
