"""The main example DAG end to end against the emulator, with dag.test() (deferrals in-process)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from airflow_provider_gist.storage.sql import SqlGistStore
from tests.conftest import TEST_API_KEY
from tests.helpers.dags import load_dag, run_dag
from tests.helpers.postgres import airflow_conn_json, postgres_uri  # noqa: F401  (session fixture)

pytestmark = pytest.mark.integration

URLS = [
    "https://videos.example.com/sunrise_harbour_fishing.mp4",
    "https://videos.example.com/mountain_trail_running.mp4",
]


def stats(emu) -> dict[str, Any]:
    return requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()


def calls(emu, op: str) -> int:
    return stats(emu)["calls"].get(op, 0)


def states(run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in run.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


@pytest.fixture
def store(tmp_path, monkeypatch) -> SqlGistStore:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # the embedded SQLite default lives here
    return SqlGistStore()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request, store, monkeypatch) -> tuple[SqlGistStore, str | None]:
    """The embedded SQLite default, or PostgreSQL through a connection: (store, store_conn_id).

    The DAG names no store: it writes to the connection ``gist_store_default`` when set.
    """
    if request.param == "sqlite":
        return store, None
    uri = request.getfixturevalue("postgres_uri")
    monkeypatch.setenv("AIRFLOW_CONN_GIST_STORE_DEFAULT", airflow_conn_json(uri))
    pg = SqlGistStore(conn_id="gist_store_default")
    pg.ensure_table()
    with pg.hook.get_conn() as conn, conn.cursor() as cur:  # fresh table per test
        cur.execute(f"DELETE FROM {pg.table}")
        conn.commit()
    return pg, "gist_store_default"


def test_dag_uploads_indexes_waits_generates_and_stores(airflow_db, tl_conn, emu, any_store):
    store, _ = any_store
    dag = load_dag("gist_index_and_generate")
    conf = {"video_urls": URLS, "index_name": "it-demo", "types": ["title", "hashtag"]}
    run = run_dag(dag, conf=conf)
    assert str(run.state) == "success", states(run)
    rows = store.list_gists()
    assert len(rows) == 2
    for row in rows:
        assert row["title"]
        assert row["hashtags"]
        assert row.get("topics") is None  # not requested, so not generated
        assert row["index_id"] and row["video_ref_type"] == "asset_id"
        assert row["dag_id"] == "gist_index_and_generate"  # who may read it in the gist view
        assert TEST_API_KEY not in json.dumps(row)
    assert {r["title"] for r in rows} == {"Sunrise Harbour Fishing", "Mountain Trail Running"}
    # the gists came from analysis tasks waited for in the triggerer, one per video, no sync call
    assert calls(emu, "POST /analyze/tasks") == 2
    assert calls(emu, "POST /analyze") == 0
    assert stats(emu)["created"]["analysis_tasks"] == 2

    # A rerun of the whole DAG reuses the uploads and replaces the rows: still one per video.
    again = run_dag(dag, conf=conf)
    assert str(again.state) == "success"
    assert store.count() == 2
    assert calls(emu, "POST /assets") == 2
    assert calls(emu, "POST /indexes/{index-id}/indexed-assets") == 2


def test_the_trigger_conf_cannot_choose_where_gists_are_written(
    airflow_db, tl_conn, emu, store, tmp_path, monkeypatch
):
    """Anyone who may trigger the DAG must not be able to point its writes at another database."""
    victim = tmp_path / "victim.db"
    monkeypatch.setenv("AIRFLOW_CONN_VICTIM_DB", json.dumps({"conn_type": "sqlite", "host": str(victim)}))
    conf = {"video_urls": URLS[:1], "index_name": "it-conf", "types": ["title"], "store_conn_id": "victim_db"}
    run = run_dag(load_dag("gist_index_and_generate"), conf=conf)
    assert str(run.state) == "success", states(run)
    assert store.count() == 1  # the deployment's store (the Variable; here unset: the embedded file)
    assert not victim.exists()


def test_one_failing_video_does_not_lose_the_others(airflow_db, tl_conn, emu, store):
    dag = load_dag("gist_index_and_generate")
    urls = [*URLS, "https://videos.example.com/corrupt_upload.mp4"]
    run = run_dag(dag, conf={"video_urls": urls, "index_name": "it-partial", "types": ["title"]})
    assert str(run.state) == "failed"
    assert {r["title"] for r in store.list_gists()} == {"Sunrise Harbour Fishing", "Mountain Trail Running"}


def test_bad_url_is_refused_by_the_params_form_naming_the_field(airflow_db, tl_conn, emu):
    from airflow.sdk.exceptions import ParamValidationError

    dag = load_dag("gist_index_and_generate")
    with pytest.raises(ParamValidationError, match="video_urls"):
        run_dag(dag, conf={"video_urls": ["ftp://videos.example.com/a.mp4"], "index_name": "x"})
    assert sum(stats(emu)["calls"].values()) == 0


def test_input_the_form_cannot_check_fails_the_first_task_once(airflow_db, tl_conn, emu, store):
    dag = load_dag("gist_index_and_generate")
    run = run_dag(dag, conf={"video_urls": URLS, "index_name": "bad\nname"})
    assert str(run.state) == "failed"
    assert states(run)["videos"] == ["failed"]  # refused once, not retried: bad input is deterministic
    assert sum(stats(emu)["calls"].values()) == 0
