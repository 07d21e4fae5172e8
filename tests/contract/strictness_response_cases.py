"""Known-bad / known-good response pairs for the response and response-header rules of the overlay.

Most pairs check two bodies against the same operation and status (:func:`response_case`); the
rest differ in status or headers and are spelled out.
"""

from __future__ import annotations

from typing import Any

from tests.contract.strictness_examples import (
    ANALYZE_200,
    ASSET,
    CLASSIC,
    ID,
    INDEXED_ASSET,
    JSON_RESPONSE,
    NESTED,
    OTHER,
    PAGE_INFO,
    STREAM,
    TASK,
    VIDEO,
    Case,
    listing,
    response,
    response_case,
    stream,
    without,
)

INDEXED_ASSETS = f"/indexes/{ID}/indexed-assets"
RETRY = {"code": "too_many_requests", "message": "Retry in 5 seconds."}

# response.error-body: (case id, method, path, status, known-bad body, known-good body)
ERROR_BODIES: list[tuple[str, str, str, int, Any, Any]] = [
    (
        "4xx-nested-body-on-a-classic-endpoint",
        "GET",
        f"/indexes/{ID}",
        400,
        NESTED,
        {**CLASSIC, "docs_url": "https://docs.twelvelabs.io"},
    ),
    (
        "4xx-message-without-code",
        "POST",
        "/analyze",
        404,
        {"message": "Not found."},
        {"code": "resource_not_exist", "message": "Not found."},
    ),
    (
        "401-not-an-error-object",
        "GET",
        "/indexes",
        401,
        {"detail": "Unauthorized"},
        {"code": "api_key_invalid", "message": "The API key is invalid."},
    ),
    (
        "422-wrong-shape",
        "POST",
        "/analyze",
        422,
        {"detail": [{"loc": ["body", "response_format"]}]},
        {**CLASSIC, "message": "Unsupported keyword maxLength."},
    ),
    ("429-wrong-shape", "POST", "/assets", 429, {"error": "rate limited"}, RETRY),
    ("analyze-429-wrong-shape", "POST", "/analyze", 429, {"error": {**RETRY, "message": "m"}}, RETRY),
    (
        "5xx-not-an-error-object",
        "GET",
        "/indexes",
        503,
        {"data": []},
        {"code": "service_unavailable", "message": "Try again."},
    ),
    (
        "5xx-html-page",
        "GET",
        "/indexes",
        502,
        "<html><body>502 Bad Gateway</body></html>",
        {"code": "bad_gateway", "message": "Upstream failed."},
    ),
    (
        "classic-body-on-a-nested-endpoint",
        "GET",
        f"/analyze/tasks/{ID}",
        404,
        {"code": "resource_not_exist", "message": "m"},
        NESTED,
    ),
    (
        "undeclared-status-on-a-nested-endpoint",
        "POST",
        "/analyze/tasks",
        422,
        CLASSIC,
        {"error": {**CLASSIC, "details": {"field": "video"}}},
    ),
]

RESPONSE_CASES: list[Case] = [
    response_case(
        "response.analyze-single-body",
        "stream-event-as-the-answer",
        "POST",
        "/analyze",
        200,
        STREAM[0],
        ANALYZE_200,
    ),
    response_case("response.analyze-fields", "empty-200", "POST", "/analyze", 200, {}, ANALYZE_200),
    *[
        response_case(
            "response.analyze-fields",
            f"200-without-{field}",
            "POST",
            "/analyze",
            200,
            without(ANALYZE_200, field),
            {**ANALYZE_200, "finish_reason": "length", "error": {"message": "cut off"}},
        )
        for field in ("id", "data", "finish_reason", "usage")
    ],
    response_case(
        "response.listing-envelope",
        "indexed-assets-without-page-info",
        "GET",
        INDEXED_ASSETS,
        200,
        {"data": [INDEXED_ASSET]},
        listing(INDEXED_ASSET),
    ),
    response_case(
        "response.listing-envelope",
        "indexes-without-data",
        "GET",
        "/indexes",
        200,
        {"page_info": PAGE_INFO},
        {"data": [], "page_info": {**PAGE_INFO, "total_page": 0}},
    ),
    response_case(
        "response.page-info",
        "tasks-page-info-without-total-page",
        "GET",
        "/tasks",
        200,
        {"data": [TASK], "page_info": without(PAGE_INFO, "total_page")},
        listing(TASK),
    ),
    response_case(
        "response.index",
        "index-without-name",
        "GET",
        f"/indexes/{ID}",
        200,
        {"_id": ID},
        {"_id": ID, "index_name": "catalog", "models": []},
    ),
    response_case(
        "response.index-created", "created-index-without-id", "POST", "/indexes", 201, {}, {"_id": ID}
    ),
    response_case(
        "response.asset",
        "created-asset-without-status",
        "POST",
        "/assets",
        201,
        without(ASSET, "status"),
        without(ASSET, "user_metadata"),
    ),
    response_case(
        "response.asset-failure",
        "failed-asset-without-error",
        "GET",
        f"/assets/{ID}",
        200,
        {**ASSET, "status": "failed"},
        {**ASSET, "status": "failed", "error": {"message": "broken"}},
    ),
    response_case(
        "response.indexed-asset-created",
        "created-indexed-asset-without-id",
        "POST",
        INDEXED_ASSETS,
        202,
        {"asset_id": ID},
        {"_id": OTHER, "asset_id": ID},
    ),
    *[
        response_case(
            "response.indexed-asset",
            f"listed-indexed-asset-without-{field}",
            "GET",
            INDEXED_ASSETS,
            200,
            listing(without(INDEXED_ASSET, field)),
            listing(without(INDEXED_ASSET, "indexed_at")),
        )
        for field in ("_id", "asset_id", "status", "updated_at", "system_metadata")
    ],
    response_case(
        "response.indexed-asset-filename",
        "listed-indexed-asset-without-filename",
        "GET",
        INDEXED_ASSETS,
        200,
        listing({**INDEXED_ASSET, "system_metadata": {"duration": 62.5}}),
        listing(INDEXED_ASSET),
    ),
    response_case(
        "response.indexed-asset-detail",
        "indexed-asset-without-status",
        "GET",
        f"{INDEXED_ASSETS}/{OTHER}",
        200,
        without(INDEXED_ASSET, "status"),
        {**INDEXED_ASSET, "user_metadata": {}},
    ),
    response_case(
        "response.task-created",
        "created-task-without-video-id",
        "POST",
        "/tasks",
        200,
        {"_id": OTHER},
        {"_id": OTHER, "video_id": ID},
    ),
    response_case(
        "response.task", "task-without-status", "GET", f"/tasks/{OTHER}", 200, without(TASK, "status"), TASK
    ),
    response_case(
        "response.video",
        "listed-video-without-updated-at",
        "GET",
        f"/indexes/{ID}/videos",
        200,
        listing(without(VIDEO, "updated_at")),
        listing(VIDEO),
    ),
    response_case(
        "response.video-detail",
        "video-without-id",
        "GET",
        f"/indexes/{ID}/videos/{OTHER}",
        200,
        without(VIDEO, "_id"),
        {**VIDEO, "user_metadata": {"k": "v"}},
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
    *[response_case("response.error-body", *row) for row in ERROR_BODIES],
    (
        "response.empty-error-body",
        "empty-429-outside-analyze",
        response("GET", "/indexes", 429, b""),
        response("POST", "/analyze", 429, b""),
    ),
    response_case(
        "response.empty-error-body",
        "empty-400",
        "POST",
        "/analyze",
        400,
        b"",
        {"code": "token_limit_exceeded", "message": "Too long."},
    ),
]

RESPONSE_HEADER_CASES: list[Case] = [
    (
        "headers.response-content-type",
        "json-body-as-html",
        response(
            "GET",
            "/indexes",
            200,
            listing({"_id": ID, "index_name": "c"}),
            headers={"Content-Type": "text/html"},
        ),
        response("GET", "/indexes", 200, listing({"_id": ID, "index_name": "c"}), headers=JSON_RESPONSE),
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
