"""Gists in a SQL table, through common.sql's :class:`DbApiHook` (SQLite by default, or PostgreSQL).

Writes are one ``INSERT ... ON CONFLICT (index_id, video_ref) DO UPDATE ... WHERE <newer>``
per gist, in key order, in one transaction: the same statement on SQLite (3.24+) and
PostgreSQL. The ``WHERE`` makes the database itself keep the newer of two gists
(:func:`~airflow_provider_gist.storage.base.supersedes`), so a stale writer cannot win a race;
the key order means two writers lock rows in the same order and cannot deadlock. Every value
is a bound parameter (the driver's placeholder); only the table name is ever put into SQL text,
and it is checked to be a plain identifier.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.providers.sqlite.hooks.sqlite import SqliteHook
from airflow.sdk import Connection

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.sql_connection import sql_hook
from airflow_provider_gist.storage import DEFAULT_TABLE
from airflow_provider_gist.storage.base import (
    COLUMNS,
    KEY_COLUMNS,
    NO_INDEX,
    ORDER_COLUMNS,
    READ_COLUMNS,
    check_page,
    fingerprint,
    gist_to_row,
    normalize_gists,
    row_to_gist,
    stored_at_now,
    utc_key,
)
from airflow_provider_gist.storage.base import airflow_home as _airflow_home

#: File name of the embedded store under ``$AIRFLOW_HOME``.
DEFAULT_DB_FILE = "gists.db"
EMBEDDED_CONN_ID = "gist_embedded_sqlite"
#: Dialects the DDL and queries are tested on; others get a warning, not a refusal.
TESTED_DIALECTS = ("sqlite", "postgresql")

# Unquoted everywhere (DDL, insert_rows, queries): PostgreSQL folds it the same way each time.
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_table_name(table: object) -> str:
    """Return ``table`` if it is a plain SQL identifier (letters, digits, ``_``; no schema, no quotes)."""
    if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
        shown = table[:80] if isinstance(table, str) else type(table).__name__
        raise GistValidationError(
            f"table {shown!r} is not a plain identifier: use 1-63 characters from A-Z, a-z, 0-9 and '_', "
            "not starting with a digit"
        )
    return table


def _ddl(table: str) -> list[str]:
    # TEXT/INTEGER only: valid, unconstrained-length types on both SQLite and PostgreSQL. Timestamps
    # are ISO 8601 text exactly as the gist carried them (round trip byte-exact, sortable in UTC).
    # No DEFAULTs on NOT NULL columns: SQLite's REPLACE would otherwise silently fill a NULL in.
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
    index_id TEXT NOT NULL,
    video_ref TEXT NOT NULL,
    video_ref_type TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    title TEXT,
    topics TEXT,
    hashtags TEXT,
    model TEXT NOT NULL,
    types TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    source_updated_at TEXT,
    generated_at TEXT NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_tokens INTEGER,
    stored_at TEXT NOT NULL,
    dag_id TEXT,
    generated_utc TEXT,
    source_updated_utc TEXT,
    PRIMARY KEY (index_id, video_ref)
)""",
        f"CREATE INDEX IF NOT EXISTS {table}_generated_at ON {table} (generated_at)",
    ]


#: Columns added after the first release: a table created before them gets them on first use
#: (all nullable, so ``ALTER TABLE ... ADD COLUMN`` works on both databases).
ADDED_COLUMNS: tuple[str, ...] = ("dag_id", *ORDER_COLUMNS)

#: The upsert's guard, ``excluded`` being the incoming row: base.supersedes in SQL. The order
#: columns are fixed-width UTC text, so text comparison is time comparison. A NULL on either
#: side of ``source_updated_utc`` falls back to ``generated_utc``; a row without one (written
#: before the column existed and not yet backfilled) is replaced.
_NEWER = (
    "excluded.source_updated_utc > {t}.source_updated_utc OR ("
    "(excluded.source_updated_utc IS NULL OR {t}.source_updated_utc IS NULL"
    " OR excluded.source_updated_utc = {t}.source_updated_utc)"
    " AND ({t}.generated_utc IS NULL OR excluded.generated_utc > {t}.generated_utc))"
)


def _upsert_sql(table: str, placeholder: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in KEY_COLUMNS)
    return (
        f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {updates} WHERE {_NEWER.format(t=table)}"
    )


class _EmbeddedSqliteHook(SqliteHook):
    """A :class:`SqliteHook` on a fixed file, with no Airflow connection behind it.

    ``SqliteHook.get_uri`` looks the connection up by id; the embedded store has none (it must
    work in a web process and without setup), so the URI comes from the path instead and the
    in-memory connection only answers the hook's questions about extras.
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = path
        connection = Connection(conn_id=EMBEDDED_CONN_ID, conn_type="sqlite", host=str(path))
        super().__init__(sqlite_conn_id=EMBEDDED_CONN_ID, connection=connection, **kwargs)

    def get_uri(self) -> str:
        # SqliteHook.get_conn turns "sqlite:///" into "file:" and opens it with uri=True, so
        # percent-encode: a "?" or "#" in the home directory must not start a query or fragment.
        return "sqlite:///" + quote(str(self.path))


def run_ddl(hook: DbApiHook, statements: list[str]) -> None:
    """Run idempotent ``CREATE ... IF NOT EXISTS`` statements, safe when writers race.

    Two tasks storing their first gists into a fresh PostgreSQL database at once (two Celery
    workers) both pass ``IF NOT EXISTS`` and one fails on a unique violation in the catalog
    (``pg_type_typname_nsp_index``). The objects exist by then, so running the statements again
    succeeds; an error that is not such a race fails again and is raised.
    """
    try:
        hook.run(statements)
    except Exception:
        hook.run(statements)


class SqlGistStore:
    """Gists in one SQL table, one row per ``(index_id, video_ref)``, replaced on rerun.

    ``conn_id=None`` uses the embedded SQLite file ``$AIRFLOW_HOME/gists.db`` (no connection,
    no setup); otherwise the connection must resolve to a :class:`DbApiHook` (``sqlite`` or
    ``postgres``). The table is created on first use. Reads return gist dicts (JSON decoded)
    with an extra ``stored_at``. Needs no task context: usable from workers and web processes.
    """

    def __init__(
        self, conn_id: str | None = None, table: str = DEFAULT_TABLE, *, dag_id: str | None = None
    ) -> None:
        self.conn_id = conn_id or None
        self.table = validate_table_name(table)
        #: stamped on every row this store writes: the view shows a gist to whoever may read its DAG
        self.dag_id = dag_id or None
        self._hook: DbApiHook | None = None
        self._table_ready = False
        #: read columns the table lacks (a read-only reader of a table from before they existed)
        self._missing_columns: frozenset[str] = frozenset()

    # -- connection ------------------------------------------------------------------------------

    @property
    def db_path(self) -> Path | None:
        """The embedded SQLite file, or ``None`` when a connection is used."""
        if self.conn_id is not None:
            return None
        return _airflow_home() / DEFAULT_DB_FILE

    @property
    def location(self) -> str:
        """Where rows go, without secrets: the embedded file path, or the connection id (never its URI)."""
        if self.db_path is not None:
            return f"{self.db_path} (table {self.table})"
        return f"connection {self.conn_id} (table {self.table})"

    @property
    def hook(self) -> DbApiHook:
        """The :class:`DbApiHook` behind the store (built on first use)."""
        if self._hook is None:
            self._hook = self._make_hook()
        return self._hook

    def _make_hook(self) -> DbApiHook:
        # log_sql=False: run() would log every query at INFO with its parameters (noise in task logs).
        if self.conn_id is None:
            path = self.db_path
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            return _EmbeddedSqliteHook(path, log_sql=False)
        hook = sql_hook(self.conn_id, f"gist store connection {self.conn_id!r}")
        if hook.dialect_name not in TESTED_DIALECTS:
            hook.log.warning(
                "gist store connection %r uses dialect %r; only %s are tested",
                self.conn_id,
                hook.dialect_name,
                ", ".join(TESTED_DIALECTS),
            )
        return hook

    def ensure_table(self) -> None:
        """Create the table and its index if missing, or add the columns an older table lacks.

        Idempotent; once per store instance.
        """
        if self._table_ready:
            return
        statements = _ddl(self.table)
        if isinstance(self.hook, _EmbeddedSqliteHook):
            # WAL: a web process reading the file does not block a task writing it (persistent).
            statements.insert(0, "PRAGMA journal_mode=WAL")
        run_ddl(self.hook, statements)
        self._migrate()
        # The gist view's paging walks the catalog indexes (it never creates anything itself):
        # every writer makes them, so pages stay fast at 100,000 rows whoever stored first.
        from airflow_provider_gist.storage.catalog import catalog_index_ddl

        run_ddl(
            self.hook,
            [
                f"CREATE INDEX IF NOT EXISTS {self.table}_dag_id ON {self.table} (dag_id)",
                *catalog_index_ddl(self.table),
            ],
        )
        self._table_ready = True

    def existing_columns(self) -> set[str]:
        """The table's column names (lower case), from an empty ``SELECT``: portable, no catalog query."""
        conn = self.hook.get_conn()
        try:
            cursor = conn.cursor()
            cursor.execute(f"SELECT * FROM {self.table} WHERE 1 = 0")
            names = {str(column[0]).lower() for column in cursor.description or ()}
            cursor.close()
        finally:
            conn.close()
        return names

    def _migrate(self) -> None:
        missing = [c for c in ADDED_COLUMNS if c not in self.existing_columns()]
        for column in missing:
            try:
                self.hook.run(f"ALTER TABLE {self.table} ADD COLUMN {column} TEXT")
            except Exception:
                # Another writer added it first (SQLite has no ADD COLUMN IF NOT EXISTS).
                if column not in self.existing_columns():
                    raise
        if missing:
            self._backfill_order()

    def _backfill_order(self) -> None:
        """Fill the order columns of rows written before they existed, so the guard can use them."""
        ph = self.hook.placeholder
        rows = self.hook.get_records(
            f"SELECT index_id, video_ref, generated_at, source_updated_at FROM {self.table} "
            "WHERE generated_utc IS NULL"
        )
        updates = []
        for index_id, video_ref, generated_at, source_updated_at in rows:
            try:
                updates.append((utc_key(generated_at), utc_key(source_updated_at), index_id, video_ref))
            except (TypeError, ValueError):
                continue  # a stamp this provider did not write: the row stays replaceable
        if updates:
            self._write(
                f"UPDATE {self.table} SET generated_utc = {ph}, source_updated_utc = {ph} "
                f"WHERE index_id = {ph} AND video_ref = {ph} AND generated_utc IS NULL",
                updates,
            )

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """Run ``sql`` once per row in ONE transaction; return how many rows it changed.

        Any failure closes the connection without commit, so none of the rows remain.
        """
        conn = self.hook.get_conn()
        changed = 0
        try:
            cursor = conn.cursor()
            for row in rows:
                cursor.execute(sql, row)
                changed += max(cursor.rowcount, 0)
            cursor.close()
            conn.commit()
        finally:
            conn.close()
        return changed

    # -- writes ----------------------------------------------------------------------------------

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        """Validate all gists, then upsert them in ONE transaction; return the number of rows written.

        A rerun replaces the row of a video, never duplicates it, but only with a newer gist
        (:func:`~airflow_provider_gist.storage.base.supersedes`): an older or equal one is
        skipped and not counted. If any gist is invalid nothing is written
        (:class:`GistValidationError`); if the database fails mid-batch the whole batch is
        rolled back (the connection closes without commit) and the error propagates.
        """
        clean = normalize_gists(gists)
        if not clean:
            return 0
        stored_at = stored_at_now()
        # Key order: two writers of overlapping batches take their row locks in the same order,
        # so on PostgreSQL one waits for the other instead of both waiting for each other.
        rows = sorted(
            (gist_to_row(gist, stored_at, self.dag_id) for gist in clean), key=lambda row: (row[0], row[1])
        )
        self.ensure_table()
        return self._write(_upsert_sql(self.table, self.hook.placeholder), rows)

    def put(self, gist: Mapping[str, Any]) -> int:
        """Store one gist (see :meth:`put_many`)."""
        return self.put_many([gist])

    # -- reads -----------------------------------------------------------------------------------

    def _select(self, where: list[str], tail: str = "") -> str:
        columns = (f"NULL AS {c}" if c in self._missing_columns else c for c in READ_COLUMNS)
        sql = f"SELECT {', '.join(columns)} FROM {self.table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + tail

    def get(self, index_id: str | None, video_ref: str) -> dict[str, Any] | None:
        """The stored gist of one video in one index (``None`` = no index), or ``None``."""
        self.ensure_table()
        ph = self.hook.placeholder
        rows = self.hook.get_records(
            self._select([f"index_id = {ph}", f"video_ref = {ph}"]),
            parameters=(_key(index_id), video_ref),
        )
        return row_to_gist(rows[0]) if rows else None

    def list_gists(
        self,
        *,
        index_id: str | None = None,
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
        dag_ids: Collection[str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored gists, newest ``generated_at`` first.

        ``index_id=None`` means all indexes. ``text`` is a case-insensitive substring of the title,
        a topic or a hashtag (``"#tag"`` searches hashtags only). Case folding is the database's
        ``LOWER()``: on SQLite that folds ASCII letters only. ``dag_ids``: only gists stored by
        these DAGs (``None`` in it: gists stored outside any DAG); ``None``: every gist.
        """
        check_page(limit, offset)
        self.ensure_table()
        ph = self.hook.placeholder
        where: list[str] = []
        params: list[Any] = []
        if dag_ids is not None and "dag_id" in self._missing_columns:
            if None not in dag_ids:  # a table from before dag_id: every row has no DAG
                where.append("1 = 0")
        elif dag_ids is not None:
            named = sorted(d for d in dag_ids if d)
            either = [f"dag_id IN ({', '.join([ph] * len(named))})"] if named else []
            if None in dag_ids:
                either.append("dag_id IS NULL")
            where.append("(" + " OR ".join(either) + ")" if either else "1 = 0")
            params.extend(named)
        if index_id is not None:
            where.append(f"index_id = {ph}")
            params.append(_key(index_id))
        if text:
            needle = text.lower()
            columns: tuple[str, ...] = ("title", "topics", "hashtags")
            if needle.startswith("#"):
                needle, columns = needle[1:], ("hashtags",)
            pattern = "%" + _like_escape(needle) + "%"
            where.append("(" + " OR ".join(f"LOWER({c}) LIKE {ph} ESCAPE '\\'" for c in columns) + ")")
            params.extend([pattern] * len(columns))
        # Ties broken by key so pages are stable.
        tail = f" ORDER BY generated_at DESC, index_id, video_ref LIMIT {ph} OFFSET {ph}"
        params.extend([limit, offset])
        rows = self.hook.get_records(self._select(where, tail), parameters=tuple(params))
        return [row_to_gist(row) for row in rows]

    def stored_dag_ids(self) -> set[str | None]:
        """The DAG ids that stored the gists (``None``: gists stored outside any DAG)."""
        self.ensure_table()
        if "dag_id" in self._missing_columns:
            return {None} if self.count() else set()
        rows = self.hook.get_records(f"SELECT DISTINCT dag_id FROM {self.table}")
        return {row[0] or None for row in rows}

    def fingerprints(
        self, index_id: str | None, video_refs: Collection[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{video_ref: {source_updated_at, types, model, prompt_version}}`` for one index.

        ``index_id=None`` is the "no index" partition. One query, no API call: a catalog refresh
        compares these with the videos' current ``updated_at`` to skip unchanged ones. With
        ``video_refs`` only those rows are read (by primary key), so a refresh can plan one
        listing page at a time.
        """
        self.ensure_table()
        ph = self.hook.placeholder
        where, params = [f"index_id = {ph}"], [_key(index_id)]
        if video_refs is not None:
            refs = sorted(set(video_refs))
            if not refs:
                return {}
            where.append(f"video_ref IN ({', '.join([ph] * len(refs))})")
            params.extend(refs)
        rows = self.hook.get_records(self._select(where), parameters=tuple(params))
        return {gist["video_ref"]: fingerprint(gist) for gist in map(row_to_gist, rows)}

    def count(self, index_id: str | None = None) -> int:
        """Number of stored gists in one index, or in all of them when ``index_id`` is ``None``."""
        self.ensure_table()
        if index_id is None:
            row = self.hook.get_first(f"SELECT COUNT(*) FROM {self.table}")
        else:
            ph = self.hook.placeholder
            row = self.hook.get_first(
                f"SELECT COUNT(*) FROM {self.table} WHERE index_id = {ph}", parameters=(_key(index_id),)
            )
        return int(row[0])


def _key(index_id: str | None) -> str:
    return NO_INDEX if index_id is None else index_id


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
