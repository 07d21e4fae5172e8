"""Ingest operators against the emulator, inside real ``dag.test()`` runs with retries.

Each crash test makes the first try die *after* its create call (a fault on the status poll, or
a create whose response is garbled) and lets Airflow retry (``retries=1, retry_delay=0``).
``GET /_emulator/stats`` then proves every create endpoint was called exactly once.

In Airflow 3.3.2 ``dag.test()`` runs tasks through the in-process supervisor and execution API,
so ``context["task_state_store"]`` is present and survives a retry (it is keyed by DAG run, task
and map index). ``test_retry_reconnects_through_the_task_state_store`` shows the retry used it
(no second listing); the lost-response tests show the ingest-key fallback.
"""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from tests.helpers.dags import load_dags, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

VIDEO_URL = "https://media.example.test/videos/harbour_sunrise.mp4"
INDEX_NAME = "ingest-it-catalog"
POST_ASSETS = "POST /assets"
POST_INDEXED = "POST /indexes/{index-id}/indexed-assets"
POST_TASKS = "POST /tasks"
LIST_ASSETS = "GET /assets"

# Parsed from a file of its own (``load_dags``); ``run_dag`` registers each DAG for dag.test().
DAG_SOURCE = textwrap.dedent(
    """
    from datetime import timedelta

    from airflow.sdk import DAG, Param

    from airflow_provider_gist.operators.ingest import (
        CreateAssetOperator,
        CreateIndexingTaskOperator,
        IndexAssetOperator,
        IngestVideoOperator,
    )

    RETRY = {"retries": 1, "retry_delay": timedelta(0)}
    FAST = {"poll_interval": 0.05, "asset_timeout": 30}
    PARAMS = {"video_url": Param("https://example.test/v.mp4", type="string"),
              "index_name": Param("catalog", type="string")}

    with DAG("gist_ingest_it_video", schedule=None, params=PARAMS) as video_dag:
        IngestVideoOperator(
            task_id="ingest",
            video_url="{{ params.video_url }}",
            index_name="{{ params.index_name }}",
            create_index_if_missing=True,
            **RETRY,
            **FAST,
        )

    with DAG("gist_ingest_it_two_step", schedule=None, params=PARAMS) as two_step_dag:
        # multiple_outputs=True also pushes each key, so asset.output["asset_id"] resolves
        asset = CreateAssetOperator(
            task_id="asset", video_url="{{ params.video_url }}", multiple_outputs=True, **RETRY, **FAST
        )
        IndexAssetOperator(
            task_id="index",
            asset_id=asset.output["asset_id"],
            index_name="{{ params.index_name }}",
            create_index_if_missing=True,
            **RETRY,
            **FAST,
        )

    with DAG("gist_ingest_it_legacy", schedule=None, params=PARAMS) as legacy_dag:
        CreateIndexingTaskOperator(
            task_id="task",
            video_url="{{ params.video_url }}",
            index_name="{{ params.index_name }}",
            create_index_if_missing=True,
            **RETRY,
        )

    with DAG("gist_ingest_it_mapped", schedule=None, params=PARAMS) as mapped_dag:
        IngestVideoOperator.partial(
            task_id="ingest",
            index_name="{{ params.index_name }}",
            create_index_if_missing=True,
            map_index_template="{{ task.video_url }}",
            **RETRY,
            **FAST,
        ).expand(video_url=[
            "https://media.example.test/a/one.mp4",
            "https://media.example.test/b/two.mp4",
            "https://media.example.test/c/three.mp4",
        ])
    """
)


@pytest.fixture(scope="module")
def dags(airflow_db, tmp_path_factory) -> SimpleNamespace:
    """The test DAGs, parsed from a file of their own for this module, by their names in it."""
    folder = tmp_path_factory.mktemp("ingest_dags")
    path = folder / "gist_ingest_it_dags.py"
    path.write_text(DAG_SOURCE)
    by_id = load_dags(path)
    return SimpleNamespace(
        video_dag=by_id["gist_ingest_it_video"],
        two_step_dag=by_id["gist_ingest_it_two_step"],
        legacy_dag=by_id["gist_ingest_it_legacy"],
        mapped_dag=by_id["gist_ingest_it_mapped"],
    )


def stats(emu) -> dict[str, int]:
    return requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()["calls"]


def add_fault(emu, **rule: Any) -> None:
    requests.post(f"{emu.url}/_emulator/faults", json=rule, timeout=5).raise_for_status()


def run(dag, **conf: Any):
    from airflow.sdk import DagRunState

    dag_run = run_dag(dag, conf={"video_url": VIDEO_URL, "index_name": INDEX_NAME, **conf})
    assert dag_run.state == DagRunState.SUCCESS, f"{dag.dag_id} ended {dag_run.state}"
    return dag_run


def task_instances(dag_run) -> dict[tuple[str, int], Any]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
        return {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in rows}


def result(dag_run, task_id: str, map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == "return_value",
            )
        )
    return json.loads(value) if isinstance(value, str) else value


def api(emu, path: str, **params: Any) -> Any:
    from tests.conftest import TEST_API_KEY

    resp = requests.get(
        f"{emu.base_url}/{path}", params=params, headers={"x-api-key": TEST_API_KEY}, timeout=5
    )
    resp.raise_for_status()
    return resp.json()


# ---------------------------------------------------------------------------------------------


def test_retry_reconnects_through_the_task_state_store(tl_conn, emu, dags):
    # The first status poll of the new asset fails hard: the task dies after POST /assets.
    add_fault(emu, op="get_asset", kind="status", status=400, count=1, message="emulated worker crash")
    dag_run = run(dags.video_dag)

    assert task_instances(dag_run)[("ingest", -1)] == ("success", 2)  # it really was retried
    calls = stats(emu)
    assert calls[POST_ASSETS] == 1
    assert calls[POST_INDEXED] == 1
    # Only the first try listed assets (reuse lookup); the retry read the id from the state store.
    assert calls[LIST_ASSETS] == 1

    out = result(dag_run, "ingest")
    assert set(out) == {"asset_id", "index_id", "indexed_asset_id", "video_url"}
    assert out["video_url"] == VIDEO_URL
    indexed = api(emu, f"indexes/{out['index_id']}/indexed-assets")["data"]
    assert [item["_id"] for item in indexed] == [out["indexed_asset_id"]]


def test_a_second_run_with_the_same_url_creates_nothing(tl_conn, emu, dags):
    first = result(run(dags.video_dag), "ingest")
    after_first = stats(emu)
    second = result(run(dags.video_dag), "ingest")
    after_second = stats(emu)

    assert first == second
    assert after_first[POST_ASSETS] == after_second[POST_ASSETS] == 1
    assert after_first[POST_INDEXED] == after_second[POST_INDEXED] == 1
    assert after_second.get("POST /indexes") == 1  # the index was created once, then found by name


@pytest.mark.parametrize("op", ["create_asset", "create_indexed_asset"])
def test_a_lost_create_response_is_recovered_by_the_ingest_key(tl_conn, emu, dags, op):
    # The server creates the resource but the client gets half a JSON body: the id never reaches
    # the state store. A 2xx surely created it, so the same try looks it up by user_metadata and
    # finds it, instead of failing (or creating another).
    add_fault(emu, op=op, kind="malformed_json", count=1)
    dag_run = run(dags.video_dag)

    assert task_instances(dag_run)[("ingest", -1)] == ("success", 1)
    calls = stats(emu)
    assert calls[POST_ASSETS] == 1
    assert calls[POST_INDEXED] == 1
    out = result(dag_run, "ingest")
    assets = api(emu, "assets")["data"]
    assert [a["_id"] for a in assets] == [out["asset_id"]]


def test_two_step_dag_survives_crashes_in_both_tasks(tl_conn, emu, dags):
    add_fault(emu, op="get_asset", kind="status", status=400, count=1, message="emulated worker crash")
    add_fault(emu, op="create_indexed_asset", kind="malformed_json", count=1)
    dag_run = run(dags.two_step_dag)

    tis = task_instances(dag_run)
    assert tis[("asset", -1)] == ("success", 2)
    assert tis[("index", -1)] == ("success", 1)  # the garbled answer's indexed asset found in-try
    calls = stats(emu)
    assert calls[POST_ASSETS] == 1
    assert calls[POST_INDEXED] == 1
    asset = result(dag_run, "asset")
    index = result(dag_run, "index")
    assert asset["status"] == "ready"
    assert asset["filename"] == "harbour_sunrise.mp4"
    assert index["asset_id"] == asset["asset_id"]
    # IndexAssetOperator returned without waiting for indexing: the sensor's job.
    assert "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}" not in calls


def test_legacy_task_is_created_once_across_a_retry_and_a_new_run(tl_conn, emu, dags):
    add_fault(emu, op="create_task", kind="malformed_json", count=1)
    first = run(dags.legacy_dag)
    assert task_instances(first)[("task", -1)] == ("success", 1)  # found by its key in the same try
    second = run(dags.legacy_dag)

    assert stats(emu)[POST_TASKS] == 1
    out = result(first, "task")
    assert out == result(second, "task")
    task = api(emu, f"tasks/{out['indexing_task_id']}")
    assert task["video_id"] == out["video_id"]
    assert task["index_id"] == out["index_id"]


def test_mapped_ingest_creates_one_asset_per_url_even_when_run_twice(tl_conn, emu, dags):
    add_fault(emu, op="get_asset", kind="status", status=400, count=1, message="emulated worker crash")
    first = run(dags.mapped_dag)
    run(dags.mapped_dag)

    calls = stats(emu)
    assert calls[POST_ASSETS] == 3
    assert calls[POST_INDEXED] == 3
    tis = task_instances(first)
    assert sorted(tis) == [("ingest", 0), ("ingest", 1), ("ingest", 2)]
    assert sum(try_number for _, try_number in tis.values()) == 4  # exactly one mapped retry
    outs = [result(first, "ingest", i) for i in range(3)]
    assert len({o["asset_id"] for o in outs}) == 3


def test_without_a_state_store_the_emulator_lookup_prevents_duplicates(tl_conn, emu):
    """Direct execute() with no task_state_store: the fallback uses the API's real filters."""
    from types import SimpleNamespace

    from airflow_provider_gist.operators.ingest import IngestVideoOperator

    add_fault(emu, op="get_asset", kind="status", status=400, count=1, message="emulated worker crash")
    op = IngestVideoOperator(
        task_id="ingest",
        video_url=VIDEO_URL,
        index_name=INDEX_NAME,
        create_index_if_missing=True,
        reuse_existing=False,  # run-scoped key: only this task instance's own resources count
        poll_interval=0.05,
        asset_timeout=30,
    )
    ti = SimpleNamespace(dag_id="d", run_id="r1", task_id="ingest", map_index=-1, try_number=1)
    with pytest.raises(Exception, match="emulated worker crash"):
        op.execute({"ti": ti})
    ti.try_number = 2
    out = op.execute({"ti": ti})

    calls = stats(emu)
    assert calls[POST_ASSETS] == 1
    assert calls[POST_INDEXED] == 1
    assert api(emu, f"assets/{out['asset_id']}")["status"] == "ready"


def test_a_failed_asset_reports_the_api_message_and_retries_fresh(tl_conn, emu):
    from airflow_provider_gist.operators.ingest import CreateAssetOperator, IngestFailedError

    op = CreateAssetOperator(
        task_id="asset", video_url="https://media.example.test/corrupt.mp4", poll_interval=0.05
    )
    store: dict[str, Any] = {}
    state = type(
        "Store",
        (),
        {"get": lambda self, k, d=None: store.get(k, d), "set": lambda self, k, v: store.__setitem__(k, v)},
    )()
    with pytest.raises(IngestFailedError, match="could not be decoded"):
        op.execute({"task_state_store": state})
    first_id = store["gist_asset"]["id"]
    with pytest.raises(IngestFailedError):
        op.execute({"task_state_store": state})
    assert stats(emu)[POST_ASSETS] == 2
    assert store["gist_asset"]["id"] != first_id


def test_file_upload_from_object_storage_path(tl_conn, emu, tmp_path):
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_gist.operators.ingest import CreateAssetOperator

    clip = tmp_path / "boats.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2048))
    op = CreateAssetOperator(
        task_id="asset", file_path=ObjectStoragePath(f"file://{clip}"), poll_interval=0.05
    )
    out = op.execute({})
    again = op.execute({})  # no store at all: found by filename + ingest key
    assert out == again
    assert out["filename"] == "boats.mp4"
    assert out["status"] == "ready"
    assert stats(emu)[POST_ASSETS] == 1
    assert api(emu, f"assets/{out['asset_id']}")["size"] == clip.stat().st_size


@pytest.mark.parametrize("thumbnail", [True, False])
def test_uploads_ask_for_thumbnails_unless_told_not_to(tl_conn, emu, tmp_path, thumbnail: bool):
    """The gist view shows an asset's thumbnail: the ingest asks for one by default (URL and file)."""
    from airflow_provider_gist.operators.ingest import CreateAssetOperator

    clip = tmp_path / f"harbour_{thumbnail}.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2048))
    kwargs: dict[str, Any] = {} if thumbnail else {"thumbnail": False}
    by_url = CreateAssetOperator(
        task_id="u", video_url=f"https://media.example.test/t_{thumbnail}.mp4", poll_interval=0.05, **kwargs
    ).execute({})
    by_file = CreateAssetOperator(task_id="f", file_path=str(clip), poll_interval=0.05, **kwargs).execute({})
    for out in (by_url, by_file):
        asset = api(emu, f"assets/{out['asset_id']}")
        assert ("thumbnail" in asset) is thumbnail, asset


def test_thumbnail_must_be_a_boolean(tl_conn, emu):
    from airflow_provider_gist.errors import GistValidationError
    from airflow_provider_gist.operators.ingest import CreateAssetOperator

    op = CreateAssetOperator(task_id="u", video_url="https://media.example.test/a.mp4", thumbnail="yes")  # type: ignore[arg-type]
    with pytest.raises(GistValidationError, match="thumbnail must be true or false"):
        op.execute({})
    assert stats(emu).get(POST_ASSETS, 0) == 0
