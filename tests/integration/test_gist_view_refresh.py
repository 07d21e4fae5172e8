"""What the catalog refresh tells the gist view: its run rows, stale counts and the runs behind gists.

The refresh DAG runs with ``dag.test()`` against the emulator and stores into a SQLite store of
its own (the connection ``gist_store_default``, which the view reads too); the view is read
over HTTP with an admin token.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_gist.storage import SqlGistStore
from airflow_provider_gist.storage.runs import latest_runs, stale_counts
from tests.helpers.dags import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

INDEX = "it-view-catalog"
CONF: dict[str, Any] = {"index": INDEX, "concurrency": 2}


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Iterator[SqlGistStore]:
    from airflow_provider_gist.plugins import app as view_app

    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_STORE_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "g.db")})
    )
    view_app._open_store.cache_clear()
    yield SqlGistStore("gist_store_default")
    view_app._open_store.cache_clear()


@pytest.fixture
def admin(airflow_db) -> str:
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))


def _view(path: str, token: str) -> str:
    from fastapi.testclient import TestClient

    from airflow_provider_gist.plugins.gist_view import LazyGistViewApp

    with TestClient(LazyGistViewApp(), root_path="/gists") as client:
        resp = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return resp.text


def test_refresh_runs_tell_the_view_what_they_did_and_left_stale(
    tl_conn, emu, store, admin, tmp_path: Path
) -> None:
    from airflow.sdk import DagRunState

    seeded = requests.post(f"{emu.url}/_emulator/seed", json={"index_name": INDEX, "count": 4}, timeout=10)
    seeded.raise_for_status()
    index_id = seeded.json()["index_id"]
    dag = load_dag("gist_catalog_refresh")

    first = run_dag(dag, conf=CONF)
    assert first.state == DagRunState.SUCCESS
    run = latest_runs(store)[index_id]
    assert (run["dag_id"], run["run_id"], run["status"]) == ("gist_catalog_refresh", first.run_id, "success")
    assert (run["planned"], run["generated"], run["stored"], run["failed"]) == (4, 4, 4, 0)
    assert run["reasons"] == {"new": 4} and run["types"] == ["title", "topic", "hashtag"]
    assert run["left_by_reason"]["new"] == 0 and sum(stale_counts(run).values()) == 0
    assert run["progress"] is None and run["finished_at"]

    # Other gist types, one video a run: the plan finds all four stale, one is redone.
    second = run_dag(dag, conf={**CONF, "types": ["title"], "max_videos": 1})
    assert second.state == DagRunState.SUCCESS
    run = latest_runs(store)[index_id]
    assert run["run_id"] == second.run_id
    assert (run["reasons"], run["planned"], run["deferred"], run["stored"]) == ({"types_changed": 4}, 1, 3, 1)
    assert stale_counts(run) == {
        "source_changed": 0,
        "types_changed": 3,
        "model_changed": 0,
        "prompt_changed": 0,
    }

    # the refresh made the view's read indexes
    with sqlite3.connect(tmp_path / "g.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"video_gists_catalog_order", "video_gists_catalog_index"} <= names

    page = _view("/", admin)
    row = page.split(f'<tr data-index="{index_id}">')[1].split("</tr>")[0]
    assert 'data-gists="4"' in row and 'data-stale="3"' in row and "other types 3" in row
    assert f'/dags/gist_catalog_refresh/runs/{_quoted(second.run_id)}"' in row
    assert "planned 1, generated 1, failed 0, skipped 0, deferred 3" in row
    # each card names the run that stored it: one by the second run, three by the first
    cards = page.split("</table>", 1)[1]
    made_by = re.findall(r'class="run-link">gist_catalog_refresh / ([^<]+)</a>', cards)
    assert sorted(made_by) == sorted([first.run_id] * 3 + [second.run_id])


def _quoted(run_id: str) -> str:
    from urllib.parse import quote

    return quote(run_id, safe="")


def test_a_running_refresh_shows_its_progress_and_a_failed_one_its_error(store, admin, airflow_db) -> None:
    from airflow_provider_gist.refresh.record import RunRecorder

    store.ensure_table()
    task = {
        "dag_id": "gist_catalog_refresh",
        "run_id": "manual__1",
        "task_id": "refresh_gists",
        "map_index": -1,
    }
    recorder = RunRecorder(store, task)
    recorder.progress(None, {"done": 1})  # no index yet: nothing to say about one
    assert latest_runs(store) == {}
    recorder.progress(
        "idx1", {"done": 3, "total": 10, "failed": 1, "generated": 2, "stored": 2, "eta_seconds": 20}
    )
    run = latest_runs(store)["idx1"]
    assert run["status"] == "running" and run["progress"]["done"] == 3 and run["stored"] == 2
    assert "running: 3/10 done, 1 failed, ETA 20s" in _view("/", admin)

    recorder.fail("idx1", "AirflowTaskTimeout: Timeout")
    run = latest_runs(store)["idx1"]
    assert (run["status"], run["error"], run["stored"]) == ("failed", "AirflowTaskTimeout: Timeout", 2)
    assert stale_counts(run) is None  # the run could not count them
    assert "AirflowTaskTimeout: Timeout" in _view("/", admin)


def test_recording_never_fails_the_refresh(store, caplog) -> None:
    from airflow_provider_gist.refresh.record import RunRecorder

    store.ensure_table()
    task = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1}
    recorder = RunRecorder(store, task)
    recorder.store = SqlGistStore("no_such_connection")  # every write fails
    recorder.progress("idx1", {"done": 1})
    recorder.progress("idx1", {"done": 2})
    warnings = [r for r in caplog.records if "could not record the refresh run" in r.getMessage()]
    assert len(warnings) == 1  # said once, then quiet
