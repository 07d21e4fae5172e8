"""Literal exchanges and check builders shared by the strict-contract tests.

Each builder returns a zero-argument check (it raises AssertionError when the contract rejects
the exchange), so a case can pair a known-bad check with its known-good match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.contract.openapi import validate_request, validate_response, validate_stream_events

#: (rule, case id, known-bad check that must fail, matching known-good check that must pass)
Case = tuple[str, str, Callable[[], None], Callable[[], None]]

ID = "6298d673f1090f1100476d4c"
OTHER = "65ef0c1e7d2a4c9e8f112a5d"
URL = "https://videos.example.com/harbour_dawn.mp4"
KEY = {"x-api-key": "tlk_test"}
JSON_HEADERS = {**KEY, "Content-Type": "application/json"}
MULTIPART_HEADERS = {**KEY, "Content-Type": "multipart/form-data; boundary=abc123"}
JSON_RESPONSE = {"Content-Type": "application/json; charset=utf-8"}
PAGE_INFO = {"limit_per_page": 10, "page": 1, "total_page": 1, "total_results": 1}
CLASSIC = {"code": "parameter_invalid", "message": "The video_id parameter is invalid."}
NESTED = {"error": {"code": "resource_not_exist", "message": "No such task."}}
ANALYZE_BODY: dict[str, Any] = {
    "model_name": "pegasus1.2",
    "video": {"type": "asset_id", "asset_id": ID},
    "prompt": "Title, topics and hashtags as JSON.",
    "temperature": 0.2,
    "max_tokens": 1024,
    "stream": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
    },
}
ANALYZE_200: dict[str, Any] = {
    "id": "3b0f6c1e-7d2a-4c9e-8f11-2a5d9e4b7c60",
    "data": '{"title": "Harbour at dawn"}',
    "finish_reason": "stop",
    "usage": {"output_tokens": 12, "input_tokens": 9021},
}
INDEXED_ASSET = {
    "_id": OTHER,
    "asset_id": ID,
    "status": "ready",
    "created_at": "2026-11-02T10:00:00Z",
    "updated_at": "2026-11-02T10:01:30Z",
    "indexed_at": "2026-11-02T10:01:30Z",
    "system_metadata": {"filename": "harbour_dawn.mp4", "duration": 62.5},
}
ASSET = {"_id": ID, "method": "url", "status": "ready", "filename": "harbour_dawn.mp4", "user_metadata": {}}
TASK = {"_id": OTHER, "video_id": ID, "index_id": ID, "status": "indexing"}
VIDEO = {"_id": ID, "asset_id": OTHER, "updated_at": "2026-11-02T10:01:30Z", "system_metadata": {}}


def without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def listing(item: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"data": [item], "page_info": PAGE_INFO, **envelope}


def analyze(body: dict[str, Any], **kw: Any) -> Callable[[], None]:
    return lambda: validate_request("POST", "/v1.3/analyze", json=body, **kw)


def request(method: str, path: str, **kw: Any) -> Callable[[], None]:
    return lambda: validate_request(method, f"/v1.3{path}", **kw)


def response(method: str, path: str, status: int, body: Any, **kw: Any) -> Callable[[], None]:
    return lambda: validate_response(method, f"/v1.3{path}", status, body, **kw)


def stream(events: list[dict[str, Any]], **kw: Any) -> Callable[[], None]:
    return lambda: validate_stream_events("POST", "/v1.3/analyze", events, **kw)


STREAM: list[dict[str, Any]] = [
    {"event_type": "stream_start", "metadata": {"generation_id": "g"}},
    {"event_type": "text_generation", "text": '{"title": "Harbour"}'},
    {"event_type": "stream_end", "finish_reason": "stop", "metadata": {"usage": {"output_tokens": 5}}},
]


def response_case(rule: str, case: str, method: str, path: str, status: int, bad: Any, good: Any) -> Case:
    """A known-bad and a known-good body for the same operation and status."""
    return rule, case, response(method, path, status, bad), response(method, path, status, good)
