"""The overlay: every rule that makes the contract stricter than the published spec.

Kept apart from the code that applies it (:mod:`tests.contract.openapi_strict` and the request
and response checks) so the rules read as one list, each with the reason it exists;
tests/contract/test_contract_strictness.py proves every rule both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.contract.openapi_spec import _MULTIPART, _body, _pointer, _schema


@dataclass(frozen=True)
class Rule:
    """One overlay rule.

    ``where`` lists JSON pointers into the spec where ``patch`` is merged into the schema
    (``required`` is unioned with the spec's, ``allOf`` is appended to, any other keyword is set);
    a rule without ``where`` is applied by code, under its name, to every operation.
    """

    side: str  # "request", "response" or "headers"
    why: str
    where: tuple[str, ...] = ()
    patch: Mapping[str, Any] = field(default_factory=dict)


_ONE_OF_VIDEO = {"oneOf": [{"required": ["video"]}, {"required": ["video_id"]}]}
_ONE_OF_PROMPT = {"oneOf": [{"required": ["prompt"]}, {"required": ["prompt_v2"]}]}
_PAGE_INFO = ["limit_per_page", "page", "total_page", "total_results"]

#: The whole overlay, by name. Pointer rules patch the spec's schemas; rules without ``where``
#: are generic and implemented by the strict-document builder and the request/response checks,
#: each marked with the rule's name in a comment.
CONTRACT_RULES: dict[str, Rule] = {
    # ---------------------------------------------------------------- requests
    "request.closed-objects": Rule(
        "request",
        "The spec's request objects accept any extra field, so a typo ({'videoid': ...}) or a "
        "field of another endpoint passes while the real API answers 400 parameter_unknown. Every "
        "object schema with declared properties gets additionalProperties: false, recursively: "
        "JSON bodies, multipart fields and object query parameters (duration[gte]). Free-form "
        "objects (user_metadata, response_format.json_schema) stay open.",
    ),
    "request.query-bracketed-metadata": Rule(
        "request",
        "An unknown bare query key is read as a user_metadata filter (?category=news, the docs' "
        "form) only with metadata_bare_keys=True (the default, for emulator tests of that form); "
        "the client sends user_metadata[key], so its contract test passes False and an unknown "
        "query parameter fails there too.",
    ),
    "request.analyze-input": Rule(
        "request",
        "POST /analyze declares no required field ('the required parameters depend on "
        "model_name'), so {} passes. Every sync analysis needs exactly one video (video, or the "
        "legacy video_id) and exactly one prompt (prompt, or prompt_v2 on pegasus1.5): digest "
        "section 8; the API answers 400 parameter_not_provided otherwise.",
        (_body("post", "/analyze"),),
        {"allOf": [_ONE_OF_VIDEO, _ONE_OF_PROMPT]},
    ),
    "request.asset-source": Rule(
        "request",
        "POST /assets requires only 'method'; method=url needs a url field and method=direct a "
        "file part (digest 6.2).",
        (_pointer("paths", "/assets", "post", "requestBody", "content", _MULTIPART, "schema"),),
        {
            "allOf": [
                {
                    "if": {"properties": {"method": {"const": "url"}}, "required": ["method"]},
                    "then": {"required": ["url"]},
                },
                {
                    "if": {"properties": {"method": {"const": "direct"}}, "required": ["method"]},
                    "then": {"required": ["file"]},
                },
            ]
        },
    ),
    "request.task-source": Rule(
        "request",
        "POST /tasks needs exactly one of video_file and video_url (digest 6.1).",
        (_pointer("paths", "/tasks", "post", "requestBody", "content", _MULTIPART, "schema"),),
        {"allOf": [{"oneOf": [{"required": ["video_file"]}, {"required": ["video_url"]}]}]},
    ),
    # ---------------------------------------------------------------- responses
    "response.analyze-single-body": Rule(
        "response",
        "The spec's 200 is oneOf(stream event, non-stream body), which is ambiguous (a stream_start "
        "event is also a valid non-stream body) and lets a stream event pass as the answer. A single "
        "JSON body is the non-stream answer; streams go through validate_stream_events.",
        (_body("post", "/analyze", 200),),
        {"$ref": "#/components/schemas/NonStreamAnalyzeResponse"},
    ),
    "response.analyze-fields": Rule(
        "response",
        "gist.decode_analyze_data reads data (the JSON text) and finish_reason, usage_of reads "
        "usage (output_tokens is already required inside), and id becomes the gist's "
        "generation id; the spec requires none of them, so {} passed as a 200.",
        (_schema("NonStreamAnalyzeResponse"),),
        {"required": ["id", "data", "finish_reason", "usage"]},
    ),
    "response.listing-envelope": Rule(
        "response",
        "GistHook.paginate reads data and stops at page_info.total_page; a listing without "
        "page_info would make it fetch one more page per call.",
        (
            _schema("indexes_list_Response_200"),
            _schema("assets_list_Response_200"),
            _schema("indexes_indexed_assets_list_Response_200"),
            _schema("tasks_list_Response_200"),
            _schema("indexes_videos_list_Response_200"),
        ),
        {"required": ["data", "page_info"]},
    ),
    "response.page-info": Rule(
        "response",
        "paginate() stops at total_page; the digest (section 4) documents all four fields of the "
        "page-number envelope as always present.",
        (_schema("page_info"), _schema("TasksGetResponsesContentApplicationJsonSchemaPageInfo")),
        {"required": _PAGE_INFO},
    ),
    "response.index": Rule(
        "response",
        "ensure_index/find_index_by_name match index_name and return _id; the refresh operator "
        "reads get_index()['_id']; create_index reads the 201's _id.",
        (_schema("Index"),),
        {"required": ["_id", "index_name"]},
    ),
    "response.index-created": Rule(
        "response",
        "create_index returns body['_id'].",
        (_schema("indexes_create_Response_201"),),
        {"required": ["_id"]},
    ),
    "response.asset": Rule(
        "response",
        "Ingest stores the asset's _id and polls status (processing -> ready | failed); the "
        "sensors and triggers branch on status.",
        (_schema("Asset"), _schema("AssetDetail")),
        {"required": ["_id", "status"]},
    ),
    "response.asset-failure": Rule(
        "response",
        "A failed asset carries error.message (digest 6.2); ingest and the triggers report it as "
        "the failure reason.",
        (_schema("AssetDetail"),),
        {
            "allOf": [
                {
                    "if": {"properties": {"status": {"const": "failed"}}, "required": ["status"]},
                    "then": {"required": ["error"]},
                }
            ]
        },
    ),
    "response.indexed-asset-created": Rule(
        "response",
        "create_indexed_asset's caller stores the 202's _id (the indexed asset / video id).",
        (_schema("indexes_indexed_assets_create_Response_202"),),
        {"required": ["_id"]},
    ),
    "response.indexed-asset": Rule(
        "response",
        "refresh.video_from_listing analyses by asset_id and compares updated_at with the stored "
        "gist; ingest skips failed items by status and finds the legacy task through "
        "system_metadata.filename; sensors poll status of the detail.",
        (_schema("indexedAsset"),),
        {"required": ["_id", "asset_id", "status", "updated_at", "system_metadata"]},
    ),
    "response.indexed-asset-filename": Rule(
        "response",
        "See response.indexed-asset: ingest reads system_metadata.filename of listed items.",
        (_schema("IndexedAssetSystemMetadata"),),
        {"required": ["filename"]},
    ),
    "response.indexed-asset-detail": Rule(
        "response",
        "The indexed-asset sensor/trigger polls status and reports _id and asset_id.",
        (_schema("indexedAssetDetailed"),),
        {"required": ["_id", "asset_id", "status"]},
    ),
    "response.task-created": Rule(
        "response",
        "Ingest stores the task's _id and its video_id (known at once, digest 6.1).",
        (_schema("tasks_create_Response_200"),),
        {"required": ["_id", "video_id"]},
    ),
    "response.task": Rule(
        "response",
        "The task sensor polls status; ingest matches listed tasks by video_id and keeps _id.",
        (_schema("videoIndexingTask"), _schema("tasks_retrieve_Response_200")),
        {"required": ["_id", "status", "video_id"]},
    ),
    "response.video": Rule(
        "response",
        "refresh.video_from_listing keys a legacy video by _id and compares updated_at.",
        (_schema("videoVector"),),
        {"required": ["_id", "updated_at"]},
    ),
    "response.video-detail": Rule(
        "response",
        "get_video's callers key the video by _id.",
        (_schema("indexes_videos_retrieve_Response_200"),),
        {"required": ["_id"]},
    ),
    "response.undeclared-success": Rule(
        "response",
        "A 1xx-3xx status the operation does not declare fails (a 200 where the API answers 201, "
        "a 204 for a 200-with-no-body); undeclared 4xx/5xx are error-body checked instead.",
    ),
    "response.error-body": Rule(
        "response",
        "Every 4xx/5xx (declared or not: 401, 422, 429, 5xx) must be the operation's error body: "
        "classic {code, message} (indexes, assets, tasks, videos, /analyze...) or nested "
        "{error: {code, message}} (analyze tasks, batches), chosen from the errors the spec "
        "declares for the operation (classic when it declares none). code and message are "
        "required strings: error_from_response branches on code (index_name_already_exists, "
        "resource_not_exist) and shows message. The spec's classic error schemas require "
        "nothing and its 'Any type' ones accept anything.",
    ),
    "response.empty-error-body": Rule(
        "response",
        "An empty error body passes only where the spec says 'The response body is empty' (the "
        "429 of POST /analyze, digest 2.3, which may also carry a classic body).",
    ),
    # ---------------------------------------------------------------- headers
    "headers.api-key": Rule(
        "headers",
        "Every operation declares the header parameter x-api-key as required (the only auth).",
    ),
    "headers.no-authorization": Rule(
        "headers",
        "The API has no bearer or Basic auth; HttpHook would send the connection's login/password "
        "as Authorization, leaking the key to proxies and logs.",
    ),
    "headers.request-content-type": Rule(
        "headers",
        "A JSON body goes with Content-Type application/json and a multipart body with "
        "multipart/form-data (with its boundary), as the operation's requestBody declares; any "
        "other body type fails.",
    ),
    "headers.response-content-type": Rule(
        "headers",
        "A response body's Content-Type is one the spec declares for that status (application/json); "
        "error bodies of undeclared statuses are application/json too.",
    ),
    "headers.stream-content-type": Rule(
        "headers",
        "Streamed /analyze answers are NDJSON: application/x-ndjson (or the spec's "
        "application/json; the digest marks the real type unverified).",
    ),
}
