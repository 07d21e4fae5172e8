"""Client-side rate-limit pacing: spend each window's budget, never draw a 429 we could foresee.

TwelveLabs counts calls per rate-limit group in windows and reports the window's state on every
answer (``X-Ratelimit-Limit``, ``-Remaining``, ``-Reset``). :class:`Window` is that state and the
rules for it; :class:`RateLimitPacer` keeps one group's window in memory for every thread of a
process, and :class:`RateLimitPacers` holds one pacer per group. When the connection names a
pacing store, the windows live in a SQL table that every worker reaches instead
(:mod:`airflow_provider_gist.client.shared_pacing`), decided by the same :class:`Window` rules.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_gist.client.headers import (
    int_header,
    parse_ratelimit_reset,
    reset_epoch,
    server_wait_hint,
)

if TYPE_CHECKING:
    from airflow_provider_gist.client.shared_pacing import SharedWindows

#: How often a caller looks again when a new window's budget is all in flight and its end unknown.
POLL_SECONDS = 0.02
#: Longest a caller waits for an answer before looking at the pacer's state again.
ANSWER_WAIT_SECONDS = 0.25
#: How often a caller that may be told to stop looks again while it waits for a window.
STOP_CHECK_SECONDS = 0.25
#: Default margin past a window's end before its successor is used.
MARGIN_SECONDS = 0.01


@dataclass
class Window:
    """One rate-limit group's window as the client knows it, and the rules that change it.

    Plain data without a lock or a clock: :class:`RateLimitPacer` keeps one in memory under its
    lock; :class:`~airflow_provider_gist.client.shared_pacing.SharedRateLimitPacer` reads one
    from a table row inside a transaction and writes it back. Both decide with these methods.

    * while ``remaining - in_flight > 0`` a call may go at once. ``remaining`` is the *fewest*
      calls any answer from the current window reported (answers can arrive out of order, and
      an older, higher count must not undo a newer one); ``in_flight`` counts calls sent in
      this window and not answered yet, since the server may already have counted them;
    * once the window's end (``reset_at``) has passed, the next window starts with the last
      known ``limit`` as its budget. Calls still in flight from the old window were counted
      there and do not count here; their answers are stale and change nothing.

    The shared pacer also passes a ``lease``: a holder of reservations may die without ever
    answering, so reservations in a window whose end is not known yet lapse at ``expires_at``
    (the window's end as the learned ``window_seconds`` predict it, else ``lease`` seconds
    after they were made). In one process every reservation is answered, so it passes none.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    #: End of the last window we left: answers stamped with it (or earlier) are stale.
    closed_at: float | None = None
    in_flight: int = 0
    #: When reservations of a window whose end is unknown lapse (only with a lease).
    expires_at: float | None = None
    #: Shortest span between two window ends the server announced (fixed windows: their length).
    window_seconds: float | None = None
    #: The latest window end an ``X-Ratelimit-Reset`` header announced (not a Retry-After guess).
    last_end: float | None = None
    #: Whether any answer came at all (a server without headers then is not paced).
    answered: bool = False

    def free(self) -> int | None:
        """Calls that may go now (``None``: no budget known, so no limit)."""
        return None if self.remaining is None else self.remaining - self.in_flight

    def roll_over(self, now: float, lease: float | None = None) -> bool:
        """Start a new window if the current one has ended; return whether it did."""
        # The margin is added to the sleeps computed here, not to this test: a caller that
        # already waited out the server's Retry-After must not wait again.
        if self.reset_at is not None and now >= self.reset_at:
            self._start(self.reset_at, now, lease)
            return True
        if (
            lease is not None
            and self.reset_at is None
            and self.expires_at is not None
            and now >= self.expires_at
        ):
            # Nobody answered a call of this window before it ended: the holders are gone (a
            # killed worker), or their calls so slow that the server's window is over anyway.
            self._start(self.expires_at, now, lease)
            return True
        return False

    def _start(self, closed: float, now: float, lease: float | None) -> None:
        self.closed_at = closed
        self.reset_at = None
        self.remaining = self.limit
        self.in_flight = 0
        self.expires_at = None
        if lease is not None and self.window_seconds:
            # Fixed windows: the one we are in ends a whole number of lengths after the last.
            spans = math.floor((now - closed) / self.window_seconds) + 1
            self.expires_at = closed + spans * self.window_seconds

    def reserve(self, now: float, lease: float | None = None) -> None:
        """Count one more call in flight in this window."""
        if lease is not None and self.reset_at is None and self.expires_at is None:
            self.expires_at = now + lease
        self.in_flight += 1

    def next(
        self, now: float, margin: float, lease: float | None = None, *, probe: bool = False
    ) -> tuple[float, bool]:
        """Reserve a call -> ``(0, False)``; else ``(seconds to wait, whether answers may free budget)``.

        ``probe``: while nothing at all is known of the window, send one call and let the others
        wait for its answer (its headers say how many may follow), instead of all of them.
        """
        self.roll_over(now, lease)
        if self.remaining is None:
            if probe and not self.answered and self.in_flight > 0:
                return POLL_SECONDS, True
            self.reserve(now, lease)
            return 0.0, False
        if self.remaining - self.in_flight > 0:
            self.reserve(now, lease)
            return 0.0, False
        if self.reset_at is None:
            # A new window whose whole budget is in flight and none of it answered yet:
            # its end is unknown until the first answer arrives.
            return POLL_SECONDS, True
        until_reset = max(0.0, self.reset_at + margin - now)
        # remaining > 0: the window is not spent, only reserved by calls in flight. The
        # server may already have counted some of them in `remaining`, so their answers can
        # give budget back: wait for answers, not for the window's end.
        return until_reset, self.remaining > 0

    def observe(self, headers: Mapping[str, str], status: int, now: float, margin: float) -> None:
        """Learn the window's state from an answer and release its reservation (status 0: none came)."""
        lower = {k.lower(): v for k, v in headers.items()}
        if status:
            self.answered = True
        reset = parse_ratelimit_reset(lower.get("x-ratelimit-reset"), now=now)
        remaining = int_header(lower.get("x-ratelimit-remaining"))
        limit = int_header(lower.get("x-ratelimit-limit"))
        if limit is not None:
            self.limit = limit
        if remaining is None or reset is None:
            self.in_flight = max(0, self.in_flight - 1)
            if status == 429:
                hint = server_wait_hint(headers, now=now)
                if hint is not None:
                    self.remaining, self.reset_at = 0, now + hint
            return
        if status == 429:
            remaining = 0
        # Unclamped end of the answer's window: a slow answer may report one already over,
        # and must then be recognised as stale rather than taken for a new window.
        window_end = reset_epoch(lower["x-ratelimit-reset"], now) or now + reset
        # Reset values of one window differ by rounding only: compare with a tolerance.
        tolerance = max(margin, 0.002)
        self._learn_length(window_end, tolerance)
        if self.closed_at is not None and window_end <= self.closed_at + tolerance:
            return  # an answer from a window we already left: its call was not counted here
        self.in_flight = max(0, self.in_flight - 1)
        if self.reset_at is None:
            # First answer of a new window: the budget assumed at the rollover meets the truth.
            self.reset_at = window_end
            self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        elif window_end > self.reset_at + tolerance:
            # The server is already in a later window than our clock says: adopt its count.
            self.closed_at, self.reset_at, self.remaining = self.reset_at, window_end, remaining
        elif window_end >= self.reset_at - tolerance:
            self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)

    def _learn_length(self, window_end: float, tolerance: float) -> None:
        # Only ends the server announced: a Retry-After guess is not a window boundary.
        if self.last_end is not None and window_end > self.last_end + tolerance:
            span = window_end - self.last_end
            self.window_seconds = span if self.window_seconds is None else min(self.window_seconds, span)
        if self.last_end is None or window_end > self.last_end:
            self.last_end = window_end


class Pacer:
    """What the hook needs of a pacer: :meth:`acquire` before a call, :meth:`observe` after it.

    Subclasses say how a call is reserved (:meth:`_next`, :meth:`_reserve`) and how a caller
    waits for answers (:meth:`_await_answers`); the waiting loop is this one.
    """

    _clock: Callable[[], float]
    _sleep: Callable[[float], None]

    @property
    def limit(self) -> int | None:
        """Calls per window as the server last announced it (``None`` until a header says so)."""
        raise NotImplementedError

    def _next(self) -> tuple[float, bool]:
        """Reserve a call -> ``(0, False)``; else ``(seconds to wait, whether answers may free budget)``."""
        raise NotImplementedError

    def _reserve(self) -> None:
        """Reserve a call whatever the window says (the caller's budget for waiting is spent)."""
        raise NotImplementedError

    def _await_answers(self, timeout: float) -> None:
        """Wait up to ``timeout`` for an answer that may free budget."""
        raise NotImplementedError

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn the window's state from a response and release its reservation.

        Call it once per :meth:`acquire`, with empty headers and status 0 when no response came.
        """
        raise NotImplementedError

    def delay(self) -> float:
        """Reserve a call and return 0, or return how long to wait before trying again."""
        return self._next()[0]

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
                # Woken as soon as an answer may have freed budget (or re-checked after a short
                # while, which also bounds the wait when no answer comes).
                started = self._clock()
                self._await_answers(min(wait, ANSWER_WAIT_SECONDS))
                waited += max(0.0, self._clock() - started)
                continue
            if stop is not None:
                wait = min(wait, STOP_CHECK_SECONDS)  # look at stop() again soon
            self._sleep(wait)
            waited += wait


class RateLimitPacer(Pacer):
    """Client-side pacing from ``X-Ratelimit-*`` headers, shared by every thread (and hook) of a client.

    The server counts calls in windows and tells us, on every response, how many calls the
    window still allows (``X-Ratelimit-Remaining``), its size (``X-Ratelimit-Limit``) and when
    it ends (``X-Ratelimit-Reset``). Before each call :meth:`acquire` reserves one by the
    :class:`Window` rules; when the window is spent the caller sleeps until it ends (plus a
    small ``margin``), then every waiting thread starts the new window with the last known
    ``limit`` as its budget.

    So a busy client sends each window's whole budget as soon as the window opens and nothing
    that can only come back 429: the rate limit's floor, without retry storms. With no headers
    at all (a server that sends none) nothing is throttled, except after a bare 429 whose
    ``Retry-After`` is honoured for everyone. The window lives in this process only: another
    process spending the same key is invisible to it (see the connection's ``pacing_conn_id``).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        *,
        margin: float = MARGIN_SECONDS,
    ):
        # A condition, not a bare lock: observe() wakes callers waiting for answers.
        self._lock = threading.Condition()
        self._clock = clock
        self._sleep = sleep
        # Sleep a little past the reset, so a call never lands in the old window's last instant
        # (the reset is second-precision on some servers, and clocks differ by milliseconds).
        self._margin = margin
        self._window = Window()

    @property
    def limit(self) -> int | None:
        return self._window.limit

    @property
    def _in_flight(self) -> int:
        return self._window.in_flight

    def _next(self) -> tuple[float, bool]:
        with self._lock:
            return self._window.next(self._clock(), self._margin)

    def _reserve(self) -> None:
        with self._lock:
            self._window.in_flight += 1

    def _await_answers(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait(timeout=timeout)

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        with self._lock:
            self._window.observe(headers, status, self._clock(), self._margin)
            wake(self._lock, self._window.free())


def wake(condition: threading.Condition, free: int | None) -> None:
    """Wake as many callers waiting for answers as the budget now allows (condition held)."""
    if free is None:
        condition.notify_all()
    elif free > 0:
        condition.notify(free)


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


#: Groups whose answers carry ``X-Ratelimit-*`` (or may): only these are worth a shared window.
#: The rest ("other": reads) carry no counts to share, so their pacer stays in the process.
SHARED_GROUPS = frozenset({"analyze", "analyze_async", "upload", "index"})


class RateLimitPacers:
    """One pacer per rate-limit group, created on first use.

    Share one instance between hooks (and threads) that spend the same account's budget. By
    default each group's window lives in this process (:class:`RateLimitPacer`); after
    :meth:`share` the groups that carry rate-limit headers keep theirs in a table every worker
    reaches. A ``factory`` (tests: a fake clock) fixes the kind of pacer: :meth:`share` then
    changes nothing.
    """

    def __init__(self, factory: Callable[[], Pacer] | None = None) -> None:
        self._factory: Callable[[], Pacer] = factory or RateLimitPacer
        self._fixed = factory is not None
        self._lock = threading.Lock()
        self._pacers: dict[str, Pacer] = {}
        self._shared: tuple[SharedWindows, str] | None = None

    def share(self, scope: str, windows: Callable[[], SharedWindows]) -> bool:
        """Keep the windows of the rate-limited groups in a shared table; return whether they are.

        ``scope`` names the budget (connection id and host, never the key); ``windows()`` opens
        the table, called once, on the first share. Groups already paced in this process switch
        for their next calls. Idempotent for one scope; if hooks of two connections share one
        instance (they should not) the first scope wins and the second gets ``False``.
        """
        if self._fixed:
            return False
        with self._lock:
            if self._shared is None:
                self._shared = (windows(), scope)
                for group in SHARED_GROUPS & set(self._pacers):
                    del self._pacers[group]
            return self._shared[1] == scope

    def unshare(self) -> None:
        """Close the shared table's connection and pace in this process again (until :meth:`share`)."""
        with self._lock:
            shared, self._shared = self._shared, None
            for group in SHARED_GROUPS & set(self._pacers):
                del self._pacers[group]
        if shared is not None:
            shared[0].close()

    @property
    def shared(self) -> SharedWindows | None:
        """The shared table the windows live in, or ``None`` when they live in this process."""
        return None if self._shared is None else self._shared[0]

    def for_call(self, method: str, path: str) -> Pacer:
        """The pacer of the group ``method path`` belongs to."""
        group = rate_limit_group(method, path)
        with self._lock:
            pacer = self._pacers.get(group)
            if pacer is None:
                if self._shared is not None and group in SHARED_GROUPS:
                    windows, scope = self._shared
                    pacer = windows.pacer(scope, group)
                else:
                    pacer = self._factory()
                self._pacers[group] = pacer
            return pacer
