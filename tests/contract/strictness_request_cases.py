"""Known-bad / known-good request pairs for the request and request-header rules of the overlay."""

from __future__ import annotations

from tests.contract.strictness_examples import (
    ANALYZE_BODY,
    ID,
    JSON_HEADERS,
    KEY,
    MULTIPART_HEADERS,
    OTHER,
    URL,
    Case,
    analyze,
    request,
    without,
)

REQUEST_CASES: list[Case] = [
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
        analyze(without(ANALYZE_BODY, "video")),
        analyze({**without(ANALYZE_BODY, "video"), "video_id": ID}),
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
        analyze(without(ANALYZE_BODY, "prompt")),
        analyze(
            {
                **without(ANALYZE_BODY, "prompt"),
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
]

REQUEST_HEADER_CASES: list[Case] = [
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
]
