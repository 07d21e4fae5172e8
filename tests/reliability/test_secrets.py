"""The API key must appear nowhere but in the ``x-api-key`` header of requests to the API.

The suite's key (``SECRET_KEY``) is distinctive, so a leak is unmistakable. Places checked:

* the task logs of a real ``dag.test()`` run of the example DAG (with retries, a failing video
  and warnings). Under ``dag.test()`` tasks log to the console, which is captured at the file
  descriptor level; the suite's autouse ``no_key_in_output`` fixture checks the same for *every*
  reliability test, and test_sigkill.py scans a child process's task logs at DEBUG level;
* the run's XCom values, and every byte of the Airflow metadata database (rendered template
  fields, trigger rows, task instances, asset events ...), once with the connection in an
  environment variable and once stored in the metadata DB itself (encrypted, as Airflow keeps
  it), so a clear-text copy of a stored key would be caught too;
* the stored gists: every byte of the SQLite gist store file;
* exception texts (``str``, ``repr``, pickled) of failures: 401, 404, 429, 5xx, HTML pages,
  resets, read timeouts, malformed bodies and bad model output;
* ``repr``/``vars`` of hooks, operators, sensors and triggers; serialized trigger kwargs and
  trigger events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import (
    SECRET_KEY,
    EmulatorControl,
    Lane,
    execute_with_deferral,
    task_context,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

URLS = [
    "https://videos.example.com/sunrise_harbour_fishing.mp4",
    "https://videos.example.com/corrupt_night_market.mp4",
]
#: The key, and a fragment of it: catches truncated or partially masked copies too.
NEEDLES = (SECRET_KEY, SECRET_KEY[4:-4], SECRET_KEY.encode(), SECRET_KEY[4:-4].encode())


def assert_no_key(blob: str | bytes, where: str) -> None:
    for needle in NEEDLES:
        if isinstance(blob, bytes) != isinstance(needle, bytes):
            continue
        assert needle not in blob, f"the API key leaked into {where}"  # type: ignore[operator]


def _files_bytes(paths: list[Path]) -> bytes:
    return b"".join(p.read_bytes() for p in paths if p.is_file())


@pytest.fixture(params=["env", "metadata_db"])
def key_source(request, airflow_db, rel_conn, monkeypatch) -> Iterator[str]:
    """Where ``twelvelabs_default`` lives: the environment variable, or the metadata DB.

    ``metadata_db`` stores it as ``airflow connections add`` would: a row whose password is
    encrypted with the deployment's Fernet key. Only then can a scan of the metadata DB catch
    code that copies the connection's key somewhere in clear text (with the key only in an
    environment variable, nothing in the DB could hold it in the first place).
    """
    if request.param == "env":
        yield "env"
        return
    from airflow.models.connection import Connection
    from airflow.models.crypto import get_fernet
    from airflow.sdk import crypto as sdk_crypto
    from airflow.utils.session import create_session
    from cryptography.fernet import Fernet

    def forget_fernet() -> None:
        get_fernet.cache_clear()
        sdk_crypto.get_fernet.cache_clear()

    stored = json.loads(os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"])
    monkeypatch.delenv("AIRFLOW_CONN_TWELVELABS_DEFAULT")
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", Fernet.generate_key().decode())
    forget_fernet()
    conn_id = "twelvelabs_default"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type=stored["conn_type"],
                host=stored["host"],
                password=stored["password"],
                extra=json.dumps(stored["extra"]),
            )
        )
    with create_session() as session:
        row = session.query(Connection).filter(Connection.conn_id == conn_id).one()
        assert row.is_encrypted and row.get_password() == SECRET_KEY
    try:
        yield "metadata_db"
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        forget_fernet()  # the next use reads the Fernet key again (monkeypatch restores it after)


def test_example_dag_run_leaks_the_key_nowhere(
    key_source: str, ctl: EmulatorControl, gist_home, caplog, capfd
) -> None:
    from airflow.configuration import conf
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_gist.storage.sql import SqlGistStore
    from tests.helpers.dags import run_dag

    caplog.set_level(logging.DEBUG)
    # warnings with retries, a 401-free failure (corrupt video) and a transient read failure
    ctl.add_faults(
        [
            # the example DAG's gists are deferrable: their create is what meets the 429s
            {"op": "create_analysis_task", "kind": "status", "status": 429, "count": 2},
            {"op": "get_indexed_asset", "kind": "html", "status": 502, "count": 2},
        ]
    )
    run = run_dag("gist_index_and_generate", conf={"video_urls": URLS, "index_name": "secrets"})
    assert str(run.state) == "failed"  # the corrupt video's lane
    assert SqlGistStore().count() == 1

    # Task logs. Under dag.test() Airflow 3.3 runs each task in-process and its "task" logger
    # writes to the console, not to files under base_log_folder; so the task logs are what the
    # run wrote to stdout/stderr (captured at the file-descriptor level) and the log records.
    out, err = capfd.readouterr()
    task_logs = out + err + caplog.text
    for line in ("Stored 1 gist", "failed to process", "answered HTTP 429", "retrying in"):
        assert line in task_logs, f"expected the task logs to contain {line!r}"
    assert_no_key(task_logs, "the task logs")
    log_root = Path(conf.get("logging", "base_log_folder")).expanduser()
    if log_root.exists():  # a deployment's file logs, if any were written
        assert_no_key(_files_bytes(list(log_root.rglob("*"))), "the task log files")

    # XCom values of the run
    with create_session() as session:
        values = session.scalars(
            select(XComModel.value).where(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        ).all()
    assert values, "the run pushed no XCom"
    assert_no_key(json.dumps([v if isinstance(v, str) else repr(v) for v in values]), "XCom values")

    # every byte of the metadata DB (XComs, rendered fields, triggers, task instances, events ...)
    db_url = conf.get("database", "sql_alchemy_conn")
    assert db_url.startswith("sqlite:///")
    db = Path(db_url.removeprefix("sqlite:///"))
    assert_no_key(_files_bytes([db, Path(f"{db}-wal"), Path(f"{db}-journal")]), "the metadata database")

    # every byte of the gist store
    store_file = gist_home / "gists.db"
    assert_no_key(_files_bytes([store_file, Path(f"{store_file}-wal")]), "the gist store file")


def _failures(ctl: EmulatorControl) -> list[BaseException]:
    """One exception per failure mode, raised by the real hook against the emulator."""
    from airflow_provider_gist.client.retry import RetryPolicy
    from airflow_provider_gist.hooks.gist import GistHook

    missing = "6298d673f1090f1100476d4c"
    seeded = ctl.seed(1)[0]["asset_id"]  # a ready asset, for the model-output failures
    cases: list[tuple[dict[str, Any] | None, str]] = [
        ({"op": "get_asset", "kind": "status", "status": 503}, "get"),
        ({"op": "get_asset", "kind": "status", "status": 429, "retry_after": 600}, "get"),
        ({"op": "get_asset", "kind": "html", "status": 502}, "get"),
        ({"op": "get_asset", "kind": "reset"}, "get"),
        ({"op": "get_asset", "kind": "slow", "delay": 2}, "get"),
        ({"op": "create_asset", "kind": "malformed_json"}, "create"),
        ({"op": "create_asset", "kind": "slow_body", "delay": 2}, "create"),
        ({"op": "analyze", "kind": "model_output", "variant": "not_json"}, "gist"),
        ({"op": "analyze", "kind": "model_output", "variant": "length"}, "gist"),
        (None, "get"),  # 404: the asset does not exist
        ({"op": "analyze", "kind": "status", "status": 200, "body": {"id": "x", "data": "{}"}}, "gist"),
        ({"op": "get_asset", "kind": "key_revoked"}, "get"),
    ]
    errors: list[BaseException] = []
    for rule, call in cases:
        ctl.clear_faults()
        ctl.restore_key()
        if rule:
            ctl.add_faults([rule])
        hook = GistHook(retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01, deadline=10))
        try:
            if call == "get":
                hook.get_asset(missing)
            elif call == "create":
                hook.create_asset_from_url("https://videos.example.com/a.mp4")
            else:
                hook.generate_gist(asset_id=seeded)
        except Exception as err:
            errors.append(err)
        else:
            pytest.fail(f"{rule} did not fail")
        finally:
            hook.close()
    ctl.restore_key()
    return errors


def test_exception_texts_never_hold_the_key(ctl: EmulatorControl, rel_conn, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    errors = _failures(ctl)
    kinds = {type(err).__name__ for err in errors}
    assert {"GistTransientError", "GistRateLimitedError", "GistAuthError", "GistNotFoundError"} <= kinds
    assert "GistModelOutputError" in kinds
    for err in errors:
        assert_no_key(str(err), f"str({type(err).__name__})")
        assert_no_key(repr(err), f"repr({type(err).__name__})")
        assert_no_key(repr(vars(err)), f"vars({type(err).__name__})")
        assert_no_key(pickle.dumps(err), f"pickled {type(err).__name__}")
        cause = err.__cause__ or err.__context__
        while cause is not None:  # chained exceptions end up in task logs too
            assert_no_key(repr(cause), f"the cause of {type(err).__name__}")
            cause = cause.__cause__ or cause.__context__


def test_reprs_trigger_kwargs_and_events_never_hold_the_key(
    ctl: EmulatorControl, rel_conn, gist_home
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_gist.hooks.gist import GistAsyncHook, GistHook
    from airflow_provider_gist.sensors.indexing import IndexingCompleteSensor

    # a run that leaves every object behind: hooks with live sessions, a deferring sensor
    result = Lane().run()
    assert result.state == "success"
    ingested = result.results["ingest"]

    hook = GistHook()
    hook.get_index(ingested["index_id"])  # a live session, whose headers do hold the key
    assert hook.session.headers["x-api-key"] == SECRET_KEY
    assert_no_key(repr(hook), "repr(GistHook)")
    assert_no_key(str(hook), "str(GistHook)")
    assert_no_key(repr(hook.settings), "GistHook.settings")
    assert_no_key(repr(hook.retry_policy), "GistHook.retry_policy")
    hook.close()

    async_hook = GistAsyncHook()
    asyncio.run(async_hook.get_asset(ingested["asset_id"]))
    assert_no_key(repr(async_hook), "repr(GistAsyncHook)")
    assert_no_key(repr(async_hook.settings), "GistAsyncHook.settings")

    for task_id in Lane.TASKS:
        operator = Lane()._operator(task_id, result.results)
        assert_no_key(repr(operator), f"repr({task_id})")
        for name in operator.template_fields:
            assert_no_key(repr(getattr(operator, name)), f"{task_id}.{name}")
    assert_no_key(json.dumps(result.results), "the lane's XCom values")

    # the sensor defers while indexing runs: inspect the trigger it hands over
    timing = ctl.emu.emulator.state.timing
    original = timing.indexing_seconds
    timing.indexing_seconds = 1.0
    try:
        ingest_only = Lane(video_url="https://videos.example.com/harbour_dawn_rowing.mp4")
        ingested2 = execute_with_deferral(ingest_only._operator("ingest", {}), task_context())
        sensor = IndexingCompleteSensor(
            task_id="wait",
            index_id=ingested2["index_id"],
            indexed_asset_id=ingested2["indexed_asset_id"],
            deferrable=True,
            poll_interval=0.05,
            timeout=20,
        )
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(task_context())
    finally:
        timing.indexing_seconds = original
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("IndexedAssetReadyTrigger")
    assert_no_key(json.dumps(kwargs), "serialized trigger kwargs")
    assert not {"password", "api_key", "x-api-key", "headers"} & set(kwargs)
    assert_no_key(repr(trigger), "repr(trigger)")
    assert_no_key(repr(vars(trigger)), "vars(trigger)")

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == "ready"
    assert_no_key(json.dumps(event.payload), "the trigger event")
    assert_no_key(repr(vars(trigger)), "vars(trigger) after running")


def test_the_output_check_sees_debug_records(caplog) -> None:
    """The suite's autouse ``no_key_in_output`` captures DEBUG records, not only warnings."""
    from tests.reliability.conftest import key_leaks

    logging.getLogger("airflow.task.hooks.airflow_provider_gist.hooks.gist.GistHook").debug(
        "probe %s", "d3bug"
    )
    assert "probe d3bug" in caplog.text
    assert key_leaks(f"x-api-key: {SECRET_KEY}") != []
    assert key_leaks(f"Sending request msg=MaskSecret(value='{SECRET_KEY}')") == []  # Airflow's, documented
