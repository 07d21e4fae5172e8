"""The ``gist_manual`` example DAG end to end: ``dag.test()`` against the emulator.

Each run goes through every task (validate, index, mapped ingest, the deferrable sensor with its
trigger run in-process, mapped gist, store, summarize); the tests then read what a person would
see: the stored rows (SQLite under the tests' AIRFLOW_HOME) and the run summary XCom behind the
UI's *Gists* run tab.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from tests.helpers.dags import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

URL = "https://videos.example.com/sunrise_harbour_fishing.mp4"


@pytest.fixture(scope="module")
def manual_dag(airflow_db):
    return load_dag("gist_manual")


def _calls(emu) -> dict[str, int]:
    return requests.get(f"{emu.url}/_emulator/stats", timeout=5).json()["calls"]


def _summary(run) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_provider_gist.plugins.summary import SUMMARY_XCOM_KEY

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run.run_id, dag_ids="gist_manual", key=SUMMARY_XCOM_KEY)
        ).one()
        return XComModel.deserialize_value(row)


def _states(run) -> dict[str, set[str]]:
    from airflow.utils.session import create_session

    with create_session() as session:
        states: dict[str, set[str]] = {}
        for ti in run.get_task_instances(session=session):
            states.setdefault(ti.task_id, set()).add(str(ti.state))
        return states


def test_dag_parses_with_a_form(manual_dag) -> None:
    params = manual_dag.params.dump()
    assert params["index_name"] == "gist-manual"
    assert params["types"] == ["title", "topic", "hashtag"]
    assert params["model"] == "pegasus1.2"
    schema = {name: manual_dag.params.get_param(name).schema for name in params}
    assert schema["asset_ids"]["items"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    assert schema["video_urls"]["items"]["pattern"] == "^https?://"
    assert schema["types"]["items"]["enum"] == ["title", "topic", "hashtag"]
    assert schema["model"]["enum"] == ["pegasus1.2", "pegasus1.5"]
    for name in ("index_name", "video_urls", "asset_ids", "types", "model"):
        assert schema[name]["title"], name
        assert manual_dag.params.get_param(name).description, name


def test_form_refuses_a_bad_asset_id_naming_the_field(manual_dag) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(manual_dag.params)
    with pytest.raises(ParamValidationError, match="param asset_ids: 'bad id!' does not match"):
        params["asset_ids"] = ["good-id", "bad id!"]
    with pytest.raises(ParamValidationError, match="param video_urls: 'ftp://"):
        params["video_urls"] = ["ftp://example.com/v.mp4"]
    with pytest.raises(ParamValidationError, match="param types"):
        params["types"] = ["title", "summary"]
    params["asset_ids"] = ["6298d673f1090f1100476d4c"]  # a good one is accepted


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"video_urls": [], "asset_ids": []}, "give at least one video"),
        ({"video_urls": ["https://ok.example/v.mp4", "not a url"]}, r"video_urls\[1\]"),
        ({"video_urls": [], "asset_ids": ["../etc"]}, r"asset_ids\[0\]"),
        ({"video_urls": [URL], "types": ["title", "summary"]}, "types"),
        ({"video_urls": [URL], "model": "gpt"}, "model"),
    ],
)
def test_validate_task_names_the_field(manual_dag, params: dict[str, Any], message: str) -> None:
    """API and CLI triggers skip the form: the first task checks again, naming the field."""
    from airflow.sdk.exceptions import AirflowFailException

    base = {"index_name": "gist-manual", "types": ["title"], "model": "pegasus1.2", "asset_ids": []}
    with pytest.raises(AirflowFailException, match=message):
        manual_dag.get_task("validate").python_callable(params={**base, **params})


def test_manual_run_from_urls_stores_and_summarises(manual_dag, tl_conn, emu) -> None:
    from airflow.sdk import DagRunState

    from airflow_provider_gist.storage import SqlGistStore

    conf = {
        "index_name": "gist-manual-it",
        "video_urls": [URL, URL],  # a duplicate line is ingested once
        "types": ["title", "hashtag"],
        "model": "pegasus1.5",
        "poll_interval": 1,
    }
    run = run_dag(manual_dag, conf=conf)
    assert run.state == DagRunState.SUCCESS, _states(run)
    states = _states(run)
    assert states["index_asset"] == {"skipped"}  # no asset ids: that branch expands to nothing
    assert states["summarize"] == {"success"}

    summary = _summary(run)
    assert summary["count"] == 1
    assert summary["stored"] == 1
    (gist,) = summary["gists"]
    assert gist["title"] == "Sunrise Harbour Fishing"
    assert gist["video_url"] == URL
    assert gist["model"] == "pegasus1.5"
    assert gist["topics"] is None  # not requested
    assert gist["hashtags"] and all(not tag.startswith("#") for tag in gist["hashtags"])

    # The run's Gists tab reads the same XCom through the view's own query.
    from airflow.utils.session import create_session

    from airflow_provider_gist.plugins.app import read_run_summary
    from airflow_provider_gist.plugins.render import render_run

    with create_session() as session:
        assert read_run_summary(session, "gist_manual", run.run_id) == summary
        assert read_run_summary(session, "gist_manual", "no-such-run") is None
    page = render_run(summary, dag_id="gist_manual", run_id=run.run_id, list_url="/gists/")
    assert "Sunrise Harbour Fishing" in page and f'href="{URL}"' in page

    stored = SqlGistStore().get(gist["index_id"], gist["video_ref"])
    assert stored is not None
    assert stored["title"] == "Sunrise Harbour Fishing"
    assert stored["types"] == ["title", "hashtag"]

    # A second run with the same URL reuses the asset: nothing is uploaded again.
    uploads = _calls(emu).get("POST /assets", 0)
    assert uploads == 1
    assert run_dag(manual_dag, conf=conf).state == DagRunState.SUCCESS
    assert _calls(emu).get("POST /assets", 0) == 1


def test_manual_run_from_asset_ids(manual_dag, tl_conn, emu) -> None:
    from airflow.sdk import DagRunState

    from airflow_provider_gist.hooks.gist import GistHook

    hook = GistHook()
    try:
        asset_id = str(
            hook.create_asset_from_url("https://videos.example.com/mountain_bike_trail.mp4")["_id"]
        )
    finally:
        hook.close()

    # Full conf: dag.test() in one process keeps the previous run's conf as the params' values.
    conf = {
        "index_name": "gist-manual-it",
        "video_urls": [],
        "asset_ids": [asset_id],
        "types": ["title", "topic", "hashtag"],
        "model": "pegasus1.2",
        "poll_interval": 1,
    }
    run = run_dag(manual_dag, conf=conf)
    assert run.state == DagRunState.SUCCESS, _states(run)
    assert _states(run)["ingest_url"] == {"skipped"}
    (gist,) = _summary(run)["gists"]
    assert gist["video_ref"] == asset_id
    assert gist["video_url"] is None
    assert gist["title"] == "Mountain Bike Trail"
    assert gist["model"] == "pegasus1.2"
    assert gist["topics"] and gist["hashtags"]
