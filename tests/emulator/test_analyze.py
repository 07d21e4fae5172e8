from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.emulator import Api, ndjson, running_api

pytestmark = pytest.mark.integration

GIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "topics": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "hashtags": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^#[^\\s#]+$"}},
    },
    "required": ["title", "topics", "hashtags"],
}
PROMPT = "Give me a title, topics and hashtags as JSON."


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api()


@pytest.fixture(scope="module")
def asset_id(api: Api) -> str:
    asset = api.create_url_asset("https://cdn.example.invalid/sunrise_harbour_fishing.mp4")
    api.advance(0.3)
    return str(asset["_id"])


def _body(asset_id: str, **extra: Any) -> dict[str, Any]:
    return {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": PROMPT, **extra}


def _gist_format(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": schema or GIST_SCHEMA}


def test_non_stream_json_schema_output(api: Api, asset_id: str) -> None:
    response = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format()))
    assert response.status_code == 200
    body = response.json()
    assert body["finish_reason"] == "stop"
    data = json.loads(body["data"])
    jsonschema.validate(data, GIST_SCHEMA)
    assert data == {
        "title": "Sunrise Harbour Fishing",
        "topics": ["Sunrise", "Harbour", "Fishing"],
        "hashtags": ["#Sunrise", "#Harbour", "#Fishing", "#SunriseHarbourFishing"],
    }
    assert abs(body["usage"]["output_tokens"] - len(body["data"]) / 4) <= 1
    assert body["usage"]["input_tokens"] > 0


def test_output_is_deterministic_across_calls(api: Api, asset_id: str) -> None:
    first = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format())).json()
    second = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format())).json()
    assert first["data"] == second["data"]
    assert first["id"] != second["id"]


def test_stream_is_the_default_and_is_ndjson(api: Api, asset_id: str) -> None:
    response = api.post("/analyze", _body(asset_id, response_format=_gist_format()))
    assert response.status_code == 200
    events = ndjson(response)
    assert events[0]["event_type"] == "stream_start"
    assert events[-1]["event_type"] == "stream_end"
    assert events[-1]["finish_reason"] == "stop"
    fragments = [e["text"] for e in events if e["event_type"] == "text_generation"]
    assert len(fragments) > 3
    text = "".join(fragments)
    jsonschema.validate(json.loads(text), GIST_SCHEMA)
    assert events[-1]["metadata"]["generation_id"] == events[0]["metadata"]["generation_id"]
    assert events[-1]["metadata"]["usage"]["output_tokens"] == -(-len(text) // 4)


def test_plain_text_without_response_format(api: Api, asset_id: str) -> None:
    body = api.post("/analyze", _body(asset_id, stream=False)).json()
    assert "emulated" in body["data"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(body["data"])


def test_rich_schema_is_honoured(api: Api, asset_id: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "mood": {"type": "string", "enum": ["calm", "tense", "joyful"]},
            "slug": {"type": "string", "pattern": "^[a-z0-9-]+$"},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "explicit": {"type": "boolean"},
            "chapters": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"heading": {"type": "string"}, "start": {"type": "number"}},
                    "required": ["heading", "start"],
                },
            },
            "speaker": {"$ref": "#/$defs/person"},
            "nothing": {"type": "null"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["title", "mood", "slug", "score", "chapters", "speaker"],
        "$defs": {
            "person": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
        },
    }
    response = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format(schema)))
    data = json.loads(response.json()["data"])
    jsonschema.validate(data, schema)
    assert list(data) == list(schema["properties"])  # declaration order


@pytest.mark.parametrize(
    "fragment",
    [
        {"type": "string", "minLength": 1},
        {"type": "string", "maxLength": 80},
        {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        {"type": "array", "items": {"type": "string"}, "minItems": 3},
        {"type": "object", "properties": {"deep": {"type": "string", "maxLength": 3}}},
    ],
)
def test_unsupported_schema_keywords_are_422(api: Api, asset_id: str, fragment: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "x": fragment},
        "required": ["title"],
    }
    response = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format(schema)))
    assert response.status_code == 422
    assert "/properties/x" in response.json()["message"]


def test_additional_properties_anywhere_is_422(api: Api, asset_id: str) -> None:
    schema = {**GIST_SCHEMA, "additionalProperties": False}
    response = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format(schema)))
    assert response.status_code == 422


def test_a_property_named_like_a_keyword_is_fine(api: Api, asset_id: str) -> None:
    schema = {"type": "object", "properties": {"maxItems": {"type": "string"}}, "required": ["maxItems"]}
    response = api.post("/analyze", _body(asset_id, stream=False, response_format=_gist_format(schema)))
    assert response.status_code == 200


def test_max_tokens_too_small_gives_length_and_truncated_json(api: Api, asset_id: str) -> None:
    response = api.post(
        "/analyze", _body(asset_id, stream=False, max_tokens=10, response_format=_gist_format())
    )
    body = response.json()
    assert body["finish_reason"] == "length"
    assert len(body["data"]) == 40
    assert body["error"]["message"]
    assert body["usage"]["output_tokens"] == 10
    with pytest.raises(json.JSONDecodeError):
        json.loads(body["data"])


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"model_name": "pegasus1.5", "max_tokens": 100}, 400, "parameter_invalid"),
        ({"max_tokens": 1}, 400, "parameter_invalid"),
        ({"max_tokens": 5000}, 400, "parameter_invalid"),
        ({"model_name": "pegasus9"}, 400, "parameter_invalid"),
        ({"temperature": 3}, 400, "parameter_invalid"),
        ({"stream": "no"}, 400, "parameter_invalid"),
        ({"response_format": {"type": "text"}}, 400, "parameter_invalid"),
    ],
)
def test_parameter_validation(api: Api, asset_id: str, extra: dict[str, Any], status: int, code: str) -> None:
    response = api.post("/analyze", _body(asset_id, **extra), spec=False)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_exactly_one_of_video_and_video_id(api: Api, asset_id: str) -> None:
    # Deliberately invalid requests: not checked against the spec on the way out.
    neither = api.post("/analyze", {"prompt": PROMPT, "stream": False}, spec=False)
    assert (neither.status_code, neither.json()["code"]) == (400, "parameter_not_provided")
    both = api.post("/analyze", _body(asset_id, video_id="a" * 24, stream=False), spec=False)
    assert (both.status_code, both.json()["code"]) == (400, "parameter_invalid")
    no_prompt = api.post(
        "/analyze", {"video": {"type": "asset_id", "asset_id": asset_id}, "stream": False}, spec=False
    )
    assert (no_prompt.status_code, no_prompt.json()["code"]) == (400, "parameter_not_provided")
    unknown = api.post("/analyze", _body(asset_id, analysis_mode="general"), spec=False)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "parameter_unknown")


def test_unknown_or_unready_asset(api: Api) -> None:
    missing = api.post("/analyze", _body("b" * 24, stream=False))
    assert (missing.status_code, missing.json()["code"]) == (404, "resource_not_exist")
    fresh = api.create_url_asset("https://x.invalid/fresh.mp4")
    not_ready = api.post("/analyze", _body(fresh["_id"], stream=False))
    assert not_ready.status_code == 400


def test_video_id_rules(api: Api) -> None:
    # Only videos indexed with Pegasus (before 2026: a legacy seed) can be analyzed by video_id.
    seeded = api.seed(
        "analyze-video-id", 1, filenames=["mountain_climbing_diary.mp4"], model_name="pegasus1.2"
    )
    video_id = seeded["videos"][0]["video_id"]
    ok = api.post("/analyze", {"video_id": video_id, "prompt": PROMPT, "stream": False})
    assert ok.status_code == 200
    assert "Mountain Climbing Diary" in ok.json()["data"]
    newer = api.post("/analyze", {"video_id": video_id, "prompt": PROMPT, "model_name": "pegasus1.5"})
    assert (newer.status_code, newer.json()["code"]) == (400, "parameter_invalid")
    marengo = api.seed("analyze-marengo", 1)["videos"][0]["video_id"]  # Marengo by default
    no_pegasus = api.post("/analyze", {"video_id": marengo, "prompt": PROMPT, "stream": False})
    assert (no_pegasus.status_code, no_pegasus.json()["code"]) == (400, "index_not_supported_for_generate")
    unknown = api.post("/analyze", {"video_id": "c" * 24, "prompt": PROMPT, "stream": False})
    assert unknown.status_code == 404


def test_url_and_pegasus15_inputs(api: Api) -> None:
    body = {
        "model_name": "pegasus1.5",
        "video": {"type": "url", "url": "https://cdn.example.invalid/island_surfing_race.mp4"},
        "prompt": PROMPT,
        "stream": False,
        "max_tokens": 1024,
        "response_format": _gist_format(),
    }
    data = json.loads(api.post("/analyze", body).json()["data"])
    assert data["title"] == "Island Surfing Race"


def test_metadata_category_becomes_a_topic(api: Api) -> None:
    asset = api.create_url_asset(
        "https://x.invalid/forest_baking.mp4", user_metadata='{"category": "home cooking"}'
    )
    api.advance(0.3)
    body = api.post("/analyze", _body(asset["_id"], stream=False, response_format=_gist_format())).json()
    data = json.loads(body["data"])
    assert data["topics"] == ["Forest", "Baking", "Home Cooking"]
    assert "#HomeCooking" in data["hashtags"]


@pytest.mark.parametrize("version", ["v1.3", "v1.2"])
def test_gist_is_gone_like_any_unknown_route(api: Api, version: str) -> None:
    # POST /gist was removed on 2026-02-15: it answers exactly like a route that never existed.
    video_id = api.seed("gist-gone", 1, model_name="pegasus1.2")["videos"][0]["video_id"]
    gist = api.post(
        "/gist", {"video_id": video_id, "types": ["title"]}, spec=False, raw=True, version=version
    )
    unknown = api.post("/no-such-route", {"video_id": video_id}, spec=False, raw=True, version=version)
    assert gist.status_code == unknown.status_code == 404
    assert gist.json()["code"] == unknown.json()["code"] == "resource_not_exist"
    assert api.control("GET", "/journal")["entries"][-2]["operation"] is None
    assert "POST /gist" not in {o["key"] for o in api.control("GET", "/operations")["operations"]}
    assert "gist" not in api.control("GET", "/operations")["aliases"]
