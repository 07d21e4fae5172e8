"""Validate requests and responses against the official TwelveLabs OpenAPI 3.1 spec, made strict.

Used by every contract test (client and emulator alike). The spec is read from
``../shared/spec/twelvelabs-openapi-v1.3.json`` beside the repository root, or from the
path in ``$TWELVELABS_OPENAPI_SPEC``. The file is never edited: at load time two stricter copies
are built from it in memory, one for requests and one for responses, by the rules of
:data:`CONTRACT_RULES` (the overlay). The published spec alone lets almost anything through: its
request objects accept unknown fields and its response objects require almost nothing, so ``{}``
would pass as an ``/analyze`` request and as an ``/analyze`` answer.

Conventions (see also docs/emulator.md):

* paths may be full URLs or ``/v1.3/...`` / ``/v1.2/...``; the version prefix and the query
  string are ignored when matching a spec template;
* requests: unknown JSON fields, multipart fields, query parameters and object sub-keys fail;
* responses: the fields the client reads are required (see :data:`CONTRACT_RULES`); a 1xx-3xx
  status the operation does not declare fails; a 4xx/5xx must carry the operation's error body
  (classic ``{code, message}`` or newer ``{"error": {code, message}}``, whichever the operation
  uses), even for a status the operation does not declare (401, 422, 5xx, ...) unless
  ``allow_undeclared=False`` makes such statuses fail outright; an empty error body passes only
  where the spec says the body is empty (the 429 of ``POST /analyze``);
* a declared status without ``content`` requires an empty body;
* headers are checked when given (``headers=``): requests need ``x-api-key``, never
  ``Authorization``, and the Content-Type of their body; response bodies need the content type
  the spec declares. Callers holding a ``requests.Response`` can use :func:`validate_exchange`,
  which checks both sides, headers included;
* streamed ``/analyze`` responses are checked line by line with :func:`validate_stream_events`;
  a single JSON body from ``/analyze`` is the non-stream answer.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json as jsonlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "TWELVELABS_OPENAPI_SPEC"
SPEC_URI = "urn:twelvelabs:openapi:v1.3"
REQUEST_URI = SPEC_URI + ":strict-requests"
RESPONSE_URI = SPEC_URI + ":strict-responses"
_VERSION_PREFIX = re.compile(r"^/v1\.[0-9]+(?=/)")
_FILE = "<binary>"
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
_NDJSON = "application/x-ndjson"


def spec_path() -> Path:
    override = os.environ.get(SPEC_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shared" / "spec" / "twelvelabs-openapi-v1.3.json"


@cache
def load_spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as fh:
        spec: dict[str, Any] = jsonlib.load(fh)
    return spec


# =============================================================================================
# The overlay: every rule that makes the contract stricter than the published spec
# =============================================================================================
def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1").replace("%", "%25")


def _pointer(*segments: str | int) -> str:
    return "".join("/" + _escape(str(s)) for s in segments)


def _schema(name: str) -> str:
    return _pointer("components", "schemas", name)


def _body(method: str, template: str, status: int | None = None) -> str:
    """Pointer to the JSON schema of a request body (``status=None``) or of a response."""
    if status is None:
        return _pointer("paths", template, method, "requestBody", "content", _JSON, "schema")
    return _pointer("paths", template, method, "responses", str(status), "content", _JSON, "schema")


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
#: are generic and implemented below (the code looks them up here by name).
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

_CLASSIC_ERROR = "ContractClassicError"
_NESTED_ERROR = "ContractNestedError"
_EMPTY_BODY_NOTE = "the response body is empty"


# ---------------------------------------------------------------------------------------------
# building the strict documents
# ---------------------------------------------------------------------------------------------
def _at(doc: Any, pointer: str) -> Any:
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("%25", "%").replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise LookupError(f"overlay pointer {pointer!r} does not exist in the spec") from exc
    return node


def _resolve_in(doc: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        node, seen = _at(doc, node["$ref"].lstrip("#")), seen + 1
    return node


def _apply(doc: dict[str, Any], rule: Rule) -> None:
    for pointer in rule.where:
        node = _at(doc, pointer)
        for key, value in rule.patch.items():
            if key == "required":
                node["required"] = list(dict.fromkeys([*node.get("required", []), *value]))
            elif key == "allOf":
                node["allOf"] = [*node.get("allOf", []), *copy.deepcopy(value)]
            else:
                node[key] = copy.deepcopy(value)


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _subschemas(schema: Any) -> Iterator[Any]:
    if not isinstance(schema, dict):
        return
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            yield from schema[key].values()
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            yield from schema[key]
    for key in _SUBSCHEMA_ONE:
        if isinstance(schema.get(key), dict):
            yield schema[key]


def _close(schema: Any) -> None:
    """``request.closed-objects``: additionalProperties false wherever properties are declared."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        if (
            isinstance(props, dict)
            and props
            and not {"additionalProperties", "patternProperties", "unevaluatedProperties"} & set(node)
        ):
            node["additionalProperties"] = False
        stack.extend(_subschemas(node))


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch") and isinstance(operation, dict):
                yield template, method, operation


@cache
def _request_doc() -> dict[str, Any]:
    doc = copy.deepcopy(load_spec())
    for schema in doc["components"]["schemas"].values():
        _close(schema)
    for _, _, operation in _operations(doc):
        for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
            _close(media.get("schema"))
        for param in operation.get("parameters", []):
            _close(param.get("schema"))
    for rule in CONTRACT_RULES.values():
        if rule.side == "request":
            _apply(doc, rule)
    return doc


def _error_kind(doc: dict[str, Any], schema: Any) -> str | None:
    props = (_resolve_in(doc, schema) or {}).get("properties") or {}
    if "error" in props:
        return "nested"
    if "code" in props or "message" in props:
        return "classic"
    return None


def _error_family(doc: dict[str, Any], operation: dict[str, Any]) -> str:
    """``response.error-body``: the error shape an operation uses (from its declared errors)."""
    kinds = {
        _error_kind(doc, ((r.get("content") or {}).get(_JSON) or {}).get("schema"))
        for status, r in operation.get("responses", {}).items()
        if status[:1] in ("4", "5")
    }
    return "nested" if "nested" in kinds else "classic"


@cache
def _response_doc() -> dict[str, Any]:
    doc = copy.deepcopy(load_spec())
    schemas = doc["components"]["schemas"]
    # response.error-body: the two shapes of the API's error bodies, strict.
    schemas[_CLASSIC_ERROR] = {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "docs_url": {"type": "string"},
        },
        "required": ["code", "message"],
    }
    schemas[_NESTED_ERROR] = {"$ref": "#/components/schemas/ErrorResponse"}
    for _, _, operation in _operations(doc):
        family = _CLASSIC_ERROR if _error_family(doc, operation) == "classic" else _NESTED_ERROR
        for status, response in operation.get("responses", {}).items():
            media = (response.get("content") or {}).get(_JSON)
            if status[:1] not in ("4", "5") or not media:
                continue
            schema = media.get("schema") or {}
            kind = _error_kind(doc, schema)
            if kind == "classic":
                # The spec's classic error schemas require nothing: require code and message.
                target = _resolve_in(doc, schema)
                target["required"] = list(dict.fromkeys([*target.get("required", []), "code", "message"]))
                target.setdefault("properties", {})
                target["properties"].setdefault("code", {"type": "string"})
                target["properties"].setdefault("message", {"type": "string"})
            elif kind is None:
                # 'Any type': the operation's error body; empty too where the spec says so.
                strict: dict[str, Any] = {"$ref": f"#/components/schemas/{family}"}
                if _EMPTY_BODY_NOTE in (response.get("description") or "").lower():
                    strict = {"anyOf": [{"type": "null"}, strict]}
                media["schema"] = strict
    for rule in CONTRACT_RULES.values():
        if rule.side == "response":
            _apply(doc, rule)
    return doc


@cache
def _registry() -> Registry[Any]:
    def resource(doc: dict[str, Any]) -> Resource[Any]:
        return Resource.from_contents(doc, default_specification=DRAFT202012)

    return Registry().with_resources(
        [
            (SPEC_URI, resource(load_spec())),
            (REQUEST_URI, resource(_request_doc())),
            (RESPONSE_URI, resource(_response_doc())),
        ]
    )


@cache
def _validator(uri: str, pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=_registry())


def _validate(pointer: str, instance: Any, what: str, *, uri: str = REQUEST_URI) -> None:
    """Validate against the (strict) node at ``pointer`` so that its ``#/components`` refs resolve.

    The message names every problem, the most specific (deepest in the instance) first.
    """
    found = [best_match([error]) for error in _validator(uri, pointer).iter_errors(instance)]
    errors = sorted((e for e in found if e is not None), key=lambda e: -len(e.absolute_path))
    if errors:
        first, rest = errors[0], errors[1:]
        more = "".join(f"; at {e.json_path}: {_message(e)}" for e in rest[:4])
        more += f"; and {len(rest) - 4} more" if len(rest) > 4 else ""
        raise AssertionError(f"{what}: at {first.json_path}: {_message(first)}{more}")


def _message(error: Any) -> str:
    """The error's message; for a failed oneOf/anyOf, also what each alternative wanted."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return str(error.message)
    wanted = list(dict.fromkeys(str(e.message) for e in error.context))
    return f"{error.message} (wanted one of: {' | '.join(wanted[:6])})"


def _resolve(node: Any) -> Any:
    """Follow local ``$ref``s in the published spec (to read types for coercion)."""
    return _resolve_in(load_spec(), node)


# =============================================================================================
# operations
# =============================================================================================
def _strip(path: str) -> str:
    path = urlsplit(path).path if "://" in path or "?" in path else path
    path = _VERSION_PREFIX.sub("", path)
    return path.rstrip("/") or "/"


@cache
def _templates() -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in load_spec()["paths"]:
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        out.append((re.compile(regex), template, template.count("{")))
    # Literal segments win over parameters: /assets/multipart-uploads before /assets/{asset_id}.
    return sorted(out, key=lambda t: t[2])


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec template and operation object for a concrete method and path."""
    method_l = method.lower()
    concrete = _strip(path)
    for regex, template, _ in _templates():
        if regex.match(concrete):
            operation = load_spec()["paths"][template].get(method_l)
            if operation is not None:
                return template, operation
    raise AssertionError(f"{method.upper()} {path}: no such operation in the OpenAPI spec")


# =============================================================================================
# headers
# =============================================================================================
def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _check_request_headers(
    name: str, operation: dict[str, Any], headers: Mapping[str, Any], body_kind: str | None
) -> None:
    lowered = _lower(headers)
    for param in operation.get("parameters", []):  # headers.api-key
        required = param.get("in") == "header" and param.get("required")
        if required and not lowered.get(param["name"].lower(), "").strip():
            raise AssertionError(f"{name}: required header {param['name']!r} is missing or empty")
    if "authorization" in lowered:  # headers.no-authorization
        raise AssertionError(f"{name}: sends an Authorization header; the API authenticates by x-api-key")
    content_type = lowered.get("content-type", "")  # headers.request-content-type
    media = _media_type(content_type)
    declared = sorted((operation.get("requestBody") or {}).get("content") or {})
    if body_kind == "json" and media != _JSON:
        raise AssertionError(f"{name}: a JSON body needs Content-Type {_JSON}, got {content_type!r}")
    if body_kind == "multipart" and (media != _MULTIPART or "boundary=" not in content_type.lower()):
        raise AssertionError(
            f"{name}: a multipart body needs Content-Type {_MULTIPART} with a boundary, got {content_type!r}"
        )
    if body_kind is None and media and media not in declared:
        raise AssertionError(
            f"{name}: Content-Type {content_type!r} is not one the spec declares ({declared})"
        )


def _check_response_content_type(
    name: str, headers: Mapping[str, Any] | None, allowed: Iterable[str], has_body: bool
) -> None:
    if headers is None or not has_body:
        return
    content_type = _lower(headers).get("content-type", "")
    allowed = sorted(set(allowed))
    if _media_type(content_type) not in allowed:
        raise AssertionError(f"{name}: response Content-Type {content_type!r}, the spec declares {allowed}")


# =============================================================================================
# responses
# =============================================================================================
def _decode(body: Any, what: str = "body") -> Any:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        if not body.strip():
            return None
        try:
            return jsonlib.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{what}: not JSON: {body[:200]!r}") from exc
    return body


def validate_response(
    method: str,
    path: str,
    status: int,
    body: Any,
    *,
    allow_undeclared: bool = True,
    headers: Mapping[str, Any] | None = None,
) -> None:
    """Assert that ``body`` (parsed JSON, or raw bytes/str; ``None`` = empty) matches the strict spec.

    ``headers`` (the response's) adds the content-type check. ``allow_undeclared=False`` fails
    any status the operation does not declare (by default an undeclared 4xx/5xx is accepted
    when it carries the operation's error body).
    """
    template, operation = find_operation(method, path)
    name = f"{method.upper()} {template} -> {status}"
    body = _decode(body, name)
    responses = operation.get("responses", {})
    key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
    base = ("paths", template, method.lower(), "responses")
    if key is None:
        if status < 400:  # response.undeclared-success
            raise AssertionError(f"{name}: status not declared (declared: {sorted(responses)})")
        if not allow_undeclared:
            raise AssertionError(f"{name}: status not declared (declared: {sorted(responses)})")
        _check_response_content_type(name, headers, [_JSON], body is not None)
        family = _error_family(load_spec(), operation)  # response.error-body
        _validate(
            _schema(_CLASSIC_ERROR if family == "classic" else _NESTED_ERROR),
            body,
            f"{name}: not an error object of the operation's {family} shape (status undeclared)",
            uri=RESPONSE_URI,
        )
        return
    content = _at(_response_doc(), _pointer(*base, key)).get("content") or {}
    if not content:
        if body is not None:
            raise AssertionError(f"{name}: the spec declares no body but got {body!r}")
        return
    _check_response_content_type(name, headers, content, body is not None)
    if _JSON not in content or not content[_JSON].get("schema"):
        return
    what = f"{name}: not an error object of the declared shape" if status >= 400 else name
    _validate(_pointer(*base, key, "content", _JSON, "schema"), body, what, uri=RESPONSE_URI)


def validate_stream_events(
    method: str, path: str, events: Iterable[Any], *, headers: Mapping[str, Any] | None = None
) -> None:
    """Validate each NDJSON event of a streamed 200 against the spec's stream-event schema."""
    template, operation = find_operation(method, path)
    name = f"{method.upper()} {template}"
    schema = _resolve(operation["responses"]["200"]["content"][_JSON]["schema"])
    stream_refs = [b["$ref"] for b in schema.get("oneOf", []) if "Stream" in b.get("$ref", "")]
    if not stream_refs:
        raise AssertionError(f"{name}: the spec declares no stream events")
    _check_response_content_type(f"{name} stream", headers, [_NDJSON, _JSON], True)
    pointer = stream_refs[0].lstrip("#")
    for i, event in enumerate(events):
        _validate(pointer, _decode(event), f"{name} stream event #{i}", uri=RESPONSE_URI)


# =============================================================================================
# requests
# =============================================================================================
def _request_schema(operation: dict[str, Any], content_type: str) -> Any:
    return ((operation.get("requestBody") or {}).get("content") or {}).get(content_type, {}).get("schema")


def _coerce(value: Any, schema: Any, where: str) -> Any:
    """Turn a wire string into the JSON value the schema describes; leave it alone if it cannot be."""
    schema = _resolve(schema)
    kind = schema.get("type") if isinstance(schema, dict) else None
    if not isinstance(value, str):
        return value
    if kind == "boolean":
        if value not in ("true", "false"):
            raise AssertionError(f"{where}: booleans go on the wire as 'true'/'false', got {value!r}")
        return value == "true"
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _form_value(value: Any, schema: Any, where: str) -> Any:
    schema = _resolve(schema) or {}
    if isinstance(value, bytes | bytearray | tuple) or hasattr(value, "read"):
        return _FILE
    if isinstance(value, bool):
        raise AssertionError(f"{where}: a Python bool would be sent as {str(value)!r}; send 'true'/'false'")
    text = value if isinstance(value, str) else str(value)
    if schema.get("format") == "binary":
        return text
    return _coerce(text, schema, where)


def validate_request(
    method: str,
    path: str,
    *,
    json: Any = None,
    form: Mapping[str, Any] | None = None,
    files: Mapping[str, Any] | None = None,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    headers: Mapping[str, Any] | None = None,
    metadata_bare_keys: bool = True,
) -> None:
    """Check a request the way the server would read it, against the strict spec.

    ``form`` holds multipart text fields (values as sent: str, or numbers) and may also hold
    file parts; ``files`` holds file parts (any value; only presence matters). Query values may
    be lists for repeated keys; ``name[key]`` addresses object parameters (``duration[gte]``,
    ``user_metadata[category]``); a bare unknown key counts as a ``user_metadata`` filter only
    with ``metadata_bare_keys``. ``headers`` (the request's, as sent) adds the header rules:
    ``x-api-key`` present, no ``Authorization``, and the Content-Type of the body given here.
    """
    template, operation = find_operation(method, path)
    name = f"{method.upper()} {template}"
    base = ("paths", template, method.lower())
    body_kind = "json" if json is not None else "multipart" if form is not None or files is not None else None
    if headers is not None:
        _check_request_headers(name, operation, headers, body_kind)
    if json is not None:
        if _request_schema(operation, _JSON) is None:
            raise AssertionError(f"{name}: the spec declares no JSON request body")
        _validate(_pointer(*base, "requestBody", "content", _JSON, "schema"), json, f"{name} JSON body")
    if form is not None or files is not None:
        schema = _resolve(_request_schema(operation, _MULTIPART))
        if schema is None:
            raise AssertionError(f"{name}: the spec declares no multipart/form-data body")
        props = schema.get("properties", {})
        instance: dict[str, Any] = {}
        for key, value in {**(form or {}), **{k: b"" for k in (files or {})}}.items():
            if key not in props:
                raise AssertionError(f"{name}: unknown multipart field {key!r} (known: {sorted(props)})")
            instance[key] = _form_value(value, props[key], f"{name} field {key!r}")
            if key == "user_metadata" and isinstance(instance[key], str):
                try:
                    decoded = jsonlib.loads(instance[key])
                except ValueError as exc:
                    raise AssertionError(f"{name}: user_metadata must be a JSON-encoded object") from exc
                if not isinstance(decoded, dict):
                    raise AssertionError(f"{name}: user_metadata must encode a JSON object")
        _validate(
            _pointer(*base, "requestBody", "content", _MULTIPART, "schema"),
            instance,
            f"{name} multipart body",
        )
    if query is not None:
        _validate_query(operation, base, name, query, metadata_bare_keys=metadata_bare_keys)


def _validate_query(
    operation: dict[str, Any],
    base: tuple[str, ...],
    name: str,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    metadata_bare_keys: bool,
) -> None:
    params = {
        p["name"]: (i, p) for i, p in enumerate(operation.get("parameters", [])) if p.get("in") == "query"
    }
    pairs: list[tuple[str, Any]] = []
    for key, value in query.items() if isinstance(query, Mapping) else query:
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, item))
    free_form = [
        n for n, (_, p) in params.items() if _resolve(p.get("schema", {})).get("additionalProperties")
    ]
    values: dict[str, Any] = {}
    for key, raw in pairs:
        raw = "true" if raw is True else "false" if raw is False else str(raw)
        match = re.fullmatch(r"([^\[\]]+)\[([^\[\]]+)\]", key)
        param_name, prop = (match.group(1), match.group(2)) if match else (key, None)
        if param_name not in params:
            if prop is None and free_form and metadata_bare_keys:
                # Bare keys of a form-exploded object (the docs' ?category=news for user_metadata).
                param_name, prop = free_form[0], key
            else:
                raise AssertionError(f"{name}: unknown query parameter {key!r} (known: {sorted(params)})")
        schema = _resolve(params[param_name][1].get("schema", {}))
        where = f"{name} query {key!r}"
        if prop is not None:
            if schema.get("type") != "object":
                raise AssertionError(f"{where}: {param_name} is not an object parameter")
            sub = (schema.get("properties") or {}).get(prop, schema.get("additionalProperties") or {})
            values.setdefault(param_name, {})[prop] = _coerce(
                raw, sub if isinstance(sub, dict) else {}, where
            )
        elif schema.get("type") == "array":
            values.setdefault(param_name, []).append(_coerce(raw, schema.get("items", {}), where))
        else:
            if param_name in values:
                raise AssertionError(f"{where}: repeated, but {param_name} is not an array parameter")
            values[param_name] = _coerce(raw, schema, where)
    for pname, (_, param) in params.items():
        if param.get("required") and pname not in values:
            raise AssertionError(f"{name}: required query parameter {pname!r} is missing")
    for pname, value in values.items():
        index = params[pname][0]
        _validate(_pointer(*base, "parameters", index, "schema"), value, f"{name} query {pname!r}")


# =============================================================================================
# whole exchanges (requests.Response)
# =============================================================================================
def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Text fields and file parts of a multipart/form-data body, as a server would split them."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    form: dict[str, str] = {}
    files: dict[str, Any] = {}
    for part in message.iter_parts():
        part_name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is None:
            form[str(part_name)] = payload.decode("utf-8")
        else:
            files[str(part_name)] = (part.get_filename(), payload)
    return form, files


def validate_exchange(
    response: Any,
    *,
    check_request: bool = True,
    check_response: bool = True,
    metadata_bare_keys: bool = True,
) -> None:
    """Check both sides of one ``requests`` exchange, headers included.

    ``response`` is a ``requests.Response`` (its ``.request`` is the request as sent). The
    request body is read the way the server reads it (JSON, or multipart fields and file parts);
    an NDJSON 200 is checked event by event.
    """
    prepared = response.request
    method, url = str(prepared.method), str(prepared.url)
    if check_request:
        kwargs: dict[str, Any] = {}
        content_type = prepared.headers.get("Content-Type", "")
        body = prepared.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and not isinstance(body, bytes):
            raise AssertionError(f"{method} {url}: a streamed request body cannot be checked")
        if body:
            media = _media_type(content_type)
            if media == _JSON:
                kwargs["json"] = jsonlib.loads(body)
            elif media == _MULTIPART:
                form, files = _parse_multipart(body, content_type)
                kwargs["form"], kwargs["files"] = form, files or None
            else:
                raise AssertionError(
                    f"{method} {url}: request body sent as {content_type!r}; the API takes "
                    f"{_JSON} or {_MULTIPART}"
                )
        query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        validate_request(
            method,
            url,
            query=query or None,
            headers=dict(prepared.headers),
            metadata_bare_keys=metadata_bare_keys,
            **kwargs,
        )
    if check_response:
        media = _media_type(response.headers.get("Content-Type"))
        if response.status_code == 200 and media == _NDJSON:
            events = [line for line in response.content.decode("utf-8").splitlines() if line.strip()]
            validate_stream_events(method, url, events, headers=response.headers)
        else:
            validate_response(method, url, response.status_code, response.content, headers=response.headers)
