"""Rate-limit windows in a SQL table every worker reaches: one API budget across processes.

:class:`~airflow_provider_gist.client.pacing.RateLimitPacer` keeps a group's window in one
process. Two task processes (two Celery workers, or two LocalExecutor tasks) spending one key
then each count only their own calls in flight: near a window's end both send what they think
is left, and at every window start both send the whole budget. Here the window is one row per
(budget scope, rate-limit group) that every process reads and changes in short transactions
(``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL) with the same
:class:`~airflow_provider_gist.client.pacing.Window` rules: reserve before a call, observe the
answer's headers after it.

A row holds counts and times only, never the API key or anything derived from it; the scope
is the connection id and the API's host. Reservations of a process that dies before its answer
lapse when their window ends (see ``Window.expires_at``), so a killed worker cannot hold the
budget. If the store cannot be reached, pacing falls back to this process's own window with one
warning, and the store is tried again every :data:`RETRY_SECONDS`: a task never fails because
its pacing store is down.

Airflow-free: the caller passes a ``connect()`` that returns a DB-API connection (the Airflow
hook does it with the pacing connection's ``DbApiHook``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import astuple
from typing import Any, TypeVar

from airflow_provider_gist.client.pacing import MARGIN_SECONDS, Pacer, Window, wake

#: The table of windows (created on first use).
TABLE = "gist_rate_windows"
#: Dialects whose locking is implemented (and tested) here.
DIALECTS = ("sqlite", "postgresql")
#: How long reservations in a window whose end is not known yet may stay unanswered before they
#: lapse, while the window's length is unknown (after two windows it is learned from the
#: server's reset times, and reservations lapse when their window ends).
LEASE_SECONDS = 120.0
#: How long a caller waits for the store before pacing in its own process instead.
STORE_TIMEOUT_SECONDS = 10.0
#: How long after a failure the store is tried again.
RETRY_SECONDS = 30.0
#: How often the threads of one process look at the table while they wait for budget that
#: another process's answers may free (answers of their own process wake them at once).
SHARED_POLL_SECONDS = 0.1

_COLUMNS = (
    "call_limit",
    "remaining",
    "reset_at",
    "closed_at",
    "in_flight",
    "expires_at",
    "window_seconds",
    "last_end",
    "answered",
)
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

T = TypeVar("T")
log = logging.getLogger(__name__)


class PacingStoreDown(Exception):
    """The pacing store did not answer (internal: the pacer then paces in its own process)."""


def _ddl(table: str) -> str:
    # DOUBLE PRECISION: REAL affinity on SQLite, float8 on PostgreSQL (epoch seconds to the µs).
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    scope TEXT NOT NULL,
    rate_group TEXT NOT NULL,
    call_limit INTEGER,
    remaining INTEGER,
    reset_at DOUBLE PRECISION,
    closed_at DOUBLE PRECISION,
    in_flight INTEGER NOT NULL,
    expires_at DOUBLE PRECISION,
    window_seconds DOUBLE PRECISION,
    last_end DOUBLE PRECISION,
    answered INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, rate_group)
)"""


def _row(window: Window) -> tuple[Any, ...]:
    return (
        window.limit,
        window.remaining,
        window.reset_at,
        window.closed_at,
        window.in_flight,
        window.expires_at,
        window.window_seconds,
        window.last_end,
        1 if window.answered else 0,
    )


def _window(row: tuple[Any, ...]) -> Window:
    limit, remaining, reset_at, closed_at, in_flight, expires_at, window_seconds, last_end, answered = row
    return Window(
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        reset_at=None if reset_at is None else float(reset_at),
        closed_at=None if closed_at is None else float(closed_at),
        in_flight=int(in_flight or 0),
        expires_at=None if expires_at is None else float(expires_at),
        window_seconds=None if window_seconds is None else float(window_seconds),
        last_end=None if last_end is None else float(last_end),
        answered=bool(answered),
    )


class SharedWindows:
    """The windows table of one pacing store, reached through one DB-API connection per process.

    Every statement runs on one dedicated thread: a SQLite connection may only be used by the
    thread that opened it, and one connection per process (not per pacing thread) is what a
    PostgreSQL server should see. Callers wait for their transaction at most ``timeout``.

    :param connect: returns a new DB-API connection (called on the store's thread).
    :param dialect: ``sqlite`` or ``postgresql``.
    :param placeholder: the driver's parameter marker (``?`` or ``%s``).
    :param label: how messages name the store (a connection id, never a URI).
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        dialect: str,
        placeholder: str,
        label: str,
        table: str = TABLE,
        clock: Callable[[], float] = time.time,
        timeout: float = STORE_TIMEOUT_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        lease: float = LEASE_SECONDS,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(
                f"{label}: dialect {dialect!r} is not supported for pacing (use {', '.join(DIALECTS)})"
            )
        if not _TABLE_RE.fullmatch(table):
            raise ValueError(f"table {table!r} is not a plain identifier")
        self._connect = connect
        self.dialect = dialect
        self.label = label
        self.table = table
        self.clock = clock
        self.lease = lease
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._ph = placeholder
        self._key = f"scope = {placeholder} AND rate_group = {placeholder}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gist-pacing-store")
        # touched on the store's thread only
        self._conn: Any = None
        self._table_ready = False
        self._rows_ready: set[tuple[str, str]] = set()
        # touched by any thread
        self._state = threading.Lock()
        self._down_until = 0.0
        self._warned = False
        self._closed = False

    # -- health ----------------------------------------------------------------------------------

    def usable(self) -> bool:
        """Whether to ask the store now (not while a recent failure's retry delay runs)."""
        with self._state:
            return not self._closed and time.monotonic() >= self._down_until

    def _failed(self, reason: str) -> None:
        with self._state:
            self._down_until = time.monotonic() + self._retry_seconds
            first, self._warned = not self._warned, True
        if first:
            log.warning(
                "%s did not answer (%s): rate-limit pacing falls back to this process alone; "
                "tasks of other workers are not counted until it answers again (retried every %gs)",
                self.label,
                reason,
                self._retry_seconds,
            )

    # -- transactions ----------------------------------------------------------------------------

    def update(self, scope: str, group: str, change: Callable[[Window, float], T]) -> T:
        """``change(window, now)`` on the row of ``(scope, group)`` in one transaction; its result.

        Raises :class:`PacingStoreDown` (after logging one warning per store) when the store
        fails or does not answer within the timeout.
        """
        if self._closed:
            raise PacingStoreDown("closed")
        try:
            future = self._executor.submit(self._transact, scope, group, change)
            return future.result(timeout=self._timeout)
        except FutureTimeout:
            self._failed(f"no answer within {self._timeout:g}s")
        except Exception as err:  # any driver's error: its text may name hosts, so only its type
            self._failed(type(err).__name__)
        raise PacingStoreDown(self.label)

    def read(self, scope: str, group: str) -> Window | None:
        """The stored window of ``(scope, group)`` without changing it (tests, diagnostics)."""
        future = self._executor.submit(self._read, scope, group)
        return future.result(timeout=self._timeout)

    def close(self) -> None:
        """Close the connection and stop the store's thread (the pacers fall back to their process)."""
        with self._state:
            if self._closed:
                return
            self._closed = True
        self._executor.submit(self._disconnect)
        self._executor.shutdown(wait=False)

    # -- on the store's thread -------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._connect()
            if self.dialect == "sqlite":
                # Transactions are ours (BEGIN IMMEDIATE), not the sqlite3 module's implicit ones.
                conn.isolation_level = None
                conn.execute("PRAGMA busy_timeout = 5000")
                # A rollback journal fsyncs every commit (tens of ms here) and makes two writers
                # wait for each other in the busy handler's sleeps: measured 80x slower than WAL.
                # Losing the last commits in a power cut is harmless for a rate-limit window.
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            else:
                cursor = conn.cursor()
                # A holder that stopped mid-transaction must not hang every worker's next call.
                cursor.execute("SET lock_timeout = '5s'")
                cursor.close()
                conn.commit()
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._rows_ready.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing %s failed", self.label, exc_info=True)

    def _begin(self, cursor: Any) -> None:
        if self.dialect == "sqlite":
            # Take the write lock now: two processes must not both read the same state.
            cursor.execute("BEGIN IMMEDIATE")

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _ensure(self, conn: Any, scope: str, group: str) -> None:
        """The table and the row exist (once per store and row; a row is never locked before)."""
        if not self._table_ready:
            cursor = conn.cursor()
            try:
                self._begin(cursor)
                cursor.execute(_ddl(self.table))
                self._commit(conn)
            except Exception:
                conn.rollback()
                # Two processes creating the table at once: PostgreSQL fails one of them even
                # with IF NOT EXISTS. The table exists then; anything else fails again below.
                cursor.execute(f"SELECT scope FROM {self.table} WHERE 1 = 0")
                self._commit(conn)
            cursor.close()
            self._table_ready = True
        if (scope, group) in self._rows_ready:
            return
        ph = self._ph
        cursor = conn.cursor()
        self._begin(cursor)
        cursor.execute(
            f"INSERT INTO {self.table} (scope, rate_group, in_flight, answered, updated_at) "
            f"VALUES ({ph}, {ph}, 0, 0, {ph}) ON CONFLICT (scope, rate_group) DO NOTHING",
            (scope, group, self.clock()),
        )
        self._commit(conn)
        cursor.close()
        self._rows_ready.add((scope, group))

    def _select(self, lock: bool) -> str:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {self.table} WHERE {self._key}"
        return sql + (" FOR UPDATE" if lock and self.dialect == "postgresql" else "")

    def _transact(self, scope: str, group: str, change: Callable[[Window, float], T]) -> T:
        try:
            conn = self._connection()
            for _ in range(2):
                self._ensure(conn, scope, group)
                cursor = conn.cursor()
                self._begin(cursor)
                cursor.execute(self._select(lock=True), (scope, group))
                row = cursor.fetchone()
                if row is None:  # deleted since we made it (someone cleared the table): again
                    conn.rollback()
                    cursor.close()
                    self._rows_ready.discard((scope, group))
                    continue
                window = _window(tuple(row))
                before = astuple(window)
                now = self.clock()
                result = change(window, now)
                if astuple(window) != before:
                    sets = ", ".join(f"{c} = {self._ph}" for c in (*_COLUMNS, "updated_at"))
                    cursor.execute(
                        f"UPDATE {self.table} SET {sets} WHERE {self._key}",
                        (*_row(window), now, scope, group),
                    )
                self._commit(conn)
                cursor.close()
                return result
            raise RuntimeError(f"the row of {group!r} keeps disappearing from {self.table}")
        except BaseException:
            # Whatever failed, the next transaction starts on a fresh connection.
            if self._conn is not None:
                try:
                    self._conn.rollback()
                except Exception:
                    log.debug("rollback on %s failed", self.label, exc_info=True)
            self._disconnect()
            raise

    def _read(self, scope: str, group: str) -> Window | None:
        conn = self._connection()
        cursor = conn.cursor()
        cursor.execute(self._select(lock=False), (scope, group))
        row = cursor.fetchone()
        cursor.close()
        conn.rollback()
        return None if row is None else _window(tuple(row))

    # -- pacers ----------------------------------------------------------------------------------

    def pacer(self, scope: str, group: str, **kwargs: Any) -> SharedRateLimitPacer:
        """A pacer of ``group`` for the budget named ``scope``, its window kept in this table."""
        return SharedRateLimitPacer(self, scope, group, **kwargs)


class SharedRateLimitPacer(Pacer):
    """A rate-limit group's pacer whose window lives in a :class:`SharedWindows` table.

    The rules are :class:`~airflow_provider_gist.client.pacing.Window`'s, applied inside a
    transaction, plus two for many processes: while nothing is known of the window (the very
    first call of a budget) one call goes and the rest wait for its headers, and reservations
    of a window whose end is unknown lapse (a killed holder never answers). Threads of one
    process do not all ask the table while they wait: after one was told to wait, the others
    wait for an answer of their own process or for :data:`SHARED_POLL_SECONDS`.

    While the store fails, the pacer paces from a window of its own process (today's default).
    """

    def __init__(
        self,
        windows: SharedWindows,
        scope: str,
        group: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        margin: float = MARGIN_SECONDS,
        poll: float = SHARED_POLL_SECONDS,
    ) -> None:
        self._windows = windows
        self.scope = scope
        self.group = group
        self._clock = windows.clock
        self._sleep = sleep
        self._margin = margin
        self._poll = poll
        self._lock = threading.Condition()
        #: this process's own window, used while the store does not answer
        self._local = Window()
        self._limit: int | None = None
        #: Until then the threads of this process do not ask the table (one of them was just told
        #: to wait); and whether that wait is for answers.
        self._quiet_until = 0.0
        self._quiet_for_answers = True

    @property
    def limit(self) -> int | None:
        return self._limit if self._limit is not None else self._local.limit

    def _shared(self, change: Callable[[Window, float], T]) -> tuple[bool, T | None]:
        if not self._windows.usable():
            return False, None
        try:
            return True, self._windows.update(self.scope, self.group, change)
        except PacingStoreDown:
            return False, None

    def _next(self) -> tuple[float, bool]:
        with self._lock:
            now = self._clock()
            if now < self._quiet_until:
                return self._quiet_until - now, self._quiet_for_answers
        lease = self._windows.lease
        margin = self._margin

        def reserve(window: Window, now: float) -> tuple[float, bool, int | None]:
            wait, for_answers = window.next(now, margin, lease, probe=True)
            return wait, for_answers, window.limit

        ok, verdict = self._shared(reserve)
        if ok and verdict is not None:
            wait, for_answers, self._limit = verdict
            if wait > 0:
                with self._lock:
                    self._quiet_until = self._clock() + (min(wait, self._poll) if for_answers else wait)
                    self._quiet_for_answers = for_answers
            return wait, for_answers
        with self._lock:
            return self._local.next(self._clock(), margin)

    def _reserve(self) -> None:
        lease = self._windows.lease
        ok, _ = self._shared(lambda window, now: window.reserve(now, lease))
        if not ok:
            with self._lock:
                self._local.in_flight += 1

    def _await_answers(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait(timeout=timeout)

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        margin = self._margin

        def learn(window: Window, now: float) -> tuple[int | None, int | None]:
            window.observe(headers, status, now, margin)
            return window.free(), window.limit

        ok, learned = self._shared(learn)
        with self._lock:
            if ok and learned is not None:
                free, self._limit = learned
            else:
                self._local.observe(headers, status, self._clock(), margin)
                free = self._local.free()
            if free is None or free > 0:
                self._quiet_until = 0.0  # budget came back: the woken threads ask the table now
            wake(self._lock, free)
