"""One retry policy for every call to the API, shared by the sync hook and the async triggers.

What is retried: 429 (honouring ``Retry-After`` in seconds or as an HTTP date, else
``X-Ratelimit-Reset``), 5xx, and failures to connect or to read a response. Nothing else:
any other 4xx is a caller error and retrying it only wastes budget. Waits grow exponentially
with jitter, and everything is bounded twice: by a number of attempts and by an overall deadline,
so no call can hang a worker or a triggerer.

A request that may create something on the server (``POST /assets``, ``/tasks``,
``/indexed-assets``) is retried only when the server surely did not act on it: a 429, a 503,
or a connection that was never established. A read timeout or a 500 after such a POST is
surfaced instead, because the resource may exist and a blind retry would upload (and bill) twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: Statuses after which the server surely did not act on the request.
NOT_PROCESSED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds and pacing of retries.

    ``max_attempts`` counts the first try. ``deadline`` (seconds) bounds the whole call,
    waits included: a ``Retry-After`` that would pass it ends the call at once with the
    server's hint attached, so Airflow's own task retry can take over.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    deadline: float = 300.0
    jitter: float = 0.25
    #: A Retry-After longer than this is not waited out in-process.
    max_retry_after: float = 120.0

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential delay before retry number ``attempt`` (1-based), less up to ``jitter``."""
        raw = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return raw * (1 - self.jitter * rng())


def is_retryable_status(status: int, *, idempotent: bool) -> bool:
    """Whether a response with ``status`` may be retried for this kind of request."""
    if status == 429 or status == 503:
        return True
    if status >= 500:
        return idempotent
    return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_ratelimit_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until ``X-Ratelimit-Reset`` (epoch seconds of the window's end), or ``None``."""
    if value is None or not value.strip():
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    current = time.time() if now is None else now
    # A small value is a delta, not an epoch: some gateways send it that way.
    if reset < 1_000_000_000:
        return max(0.0, reset)
    return max(0.0, reset - current)


def server_wait_hint(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long the server asks us to wait, from ``Retry-After`` first, else ``X-Ratelimit-Reset``."""
    lower = {k.lower(): v for k, v in headers.items()}
    hint = parse_retry_after(lower.get("retry-after"), now=now)
    if hint is None:
        hint = parse_ratelimit_reset(lower.get("x-ratelimit-reset"), now=now)
    return hint


class RateLimitPacer:
    """Client-side pacing from ``X-Ratelimit-*`` headers, shared by all threads of one hook.

    After each response we remember how many calls the window still allows and when it resets.
    Before a call we reserve one: while the window has room we go at once; when it is spent we
    sleep until the reset instead of sending a request that can only come back 429. This keeps a
    busy client at the rate limit's floor without retry storms.
    """

    def __init__(self, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._in_flight = 0

    def delay(self) -> float:
        """Reserve a call; return how long to wait before sending it (0 when there is room)."""
        with self._lock:
            now = self._clock()
            if self._reset_at is not None and now >= self._reset_at:
                self._remaining, self._reset_at, self._in_flight = None, None, 0
            if self._remaining is None:
                self._in_flight += 1
                return 0.0
            if self._remaining - self._in_flight > 0:
                self._in_flight += 1
                return 0.0
            wait = max(0.0, (self._reset_at or now) - now)
            return wait

    def acquire(self, budget: float | None = None) -> None:
        """Block until a call may be sent (bounded by ``budget`` seconds when given)."""
        waited = 0.0
        while True:
            wait = self.delay()
            if wait <= 0:
                return
            if budget is not None and waited + wait > budget:
                return
            # A tiny margin past the reset, so we do not land in the old window's last millisecond.
            self._sleep(wait + 0.01)
            waited += wait

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn the window's state from a response (and release the reservation)."""
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            remaining = lower.get("x-ratelimit-remaining")
            reset = parse_ratelimit_reset(lower.get("x-ratelimit-reset"), now=self._clock())
            if remaining is None or reset is None:
                if status == 429:
                    hint = server_wait_hint(headers, now=self._clock())
                    if hint is not None:
                        self._remaining, self._reset_at = 0, self._clock() + hint
                return
            try:
                self._remaining = int(float(remaining))
            except ValueError:
                return
            if status == 429:
                self._remaining = 0
            self._reset_at = self._clock() + reset
