"""Validate requests and responses against the official TwelveLabs OpenAPI 3.1 spec.

Used by every contract test (client and emulator alike). The spec is read from
``../shared/spec/twelvelabs-openapi-v1.3.json`` beside the repository root, or from the
path in ``$TWELVELABS_OPENAPI_SPEC``.

Conventions (see also docs/emulator.md):

* paths may be full URLs or ``/v1.3/...`` / ``/v1.2/...``; the version prefix and the query
  string are ignored when matching a spec template;
* a status the operation does not declare (401, 422, 5xx, ...) is accepted when the body is
  empty or an error object (``{code, message}`` or ``{"error": {...}}``), unless
  ``allow_undeclared=False``;
* a declared status without ``content`` requires an empty body; a declared content type
  without a schema (e.g. the 429 of ``POST /analyze``) accepts any body;
* streamed ``/analyze`` responses are checked line by line with :func:`validate_stream_events`,
  because the spec's ``oneOf`` of stream events and the non-stream body is ambiguous for
  JSON Schema (a ``stream_start`` event also matches the non-stream shape).
"""

from __future__ import annotations

import json as jsonlib
import os
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "TWELVELABS_OPENAPI_SPEC"
SPEC_URI = "urn:twelvelabs:openapi:v1.3"
_VERSION_PREFIX = re.compile(r"^/v1\.[0-9]+(?=/)")
_FILE = "<binary>"


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


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(load_spec(), default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1").replace("%", "%25")


def _pointer(*segments: str | int) -> str:
    return "".join("/" + _escape(str(s)) for s in segments)


def _validate(pointer: str, instance: Any, what: str) -> None:
    """Validate against the spec node at ``pointer`` so that its ``#/components`` refs resolve."""
    validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=_registry())
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise AssertionError(f"{what}: at {error.json_path}: {error.message}")


def _resolve(node: Any) -> Any:
    """Follow local ``$ref``s (only to read types for coercion; validation resolves on its own)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        ref = node["$ref"]
        target: Any = load_spec()
        for part in ref.lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node, seen = target, seen + 1
    return node


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


def _decode(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8")
    if isinstance(body, str):
        return jsonlib.loads(body) if body.strip() else None
    return body


def _is_error_shape(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("code"), str) and isinstance(body.get("message"), str):
        return True
    nested = body.get("error")
    return isinstance(nested, dict) and isinstance(nested.get("message"), str)


def validate_response(
    method: str, path: str, status: int, body: Any, *, allow_undeclared: bool = True
) -> None:
    """Assert that ``body`` (parsed JSON, or raw bytes/str; ``None`` = empty) matches the spec."""
    template, operation = find_operation(method, path)
    name = f"{method.upper()} {template} -> {status}"
    body = _decode(body)
    responses = operation.get("responses", {})
    key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
    if key is None:
        if not allow_undeclared:
            raise AssertionError(f"{name}: status not declared (declared: {sorted(responses)})")
        if body is not None and not _is_error_shape(body):
            raise AssertionError(
                f"{name}: undeclared status with a body that is not an error object: {body!r}"
            )
        return
    declared = responses[key]
    media = (declared.get("content") or {}).get("application/json")
    if not declared.get("content"):
        if body is not None:
            raise AssertionError(f"{name}: the spec declares no body but got {body!r}")
        return
    if media is None or "schema" not in media or not media["schema"]:
        return
    _validate(
        _pointer(
            "paths", template, method.lower(), "responses", key, "content", "application/json", "schema"
        ),
        body,
        name,
    )


def validate_stream_events(method: str, path: str, events: Iterable[Any]) -> None:
    """Validate each NDJSON event of a streamed 200 against the spec's stream-event schema."""
    template, operation = find_operation(method, path)
    schema = _resolve(operation["responses"]["200"]["content"]["application/json"]["schema"])
    stream_refs = [b["$ref"] for b in schema.get("oneOf", []) if "Stream" in b.get("$ref", "")]
    if not stream_refs:
        raise AssertionError(f"{method.upper()} {template}: the spec declares no stream events")
    pointer = stream_refs[0].lstrip("#")
    for i, event in enumerate(events):
        _validate(pointer, _decode(event), f"{method.upper()} {template} stream event #{i}")


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
) -> None:
    """Check a request the way the server would read it.

    ``form`` holds multipart text fields (values as sent: str, or numbers) and may also hold
    file parts; ``files`` holds file parts (any value; only presence matters). Query values may
    be lists for repeated keys; ``name[key]`` addresses object parameters (``duration[gte]``,
    ``user_metadata[category]``).
    """
    template, operation = find_operation(method, path)
    name = f"{method.upper()} {template}"
    base = ("paths", template, method.lower())
    if json is not None:
        if _request_schema(operation, "application/json") is None:
            raise AssertionError(f"{name}: the spec declares no JSON request body")
        _validate(
            _pointer(*base, "requestBody", "content", "application/json", "schema"), json, f"{name} JSON body"
        )
    if form is not None or files is not None:
        schema = _resolve(_request_schema(operation, "multipart/form-data"))
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
            _pointer(*base, "requestBody", "content", "multipart/form-data", "schema"),
            instance,
            f"{name} multipart body",
        )
    if query is not None:
        _validate_query(operation, base, name, query)


def _validate_query(
    operation: dict[str, Any],
    base: tuple[str, ...],
    name: str,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]],
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
            if prop is None and free_form:
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
