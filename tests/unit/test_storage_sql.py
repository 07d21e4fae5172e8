"""SqlGistStore specifics: default file, connections, table names, stored representation, secrets."""

from __future__ import annotations

import json
import logging
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
def test_postgres_upsert_uses_on_conflict(postgres_uri_fixture, monkeypatch) -> None:
    """common.sql's PostgreSQL dialect turns replace=True into ON CONFLICT on our primary key."""
    uri, _ = postgres_uri_fixture
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_UPSERT", airflow_conn_json(uri))
    store = SqlGistStore("gist_pg_upsert", table="upsert_check")
    try:
        sql = store.hook._generate_insert_sql(
            store.table,
            ("x",) * 15,
            ["index_id", "video_ref", "title"],
            True,
            replace_index=["index_id", "video_ref"],
        )
        assert "ON CONFLICT (index_id, video_ref) DO UPDATE SET title = excluded.title" in sql
        store.put_many([make_gist()])
        store.put_many([make_gist(title="v2")])
        rows = store.hook.get_records("SELECT title FROM upsert_check")
        assert rows == [("v2",)]
    finally:
        store.hook.run("DROP TABLE IF EXISTS upsert_check")
