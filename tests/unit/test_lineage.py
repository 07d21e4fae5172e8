"""OpenLineage facets of the ingest, generate, store and refresh operators: inputs, outputs, job facet."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gist.client.pacing import RateLimitPacers
from airflow_provider_gist.lineage import FACET_NAME, path_dataset, url_dataset
from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.operators.ingest import IngestVideoOperator
from airflow_provider_gist.operators.refresh import RefreshGistsOperator
from airflow_provider_gist.operators.store import StoreGistsOperator
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json
from tests.unit.test_refresh_engine import INDEX, FakeHook, make

pytest.importorskip("airflow.providers.openlineage")

BASE = "http://127.0.0.1:8765"
ASSET = "6298d673f1090f1100476d4c"
INDEXED = "6298d673f1090f1100476d4d"


def ids(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


@pytest.fixture(autouse=True)
def conn(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))


def test_dataset_names_drop_credentials_and_queries():
    assert url_dataset("https://user:pw@cdn.example.com:8443/v/clip.mp4?X-Amz-Signature=s#t") == (
        "https://cdn.example.com:8443",
        "/v/clip.mp4",
    )
    assert path_dataset("s3", "bucket/videos/a.mp4") == ("s3://bucket", "videos/a.mp4")
    assert path_dataset("file", "/data/a.mp4") == ("file", "/data/a.mp4")


def test_ingest_lineage_source_in_asset_out(monkeypatch):
    result = {"asset_id": ASSET, "index_id": INDEX, "indexed_asset_id": INDEXED}
    monkeypatch.setattr(IngestVideoOperator, "ingest", lambda self, inputs, durability: dict(result))
    url = "https://cdn.example.com/v/a.mp4?sig=secret"
    op = IngestVideoOperator(task_id="t", video_url=url, index_id=INDEX)
    op.execute(context={})
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace())
    assert ids(lineage.inputs) == [("https://cdn.example.com", "/v/a.mp4")]
    assert ids(lineage.outputs) == [
        ("twelvelabs://127.0.0.1:8765", ASSET),
        ("twelvelabs://127.0.0.1:8765", f"indexes/{INDEX}/{INDEXED}"),
    ]
    assert "secret" not in repr(lineage)


def test_generate_lineage_video_in_and_model_facet(requests_mock):
    answer = {"title": "Harbour", "topics": ["Boats"], "hashtags": ["#Sea"]}
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        json={"id": "gen", "data": json.dumps(answer), "finish_reason": "stop", "usage": {}},
    )
    requests_mock.get(f"{BASE}/v1.3/assets/{ASSET}", json={"_id": ASSET, "status": "ready", "duration": 90})
    op = GenerateGistOperator(task_id="g", asset_id=ASSET, model_name="pegasus1.5", types=["title"])
    gist = op.execute(context={})
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace())
    assert ids(lineage.inputs) == [("twelvelabs://127.0.0.1:8765", ASSET)]
    facet = lineage.job_facets[FACET_NAME]
    assert facet.model == "pegasus1.5" and facet.promptVersion == gist["prompt_version"]
    assert facet.types == ["title"]
    assert TEST_API_KEY not in repr(lineage)


def test_store_lineage_videos_in_table_out(tmp_path):
    hook = FakeHook(RateLimitPacers(), [], {})
    gists = [
        hook.generate_gist(asset_id=ref, index_id=INDEX, model_name="pegasus1.2").to_dict()
        for ref in ("a001", "a002")
    ]
    for gist in gists:
        gist["generated_at"] = "2026-11-26T00:00:00Z"  # as an upstream task's XCom holds it
    op = StoreGistsOperator(task_id="s", gists=gists, table="gists_lineage", outlets=[])
    op.execute(context={"outlet_events": {}})
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace())
    default = "twelvelabs://api.twelvelabs.io"  # gists do not say which API host made them
    assert ids(lineage.inputs) == [(default, "a001"), (default, "a002")]
    assert ids(lineage.outputs) == [(f"sqlite://{Path(tmp_path) / 'gists.db'}", "gists_lineage")]


def test_store_lineage_names_a_postgres_table(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG", "postgres://u:pw@db.example.com:5433/gistdb")
    op = StoreGistsOperator(task_id="s", gists=[], sql_conn_id="gist_pg", table="gists")
    op._lineage_done = (op.make_store(), [])
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace())
    assert ids(lineage.outputs) == [("postgres://db.example.com:5433", "gistdb.public.gists")]
    assert "pw" not in repr(lineage.outputs)


def test_refresh_lineage_index_in_table_out(monkeypatch, tmp_path):
    refresher, _ = make(4)
    op = RefreshGistsOperator(task_id="r", index=INDEX, table="gists_refresh")
    monkeypatch.setattr(op, "make_refresher", lambda: refresher)
    op.execute(context={})
    lineage = op.get_openlineage_facets_on_complete(SimpleNamespace())
    assert ids(lineage.inputs) == [("twelvelabs://127.0.0.1:8765", f"indexes/{INDEX}")]
    assert ids(lineage.outputs) == [(f"sqlite://{Path(tmp_path) / 'gists.db'}", "gists_refresh")]
    facet = lineage.job_facets[FACET_NAME]
    assert facet.model == refresher.model and facet.promptVersion == refresher.prompt_version
