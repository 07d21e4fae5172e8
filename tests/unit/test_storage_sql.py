"""SqlGistStore specifics: default file, connections, table names, stored representation, secrets."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_gist.errors import GistConfigError, GistValidationError
from airflow_provider_gist.storage import SqlGistStore
from tests.helpers.postgres import (
    airflow_conn_json,
    postgres_uri,  # noqa: F401  (session fixture)
)
from tests.helpers.storage_samples import NASTY, make_gist
from tests.helpers.storage_samples import logs as _logs


def test_default_is_sqlite_file_under_airflow_home(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "af home?#x"  # characters that would break a naive sqlite URI
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    store = SqlGistStore()
    assert store.db_path == home / "gists.db"
    store.put_many([make_gist()])
    assert (home / "gists.db").is_file()
    assert not any(p.name.startswith("gists.db") for p in tmp_path.iterdir())
    assert store.location == f"{home / 'gists.db'} (table video_gists)"
    # A second store (another process, e.g. the web server) sees the same data, no connection needed.
    assert SqlGistStore().count() == 1


def test_airflow_home_defaults_to_home_airflow(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert SqlGistStore().db_path == tmp_path / "airflow" / "gists.db"
    monkeypatch.setenv("AIRFLOW_HOME", "$HOME/elsewhere")
    assert SqlGistStore().db_path == tmp_path / "elsewhere" / "gists.db"


@pytest.mark.parametrize(
    "table",
    ["video_gists; DROP TABLE x", "public.video_gists", '"quoted"', "1abc", "", "a b", "t-1", "x" * 64],
)
def test_table_name_must_be_plain_identifier(table: str) -> None:
    with pytest.raises(GistValidationError, match="plain identifier"):
        SqlGistStore(table=table)


def test_custom_table(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    custom = SqlGistStore(table="Gists_2")
    custom.put_many([make_gist()])
    assert custom.count() == 1
    assert SqlGistStore().count() == 0  # default table untouched


def test_connection_that_is_not_sql_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_DB", json.dumps({"conn_type": "http", "host": "example.invalid"}))
    with pytest.raises(GistConfigError, match=r"'not_a_db'.*not a SQL database"):
        SqlGistStore("not_a_db").count()


def test_missing_connection_is_a_config_error() -> None:
    with pytest.raises(GistConfigError, match="'no_such_conn_xyz'"):
        SqlGistStore("no_such_conn_xyz").count()


def test_constructor_does_no_io(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "never"))
    SqlGistStore()
    SqlGistStore("no_such_conn_xyz")
    assert not (tmp_path / "never").exists()


def test_json_columns_are_utf8_text_not_escaped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    store = SqlGistStore()
    store.put_many([make_gist("vid1", None, topics=["Fishing 🎣", "Café"], hashtags=["Ünïcode"])])
    row = store.hook.get_first("SELECT topics, hashtags, types, index_id, output_tokens FROM video_gists")
    assert row[0] == '["Fishing 🎣","Café"]'
    assert row[1] == '["Ünïcode"]'
    assert json.loads(row[2]) == ["title", "topic", "hashtag"]
    assert row[3] == ""  # "no index" is stored as '' so the primary key works
    assert row[4] == 87
    assert isinstance(row[4], int)


@pytest.mark.postgres
def test_postgres_password_never_in_location_logs_or_errors(
    postgres_uri_fixture, monkeypatch, caplog, capfd
) -> None:
    uri, password = postgres_uri_fixture
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_SECRET", airflow_conn_json(uri, password=password))
    store = SqlGistStore("gist_pg_secret", table="secret_check")
    try:
        store.put_many([make_gist(title=NASTY[1])])
        assert store.location == "connection gist_pg_secret (table secret_check)"
        assert store.get("65ef0a1b2c3d4e5f60718293", "6298d673f1090f1100476d4c") is not None
        with pytest.raises(Exception, match="no_such_table_here") as err:  # a database error on purpose
            store.hook.run("SELECT * FROM no_such_table_here")
        assert password not in str(err.value)
        assert password not in _logs(caplog, capfd)
    finally:
        store.hook.run("DROP TABLE IF EXISTS secret_check")


@pytest.fixture
def postgres_uri_fixture(request) -> tuple[str, str]:
    return request.getfixturevalue("postgres_uri"), "pg-pw-must-not-leak-42"


@pytest.mark.postgres
def test_postgres_upsert_keeps_the_newer_gist(postgres_uri_fixture, monkeypatch) -> None:
    """One ON CONFLICT statement whose WHERE lets only a newer gist through."""
    uri, _ = postgres_uri_fixture
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_UPSERT", airflow_conn_json(uri))
    store = SqlGistStore("gist_pg_upsert", table="upsert_check")
    try:
        store.put_many([make_gist()])
        store.put_many([make_gist(title="v2", generated_at="2026-11-27T00:00:00Z")])
        store.put_many([make_gist(title="stale")])
        rows = store.hook.get_records("SELECT title FROM upsert_check")
        assert rows == [("v2",)]
    finally:
        store.hook.run("DROP TABLE IF EXISTS upsert_check")


#: The table as the first release created it: no dag_id, no order columns.
_OLD_DDL = """CREATE TABLE {table} (
    index_id TEXT NOT NULL, video_ref TEXT NOT NULL, video_ref_type TEXT NOT NULL,
    generation_id TEXT NOT NULL, title TEXT, topics TEXT, hashtags TEXT, model TEXT NOT NULL,
    types TEXT NOT NULL, prompt_version TEXT NOT NULL, source_updated_at TEXT,
    generated_at TEXT NOT NULL, output_tokens INTEGER NOT NULL, input_tokens INTEGER,
    stored_at TEXT NOT NULL, PRIMARY KEY (index_id, video_ref))"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_table(request, tmp_path: Path, monkeypatch) -> Iterator[SqlGistStore]:
    """A store whose table was created by the first release, holding one row."""
    if request.param == "sqlite":
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
        store = SqlGistStore(table="old_gists")
    else:
        monkeypatch.setenv(
            "AIRFLOW_CONN_GIST_PG_OLD", airflow_conn_json(request.getfixturevalue("postgres_uri"))
        )
        store = SqlGistStore("gist_pg_old", table="old_gists")
    ph = store.hook.placeholder
    store.hook.run(_OLD_DDL.format(table="old_gists"))
    store.hook.run(
        f"INSERT INTO old_gists VALUES ({', '.join([ph] * 15)})",
        parameters=(
            "65ef0a1b2c3d4e5f60718293",
            "vid1",
            "asset_id",
            "gen-old",
            "Stored before the upgrade",
            None,
            None,
            "pegasus1.2",
            '["title"]',
            "gist-v1",
            None,
            "2026-11-26T15:40:00Z",
            5,
            None,
            "2026-11-26T15:41:00+00:00",
        ),
    )
    yield store
    store.hook.run("DROP TABLE IF EXISTS old_gists")


def test_an_older_table_gets_the_new_columns_and_its_rows_keep_their_order(old_table: SqlGistStore) -> None:
    from airflow_provider_gist.plugins.app import ReadOnlyGistStore

    # The gist view reads the old table as it is (no dag_id: every row belongs to no DAG).
    view = ReadOnlyGistStore(old_table.conn_id, table="old_gists")
    (before,) = view.list_gists()
    assert before["title"] == "Stored before the upgrade" and before["dag_id"] is None
    assert view.list_gists(dag_ids={"some_dag"}) == []
    assert len(view.list_gists(dag_ids={None})) == 1
    assert {"dag_id", "generated_utc"}.isdisjoint(view.existing_columns())  # the view changed nothing

    # The first write migrates: the row is backfilled, so an older gist still cannot replace it.
    old_table.dag_id = "gist_manual"
    assert (
        old_table.put_many([make_gist("vid1", title="Older", generated_at="2026-11-26T15:00:00+00:00")]) == 0
    )
    assert {"dag_id", "generated_utc", "source_updated_utc"} <= old_table.existing_columns()
    assert old_table.get("65ef0a1b2c3d4e5f60718293", "vid1")["title"] == "Stored before the upgrade"  # type: ignore[index]
    assert old_table.put_many([make_gist("vid1", title="Newer", generated_at="2026-11-27T00:00:00Z")]) == 1
    got = old_table.get("65ef0a1b2c3d4e5f60718293", "vid1")
    assert got is not None and got["title"] == "Newer" and got["dag_id"] == "gist_manual"
    # a second store instance (another worker) finds everything in place
    assert SqlGistStore(old_table.conn_id, table="old_gists").count() == 1


@pytest.mark.postgres
def test_two_postgres_writers_of_the_same_videos_cannot_deadlock(postgres_uri_fixture, monkeypatch) -> None:
    """Writers lock rows in key order, whatever order their gists came in.

    A trigger slows every row write down, so the two transactions overlap: in arrival order,
    writer A would lock vid1 then wait for vid2 while writer B locks vid2 and waits for vid1,
    and PostgreSQL would abort one of them ("deadlock detected"). Both must succeed, and the
    store must end with the newer gist of each video.
    """
    uri, _ = postgres_uri_fixture
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_RACE", airflow_conn_json(uri))
    setup = SqlGistStore("gist_pg_race", table="race_gists")
    setup.ensure_table()
    setup.hook.run(
        [
            "CREATE OR REPLACE FUNCTION gist_slow_row() RETURNS trigger AS "
            "$$ BEGIN PERFORM pg_sleep(0.4); RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER race_gists_slow BEFORE INSERT OR UPDATE ON race_gists "
            "FOR EACH ROW EXECUTE FUNCTION gist_slow_row()",
        ]
    )
    refs = [f"vid{n}" for n in range(1, 5)]
    batches = {
        "a": [make_gist(ref, title=f"A {ref}", generated_at="2026-11-27T00:00:00Z") for ref in refs],
        "b": [
            make_gist(ref, title=f"B {ref}", generated_at="2026-11-28T00:00:00Z") for ref in reversed(refs)
        ],
    }
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(name: str) -> None:
        store = SqlGistStore("gist_pg_race", table="race_gists")
        store.ensure_table()
        start.wait()
        try:
            store.put_many(batches[name])
        except BaseException as err:  # reported below, with the other writer's outcome
            errors.append(err)

    try:
        threads = [threading.Thread(target=write, args=(name,)) for name in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert {g["title"] for g in setup.list_gists()} == {f"B {ref}" for ref in refs}
    finally:
        setup.hook.run(["DROP TABLE IF EXISTS race_gists", "DROP FUNCTION IF EXISTS gist_slow_row()"])
