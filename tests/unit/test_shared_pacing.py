"""The shared rate-limit window: pacers of several processes on one table spend one budget.

Each "process" here is its own :class:`SharedWindows` (its own thread and DB connection) on one
SQLite file, so nothing is shared but the table, as between two workers. Time is a fake clock:
it moves only when a test moves it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_gist.client.pacing import RateLimitPacer, RateLimitPacers, Window
from airflow_provider_gist.client.settings import FIELDS, ApiSettings, conn_fields
from airflow_provider_gist.client.shared_pacing import TABLE, SharedRateLimitPacer, SharedWindows
from airflow_provider_gist.errors import GistConfigError
from tests.helpers.postgres import airflow_conn_json, postgres_uri  # noqa: F401  (session fixture)

NOW = 1_800_000_000.0
SCOPE = "twelvelabs_default https://api.twelvelabs.io"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def headers(remaining: int, reset: float, limit: int = 4) -> dict[str, str]:
    return {
        "X-Ratelimit-Limit": str(limit),
        "X-Ratelimit-Remaining": str(remaining),
        "X-Ratelimit-Reset": str(reset),
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pacing.db"


def _opener(connect, dialect: str, placeholder: str, clock: Clock):
    """``open()`` -> a new "process" on the table (its own thread and connection); closes them all."""
    made: list[SharedWindows] = []

    def make(**kwargs) -> SharedWindows:
        windows = SharedWindows(
            connect, dialect=dialect, placeholder=placeholder, label="test store", clock=clock, **kwargs
        )
        made.append(windows)
        return windows

    return make, made


@pytest.fixture
def open_windows(db, clock):
    """Processes sharing one SQLite file."""
    make, made = _opener(lambda: sqlite3.connect(db), "sqlite", "?", clock)
    yield make
    for windows in made:
        windows.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_windows(request, db, clock, monkeypatch):
    """Processes sharing one SQLite file, or one PostgreSQL database through its Airflow
    connection and ``PostgresHook`` (a fresh table each test)."""
    if request.param == "sqlite":
        make, made = _opener(lambda: sqlite3.connect(db), "sqlite", "?", clock)
    else:
        import psycopg

        from airflow_provider_gist.hooks.gist import shared_windows

        uri = request.getfixturevalue("postgres_uri")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        monkeypatch.setenv("AIRFLOW_CONN_GIST_PACING_PG", airflow_conn_json(uri))
        made = []

        def make(**kwargs) -> SharedWindows:
            windows = shared_windows("gist_pacing_pg")
            assert windows.dialect == "postgresql"
            windows.clock = clock
            made.append(windows)
            return windows

    yield make
    for windows in made:
        windows.close()


def pacer(windows: SharedWindows, group: str = "analyze") -> SharedRateLimitPacer:
    # poll=0: the local "someone just asked" gate is a speed-up for real threads; here every
    # delay() must look at the table.
    return windows.pacer(SCOPE, group, sleep=lambda seconds: None, poll=0.0)


def learn(a: SharedRateLimitPacer, remaining: int, reset: float, limit: int = 4) -> None:
    """The first call of the budget (the probe) and its answer."""
    assert a.delay() == 0.0
    a.observe(headers(remaining, reset, limit), 200)


def test_two_processes_together_stay_within_one_window(any_windows):
    a, b = pacer(any_windows()), pacer(any_windows())
    learn(a, remaining=3, reset=NOW + 10)
    # three calls left in the window, whoever asks: never four
    granted = [p.delay() == 0.0 for p in (a, b, a, b, a, b)]
    assert granted.count(True) == 3
    assert b.delay() > 0 and a.delay() > 0


def test_with_per_process_windows_the_same_calls_would_overspend():
    """The control: two in-process pacers that each saw the same answer grant twice the budget."""
    clock = Clock()
    a, b = RateLimitPacer(clock=clock), RateLimitPacer(clock=clock)
    for p in (a, b):
        p.delay()
        p.observe(headers(3, NOW + 10), 200)
    granted = [p.delay() == 0.0 for p in (a, b, a, b, a, b)]
    assert granted.count(True) == 6


def test_the_first_call_of_a_budget_probes_and_the_others_wait_for_its_headers(open_windows):
    a, b = pacer(open_windows()), pacer(open_windows())
    assert a.delay() == 0.0
    assert b.delay() > 0  # nothing known yet: one call finds the limit out first
    a.observe(headers(3, NOW + 10), 200)
    assert b.delay() == 0.0


def test_a_group_without_headers_is_not_throttled_after_its_first_answer(open_windows):
    a, b = pacer(open_windows(), "upload"), pacer(open_windows(), "upload")
    assert a.delay() == 0.0
    a.observe({}, 201)
    assert [p.delay() for p in (a, b, a, b)] == [0.0] * 4


def test_the_next_window_brings_the_whole_limit_back_for_everyone(any_windows, clock):
    a, b = pacer(any_windows()), pacer(any_windows())
    learn(a, remaining=1, reset=NOW + 2)
    assert a.delay() == 0.0
    a.observe(headers(0, NOW + 2), 200)
    wait = b.delay()
    assert wait == pytest.approx(2, abs=0.05)  # spent: until the reset (plus the margin)
    clock.now += wait
    granted = [p.delay() == 0.0 for p in (b, a, b, a, b)]
    assert granted.count(True) == 4  # the announced limit


def test_answers_from_a_window_already_left_do_not_spend_the_new_one(open_windows, clock):
    a, b = pacer(open_windows()), pacer(open_windows())
    learn(a, remaining=2, reset=NOW + 2, limit=2)
    assert a.delay() == 0.0  # sent in the old window, answered late
    clock.now += 2.5
    assert b.delay() == 0.0  # new window: budget 2, one reserved
    a.observe(headers(0, NOW + 2, limit=2), 200)  # the late answer says "0 left" of the OLD window
    assert b.delay() == 0.0
    assert a.delay() > 0


def test_reservations_of_a_killed_worker_lapse_when_their_window_ends(any_windows, clock):
    dead, alive = any_windows(), any_windows()
    a = pacer(dead)
    learn(a, remaining=3, reset=NOW + 10)
    assert [a.delay() for _ in range(3)] == [0.0] * 3  # all in flight, then the worker is SIGKILLed
    dead.close()
    b = pacer(alive)
    assert b.delay() > 0  # the window is reserved, its end is known
    clock.now = NOW + 10.5
    assert b.delay() == 0.0  # the window ended: the dead reservations went with it


def test_reservations_in_a_window_of_unknown_end_lapse_too(open_windows, clock):
    """After a rollover the new window's end is unknown until an answer; a dead holder never answers."""
    dead, alive = open_windows(), open_windows()
    a, b = pacer(dead), pacer(alive)
    learn(a, remaining=0, reset=NOW + 10)
    clock.now = NOW + 10.1
    assert b.delay() == 0.0  # the first call of the next window (answered: its end is NOW + 20)
    b.observe(headers(3, NOW + 20), 200)
    clock.now = NOW + 20.1
    assert [a.delay() for _ in range(4)] == [0.0] * 4  # the window after: all four in flight...
    dead.close()  # ...and their worker dies before any answer
    assert b.delay() > 0
    stored = alive.read(SCOPE, "analyze")
    assert stored is not None and stored.window_seconds == pytest.approx(10)
    assert stored.expires_at == pytest.approx(NOW + 30)  # the learned length says when it ends
    clock.now = NOW + 30.05
    assert b.delay() == 0.0


def test_a_probe_whose_worker_died_lapses_after_the_lease(open_windows, clock):
    dead, alive = open_windows(lease=60), open_windows(lease=60)
    assert pacer(dead).delay() == 0.0  # the very first call, never answered
    dead.close()
    b = pacer(alive)
    assert b.delay() > 0
    clock.now += 61
    assert b.delay() == 0.0


def test_rows_hold_counts_and_times_only(open_windows, db):
    a = pacer(open_windows())
    learn(a, remaining=3, reset=NOW + 10)
    a.delay()
    a.observe(headers(2, NOW + 10), 200)
    with sqlite3.connect(db) as conn:
        cursor = conn.execute(f"SELECT * FROM {TABLE}")
        columns = [c[0] for c in cursor.description]
        rows = cursor.fetchall()
    assert rows and [dict(zip(columns, row, strict=True))["scope"] for row in rows] == [SCOPE]
    assert {c for c in columns if "key" in c or "secret" in c or "token" in c} == set()


def test_an_unreachable_store_falls_back_to_this_process_with_one_warning(clock, caplog):
    def refuse():
        raise sqlite3.OperationalError("unable to open database file /secret/path")

    windows = SharedWindows(refuse, dialect="sqlite", placeholder="?", label="pacing store 'p'", clock=clock)
    a = pacer(windows)
    with caplog.at_level(logging.WARNING):
        assert a.delay() == 0.0  # no state anywhere: the call goes, paced by this process
        a.observe(headers(1, NOW + 10), 200)
        assert a.delay() == 0.0
        a.observe(headers(0, NOW + 10), 200)
        assert a.delay() == pytest.approx(10, abs=0.05)  # still paced, from this process's window
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pacing store 'p'" in warnings[0].getMessage()
    assert "OperationalError" in warnings[0].getMessage()
    assert "/secret/path" not in caplog.text
    windows.close()


def test_the_store_is_tried_again_after_a_failure(tmp_path, clock):
    db = tmp_path / "later.db"
    up = {"now": False}

    def connect():
        if not up["now"]:
            raise sqlite3.OperationalError("down")
        return sqlite3.connect(db)

    windows = SharedWindows(
        connect, dialect="sqlite", placeholder="?", label="s", clock=clock, retry_seconds=0.0
    )
    a = pacer(windows)
    assert a.delay() == 0.0
    assert not db.exists()
    up["now"] = True
    a.observe(headers(3, NOW + 10), 200)
    assert windows.read(SCOPE, "analyze") is not None  # back on the table
    windows.close()


def test_share_moves_only_the_rate_limited_groups_and_keeps_a_fixed_factory(open_windows):
    windows = open_windows()
    pacers = RateLimitPacers()
    assert pacers.share(SCOPE, lambda: windows)
    assert isinstance(pacers.for_call("POST", "analyze"), SharedRateLimitPacer)
    assert isinstance(pacers.for_call("POST", "assets"), SharedRateLimitPacer)
    assert not isinstance(pacers.for_call("GET", "indexes"), SharedRateLimitPacer)  # no headers to share
    assert pacers.share(SCOPE, lambda: pytest.fail("opened twice"))
    assert not pacers.share("other_conn https://api.twelvelabs.io", lambda: windows)
    fixed = RateLimitPacers(RateLimitPacer)
    assert not fixed.share(SCOPE, lambda: pytest.fail("a fixed factory is never replaced"))


def test_the_window_rules_learn_the_length_of_fixed_windows_from_reset_times():
    window = Window()
    window.observe(headers(3, NOW + 10), 200, NOW, 0.01)
    assert window.window_seconds is None
    window.observe(headers(3, NOW + 30), 200, NOW + 21, 0.01)  # an idle window in between
    assert window.window_seconds == pytest.approx(20)
    window.observe(headers(3, NOW + 40), 200, NOW + 31, 0.01)
    assert window.window_seconds == pytest.approx(10)
    window.observe({"Retry-After": "1"}, 429, NOW + 31, 0.01)  # a guess, not a boundary
    assert window.window_seconds == pytest.approx(10)


# -- the connection setting ------------------------------------------------------------------------


def test_pacing_conn_id_is_a_setting_with_a_form_field_and_validation():
    assert ApiSettings().pacing_conn_id is None
    assert ApiSettings.from_extra({"pacing_conn_id": "gist_pacing"}, "tl").pacing_conn_id == "gist_pacing"
    assert ApiSettings.from_extra({"pacing_conn_id": ""}, "tl").pacing_conn_id is None
    with pytest.raises(GistConfigError, match="pacing_conn_id must be a connection id"):
        ApiSettings.from_extra({"pacing_conn_id": "postgresql://u:p@h/db"}, "tl")
    form = conn_fields()["pacing_conn_id"]
    assert form["schema"]["type"] == ["string", "null"]
    assert "worker" in FIELDS["pacing_conn_id"].description


def test_a_missing_or_non_sql_pacing_connection_is_a_clear_config_error(monkeypatch):
    from airflow_provider_gist.hooks.gist import shared_windows

    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_PACING", raising=False)
    with pytest.raises(GistConfigError, match=r"'no_such_pacing' .* is not defined"):
        shared_windows("no_such_pacing")
    monkeypatch.setenv(
        "AIRFLOW_CONN_HTTP_PACING", json.dumps({"conn_type": "http", "host": "example.invalid"})
    )
    with pytest.raises(GistConfigError, match="'postgres' or 'sqlite'"):
        shared_windows("http_pacing")


def test_a_sqlite_pacing_connection_opens_the_table_through_its_hook(monkeypatch, tmp_path, clock):
    from airflow_provider_gist.hooks.gist import shared_windows

    db = tmp_path / "via-hook.db"
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PACING", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    windows = shared_windows("gist_pacing")
    try:
        assert windows.dialect == "sqlite"
        assert pacer(windows).delay() == 0.0
        assert windows.read(SCOPE, "analyze") is not None
    finally:
        windows.close()


def test_concurrent_reservations_of_two_processes_never_exceed_the_budget(any_windows):
    """Real threads racing on one row: the row lock (BEGIN IMMEDIATE) lets exactly the budget through."""
    import threading

    a, b = pacer(any_windows()), pacer(any_windows())
    learn(a, remaining=40, reset=NOW + 10, limit=40)
    granted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def spend(p: SharedRateLimitPacer) -> None:
        start.wait()
        for _ in range(5):
            ok = p.delay() == 0.0
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=spend, args=(p,)) for p in (a, b) * 8]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(granted) == 80
    assert granted.count(True) == 40


def test_a_postgres_store_that_refuses_connections_paces_in_process(monkeypatch, caplog, clock):
    """A real driver error (nothing listens on the port): the call still goes, one warning."""
    import socket

    from airflow_provider_gist.hooks.gist import shared_windows

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_PACING_DOWN",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": port,
                "login": "u",
                "password": "pw-5ecret",
            }
        ),
    )
    windows = shared_windows("gist_pacing_down")
    windows.clock = clock
    a = pacer(windows)
    with caplog.at_level(logging.WARNING):
        assert a.delay() == 0.0
        a.observe(headers(0, NOW + 10), 200)
        assert a.delay() == pytest.approx(10, abs=0.05)
    assert "pacing store connection 'gist_pacing_down' did not answer" in caplog.text
    assert "pw-5ecret" not in caplog.text
    windows.close()


def test_a_hook_shares_its_windows_when_the_connection_names_a_pacing_store(monkeypatch, tmp_path):
    from airflow_provider_gist.hooks.gist import GistHook
    from tests.conftest import twelvelabs_conn_json

    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_PACING", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json("https://api.example.com:8443/proxy", pacing_conn_id="gist_pacing"),
    )
    hook = GistHook()
    assert hook.pacing_scope == "twelvelabs_default https://api.example.com:8443/proxy"
    assert isinstance(hook._pacer_for("POST", "analyze"), SharedRateLimitPacer)
    first = hook.pacers.shared
    assert first is not None
    hook.close()  # the store's connection and thread go with the hook's session...
    assert hook.pacers.shared is None
    assert isinstance(hook._pacer_for("POST", "analyze"), SharedRateLimitPacer)  # ...and come back
    assert hook.pacers.shared is not first
    hook.close()

    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json("https://api.example.com"))
    plain = GistHook()
    assert not isinstance(plain._pacer_for("POST", "analyze"), SharedRateLimitPacer)  # the default
    assert plain.pacers.shared is None
