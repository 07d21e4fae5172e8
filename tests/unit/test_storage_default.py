"""The deployment's store: connection gist_store_default, the local default, the distributed error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_gist.errors import GistConfigError
from airflow_provider_gist.storage import make_store
from airflow_provider_gist.storage.default import distributed_executors

DEFAULT_CONN_ENV = "AIRFLOW_CONN_GIST_STORE_DEFAULT"


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv(DEFAULT_CONN_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    return tmp_path


@pytest.mark.parametrize(
    ("setting", "remote"),
    [
        ("LocalExecutor", []),
        ("airflow.executors.local_executor.LocalExecutor", []),
        ("CeleryExecutor", ["CeleryExecutor"]),
        ("LocalExecutor,KubernetesExecutor", ["KubernetesExecutor"]),
        ("fast:LocalExecutor, gpu:my_company.GpuExecutor", ["gpu:my_company.GpuExecutor"]),
        ("edge3.executors.EdgeExecutor", ["edge3.executors.EdgeExecutor"]),
    ],
)
def test_distributed_executors_are_every_executor_but_the_local_ones(setting: str, remote: list[str]) -> None:
    assert distributed_executors(setting) == remote


def test_no_connection_under_local_executor_is_the_embedded_sqlite_file(home: Path) -> None:
    store = make_store(dag_id="d")
    assert store.db_path == home / "gists.db"  # type: ignore[attr-defined]
    objects = make_store("objects")
    assert objects.location.startswith(f"file://{home}")


@pytest.mark.parametrize("executor", ["CeleryExecutor", "KubernetesExecutor", "LocalExecutor,CeleryExecutor"])
@pytest.mark.parametrize("kind", ["sql", "objects"])
def test_no_connection_under_a_distributed_executor_is_a_clear_error(
    home: Path, monkeypatch, executor: str, kind: str
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    with pytest.raises(GistConfigError) as err:
        make_store(kind)
    message = str(err.value)
    assert "no gist store configured" in message
    assert "gist_store_default" in message and "AIRFLOW_CONN_GIST_STORE_DEFAULT" in message
    assert "CeleryExecutor" in message or "KubernetesExecutor" in message
    assert not (home / "gists.db").exists() and not (home / "gists").exists()  # nothing written locally


def test_a_store_the_dag_names_needs_no_default_even_under_celery(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_MY_DB", json.dumps({"conn_type": "sqlite", "host": str(home / "x.db")}))
    assert make_store(sql_conn_id="my_db").location == "connection my_db (table video_gists)"
    assert make_store("objects", object_base=f"file://{home}/o/").location.startswith(f"file://{home}/o")


def test_the_default_connection_is_the_store_under_any_executor(home: Path, monkeypatch) -> None:
    db = home / "shared.db"
    monkeypatch.setenv(
        DEFAULT_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(db), "extra": {"table": "catalog"}})
    )
    for executor in ("LocalExecutor", "CeleryExecutor"):
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
        store = make_store(dag_id="d")
        assert store.location == "connection gist_store_default (table catalog)"
    # A table the DAG names explicitly wins over the connection's.
    assert make_store(table="other").location == "connection gist_store_default (table other)"
    store = make_store(dag_id="d")
    from tests.helpers.storage_samples import make_gist

    assert store.put_many([make_gist()]) == 1
    assert db.is_file() and not (home / "gists.db").exists()


def test_a_default_connection_with_object_base_is_an_object_store(home: Path, monkeypatch) -> None:
    base = f"file://{home}/bucket/gists/"
    monkeypatch.setenv(
        DEFAULT_CONN_ENV, json.dumps({"conn_type": "generic", "extra": {"object_base": base}})
    )
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    store = make_store()  # the default kind "sql" yields to the connection's
    assert type(store).__name__ == "ObjectGistStore"
    assert store.location.startswith(f"file://{home}/bucket/gists")


def test_objects_asked_for_with_a_sql_default_is_refused(home: Path, monkeypatch) -> None:
    monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(home / "s.db")}))
    with pytest.raises(GistConfigError, match="store='objects' names no object_base"):
        make_store("objects")


def test_the_store_operator_fails_before_writing_under_celery_with_no_store(
    home: Path, monkeypatch
) -> None:
    from airflow_provider_gist.operators.store import StoreGistsOperator
    from tests.helpers.storage_samples import make_gist

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    op = StoreGistsOperator(task_id="store", gists=[make_gist()])
    with pytest.raises(GistConfigError, match="gist_store_default"):
        op.execute({"outlet_events": {}})  # type: ignore[arg-type]
    assert not (home / "gists.db").exists()


def test_the_view_reads_the_default_connection_and_sees_it_appear(home: Path, monkeypatch) -> None:
    from airflow_provider_gist.plugins import app as view_app

    monkeypatch.delenv("AIRFLOW__GIST_VIEW__SQL_CONN_ID", raising=False)
    view_app._open_store.cache_clear()
    assert view_app.get_store().db_path == home / "gists.db"
    monkeypatch.setenv(DEFAULT_CONN_ENV, json.dumps({"conn_type": "sqlite", "host": str(home / "d.db")}))
    assert view_app.get_store().conn_id == "gist_store_default"  # no restart needed
    monkeypatch.setenv("AIRFLOW__GIST_VIEW__SQL_CONN_ID", "view_db")
    assert view_app.get_store().conn_id == "view_db"  # the view's own setting wins
    monkeypatch.delenv("AIRFLOW__GIST_VIEW__SQL_CONN_ID")
    monkeypatch.setenv(
        DEFAULT_CONN_ENV, json.dumps({"conn_type": "generic", "extra": {"object_base": f"file://{home}/o/"}})
    )
    with pytest.raises(GistConfigError, match="reads SQL stores only"):
        view_app.get_store()
    view_app._open_store.cache_clear()


def test_the_view_under_celery_with_no_store_says_what_to_configure(home: Path, monkeypatch) -> None:
    from airflow_provider_gist.plugins import app as view_app

    monkeypatch.delenv("AIRFLOW__GIST_VIEW__SQL_CONN_ID", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    with pytest.raises(GistConfigError, match="gist_store_default") as err:
        view_app.get_store()
    assert "gist_store_default" in view_app.store_error(err.value)  # what the page shows
    monkeypatch.setenv("AIRFLOW__GIST_VIEW__SQL_CONN_ID", "view_db")
    assert view_app.get_store().conn_id == "view_db"  # an explicit view store needs no default
