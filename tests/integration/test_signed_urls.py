"""A signed video URL's signature never reaches what Airflow stores about a run.

Airflow stores a task's rendered template fields (``rendered_task_instance_fields``, shown in
the UI's *Rendered Template* tab) before ``execute()`` runs, redacting only the values already
registered with the secrets masker, and stores the map index label rendered from
``map_index_template`` as it is. So the ingest operators register a URL's query when their
fields are rendered, and the map index label is the URL without its query.

Each test uses a fresh signature: the secrets masker is process-wide, and a signature registered
by an earlier test would hide a leak.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.helpers.dags import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PUBLIC_URL = "https://videos.example.com/sunrise_harbour_fishing.mp4"


def _signed() -> tuple[str, str]:
    signature = f"SIG{uuid.uuid4().hex}"
    return f"{PUBLIC_URL}?X-Amz-Expires=3600&X-Amz-Signature={signature}", signature


def _stored_for(run: Any) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """The run's rendered fields (one dict per task instance) and map index labels (by task)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        fields = session.scalars(
            select(RTIF.rendered_fields).where(RTIF.dag_id == run.dag_id, RTIF.run_id == run.run_id)
        ).all()
        labels = {
            f"{task_id}[{map_index}]": label
            for task_id, map_index, label in session.execute(
                select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.rendered_map_index).where(
                    TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
                )
            )
        }
    return list(fields), labels


def test_gist_manual_keeps_the_signature_out_of_rendered_fields_and_labels(
    airflow_db, tl_conn, emu, tmp_path, monkeypatch
) -> None:
    from airflow.sdk import DagRunState

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    url, signature = _signed()
    conf = {
        "index_name": "signed-urls",
        "video_urls": [url],
        "asset_ids": [],
        "types": ["title"],
        "model": "pegasus1.2",
        "poll_interval": 1,
    }
    run = run_dag(load_dag("gist_manual"), conf=conf)
    assert run.state == DagRunState.SUCCESS

    fields, labels = _stored_for(run)
    rendered = json.dumps(fields)
    assert "***" in rendered  # the URL was rendered, with its secret part masked
    assert signature not in rendered
    assert labels["upload.ingest[0]"] == PUBLIC_URL  # the label: the URL without its query
    assert signature not in json.dumps(labels)


def test_example_dag_keeps_the_signature_out_of_rendered_fields(
    airflow_db, tl_conn, emu, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    url, signature = _signed()
    run = run_dag(
        load_dag("gist_index_and_generate"),
        conf={"video_urls": [url], "index_name": "signed-urls", "types": ["title"]},
    )
    assert str(run.state) == "success"
    fields, labels = _stored_for(run)
    assert any("video_url" in f for f in fields)
    assert signature not in json.dumps(fields)
    assert signature not in json.dumps(labels)
