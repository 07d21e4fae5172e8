"""Gists in a SQL table, through common.sql's :class:`DbApiHook` (SQLite by default, or PostgreSQL).

Why the hook's own machinery: ``insert_rows(..., replace=True, replace_index=...)`` already turns
into ``REPLACE INTO`` on SQLite and ``INSERT ... ON CONFLICT (...) DO UPDATE`` on PostgreSQL
(the postgres provider's dialect), with driver placeholders, so every value is a bound parameter.
Only the table name is ever put into SQL text, and it is checked to be a plain identifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.providers.sqlite.hooks.sqlite import SqliteHook
from airflow.sdk import BaseHook, Connection

from airflow_provider_gist.errors import GistConfigError, GistValidationError
from airflow_provider_gist.storage import DEFAULT_TABLE
from airflow_provider_gist.storage.base import (
    COLUMNS,
    KEY_COLUMNS,
    NO_INDEX,
    check_page,
    fingerprint,
    gist_to_row,
    normalize_gists,
    row_to_gist,
    stored_at_now,
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
    PRIMARY KEY (index_id, video_ref)
)""",
        f"CREATE INDEX IF NOT EXISTS {table}_generated_at ON {table} (generated_at)",
    ]


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


class SqlGistStore:
    """Gists in one SQL table, one row per ``(index_id, video_ref)``, replaced on rerun.

    ``conn_id=None`` uses the embedded SQLite file ``$AIRFLOW_HOME/gists.db`` (no connection,
    no setup); otherwise the connection must resolve to a :class:`DbApiHook` (``sqlite`` or
    ``postgres``). The table is created on first use. Reads return gist dicts (JSON decoded)
    with an extra ``stored_at``. Needs no task context: usable from workers and web processes.
    """

    def __init__(self, conn_id: str | None = None, table: str = DEFAULT_TABLE) -> None:
        self.conn_id = conn_id or None
        self.table = validate_table_name(table)
        self._hook: DbApiHook | None = None
        self._table_ready = False

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
        try:
            conn = BaseHook.get_connection(self.conn_id)
        except Exception as err:
            # The error text of a lookup never carries the URI; keep only its type for the reason.
            raise GistConfigError(
                f"gist store connection {self.conn_id!r} could not be loaded ({type(err).__name__})"
            ) from None
        try:
            hook = conn.get_hook()
        except Exception as err:
            raise GistConfigError(
                f"gist store connection {self.conn_id!r} (type {conn.conn_type!r}) has no usable hook "
                f"({type(err).__name__}): use a 'sqlite' or 'postgres' connection"
            ) from None
        if not isinstance(hook, DbApiHook):
            raise GistConfigError(
                f"gist store connection {self.conn_id!r} has type {conn.conn_type!r}, which is not a SQL "
                "database (DbApiHook): use a 'sqlite' or 'postgres' connection"
            )
        hook.log_sql = False
        if hook.dialect_name not in TESTED_DIALECTS:
            hook.log.warning(
                "gist store connection %r uses dialect %r; only %s are tested",
                self.conn_id,
                hook.dialect_name,
                ", ".join(TESTED_DIALECTS),
            )
        return hook

    def ensure_table(self) -> None:
        """Create the table and its index if missing (idempotent; once per store instance)."""
        if self._table_ready:
            return
        statements = _ddl(self.table)
        if isinstance(self.hook, _EmbeddedSqliteHook):
            # WAL: a web process reading the file does not block a task writing it (persistent).
            statements.insert(0, "PRAGMA journal_mode=WAL")
        self.hook.run(statements)
        self._table_ready = True

    # -- writes ----------------------------------------------------------------------------------

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        """Validate all gists, then upsert them in ONE transaction; return the number of rows written.

        A rerun replaces the row of a video, never duplicates it. If any gist is invalid nothing
        is written (:class:`GistValidationError`); if the database fails mid-batch the whole
        batch is rolled back (the connection closes without commit) and the error propagates.
        """
        clean = normalize_gists(gists)
        if not clean:
            return 0
        stored_at = stored_at_now()
        rows = [gist_to_row(gist, stored_at) for gist in clean]
        self.ensure_table()
        self.hook.insert_rows(
            self.table,
            rows,
            target_fields=list(COLUMNS),
            replace=True,
            replace_index=list(KEY_COLUMNS),
            # One chunk = one transaction. Not commit_every=0 ("all in one transaction" per the
            # docstring): on the executemany path common.sql 2.4 chunks with
            # more_itertools.chunked(rows, 0), which yields nothing, so no row would be written
            # and no error raised.
            commit_every=len(rows),
            executemany=True,
        )
        return len(rows)

    def put(self, gist: Mapping[str, Any]) -> int:
        """Store one gist (see :meth:`put_many`)."""
        return self.put_many([gist])

    # -- reads -----------------------------------------------------------------------------------

    def _select(self, where: list[str], tail: str = "") -> str:
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table}"
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
        self, *, index_id: str | None = None, text: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Stored gists, newest ``generated_at`` first.

        ``index_id=None`` means all indexes. ``text`` is a case-insensitive substring of the title,
        a topic or a hashtag (``"#tag"`` searches hashtags only). Case folding is the database's
        ``LOWER()``: on SQLite that folds ASCII letters only.
        """
        check_page(limit, offset)
        self.ensure_table()
        ph = self.hook.placeholder
        where: list[str] = []
        params: list[Any] = []
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

    def fingerprints(self, index_id: str | None) -> dict[str, dict[str, Any]]:
        """``{video_ref: {source_updated_at, types, model, prompt_version}}`` for one index.

        ``index_id=None`` is the "no index" partition. One query, no API call: a catalog refresh
        compares these with the videos' current ``updated_at`` to skip unchanged ones.
        """
        self.ensure_table()
        ph = self.hook.placeholder
        rows = self.hook.get_records(self._select([f"index_id = {ph}"]), parameters=(_key(index_id),))
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
