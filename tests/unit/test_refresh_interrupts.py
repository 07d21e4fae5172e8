"""A refresh that is killed, timed out, interrupted or loses its store stops promptly and keeps its work.

Every gist the engine received was paid for, so it must be stored; nothing new may start once the
run is stopping; and a call in flight must not keep retrying for the rest of its deadline. The
fake hook below answers some videos with a 503 forever through the client's real retry loop
(``call_loop`` with the hook's ``stopping`` check), as the real hook does on an unwell API.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import AirflowTaskTimeout

from airflow_provider_gist.client.pacing import RateLimitPacer, RateLimitPacers
from airflow_provider_gist.client.retry import Answer, Replay, RetryPolicy, call_loop, drive
from airflow_provider_gist.errors import GistTransientError
from airflow_provider_gist.hooks.gist import GistHook
from airflow_provider_gist.operators.refresh import GistRefresher, RefreshGistsOperator
from tests.conftest import twelvelabs_conn_json
from tests.unit.test_refresh_engine import FakeHook, FakeStore

VIDEOS = 60
CONCURRENCY = 4
#: videos whose analysis answers 503 forever: without a stop, their calls retry for 5 s each
FLAKY = {"a004", "a005", "a006"}
#: a retry policy that would keep a flaky call going for 5 s
POLICY = RetryPolicy(max_attempts=10_000, base_delay=0.02, max_delay=0.05, deadline=5.0, jitter=0)


class Journal:
    """What the fake API saw: which videos started and finished, when, and every attempt."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.stopped_at: float | None = None

    def start(self, ref: str) -> None:
        with self.lock:
            self.started[ref] = time.monotonic()

    def started_after_stop(self) -> list[str]:
        assert self.stopped_at is not None
        return [ref for ref, at in self.started.items() if at > self.stopped_at]


class TimedHook(FakeHook):
    """Each gist takes ``latency`` seconds; the FLAKY ones go through the real retry loop."""

    stopping = None  # as on GistHook: the engine sets it

    def __init__(self, pacers: RateLimitPacers, videos: list[dict[str, Any]], journal: Journal) -> None:
        super().__init__(pacers, videos, {})
        self.journal = journal
        self.latency = 0.03

    def generate_gist(self, **kw: Any) -> Any:
        ref = kw["asset_id"]
        self.journal.start(ref)
        if ref in FLAKY:

            def send_once(budget: float) -> Answer:
                with self.journal.lock:
                    self.journal.attempts[ref] += 1
                time.sleep(0.01)
                return Answer(503, {}, b"")

            loop = call_loop(
                POLICY,
                method="POST",
                path="/v1.3/analyze",
                replay=Replay.AFTER_ANSWER,
                clock=time.monotonic,
                log=logging.getLogger(__name__),
                stopping=self.stopping,  # set by the engine, as on a real GistHook
            )
            drive(loop, send_once, time.sleep)  # raises once it gives up
        time.sleep(self.latency)
        gist = super().generate_gist(**kw)
        with self.journal.lock:
            self.journal.finished.add(ref)
        return gist


def make(journal: Journal, store: FakeStore | None = None, **kwargs: Any) -> tuple[GistRefresher, FakeStore]:
    videos = [
        {"_id": f"v{i:03d}", "asset_id": f"a{i:03d}", "updated_at": "2026-11-20T10:00:00Z"}
        for i in range(VIDEOS)
    ]
    store = store or FakeStore()
    kwargs.setdefault("concurrency", CONCURRENCY)
    kwargs.setdefault("flush_size", 5)
    kwargs.setdefault("max_consecutive_failures", 1000)
    refresher = GistRefresher(
        store=store, hook_factory=lambda pacers: TimedHook(pacers, videos, journal), **kwargs
    )
    return refresher, store


def when(journal: Journal, finished: int, action: Any, flaky: set[str] = FLAKY) -> threading.Thread:
    """Run ``action`` in another thread once ``finished`` gists are done (and the flaky ones are retrying)."""

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with journal.lock:
                ready = len(journal.finished) >= finished and all(journal.attempts[r] >= 2 for r in flaky)
            if ready:
                journal.stopped_at = time.monotonic()
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def assert_stopped_cleanly(journal: Journal, store: FakeStore, elapsed_after_stop: float) -> None:
    # stopped promptly: no call kept retrying towards its 5 s deadline
    assert elapsed_after_stop < 1.5, f"the run took {elapsed_after_stop:.2f}s to stop"
    # every gist that was generated (paid for) is stored, none is dropped on the way out
    assert set(store.rows) == journal.finished
    # nothing new started once stopping (a thread already past its check may still begin one)
    assert len(journal.started_after_stop()) <= CONCURRENCY
    assert len(journal.started) < VIDEOS
    # the flaky calls gave up at their next failure instead of retrying on
    attempts_then = dict(journal.attempts)
    time.sleep(0.2)
    assert dict(journal.attempts) == attempts_then, "a call was still retrying after the run ended"


def test_on_kill_stops_promptly_and_stores_every_finished_gist(monkeypatch):
    journal = Journal()
    refresher, store = make(journal)
    op = RefreshGistsOperator(task_id="refresh", index="catalog")
    monkeypatch.setattr(op, "make_refresher", lambda: refresher)
    when(journal, 10, op.on_kill)
    with pytest.raises(GistTransientError, match="stopped early: stopped from outside"):
        op.execute(context={})
    assert journal.stopped_at is not None
    assert_stopped_cleanly(journal, store, time.monotonic() - journal.stopped_at)


def test_a_timeout_in_the_main_thread_stores_what_finished_and_stops_the_calls():
    """AirflowTaskTimeout is raised by a signal handler in the main thread, as Airflow's timeout does."""
    journal = Journal()
    refresher, store = make(journal)

    def time_out(signum: int, frame: Any) -> None:
        raise AirflowTaskTimeout("Timeout, PID: 1")

    previous = signal.signal(signal.SIGUSR1, time_out)
    main = threading.main_thread().ident
    assert main is not None
    try:
        when(journal, 10, lambda: signal.pthread_kill(main, signal.SIGUSR1))
        with pytest.raises(AirflowTaskTimeout):
            refresher.run("catalog")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert journal.stopped_at is not None
    assert_stopped_cleanly(journal, store, time.monotonic() - journal.stopped_at)


def test_a_keyboard_interrupt_stores_what_finished_and_stops_the_calls():
    journal = Journal()
    refresher, store = make(journal)
    main = threading.main_thread().ident
    assert main is not None
    when(journal, 10, lambda: signal.pthread_kill(main, signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        refresher.run("catalog")
    assert journal.stopped_at is not None
    assert_stopped_cleanly(journal, store, time.monotonic() - journal.stopped_at)


class FlakyStore(FakeStore):
    """A store whose second write fails (a dropped database connection), then works again."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.writes = 0

    def put_many(self, gists):
        self.writes += 1
        if self.writes == 2:
            self.journal.stopped_at = time.monotonic()
            raise RuntimeError("server closed the connection unexpectedly")
        return super().put_many(gists)


def test_a_store_error_stops_the_run_and_the_finished_gists_are_stored_on_the_way_out():
    journal = Journal()
    store = FlakyStore(journal)
    refresher, _ = make(journal, store)
    with pytest.raises(RuntimeError, match="server closed the connection"):
        refresher.run("catalog")
    assert journal.stopped_at is not None
    assert_stopped_cleanly(journal, store, time.monotonic() - journal.stopped_at)


def test_a_call_stuck_past_the_grace_is_given_up_and_reported():
    """A call that does not end (an analysis that takes minutes) cannot hold the stop forever."""
    journal = Journal()
    stuck = threading.Event()

    class StuckHook(TimedHook):
        def generate_gist(self, **kw: Any) -> Any:
            self.journal.start(kw["asset_id"])
            if kw["asset_id"] == "a001":
                stuck.wait(5)  # one long analysis, deaf to the stop
            time.sleep(self.latency)
            gist = FakeHook.generate_gist(self, **kw)
            with self.journal.lock:
                self.journal.finished.add(kw["asset_id"])
            return gist

    videos = [
        {"_id": f"v{i:03d}", "asset_id": f"a{i:03d}", "updated_at": "2026-11-20T10:00:00Z"}
        for i in range(VIDEOS)
    ]
    store = FakeStore()
    refresher = GistRefresher(
        store=store,
        concurrency=CONCURRENCY,
        stop_grace=0.3,
        hook_factory=lambda pacers: StuckHook(pacers, videos, journal),
    )
    when(journal, 10, refresher.stop, flaky=set())
    started = time.monotonic()
    try:
        summary = refresher.run("catalog")
    finally:
        stuck.set()
    assert time.monotonic() - started < 3
    assert [(f.video_ref, f.kind) for f in summary.failures if f.kind == "interrupted"] == [
        ("a001", "interrupted")
    ]
    assert summary.aborted == "stopped from outside (the task was killed)"
    assert "a001" not in store.rows
    assert set(store.rows) == journal.finished  # everything else that finished is stored


# ------------------------------------------------------------------------------ the real hook


def test_a_stopping_hook_gives_up_retrying_at_once(monkeypatch, requests_mock):
    """The real GistHook: once ``stopping()`` is true, a failing call is not retried."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json("https://api.twelvelabs.test", max_attempts=10, retry_deadline=300),
    )
    url = "https://api.twelvelabs.test/v1.3/indexes/ix1"
    hook = GistHook()
    slept: list[float] = []
    hook._sleep = slept.append
    requests_mock.get(url, status_code=503, json={"code": "service_unavailable", "message": "later"})
    stop = threading.Event()
    hook.stopping = stop.is_set
    requests_mock.get(
        url, [{"status_code": 503, "json": {"message": "x"}}] * 2 + [{"status_code": 200, "json": {}}]
    )
    assert hook.get_index("ix1") == {}  # not stopping: retried as usual
    assert len(slept) == 2
    requests_mock.reset_mock()
    requests_mock.get(url, status_code=503, json={"code": "service_unavailable", "message": "later"})
    stop.set()
    with pytest.raises(GistTransientError, match="HTTP 503"):
        hook.get_index("ix1")
    assert requests_mock.call_count == 1  # stopping: the first failure ends the call
    requests_mock.get(url, exc=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(GistTransientError):
        hook.get_index("ix1")
    assert requests_mock.call_count == 2


def test_a_stopping_caller_does_not_wait_out_a_rate_window():
    clock = {"now": 1000.0}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock["now"] += seconds

    pacer = RateLimitPacer(clock=lambda: clock["now"], sleep=sleep)
    pacer.acquire()
    pacer.observe({"X-Ratelimit-Limit": "1", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "1060"}, 200)
    stopping = {"now": False}

    def stop_soon() -> bool:
        stopping["now"] = stopping["now"] or sum(slept) >= 0.5
        return stopping["now"]

    pacer.acquire(stop=stop_soon)  # the window ends in 60 s: without the stop, a minute's wait
    assert sum(slept) < 1
