"""What a video comes from, and where it goes: validated sources and index targets.

:func:`resolve_source` turns ``video_url``/``file_path``/``filename`` into a :class:`VideoSource`
(reading the file's metadata from its storage, making no TwelveLabs call); :func:`resolve_index_target`
does the same for ``index_id``/``index_name``. Everything is checked here, before any upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow.sdk import ObjectStoragePath
from airflow.sdk.log import mask_secret

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.ids import (
    MAX_FILENAME,
    validate_filename,
    validate_id,
    validate_index_name,
    validate_video_url,
)

#: user_metadata key carrying the ingest key on every resource we create.
INGEST_KEY_FIELD = "gist_ingest_key"
#: The API's limit for ``method=direct`` asset uploads; bigger files need a URL.
MAX_DIRECT_UPLOAD_BYTES = 200 * 1024 * 1024
#: Models an index created by a DAG can have. An index is for search (Marengo): analysis takes an
#: asset id and needs none, and the API refuses new videos in an index with only Pegasus 1.2.
INDEX_MODELS = ("marengo3.0",)
PEGASUS_ONLY_MODELS = ("pegasus1.2",)
DEFAULT_INDEX_MODEL = "marengo3.0"


@dataclass(frozen=True)
class VideoSource:
    """A validated video source: exactly one of ``video_url`` and ``path``."""

    filename: str
    #: what the ingest key hashes: the normalised URL, or storage URI + size + modification stamp
    identity: str
    video_url: str | None = None
    path: ObjectStoragePath | None = None
    size: int | None = None

    def result_fields(self) -> dict[str, str]:
        """``{"video_url": ...}`` (credentials and query stripped) or ``{"filename": ...}`` for XCom."""
        if self.video_url is not None:
            return {"video_url": public_url(self.video_url)}
        return {"filename": self.filename}


def public_url(url: str) -> str:
    """The URL without user:password, query or fragment: signed URLs carry credentials there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def mask_url_secrets(url: str) -> None:
    parts = urlsplit(url)
    for secret in (parts.password, parts.query):
        if secret and len(secret) > 5:  # the masker ignores very short values anyway
            mask_secret(secret)


def validate_user_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise GistValidationError(f"user_metadata must be a mapping, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise GistValidationError("user_metadata keys must be non-empty strings")
        if key == INGEST_KEY_FIELD:
            raise GistValidationError(f"user_metadata key {INGEST_KEY_FIELD!r} is reserved by the provider")
        if not isinstance(item, str | int | float | bool):
            raise GistValidationError(f"user_metadata[{key!r}] must be a string, number or boolean")
        out[key] = item
    return out


def _validate_seconds(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise GistValidationError(f"{field_name} must be a positive number of seconds")
    try:
        number = float(value)
    except ValueError:
        raise GistValidationError(f"{field_name} must be a positive number of seconds") from None
    if not number > 0 or number != number or number == float("inf"):
        raise GistValidationError(f"{field_name} must be a positive number of seconds, got {value!r}")
    return number


def validate_wait(asset_timeout: object, poll_interval: object) -> tuple[float, float]:
    timeout = _validate_seconds(asset_timeout, "asset_timeout")
    interval = _validate_seconds(poll_interval, "poll_interval")
    if interval > timeout:
        raise GistValidationError("poll_interval must not be longer than asset_timeout")
    return timeout, interval


def _given(value: object) -> bool:
    return value is not None and value != ""


def resolve_source(video_url: object, file_path: object, filename: object = None) -> VideoSource:
    """Validate the source arguments (exactly one of ``video_url`` and ``file_path``).

    Reads the file's metadata (``stat``) from its storage, but makes no TwelveLabs call.
    """
    if _given(video_url) == _given(file_path):
        raise GistValidationError(
            "give exactly one of video_url and file_path (got "
            + ("both" if _given(video_url) else "neither")
            + ")"
        )
    name = validate_filename(filename) if _given(filename) else None
    if _given(video_url):
        url = validate_video_url(video_url, "video_url")
        parts = urlsplit(url)
        # Scheme and host are case-insensitive; the path is not.
        normalised = urlunsplit(
            (parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment)
        )
        default_name = unquote(PurePosixPath(parts.path).name) or "video"
        return VideoSource(
            filename=name or validate_filename(default_name[:MAX_FILENAME], "video_url's file name"),
            identity=f"url:{normalised}",
            video_url=url,
        )
    path = _storage_path(file_path)
    try:
        raw_info: Any = path.stat()
    except FileNotFoundError:
        raise GistValidationError(f"file_path {str(path)!r} does not exist") from None
    except Exception as err:  # a storage backend's own error (auth, network) still names the field
        raise GistValidationError(
            f"file_path {str(path)!r} could not be read: {type(err).__name__}: {err}"
        ) from None
    info: dict[str, Any] = dict(raw_info) if isinstance(raw_info, Mapping) else {}
    if info.get("type") not in (None, "file"):
        raise GistValidationError(f"file_path {str(path)!r} is not a file")
    size = info.get("size")
    if isinstance(size, int) and size > MAX_DIRECT_UPLOAD_BYTES:
        raise GistValidationError(
            f"file_path {str(path)!r} is {size} bytes; direct uploads are limited to "
            f"{MAX_DIRECT_UPLOAD_BYTES // (1024 * 1024)} MB: publish it and pass video_url instead"
        )
    if size == 0:
        raise GistValidationError(f"file_path {str(path)!r} is empty")
    stamp = next(
        (str(info[k]) for k in ("mtime", "LastModified", "last_modified", "ETag", "etag") if info.get(k)),
        "",
    )
    protocol = path.protocol or "file"
    return VideoSource(
        filename=name or validate_filename(path.name, "file_path's file name"),
        identity=f"file:{protocol}://{path.path}|size={size}|stamp={stamp}",
        path=path,
        size=size if isinstance(size, int) else None,
    )


def _storage_path(file_path: object) -> ObjectStoragePath:
    if isinstance(file_path, ObjectStoragePath):
        path = file_path
    elif isinstance(file_path, str | PurePosixPath) or hasattr(file_path, "__fspath__"):
        text = str(file_path).strip()
        scheme = urlsplit(text).scheme.lower() if "://" in text else ""
        if scheme in ("http", "https"):
            raise GistValidationError("file_path must be a storage path; pass http(s) links as video_url")
        try:
            path = ObjectStoragePath(text)
        except Exception as err:
            raise GistValidationError(
                f"file_path {text[:80]!r} is not a usable storage path: {err}"
            ) from None
    else:
        raise GistValidationError(
            f"file_path must be a string or ObjectStoragePath, got {type(file_path).__name__}"
        )
    # Templated paths can come from the manual-run form: refuse traversal rather than upload
    # an arbitrary file of the worker to a third party.
    if ".." in PurePosixPath(path.path).parts:
        raise GistValidationError(f"file_path {str(path)[:80]!r} must not contain '..' segments")
    if path.protocol in ("", "file") and not PurePosixPath(path.path).is_absolute():
        raise GistValidationError(f"file_path {str(path)[:80]!r} must be an absolute path")
    return path


@dataclass(frozen=True)
class IndexTarget:
    """Exactly one of an index id and an index name (created on demand when allowed)."""

    index_id: str | None
    index_name: str | None
    create_if_missing: bool
    model: str


def resolve_index_target(
    index_id: object, index_name: object, create_index_if_missing: object, index_model: object
) -> IndexTarget:
    if _given(index_id) == _given(index_name):
        raise GistValidationError(
            "give exactly one of index_id and index_name (got "
            + ("both" if _given(index_id) else "neither")
            + ")"
        )
    if index_model in PEGASUS_ONLY_MODELS:
        raise GistValidationError(
            f"index_model {index_model!r}: TwelveLabs no longer adds videos to an index that has only "
            f"Pegasus 1.2 enabled; use {DEFAULT_INDEX_MODEL!r} "
            "(gists need no index: analysis takes the asset id)"
        )
    if index_model not in INDEX_MODELS:
        raise GistValidationError(
            f"index_model {index_model!r} is not supported: use one of {', '.join(INDEX_MODELS)}"
        )
    return IndexTarget(
        index_id=validate_id(index_id, "index_id") if _given(index_id) else None,
        index_name=validate_index_name(index_name, "index_name") if _given(index_name) else None,
        create_if_missing=bool(create_index_if_missing),
        model=str(index_model),
    )
