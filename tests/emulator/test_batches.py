"""Batch analysis (``/analyze/batches``): creation limits, item processing, partial failures,
cancel, expiry, deletion, the JSON Lines results, and the control API around them.

Timing here: 2 slots, 1 s ``pending``, 2 s per minute of video (a ``_10min`` item takes 21 s in
its slot), batches expire after 600 s. The clock is jumped, never waited for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.emulator import Api, ndjson, running_api

pytestmark = pytest.mark.integration

PROMPT = "Give me a title, topics and hashtags as JSON."
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "topics": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "topics"],
}
STARTUP = 1.0
TEN_MINUTES = STARTUP + 2.0 * 10
EXPIRY = 600.0


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(
        analysis_slots=2,
        analysis_startup_seconds=STARTUP,
        analysis_seconds_per_minute=2.0,
        batch_expiry_seconds=EXPIRY,
    )


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _body(asset_ids: list[str], *, custom_ids: bool = True, **extra: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i, asset_id in enumerate(asset_ids):
        item: dict[str, Any] = {"video": {"type": "asset_id", "asset_id": asset_id}}
        if custom_ids:
            item["custom_id"] = f"vid-{i:04d}"
        items.append(item)
    body: dict[str, Any] = {
        "model_name": "pegasus1.5",
        "analysis_mode": "general",
        "defaults": {
            "prompt": {"input_text": PROMPT},
            "response_format": {"type": "json_schema", "json_schema": SCHEMA},
            "max_tokens": 1024,
        },
        "requests": items,
    }
    body.update(extra)
    return body


def _create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/analyze/batches", body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _batch(api: Api, batch_id: str) -> dict[str, Any]:
    response = api.get(f"/analyze/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _results(api: Api, batch_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/analyze/batches/{batch_id}/results")  # each line is checked against the spec
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/jsonl")
    return ndjson(response)


def _error(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def _assets(api: Api, *names: str) -> list[str]:
    return [api.ready_asset(name) for name in names]


def test_batch_runs_to_completed_and_results_stream_while_it_runs(api: Api) -> None:
    ids = _assets(api, "sunrise_harbour_10min.mp4", "city_cycling_10min.mp4", "forest_hiking_10min.mp4")
    body = _body(ids)
    body["requests"][2]["prompt"] = {"input_text": "Only a title, please."}  # replaces defaults.prompt
    created = _create(api, body)
    assert (created["status"], created["total_items"]) == ("processing", 3)  # two slots took items
    assert [i["custom_id"] for i in created["items"]] == ["vid-0000", "vid-0001", "vid-0002"]
    assert created["expires_at"] > created["created_at"]
    batch_id, task_ids = created["batch_id"], [i["task_id"] for i in created["items"]]
    assert [r["status"] for r in _results(api, batch_id)] == ["processing", "processing", "queued"]
    batch = _batch(api, batch_id)
    assert (batch["model_name"], batch["analysis_mode"], batch["status"]) == (
        "pegasus1.5",
        "general",
        "processing",
    )
    assert (batch["queued_items"], batch["processing_items"], batch["ready_items"]) == (1, 2, 0)
    # Each item is an analysis task of its own.
    task = api.get(f"/analyze/tasks/{task_ids[2]}").json()
    assert (task["status"], task["custom_id"]) == ("queued", "vid-0002")
    assert task["request_params"]["prompt_v2"] == {"input_text": "Only a title, please."}
    assert task["request_params"]["max_tokens"] == 1024
    api.advance(TEN_MINUTES + 0.1)
    lines = _results(api, batch_id)
    assert [r["status"] for r in lines] == ["ready", "ready", "processing"]
    first = lines[0]
    assert set(first) == {"task_id", "custom_id", "status", "data"}
    assert json.loads(first["data"]["data"])["title"] == "Sunrise Harbour"
    assert first["data"]["finish_reason"] == "stop" and first["data"]["usage"]["output_tokens"] > 0
    assert set(lines[2]) == {"task_id", "custom_id", "status"}  # neither data nor error yet
    api.advance(TEN_MINUTES)
    batch = _batch(api, batch_id)
    assert (batch["status"], batch["ready_items"], batch["failed_items"]) == ("completed", 3, 0)
    assert batch["completed_at"] >= batch["created_at"]
    assert "canceled_at" not in batch and "expired_at" not in batch
    assert api.get("/analyze/batches").json()["data"][0]["batch_id"] == batch_id
    assert api.call("DELETE", f"/analyze/batches/{batch_id}").status_code == 200
    gone = api.get(f"/analyze/batches/{batch_id}")
    assert (gone.status_code, _error(gone)) == (404, "resource_not_exist")
    assert api.get(f"/analyze/tasks/{task_ids[0]}").status_code == 404  # its tasks went with it
    assert api.control("GET", "/stats")["created"] == {
        "analysis_tasks": 0,
        "batches": 1,
        "batch_tasks": 3,
        "idempotent_replays": 0,
    }


def test_partial_failures_complete_the_batch(api: Api) -> None:
    ids = _assets(api, "harbour_10min.mp4", "marathon_3h.mp4", "market_10min.mp4")
    api.control(
        "POST",
        "/faults",
        {
            "op": "create_batch",
            "kind": "task_failure",
            "count": 1,
            "code": "asset_unavailable",
            "message": "The asset could not be read.",
        },
    )
    batch_id = _create(api, _body(ids))["batch_id"]
    api.advance(STARTUP + 0.1)  # both failing items fail after their pending phase
    api.advance(TEN_MINUTES)
    batch = _batch(api, batch_id)
    assert (batch["status"], batch["ready_items"], batch["failed_items"]) == ("completed", 1, 2)
    lines = _results(api, batch_id)
    assert [r["status"] for r in lines] == ["failed", "failed", "ready"]
    assert lines[0]["error"] == {"code": "asset_unavailable", "message": "The asset could not be read."}
    assert lines[1]["error"]["code"] == "video_duration_too_long"  # the 3-hour video fails on its own
    assert "data" not in lines[0]
    task = api.get(f"/analyze/tasks/{lines[1]['task_id']}").json()
    assert task["status"] == "failed" and set(task["error"]) == {"message"}


def test_five_active_batches_then_429(api: Api) -> None:
    [asset_id] = _assets(api, "busy_10min.mp4")
    made = [_create(api, _body([asset_id]))["batch_id"] for _ in range(5)]
    sixth = api.post("/analyze/batches", _body([asset_id]))
    assert (sixth.status_code, _error(sixth)) == (429, "too_many_requests")
    assert "5 active batches" in sixth.json()["error"]["message"]
    assert not any(h.lower().startswith(("x-ratelimit", "retry-after")) for h in sixth.headers)
    assert api.control("GET", "/stats")["created"]["batches"] == 5
    # Batches 3 to 5 wait for a slot: canceling one finishes it at once (nothing to let finish).
    canceled = api.post(f"/analyze/batches/{made[4]}/cancel")
    assert canceled.status_code == 202
    assert (canceled.json()["status"], canceled.json()["canceled_items"]) == ("canceled", 1)
    _create(api, _body([asset_id]))
    assert api.control("GET", "/analysis")["active_batches"] == 5


def test_active_batches_held_by_someone_else(api: Api) -> None:
    [asset_id] = _assets(api, "shared_account.mp4")
    held = api.control("POST", "/batches/occupy", {"count": 5})
    assert held == {"occupied": 5, "active_batches": 5}
    refused = api.post("/analyze/batches", _body([asset_id]))
    assert refused.status_code == 429
    assert api.get("/analyze/batches").json()["data"] == []  # not ours: never listed
    api.control("POST", "/batches/occupy", {"count": 4})
    _create(api, _body([asset_id]))
    assert api.post("/analyze/batches", _body([asset_id])).status_code == 429
    api.control("POST", "/batches/occupy", {"count": 0})
    _create(api, _body([asset_id]))


def test_cancel_lets_processing_items_finish(api: Api) -> None:
    ids = _assets(api, "a_10min.mp4", "b_10min.mp4", "c_10min.mp4", "d_10min.mp4")
    batch_id = _create(api, _body(ids))["batch_id"]
    api.advance(STARTUP + 0.1)
    response = api.post(f"/analyze/batches/{batch_id}/cancel")
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["processing_items"], body["canceled_items"]) == ("canceling", 2, 2)
    lines = _results(api, batch_id)
    assert [r["status"] for r in lines] == ["processing", "processing", "canceled", "canceled"]
    assert set(lines[3]) == {"task_id", "custom_id", "status"}
    canceled_task = api.get(f"/analyze/tasks/{lines[3]['task_id']}").json()
    assert canceled_task["status"] == "failed"  # the spec's task statuses have no "canceled"
    assert canceled_task["error"]["message"].startswith("Canceled")
    assert api.post(f"/analyze/batches/{batch_id}/cancel").json()["status"] == "canceling"
    busy = api.call("DELETE", f"/analyze/batches/{batch_id}")
    assert (busy.status_code, _error(busy)) == (409, "batch_not_terminal")
    api.advance(TEN_MINUTES)
    batch = _batch(api, batch_id)
    assert (batch["status"], batch["ready_items"], batch["canceled_items"]) == ("canceled", 2, 2)
    assert batch["canceled_at"] > batch["created_at"]
    again = api.post(f"/analyze/batches/{batch_id}/cancel")
    assert (again.status_code, _error(again)) == (409, "batch_canceled")
    assert api.call("DELETE", f"/analyze/batches/{batch_id}").status_code == 200


def test_cancel_a_completed_batch_is_409(api: Api) -> None:
    batch_id = _create(api, _body(_assets(api, "quick_10min.mp4")))["batch_id"]
    api.advance(TEN_MINUTES + 0.1)
    response = api.post(f"/analyze/batches/{batch_id}/cancel")
    assert (response.status_code, _error(response)) == (409, "batch_completed")


def test_expiry_cancels_unfinished_items_and_retention_deletes(api: Api) -> None:
    # 6 items of 119 minutes on 2 slots: 239 s each, so at 600 s four are done and two are running.
    [asset_id] = _assets(api, "documentary_119min.mp4")
    created = _create(api, _body([asset_id] * 6, custom_ids=False))
    batch_id = created["batch_id"]
    assert created["items"][0]["custom_id"] is None
    api.advance(EXPIRY + 1)
    batch = _batch(api, batch_id)
    assert (batch["status"], batch["ready_items"], batch["canceled_items"]) == ("expired", 4, 2)
    assert batch["expired_at"] == batch["expires_at"]
    assert [r["status"] for r in _results(api, batch_id)] == ["ready"] * 4 + ["canceled"] * 2
    late = api.post(f"/analyze/batches/{batch_id}/cancel")
    assert (late.status_code, _error(late)) == (409, "batch_expired")
    assert api.control("GET", "/analysis")["active_batches"] == 0
    api.advance(30 * 86400)  # results are kept 30 days after creation, then the batch is deleted
    assert api.get(f"/analyze/batches/{batch_id}/results").status_code == 404


def test_forced_expiry_through_the_control_api(api: Api) -> None:
    batch_id = _create(api, _body(_assets(api, "x_10min.mp4", "y_10min.mp4", "z_10min.mp4")))["batch_id"]
    assert api.control("POST", "/batches/expire", {"batch_id": batch_id}) == {"expired": [batch_id]}
    batch = _batch(api, batch_id)
    assert (batch["status"], batch["canceled_items"], batch["processing_items"]) == ("expired", 3, 0)
    assert api.control("POST", "/batches/expire") == {"expired": []}
    unknown = requests.post(
        f"{api.server.url}/_emulator/batches/expire", json={"batch_id": "0" * 24}, timeout=5
    )
    assert unknown.status_code == 404
    described = api.control("GET", "/analysis")
    assert (described["running"], described["batches"]) == ([], {batch_id: "expired"})


def test_invalid_batches_create_nothing(api: Api) -> None:
    broken = api.create_url_asset("https://x.invalid/corrupt.mp4")["_id"]
    [ready] = _assets(api, "fine.mp4")  # (jumps the clock: the corrupt asset ends failed)
    processing = api.create_url_asset("https://x.invalid/still_uploading.mp4")["_id"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        (_body([ready], model_name="pegasus1.2"), 400, "parameter_invalid"),
        ({k: v for k, v in _body([ready]).items() if k != "analysis_mode"}, 400, "parameter_not_provided"),
        (_body([]), 400, "parameter_invalid"),
        (_body([ready] * 1001, custom_ids=False), 400, "parameter_invalid"),
        (
            {
                **_body([ready, ready]),
                "requests": [{"video": {"type": "asset_id", "asset_id": ready}, "custom_id": "a"}] * 2,
            },
            400,
            "parameter_invalid",
        ),
        (
            {**_body([ready]), "requests": [{"video": {"type": "url", "url": "https://x.invalid/v.mp4"}}]},
            400,
            "parameter_invalid",
        ),
        (_body(["not-an-asset-id"]), 400, "parameter_invalid"),
        ({**_body([ready]), "defaults": {"prompt": "a string, not an object"}}, 400, "parameter_invalid"),
        ({**_body([ready]), "defaults": {}}, 400, "parameter_not_provided"),
        ({**_body([ready]), "priority": "high"}, 400, "parameter_unknown"),
        (_body(["0" * 24]), 404, "resource_not_exist"),
        (_body([ready, processing]), 409, "video_not_ready"),
        (_body([broken]), 409, "video_not_ready"),
    ]
    for body, status, code in cases:
        response = api.post("/analyze/batches", body, spec=False)
        assert (response.status_code, _error(response)) == (status, code), (body, response.text)
    assert api.control("GET", "/stats")["created"]["batches"] == 0
    assert api.get("/analyze/batches").json()["page_info"]["total_results"] == 0


def test_a_batch_takes_up_to_1000_items_and_2000_hours(api: Api) -> None:
    seeded = api.seed("catalog", 1000)
    ids = [v["asset_id"] for v in seeded["videos"]]
    created = _create(api, _body(ids))
    assert created["total_items"] == len(created["items"]) == 1000
    lines = _results(api, created["batch_id"])
    assert len(lines) == 1000 and lines[-1]["custom_id"] == "vid-0999"
    [long_video] = _assets(api, "season_2.5h.mp4")
    too_long = api.post("/analyze/batches", _body([long_video] * 801, custom_ids=False))
    assert (too_long.status_code, _error(too_long)) == (400, "parameter_invalid")
    assert "hours" in too_long.json()["error"]["message"]


def test_list_batches_by_status_and_mode(api: Api) -> None:
    [asset_id] = _assets(api, "listing_10min.mp4")
    older = _create(api, _body([asset_id]))["batch_id"]
    newer = _create(api, _body([asset_id]))["batch_id"]
    api.advance(STARTUP + 0.1)
    api.post(f"/analyze/batches/{newer}/cancel")  # processing: canceling until its item ends
    listed = api.get("/analyze/batches", params={"page_limit": 1}).json()
    assert [b["batch_id"] for b in listed["data"]] == [newer]
    assert listed["page_info"]["total_page"] == 2
    canceling = api.get("/analyze/batches", params={"status": ["canceling", "canceled"]}).json()["data"]
    assert [b["batch_id"] for b in canceling] == [newer]
    running = api.get("/analyze/batches", params={"status": ["processing", "pending"]}).json()["data"]
    assert [b["batch_id"] for b in running] == [older]
    segments = api.get("/analyze/batches", params={"analysis_mode": "time_based_metadata"}).json()["data"]
    assert segments == []
    bad = api.get("/analyze/batches", params={"status": "failed"}, spec=False)
    assert (bad.status_code, _error(bad)) == (400, "parameter_invalid")  # a batch never has "failed"


def test_segmentation_batch(api: Api) -> None:
    [asset_id] = _assets(api, "cooking_lesson_10min.mp4")
    body: dict[str, Any] = {
        "model_name": "pegasus1.5",
        "analysis_mode": "time_based_metadata",
        "defaults": {
            "response_format": {
                "type": "segment_definitions",
                "segment_definitions": [
                    {
                        "id": "steps",
                        "description": "Each cooking step",
                        "fields": [{"name": "title", "type": "string", "description": "Step name"}],
                    }
                ],
            },
            "min_segment_duration": 200,
        },
        "requests": [
            {"video": {"type": "asset_id", "asset_id": asset_id}, "start_time": 60, "end_time": 540}
        ],
    }
    batch_id = _create(api, body)["batch_id"]
    api.advance(STARTUP + 2.0 * 8 + 0.1)  # an 8-minute window
    [line] = _results(api, batch_id)
    assert line["status"] == "ready"
    steps = json.loads(line["data"]["data"])["steps"]
    assert steps[0]["start_time"] == 60 and steps[-1]["end_time"] == 540
    assert all(s["end_time"] - s["start_time"] >= 200 for s in steps)
    prompt_in_segments = api.post(
        "/analyze/batches", {**body, "defaults": {**body["defaults"], "prompt": {"input_text": "x"}}}
    )
    assert (prompt_in_segments.status_code, _error(prompt_in_segments)) == (400, "parameter_invalid")


def test_faults_and_rate_limits_on_batch_routes(api: Api) -> None:
    [asset_id] = _assets(api, "faulty.mp4")
    api.control("POST", "/faults", {"op": "create_batch", "kind": "malformed_json", "count": 1})
    lost = api.post("/analyze/batches", _body([asset_id]), raw=True)
    assert lost.status_code == 201
    assert api.control("GET", "/stats")["created"]["batches"] == 1  # created, though the answer was lost
    assert len(api.get("/analyze/batches").json()["data"]) == 1
    api.control("POST", "/faults", {"op": "get_batch_results", "kind": "status", "status": 500, "count": 1})
    batch_id = api.get("/analyze/batches").json()["data"][0]["batch_id"]
    failed = api.get(f"/analyze/batches/{batch_id}/results")
    assert (failed.status_code, _error(failed)) == (500, "internal_server_error")
    api.control("POST", "/rate-limits", {"groups": {"analyze_async": 1}})
    task = api.post("/analyze/tasks", {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": "x"})
    assert task.status_code == 202
    shared = api.post("/analyze/batches", _body([asset_id]))  # one group for both async creates
    assert (shared.status_code, _error(shared)) == (429, "too_many_requests")
    assert "rate limit" in shared.json()["error"]["message"]


def test_unknown_batch_ids_are_404(api: Api) -> None:
    unknown = "a" * 24
    for method, path in [
        ("GET", f"/analyze/batches/{unknown}"),
        ("GET", f"/analyze/batches/{unknown}/results"),
        ("POST", f"/analyze/batches/{unknown}/cancel"),
        ("DELETE", f"/analyze/batches/{unknown}"),
    ]:
        response = api.call(method, path)
        assert (response.status_code, _error(response)) == (404, "resource_not_exist"), path
    ops = {o["key"]: o for o in api.control("GET", "/operations")["operations"]}
    assert ops["POST /analyze/batches"]["group"] == "analyze_async"
    assert ops["GET /analyze/tasks"]["nested_errors"] is False  # its declared error is flat
    assert (
        api.control("GET", "/operations")["aliases"]["cancel_batch"]
        == "POST /analyze/batches/{batch_id}/cancel"
    )
