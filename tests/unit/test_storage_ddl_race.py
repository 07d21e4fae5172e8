"""First stores racing on a fresh database: the table and indexes are created once, nobody fails."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_provider_gist.storage.sql import SqlGistStore, run_ddl
from tests.helpers.postgres import airflow_conn_json, postgres_uri  # noqa: F401  (session fixture)
from tests.helpers.storage_samples import make_gist


class FlakyHook:
    """Fails the first ``failures`` runs the way a lost PostgreSQL DDL race does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs: list[list[str]] = []

    def run(self, statements: list[str]) -> None:
        self.runs.append(list(statements))
        if len(self.runs) <= self.failures:
            raise RuntimeError('duplicate key value violates unique constraint "pg_type_typname_nsp_index"')


def test_a_lost_race_is_run_again_once() -> None:
    hook = FlakyHook(failures=1)
    run_ddl(hook, ["CREATE TABLE IF NOT EXISTS t (a TEXT)"])  # type: ignore[arg-type]
    assert len(hook.runs) == 2


def test_an_error_that_is_not_a_race_is_raised() -> None:
    hook = FlakyHook(failures=2)
    with pytest.raises(RuntimeError, match="pg_type_typname_nsp_index"):
        run_ddl(hook, ["CREATE TABLE IF NOT EXISTS t (a TEXT)"])  # type: ignore[arg-type]
    assert len(hook.runs) == 2


@pytest.mark.postgres
def test_workers_storing_their_first_gists_at_once_all_succeed(request, monkeypatch) -> None:
    """Eight writers, each with its own store instance, first-store into fresh tables together."""
    uri = request.getfixturevalue("postgres_uri")
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_RACE", airflow_conn_json(uri))
    tables = [f"race_{n}" for n in range(4)]
    try:
        for table in tables:
            barrier = threading.Barrier(8)
            errors: list[BaseException] = []

            def first_store(n: int, table: str = table, barrier: Any = barrier, errors: Any = errors) -> None:
                store = SqlGistStore("gist_pg_race", table=table)
                barrier.wait()
                try:
                    store.put_many([make_gist(video_ref=f"6298d673f1090f1100476d{n:02d}")])
                except BaseException as err:
                    errors.append(err)

            threads = [threading.Thread(target=first_store, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert SqlGistStore("gist_pg_race", table=table).count() == 8
    finally:
        cleanup = SqlGistStore("gist_pg_race", table="race_0")
        cleanup.hook.run([f"DROP TABLE IF EXISTS {table}" for table in tables])
