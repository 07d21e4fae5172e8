"""Extra links to the TwelveLabs web app: registered, on the operators, built from the pushed ids."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gist import get_provider_info
from airflow_provider_gist.client.settings import FIELDS, ApiSettings, conn_fields
from airflow_provider_gist.errors import GistConfigError
from airflow_provider_gist.links import (
    XCOM_KEY,
    TwelveLabsAnalysisTaskLink,
    TwelveLabsIndexLink,
    TwelveLabsVideoLink,
    persist,
)
from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.operators.ingest import (
    CreateAssetOperator,
    IndexAssetOperator,
    IngestVideoOperator,
)
from airflow_provider_gist.operators.refresh import RefreshGistsOperator
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

BASE = "https://api.twelvelabs.test"
PLAYGROUND = "http://127.0.0.1:8765/web"
INDEX = "0123456789abcdef01234567"
ASSET = "6298d673f1090f1100476d4c"
INDEXED = "6298d673f1090f1100476d4d"


class RecordingTI(SimpleNamespace):
    """A task instance that keeps what is pushed (and what ingest's state store asks for)."""

    def __init__(self) -> None:
        super().__init__(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = json.loads(json.dumps(value))  # what an XCom backend would keep


def link_from(link: Any, pushed: Any, monkeypatch) -> str:
    """``get_link`` as the task runner calls it, reading ``pushed`` as the stored XCom."""
    from airflow.sdk.execution_time import xcom

    seen: list[str] = []

    def get_value(*, ti_key: Any, key: str) -> Any:
        seen.append(key)
        return pushed

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))
    url = link.get_link(operator=None, ti_key=SimpleNamespace())
    assert seen == [XCOM_KEY]
    return url


def test_links_are_registered_in_the_manifest_and_importable():
    paths = get_provider_info()["extra-links"]
    classes = {TwelveLabsIndexLink, TwelveLabsVideoLink, TwelveLabsAnalysisTaskLink}
    found = set()
    for path in paths:
        module, _, name = path.rpartition(".")
        found.add(getattr(importlib.import_module(module), name))
    assert found == classes
    assert len({cls.name for cls in classes}) == len(classes)  # one button per link


@pytest.mark.parametrize(
    ("operator", "links"),
    [
        (IngestVideoOperator, {TwelveLabsIndexLink, TwelveLabsVideoLink}),
        (IndexAssetOperator, {TwelveLabsIndexLink, TwelveLabsVideoLink}),
        (CreateAssetOperator, {TwelveLabsVideoLink}),
        (GenerateGistOperator, {TwelveLabsVideoLink, TwelveLabsIndexLink, TwelveLabsAnalysisTaskLink}),
        (RefreshGistsOperator, {TwelveLabsIndexLink}),
    ],
)
def test_operators_carry_their_links(operator, links):
    assert {type(link) for link in operator.operator_extra_links} == links


def test_link_urls_from_the_pushed_ids(monkeypatch):
    pushed = {"playground_url": PLAYGROUND, "index_id": INDEX, "asset_id": ASSET, "indexed_asset_id": INDEXED}
    assert link_from(TwelveLabsIndexLink(), pushed, monkeypatch) == f"{PLAYGROUND}/indexes/{INDEX}"
    video = link_from(TwelveLabsVideoLink(), pushed, monkeypatch)
    assert video == f"{PLAYGROUND}/indexes/{INDEX}/videos/{INDEXED}"
    only_asset = {"playground_url": PLAYGROUND, "asset_id": ASSET}
    assert link_from(TwelveLabsVideoLink(), only_asset, monkeypatch) == f"{PLAYGROUND}/assets/{ASSET}"
    task = {"playground_url": PLAYGROUND, "analysis_task_id": "task-1"}
    assert link_from(TwelveLabsAnalysisTaskLink(), task, monkeypatch) == f"{PLAYGROUND}/analyze/tasks/task-1"
    # nothing pushed (the task failed first), or not the ids this link needs: no link, no error
    assert link_from(TwelveLabsIndexLink(), None, monkeypatch) == ""
    assert link_from(TwelveLabsAnalysisTaskLink(), pushed, monkeypatch) == ""
    # an id cannot walk out of its path segment
    odd = {"playground_url": PLAYGROUND, "index_id": "../x?y"}
    assert link_from(TwelveLabsIndexLink(), odd, monkeypatch) == f"{PLAYGROUND}/indexes/..%2Fx%3Fy"


def test_playground_url_is_a_validated_connection_field():
    assert "playground_url" in FIELDS and "playground_url" in conn_fields()
    assert ApiSettings().playground_url == "https://playground.twelvelabs.io"
    extra = {"playground_url": "http://127.0.0.1:8765/web/"}
    assert ApiSettings.from_extra(extra, "c").playground_url == "http://127.0.0.1:8765/web"
    for bad in ("ftp://x", "https://user:pw@host", "https://host/?sig=1", "not a url"):
        with pytest.raises(GistConfigError, match="playground_url"):
            ApiSettings.from_extra({"playground_url": bad}, "c")


def test_generate_pushes_the_asset_and_index_and_never_the_key(requests_mock, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, playground_url=PLAYGROUND)
    )
    answer = {"title": "Harbour", "topics": ["Boats"], "hashtags": ["#Sea"]}
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        json={"id": "gen", "data": json.dumps(answer), "finish_reason": "stop", "usage": {}},
    )
    requests_mock.get(f"{BASE}/v1.3/assets/{ASSET}", json={"_id": ASSET, "status": "ready", "duration": 90})
    ti = RecordingTI()
    GenerateGistOperator(task_id="g", asset_id=ASSET, index_id=INDEX).execute(context={"ti": ti})
    pushed = ti.xcoms[XCOM_KEY]
    assert pushed == {"playground_url": PLAYGROUND, "index_id": INDEX, "asset_id": ASSET}
    assert TEST_API_KEY not in json.dumps(ti.xcoms)
    assert link_from(TwelveLabsVideoLink(), pushed, monkeypatch) == f"{PLAYGROUND}/assets/{ASSET}"
    assert link_from(TwelveLabsIndexLink(), pushed, monkeypatch) == f"{PLAYGROUND}/indexes/{INDEX}"


def test_deferrable_generate_pushes_the_analysis_task_before_deferring(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE))
    monkeypatch.setattr(
        "airflow_provider_gist.async_analysis.obtain_task",
        lambda hook, request, tokens, durability, log: {"task_id": "task-7", "status": "queued"},
    )
    ti = RecordingTI()
    op = GenerateGistOperator(task_id="g", asset_id=ASSET, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(context={"ti": ti})
    pushed = ti.xcoms[XCOM_KEY]
    assert pushed["analysis_task_id"] == "task-7" and pushed["asset_id"] == ASSET
    assert pushed["playground_url"] == "https://playground.twelvelabs.io"
    assert TEST_API_KEY not in json.dumps(ti.xcoms)
    assert (
        link_from(TwelveLabsAnalysisTaskLink(), pushed, monkeypatch)
        == "https://playground.twelvelabs.io/analyze/tasks/task-7"
    )


def test_ingest_pushes_index_asset_and_indexed_asset(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE))
    result = {
        "asset_id": ASSET,
        "index_id": INDEX,
        "indexed_asset_id": INDEXED,
        "video_url": "https://v/x.mp4",
    }
    monkeypatch.setattr(IngestVideoOperator, "ingest", lambda self, inputs, durability: dict(result))
    ti = RecordingTI()
    op = IngestVideoOperator(task_id="t", video_url="https://v/x.mp4?sig=secret", index_id=INDEX)
    assert op.execute(context={"ti": ti}) == result
    pushed = ti.xcoms[XCOM_KEY]
    assert {k: pushed[k] for k in ("index_id", "asset_id", "indexed_asset_id")} == {
        "index_id": INDEX,
        "asset_id": ASSET,
        "indexed_asset_id": INDEXED,
    }
    assert "secret" not in json.dumps(pushed) and TEST_API_KEY not in json.dumps(pushed)
    assert (
        link_from(TwelveLabsVideoLink(), pushed, monkeypatch)
        == f"https://playground.twelvelabs.io/indexes/{INDEX}/videos/{INDEXED}"
    )


def test_persist_without_a_task_instance_is_harmless():
    assert persist({}, PLAYGROUND + "/", index_id=INDEX, api_key="tlk_x", asset_id=None) == {
        "playground_url": PLAYGROUND,
        "index_id": INDEX,
    }
    persist({"ti": SimpleNamespace()}, PLAYGROUND, index_id=INDEX)  # a ti that cannot push
