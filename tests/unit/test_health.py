"""Health-check rules (moby daemon/health.go) as a table of probe results."""

import pytest

from appliance.engine.health import (
    HEALTHY, SECOND, STARTING, UNHEALTHY, apply_result, from_image, go_duration, limit_output, merge,
    next_delay, probe_args, stopped, validate,
)
from appliance.errors import InvalidParameter
from appliance.store.records import HealthConfig, HealthResult

T0 = 1_000 * SECOND  # container StartedAt


def _run(cfg, codes, *, every=SECOND, first_at=SECOND):
    """Feed probe exit codes at first_at, first_at+every, ...; the (status, streak) after each."""
    state, seen = None, []
    for i, code in enumerate(codes):
        start = T0 + first_at + i * every
        state = apply_result(state, cfg, HealthResult(start, start + 1, code, ""), T0)
        seen.append((state.status, state.failing_streak))
    return state, seen


def test_success_is_healthy_and_three_failures_in_a_row_unhealthy():
    _, seen = _run(HealthConfig(test=["CMD", "true"]), [0, 1, 1, 1, 0])
    assert seen == [(HEALTHY, 0), (HEALTHY, 1), (HEALTHY, 2), (UNHEALTHY, 3), (HEALTHY, 0)]


def test_retries_setting():
    _, seen = _run(HealthConfig(test=["CMD", "false"], retries=1), [1])
    assert seen == [(UNHEALTHY, 1)]


def test_failures_inside_the_start_period_do_not_count_while_starting():
    cfg = HealthConfig(test=["CMD", "x"], start_period=3 * SECOND, retries=1)
    _, seen = _run(cfg, [1, 1, 1, 1])  # at 1s, 2s, 3s, 4s
    assert seen == [(STARTING, 0), (STARTING, 0), (UNHEALTHY, 1), (UNHEALTHY, 2)]


def test_once_healthy_the_start_period_no_longer_protects():
    cfg = HealthConfig(test=["CMD", "x"], start_period=60 * SECOND, retries=2)
    _, seen = _run(cfg, [0, 1, 1])
    assert seen == [(HEALTHY, 0), (HEALTHY, 1), (UNHEALTHY, 2)]


def test_log_keeps_the_last_five():
    state, _ = _run(HealthConfig(test=["CMD", "x"]), [0, 1, 2, 3, 4, 5, 6])
    assert [r.exit_code for r in state.log] == [2, 3, 4, 5, 6]


def test_stopping_the_monitor_marks_unhealthy_and_keeps_the_log():
    state, _ = _run(HealthConfig(test=["CMD", "x"]), [0])
    after = stopped(state)
    assert after.status == UNHEALTHY and after.log == state.log
    assert stopped(None) is None


def test_probe_commands():
    assert probe_args(HealthConfig(test=["CMD-SHELL", "curl -f x || exit 1"])) == \
        ["/bin/sh", "-c", "curl -f x || exit 1"]
    assert probe_args(HealthConfig(test=["CMD", "cat", "/ok"])) == ["cat", "/ok"]
    assert probe_args(HealthConfig(test=["NONE"])) is None
    assert probe_args(HealthConfig(test=["WHAT", "x"])) is None
    assert probe_args(HealthConfig()) is None and probe_args(None) is None


def test_delays_default_interval_and_start_interval_inside_the_start_period():
    assert next_delay(HealthConfig(), STARTING, T0, T0) == 30.0
    cfg = HealthConfig(interval=2 * SECOND, start_period=10 * SECOND, start_interval=SECOND // 2)
    assert next_delay(cfg, STARTING, T0, T0 + SECOND) == 0.5
    assert next_delay(cfg, HEALTHY, T0, T0 + SECOND) == 2.0
    assert next_delay(cfg, STARTING, T0, T0 + 11 * SECOND) == 2.0
    assert next_delay(HealthConfig(start_period=10 * SECOND), STARTING, T0, T0) == 5.0


def test_merge_with_the_image_field_by_field():
    image = from_image({"Test": ["CMD-SHELL", "check"], "Interval": 5 * SECOND, "Retries": 4})
    assert merge(None, image) == image
    mine = merge(HealthConfig(interval=SECOND), image)
    assert (mine.test, mine.interval, mine.retries) == (["CMD-SHELL", "check"], SECOND, 4)
    assert merge(HealthConfig(test=["NONE"]), image).test == ["NONE"]
    assert merge(HealthConfig(test=["CMD", "x"]), None).test == ["CMD", "x"]
    assert from_image(None) is None


@pytest.mark.parametrize("cfg, message", [
    (HealthConfig(interval=999), "Interval in Healthcheck cannot be less than 1ms"),
    (HealthConfig(timeout=5), "Timeout in Healthcheck cannot be less than 1ms"),
    (HealthConfig(start_period=-1), "StartPeriod in Healthcheck cannot be less than 1ms"),
    (HealthConfig(start_interval=1), "StartInterval in Healthcheck cannot be less than 1ms"),
    (HealthConfig(retries=-1), "Retries in Healthcheck cannot be negative"),
])
def test_validation_messages(cfg, message):
    with pytest.raises(InvalidParameter) as err:
        validate(cfg)
    assert err.value.message == message


def test_output_is_cut_at_4096_bytes():
    assert limit_output(b"ok\n") == "ok\n"
    assert limit_output(b"x" * 5000) == "x" * 4096 + "..."
    assert limit_output(b"y" * 4096) == "y" * 4096


@pytest.mark.parametrize("ns, text", [(30 * SECOND, "30s"), (SECOND // 2, "500ms"), (1500 * 1_000_000, "1.5s"),
                                      (90 * SECOND, "1m30s"), (3600 * SECOND, "1h0m0s"), (0, "0s"),
                                      (2_000, "2µs")])
def test_go_duration(ns, text):
    assert go_duration(ns) == text
