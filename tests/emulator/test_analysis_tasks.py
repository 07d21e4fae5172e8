"""Async analysis tasks (``/analyze/tasks``): the processing model, results, limits, errors, faults.

Timing here: 2 slots, 1 s ``pending``, 2 s of processing per minute of video, so a ``_10min``
video takes 21 s in its slot. The clock is jumped, never waited for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import requests

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration

PROMPT = "Give me a title, topics and hashtags as JSON."
GIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "topics": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "hashtags": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^#[^\\s#]+$"}},
    },
    "required": ["title", "topics", "hashtags"],
}
STARTUP = 1.0
TEN_MINUTES = STARTUP + 2.0 * 10  # seconds in a slot for a 10-minute video


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(
        analysis_slots=2, analysis_startup_seconds=STARTUP, analysis_seconds_per_minute=2.0
    )


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _body(asset_id: str, **extra: Any) -> dict[str, Any]:
    return {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": PROMPT, **extra}


def _gist(**extra: Any) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": GIST_SCHEMA}, **extra}


def _create(api: Api, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = api.post("/analyze/tasks", body, **kw)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def _task(api: Api, task_id: str) -> dict[str, Any]:
    response = api.get(f"/analyze/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def _status(api: Api, task_id: str) -> str:
    return str(_task(api, task_id)["status"])


def _error(response: requests.Response) -> str:
    """The code of a nested {"error": {code, message}} body."""
    return str(response.json()["error"]["code"])


def test_task_goes_pending_processing_ready_with_the_sync_answer(api: Api) -> None:
    asset_id = api.ready_asset("sunrise_harbour_fishing_10min.mp4")
    created = _create(api, _body(asset_id, custom_id="ep-001", max_tokens=1024, **_gist()))
    assert created["status"] == "pending"  # a slot was free: no wait in the queue
    task = _task(api, created["task_id"])
    assert (task["status"], task["custom_id"]) == ("pending", "ep-001")
    assert "result" not in task and "completed_at" not in task
    assert task["video_source"] == {"type": "asset_id", "asset_id": asset_id}
    assert task["request_params"]["prompt"] == PROMPT
    assert task["request_params"]["response_format"]["json_schema"] == GIST_SCHEMA
    api.advance(STARTUP + 0.1)
    assert _status(api, created["task_id"]) == "processing"
    api.advance(TEN_MINUTES - STARTUP)
    task = _task(api, created["task_id"])
    assert task["status"] == "ready"
    assert task["video_source"]["system_metadata"] == {"duration": 600.0}
    assert task["completed_at"] >= task["created_at"]
    assert "error" not in task
    result = task["result"]
    data = json.loads(result["data"])
    jsonschema.validate(data, GIST_SCHEMA)
    assert data["title"] == "Sunrise Harbour Fishing"
    # The same answer and the same usage accounting as sync /analyze.
    sync = api.post("/analyze", _body(asset_id, stream=False, max_tokens=1024, **_gist())).json()
    assert (result["data"], result["finish_reason"], result["usage"]) == (
        sync["data"],
        sync["finish_reason"],
        sync["usage"],
    )
    assert result["usage"]["input_tokens"] == 600 * 40 + math.ceil(len(PROMPT) / 4)


def test_tasks_wait_queued_for_a_free_slot(api: Api) -> None:
    asset_id = api.ready_asset("city_cycling_10min.mp4")
    ids = [_create(api, _body(asset_id))["task_id"] for _ in range(3)]
    assert [_status(api, t) for t in ids] == ["pending", "pending", "queued"]
    queued = api.get("/analyze/tasks", params={"status": "queued"}).json()
    assert [t["task_id"] for t in queued["data"]] == [ids[2]]
    api.advance(TEN_MINUTES + 0.1)  # the first two leave their slots; the third takes one
    assert [_status(api, t) for t in ids] == ["ready", "ready", "pending"]
    api.advance(STARTUP)
    assert _status(api, ids[2]) == "processing"
    api.advance(TEN_MINUTES)
    assert _status(api, ids[2]) == "ready"
    described = api.control("GET", "/analysis")
    assert (described["slots"], described["running"], described["queued"]) == (2, [], [])
    assert described["tasks"] == {"ready": 3}


def test_duration_limits_sync_one_hour_async_two_hours(api: Api) -> None:
    ninety = api.ready_asset("lecture_90min.mp4")
    three_hours = api.ready_asset("marathon_3h.mp4")
    short = api.ready_asset("blink_3s.mp4")
    sync = api.post("/analyze", _body(ninety, stream=False))
    assert (sync.status_code, sync.json()["code"]) == (400, "video_duration_too_long")  # classic body
    too_short = api.post("/analyze", _body(short, stream=False))
    assert (too_short.status_code, too_short.json()["code"]) == (400, "video_duration_too_short")
    long_ok = _create(api, _body(ninety))["task_id"]
    too_long = _create(api, _body(three_hours))["task_id"]  # accepted, then fails while processed
    api.advance(STARTUP + 0.1)
    failed = _task(api, too_long)
    assert failed["status"] == "failed"
    assert "exceeds maximum allowed duration" in failed["error"]["message"]
    assert "result" not in failed and "completed_at" in failed
    api.advance(2.0 * 90)
    assert _status(api, long_ok) == "ready"
    tiny = _create(api, _body(short))["task_id"]
    api.advance(STARTUP + 0.1)
    assert _task(api, tiny)["error"]["message"].startswith("Video duration is below")


def test_pegasus_1_5_prompt_v2_and_a_clip_of_a_long_video(api: Api) -> None:
    asset_id = api.ready_asset("harbour_tour_90min.mp4")  # over an hour: async only
    prompt = "Is <@boat> in the video?"
    body = {
        "video": {"type": "asset_id", "asset_id": asset_id},
        "model_name": "pegasus1.5",
        "prompt_v2": {
            "input_text": prompt,
            "media_sources": [{"name": "boat", "media_type": "image", "base64_string": "AAAA"}],
        },
        "start_time": 600,
        "end_time": 1200,
    }
    task_id = _create(api, body)["task_id"]
    api.advance(TEN_MINUTES + 0.1)  # only the 10-minute window is processed
    task = _task(api, task_id)
    assert task["status"] == "ready"
    params = task["request_params"]
    assert "prompt" not in params
    assert params["prompt_v2"] == {
        "input_text": prompt,
        "media_sources": [{"name": "boat", "media_type": "image"}],
    }
    assert (params["start_time"], params["end_time"], params["max_tokens"]) == (600, 1200, 4096)
    assert task["result"]["usage"]["input_tokens"] == 600 * 40 + math.ceil(len(prompt) / 4)


def test_list_filters_pages_and_truncates(api: Api) -> None:
    first = api.ready_asset("winter_market_tour.mp4")
    second = api.ready_asset("island_sailing_diary.mp4")
    older = _create(api, _body(first, **_gist()))["task_id"]
    newer = _create(api, {"video": {"type": "asset_id", "asset_id": second}, "prompt": "x" * 80})["task_id"]
    listed = api.get("/analyze/tasks", params={"page_limit": 1}).json()
    assert [t["task_id"] for t in listed["data"]] == [newer]  # newest first
    assert listed["page_info"] == {"limit_per_page": 1, "page": 1, "total_page": 2, "total_results": 2}
    item = listed["data"][0]
    assert item["request_params"]["prompt"] == "x" * 30  # the list truncates prompts to 30 characters
    by_asset = api.get("/analyze/tasks", params={"asset_id": first}).json()["data"]
    assert [t["task_id"] for t in by_asset] == [older]
    assert by_asset[0]["request_params"]["response_format"] == {"type": "json_schema"}  # schema omitted
    assert api.get("/analyze/tasks", params={"analysis_mode": "time_based_metadata"}).json()["data"] == []
    assert api.get("/analyze/tasks", params={"video_id": "a" * 24}).json()["data"] == []
    assert api.get("/analyze/tasks", params={"page": 9}).json()["data"] == []
    bad = api.get("/analyze/tasks", params={"status": "done"}, spec=False)
    assert (bad.status_code, bad.json()["code"]) == (400, "parameter_invalid")  # this list's errors are flat
    unknown = api.get("/analyze/tasks", params={"custom_id": "x"}, spec=False)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "parameter_unknown")


def test_url_and_base64_sources(api: Api) -> None:
    url = "https://cdn.example.invalid/river_rafting.mp4"
    by_url = _create(api, {"video": {"type": "url", "url": url}, "prompt": PROMPT})["task_id"]
    by_b64 = _create(api, {"video": {"type": "base64_string", "base64_string": "AAAA"}, "prompt": PROMPT})
    assert _task(api, by_url)["video_source"] == {"type": "url", "url": url}
    assert _task(api, by_b64["task_id"])["video_source"] == {"type": "base64_string"}
    listed = api.get("/analyze/tasks", params={"video_url": url}).json()["data"]
    assert [t["task_id"] for t in listed] == [by_url]
    broken = api.post(
        "/analyze/tasks", {"video": {"type": "url", "url": "https://x.invalid/corrupt.mp4"}, "prompt": "x"}
    )
    assert (broken.status_code, _error(broken)) == (400, "parameter_invalid")


def test_delete_only_when_not_processed(api: Api) -> None:
    asset_id = api.ready_asset("forest_hiking_10min.mp4")
    ids = [_create(api, _body(asset_id))["task_id"] for _ in range(3)]
    queued = api.call("DELETE", f"/analyze/tasks/{ids[2]}")
    assert (queued.status_code, queued.content) == (200, b"")  # a queued task leaves the queue
    busy = api.call("DELETE", f"/analyze/tasks/{ids[0]}")
    assert (busy.status_code, _error(busy)) == (409, "task_cannot_be_deleted")
    api.advance(TEN_MINUTES + 0.1)
    assert api.call("DELETE", f"/analyze/tasks/{ids[0]}").status_code == 200
    gone = api.get(f"/analyze/tasks/{ids[0]}")
    assert (gone.status_code, _error(gone)) == (404, "resource_not_exist")
    assert api.call("DELETE", f"/analyze/tasks/{'f' * 24}").status_code == 404
    assert api.control("GET", "/analysis")["tasks"] == {"ready": 1}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"video": None}, 400, "parameter_not_provided"),
        ({"video_id": "a" * 24, "prompt": "x"}, 400, "parameter_unknown"),
        ({"custom_id": "not valid!"}, 400, "parameter_invalid"),
        ({"custom_id": ""}, 400, "parameter_invalid"),
        ({"prompt_v2": {"input_text": "x"}, "prompt": None}, 400, "parameter_invalid"),
        ({"max_tokens": 1}, 400, "parameter_invalid"),
        ({"model_name": "pegasus1.5", "max_tokens": 256}, 400, "parameter_invalid"),
        ({"temperature": 1.5}, 400, "parameter_invalid"),
        ({"start_time": 0, "end_time": 10}, 400, "parameter_invalid"),  # clipping is pegasus1.5 only
        ({"model_name": "pegasus1.5", "start_time": 5, "end_time": 7}, 400, "parameter_invalid"),
        ({"analysis_mode": "time_based_metadata"}, 400, "parameter_invalid"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"type": "string", "maxLength": 5}}},
            422,
            "parameter_invalid",
        ),
        (
            {
                "model_name": "pegasus1.5",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"type": "object", "properties": {"at": {"type": "timestamp"}}},
                },
            },
            400,
            "parameter_invalid",
        ),
    ],
)
def test_invalid_bodies_are_nested_errors(api: Api, body: dict[str, Any], status: int, code: str) -> None:
    asset_id = api.ready_asset("any_video.mp4")
    full = {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": "x", **body}
    full = {k: v for k, v in full.items() if v is not None}  # None: leave the field out
    response = api.post("/analyze/tasks", full, spec=False)
    assert (response.status_code, _error(response)) == (status, code), response.text
    assert api.control("GET", "/stats")["created"]["analysis_tasks"] == 0


def test_unknown_or_unready_asset_is_a_400(api: Api) -> None:
    unknown = api.post("/analyze/tasks", _body("0" * 24))
    assert (unknown.status_code, _error(unknown)) == (400, "resource_not_exist")  # the spec declares no 404
    processing = api.create_url_asset("https://x.invalid/slow_upload.mp4")["_id"]
    not_ready = api.post("/analyze/tasks", _body(processing))
    assert (not_ready.status_code, _error(not_ready)) == (400, "video_not_ready")


def test_video_segmentation_with_pegasus_1_5(api: Api) -> None:
    asset_id = api.ready_asset("harbour_festival_10min.mp4")
    definitions = [
        {
            "id": "scenes",
            "description": "Each distinct scene",
            "fields": [
                {"name": "title", "type": "string", "description": "A short title"},
                {"name": "peak", "type": "timestamp", "format": "hh:mm:ss", "description": "Busiest moment"},
                {"name": "tags", "type": "array", "items": {"type": "string"}, "description": "Tags"},
            ],
        },
        {"id": "crowd", "description": "Crowd shots"},
    ]
    body = {
        "video": {"type": "asset_id", "asset_id": asset_id},
        "model_name": "pegasus1.5",
        "analysis_mode": "time_based_metadata",
        "max_segment_duration": 120,
        "response_format": {
            "type": "segment_definitions",
            "segment_definitions": definitions,
            "segment_time_format": "hh:mm:ss",
        },
    }
    task_id = _create(api, body)["task_id"]
    api.advance(TEN_MINUTES + 0.1)
    task = _task(api, task_id)
    assert task["status"] == "ready"
    params = task["request_params"]
    assert (params["analysis_mode"], params["max_tokens"], params["max_segment_duration"]) == (
        "time_based_metadata",
        32_768,
        120,
    )
    data = json.loads(task["result"]["data"])
    assert set(data) == {"scenes", "crowd"}
    scenes = data["scenes"]
    assert len(scenes) >= 5  # 600 s in segments of at most 120 s
    assert scenes[0]["start_time"] == "00:00:00" and scenes[-1]["end_time"] == "00:10:00"
    assert scenes[0]["metadata"]["title"] == "Harbour Festival"
    assert isinstance(scenes[0]["metadata"]["tags"], list)
    listed = api.get("/analyze/tasks").json()["data"][0]
    assert listed["request_params"]["response_format"]["segment_definitions"] == definitions[:1]


def test_idempotency_key_never_creates_a_second_task(api: Api) -> None:
    asset_id = api.ready_asset("mountain_cycling.mp4")
    key = {"Idempotency-Key": "airflow-run-1-try-1"}
    first = _create(api, _body(asset_id), headers=key)
    again = _create(api, _body(asset_id), headers=key)
    assert again == first
    assert api.control("GET", "/stats")["created"] == {
        "analysis_tasks": 1,
        "batches": 0,
        "batch_tasks": 0,
        "idempotent_replays": 1,
    }
    other = api.post("/analyze/tasks", _body(asset_id, temperature=0.5), headers=key)
    assert (other.status_code, _error(other)) == (422, "idempotency_key_reused")
    assert api.get("/analyze/tasks").json()["page_info"]["total_results"] == 1
    journal = json.dumps(api.control("GET", "/journal"))
    assert "airflow-run-1-try-1" not in journal  # headers are never journaled


def test_lost_response_still_created_the_task_once(api: Api) -> None:
    asset_id = api.ready_asset("desert_race.mp4")
    api.control("POST", "/faults", {"op": "create_analysis_task", "kind": "malformed_json", "count": 1})
    lost = api.post("/analyze/tasks", _body(asset_id, custom_id="run-7"), raw=True)
    assert lost.status_code == 202
    with pytest.raises(requests.JSONDecodeError):
        lost.json()
    # What a careful client does next: look for its task before creating another.
    found = api.get("/analyze/tasks", params={"asset_id": asset_id}).json()["data"]
    assert [t["custom_id"] for t in found] == ["run-7"]
    assert api.control("GET", "/stats")["created"]["analysis_tasks"] == 1


def test_task_failure_and_model_output_faults(api: Api) -> None:
    asset_id = api.ready_asset("sunrise_harbour_fishing_10min.mp4")
    api.control(
        "POST",
        "/faults",
        [
            {"op": "create_analysis_task", "kind": "task_failure", "count": 1, "message": "Decoder crashed."},
            {"op": "create_analysis_task", "kind": "model_output", "variant": "length", "count": 1},
        ],
    )
    failing = _create(api, _body(asset_id, **_gist()))["task_id"]
    truncated = _create(api, _body(asset_id, **_gist()))["task_id"]
    fine = _create(api, _body(asset_id, **_gist()))["task_id"]
    api.advance(STARTUP + 0.1)
    assert _task(api, failing)["error"] == {"message": "Decoder crashed."}
    api.advance(TEN_MINUTES)  # "fine" took the failed task's slot at 1 s
    cut = _task(api, truncated)
    assert (cut["status"], cut["result"]["finish_reason"]) == ("ready", "length")
    assert cut["error"]["message"].startswith("output truncated")  # ready, with the truncation warning
    assert json.loads(_task(api, fine)["result"]["data"])["title"] == "Sunrise Harbour Fishing"
    assert [r["applied"] for r in api.control("GET", "/faults")["rules"]] == [1, 1]


def test_asset_deleted_while_queued_fails_the_task(api: Api) -> None:
    busy = api.ready_asset("long_take_10min.mp4")
    doomed = api.ready_asset("short_lived.mp4")
    for _ in range(2):
        _create(api, _body(busy))
    waiting = _create(api, _body(doomed))["task_id"]
    assert api.call("DELETE", f"/assets/{doomed}").status_code == 200
    api.advance(TEN_MINUTES + STARTUP + 0.2)
    task = _task(api, waiting)
    assert (task["status"], task["error"]["message"]) == ("failed", "The asset could not be read.")


def test_rate_limit_group_and_error_shapes(api: Api) -> None:
    asset_id = api.ready_asset("rate_limited.mp4")
    api.control("POST", "/rate-limits", {"groups": {"analyze_async": 1}})
    first = api.post("/analyze/tasks", _body(asset_id))
    assert first.status_code == 202
    assert not any(h.lower().startswith("x-ratelimit") for h in first.headers)  # no documented headers
    limited = api.post("/analyze/tasks", _body(asset_id))
    assert (limited.status_code, _error(limited)) == (429, "too_many_requests")
    assert "retry-after" not in limited.headers
    assert api.get("/analyze/tasks").status_code == 200  # reads are another group
    assert api.post("/analyze", _body(asset_id, stream=False)).status_code == 200  # so is /analyze
    assert api.control("GET", "/stats")["created"]["analysis_tasks"] == 1
    api.control("POST", "/faults", {"op": "get_analysis_task", "kind": "status", "status": 503, "count": 1})
    unavailable = api.get(f"/analyze/tasks/{first.json()['task_id']}")
    assert (unavailable.status_code, _error(unavailable)) == (503, "service_unavailable")
    bad_key = api.post("/analyze/tasks", _body(asset_id), key="wrong")
    assert (bad_key.status_code, _error(bad_key)) == (401, "api_key_invalid")
    flat = api.get("/analyze/tasks", key="wrong")
    assert (flat.status_code, flat.json()["code"]) == (401, "api_key_invalid")
