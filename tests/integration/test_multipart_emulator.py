"""Multipart uploads against the emulator, inside real ``dag.test()`` runs with retries.

An emulator of this module's own serves 256 KiB chunks (the API chooses the chunk size; 5 MiB on
the shared emulator), so a file of a few MB makes a multipart upload of a dozen chunks. The
operators get ``multipart_threshold=1 MiB``. ``GET /_emulator/uploads`` counts every chunk PUT and
every report per chunk: "chunks already reported are never re-sent" is asserted on those.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from tests.conftest import TEST_API_KEY, twelvelabs_conn_json
from tests.helpers.dags import load_dags, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHUNK = 256 * 1024
SIZE = 12 * CHUNK + 1234  # 13 chunks, the last a short one
CREATE_SESSION = "POST /assets/multipart-uploads"

DAG_SOURCE = textwrap.dedent(
    """
    from datetime import timedelta

    from airflow.sdk import DAG, Param

    from airflow_provider_gist.operators.gist import GenerateGistOperator
    from airflow_provider_gist.operators.ingest import CreateAssetOperator, IngestVideoOperator

    PARAMS = {"file_path": Param("/tmp/none.mp4", type="string")}
    BIG = {"multipart_threshold": 1024 * 1024, "upload_concurrency": 3}
    RETRY = {"retries": 1, "retry_delay": timedelta(0)}

    with DAG("gist_multipart_it_gist", schedule=None, params=PARAMS) as gist_dag:
        asset = CreateAssetOperator(
            task_id="asset", file_path="{{ params.file_path }}", multiple_outputs=True,
            poll_interval=0.05, asset_timeout=30, **BIG, **RETRY,
        )
        GenerateGistOperator(task_id="gist", asset_id=asset.output["asset_id"], types=["title", "hashtag"])

    with DAG("gist_multipart_it_ingest", schedule=None, params=PARAMS) as ingest_dag:
        IngestVideoOperator(
            task_id="ingest", file_path="{{ params.file_path }}", index_name="multipart-catalog",
            create_index_if_missing=True, poll_interval=0.05, asset_timeout=30, **BIG, **RETRY,
        )
    """
)


@pytest.fixture(scope="module")
def mp_emulator() -> Iterator[Any]:
    from airflow_provider_gist.emulator.server import start_emulator

    handle = start_emulator(
        api_key=TEST_API_KEY, asset_ready_seconds=0.2, indexing_seconds=0.4, multipart_chunk_size=CHUNK
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def mp_emu(mp_emulator, monkeypatch) -> Iterator[Any]:
    requests.post(f"{mp_emulator.url}/_emulator/reset", timeout=5).raise_for_status()
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(mp_emulator.url, max_attempts=4, retry_deadline=30),
    )
    yield mp_emulator
    requests.delete(f"{mp_emulator.url}/_emulator/faults", timeout=5)


@pytest.fixture(scope="module")
def dags(airflow_db, tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("multipart_dags")
    path = folder / "gist_multipart_it_dags.py"
    path.write_text(DAG_SOURCE)
    by_id = load_dags(path)
    return SimpleNamespace(gist=by_id["gist_multipart_it_gist"], ingest=by_id["gist_multipart_it_ingest"])


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "harbour_night_market.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(i % 251 for i in range(SIZE - 12)))
    return path


def uploads(emu) -> dict[str, Any]:
    return requests.get(f"{emu.url}/_emulator/uploads", timeout=5).json()


def calls(emu) -> dict[str, int]:
    return requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()["calls"]


def api(emu, path: str) -> Any:
    resp = requests.get(f"{emu.base_url}/{path}", headers={"x-api-key": TEST_API_KEY}, timeout=5)
    resp.raise_for_status()
    return resp.json()


def run(dag, video) -> Any:
    from airflow.sdk import DagRunState

    dag_run = run_dag(dag, conf={"file_path": str(video)})
    assert dag_run.state == DagRunState.SUCCESS, f"{dag.dag_id} ended {dag_run.state}"
    return dag_run


def xcom(dag_run, task_id: str) -> Any:
    from tests.integration.test_ingest_emulator import result

    return result(dag_run, task_id)


def tries(dag_run, task_id: str) -> int:
    from tests.integration.test_ingest_emulator import task_instances

    return task_instances(dag_run)[(task_id, -1)][1]


def test_a_big_file_goes_up_in_parts_to_a_ready_asset_and_a_gist(mp_emu, dags, video, monkeypatch):
    sent: list[tuple[str, dict[str, str], bool]] = []
    send = requests.Session.send

    def recording_send(self, request, **kwargs):
        sent.append((request.url, dict(request.headers), kwargs.get("allow_redirects", True)))
        return send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", recording_send)
    dag_run = run(dags.gist, video)

    chunk_puts = [(url, headers, follow) for url, headers, follow in sent if "/_uploads/" in url]
    assert len(chunk_puts) == 13
    for _, headers, follow in chunk_puts:
        assert {k.lower() for k in headers} & {"x-api-key", "authorization"} == set()
        assert follow is False
    assert any(h.get("x-api-key") == TEST_API_KEY for url, h, _ in sent if "/v1.3/" in url)

    asset_id = xcom(dag_run, "asset")["asset_id"]
    asset = api(mp_emu, f"assets/{asset_id}")
    assert asset["status"] == "ready"
    assert asset["method"] == "multipart"
    assert asset["size"] == SIZE
    assert "gist_ingest_key" in asset["user_metadata"]  # set through the session, no PATCH needed
    gist = xcom(dag_run, "gist")
    assert gist["title"] == "Harbour Night Market"

    (session,) = uploads(mp_emu)["uploads"]
    assert session["asset_id"] == asset_id and session["completed"]
    assert session["total_chunks"] == 13
    assert session["chunk_puts"] == {str(i): 1 for i in range(1, 14)}
    assert session["chunk_reports"] == {str(i): 1 for i in range(1, 14)}
    stats = calls(mp_emu)
    assert "POST /assets" not in stats  # no direct upload
    assert "PATCH /assets/{asset_id}/user-metadata" not in stats


def test_a_task_failed_mid_upload_resumes_on_retry_without_resending_reported_chunks(mp_emu, dags, video):
    # The session comes with URLs for chunks 1-10; asking for chunk 11's fails the first try
    # (a 400 is never retried by the client), after chunks 1-10 were sent and reported.
    requests.post(
        f"{mp_emu.url}/_emulator/faults",
        json={
            "op": "get_presigned_urls",
            "kind": "status",
            "status": 400,
            "count": 1,
            "message": "emulated crash",
        },
        timeout=5,
    ).raise_for_status()
    dag_run = run(dags.ingest, video)

    assert tries(dag_run, "ingest") == 2  # it really failed once and was retried
    stats = calls(mp_emu)
    assert stats[CREATE_SESSION] == 1  # the retry resumed the session of the first try
    (session,) = uploads(mp_emu)["uploads"]
    assert session["completed"]
    # Every chunk was PUT once and reported once: nothing the first try reported went again.
    assert session["chunk_puts"] == {str(i): 1 for i in range(1, 14)}
    assert session["chunk_reports"] == {str(i): 1 for i in range(1, 14)}
    out = xcom(dag_run, "ingest")
    assert out["filename"] == video.name
    assert api(mp_emu, f"assets/{out['asset_id']}")["status"] == "ready"
    assert stats["POST /indexes/{index-id}/indexed-assets"] == 1


def test_a_second_run_finds_the_multipart_asset_by_its_ingest_key(mp_emu, dags, video):
    first = xcom(run(dags.ingest, video), "ingest")
    second = xcom(run(dags.ingest, video), "ingest")
    assert first == second
    assert calls(mp_emu)[CREATE_SESSION] == 1
    assert uploads(mp_emu)["chunk_puts"] == 13


def test_an_expired_session_is_replaced_by_a_new_one_on_retry(mp_emu, video):
    """Direct execute() calls sharing one state store: try 2 comes a day later."""
    from airflow_provider_gist.operators.ingest import CreateAssetOperator

    store: dict[str, Any] = {}
    state = type(
        "Store",
        (),
        {"get": lambda self, k, d=None: store.get(k, d), "set": lambda self, k, v: store.__setitem__(k, v)},
    )()
    requests.post(
        f"{mp_emu.url}/_emulator/faults",
        json={"op": "get_presigned_urls", "kind": "status", "status": 400, "count": 1},
        timeout=5,
    ).raise_for_status()
    op = CreateAssetOperator(
        task_id="asset", file_path=str(video), multipart_threshold=1024 * 1024, poll_interval=0.05
    )
    with pytest.raises(Exception, match="400"):
        op.execute({"task_state_store": state})
    first_upload = store["gist_multipart_upload"]["upload_id"]
    requests.post(f"{mp_emu.url}/_emulator/clock", json={"advance": 86_401}, timeout=5).raise_for_status()

    out = op.execute({"task_state_store": state})
    assert out["status"] == "ready"
    assert calls(mp_emu)[CREATE_SESSION] == 2
    sessions = {s["upload_id"]: s for s in uploads(mp_emu)["uploads"]}
    assert not sessions[first_upload]["completed"]
    assert store["gist_multipart_upload"]["upload_id"] != first_upload
