from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_provider_gist.client.headers import parse_ratelimit_reset, parse_retry_after, server_wait_hint
from airflow_provider_gist.client.pacing import RateLimitPacer, RateLimitPacers, rate_limit_group
from airflow_provider_gist.client.retry import (
    RetryPolicy,
    is_retryable_status,
)

NOW = 1_800_000_000.0


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("2", now=NOW) == 2.0
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=7)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == pytest.approx(7, abs=1)
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None) is None


def test_ratelimit_reset_epoch_or_delta():
    assert parse_ratelimit_reset(str(NOW + 12.5), now=NOW) == pytest.approx(12.5)
    assert parse_ratelimit_reset("3", now=NOW) == 3.0
    assert parse_ratelimit_reset(str(NOW - 5), now=NOW) == 0.0


def test_retry_after_wins_over_reset():
    headers = {"Retry-After": "4", "X-Ratelimit-Reset": str(NOW + 30)}
    assert server_wait_hint(headers, now=NOW) == 4.0
    assert server_wait_hint({"x-ratelimit-reset": str(NOW + 30)}, now=NOW) == pytest.approx(30)


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (429, False, True),
        (503, False, False),  # a gateway's 503 does not prove a create was not acted on
        (504, False, False),
        (503, True, True),
        (500, True, True),
        (500, False, False),
        (502, False, False),
        (400, True, False),
        (401, True, False),
        (404, True, False),
        (409, True, False),
        (422, True, False),
    ],
)
def test_what_is_retried(status, idempotent, expected):
    assert is_retryable_status(status, idempotent=idempotent) is expected


def test_backoff_grows_is_capped_and_jittered_down_only():
    policy = RetryPolicy(base_delay=1, max_delay=8, jitter=0.25)
    assert [policy.backoff(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert policy.backoff(3, rng=lambda: 1.0) == 3.0


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_waits_for_the_window_when_budget_is_spent():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    pacer.acquire()
    pacer.observe({"X-Ratelimit-Remaining": "1", "X-Ratelimit-Reset": str(NOW + 10)}, 200)
    pacer.acquire()  # one call left in the window: no wait
    assert clock.slept == []
    pacer.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(NOW + 10)}, 200)
    pacer.acquire()  # spent: sleeps until the reset instead of drawing a 429
    assert clock.slept
    assert clock.slept[0] == pytest.approx(10, abs=0.1)


def test_pacer_learns_from_a_bare_429():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    pacer.acquire()
    pacer.observe({"Retry-After": "3"}, 429)
    pacer.acquire()
    assert clock.slept
    assert clock.slept[0] == pytest.approx(3, abs=0.1)


def window(remaining: int, reset: float, limit: int = 5) -> dict[str, str]:
    return {
        "X-Ratelimit-Limit": str(limit),
        "X-Ratelimit-Remaining": str(remaining),
        "X-Ratelimit-Reset": str(reset),
    }


def test_pacer_counts_calls_in_flight_against_the_window():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    pacer.acquire()
    pacer.observe(window(4, NOW + 10), 200)
    # four calls left: four reservations go at once, the fifth must not be sent
    assert [pacer.delay() for _ in range(4)] == [0.0] * 4
    assert pacer.delay() > 0


def test_pacer_keeps_the_lowest_count_when_answers_arrive_out_of_order():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    for _ in range(3):
        pacer.acquire()
    pacer.observe(window(2, NOW + 10), 200)  # admitted third
    pacer.observe(window(4, NOW + 10), 200)  # admitted first, answered late: must not add budget
    pacer.observe(window(3, NOW + 10), 200)
    assert [pacer.delay() for _ in range(2)] == [0.0, 0.0]
    assert pacer.delay() > 0


def test_pacer_starts_each_window_with_the_announced_limit():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    pacer.acquire()
    pacer.observe(window(0, NOW + 2, limit=3), 200)
    assert pacer.limit == 3
    pacer.acquire()  # sleeps to the end of the window, then the new one has 3 calls
    assert clock.slept == [pytest.approx(2, abs=0.05)]
    assert [pacer.delay() for _ in range(2)] == [0.0, 0.0]  # 2 more, 3 with the one above
    assert pacer.delay() > 0
    assert clock.slept == [pytest.approx(2, abs=0.05)]


def test_pacer_ignores_answers_from_a_window_it_has_left():
    clock = FakeClock()
    pacer = RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep)
    pacer.acquire()
    pacer.acquire()
    pacer.observe(window(0, NOW + 2, limit=2), 200)
    clock.now += 2.5  # the window ends while the second call is still out
    assert pacer.delay() == 0.0  # new window: budget 2, one reserved
    pacer.observe(window(0, NOW + 2, limit=2), 200)  # late answer of the old window
    assert pacer.delay() == 0.0  # still one left: the stale "0 remaining" was not applied
    assert pacer.delay() > 0


def test_a_caller_waiting_for_answers_is_woken_by_one():
    import threading

    pacer = RateLimitPacer()
    pacer.acquire()
    pacer.observe(window(2, 4_000_000_000, limit=3), 200)  # a window far in the future
    pacer.acquire()
    pacer.acquire()  # two in flight, two remaining: the budget is all reserved
    released = threading.Event()

    def third() -> None:
        pacer.acquire()
        released.set()

    worker = threading.Thread(target=third, daemon=True)
    worker.start()
    assert not released.wait(0.05)  # blocked: nothing answered yet
    # An answer shows the server had counted one of them already: one call is free again.
    pacer.observe(window(1, 4_000_000_000, limit=3), 200)
    pacer.observe(window(1, 4_000_000_000, limit=3), 200)
    worker.join(5)
    assert released.is_set()


def test_next_wait_prefers_the_server_hint_and_respects_every_bound():
    policy = RetryPolicy(max_attempts=3, deadline=10, max_retry_after=60, base_delay=1, jitter=0)
    assert policy.next_wait(1, elapsed=0, hint=2.0) == 2.0
    assert policy.next_wait(2, elapsed=0) == 2.0  # backoff without a hint
    assert policy.next_wait(3, elapsed=0, hint=1.0) is None  # attempts spent
    assert policy.next_wait(1, elapsed=9, hint=2.0) is None  # would pass the deadline
    assert policy.next_wait(1, elapsed=0, hint=61.0) is None  # too long to sleep in a worker


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "analyze", "analyze"),
        ("POST", "analyze/tasks", "analyze_async"),
        ("POST", "analyze/batches", "analyze_async"),
        ("GET", "analyze/tasks/t1", "other"),
        ("POST", "/gist", "other"),  # removed from the API on 2026-02-15
        ("POST", "assets", "upload"),
        ("POST", "tasks", "index"),
        ("POST", "indexes/ix1/indexed-assets", "index"),
        ("GET", "indexes/ix1/indexed-assets", "other"),
        ("GET", "assets/a1", "other"),
        ("POST", "indexes", "other"),
    ],
)
def test_calls_are_paced_in_the_api_rate_limit_groups(method, path, group):
    assert rate_limit_group(method, path) == group


def test_a_spent_window_of_one_group_does_not_hold_back_another():
    clock = FakeClock()
    pacers = RateLimitPacers(lambda: RateLimitPacer(clock=lambda: clock.now, sleep=clock.sleep))
    reads = pacers.for_call("GET", "indexes/ix1/indexed-assets")
    reads.acquire()
    reads.observe({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(NOW + 50)}, 200)
    pacers.for_call("POST", "analyze").acquire()
    assert clock.slept == []  # the analyze window is its own
    assert pacers.for_call("GET", "assets/a1") is reads
    reads.acquire()
    assert clock.slept and clock.slept[0] == pytest.approx(50, abs=0.1)
