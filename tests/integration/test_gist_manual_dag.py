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
    assert states["asset.index"] == {"skipped"}  # no asset ids: no asset lane
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
    assert _states(run)["upload.ingest"] == {"skipped"}
    (gist,) = _summary(run)["gists"]
    assert gist["video_ref"] == asset_id
    assert gist["video_url"] is None
    assert gist["title"] == "Mountain Bike Trail"
    assert gist["model"] == "pegasus1.2"
    assert gist["topics"] and gist["hashtags"]


# --- one lane per video ---------------------------------------------------------------------------


def test_one_bad_video_does_not_stop_the_others(manual_dag, tl_conn, emu, tmp_path, monkeypatch) -> None:
    """A video whose processing fails (``corrupt`` in its name) fails its own lane only.

    The good videos' gists are generated and stored (in one batch), the summary lists them, and
    the run still ends failed, naming what is missing.
    """
    from airflow.sdk import DagRunState

    from airflow_provider_gist.storage import SqlGistStore

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))  # a gist store of this test's own
    good = [URL, "https://videos.example.com/mountain_trail_running.mp4"]
    conf = {
        "index_name": "gist-manual-isolation",
        "video_urls": [good[0], "https://videos.example.com/corrupt_night_market.mp4", good[1]],
        "asset_ids": [],
        "types": ["title", "topic", "hashtag"],
        "model": "pegasus1.2",
        "poll_interval": 1,
    }
    run = run_dag(manual_dag, conf=conf)
    assert run.state == DagRunState.FAILED
    states = _states(run)
    assert states["upload.ingest"] == {"success", "failed"}
    assert states["store"] == {"success"}
    assert states["summarize"] == {"failed"}  # after pushing the summary: the run shows the loss

    rows = SqlGistStore().list_gists()
    assert {r["title"] for r in rows} == {"Sunrise Harbour Fishing", "Mountain Trail Running"}
    assert {r["dag_id"] for r in rows} == {"gist_manual"}
    summary = _summary(run)
    assert summary["count"] == 2 and summary["stored"] == 2
    assert {g["video_url"] for g in summary["gists"]} == set(good)


# --- file paths from the form: only under the deployment's locations -----------------------------


@pytest.fixture
def videos_dir(tmp_path, monkeypatch):
    """An allowed folder with one video in it, and gist_manual parsed with it allowed."""
    allowed = tmp_path / "videos"
    allowed.mkdir()
    (allowed / "sunrise_harbour_fishing.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096)
    monkeypatch.setenv("GIST_MANUAL_FILE_PREFIXES", f"{allowed}, s3://aws_default@bucket/videos/")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    return allowed


def test_form_file_paths_only_under_the_allowed_locations(videos_dir, airflow_db, tl_conn, emu) -> None:
    from airflow.sdk import DagRunState
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_gist.storage import SqlGistStore

    dag = load_dag("gist_manual")  # parsed now: the allow-list is read at parse time
    outside = videos_dir.parent / "secret.mp4"
    outside.write_bytes(b"\x00" * 64)
    (videos_dir / "link.mp4").symlink_to(outside)  # inside by name, outside in fact
    base = {"index_name": "gist-manual", "types": ["title"], "model": "pegasus1.2"}
    validate = dag.get_task("validate").python_callable
    for path, match in [
        (str(outside), r"file_paths\[0\] .*secret\.mp4.* is not under an allowed location"),
        ("/etc/hostname", "is not under an allowed location"),
        (f"{videos_dir}-old/x.mp4", "is not under an allowed location"),
        (str(videos_dir / "link.mp4"), "is not under an allowed location"),
        ("s3://other_conn@bucket/videos/x.mp4", "is not under an allowed location"),
        (f"{videos_dir}/../secret.mp4", r"file_paths\[0\]: .*'\.\.'"),
    ]:
        with pytest.raises(AirflowFailException, match=match):
            validate(params={**base, "file_paths": [path]})
    validate(params={**base, "file_paths": ["s3://aws_default@bucket/videos/a.mp4"]})  # allowed

    refused = run_dag(dag, conf={**base, "video_urls": [], "asset_ids": [], "file_paths": [str(outside)]})
    assert refused.state == DagRunState.FAILED
    assert _calls(emu).get("POST /assets", 0) == 0  # nothing uploaded

    conf = {
        **base,
        "video_urls": [],
        "asset_ids": [],
        "file_paths": [str(videos_dir / "sunrise_harbour_fishing.mp4")],
    }
    run = run_dag(dag, conf={**conf, "poll_interval": 1})
    assert run.state == DagRunState.SUCCESS, _states(run)
    (stored,) = SqlGistStore().list_gists()
    assert stored["title"] == "Sunrise Harbour Fishing"


def test_without_allowed_locations_the_form_takes_no_file_paths(manual_dag, tmp_path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    params = {
        "index_name": "gist-manual",
        "types": ["title"],
        "model": "pegasus1.2",
        "file_paths": [str(video)],
    }
    with pytest.raises(AirflowFailException, match="none are configured"):
        manual_dag.get_task("validate").python_callable(params=params)


def test_the_ingest_operator_itself_refuses_paths_outside_its_allow_list(tmp_path) -> None:
    """Even past validate (a cleared task, an edited conf), the lane's operator checks again."""
    from airflow_provider_gist.errors import GistValidationError
    from airflow_provider_gist.operators.ingest import IngestVideoOperator

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    op = IngestVideoOperator(
        task_id="ingest", file_path=str(video), index_id="65ef0a1b2c3d4e5f60718293",
        allowed_path_prefixes=[str(tmp_path / "videos")],
    )  # fmt: skip
    with pytest.raises(GistValidationError, match="is not under an allowed location"):
        op.validate()
    # DAG code that passes its own paths needs no allow-list
    IngestVideoOperator(
        task_id="ingest", file_path=str(video), index_id="65ef0a1b2c3d4e5f60718293"
    ).validate()
