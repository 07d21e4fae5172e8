"""StoreGistsOperator.execute() with a real outlet-event accessor, no metadata DB."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.operators.store import GISTS_ASSET, StoreGistsOperator, collect_gists
from airflow_provider_gist.storage import ObjectGistStore, SqlGistStore
from tests.helpers.postgres import (
    airflow_conn_json,
    postgres_uri,  # noqa: F401  (session fixture)
)
from tests.helpers.storage_samples import logs as _logs
from tests.helpers.storage_samples import make_gist


class LazySeq(Sequence):
    """Stands in for the lazy sequence a mapped task's output resolves to (not a list)."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):  # type: ignore[override]
        return self._items[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    return tmp_path


def run(op: StoreGistsOperator) -> tuple[dict, OutletEventAccessors]:
    events = OutletEventAccessors()
    result = op.execute({"outlet_events": events})  # type: ignore[arg-type]
    return result, events


def test_collect_gists_shapes() -> None:
    g = make_gist()
    assert collect_gists(None) == []
    assert collect_gists(g) == [g]
    assert collect_gists([g, None, g]) == [g, g]
    assert collect_gists(LazySeq([None, g])) == [g]
    with pytest.raises(GistValidationError):
        collect_gists("not gists")
    with pytest.raises(GistValidationError):
        collect_gists(42)


def test_stores_mapped_output_and_sets_asset_event(home: Path, caplog, capfd) -> None:
    caplog.set_level(logging.INFO)
    gists = LazySeq([make_gist(f"vid{i}", topics=["Fishing", "Boats"]) for i in range(25)] + [None])
    op = StoreGistsOperator(task_id="store", gists=gists)
    assert op.outlets == [GISTS_ASSET]
    result, events = run(op)
    refs = [f"vid{i}" for i in range(25)]
    assert result == {
        "stored": 25,
        "store": "sql",
        "location": f"{home / 'gists.db'} (table video_gists)",
        "video_refs": refs,
    }
    json.dumps(result)  # JSON-safe for XCom
    assert events[GISTS_ASSET].extra == {"stored": 25, "video_refs": refs[:20]}
    assert SqlGistStore().count() == 25
    # what a person reads in the task log
    assert (
        "title: 'Sunrise Harbour Fishing'; topics: Fishing, Boats; hashtags: #Fishing #HarbourLife"
        in _logs(caplog, capfd)
    )


def test_rerun_is_idempotent(home: Path) -> None:
    op = StoreGistsOperator(task_id="store", gists=[make_gist("a"), make_gist("b")])
    run(op)
    run(op)
    assert SqlGistStore().count() == 2


def test_invalid_gist_fails_before_any_write(home: Path) -> None:
    op = StoreGistsOperator(task_id="store", gists=[make_gist("a"), make_gist("../b")])
    with pytest.raises(GistValidationError, match="video_ref"):
        run(op)
    assert not (home / "gists.db").exists()


def test_nothing_to_store_skips_without_event(home: Path) -> None:
    op = StoreGistsOperator(task_id="store", gists=[None, None])
    with pytest.raises(AirflowSkipException):
        run(op)


def test_objects_store_and_custom_outlet(tmp_path: Path) -> None:
    mine = Asset(uri="x-twelvelabs://gists/mine", name="my_gists")
    op = StoreGistsOperator(
        task_id="store",
        gists=make_gist("vid1"),
        store="objects",
        object_base=f"file://{tmp_path}/o/",
        outlets=[mine],
    )
    result, events = run(op)
    assert result["location"] == f"file://{tmp_path}/o"
    assert events[mine].extra == {"stored": 1, "video_refs": ["vid1"]}
    assert ObjectGistStore(f"file://{tmp_path}/o/").count() == 1


def test_init_stores_arguments_only() -> None:
    # Nothing is validated or connected at parse time: templated values are still strings there.
    op = StoreGistsOperator(task_id="store", gists="{{ ti.xcom_pull('gist') }}", store="{{ bad }}",
                            sql_conn_id="{{ params.conn }}")  # fmt: skip
    assert op.store == "{{ bad }}"
    assert {"gists", "sql_conn_id", "table", "object_base"} <= set(op.template_fields)


def test_unknown_store_is_refused(home: Path) -> None:
    with pytest.raises(GistValidationError, match="store must be one of sql, objects"):
        run(StoreGistsOperator(task_id="store", gists=[make_gist()], store="redis"))


@pytest.mark.postgres
def test_postgres_summary_shows_conn_id_not_uri(request, monkeypatch, caplog, capfd) -> None:
    uri = request.getfixturevalue("postgres_uri")
    password = "op-pw-never-shown-77"
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PG_OP", airflow_conn_json(uri, password=password))
    caplog.set_level(logging.DEBUG)
    op = StoreGistsOperator(task_id="store", gists=[make_gist()], sql_conn_id="gist_pg_op", table="op_check")
    try:
        result, _ = run(op)
        assert result["location"] == "connection gist_pg_op (table op_check)"
        assert password not in json.dumps(result)
        assert password not in _logs(caplog, capfd)
    finally:
        SqlGistStore("gist_pg_op", table="op_check").hook.run("DROP TABLE IF EXISTS op_check")
