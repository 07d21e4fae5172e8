"""``validate_exchange`` on real ``requests`` objects: both sides read back from their wire form.

The request is prepared by ``requests`` itself (JSON, multipart, query, auth) and the answer is a
``requests.Response`` built in memory; nothing is sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.contract.openapi import validate_exchange
from tests.contract.strictness_examples import (
    ANALYZE_200,
    ANALYZE_BODY,
    ASSET,
    ID,
    INDEXED_ASSET,
    JSON_RESPONSE,
    KEY,
    STREAM,
    URL,
    listing,
)


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


def _analyze_exchange(*, status: int = 200, body: Any = ANALYZE_200, **request_kw: Any) -> requests.Response:
    """A ``POST /analyze`` exchange: the sync analysis body and the API key unless overridden."""
    return _exchange(
        "POST", "/analyze", status=status, body=body, **{"json": ANALYZE_BODY, "headers": KEY, **request_kw}
    )


def test_exchange_json_request_and_answer() -> None:
    validate_exchange(_analyze_exchange())
    with pytest.raises(AssertionError, match="x-api-key"):
        validate_exchange(_analyze_exchange(headers=None))
    with pytest.raises(AssertionError, match="Authorization"):
        validate_exchange(_analyze_exchange(auth=("u", "p")))
    with pytest.raises(AssertionError, match="'id' is a required property"):
        validate_exchange(_analyze_exchange(body={}))
    with pytest.raises(AssertionError, match="request body sent as 'text/plain'"):
        validate_exchange(
            _analyze_exchange(
                json=None, data=json.dumps(ANALYZE_BODY), headers={**KEY, "Content-Type": "text/plain"}
            )
        )


def test_exchange_multipart_and_query() -> None:
    created = {**ASSET, "status": "processing"}

    def post_assets(files: dict[str, Any]) -> requests.Response:
        return _exchange("POST", "/assets", status=201, body=created, files=files, headers=KEY)

    parts = {"method": (None, "url"), "url": (None, URL), "user_metadata": (None, '{"k": "v"}')}
    validate_exchange(post_assets(parts))
    validate_exchange(
        post_assets({"method": (None, "direct"), "file": ("a.mp4", b"\x00\x00\x00\x18ftypmp42")})
    )
    with pytest.raises(AssertionError, match="unknown multipart field 'video_url'"):
        validate_exchange(post_assets({**parts, "video_url": (None, URL)}))
    page = listing(INDEXED_ASSET)
    path = f"/indexes/{ID}/indexed-assets"
    params = [("status", "ready"), ("status", "failed"), ("user_metadata[k]", "v"), ("page", "1")]
    validate_exchange(_exchange("GET", path, status=200, body=page, params=params, headers=KEY))
    with pytest.raises(AssertionError, match="unknown query parameter 'k'"):
        validate_exchange(
            _exchange("GET", path, status=200, body=page, params={"k": "v"}, headers=KEY),
            metadata_bare_keys=False,
        )


def test_exchange_stream_and_errors() -> None:
    ndjson = "\n".join(json.dumps(e) for e in STREAM).encode() + b"\n"
    body = {**ANALYZE_BODY, "stream": True}
    headers = {"Content-Type": "application/x-ndjson"}
    validate_exchange(_analyze_exchange(body=ndjson, response_headers=headers, json=body))
    bad = b'{"event_type": "stream_end", "finish_reason": "done"}\n'
    with pytest.raises(AssertionError, match="stream event #0"):
        validate_exchange(_analyze_exchange(body=bad, response_headers=headers, json=body))
    validate_exchange(_analyze_exchange(status=429, body=b"", response_headers={}))
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
