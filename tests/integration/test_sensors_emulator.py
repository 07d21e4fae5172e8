"""The indexing sensors against the emulator over real HTTP, inside ``dag.test()``.

``dag.test()`` runs a deferred task's trigger in-process and resumes the task, so these tests
cover the whole deferrable path: the sync first check, ``defer()``, the trigger's async polls
through GistAsyncHook, ``execute_complete`` and the XCom handed downstream. Deferral timeouts
are not enforced there; the triggers' absolute deadlines (and the pytest timeout) bound them.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from airflow.sdk import DAG, task

from airflow_provider_gist.hooks.gist import GistHook
from airflow_provider_gist.sensors.indexing import AssetReadySensor, IndexingCompleteSensor
from tests.helpers.dags import run_dag  # DAGs built here are in no bundle: it registers them

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST: dict[str, Any] = {"poll_interval": 0.2, "poke_interval": 0.2, "timeout": 20}


@pytest.fixture
def slow_processing(emu, monkeypatch):
    """Processing slow enough that the sensor's first check sees it unfinished and defers."""
    timing = emu.emulator.state.timing
    monkeypatch.setattr(timing, "asset_ready_seconds", 1.5)
    monkeypatch.setattr(timing, "indexing_seconds", 1.5)
    return timing


def get_count(emu, path_part: str) -> int:
    """How many GETs the emulator journal recorded for paths containing ``path_part``."""
    body = requests.get(f"{emu.url}/_emulator/journal", timeout=5).json()
    entries = body.get("entries", body) if isinstance(body, dict) else body
    return sum(
        1 for entry in entries if entry.get("method") == "GET" and path_part in str(entry.get("path", ""))
    )


def task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_deferred_asset_sensor_resumes_and_hands_the_summary_downstream(
    airflow_db, tl_conn, emu, slow_processing
):
    seen: dict[str, Any] = {}

    with DAG(dag_id="it_asset_ready_deferred", schedule=None) as dag:

        @task
        def create_asset() -> str:
            return GistHook().create_asset_from_url("https://videos.example.com/harbour.mp4")["_id"]

        @task
        def consume(summary: dict) -> None:
            seen.update(summary)

        asset_id = create_asset()
        wait = AssetReadySensor(task_id="wait", asset_id=asset_id, deferrable=True, **FAST)
        consume(wait.output)

    run = run_dag(dag)
    assert run.state == "success", task_states(run)
    assert seen["status"] == "ready"
    assert seen["filename"] == "harbour.mp4"
    assert len(seen["asset_id"]) == 24
    assert set(seen) == {"asset_id", "status", "filename", "file_type", "duration", "created_at"}
    # one sync check in the worker, then the trigger's polls: the wait really was deferred
    assert get_count(emu, f"/assets/{seen['asset_id']}") >= 3


def test_deferred_indexing_sensor_waits_for_an_indexed_asset(airflow_db, tl_conn, emu, slow_processing):
    hook = GistHook()
    index_id = hook.create_index("it-sensors")
    slow_processing.asset_ready_seconds = 0.0
    asset_id = hook.create_asset_from_url("https://videos.example.com/boats.mp4")["_id"]
    seen: dict[str, Any] = {}

    with DAG(dag_id="it_indexed_asset_deferred", schedule=None) as dag:

        @task
        def index_asset() -> str:
            return GistHook().create_indexed_asset(index_id, asset_id)["_id"]

        @task
        def consume(summary: dict) -> None:
            seen.update(summary)

        wait = IndexingCompleteSensor(
            task_id="wait", index_id=index_id, indexed_asset_id=index_asset(), deferrable=True, **FAST
        )
        consume(wait.output)

    run = run_dag(dag)
    assert run.state == "success", task_states(run)
    assert seen["status"] == "ready"
    assert seen["index_id"] == index_id
    assert seen["asset_id"] == asset_id
    assert seen["video_id"] == seen["indexed_asset_id"]
    assert seen["filename"] == "boats.mp4"
    assert seen["updated_at"]


def test_deferred_sensor_fails_with_the_api_reason_for_a_corrupt_video(
    airflow_db, tl_conn, emu, slow_processing
):
    errors: list[str] = []

    with DAG(dag_id="it_asset_corrupt", schedule=None) as dag:

        @task
        def create_asset() -> str:
            return GistHook().create_asset_from_url("https://videos.example.com/corrupt_clip.mp4")["_id"]

        AssetReadySensor(
            task_id="wait",
            asset_id=create_asset(),
            deferrable=True,
            on_failure_callback=lambda context: errors.append(str(context.get("exception"))),
            **FAST,
        )

    run = run_dag(dag)
    assert run.state == "failed"
    assert task_states(run)["wait"] == "failed"
    assert len(errors) == 1
    assert "failed: The file could not be decoded" in errors[0]


def test_legacy_indexing_of_a_corrupt_video_fails_the_sensor(airflow_db, tl_conn, emu, slow_processing):
    hook = GistHook()
    index_id = hook.create_index("it-sensors-legacy")
    indexing_task_id = hook.create_task(index_id, video_url="https://videos.example.com/corrupt_take.mp4")[
        "_id"
    ]
    errors: list[str] = []

    with DAG(dag_id="it_task_corrupt", schedule=None) as dag:
        IndexingCompleteSensor(
            task_id="wait",
            indexing_task_id=indexing_task_id,
            deferrable=True,
            on_failure_callback=lambda context: errors.append(str(context.get("exception"))),
            **FAST,
        )

    run = run_dag(dag)
    assert run.state == "failed"
    assert len(errors) == 1
    assert f"indexing task {indexing_task_id} failed: the API gave no reason" in errors[0]


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_poke_modes_wait_for_a_legacy_indexing_task(airflow_db, tl_conn, emu, slow_processing, mode):
    hook = GistHook()
    index_id = hook.create_index(f"it-sensors-{mode}")
    created = hook.create_task(index_id, video_url="https://videos.example.com/river.mp4")
    seen: dict[str, Any] = {}

    with DAG(dag_id=f"it_task_{mode}", schedule=None) as dag:

        @task
        def consume(summary: dict) -> None:
            seen.update(summary)

        wait = IndexingCompleteSensor(
            task_id="wait", indexing_task_id=created["_id"], deferrable=False, mode=mode, **FAST
        )
        consume(wait.output)

    run = run_dag(dag)
    assert run.state == "success", task_states(run)
    assert seen["indexing_task_id"] == created["_id"]
    assert seen["video_id"] == created["video_id"]
    assert seen["index_id"] == index_id
    assert seen["status"] == "ready"
    assert seen["filename"] == "river.mp4"
