"""Failures of one API call, as the retry loop and the callers see them.

Two kinds: an *answer* with an error status, turned into a typed
:class:`~airflow_provider_gist.errors.GistApiError` by :func:`error_from_response`, and a
*transport failure* (no usable answer), described by :class:`TransportFailure` whatever the
HTTP library. Each hook maps its library's exceptions with :func:`from_requests_error` or
:func:`from_aiohttp_error`, so no raw ``requests``/``aiohttp`` exception escapes a call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_gist.client.headers import header, parse_retry_after, server_wait_hint
from airflow_provider_gist.errors import (
    GistApiError,
    GistAuthError,
    GistNotFoundError,
    GistRateLimitedError,
    GistTransientError,
)


def error_from_response(
    status: int, body_text: str, headers: Mapping[str, str], *, method: str, path: str
) -> GistApiError:
    """Build the typed error for a non-2xx answer from either of the API's error-body shapes.

    Classic endpoints answer ``{"code", "message"}``, newer ones ``{"error": {"code", "message"}}``,
    and a 429 from ``/analyze`` has an empty body. A redirect is an error too: we never follow
    one, since the API key would go to whatever host it names.
    """
    if 300 <= status < 400:
        location = header(headers, "location") or ""
        target = urlsplit(location).hostname or "an unnamed host"
        return GistApiError(
            f"the API answered with a redirect to {target}; not followed, so the API key is only ever "
            "sent to the connection's host (check the connection's API base URL)",
            status=status,
            method=method,
            path=path,
        )
    code: str | None = None
    message: str | None = None
    text = body_text.strip()
    if text:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            nested = payload.get("error")
            inner: dict[str, Any] = nested if isinstance(nested, dict) else payload
            code = inner.get("code") if isinstance(inner.get("code"), str) else None
            message = inner.get("message") if isinstance(inner.get("message"), str) else None
        if message is None:
            kind = (
                "HTML page" if text.lstrip().lower().startswith(("<!doctype", "<html")) else "non-JSON body"
            )
            message = f"the server answered with a {kind} instead of a TwelveLabs error"
    # The window's reset says when a 429 clears; it says nothing about a 5xx, which backs off.
    retry_after = (
        server_wait_hint(headers) if status == 429 else parse_retry_after(header(headers, "retry-after"))
    )
    if message is None:
        message = "too many requests" if status == 429 else "no error details in the response"
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "method": method,
        "path": path,
        "retry_after": retry_after,
    }
    if status in (401, 403):
        hint = "the API key is invalid, expired or revoked" if status == 401 else "the API key is not allowed"
        return GistAuthError(f"{message} ({hint}; check the connection's API key)", **kwargs)
    if status == 404 or code == "resource_not_exist":
        return GistNotFoundError(message, **kwargs)
    if status == 429:
        return GistRateLimitedError(message, **kwargs)
    if status >= 500:
        return GistTransientError(message, **kwargs)
    return GistApiError(message, **kwargs)


@dataclass(frozen=True)
class TransportFailure:
    """No usable answer came back: the request may or may not have reached the server."""

    #: ``connect_timeout`` | ``refused`` | ``read_timeout`` | ``reset`` | ``cut_off``
    kind: str

    @property
    def never_sent(self) -> bool:
        """The request surely never reached the server, so resending it cannot act twice."""
        return self.kind in ("connect_timeout", "refused")

    def describe(self) -> str:
        return _DESCRIPTIONS[self.kind]


_DESCRIPTIONS = {
    "connect_timeout": "timed out connecting to the TwelveLabs API",
    "refused": "could not connect to the TwelveLabs API (connection refused or host not found)",
    "read_timeout": "timed out waiting for the TwelveLabs API to answer",
    "reset": "the connection to the TwelveLabs API failed (reset or closed)",
    "cut_off": "the TwelveLabs API's answer was cut off",
}


def _looks_refused(err: BaseException) -> bool:
    text = repr(err)
    return any(
        marker in text for marker in ("NewConnectionError", "Connection refused", "NameResolutionError")
    )


def from_requests_error(err: BaseException) -> TransportFailure:
    """Classify any ``requests`` exception raised while sending or reading an answer."""
    from requests import exceptions as rex

    if isinstance(err, rex.ConnectTimeout):
        return TransportFailure("connect_timeout")
    if isinstance(err, rex.ReadTimeout):
        return TransportFailure("read_timeout")
    if isinstance(err, rex.ChunkedEncodingError | rex.ContentDecodingError):
        return TransportFailure("cut_off")
    if isinstance(err, rex.ConnectionError) and _looks_refused(err):
        return TransportFailure("refused")
    return TransportFailure("reset")


def from_aiohttp_error(err: BaseException) -> TransportFailure:
    """Classify an ``aiohttp`` exception (or a timeout) raised while sending or reading an answer."""
    import aiohttp

    if isinstance(err, aiohttp.ClientConnectorError):
        return TransportFailure("refused")
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return TransportFailure("connect_timeout")
    if isinstance(err, TimeoutError):
        return TransportFailure("read_timeout")
    if isinstance(err, aiohttp.ClientPayloadError):
        return TransportFailure("cut_off")
    return TransportFailure("reset")


def transient_error(failure: TransportFailure, detail: str, *, method: str, path: str) -> GistTransientError:
    return GistTransientError(f"{failure.describe()}{detail}", method=method, path=path)
