"""Deferrable gists and batch refreshes against the emulator's analysis tasks and batches.

Counted at the emulator (``/_emulator/stats`` ``created``): one analysis task per gist and task
instance whatever happens between create and resume (a retry while it runs, a crash before the
id was saved, a triggerer restart); batch refreshes create ceil(N / batch_size) batches, respect
the account's active-batch limit, resubmit what an expired batch canceled, and store every gist
once. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.storage import SqlGistStore
from airflow_provider_gist.triggers.analysis import AnalysisTaskTrigger
from tests.helpers.dags import run_dag
from tests.unit.ingest_fakes import FakeStore, make_context

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def control(emu, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def created(emu, kind: str) -> int:
    return int(control(emu, "GET", "stats")["created"][kind])


def seed(emu, index_name: str, count: int) -> dict[str, Any]:
    return control(emu, "POST", "seed", {"index_name": index_name, "count": count})


def run_trigger(trigger: AnalysisTaskTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event())


# ------------------------------------------------------------------------------------ deferrable


def test_a_deferred_gist_is_one_task_across_retries_and_a_triggerer_restart(tl_conn, emu):
    asset = seed(emu, "it-defer", 1)["videos"][0]["asset_id"]
    store = FakeStore()
    operator = GenerateGistOperator(task_id="gist", asset_id=asset, deferrable=True, poll_interval=0.05)
    with pytest.raises(TaskDeferred) as first:
        operator.execute(make_context(store))
    # a retry while the analysis still runs: it reconnects, it does not create another
    with pytest.raises(TaskDeferred) as second:
        GenerateGistOperator(task_id="gist", asset_id=asset, deferrable=True, poll_interval=0.05).execute(
            make_context(store, try_number=2)
        )
    trigger = first.value.trigger
    assert isinstance(trigger, AnalysisTaskTrigger)
    assert second.value.trigger.analysis_task_id == trigger.analysis_task_id
    assert created(emu, "analysis_tasks") == 1

    # a triggerer restart: the trigger is rebuilt from what it serialized, and only reads
    _, kwargs = trigger.serialize()
    event = run_trigger(AnalysisTaskTrigger(**kwargs))
    assert event["status"] == "ready" and event["analysis_task_id"] == trigger.analysis_task_id

    gist = operator.execute_complete(make_context(store), event, **(first.value.kwargs or {}))
    assert gist["title"] and gist["video_ref"] == asset and gist["model"]
    assert created(emu, "analysis_tasks") == 1
    assert control(emu, "GET", "stats")["calls"].get("POST /analyze", 0) == 0


def test_a_crash_before_the_id_was_saved_is_found_by_custom_id(tl_conn, emu):
    asset = seed(emu, "it-crash", 1)["videos"][0]["asset_id"]
    with pytest.raises(TaskDeferred):
        GenerateGistOperator(task_id="gist", asset_id=asset, deferrable=True).execute(
            make_context(FakeStore(broken_set=True))
        )
    with pytest.raises(TaskDeferred) as retry:
        GenerateGistOperator(task_id="gist", asset_id=asset, deferrable=True).execute(
            make_context(FakeStore(), try_number=2)
        )
    assert created(emu, "analysis_tasks") == 1
    listed = requests.get(
        f"{emu.url}/v1.3/analyze/tasks", headers={"x-api-key": emu.api_key}, timeout=10
    ).json()["data"]
    assert [t["task_id"] for t in listed] == [retry.value.trigger.analysis_task_id]


def test_the_deferrable_dag_task_waits_in_the_trigger_and_stores_nothing_twice(airflow_db, tl_conn, emu):
    from airflow.sdk import DAG

    asset = seed(emu, "it-dag-defer", 1)["videos"][0]["asset_id"]
    with DAG(dag_id="it_deferred_gist", schedule=None) as dag:
        GenerateGistOperator(task_id="gist", asset_id=asset, deferrable=True, poll_interval=0.05)
    run = run_dag(dag)
    assert str(run.state) == "success"
    ti = next(iter(run.get_task_instances()))
    assert ti.xcom_pull(task_ids="gist")["video_ref"] == asset
    assert created(emu, "analysis_tasks") == 1


# ----------------------------------------------------------------------------------------- batch


@pytest.fixture
def gist_store(tmp_path: Path, monkeypatch) -> SqlGistStore:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_BATCH_STORE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "g.db")})
    )
    return SqlGistStore("batch_store")


def batch_dag(**kwargs: Any):
    from airflow.sdk import DAG

    from airflow_provider_gist.operators.refresh import RefreshGistsOperator

    with DAG(dag_id="it_batch_refresh", schedule=None) as dag:
        RefreshGistsOperator(
            task_id="refresh",
            index="it-batches",
            model_name="pegasus1.5",
            analysis="batch",
            sql_conn_id="batch_store",
            poll_interval=0.05,
            **kwargs,
        )
    return dag


def test_a_batch_refresh_stores_every_gist_with_ceil_n_over_size_creates(
    airflow_db, tl_conn, emu, gist_store
):
    seeded = seed(emu, "it-batches", 25)
    dag = batch_dag(batch_size=10, max_active_batches=2)
    run = run_dag(dag)
    assert str(run.state) == "success"
    summary = next(iter(run.get_task_instances())).xcom_pull(task_ids="refresh")
    assert summary["stored"] == 25 and summary["failed"] == 0 and summary["planned"] == 25
    assert created(emu, "batches") == math.ceil(25 / 10)
    assert control(emu, "GET", "stats")["calls"].get("POST /analyze", 0) == 0
    assert gist_store.count(seeded["index_id"]) == 25

    # an unchanged catalog: a second run costs no batch at all
    assert str(run_dag(batch_dag(batch_size=10)).state) == "success"
    assert created(emu, "batches") == 3 and gist_store.count(seeded["index_id"]) == 25


def test_an_expired_batch_is_resubmitted_and_nothing_is_lost(tl_conn, emu, gist_store):
    from airflow_provider_gist.analysis import prepare_gist_request
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.refresh.batches import BatchRefresher, BatchState

    seeded = seed(emu, "it-expire", 6)
    gist_store.ensure_table()
    hook = GistHook()
    engine = BatchRefresher(
        hook=hook,
        store=gist_store,
        template=prepare_gist_request(asset_id="t", video_id=None, types=None, model_name="pegasus1.5"),
        save=lambda state: None,
        log=hook.log,
    )
    state = BatchState(index_id=seeded["index_id"], run_key="it000001")
    first = engine.step(state)
    assert first is not None
    control(emu, "POST", "batches/expire", {"batch_id": first})  # everything unfinished is canceled
    while (waiting := engine.step(state)) is not None:
        while hook.get_batch(waiting)["status"] not in ("completed", "canceled", "expired"):
            control(emu, "POST", "clock", {"advance": 1})
    assert gist_store.count(seeded["index_id"]) == 6
    assert created(emu, "batches") == 2  # the first, and one resubmission of what it canceled
    assert state.to_summary().failed == 0


def test_five_active_batches_of_someone_else_leave_the_refresh_for_later(
    airflow_db, tl_conn, emu, gist_store
):
    seed(emu, "it-batches", 4)
    control(emu, "POST", "batches/occupy", {"count": 5})
    run = run_dag(batch_dag())
    summary = next(iter(run.get_task_instances())).xcom_pull(task_ids="refresh")
    assert created(emu, "batches") == 0 and summary["not_attempted"] == 4 and summary["stored"] == 0
    control(emu, "POST", "batches/occupy", {"count": 0})
    assert str(run_dag(batch_dag()).state) == "success"
    assert created(emu, "batches") == 1 and gist_store.count() == 4


def test_the_catalog_refresh_dag_takes_batch_analysis_as_a_param(
    airflow_db, tl_conn, emu, gist_store, monkeypatch
):
    from tests.helpers.dags import load_dag

    # The DAG names no store: it writes to the deployment's, gist_store_default.
    monkeypatch.setenv("AIRFLOW_CONN_GIST_STORE_DEFAULT", os.environ["AIRFLOW_CONN_BATCH_STORE"])
    seeded = seed(emu, "it-dag-batches", 7)
    conf = {"index": "it-dag-batches", "analysis": "batch", "model": "pegasus1.5", "max_videos": None}
    run = run_dag(load_dag("gist_catalog_refresh"), conf=conf)
    assert str(run.state) == "success"
    assert created(emu, "batches") == 1 and gist_store.count(seeded["index_id"]) == 7
    assert control(emu, "GET", "stats")["calls"].get("POST /analyze", 0) == 0
