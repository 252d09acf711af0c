"""Restart policy: moby's validation messages and restartmanager's table, as numbers."""

import pytest

from appliance.engine.restart import next_backoff, restart_on_boot, should_restart, validate
from appliance.errors import InvalidParameter


@pytest.mark.parametrize("name, count, message", [
    ("always", 3, "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ("no", -1, "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"),
    ("on-failure", -123, "invalid restart policy: maximum retry count cannot be negative"),
    ("sometimes", 0, "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
                     "'on-failure', or 'unless-stopped'"),
])
def test_invalid_policies_get_dockers_messages(name, count, message):
    with pytest.raises(InvalidParameter) as err:
        validate(name, count)
    assert err.value.message == message


@pytest.mark.parametrize("name, count", [("no", 0), ("always", 0), ("unless-stopped", 0), ("on-failure", 0),
                                         ("on-failure", 5), ("", 7)])
def test_valid_policies(name, count):
    validate(name, count)


def test_backoff_doubles_from_100ms_and_caps_at_a_minute():
    delays, backoff = [], 0.0
    for _ in range(12):
        backoff = next_backoff(backoff, ran_for=0.5)
        delays.append(backoff)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[9] == 51.2
    assert delays[10:] == [60.0, 60.0]


def test_a_run_of_ten_seconds_resets_the_backoff():
    assert next_backoff(6.4, ran_for=9.99) == 12.8
    assert next_backoff(6.4, ran_for=10.0) == 0.1


def _decide(name, count=0, *, code=1, stopped=False, restarts=0, ran=1.0, backoff=0.0):
    return should_restart(name, count, exit_code=code, manually_stopped=stopped, restart_count=restarts,
                          ran_for=ran, backoff=backoff)


def test_policy_table():
    assert not _decide("no").restart
    assert _decide("always", code=0).restart
    assert _decide("always", stopped=True).restart  # the caller cancels a manual stop itself
    assert _decide("unless-stopped", code=0).restart
    assert not _decide("unless-stopped", stopped=True).restart
    assert _decide("on-failure", code=1).restart
    assert not _decide("on-failure", code=0).restart
    assert _decide("on-failure", 3, restarts=2).restart
    assert not _decide("on-failure", 3, restarts=3).restart
    assert _decide("on-failure", 0, restarts=1000).restart  # 0: no maximum


def test_backoff_advances_even_when_not_restarting():
    d = _decide("on-failure", code=0, backoff=0.4)
    assert (d.restart, d.delay) == (False, 0.8)
    assert _decide("no", backoff=0.4).delay == 0.4


def test_on_boot():
    assert restart_on_boot("always", 0, exit_code=0, manually_stopped=True, restart_count=0)
    assert not restart_on_boot("unless-stopped", 0, exit_code=137, manually_stopped=True, restart_count=0)
    assert restart_on_boot("unless-stopped", 0, exit_code=255, manually_stopped=False, restart_count=0)
    assert not restart_on_boot("on-failure", 2, exit_code=1, manually_stopped=False, restart_count=2)
    assert not restart_on_boot("no", 0, exit_code=1, manually_stopped=False, restart_count=0)
