"""One retry policy and one retry loop for every call to the API, sync (hooks) or async (triggers).

What is retried: 429 (honouring ``Retry-After`` in seconds or as an HTTP date, else
``X-Ratelimit-Reset``), 5xx, and failures to connect or to read an answer. Nothing else:
any other 4xx is a caller error and retrying it only wastes budget. Waits grow exponentially
with jitter, and everything is bounded twice: by a number of attempts and by an overall deadline,
so no call can hang a worker or a triggerer.

How far a call may be replayed depends on what a second copy could do (:class:`Replay`):

* reads (``GET``) are replayed after any failure;
* ``POST /analyze`` creates nothing but is billed per input minute: replayed after an
  answer (429, 5xx) or a failed connection, never after a read timeout, since the server may
  still be analysing the video and would bill the second request too;
* calls that create a resource (``POST /assets``, ``/tasks``, ``/indexed-assets``) only when
  the server surely did not act on them: a 429 (the API refused it before doing anything) or a
  connection never made. Nothing else proves it: a 500 may come after the commit, and a 502,
  503 or 504 from a gateway may come while the API is still at work, as may a read timeout. Such
  a failure is surfaced, because a blind retry could upload (and bill) twice; the ingest engine
  then looks the resource up by its ingest key (:mod:`airflow_provider_gist.ingest.durable`).

The loop (:func:`call_loop`) is written once, without I/O: it is a generator that is told what
each attempt produced and answers how long to wait before the next one (or returns the answer,
or raises the typed error). :func:`drive` and :func:`adrive` run it with a sync or an async
"send once".
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_gist.client.failures import TransportFailure, error_from_response
from airflow_provider_gist.errors import GistTransientError


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

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        """The policy a connection asks for (its ``max_attempts`` and ``retry_deadline`` fields)."""
        return cls(max_attempts=int(settings["max_attempts"]), deadline=float(settings["retry_deadline"]))

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential delay before retry number ``attempt`` (1-based), less up to ``jitter``."""
        raw = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return raw * (1 - self.jitter * rng())

    def next_wait(
        self,
        attempt: int,
        elapsed: float,
        hint: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retrying a failed ``attempt``, or ``None`` to give up.

        ``hint`` is the server's own wait (``Retry-After``/``X-Ratelimit-Reset``); without one we
        back off. We give up when the attempts are spent, when the wait would pass the deadline
        (``elapsed`` counts from the first try), or when the server asks for longer than
        ``max_retry_after``: such a wait belongs to Airflow's task retry, not to a worker's sleep.
        """
        if hint is not None and hint > self.max_retry_after:
            return None
        wait = hint if hint is not None else self.backoff(attempt, rng)
        if attempt >= self.max_attempts or elapsed + wait > self.deadline:
            return None
        return wait


class Replay(Enum):
    """How far a call may be sent again after a failure (see the module's docstring)."""

    #: Reads and other idempotent calls: after any failure.
    ALWAYS = "always"
    #: Billed but creating nothing (``POST /analyze``): after anything but a read timeout.
    AFTER_ANSWER = "after_answer"
    #: Creates a resource: only when the server surely did not act (429, never connected).
    UNPROCESSED = "unprocessed"

    @classmethod
    def for_method(cls, method: str) -> Replay:
        return cls.ALWAYS if method.upper() in ("GET", "HEAD", "PUT", "DELETE") else cls.UNPROCESSED

    def allows_status(self, status: int) -> bool:
        if status == 429:
            return True
        # A 503 is no proof for a create: a gateway answers it while the API may still be working.
        return status >= 500 and self is not Replay.UNPROCESSED

    def allows_failure(self, failure: TransportFailure) -> bool:
        if self is Replay.AFTER_ANSWER:
            # A reset or a cut-off answer means the server is done with the request; only a
            # read timeout leaves it possibly still at work (and billing).
            return failure.kind != "read_timeout"
        return self is Replay.ALWAYS or failure.never_sent

    def why_not(self) -> str:
        if self is Replay.AFTER_ANSWER:
            return "the server may still be analysing the video, and a second request would be billed too"
        return "the request may have been processed (it can create a resource)"


def is_retryable_status(status: int, *, idempotent: bool) -> bool:
    """Whether a response with ``status`` may be retried for this kind of request."""
    return (Replay.ALWAYS if idempotent else Replay.UNPROCESSED).allows_status(status)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, whatever the library that received it."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Attempt:
    """What the loop asks of its driver: wait ``wait`` seconds, then send once within ``budget``."""

    wait: float
    #: seconds left before the call's deadline once the wait is over (for rate-limit pacing)
    budget: float


Loop = Generator[Attempt, "Answer | TransportFailure", Answer]


def call_loop(
    policy: RetryPolicy,
    *,
    method: str,
    path: str,
    replay: Replay,
    clock: Callable[[], float],
    log: logging.Logger | Any,
    stopping: Callable[[], bool] | None = None,
) -> Loop:
    """The retry loop of one call: send it what each attempt produced; it yields the next attempt.

    Returns the first answer below 400; raises the typed error (never holding the key) when the
    status or failure may not be replayed, when the policy gives up, or, once ``stopping()``
    says the caller is shutting down, at the first failure: a stopping task must not keep a
    call retrying for the rest of its deadline.
    """
    started = clock()
    attempt = 0
    wait = 0.0
    while True:
        attempt += 1
        outcome = yield Attempt(wait, max(0.0, policy.deadline - (clock() - started)))
        elapsed = clock() - started
        if isinstance(outcome, TransportFailure):
            if not replay.allows_failure(outcome):
                raise GistTransientError(
                    f"{outcome.describe()}; not retried because {replay.why_not()}", method=method, path=path
                )
            error = GistTransientError(
                f"{outcome.describe()} (attempt {attempt} of {policy.max_attempts})", method=method, path=path
            )
            next_wait = policy.next_wait(attempt, elapsed)
            if next_wait is None or _stopping(stopping, log, method, path):
                raise error
            log.warning("%s %s: %s; retrying in %.1fs", method, path, error.api_message, next_wait)
        else:
            if outcome.status < 300:
                return outcome
            api_error = error_from_response(
                outcome.status, outcome.text, outcome.headers, method=method, path=path
            )
            if not replay.allows_status(outcome.status):
                raise api_error
            next_wait = policy.next_wait(attempt, elapsed, api_error.retry_after)
            if next_wait is None or _stopping(stopping, log, method, path):
                raise api_error
            log.warning(
                "%s %s answered HTTP %s%s; retrying in %.1fs (attempt %d of %d)",
                method,
                path,
                outcome.status,
                f" [{api_error.code}]" if api_error.code else "",
                next_wait,
                attempt,
                policy.max_attempts,
            )
        wait = next_wait


def _stopping(stopping: Callable[[], bool] | None, log: Any, method: str, path: str) -> bool:
    if stopping is None or not stopping():
        return False
    log.info("%s %s: not retried, the caller is stopping", method, path)
    return True


def drive(
    loop: Loop,
    send_once: Callable[[float], Answer | TransportFailure],
    sleep: Callable[[float], Any],
) -> Answer:
    """Run :func:`call_loop` with a blocking ``send_once(budget)``."""
    attempt = next(loop)
    while True:
        if attempt.wait > 0:
            sleep(attempt.wait)
        outcome = send_once(attempt.budget)
        try:
            attempt = loop.send(outcome)
        except StopIteration as done:
            return done.value


async def adrive(
    loop: Loop,
    send_once: Callable[[float], Awaitable[Answer | TransportFailure]],
    sleep: Callable[[float], Awaitable[Any]],
) -> Answer:
    """Run :func:`call_loop` with an awaitable ``send_once(budget)`` (triggers, never blocking)."""
    attempt = next(loop)
    while True:
        if attempt.wait > 0:
            await sleep(attempt.wait)
        outcome = await send_once(attempt.budget)
        try:
            attempt = loop.send(outcome)
        except StopIteration as done:
            return done.value
