"""Each rule of the strict contract (tests/contract/openapi.py ``CONTRACT_RULES``), proven both ways.

Every case pairs a known-bad exchange, which must fail the contract check, with the matching
known-good one, which must pass: so a rule that silently stops biting (or starts rejecting valid
traffic) fails here. No emulator is involved: the examples are literal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.contract.openapi import (
    CONTRACT_RULES,
    load_spec,
    spec_path,
    validate_exchange,
    validate_request,
    validate_response,
    validate_stream_events,
)

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


def _without(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in keys}


def _listing(item: dict[str, Any], **envelope: Any) -> dict[str, Any]:
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

# (rule, case id, known-bad check that must fail, matching known-good check that must pass)
CASES: list[tuple[str, str, Callable[[], None], Callable[[], None]]] = [
    # ---------------------------------------------------------------- requests
    (
        "request.closed-objects",
        "analyze-videoid-typo",
        analyze({"videoid": ID, "prompt": "p"}),
        analyze({"video_id": ID, "prompt": "p"}),
    ),
    (
        "request.closed-objects",
        "analyze-field-of-another-endpoint",
        analyze({**ANALYZE_BODY, "analysis_mode": "general"}),
        analyze(ANALYZE_BODY),
    ),
    (
        "request.closed-objects",
        "nested-video-object",
        analyze({**ANALYZE_BODY, "video": {"type": "asset_id", "asset_id": ID, "url": URL}}),
        analyze({**ANALYZE_BODY, "video": {"type": "url", "url": URL}}),
    ),
    (
        "request.closed-objects",
        "response-format-closed-but-json-schema-free",
        analyze({**ANALYZE_BODY, "response_format": {**ANALYZE_BODY["response_format"], "strict": True}}),
        analyze(
            {
                **ANALYZE_BODY,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"type": "object", "anything": {"goes": True}},
                },
            }
        ),
    ),
    (
        "request.closed-objects",
        "index-models-item",
        request(
            "POST",
            "/indexes",
            json={"index_name": "n", "models": [{"model_name": "pegasus1.2", "model_options": [], "x": 1}]},
        ),
        request(
            "POST",
            "/indexes",
            json={"index_name": "n", "models": [{"model_name": "pegasus1.2", "model_options": ["visual"]}]},
        ),
    ),
    (
        "request.closed-objects",
        "user-metadata-stays-free-form",
        request("POST", f"/indexes/{ID}/indexed-assets", json={"asset_id": ID, "metadata": {"k": "v"}}),
        request("POST", f"/indexes/{ID}/indexed-assets", json={"asset_id": ID, "user_metadata": {"any": 1}}),
    ),
    (
        "request.closed-objects",
        "multipart-field",
        request("POST", "/assets", form={"method": "url", "url": URL, "video_url": URL}),
        request("POST", "/assets", form={"method": "url", "url": URL, "enable_hls": "false"}),
    ),
    (
        "request.closed-objects",
        "query-object-parameter",
        request("GET", f"/indexes/{ID}/indexed-assets", query={"duration[from]": "10"}),
        request("GET", f"/indexes/{ID}/indexed-assets", query={"duration[gte]": "10", "duration[lte]": "60"}),
    ),
    (
        "request.closed-objects",
        "query-parameter",
        request("GET", "/assets", query={"videoid": ID}),
        request("GET", "/assets", query={"asset_ids": [ID, OTHER], "filename": "harbour"}),
    ),
    (
        "request.query-bracketed-metadata",
        "bare-key-is-not-a-metadata-filter",
        request("GET", f"/indexes/{ID}/indexed-assets", query={"videoid": ID}, metadata_bare_keys=False),
        request(
            "GET",
            f"/indexes/{ID}/indexed-assets",
            query={"user_metadata[gist_ingest_key]": "abc", "status": ["ready", "failed"]},
            metadata_bare_keys=False,
        ),
    ),
    ("request.analyze-input", "empty-body", analyze({}), analyze(ANALYZE_BODY)),
    (
        "request.analyze-input",
        "no-video",
        analyze(_without(ANALYZE_BODY, "video")),
        analyze({**_without(ANALYZE_BODY, "video"), "video_id": ID}),
    ),
    (
        "request.analyze-input",
        "video-and-video-id",
        analyze({**ANALYZE_BODY, "video_id": ID}),
        analyze(ANALYZE_BODY),
    ),
    (
        "request.analyze-input",
        "no-prompt",
        analyze(_without(ANALYZE_BODY, "prompt")),
        analyze(
            {
                **_without(ANALYZE_BODY, "prompt"),
                "model_name": "pegasus1.5",
                "prompt_v2": {"input_text": "Describe it."},
            }
        ),
    ),
    (
        "request.analyze-input",
        "prompt-and-prompt-v2",
        analyze({**ANALYZE_BODY, "prompt_v2": {"input_text": "Describe it."}}),
        analyze(ANALYZE_BODY),
    ),
    (
        "request.asset-source",
        "url-method-without-url",
        request("POST", "/assets", form={"method": "url", "filename": "a.mp4"}),
        request("POST", "/assets", form={"method": "url", "url": URL}),
    ),
    (
        "request.asset-source",
        "direct-method-without-file",
        request("POST", "/assets", form={"method": "direct", "filename": "a.mp4"}),
        request("POST", "/assets", form={"method": "direct", "filename": "a.mp4"}, files={"file": b"\x00"}),
    ),
    (
        "request.task-source",
        "both-sources",
        request("POST", "/tasks", form={"index_id": ID, "video_url": URL}, files={"video_file": b"\x00"}),
        request("POST", "/tasks", form={"index_id": ID}, files={"video_file": b"\x00"}),
    ),
    (
        "request.task-source",
        "no-source",
        request("POST", "/tasks", form={"index_id": ID}),
        request("POST", "/tasks", form={"index_id": ID, "video_url": URL, "enable_video_stream": "true"}),
    ),
    # ---------------------------------------------------------------- responses
    (
        "response.analyze-single-body",
        "stream-event-as-the-answer",
        response("POST", "/analyze", 200, STREAM[0]),
        response("POST", "/analyze", 200, ANALYZE_200),
    ),
    (
        "response.analyze-fields",
        "empty-200",
        response("POST", "/analyze", 200, {}),
        response("POST", "/analyze", 200, ANALYZE_200),
    ),
    *[
        (
            "response.analyze-fields",
            f"200-without-{field}",
            response("POST", "/analyze", 200, _without(ANALYZE_200, field)),
            response(
                "POST",
                "/analyze",
                200,
                {**ANALYZE_200, "finish_reason": "length", "error": {"message": "cut off"}},
            ),
        )
        for field in ("id", "data", "finish_reason", "usage")
    ],
    (
        "response.listing-envelope",
        "indexed-assets-without-page-info",
        response("GET", f"/indexes/{ID}/indexed-assets", 200, {"data": [INDEXED_ASSET]}),
        response("GET", f"/indexes/{ID}/indexed-assets", 200, _listing(INDEXED_ASSET)),
    ),
    (
        "response.listing-envelope",
        "indexes-without-data",
        response("GET", "/indexes", 200, {"page_info": PAGE_INFO}),
        response("GET", "/indexes", 200, {"data": [], "page_info": {**PAGE_INFO, "total_page": 0}}),
    ),
    (
        "response.page-info",
        "tasks-page-info-without-total-page",
        response("GET", "/tasks", 200, {"data": [TASK], "page_info": _without(PAGE_INFO, "total_page")}),
        response("GET", "/tasks", 200, _listing(TASK)),
    ),
    (
        "response.index",
        "index-without-name",
        response("GET", f"/indexes/{ID}", 200, {"_id": ID}),
        response("GET", f"/indexes/{ID}", 200, {"_id": ID, "index_name": "catalog", "models": []}),
    ),
    (
        "response.index-created",
        "created-index-without-id",
        response("POST", "/indexes", 201, {}),
        response("POST", "/indexes", 201, {"_id": ID}),
    ),
    (
        "response.asset",
        "created-asset-without-status",
        response("POST", "/assets", 201, _without(ASSET, "status")),
        response("POST", "/assets", 201, _without(ASSET, "user_metadata")),
    ),
    (
        "response.asset-failure",
        "failed-asset-without-error",
        response("GET", f"/assets/{ID}", 200, {**ASSET, "status": "failed"}),
        response("GET", f"/assets/{ID}", 200, {**ASSET, "status": "failed", "error": {"message": "broken"}}),
    ),
    (
        "response.indexed-asset-created",
        "created-indexed-asset-without-id",
        response("POST", f"/indexes/{ID}/indexed-assets", 202, {"asset_id": ID}),
        response("POST", f"/indexes/{ID}/indexed-assets", 202, {"_id": OTHER, "asset_id": ID}),
    ),
    *[
        (
            "response.indexed-asset",
            f"listed-indexed-asset-without-{field}",
            response("GET", f"/indexes/{ID}/indexed-assets", 200, _listing(_without(INDEXED_ASSET, field))),
            response(
                "GET", f"/indexes/{ID}/indexed-assets", 200, _listing(_without(INDEXED_ASSET, "indexed_at"))
            ),
        )
        for field in ("_id", "asset_id", "status", "updated_at", "system_metadata")
    ],
    (
        "response.indexed-asset-filename",
        "listed-indexed-asset-without-filename",
        response(
            "GET",
            f"/indexes/{ID}/indexed-assets",
            200,
            _listing({**INDEXED_ASSET, "system_metadata": {"duration": 62.5}}),
        ),
        response("GET", f"/indexes/{ID}/indexed-assets", 200, _listing(INDEXED_ASSET)),
    ),
    (
        "response.indexed-asset-detail",
        "indexed-asset-without-status",
        response("GET", f"/indexes/{ID}/indexed-assets/{OTHER}", 200, _without(INDEXED_ASSET, "status")),
        response("GET", f"/indexes/{ID}/indexed-assets/{OTHER}", 200, {**INDEXED_ASSET, "user_metadata": {}}),
    ),
    (
        "response.task-created",
        "created-task-without-video-id",
        response("POST", "/tasks", 200, {"_id": OTHER}),
        response("POST", "/tasks", 200, {"_id": OTHER, "video_id": ID}),
    ),
    (
        "response.task",
        "task-without-status",
        response("GET", f"/tasks/{OTHER}", 200, _without(TASK, "status")),
        response("GET", f"/tasks/{OTHER}", 200, TASK),
    ),
    (
        "response.video",
        "listed-video-without-updated-at",
        response("GET", f"/indexes/{ID}/videos", 200, _listing(_without(VIDEO, "updated_at"))),
        response("GET", f"/indexes/{ID}/videos", 200, _listing(VIDEO)),
    ),
    (
        "response.video-detail",
        "video-without-id",
        response("GET", f"/indexes/{ID}/videos/{OTHER}", 200, _without(VIDEO, "_id")),
        response("GET", f"/indexes/{ID}/videos/{OTHER}", 200, {**VIDEO, "user_metadata": {"k": "v"}}),
    ),
    (
        "response.undeclared-success",
        "200-where-the-spec-says-201",
        response("POST", "/assets", 200, ASSET),
        response("POST", "/assets", 201, ASSET),
    ),
    (
        "response.undeclared-success",
        "204-where-the-spec-says-200",
        response("DELETE", f"/indexes/{ID}", 204, None),
        response("DELETE", f"/indexes/{ID}", 200, b""),
    ),
    (
        "response.error-body",
        "4xx-nested-body-on-a-classic-endpoint",
        response("GET", f"/indexes/{ID}", 400, NESTED),
        response("GET", f"/indexes/{ID}", 400, {**CLASSIC, "docs_url": "https://docs.twelvelabs.io"}),
    ),
    (
        "response.error-body",
        "4xx-message-without-code",
        response("POST", "/analyze", 404, {"message": "Not found."}),
        response("POST", "/analyze", 404, {"code": "resource_not_exist", "message": "Not found."}),
    ),
    (
        "response.error-body",
        "401-not-an-error-object",
        response("GET", "/indexes", 401, {"detail": "Unauthorized"}),
        response("GET", "/indexes", 401, {"code": "api_key_invalid", "message": "The API key is invalid."}),
    ),
    (
        "response.error-body",
        "422-wrong-shape",
        response("POST", "/analyze", 422, {"detail": [{"loc": ["body", "response_format"]}]}),
        response("POST", "/analyze", 422, {**CLASSIC, "message": "Unsupported keyword maxLength."}),
    ),
    (
        "response.error-body",
        "429-wrong-shape",
        response("POST", "/assets", 429, {"error": "rate limited"}),
        response("POST", "/assets", 429, {"code": "too_many_requests", "message": "Retry in 5 seconds."}),
    ),
    (
        "response.error-body",
        "analyze-429-wrong-shape",
        response("POST", "/analyze", 429, {"error": {"code": "too_many_requests", "message": "m"}}),
        response("POST", "/analyze", 429, {"code": "too_many_requests", "message": "Retry in 5 seconds."}),
    ),
    (
        "response.error-body",
        "5xx-not-an-error-object",
        response("GET", "/indexes", 503, {"data": []}),
        response("GET", "/indexes", 503, {"code": "service_unavailable", "message": "Try again."}),
    ),
    (
        "response.error-body",
        "5xx-html-page",
        response("GET", "/indexes", 502, "<html><body>502 Bad Gateway</body></html>"),
        response("GET", "/indexes", 502, {"code": "bad_gateway", "message": "Upstream failed."}),
    ),
    (
        "response.error-body",
        "classic-body-on-a-nested-endpoint",
        response("GET", f"/analyze/tasks/{ID}", 404, {"code": "resource_not_exist", "message": "m"}),
        response("GET", f"/analyze/tasks/{ID}", 404, NESTED),
    ),
    (
        "response.error-body",
        "undeclared-status-on-a-nested-endpoint",
        response("POST", "/analyze/tasks", 422, CLASSIC),
        response("POST", "/analyze/tasks", 422, {"error": {**CLASSIC, "details": {"field": "video"}}}),
    ),
    (
        "response.empty-error-body",
        "empty-429-outside-analyze",
        response("GET", "/indexes", 429, b""),
        response("POST", "/analyze", 429, b""),
    ),
    (
        "response.empty-error-body",
        "empty-400",
        response("POST", "/analyze", 400, b""),
        response("POST", "/analyze", 400, {"code": "token_limit_exceeded", "message": "Too long."}),
    ),
    # ---------------------------------------------------------------- headers
    (
        "headers.api-key",
        "no-x-api-key",
        request("GET", "/indexes", query={"page": 1}, headers={"Accept": "application/json"}),
        request("GET", "/indexes", query={"page": 1}, headers={"X-Api-Key": "tlk_test"}),
    ),
    (
        "headers.api-key",
        "empty-x-api-key",
        request("GET", f"/assets/{ID}", headers={"x-api-key": ""}),
        request("GET", f"/assets/{ID}", headers=KEY),
    ),
    (
        "headers.no-authorization",
        "basic-auth-header",
        request("GET", "/indexes", headers={**KEY, "Authorization": "Basic dXNlcjpwYXNz"}),
        request("GET", "/indexes", headers={**KEY, "User-Agent": "airflow-provider-gist"}),
    ),
    (
        "headers.request-content-type",
        "json-as-text-plain",
        analyze(ANALYZE_BODY, headers={**KEY, "Content-Type": "text/plain"}),
        analyze(ANALYZE_BODY, headers={**KEY, "Content-Type": "application/json; charset=utf-8"}),
    ),
    (
        "headers.request-content-type",
        "json-without-content-type",
        analyze(ANALYZE_BODY, headers=KEY),
        analyze(ANALYZE_BODY, headers=JSON_HEADERS),
    ),
    (
        "headers.request-content-type",
        "multipart-as-urlencoded",
        request(
            "POST",
            "/assets",
            form={"method": "url", "url": URL},
            headers={**KEY, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        request("POST", "/assets", form={"method": "url", "url": URL}, headers=MULTIPART_HEADERS),
    ),
    (
        "headers.request-content-type",
        "multipart-without-boundary",
        request(
            "POST",
            "/tasks",
            form={"index_id": ID, "video_url": URL},
            headers={**KEY, "Content-Type": "multipart/form-data"},
        ),
        request("POST", "/tasks", form={"index_id": ID, "video_url": URL}, headers=MULTIPART_HEADERS),
    ),
    (
        "headers.response-content-type",
        "json-body-as-html",
        response(
            "GET",
            "/indexes",
            200,
            _listing({"_id": ID, "index_name": "c"}),
            headers={"Content-Type": "text/html"},
        ),
        response("GET", "/indexes", 200, _listing({"_id": ID, "index_name": "c"}), headers=JSON_RESPONSE),
    ),
    (
        "headers.response-content-type",
        "error-body-as-text",
        response("POST", "/analyze", 422, CLASSIC, headers={"Content-Type": "text/plain"}),
        response("POST", "/analyze", 422, CLASSIC, headers=JSON_RESPONSE),
    ),
    (
        "headers.stream-content-type",
        "stream-as-text",
        stream(STREAM, headers={"Content-Type": "text/plain"}),
        stream(STREAM, headers={"Content-Type": "application/x-ndjson"}),
    ),
]


@pytest.mark.parametrize(
    ("bad", "good"),
    [pytest.param(bad, good, id=f"{rule}:{case}") for rule, case, bad, good in CASES],
)
def test_known_bad_fails_and_known_good_passes(bad: Callable[[], None], good: Callable[[], None]) -> None:
    good()
    with pytest.raises(AssertionError):
        bad()


def test_every_rule_has_a_negative_case() -> None:
    covered = {rule for rule, *_ in CASES}
    assert covered <= set(CONTRACT_RULES), f"cases for unknown rules: {sorted(covered - set(CONTRACT_RULES))}"
    assert set(CONTRACT_RULES) <= covered, f"rules without a case: {sorted(set(CONTRACT_RULES) - covered)}"
    for name, rule in CONTRACT_RULES.items():
        assert rule.why.strip(), f"{name} does not say why it exists"


def test_the_spec_file_is_never_changed_by_the_overlay() -> None:
    for _, _, bad, good in CASES:
        good()
        with contextlib.suppress(AssertionError):
            bad()
    with spec_path().open(encoding="utf-8") as fh:
        assert load_spec() == json.load(fh)


def test_messages_name_the_operation_and_the_field() -> None:
    with pytest.raises(AssertionError, match=r"POST /analyze JSON body: .*'videoid' was unexpected"):
        analyze({"videoid": ID, "prompt": "p"})()
    with pytest.raises(
        AssertionError, match=r"GET /indexes/\{index-id\}/indexed-assets -> 200: .*'page_info'"
    ):
        response("GET", f"/indexes/{ID}/indexed-assets", 200, {"data": []})()
    with pytest.raises(AssertionError, match=r"-> 422: not an error object of the operation's classic shape"):
        response("POST", "/analyze", 422, {"detail": "x"})()
    with pytest.raises(AssertionError, match="required header 'x-api-key'"):
        request("GET", "/indexes", headers={})()


# ---------------------------------------------------------------- validate_exchange (requests)
def _exchange(
    method: str,
    path: str,
    *,
    status: int,
    body: Any = None,
    response_headers: dict[str, str] | None = None,
    **request_kw: Any,
) -> requests.Response:
    prepared = requests.Request(method, f"http://127.0.0.1:9/v1.3{path}", **request_kw).prepare()
    answer = requests.Response()
    answer.status_code = status
    answer.request = prepared
    answer.url = str(prepared.url)
    if isinstance(body, bytes):
        answer._content = body
    else:
        answer._content = b"" if body is None else json.dumps(body).encode()
    answer.headers.update(response_headers if response_headers is not None else JSON_RESPONSE)
    return answer


def test_exchange_json_request_and_answer() -> None:
    validate_exchange(
        _exchange("POST", "/analyze", status=200, body=ANALYZE_200, json=ANALYZE_BODY, headers=KEY)
    )
    with pytest.raises(AssertionError, match="x-api-key"):
        validate_exchange(_exchange("POST", "/analyze", status=200, body=ANALYZE_200, json=ANALYZE_BODY))
    with pytest.raises(AssertionError, match="Authorization"):
        validate_exchange(
            _exchange(
                "POST",
                "/analyze",
                status=200,
                body=ANALYZE_200,
                json=ANALYZE_BODY,
                headers=KEY,
                auth=("u", "p"),
            )
        )
    with pytest.raises(AssertionError, match="'id' is a required property"):
        validate_exchange(_exchange("POST", "/analyze", status=200, body={}, json=ANALYZE_BODY, headers=KEY))
    with pytest.raises(AssertionError, match="request body sent as 'text/plain'"):
        validate_exchange(
            _exchange(
                "POST",
                "/analyze",
                status=200,
                body=ANALYZE_200,
                data=json.dumps(ANALYZE_BODY),
                headers={**KEY, "Content-Type": "text/plain"},
            )
        )


def test_exchange_multipart_and_query() -> None:
    parts = {"method": (None, "url"), "url": (None, URL), "user_metadata": (None, '{"k": "v"}')}
    created = {**ASSET, "status": "processing"}
    validate_exchange(_exchange("POST", "/assets", status=201, body=created, files=parts, headers=KEY))
    upload = {"method": (None, "direct"), "file": ("a.mp4", b"\x00\x00\x00\x18ftypmp42")}
    validate_exchange(_exchange("POST", "/assets", status=201, body=created, files=upload, headers=KEY))
    with pytest.raises(AssertionError, match="unknown multipart field 'video_url'"):
        validate_exchange(
            _exchange(
                "POST",
                "/assets",
                status=201,
                body=created,
                files={**parts, "video_url": (None, URL)},
                headers=KEY,
            )
        )
    listing = _listing(INDEXED_ASSET)
    path = f"/indexes/{ID}/indexed-assets"
    params = [("status", "ready"), ("status", "failed"), ("user_metadata[k]", "v"), ("page", "1")]
    validate_exchange(_exchange("GET", path, status=200, body=listing, params=params, headers=KEY))
    with pytest.raises(AssertionError, match="unknown query parameter 'k'"):
        validate_exchange(
            _exchange("GET", path, status=200, body=listing, params={"k": "v"}, headers=KEY),
            metadata_bare_keys=False,
        )


def test_exchange_stream_and_errors() -> None:
    ndjson = "\n".join(json.dumps(e) for e in STREAM).encode() + b"\n"
    body = {**ANALYZE_BODY, "stream": True}
    headers = {"Content-Type": "application/x-ndjson"}
    validate_exchange(
        _exchange(
            "POST", "/analyze", status=200, body=ndjson, response_headers=headers, json=body, headers=KEY
        )
    )
    bad = b'{"event_type": "stream_end", "finish_reason": "done"}\n'
    with pytest.raises(AssertionError, match="stream event #0"):
        validate_exchange(
            _exchange(
                "POST", "/analyze", status=200, body=bad, response_headers=headers, json=body, headers=KEY
            )
        )
    empty_429 = _exchange(
        "POST", "/analyze", status=429, body=b"", response_headers={}, json=ANALYZE_BODY, headers=KEY
    )
    validate_exchange(empty_429)
    html = b"<html><body>502 Bad Gateway</body></html>"
    with pytest.raises(AssertionError, match="not JSON"):
        validate_exchange(
            _exchange(
                "GET",
                "/indexes",
                status=502,
                body=html,
                response_headers={"Content-Type": "text/html"},
                headers=KEY,
            )
        )
    validate_exchange(
        _exchange("GET", "/indexes", status=502, body=html, response_headers={"Content-Type": "text/html"}),
        check_request=False,
        check_response=False,
    )
