"""The catalog refresh against the emulator: the DAG with ``dag.test()``, and the engine directly.

What is checked is what the emulator counted (``/_emulator/stats``) and what the store holds:
unchanged videos cost no analyze call, a changed video is redone, a failing video is reported
while the others are stored, and a run that was killed is finished by the next one without
redoing stored work. No timing is asserted anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_gist.operators.refresh import GistRefresher
from airflow_provider_gist.refresh import CatalogVideo, PlannedVideo, RefreshSummary
from airflow_provider_gist.storage import SqlGistStore
from tests.conftest import REPO, TEST_API_KEY
from tests.helpers.dags import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

INDEX = "it-catalog"
STORE_CONN = "gist_store_default"
#: The refresh DAG's run conf in these tests; a test adds or overrides keys.
CONF: dict[str, Any] = {"index": INDEX, "concurrency": 4}


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> SqlGistStore:
    """A SQLite gist store of its own (a connection), so no other test's gists are seen.

    The DAG names no store: it takes the deployment's, the connection ``gist_store_default``.
    """
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{STORE_CONN.upper()}",
        json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "gists.db")}),
    )
    return SqlGistStore(STORE_CONN)


def seed(emu, count: int) -> dict[str, Any]:
    response = requests.post(
        f"{emu.url}/_emulator/seed", json={"index_name": INDEX, "count": count}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def analyze_calls(emu) -> int:
    stats = requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()
    return stats["calls"].get("POST /analyze", 0)


def clear_stats(emu) -> None:
    requests.delete(f"{emu.url}/_emulator/stats", timeout=5).raise_for_status()


@pytest.fixture
def refresh_dag(airflow_db):
    return load_dag("gist_catalog_refresh")


def task_state(run: Any, task_id: str) -> str:
    return next(str(ti.state) for ti in run.get_task_instances() if ti.task_id == task_id)


def test_the_trigger_conf_cannot_choose_where_gists_are_written(
    refresh_dag, tl_conn, emu, store, tmp_path: Path, monkeypatch
) -> None:
    """The store is the connection gist_store_default, never something from a run's conf."""
    from airflow.sdk import DagRunState

    seed(emu, 2)
    victim = tmp_path / "victim.db"
    monkeypatch.setenv("AIRFLOW_CONN_VICTIM_DB", json.dumps({"conn_type": "sqlite", "host": str(victim)}))
    assert run_dag(refresh_dag, conf={**CONF, "sql_conn_id": "victim_db"}).state == DagRunState.SUCCESS
    assert store.count() == 2
    assert {g["dag_id"] for g in store.list_gists()} == {"gist_catalog_refresh"}
    assert not victim.exists()


def test_dag_refreshes_only_what_changed(refresh_dag, tl_conn, emu, store) -> None:
    from airflow.sdk import DagRunState

    seeded = seed(emu, 12)
    index_id = seeded["index_id"]

    first = run_dag(refresh_dag, conf=CONF)
    assert first.state == DagRunState.SUCCESS
    assert analyze_calls(emu) == 12
    assert store.count(index_id) == 12
    assert task_state(first, "announce") == "success"  # new gists: the asset event fires

    # Unchanged catalog: listing only, not one analyze call, and no asset event.
    clear_stats(emu)
    unchanged = run_dag(refresh_dag, conf=CONF)
    assert unchanged.state == DagRunState.SUCCESS
    assert analyze_calls(emu) == 0
    assert task_state(unchanged, "announce") == "skipped"

    # A metadata edit bumps the video's updated_at: that one video, and only it, is redone.
    changed = seeded["videos"][5]
    before = store.get(index_id, changed["asset_id"])
    assert before is not None
    response = requests.patch(
        f"{emu.base_url}/indexes/{index_id}/indexed-assets/{changed['video_id']}",
        json={"user_metadata": {"season": 2}},
        headers={"x-api-key": TEST_API_KEY},
        timeout=5,
    )
    response.raise_for_status()
    clear_stats(emu)
    assert run_dag(refresh_dag, conf=CONF).state == DagRunState.SUCCESS
    assert analyze_calls(emu) == 1
    after = store.get(index_id, changed["asset_id"])
    assert after is not None
    assert after["source_updated_at"] > before["source_updated_at"]

    # Asking for other gist types regenerates everything once.
    clear_stats(emu)
    assert run_dag(refresh_dag, conf={**CONF, "types": ["title"]}).state == DagRunState.SUCCESS
    assert analyze_calls(emu) == 12
    assert store.get(index_id, changed["asset_id"])["types"] == ["title"]


def test_dag_reports_a_failing_video_and_stores_the_others(refresh_dag, tl_conn, emu, store) -> None:
    from airflow.sdk import DagRunState

    index_id = seed(emu, 8)["index_id"]
    # The next analyze call is refused as a caller error (400): exactly one video fails, whichever.
    rule = {"op": "analyze", "kind": "status", "status": 400, "code": "token_limit_exceeded", "count": 1}
    requests.post(f"{emu.url}/_emulator/faults", json=rule, timeout=5).raise_for_status()

    run = run_dag(refresh_dag, conf=CONF)
    assert run.state == DagRunState.SUCCESS  # default: failures reported, the run succeeds
    assert store.count(index_id) == 7
    summary = _xcom(run, "refresh_gists")
    assert summary["failed"] == 1
    assert summary["failure_kinds"] == {"http_400_token_limit_exceeded": 1}
    assert summary["stored"] == 7

    # Not stored, so the next run retries it, and only it. With fail_on_error a failure fails the run.
    requests.post(f"{emu.url}/_emulator/faults", json=rule, timeout=5).raise_for_status()
    clear_stats(emu)
    assert run_dag(refresh_dag, conf={**CONF, "fail_on_error": True}).state == DagRunState.FAILED
    assert analyze_calls(emu) == 1
    clear_stats(emu)
    assert run_dag(refresh_dag, conf={**CONF, "fail_on_error": True}).state == DagRunState.SUCCESS
    assert analyze_calls(emu) == 1
    assert store.count(index_id) == 8


def _xcom(run, task_id: str) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key="return_value"
        )
        row = session.scalars(query).first()
        assert row is not None
        return XComModel.deserialize_value(row)


def test_a_video_that_does_not_exist_is_reported(tl_conn, emu, store) -> None:
    index_id = seed(emu, 3)["index_id"]
    refresher = GistRefresher(store=store, concurrency=2)
    videos = refresher.list_catalog(index_id)
    missing = CatalogVideo("ffffffffffffffffffffffff", "asset_id", "2026-11-20T10:00:00.000Z")
    todo = [PlannedVideo(v, "new") for v in videos] + [PlannedVideo(missing, "new")]
    summary = RefreshSummary(index_id=index_id, planned=len(todo))
    refresher.generate(index_id, todo, summary)
    assert summary.generated == 3
    assert [(f.video_ref, f.kind) for f in summary.failures] == [("ffffffffffffffffffffffff", "not_found")]
    assert store.count(index_id) == 3


def test_a_capped_run_is_finished_by_the_next(tl_conn, emu, store) -> None:
    index_id = seed(emu, 10)["index_id"]
    first = GistRefresher(store=store, concurrency=3, max_videos=4).run(INDEX)
    assert (first.stored, first.deferred) == (4, 6)
    clear_stats(emu)
    second = GistRefresher(store=store, concurrency=3).run(INDEX)
    assert analyze_calls(emu) == 6
    assert (second.skipped, second.stored) == (4, 6)
    assert store.count(index_id) == 10


KILLED_RUN = textwrap.dedent(
    """
    from airflow_provider_gist.operators.refresh import GistRefresher
    from airflow_provider_gist.storage import SqlGistStore

    # flush every gist at once: what is stored when the process dies is exactly what finished
    GistRefresher(store=SqlGistStore({conn!r}), concurrency=2, flush_size=1).run({index!r})
    """
)


def test_a_killed_run_is_completed_by_the_next_without_redoing_work(tl_conn, emu, store) -> None:
    total = 24
    index_id = seed(emu, total)["index_id"]
    # Slow answers, so the run is surely still going when it is killed.
    slow = {"op": "analyze", "kind": "slow", "delay": 0.2}
    requests.post(f"{emu.url}/_emulator/faults", json=slow, timeout=5).raise_for_status()
    store.ensure_table()

    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN.format(conn=STORE_CONN, index=INDEX)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while store.count(index_id) < 4:
            assert child.poll() is None, "the refresh ended before it could be killed"
            assert time.monotonic() < deadline, "the refresh stored nothing"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
    kept = store.count(index_id)
    assert 4 <= kept < total

    requests.delete(f"{emu.url}/_emulator/faults", timeout=5).raise_for_status()
    clear_stats(emu)
    summary = GistRefresher(store=store, concurrency=4).run(INDEX)
    assert analyze_calls(emu) == total - kept
    assert summary.skipped == kept
    assert store.count(index_id) == total
