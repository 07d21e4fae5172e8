"""Pure tests (no HTTP): content generation, the rate limiter, fault rules and the spec validator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from airflow_provider_gist.emulator import content
from airflow_provider_gist.emulator.__main__ import config_from_args, parse_args
from airflow_provider_gist.emulator.async_params import parse_task
from airflow_provider_gist.emulator.faults import FaultInjector, FaultRule, RateLimiter, parse_rules
from airflow_provider_gist.emulator.jobs import JobQueue, JobSettings
from airflow_provider_gist.emulator.state import Clock, MediaInfo, Schedule, State, Timing
from tests.contract.openapi import find_operation, validate_request, validate_response, validate_stream_events


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("sunrise_harbour_fishing.mp4", "Sunrise Harbour Fishing"),
        ("https://cdn.invalid/a/b/Mountain-Bike%20Tour.MOV?sig=1", "Mountain Bike Tour"),
        ("CityWalkAtNight_2024.webm", "City Walk At Night"),
        ("1234.mp4", "Untitled Video"),
    ],
)
def test_titles_from_filenames(name: str, title: str) -> None:
    assert content.gist_for(name)["title"] == title


def test_hashtags_match_the_gist_pattern() -> None:
    gist = content.gist_for("sunrise_harbour_fishing.mp4", {"category": "travel vlog"})
    assert gist["hashtags"] == ["#Sunrise", "#Harbour", "#Fishing", "#TravelVlog", "#SunriseHarbourFishing"]
    schema = {"type": "array", "items": {"type": "string", "pattern": "^#[^\\s#]+$"}}
    jsonschema.validate(gist["hashtags"], schema)


def test_pattern_is_honoured_by_rewriting() -> None:
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]+$"},
            "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[a-z]+$"}},
            "id": {"type": "string", "format": "uuid"},
            "when": {"type": "string", "format": "date-time"},
        },
    }
    value = json.loads(content.json_for_schema(schema, "river_sailing.mp4", None))
    jsonschema.validate(value, schema)
    assert value["tags"] == ["river", "sailing"]


def test_unsupported_keywords_are_found_with_pointers() -> None:
    schema = {
        "type": "object",
        "properties": {
            "maxItems": {"type": "string"},
            "list": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 2},
        },
        "$defs": {"x": {"type": "object", "additionalProperties": False}},
    }
    assert sorted(content.unsupported_keywords(schema)) == [
        "/$defs/x/additionalProperties",
        "/properties/list/items/maxLength",
        "/properties/list/minItems",
    ]


def test_schedule_status_and_transitions() -> None:
    schedule = Schedule.spread(100.0, 4.0, ["pending", "queued"], "ready")
    assert [schedule.status(t) for t in (99.0, 100.0, 101.9, 102.0, 104.0)] == [
        "pending",
        "pending",
        "pending",
        "queued",
        "ready",
    ]
    assert schedule.changed_at(103.0) == 102.0


def test_injectable_clock_drives_state() -> None:
    now = [1_000.0]
    state = State(timing=Timing(asset_ready_seconds=5, indexing_seconds=5), clock=Clock(lambda: now[0]))
    asset = state.create_asset(
        method="url", source="https://x/a.mp4", filename="a.mp4", size=None, user_metadata=None
    )
    assert state.asset_json(asset, detail=True)["status"] == "processing"
    now[0] += 5
    assert state.asset_json(asset, detail=True)["status"] == "ready"


def test_ids_are_reproducible_per_seed() -> None:
    assert State(seed=3).new_id() == State(seed=3).new_id()
    assert State(seed=3).new_id() != State(seed=4).new_id()


def test_fixed_window_limiter() -> None:
    limiter = RateLimiter(origin=0.0, limits={"analyze": (2, 10.0)}, retry_after=True)
    decisions = [limiter.check("analyze", t) for t in (1.0, 2.0, 3.0, 9.5)]
    assert [d.allowed for d in decisions if d] == [True, True, False, False]
    rejected = decisions[2]
    assert rejected is not None
    assert "Retry-After" not in rejected.headers(3.0)  # the docs never promise it
    assert rejected.headers(3.0, retry_after=True)["Retry-After"] == "7"
    assert rejected.headers(3.0)["X-Ratelimit-Reset"] == "10"
    assert "X-Ratelimit-Limit" not in rejected.headers(3.0, documented=False)
    fresh = limiter.check("analyze", 10.0)
    assert fresh is not None
    assert (fresh.allowed, fresh.remaining) == (True, 1)
    assert limiter.check("read", 1.0) is None


def test_fault_rules_parse_and_count() -> None:
    rules = parse_rules({"rules": [{"op": "get_task", "kind": "status", "status": 503, "count": 1}]})
    assert rules[0].op == "GET /tasks/{task_id}"
    injector = FaultInjector()
    injector.set_rules(rules, append=False)
    assert injector.pick("GET /tasks/{task_id}") is rules[0]
    assert injector.pick("GET /tasks/{task_id}") is None
    with pytest.raises(ValueError, match="variant"):
        FaultRule.from_dict({"op": "analyze", "kind": "model_output", "variant": "poetry"})
    with pytest.raises(ValueError, match="unknown fault rule field"):
        FaultRule.from_dict({"op": "analyze", "kind": "slow", "dealy": 1})


def test_per_task_fault_kinds_fire_per_created_task_not_per_request() -> None:
    injector = FaultInjector()
    injector.set_rules(
        parse_rules(
            [{"op": "create_batch", "kind": "task_failure", "count": 2}, {"op": "*", "kind": "slow"}]
        ),
        append=False,
    )
    request_rule = injector.pick("POST /analyze/batches")
    assert request_rule is not None and request_rule.kind == "slow"  # task_failure is not a request fault
    picks = [injector.pick_task("POST /analyze/batches") for _ in range(3)]
    assert [r.kind if r else None for r in picks] == ["task_failure", "task_failure", None]
    assert injector.pick_task("POST /analyze") is None


@pytest.mark.parametrize(
    ("name", "seconds", "title"),
    [
        ("lecture_90min.mp4", 5400.0, "Lecture"),
        ("https://x.invalid/keynote-2.5h.mov", 9000.0, "Keynote"),
        ("blink_3s.mp4", 3.0, "Blink"),
    ],
)
def test_a_duration_in_the_filename_sets_the_fake_duration(name: str, seconds: float, title: str) -> None:
    assert MediaInfo.guess(name).duration == seconds
    assert content.gist_for(name)["title"] == title


def test_job_queue_replays_slot_releases_in_time_order() -> None:
    now = [1_000.0]
    state = State(clock=Clock(lambda: now[0]))
    jobs = JobQueue(state, JobSettings(slots=1, startup_seconds=1.0, seconds_per_minute=6.0))
    spec = parse_task({"video": {"type": "url", "url": "https://x.invalid/a_1min.mp4"}, "prompt": "p"})
    media = MediaInfo.guess("a_1min.mp4")  # 60 s of video: 1 + 6 = 7 s in the slot
    jobs.settle()
    first, second = (jobs.create_task(spec, media, None, None, None) for _ in range(2))
    assert [t.status(now[0], 1.0) for t in (first, second)] == ["pending", "queued"]
    now[0] += 20  # one jump replays both: the second starts when the first ends
    jobs.settle()
    assert (first.finished_at, second.started_at, second.finished_at) == (1_007.0, 1_007.0, 1_014.0)
    assert [t.final for t in (first, second)] == ["ready", "ready"]


def test_cli_flags_for_async_analysis() -> None:
    config = config_from_args(
        parse_args(
            [
                "--analysis-slots=1",
                "--analysis-startup-seconds=0",
                "--analysis-seconds-per-minute=0.1",
                "--batch-expiry-seconds=60",
                "--batch-retention-seconds=120",
                "--max-active-batches=2",
                "--group-limit=analyze_async=3/10",
            ]
        )
    )
    settings = config.job_settings()
    assert (settings.slots, settings.startup_seconds, settings.seconds_per_minute) == (1, 0.0, 0.1)
    assert (settings.batch_expiry_seconds, settings.batch_retention_seconds, settings.max_active_batches) == (
        60.0,
        120.0,
        2,
    )
    assert config.rate_limits == {"analyze_async": (3, 10.0)}
    with pytest.raises(ValueError, match="analysis_slots"):
        config_from_args(parse_args(["--analysis-slots=0"]))


# the spec validator ----------------------------------------------------------------------------
def test_find_operation_prefers_literal_segments() -> None:
    assert find_operation("GET", "/v1.3/assets/multipart-uploads")[0] == "/assets/multipart-uploads"
    assert find_operation("GET", "http://h:1/v1.3/assets/abc?x=1")[0] == "/assets/{asset_id}"
    with pytest.raises(AssertionError, match="no such operation"):
        find_operation("POST", "/v1.3/gist")


def test_validate_response_reports_operation_and_json_path() -> None:
    page_info = {"limit_per_page": 10, "page": 1, "total_page": 1, "total_results": 1}
    body: dict[str, Any] = {"data": [{"_id": 5}], "page_info": page_info}
    with pytest.raises(AssertionError, match=r"GET /indexes -> 200: at \$\.data\[0\]\['_id'\]"):
        validate_response("GET", "/v1.3/indexes", 200, body)
    validate_response("DELETE", "/v1.3/indexes/x", 200, b"")
    with pytest.raises(AssertionError, match="declares no body"):
        validate_response("DELETE", "/v1.3/indexes/x", 200, {"ok": True})
    validate_response("POST", "/v1.3/analyze", 429, b"")
    validate_response("GET", "/v1.3/indexes", 401, {"code": "api_key_invalid", "message": "m"})
    with pytest.raises(AssertionError, match="not declared"):
        validate_response("GET", "/v1.3/indexes", 401, None, allow_undeclared=False)
    with pytest.raises(AssertionError, match="not an error object"):
        validate_response("GET", "/v1.3/indexes", 503, {"data": []})


def test_validate_stream_events() -> None:
    validate_stream_events("POST", "/v1.3/analyze", [{"event_type": "text_generation", "text": "x"}])
    with pytest.raises(AssertionError, match="stream event #0"):
        validate_stream_events(
            "POST", "/v1.3/analyze", [{"event_type": "stream_end", "finish_reason": "done"}]
        )


def test_validate_request_bodies_forms_and_queries() -> None:
    validate_request(
        "POST", "/v1.3/analyze", json={"video": {"type": "asset_id", "asset_id": "a"}, "prompt": "p"}
    )
    with pytest.raises(AssertionError, match="JSON body"):
        validate_request("POST", "/v1.3/analyze", json={"model_name": "pegasus2"})
    validate_request(
        "POST",
        "/v1.3/tasks",
        form={"index_id": "i", "enable_video_stream": "false"},
        files={"video_file": b""},
    )
    with pytest.raises(AssertionError, match="true'/'false"):
        validate_request("POST", "/v1.3/tasks", form={"index_id": "i", "enable_video_stream": True})
    with pytest.raises(AssertionError, match="unknown multipart field"):
        validate_request("POST", "/v1.3/tasks", form={"index_id": "i", "video": "x"})
    validate_request(
        "GET",
        "/v1.3/indexes/i/videos",
        query={"duration[gte]": "4", "user_metadata[a]": "b", "category": "news"},
    )
    with pytest.raises(AssertionError, match="unknown query parameter"):
        validate_request("GET", "/v1.3/tasks", query={"per_page": 10})
    with pytest.raises(AssertionError, match="not one of"):
        validate_request("GET", "/v1.3/tasks", query={"status": ["ready", "done"]})
    with pytest.raises(AssertionError, match="not of type 'integer'"):
        validate_request("GET", "/v1.3/tasks", query={"page": "first"})
