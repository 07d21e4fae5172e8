"""The indexing triggers, driven with HTTP mocked by aioresponses and asyncio.sleep recorded."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import aiohttp
import pytest

from airflow_provider_gist.triggers.indexing import (
    AssetReadyTrigger,
    IndexedAssetReadyTrigger,
    IndexingTaskTrigger,
    TwelveLabsStatusTrigger,
)
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json
from tests.unit.aio_mock import get_calls, mock_aiohttp

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"
INDEX = "65ef0a1b2c3d4e5f60718293"
INDEXED = "66a0c1d2e3f405162738495a"
TASK = "66b1c2d3e4f5061728394a5b"
ASSET_URL = f"{BASE}/v1.3/assets/{ASSET}"
INDEXED_URL = f"{BASE}/v1.3/indexes/{INDEX}/indexed-assets/{INDEXED}"
TASK_URL = f"{BASE}/v1.3/tasks/{TASK}"


@pytest.fixture(autouse=True)
def conn(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=4, retry_deadline=30)
    )


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record every asyncio.sleep the trigger makes, and make it instant."""
    recorded: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float, *args, **kwargs):
        recorded.append(round(seconds, 3))
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


@pytest.fixture
def http():
    with mock_aiohttp() as mocked:
        yield mocked


def run_once(trigger: TwelveLabsStatusTrigger) -> dict:
    """The first event, within 5 s; and check the trigger yields nothing after it."""

    async def go() -> dict:
        gen = trigger.run()
        event = await asyncio.wait_for(anext(gen), 5)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(gen), 5)
        return event.payload

    return asyncio.run(go())


def calls(http, url: str) -> int:
    return len(get_calls(http, url))


def asset_trigger(**kwargs) -> AssetReadyTrigger:
    kwargs.setdefault("deadline", time.time() + 60)
    kwargs.setdefault("poll_interval", 10.0)
    return AssetReadyTrigger(asset_id=ASSET, **kwargs)


# ---------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    "trigger",
    [
        AssetReadyTrigger(asset_id=ASSET, deadline=1.8e9, poll_interval=5, max_errors=2, started_at=1.7e9),
        IndexedAssetReadyTrigger(index_id=INDEX, indexed_asset_id=INDEXED, deadline=1.8e9),
        IndexingTaskTrigger(indexing_task_id=TASK, deadline=1.8e9, twelvelabs_conn_id="tl_prod"),
    ],
    ids=["asset", "indexed_asset", "task"],
)
def test_serialize_round_trips_through_json(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert cls is type(trigger)
    rebuilt = cls(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    # the absolute deadline and the start survive a restart unchanged
    assert kwargs["deadline"] == 1.8e9
    assert kwargs["started_at"] == trigger.started_at
    assert TEST_API_KEY not in json.dumps(kwargs)


def test_serialized_kwargs_name_the_ids_and_settings():
    _, kwargs = IndexedAssetReadyTrigger(
        index_id=INDEX,
        indexed_asset_id=INDEXED,
        deadline=1.8e9,
        poll_interval=7,
        max_errors=3,
        started_at=1.7e9,
    ).serialize()
    assert kwargs == {
        "index_id": INDEX,
        "indexed_asset_id": INDEXED,
        "deadline": 1.8e9,
        "twelvelabs_conn_id": "twelvelabs_default",
        "poll_interval": 7.0,
        "max_errors": 3,
        "started_at": 1.7e9,
    }


def test_rejects_a_zero_poll_interval():
    with pytest.raises(ValueError, match="poll_interval"):
        asset_trigger(poll_interval=0)


# ---------------------------------------------------------------------- terminal events


def test_asset_ready_after_polling(http, sleeps):
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "processing", "filename": "clip.mp4"})
    http.get(
        ASSET_URL,
        payload={
            "_id": ASSET,
            "status": "ready",
            "filename": "clip.mp4",
            "file_type": "video/mp4",
            "duration": 62.5,
            "created_at": "2026-11-02T10:00:00Z",
        },
    )
    event = run_once(asset_trigger(poll_interval=10.0))
    assert event["status"] == "ready"
    assert event["resource"] == "asset"
    assert event["asset_id"] == ASSET
    assert event["remote_status"] == "ready"
    assert event["filename"] == "clip.mp4"
    assert event["duration"] == 62.5
    assert event["file_type"] == "video/mp4"
    assert event["waited_seconds"] >= 0
    # one poll interval between the two polls, jittered by at most 10%
    assert len(sleeps) == 1
    assert 9.0 <= sleeps[0] <= 11.0
    assert calls(http, ASSET_URL) == 2


def test_requests_carry_the_key_and_not_our_extras(http, sleeps):
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    run_once(asset_trigger())
    [(_, request)] = [(k, v[0]) for k, v in http.requests.items()]
    headers = request.kwargs["headers"]
    assert headers["x-api-key"] == TEST_API_KEY
    assert "max_attempts" not in headers
    assert "retry_deadline" not in headers
    assert request.kwargs.get("auth") is None


def test_asset_failed_carries_the_api_reason(http, sleeps):
    http.get(
        ASSET_URL,
        payload={"_id": ASSET, "status": "failed", "error": {"message": "The file could not be decoded."}},
    )
    event = run_once(asset_trigger())
    assert event["status"] == "failed"
    assert event["remote_status"] == "failed"
    assert event["message"] == "The file could not be decoded."
    assert sleeps == []


def test_indexed_asset_failed_without_reason_gets_a_clear_default(http, sleeps):
    http.get(INDEXED_URL, payload={"_id": INDEXED, "asset_id": ASSET, "status": "failed"})
    event = run_once(
        IndexedAssetReadyTrigger(index_id=INDEX, indexed_asset_id=INDEXED, deadline=time.time() + 60)
    )
    assert event["status"] == "failed"
    assert event["index_id"] == INDEX
    assert event["indexed_asset_id"] == INDEXED
    assert event["message"].startswith("the API gave no reason")


def test_indexed_asset_ready_event_has_video_and_asset_ids(http, sleeps):
    http.get(
        INDEXED_URL,
        payload={
            "_id": INDEXED,
            "asset_id": ASSET,
            "status": "ready",
            "updated_at": "2026-11-02T10:01:30Z",
            "indexed_at": "2026-11-02T10:01:30Z",
            "system_metadata": {"filename": "harbour.mp4", "duration": 61.0, "width": 1920},
        },
    )
    event = run_once(
        IndexedAssetReadyTrigger(index_id=INDEX, indexed_asset_id=INDEXED, deadline=time.time() + 60)
    )
    assert event["status"] == "ready"
    assert event["video_id"] == INDEXED
    assert event["asset_id"] == ASSET
    assert event["filename"] == "harbour.mp4"
    assert event["duration"] == 61.0
    assert event["updated_at"] == "2026-11-02T10:01:30Z"
    assert "width" not in event
    assert "system_metadata" not in event


def test_legacy_task_ready_event(http, sleeps):
    http.get(TASK_URL, payload={"_id": TASK, "status": "indexing", "index_id": INDEX, "video_id": INDEXED})
    http.get(
        TASK_URL,
        payload={
            "_id": TASK,
            "status": "ready",
            "index_id": INDEX,
            "video_id": INDEXED,
            "updated_at": "2026-11-02T10:01:30Z",
            "system_metadata": {"filename": "clip.mp4", "duration": 62.5},
        },
    )
    event = run_once(IndexingTaskTrigger(indexing_task_id=TASK, deadline=time.time() + 60, poll_interval=2))
    assert event["status"] == "ready"
    assert event["indexing_task_id"] == TASK
    assert (event["index_id"], event["video_id"]) == (INDEX, INDEXED)
    assert event["filename"] == "clip.mp4"
    assert event["updated_at"] == "2026-11-02T10:01:30Z"


def test_deadline_in_the_past_ends_with_timeout_and_the_last_status(http, sleeps):
    http.get(TASK_URL, payload={"_id": TASK, "status": "indexing"})
    trigger = IndexingTaskTrigger(
        indexing_task_id=TASK, deadline=time.time() - 1, started_at=time.time() - 120
    )
    event = run_once(trigger)
    assert event["status"] == "timeout"
    assert event["remote_status"] == "indexing"
    assert "indexing" in event["message"]
    assert "120s" in event["message"]
    assert event["waited_seconds"] >= 120
    assert sleeps == []  # no waiting past the deadline


def test_401_ends_with_an_error_event_at_once(http, sleeps):
    http.get(ASSET_URL, status=401, payload={"code": "api_key_invalid", "message": "The API key is invalid."})
    event = run_once(asset_trigger())
    assert event["status"] == "error"
    assert event["http_status"] == 401
    assert event["code"] == "api_key_invalid"
    assert "API key" in event["message"]
    assert TEST_API_KEY not in json.dumps(event)
    assert calls(http, ASSET_URL) == 1
    assert sleeps == []


def test_404_ends_with_an_error_event(http, sleeps):
    http.get(ASSET_URL, status=404, payload={"code": "resource_not_exist", "message": "No such asset."})
    event = run_once(asset_trigger())
    assert event["status"] == "error"
    assert "No such asset." in event["message"]
    assert calls(http, ASSET_URL) == 1


def test_missing_connection_ends_with_an_error_event(http, sleeps):
    event = run_once(asset_trigger(twelvelabs_conn_id="no_such_conn"))
    assert event["status"] == "error"
    assert "no_such_conn" in event["message"]


# ---------------------------------------------------------------------- transient errors


@pytest.mark.parametrize(
    ("status", "headers"),
    [(503, {"Retry-After": "7"}), (429, {"Retry-After": "7"})],
    ids=["503", "429"],
)
def test_transient_error_then_ready_sleeps_per_the_server_hint(http, sleeps, status, headers):
    http.get(ASSET_URL, status=status, headers=headers, body="")
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    event = run_once(asset_trigger())
    assert event["status"] == "ready"
    assert sleeps == [7.0]
    assert calls(http, ASSET_URL) == 2


def test_a_zero_retry_after_still_backs_off(http, sleeps):
    http.get(ASSET_URL, status=429, headers={"Retry-After": "0"}, body="")
    http.get(ASSET_URL, status=429, headers={"Retry-After": "0"}, body="")
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    event = run_once(asset_trigger())
    assert event["status"] == "ready"
    assert len(sleeps) == 2
    assert all(s >= 0.5 for s in sleeps)  # never a tight loop
    assert sleeps[1] > sleeps[0]


def test_connection_error_then_ready(http, sleeps):
    http.get(ASSET_URL, exception=aiohttp.ClientConnectionError("reset by peer"))
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    event = run_once(asset_trigger())
    assert event["status"] == "ready"
    assert len(sleeps) == 1
    assert sleeps[0] >= 0.5


def test_exhausted_transient_errors_end_with_an_error_event(http, sleeps):
    for _ in range(3):
        http.get(ASSET_URL, status=503, payload={"message": "upstream down"})
    event = run_once(asset_trigger(max_errors=2))
    assert event["status"] == "error"
    assert "3 failed status requests in a row" in event["message"]
    assert "upstream down" in event["message"]
    assert calls(http, ASSET_URL) == 3
    assert len(sleeps) == 2
    assert all(s > 0 for s in sleeps)


def test_errors_are_counted_consecutively_not_in_total(http, sleeps):
    http.get(ASSET_URL, status=503, body="")
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "processing"})
    http.get(ASSET_URL, status=503, body="")
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    event = run_once(asset_trigger(max_errors=1))
    assert event["status"] == "ready"


def test_a_hint_beyond_the_deadline_ends_with_timeout_without_polling_again(http, sleeps):
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "processing"})
    http.get(ASSET_URL, status=429, headers={"Retry-After": "600"}, body="")
    event = run_once(asset_trigger(deadline=time.time() + 20, poll_interval=1.0))
    assert event["status"] == "timeout"
    assert event["remote_status"] == "processing"
    assert "429" in event["message"]
    assert sleeps[-1] <= 20
    assert calls(http, ASSET_URL) == 2
