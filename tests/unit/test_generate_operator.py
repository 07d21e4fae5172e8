"""GenerateGistOperator without a DAG run: validation, return shape, no work at construction."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gist.errors import GistConfigError, GistValidationError
from airflow_provider_gist.operators.gist import GenerateGistOperator
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"


@pytest.fixture(autouse=True)
def conn(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE))


def test_construction_does_no_io(requests_mock, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TWELVELABS_DEFAULT")
    op = GenerateGistOperator(task_id="g", asset_id="{{ params.asset }}", types="{{ params.types }}")
    assert op.asset_id == "{{ params.asset }}" and requests_mock.call_count == 0
    assert {"asset_id", "video_id", "types", "twelvelabs_conn_id"} <= set(op.template_fields)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "asset_id and video_id"),
        ({"asset_id": ASSET, "video_id": ASSET}, "asset_id and video_id"),
        ({"asset_id": "a/../b"}, "asset_id"),
        ({"video_id": "x y"}, "video_id"),
        ({"asset_id": ASSET, "types": ["title", "summary"]}, "types"),
        ({"asset_id": ASSET, "types": []}, "types"),
        ({"asset_id": ASSET, "model_name": "marengo3.0"}, "model_name"),
        ({"asset_id": ASSET, "temperature": 3}, "temperature"),
        ({"asset_id": ASSET, "index_id": "../ix"}, "index_id"),
    ],
)
def test_bad_input_names_the_field_before_any_http(requests_mock, kwargs, field):
    op = GenerateGistOperator(task_id="g", **kwargs)
    with pytest.raises(GistValidationError, match=field):
        op.execute(context={})
    assert requests_mock.call_count == 0


def test_missing_connection_is_a_clear_error(requests_mock):
    op = GenerateGistOperator(task_id="g", asset_id=ASSET, twelvelabs_conn_id="does_not_exist")
    with pytest.raises(GistConfigError, match="'does_not_exist' is not defined"):
        op.execute(context={})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("types", [["title"], ["topic", "hashtag"], None])
def test_returns_exactly_the_requested_parts(requests_mock, types):
    answer = {"title": "Harbour", "topics": ["Boats"], "hashtags": ["#Sea"]}
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        json={
            "id": "gen",
            "data": json.dumps(answer),
            "finish_reason": "stop",
            "usage": {"output_tokens": 9},
        },
    )
    requests_mock.get(f"{BASE}/v1.3/assets/{ASSET}", json={"_id": ASSET, "status": "ready", "duration": 90})
    out = GenerateGistOperator(task_id="g", asset_id=ASSET, types=types, index_id="ix1").execute(context={})
    wanted = (
        {"title", "topics", "hashtags"}
        if types is None
        else {{"title": "title", "topic": "topics", "hashtag": "hashtags"}[t] for t in types}
    )
    assert {"title", "topics", "hashtags"} & set(out) == wanted
    assert all(out[k] for k in wanted)
    assert out["video_ref"] == ASSET and out["index_id"] == "ix1"
    assert TEST_API_KEY not in json.dumps(out)
