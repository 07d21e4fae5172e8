"""The indexing sensors with HTTP mocked: deferral, resumption, poke mode, validation."""

from __future__ import annotations

import configparser
import importlib
import json
import time
from datetime import timedelta

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_gist.errors import GistAuthError, GistValidationError
from airflow_provider_gist.sensors import indexing as sensors_module
from airflow_provider_gist.sensors.indexing import (
    AssetReadySensor,
    IndexingCompleteSensor,
    default_deferrable,
)
from airflow_provider_gist.triggers.indexing import (
    AssetReadyTrigger,
    IndexedAssetReadyTrigger,
    IndexingTaskTrigger,
)
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"
INDEX = "65ef0a1b2c3d4e5f60718293"
INDEXED = "66a0c1d2e3f405162738495a"
TASK = "66b1c2d3e4f5061728394a5b"
ASSET_URL = f"{BASE}/v1.3/assets/{ASSET}"
INDEXED_URL = f"{BASE}/v1.3/indexes/{INDEX}/indexed-assets/{INDEXED}"
TASK_URL = f"{BASE}/v1.3/tasks/{TASK}"

READY_INDEXED = {
    "_id": INDEXED,
    "asset_id": ASSET,
    "status": "ready",
    "updated_at": "2026-11-02T10:01:30Z",
    "indexed_at": "2026-11-02T10:01:30Z",
    "system_metadata": {"filename": "harbour.mp4", "duration": 61.0, "fps": 25, "width": 1920},
    "user_metadata": {"secret-ish": "not for xcom"},
}
INDEXED_XCOM = {
    "index_id": INDEX,
    "indexed_asset_id": INDEXED,
    "video_id": INDEXED,
    "asset_id": ASSET,
    "status": "ready",
    "filename": "harbour.mp4",
    "duration": 61.0,
    "updated_at": "2026-11-02T10:01:30Z",
    "indexed_at": "2026-11-02T10:01:30Z",
}


@pytest.fixture(autouse=True)
def conn(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=1))


def indexed_sensor(**kwargs) -> IndexingCompleteSensor:
    kwargs.setdefault("deferrable", True)
    return IndexingCompleteSensor(task_id="wait", index_id=INDEX, indexed_asset_id=INDEXED, **kwargs)


# ---------------------------------------------------------------------- deferral


def test_execute_defers_with_the_expected_trigger(requests_mock):
    requests_mock.get(INDEXED_URL, json={"_id": INDEXED, "status": "indexing"})
    sensor = indexed_sensor(timeout=600, poll_interval=12, max_errors=4)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, IndexedAssetReadyTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_gist.triggers.indexing.IndexedAssetReadyTrigger"
    assert before + 600 <= kwargs.pop("deadline") <= time.time() + 600
    assert before <= kwargs.pop("started_at") <= time.time()
    assert kwargs == {
        "index_id": INDEX,
        "indexed_asset_id": INDEXED,
        "twelvelabs_conn_id": "twelvelabs_default",
        "poll_interval": 12.0,
        "max_errors": 4,
    }
    assert deferred.value.method_name == "execute_complete"
    # what is left of the 600 s once the first check is done
    assert timedelta(seconds=590) < deferred.value.timeout <= timedelta(seconds=600)
    assert requests_mock.call_count == 1  # exactly one synchronous check before deferring
    assert TEST_API_KEY not in json.dumps(kwargs)


def test_execute_with_a_task_id_defers_to_the_task_trigger(requests_mock):
    requests_mock.get(TASK_URL, json={"_id": TASK, "status": "validating"})
    sensor = IndexingCompleteSensor(task_id="wait", indexing_task_id=TASK, deferrable=True, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    assert isinstance(deferred.value.trigger, IndexingTaskTrigger)
    assert deferred.value.trigger.indexing_task_id == TASK


def test_asset_sensor_defers_to_the_asset_trigger(requests_mock):
    requests_mock.get(ASSET_URL, json={"_id": ASSET, "status": "processing"})
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=True, timeout=30, poll_interval=2)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    assert isinstance(deferred.value.trigger, AssetReadyTrigger)
    assert deferred.value.trigger.poll_interval == 2.0


def test_already_ready_returns_without_deferring(requests_mock):
    requests_mock.get(INDEXED_URL, json=READY_INDEXED)
    assert indexed_sensor().execute(context={}) == INDEXED_XCOM


def test_already_failed_fails_without_deferring(requests_mock):
    requests_mock.get(
        ASSET_URL, json={"_id": ASSET, "status": "failed", "error": {"message": "Unsupported codec."}}
    )
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=True)
    with pytest.raises(AirflowFailException, match="Unsupported codec"):
        sensor.execute(context={})


def test_soft_fail_skips_an_already_failed_object(requests_mock):
    requests_mock.get(ASSET_URL, json={"_id": ASSET, "status": "failed", "error": {"message": "Bad file."}})
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException, match="Bad file"):
        sensor.execute(context={})


def test_a_transient_first_check_still_defers(requests_mock):
    requests_mock.get(ASSET_URL, status_code=503, json={"message": "busy"})
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=True)
    with pytest.raises(TaskDeferred):
        sensor.execute(context={})


def test_an_auth_error_on_the_first_check_fails_at_once(requests_mock):
    requests_mock.get(ASSET_URL, status_code=401, json={"message": "bad key"})
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=True)
    with pytest.raises(GistAuthError):
        sensor.execute(context={})


# ---------------------------------------------------------------------- resumption


def test_execute_complete_ready_returns_the_summary():
    event = {
        **INDEXED_XCOM,
        "resource": "indexed_asset",
        "remote_status": "ready",
        "message": "ok",
        "waited_seconds": 12.5,
    }
    assert indexed_sensor().execute_complete({}, event) == INDEXED_XCOM


def test_execute_complete_failed_raises_fail_with_the_reason():
    event = {
        "status": "failed",
        "resource": "asset",
        "asset_id": ASSET,
        "remote_status": "failed",
        "message": "The file could not be decoded.",
        "waited_seconds": 3.0,
    }
    with pytest.raises(AirflowFailException, match=f"asset {ASSET} failed: The file could not be decoded"):
        AssetReadySensor(task_id="wait", asset_id=ASSET).execute_complete({}, event)


def test_execute_complete_timeout_says_how_long_and_the_last_status():
    event = {
        "status": "timeout",
        "resource": "indexing_task",
        "indexing_task_id": TASK,
        "remote_status": "queued",
        "message": "not ready",
        "waited_seconds": 3600.2,
    }
    sensor = IndexingCompleteSensor(task_id="wait", indexing_task_id=TASK, timeout=3600)
    with pytest.raises(AirflowSensorTimeout) as err:
        sensor.execute_complete({}, event)
    text = str(err.value)
    assert "3600s" in text
    assert "last status: queued" in text
    assert TASK in text


def test_execute_complete_error_raises_a_plain_airflow_exception():
    event = {
        "status": "error",
        "resource": "asset",
        "asset_id": ASSET,
        "remote_status": None,
        "message": "GET /v1.3/assets/x failed: HTTP 401",
        "waited_seconds": 0.1,
    }
    with pytest.raises(AirflowException, match="HTTP 401") as err:
        AssetReadySensor(task_id="wait", asset_id=ASSET).execute_complete({}, event)
    # retryable by Airflow: not a fail-fast or timeout exception
    assert not isinstance(err.value, AirflowFailException | AirflowSensorTimeout)


@pytest.mark.parametrize("event", [None, {}, {"status": "cancelled", "resource": "asset", "asset_id": ASSET}])
def test_execute_complete_allow_lists_success(event):
    with pytest.raises(AirflowException):
        AssetReadySensor(task_id="wait", asset_id=ASSET).execute_complete({}, event)


# ---------------------------------------------------------------------- poke / reschedule


def test_poke_returns_not_done_then_done_with_the_xcom(requests_mock):
    requests_mock.get(INDEXED_URL, [{"json": {"_id": INDEXED, "status": "queued"}}, {"json": READY_INDEXED}])
    sensor = indexed_sensor(deferrable=False)
    first = sensor.poke({})
    assert isinstance(first, PokeReturnValue)
    assert not first.is_done
    second = sensor.poke({})
    assert second.is_done
    assert second.xcom_value == INDEXED_XCOM


def test_poke_mode_execute_polls_until_ready(requests_mock):
    requests_mock.get(
        ASSET_URL,
        [
            {"json": {"_id": ASSET, "status": "processing"}},
            {
                "json": {
                    "_id": ASSET,
                    "status": "ready",
                    "filename": "a.mp4",
                    "file_type": "video/mp4",
                    "duration": 5.0,
                    "created_at": "2026-11-02T10:00:00Z",
                }
            },
        ],
    )
    sensor = AssetReadySensor(
        task_id="wait", asset_id=ASSET, deferrable=False, poke_interval=0.01, timeout=10
    )
    assert sensor.execute(context={}) == {
        "asset_id": ASSET,
        "status": "ready",
        "filename": "a.mp4",
        "file_type": "video/mp4",
        "duration": 5.0,
        "created_at": "2026-11-02T10:00:00Z",
    }
    assert requests_mock.call_count == 2


def test_poke_failed_raises_fail_with_the_api_reason(requests_mock):
    requests_mock.get(TASK_URL, json={"_id": TASK, "status": "failed"})
    sensor = IndexingCompleteSensor(task_id="wait", indexing_task_id=TASK, deferrable=False)
    with pytest.raises(AirflowFailException, match="gave no reason"):
        sensor.poke({})


def test_poke_mode_timeout_names_the_last_status(requests_mock):
    requests_mock.get(ASSET_URL, json={"_id": ASSET, "status": "processing"})
    sensor = AssetReadySensor(task_id="wait", asset_id=ASSET, deferrable=False, poke_interval=0.01, timeout=0)
    with pytest.raises(AirflowSensorTimeout, match="last status: processing"):
        sensor.execute(context={})


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("deferrable", [True, False])
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"index_id": "../etc", "indexed_asset_id": INDEXED}, "index_id"),
        ({"index_id": INDEX, "indexed_asset_id": "a b"}, "indexed_asset_id"),
        ({"indexing_task_id": ""}, "indexing_task_id"),
    ],
)
def test_bad_ids_fail_naming_the_field_before_any_http_call(requests_mock, kwargs, field, deferrable):
    sensor = IndexingCompleteSensor(task_id="wait", deferrable=deferrable, **kwargs)
    with pytest.raises(GistValidationError, match=rf"^{field}"):
        sensor.execute(context={})
    assert requests_mock.call_count == 0


def test_bad_asset_id_fails_before_any_http_call(requests_mock):
    with pytest.raises(GistValidationError, match=r"^asset_id"):
        AssetReadySensor(task_id="wait", asset_id="x/y", deferrable=True).execute(context={})
    assert requests_mock.call_count == 0


def test_both_forms_are_refused():
    with pytest.raises(GistValidationError, match="not both"):
        IndexingCompleteSensor(
            task_id="wait", index_id=INDEX, indexed_asset_id=INDEXED, indexing_task_id=TASK
        )


@pytest.mark.parametrize(
    ("kwargs", "missing"),
    [
        ({}, "index_id"),
        ({"index_id": INDEX}, "indexed_asset_id"),
        ({"indexed_asset_id": INDEXED}, "index_id"),
    ],
)
def test_an_incomplete_form_names_the_missing_field(kwargs, missing):
    with pytest.raises(GistValidationError, match=rf"^{missing} is required"):
        IndexingCompleteSensor(task_id="wait", **kwargs)


def test_ids_conn_id_and_poll_interval_are_templated():
    assert set(IndexingCompleteSensor.template_fields) == {
        "index_id",
        "indexed_asset_id",
        "indexing_task_id",
        "twelvelabs_conn_id",
        "poll_interval",
    }
    assert set(AssetReadySensor.template_fields) == {"asset_id", "twelvelabs_conn_id", "poll_interval"}


def test_a_rendered_poll_interval_string_is_a_number(requests_mock):
    requests_mock.get(INDEXED_URL, json={"_id": INDEXED, "status": "indexing"})
    with pytest.raises(TaskDeferred) as deferred:
        indexed_sensor(poll_interval="7").execute(context={})
    assert deferred.value.trigger.poll_interval == 7.0
    with pytest.raises(GistValidationError, match="poll_interval"):
        indexed_sensor(poll_interval="soon").execute(context={})


# ---------------------------------------------------------------------- one deadline for all tries


class _StateStore:
    """``task_state_store``: survives the task instance's retries."""

    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = value


def test_the_timeout_is_one_deadline_across_tries_in_deferrable_mode(requests_mock, monkeypatch):
    """A retry waits only for what the first try left of ``timeout``, then times out for good."""
    requests_mock.get(INDEXED_URL, json={"_id": INDEXED, "status": "indexing"})
    clock = {"now": 1_800_000_000.0}
    monkeypatch.setattr(sensors_module.time, "time", lambda: clock["now"])
    store = _StateStore()

    with pytest.raises(TaskDeferred) as first:  # try 1
        indexed_sensor(timeout=100).execute(context={"task_state_store": store})
    first_kwargs = first.value.trigger.serialize()[1]
    assert first_kwargs["deadline"] == 1_800_000_100.0
    assert first.value.timeout == timedelta(seconds=100)

    clock["now"] += 60  # try 1 failed (say, the triggerer died); try 2 starts a minute later
    with pytest.raises(TaskDeferred) as second:
        indexed_sensor(timeout=100).execute(context={"task_state_store": store})
    second_kwargs = second.value.trigger.serialize()[1]
    assert second_kwargs["deadline"] == 1_800_000_100.0  # the same deadline, not now + 100
    assert second_kwargs["started_at"] == 1_800_000_000.0
    assert second.value.timeout == timedelta(seconds=40)

    clock["now"] += 50  # try 3, after the deadline: one last check, then a timeout (not retried)
    with pytest.raises(
        AirflowSensorTimeout, match=r"100s have passed since the first try.*last status: indexing"
    ):
        indexed_sensor(timeout=100).execute(context={"task_state_store": store})
    assert requests_mock.call_count == 3

    # ready by then: the last check still succeeds
    requests_mock.get(INDEXED_URL, json=READY_INDEXED)
    assert indexed_sensor(timeout=100).execute(context={"task_state_store": store}) == INDEXED_XCOM


def test_the_timeout_is_one_deadline_across_tries_in_poke_mode(requests_mock):
    requests_mock.get(ASSET_URL, json={"_id": ASSET, "status": "processing"})
    store = _StateStore()
    store.set(sensors_module.STATE_KEY_STARTED_AT, time.time() - 50)  # the first try began 50 s ago
    sensor = AssetReadySensor(
        task_id="wait", asset_id=ASSET, deferrable=False, poke_interval=0.01, timeout=30
    )
    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout, match="last status: processing"):
        sensor.execute(context={"task_state_store": store})
    assert time.monotonic() - started < 5  # not another 30 s


# ---------------------------------------------------------------------- deferrable default


def test_defers_by_default_when_the_setting_is_not_given(monkeypatch):
    for suffix in ("", "_CMD", "_SECRET"):
        monkeypatch.delenv(f"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE{suffix}", raising=False)
    monkeypatch.setattr(configparser.ConfigParser, "has_option", lambda self, section, option: False)
    assert default_deferrable() is True


@pytest.mark.parametrize(("value", "expected"), [("False", False), ("true", True)])
def test_an_explicit_setting_is_honoured(monkeypatch, value, expected):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", value)
    assert default_deferrable() is expected


def test_the_constructor_default_comes_from_the_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    reloaded = importlib.reload(sensors_module)
    try:
        assert reloaded.AssetReadySensor(task_id="wait", asset_id=ASSET).deferrable is False
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(sensors_module)
