"""Checking both sides of one ``requests`` exchange, the request read back from its wire form."""

from __future__ import annotations

import email.parser
import email.policy
import json as jsonlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.contract.openapi_requests import validate_request
from tests.contract.openapi_responses import validate_response, validate_stream_events
from tests.contract.openapi_spec import _JSON, _MULTIPART, _NDJSON, _media_type


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
