"""Refresh runs: one small row per catalog refresh task, next to the gists in the same SQL store.

The catalog refresh writes it (:mod:`airflow_provider_gist.refresh.record`): a ``running`` row
with its progress while it works, then what it did (planned, generated, stored, failed,
skipped, deferred, tokens) and what it left stale. The gist view reads the latest row per index
to say when the index was last refreshed, by which DAG run, and how many of its gists are stale.

The table is ``<gist table>_runs``, keyed by the task instance (``dag_id, run_id, task_id,
map_index``): a retry replaces the row of the try before it. JSON columns are text, times ISO
8601 UTC text, so the same DDL and queries run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_gist.errors import GistValidationError

if TYPE_CHECKING:
    from airflow_provider_gist.storage.sql import SqlGistStore

#: Suffix of the runs table's name (after the gist table's name).
RUNS_SUFFIX = "_runs"
#: Run statuses: still working, finished (failures of single videos included), stopped early.
STATUSES = ("running", "success", "failed")
#: Columns in table order; ``reasons``, ``left_by_reason``, ``types`` and ``progress`` hold JSON.
RUN_COLUMNS: tuple[str, ...] = (
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "index_id",
    "status",
    "started_at",
    "updated_at",
    "finished_at",
    "model",
    "prompt_version",
    "types",
    "listed",
    "skipped",
    "planned",
    "deferred",
    "generated",
    "stored",
    "failed",
    "not_attempted",
    "input_tokens",
    "output_tokens",
    "reasons",
    "left_by_reason",
    "progress",
    "error",
)
_KEY = ("dag_id", "run_id", "task_id", "map_index")
_JSON = ("types", "reasons", "left_by_reason", "progress")
_INTS = (
    "map_index",
    "try_number",
    "listed",
    "skipped",
    "planned",
    "deferred",
    "generated",
    "stored",
    "failed",
    "not_attempted",
    "input_tokens",
    "output_tokens",
)
#: The reasons a stored gist is stale (not ``new``: a video without a gist is missing, not stale).
STALE_REASONS = ("source_changed", "types_changed", "model_changed", "prompt_changed")


def runs_table(gist_table: str) -> str:
    """The runs table of a gist table (a plain identifier, at most 63 characters)."""
    from airflow_provider_gist.storage.sql import validate_table_name

    return validate_table_name(gist_table[: 63 - len(RUNS_SUFFIX)] + RUNS_SUFFIX)


def _ddl(table: str) -> list[str]:
    ints, required = set(_INTS), {*_KEY, "index_id", "status", "started_at"}
    columns = ",\n    ".join(
        f"{c} {'INTEGER' if c in ints else 'TEXT'}{' NOT NULL' if c in required else ''}" for c in RUN_COLUMNS
    )
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (\n    {columns},\n    PRIMARY KEY ({', '.join(_KEY)})\n)",
        f"CREATE INDEX IF NOT EXISTS {table}_started ON {table} (started_at)",
    ]


def ensure_runs_table(store: SqlGistStore) -> str:
    """Create the runs table of ``store`` if missing (writers only); return its name."""
    table = runs_table(store.table)
    from airflow_provider_gist.storage.sql import run_ddl

    run_ddl(store.hook, _ddl(table))
    return table


def write_run(store: SqlGistStore, row: Mapping[str, Any], *, create: bool = True) -> None:
    """Insert or replace the row of one refresh task (``row`` has :data:`RUN_COLUMNS` keys).

    ``create=False`` skips the ``CREATE TABLE IF NOT EXISTS`` (a writer that made it already).
    """
    if row.get("status") not in STATUSES:
        raise GistValidationError(f"status must be one of {', '.join(STATUSES)}, got {row.get('status')!r}")
    table = ensure_runs_table(store) if create else runs_table(store.table)
    ph = store.hook.placeholder
    values = tuple(
        json.dumps(row.get(c), ensure_ascii=False, separators=(",", ":"))
        if c in _JSON and row.get(c) is not None
        else row.get(c)
        for c in RUN_COLUMNS
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS if c not in _KEY)
    sql = (
        f"INSERT INTO {table} ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join([ph] * len(RUN_COLUMNS))}) "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {updates}"
    )
    conn = store.hook.get_conn()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, values)
        cursor.close()
        conn.commit()
    finally:
        conn.close()


def _decode(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip(RUN_COLUMNS, row, strict=True))
    for column in _JSON:
        run[column] = json.loads(run[column]) if run[column] else None
    for column in _INTS:
        run[column] = None if run[column] is None else int(run[column])
    return run


def stale_counts(run: Mapping[str, Any]) -> dict[str, int] | None:
    """``{reason: gists}`` the run left stale (source changed, other types/model/prompt), or
    ``None`` when the run could not tell (a batch refresh, or a run still going)."""
    left = run.get("left_by_reason")
    if not isinstance(left, Mapping):
        return None
    return {reason: int(left.get(reason) or 0) for reason in STALE_REASONS}


def latest_runs(
    store: SqlGistStore, *, dag_ids: Collection[str | None] | None = None, limit: int = 500
) -> dict[str | None, dict[str, Any]]:
    """The latest run row of each index (by ``started_at``), among the ``limit`` latest rows of
    the DAGs in ``dag_ids`` (``None``: every DAG). No table yet: ``{}``."""
    table = runs_table(store.table)
    ph = store.hook.placeholder
    where, params = "", []
    if dag_ids is not None:
        named = sorted(d for d in dag_ids if d)
        if not named:
            return {}  # a run row always names its DAG
        where = f" WHERE dag_id IN ({', '.join([ph] * len(named))})"
        params = named
    try:
        rows = store.hook.get_records(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM {table}{where} ORDER BY started_at DESC LIMIT {ph}",
            parameters=(*params, limit),
        )
    except Exception as err:
        if _is_missing_table(err):
            return {}
        raise
    latest: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        run = _decode(row)
        latest.setdefault(run["index_id"] or None, run)
    return latest


def _is_missing_table(err: Exception) -> bool:
    # sqlite3.OperationalError "no such table"; PostgreSQL undefined_table (SQLSTATE 42P01) as
    # psycopg (sqlstate) and psycopg2 (pgcode) name it.
    code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    return code == "42P01" or "no such table" in str(err).lower()
