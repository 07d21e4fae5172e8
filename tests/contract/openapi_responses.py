"""Checking a response (status, body, content type) and the events of a streamed ``/analyze``."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable, Mapping
from typing import Any

from tests.contract.openapi_spec import (
    _JSON,
    _NDJSON,
    RESPONSE_URI,
    _at,
    _lower,
    _media_type,
    _pointer,
    _resolve,
    _schema,
    find_operation,
    load_spec,
)
from tests.contract.openapi_strict import (
    _CLASSIC_ERROR,
    _NESTED_ERROR,
    _error_family,
    _response_doc,
    _validate,
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
