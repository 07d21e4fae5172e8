"""StoreGistsOperator inside a real DAG run (``dag.test()``): mapped input, skips, rows, asset events.

The test DAG is a tiny DAG file the test writes to a temp folder and parses; ``run_dag``
(tests/helpers/dags.py) registers it in the metadata DB, where ``dag.test()`` looks for it.
Needs the ``airflow_db`` fixture of tests/conftest.py (throwaway AIRFLOW_HOME, migrated DB).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from airflow_provider_gist.storage import ObjectGistStore, SqlGistStore
from tests.helpers.dags import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DAG_ID = "gist_store_it"

DAG_FILE = textwrap.dedent(
    '''
    """Test DAG: three mapped gist producers (one skips), stored to SQL and to objects."""
    from airflow.sdk import DAG, TriggerRule, task
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_provider_gist.operators.store import StoreGistsOperator

    with DAG(dag_id="gist_store_it", schedule=None, params={"sql_conn_id": "", "object_base": ""}):

        @task
        def gist(n: int) -> dict:
            if n == 2:
                raise AirflowSkipException("video unchanged")  # like a catalog refresh skipping
            return {
                "id": f"gen-{n}", "video_ref": f"vid{n}", "video_ref_type": "asset_id",
                "index_id": "idx1", "model": "pegasus1.2", "types": ["title", "topic", "hashtag"],
                "prompt_version": "gist-v1", "title": f"Video {n} \\"quoted\\" 🎣",
                "topics": ["Fishing"], "hashtags": ["Harbour"],
                "usage": {"output_tokens": 10 + n, "input_tokens": None},
                "generated_at": f"2026-11-2{n}T10:00:00+00:00", "source_updated_at": None,
            }

        gists = gist.expand(n=[1, 2, 3])
        StoreGistsOperator(task_id="store_sql", gists=gists, sql_conn_id="{{ params.sql_conn_id }}",
                           trigger_rule=TriggerRule.NONE_FAILED)
        StoreGistsOperator(task_id="store_objects", gists=gists, store="objects",
                           object_base="{{ params.object_base }}", trigger_rule=TriggerRule.NONE_FAILED)
    '''
)


@pytest.fixture
def store_dag(airflow_db, tmp_path: Path):
    """The test DAG, parsed from its own file (no import errors)."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "gist_store_it.py").write_text(DAG_FILE)
    return load_dag(DAG_ID, folder)


def test_store_operator_in_a_dag_run(store_dag, tmp_path: Path, monkeypatch) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.sdk import DagRunState
    from airflow.utils.session import create_session
    from sqlalchemy import select

    db = tmp_path / "gists.db"
    monkeypatch.setenv("AIRFLOW_CONN_GIST_IT_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    object_base = f"file://{tmp_path / 'objects'}/"
    conf = {"sql_conn_id": "gist_it_sqlite", "object_base": object_base}

    run = run_dag(store_dag, conf=conf)
    assert run.state == DagRunState.SUCCESS
    run_id = run.run_id

    sql_store = SqlGistStore("gist_it_sqlite")
    objects = ObjectGistStore(object_base)
    for store in (sql_store, objects):
        assert store.count() == 2  # vid2 was skipped upstream: its None entry is ignored
        got = store.get("idx1", "vid3")
        assert got is not None
        assert got["title"] == 'Video 3 "quoted" 🎣'
        assert got["usage"] == {"output_tokens": 13, "input_tokens": None}

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "x-twelvelabs://gists", AssetEvent.source_run_id == run_id)
        ).all()
        extras = {e.source_task_id: e.extra for e in events}
    assert extras == {
        "store_sql": {"stored": 2, "video_refs": ["vid1", "vid3"]},
        "store_objects": {"stored": 2, "video_refs": ["vid1", "vid3"]},
    }

    # A second run replaces the rows instead of adding to them.
    assert run_dag(store_dag, conf=conf).state == DagRunState.SUCCESS
    assert sql_store.count() == 2
    assert objects.count() == 2
