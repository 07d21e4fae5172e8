"""Validation of remote ids, names and URLs, in one place.

Every id we put into a URL path or an object-storage key passes through here first, so a
malformed value fails with a message naming the field *before* any HTTP call or write.
TwelveLabs ids are 24 hex characters today; we accept a wider safe alphabet so that a
format change on their side does not break us, while still refusing anything that could
change the meaning of a URL or a path (``/``, ``..``, ``?``, ``#``, ``%``, spaces, unicode).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from airflow_provider_gist.errors import GistValidationError

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: Index names are free text for the API; we refuse only what cannot be a sensible name.
_MAX_NAME = 200
MAX_FILENAME = 200
ALLOWED_URL_SCHEMES = ("http", "https")


def validate_id(value: object, field: str) -> str:
    """Return ``value`` if it is a well-formed remote id, else raise naming ``field``."""
    if not isinstance(value, str):
        raise GistValidationError(f"{field} must be a string id, got {type(value).__name__}")
    if not value:
        raise GistValidationError(f"{field} must not be empty")
    if not _ID_RE.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise GistValidationError(
            f"{field} {shown!r} is not a valid id: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return value


def validate_optional_id(value: object, field: str) -> str | None:
    """Like :func:`validate_id` but lets ``None`` and ``""`` through as "not given"."""
    if value is None or value == "":
        return None
    return validate_id(value, field)


def validate_index_name(value: object, field: str = "index_name") -> str:
    """Return a stripped index name, refusing empty, overlong or control-character names."""
    name = _stripped_text(value, field, _MAX_NAME, "a non-empty string")
    if any(ord(ch) < 32 for ch in name):
        raise GistValidationError(f"{field} must not contain control characters")
    return name


def _stripped_text(value: object, field: str, max_length: int, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GistValidationError(f"{field} must be {what}")
    name = value.strip()
    if len(name) > max_length:
        raise GistValidationError(f"{field} is longer than {max_length} characters")
    return name


def validate_filename(value: object, field: str = "filename") -> str:
    """Return a stripped plain file name (no directories, no control characters), else raise."""
    name = _stripped_text(value, field, MAX_FILENAME, "a non-empty string when given")
    if "/" in name or "\\" in name or name in (".", "..") or any(ord(ch) < 32 for ch in name):
        raise GistValidationError(
            f"{field} {name[:80]!r} must be a plain file name (no slashes or control characters)"
        )
    return name


def validate_video_url(value: object, field: str = "video_url") -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host, else raise naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise GistValidationError(f"{field} must be a non-empty URL")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_URL_SCHEMES:
        raise GistValidationError(
            f"{field} {url[:80]!r} has unsupported scheme {parts.scheme!r}: use http or https"
        )
    if not parts.netloc or any(ch.isspace() for ch in url):
        raise GistValidationError(f"{field} {url[:80]!r} is not an absolute URL")
    return url
