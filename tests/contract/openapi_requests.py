"""Checking a request (JSON body, multipart fields, query, headers) the way the server reads it."""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tests.contract.openapi_spec import (
    _JSON,
    _MULTIPART,
    _lower,
    _media_type,
    _pointer,
    _resolve,
    find_operation,
)
from tests.contract.openapi_strict import _validate

_FILE = "<binary>"


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
