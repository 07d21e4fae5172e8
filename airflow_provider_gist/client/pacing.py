"""Client-side rate-limit pacing: spend each window's budget, never draw a 429 we could foresee.

TwelveLabs counts calls per rate-limit group in windows and reports the window's state on every
answer (``X-Ratelimit-Limit``, ``-Remaining``, ``-Reset``). :class:`RateLimitPacer` keeps one
group's window for every thread of a client; :class:`RateLimitPacers` holds one per group.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from airflow_provider_gist.client.headers import (
    int_header,
    parse_ratelimit_reset,
    reset_epoch,
    server_wait_hint,
)

#: How often a caller looks again when a new window's budget is all in flight and its end unknown.
POLL_SECONDS = 0.02
#: Longest a caller waits for an answer before looking at the pacer's state again.
ANSWER_WAIT_SECONDS = 0.25
#: How often a caller that may be told to stop looks again while it waits for a window.
STOP_CHECK_SECONDS = 0.25


class RateLimitPacer:
    """Client-side pacing from ``X-Ratelimit-*`` headers, shared by every thread (and hook) of a client.

    The server counts calls in windows and tells us, on every response, how many calls the
    window still allows (``X-Ratelimit-Remaining``), its size (``X-Ratelimit-Limit``) and when
    it ends (``X-Ratelimit-Reset``). Before each call :meth:`acquire` reserves one:

    * while ``remaining - in_flight > 0`` the call goes at once. ``remaining`` is the *fewest*
      calls any answer from the current window reported (answers can arrive out of order, and
      an older, higher count must not undo a newer one); ``in_flight`` counts our calls sent in
      this window and not answered yet, since the server may already have counted them;
    * when the window is spent the caller sleeps until it ends (plus a small ``margin``), then
      every waiting thread starts the new window with the last known ``limit`` as its budget.
      Calls still in flight from the old window were counted there and do not count here.

    So a busy client sends each window's whole budget as soon as the window opens and nothing
    that can only come back 429: the rate limit's floor, without retry storms. Answers that
    carry a window end we already left behind are stale and only release their reservation.
    With no headers at all (a server that sends none) nothing is throttled, except after a bare
    429 whose ``Retry-After`` is honoured for everyone.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        *,
        margin: float = 0.01,
    ):
        # A condition, not a bare lock: observe() wakes callers waiting for answers.
        self._lock = threading.Condition()
        self._clock = clock
        self._sleep = sleep
        # Sleep a little past the reset, so a call never lands in the old window's last instant
        # (the reset is second-precision on some servers, and clocks differ by milliseconds).
        self._margin = margin
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None
        #: End of the last window we left: answers stamped with it (or earlier) are stale.
        self._closed_at: float | None = None
        self._in_flight = 0

    @property
    def limit(self) -> int | None:
        """Calls per window as the server last announced it (``None`` until a header says so)."""
        return self._limit

    def _roll_over(self, now: float) -> bool:
        """Start a new window if the current one has ended (lock held); return whether it did."""
        # The margin is added to the sleeps computed here, not to this test: a caller that
        # already waited out the server's Retry-After must not wait again.
        if self._reset_at is not None and now >= self._reset_at:
            self._closed_at = self._reset_at
            self._reset_at = None
            self._remaining = self._limit
            self._in_flight = 0
            return True
        return False

    def _next(self) -> tuple[float, bool]:
        """Reserve a call -> ``(0, False)``; else ``(seconds to wait, whether answers may free budget)``."""
        with self._lock:
            now = self._clock()
            self._roll_over(now)
            if self._remaining is None or self._remaining - self._in_flight > 0:
                self._in_flight += 1
                return 0.0, False
            if self._reset_at is None:
                # A new window whose whole budget is in flight and none of it answered yet:
                # its end is unknown until the first answer arrives.
                return POLL_SECONDS, True
            until_reset = max(0.0, self._reset_at + self._margin - now)
            # remaining > 0: the window is not spent, only reserved by calls in flight. The
            # server may already have counted some of them in `remaining`, so their answers can
            # give budget back: wait for answers, not for the window's end.
            return until_reset, self._remaining > 0

    def delay(self) -> float:
        """Reserve a call and return 0, or return how long to wait before trying again."""
        return self._next()[0]

    def _reserve(self) -> None:
        with self._lock:
            self._in_flight += 1

    def acquire(self, budget: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Block until a call may be sent and reserve it.

        With a ``budget`` (seconds), never wait longer than that in total: past it the call is
        reserved anyway and sent, so the server's answer (and the caller's retry policy) decides.
        The same happens as soon as ``stop()`` is true: a stopping caller does not sit out the
        rest of a window (up to a minute) before it can end.
        """
        waited = 0.0
        while True:
            wait, for_answers = self._next()
            if wait <= 0:
                return
            if (budget is not None and waited + wait > budget) or (stop is not None and stop()):
                self._reserve()
                return
            if for_answers:
                # Woken by observe() as soon as an answer may have freed budget (or re-checked
                # after a short while, which also bounds the wait when no answer comes).
                started = self._clock()
                with self._lock:
                    self._lock.wait(timeout=min(wait, ANSWER_WAIT_SECONDS))
                waited += max(0.0, self._clock() - started)
                continue
            if stop is not None:
                wait = min(wait, STOP_CHECK_SECONDS)  # look at stop() again soon
            self._sleep(wait)
            waited += wait

    def _wake(self) -> None:
        """Wake as many callers waiting for answers as the budget now allows (lock held)."""
        if self._remaining is None:
            self._lock.notify_all()
        elif self._remaining - self._in_flight > 0:
            self._lock.notify(self._remaining - self._in_flight)

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn the window's state from a response and release its reservation.

        Call it once per :meth:`acquire`, with empty headers and status 0 when no response came.
        """
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            now = self._clock()
            reset = parse_ratelimit_reset(lower.get("x-ratelimit-reset"), now=now)
            remaining = int_header(lower.get("x-ratelimit-remaining"))
            limit = int_header(lower.get("x-ratelimit-limit"))
            if limit is not None:
                self._limit = limit
            if remaining is None or reset is None:
                self._in_flight = max(0, self._in_flight - 1)
                if status == 429:
                    hint = server_wait_hint(headers, now=now)
                    if hint is not None:
                        self._remaining, self._reset_at = 0, now + hint
                self._wake()
                return
            if status == 429:
                remaining = 0
            # Unclamped end of the answer's window: a slow answer may report one already over,
            # and must then be recognised as stale rather than taken for a new window.
            window_end = reset_epoch(lower["x-ratelimit-reset"], now) or now + reset
            # Reset values of one window differ by rounding only: compare with a tolerance.
            tolerance = max(self._margin, 0.002)
            if self._closed_at is not None and window_end <= self._closed_at + tolerance:
                return  # an answer from a window we already left: its call was not counted here
            self._in_flight = max(0, self._in_flight - 1)
            if self._reset_at is None:
                # First answer of a new window: the budget assumed at the rollover meets the truth.
                self._reset_at = window_end
                self._remaining = remaining if self._remaining is None else min(self._remaining, remaining)
            elif window_end > self._reset_at + tolerance:
                # The server is already in a later window than our clock says: adopt its count.
                self._closed_at, self._reset_at, self._remaining = self._reset_at, window_end, remaining
            elif window_end >= self._reset_at - tolerance:
                self._remaining = remaining if self._remaining is None else min(self._remaining, remaining)
            self._wake()


def rate_limit_group(method: str, path: str) -> str:
    """The API's rate-limit group of a call, from its method and version-relative path.

    TwelveLabs counts each group separately (digest: ``POST /analyze``; ``POST /assets``;
    ``POST /tasks`` with ``POST /indexes/{id}/indexed-assets``; the rest). Pacing all groups on one
    window would let a spent upload or read window hold back ``/analyze`` calls, and the reverse.
    """
    route = path.split("?", 1)[0].strip("/")
    if method.upper() == "POST":
        if route == "analyze":
            return "analyze"
        if route in ("analyze/tasks", "analyze/batches"):
            # how the API counts these is not documented: their own window, never /analyze's
            return "analyze_async"
        if route == "assets":
            return "upload"
        if route == "tasks" or route.endswith("/indexed-assets"):
            return "index"
    return "other"


class RateLimitPacers:
    """One :class:`RateLimitPacer` per rate-limit group, created on first use.

    Share one instance between hooks (and threads) that spend the same account's budget.
    """

    def __init__(self, factory: Callable[[], RateLimitPacer] = RateLimitPacer) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._pacers: dict[str, RateLimitPacer] = {}

    def for_call(self, method: str, path: str) -> RateLimitPacer:
        """The pacer of the group ``method path`` belongs to."""
        group = rate_limit_group(method, path)
        with self._lock:
            pacer = self._pacers.get(group)
            if pacer is None:
                pacer = self._pacers[group] = self._factory()
            return pacer
