"""OpenLineage end to end: the example DAGs run with ``dag.test()`` with the OpenLineage provider on.

The events go through the provider's own listener and a transport that openlineage-python ships:
the ``file`` transport (``[openlineage] transport``, set here as ``AIRFLOW__OPENLINEAGE__TRANSPORT``
as a deployment would), which appends each event as one JSON line. Neither package ships a
test-only or in-memory transport; the file one keeps the events in the test's folder and shows
what a lineage backend would receive, serialized.

Two things differ from a deployment, both for the sake of one process:

- Airflow integrates plugins, the OpenLineage listener among them, once per process, and the
  provider's plugin registers its listener only if a transport was configured when it was first
  imported. An earlier test may have loaded it without one, so the test registers a listener of
  its own on the task runner's listener manager, and removes it afterwards.
- ``[openlineage] execute_in_thread``: the listener emits from a thread instead of a forked copy
  of the test process (which also runs the emulator's server thread).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_gist.lineage import FACET_NAME
from airflow_provider_gist.storage import DEFAULT_TABLE
from airflow_provider_gist.storage.sql import SqlGistStore
from tests.conftest import TEST_API_KEY
from tests.helpers.dags import load_dag, run_dag

pytest.importorskip("airflow.providers.openlineage")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HOST = "videos.example.com"
VIDEO = "/sunrise_harbour_fishing.mp4"
#: The namespace of videos named only by their id (a stored gist does not say which API made it).
DEFAULT_API = "twelvelabs://api.twelvelabs.io"

Events = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lineage_events(tmp_path: Path, monkeypatch) -> Iterator[Events]:
    """The OpenLineage provider on, writing to a file; yields a reader of the events so far."""
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener
    from airflow.sdk.listener import get_listener_manager

    # First the manager, with the plugins integrated as they are (before the transport is set),
    # so the provider's own plugin cannot add a process-wide listener that outlives this test.
    manager = get_listener_manager()
    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "gist-tests")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    # The emitting thread is waited for up to this long; a loaded CI machine can be slow.
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT", "60")
    listener = OpenLineageListener()
    manager.add_listener(listener)

    def read() -> list[dict[str, Any]]:
        if not events_file.exists():
            return []
        return [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]

    try:
        yield read
    finally:
        manager.pm.unregister(listener)


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> SqlGistStore:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # the embedded SQLite default lives here
    return SqlGistStore()


def indexed_assets(emu, index_id: str) -> list[str]:
    """The ids of the indexed assets of an index, as the API lists them."""
    response = requests.get(
        f"{emu.base_url}/indexes/{index_id}/indexed-assets", headers={"x-api-key": TEST_API_KEY}, timeout=5
    )
    response.raise_for_status()
    return [item["_id"] for item in response.json()["data"]]


def completed(events: list[dict[str, Any]], job: str) -> list[dict[str, Any]]:
    """The COMPLETE events of the task job ``<dag_id>.<task_id>``."""
    found = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job]
    assert found, f"no COMPLETE event of {job}: {sorted({e['job']['name'] for e in events})}"
    return found


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def gist_facet(event: dict[str, Any]) -> dict[str, Any]:
    facets = event["job"].get("facets") or {}
    assert FACET_NAME in facets, f"{event['job']['name']}: no {FACET_NAME} job facet in {sorted(facets)}"
    return dict(facets[FACET_NAME])


def test_complete_events_name_videos_in_and_gists_out(
    airflow_db, tl_conn, emu, store, tmp_path: Path, lineage_events: Events
) -> None:
    from airflow.sdk import DagRunState

    api = f"twelvelabs://127.0.0.1:{emu.port}"
    table_out = (f"sqlite://{tmp_path / 'gists.db'}", DEFAULT_TABLE)

    # One video through ingest -> wait -> generate (deferred) -> store.
    signed = f"https://{HOST}{VIDEO}?sig=s3cr3t"
    conf = {"video_urls": [signed], "index_name": "it-lineage", "types": ["title"]}
    run = run_dag(load_dag("gist_index_and_generate"), conf=conf)
    assert run.state == DagRunState.SUCCESS
    (row,) = store.list_gists()
    asset, index_id = row["video_ref"], row["index_id"]

    events = lineage_events()
    (ingest,) = completed(events, "gist_index_and_generate.video.ingest")
    assert names(ingest["inputs"]) == [(f"https://{HOST}", VIDEO)]  # no signature in the name
    (indexed,) = indexed_assets(emu, index_id)
    assert names(ingest["outputs"]) == [(api, asset), (api, f"indexes/{index_id}/{indexed}")]

    (generate,) = completed(events, "gist_index_and_generate.video.generate_gist")
    assert names(generate["inputs"]) == [(api, asset)]
    facet = gist_facet(generate)
    assert (facet["model"], facet["promptVersion"]) == (row["model"], row["prompt_version"])
    assert facet["types"] == ["title"]

    (stored,) = completed(events, "gist_index_and_generate.video.store_gist")
    assert names(stored["inputs"]) == [(DEFAULT_API, asset)]
    assert names(stored["outputs"]) == [table_out]
    facet = gist_facet(stored)
    assert (facet["model"], facet["promptVersion"]) == (row["model"], row["prompt_version"])

    # The catalog refresh of a seeded index, into the same (default) store.
    seeded = requests.post(
        f"{emu.url}/_emulator/seed", json={"index_name": "it-lineage-catalog", "count": 2}, timeout=10
    )
    seeded.raise_for_status()
    catalog = seeded.json()["index_id"]
    refresh = run_dag(load_dag("gist_catalog_refresh"), conf={"index": catalog, "concurrency": 2})
    assert refresh.state == DagRunState.SUCCESS
    assert store.count(catalog) == 2
    refreshed = store.list_gists(index_id=catalog)[0]

    events = lineage_events()
    (refreshing,) = completed(events, "gist_catalog_refresh.refresh_gists")
    assert names(refreshing["inputs"]) == [(api, f"indexes/{catalog}")]
    assert names(refreshing["outputs"]) == [table_out]
    facet = gist_facet(refreshing)
    assert (facet["model"], facet["promptVersion"]) == (refreshed["model"], refreshed["prompt_version"])

    assert TEST_API_KEY not in json.dumps(events)
    # What this provider reports names no signature. (Airflow's own ``airflow`` run facet still
    # carries the run's conf, signed URLs and all, as the DAG run's page shows it.)
    ours = [(e["inputs"], e["outputs"], e["job"].get("facets", {}).get(FACET_NAME)) for e in events]
    assert "s3cr3t" not in json.dumps(ours)
