"""What a video comes from, and where it goes: validated sources and index targets.

:func:`resolve_source` turns ``video_url``/``file_path``/``filename`` into a :class:`VideoSource`
(reading the file's metadata from its storage, making no TwelveLabs call); :func:`resolve_index_target`
does the same for ``index_id``/``index_name``. Everything is checked here, before any upload.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

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
MIB = 1024 * 1024
#: The API's limit for direct uploads (``POST /assets`` ``method=direct``, and ``POST /tasks``
#: as this provider sends it: the body is built in memory).
MAX_DIRECT_UPLOAD_BYTES = 200 * MIB
#: The API's limit for multipart uploads of video and audio ("up to 10 GB"; read in binary units,
#: like the 200 MB above: a file between 10 GB and 10 GiB is refused by the session create,
#: before any chunk is sent).
MAX_UPLOAD_BYTES = 10 * 1024 * MIB
#: Files above this go through a multipart upload. Below the API's 200 MB on purpose: a direct
#: upload is one request whose body ``requests`` builds in memory and that restarts from zero on
#: any failure, while a multipart upload holds a few chunks and resumes.
DEFAULT_MULTIPART_THRESHOLD = 100 * MIB
#: Chunk PUTs in flight at once (memory: about ``concurrency + 1`` chunks).
DEFAULT_UPLOAD_CONCURRENCY = 4
MAX_UPLOAD_CONCURRENCY = 16
#: Models an index created by a DAG can have. An index is for search (Marengo): analysis takes an
#: asset id and needs none, and the API refuses new videos in an index with only Pegasus 1.2.
INDEX_MODELS = ("marengo3.0",)
PEGASUS_ONLY_MODELS = ("pegasus1.2",)
DEFAULT_INDEX_MODEL = "marengo3.0"


@dataclass(frozen=True)
class UploadOptions:
    """How a file is uploaded: direct up to ``multipart_threshold`` bytes, in parts above."""

    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    concurrency: int = DEFAULT_UPLOAD_CONCURRENCY
    #: ask the platform for thumbnail images (the gist view shows them on each card)
    thumbnail: bool = True

    def multipart(self, source: VideoSource) -> bool:
        # A size the storage does not report cannot be announced to a multipart session.
        return source.path is not None and source.size is not None and source.size > self.multipart_threshold


def _positive_int(value: object, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GistValidationError(f"{field_name} must be an integer from {low} to {high}, got {value!r}")
    return value


def validate_upload_options(
    multipart_threshold: object, upload_concurrency: object, thumbnail: object = True
) -> UploadOptions:
    if not isinstance(thumbnail, bool):
        raise GistValidationError(f"thumbnail must be true or false, got {thumbnail!r}")
    return UploadOptions(
        thumbnail=thumbnail,
        multipart_threshold=_positive_int(
            multipart_threshold, "multipart_threshold", 1, MAX_DIRECT_UPLOAD_BYTES
        ),
        concurrency=_positive_int(upload_concurrency, "upload_concurrency", 1, MAX_UPLOAD_CONCURRENCY),
    )


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
    """Register a URL's password, query string and each query value with the secrets masker.

    Each value on its own too: a signature shows up alone as well (decoded, or reordered).
    """
    parts = urlsplit(url)
    values = [value for _name, value in parse_qsl(parts.query, keep_blank_values=False)]
    for secret in (parts.password, parts.query, *values):
        if secret and len(secret) > 5:  # the masker ignores very short values anyway
            mask_secret(secret)


def source_label(video_url: object, file_path: object) -> str:
    """A short, secret-free name of a source for labels (a map index): public URL or file name."""
    if isinstance(video_url, str) and video_url.strip():
        return public_url(video_url.strip())
    if file_path:
        return PurePosixPath(str(getattr(file_path, "path", file_path))).name
    return ""


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


def resolve_source(
    video_url: object,
    file_path: object,
    filename: object = None,
    *,
    multipart: bool = True,
    allowed_prefixes: Sequence[str | ObjectStoragePath] | None = None,
) -> VideoSource:
    """Validate the source arguments (exactly one of ``video_url`` and ``file_path``).

    Reads the file's metadata (``stat``) from its storage, but makes no TwelveLabs call. Files
    may have up to 10 GiB (multipart uploads), or 200 MB when ``multipart`` is off (``/tasks``).
    With ``allowed_prefixes`` a file must lie under one of them (:func:`check_allowed_path`),
    checked before its storage is touched.
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
    if allowed_prefixes is not None:
        check_allowed_path(path, allowed_prefixes)
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
    if isinstance(size, int) and not multipart and size > MAX_DIRECT_UPLOAD_BYTES:
        raise GistValidationError(
            f"file_path {str(path)!r} is {size} bytes; direct uploads are limited to "
            f"{MAX_DIRECT_UPLOAD_BYTES // MIB} MB: publish it and pass video_url, or use "
            "IngestVideoOperator, which uploads large files in parts"
        )
    if isinstance(size, int) and size > MAX_UPLOAD_BYTES:
        raise GistValidationError(
            f"file_path {str(path)!r} is {size} bytes; uploads are limited to "
            f"{MAX_UPLOAD_BYTES // (1024 * MIB)} GiB (the API's limit for multipart uploads; URL "
            "uploads take less): split or re-encode the video"
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


def resolve_storage_path(file_path: object, field_name: str = "file_path") -> ObjectStoragePath:
    """``file_path`` as a storage path, with the basic checks of :func:`resolve_source` (no I/O)."""
    try:
        return _storage_path(file_path)
    except GistValidationError as err:
        if field_name == "file_path":
            raise
        raise GistValidationError(f"{field_name}: {err}") from None


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
    # Basic hygiene only: any absolute path or any storage URL (with any connection id) still
    # passes. A path that comes from a trigger form needs ``allowed_prefixes`` as well
    # (check_allowed_path), or anyone who may trigger the DAG could upload any file the worker
    # can read to a third party.
    if ".." in PurePosixPath(path.path).parts:
        raise GistValidationError(f"file_path {str(path)[:80]!r} must not contain '..' segments")
    if path.protocol in ("", "file") and not PurePosixPath(path.path).is_absolute():
        raise GistValidationError(f"file_path {str(path)[:80]!r} must be an absolute path")
    return path


def _storage_key(path: ObjectStoragePath) -> tuple[str, str | None, tuple[str, ...]]:
    """(protocol, connection id, path parts) of a path, local paths with their symlinks resolved."""
    protocol = path.protocol or "file"
    text = path.path
    if protocol in ("file", "local"):
        protocol = "file"
        text = os.path.realpath(text)  # a symlink under an allowed folder must not lead out of it
    return protocol, path.conn_id or None, PurePosixPath(text).parts


def check_allowed_path(
    path: ObjectStoragePath, prefixes: Sequence[str | ObjectStoragePath], field_name: str = "file_path"
) -> None:
    """Refuse ``path`` unless it lies strictly under one of ``prefixes``.

    A prefix is an absolute local folder or a storage URL (``s3://conn_id@bucket/videos/``): the
    path must have the same protocol and connection id and start with the prefix's folders
    (whole segments: ``/data/videos-old`` is not under ``/data/videos``). An empty list allows
    nothing. For paths from a trigger form; DAG code that passes its own paths needs none.
    """
    if isinstance(prefixes, str | ObjectStoragePath):  # one prefix, not a list of characters
        prefixes = [prefixes]
    protocol, conn_id, parts = _storage_key(path)
    for prefix in prefixes:
        base = prefix if isinstance(prefix, ObjectStoragePath) else ObjectStoragePath(str(prefix).strip())
        base_protocol, base_conn_id, base_parts = _storage_key(base)
        if (protocol, conn_id) == (base_protocol, base_conn_id) and (
            len(parts) > len(base_parts) and parts[: len(base_parts)] == base_parts
        ):
            return
    allowed = ", ".join(str(prefix) for prefix in prefixes) or "none are configured"
    raise GistValidationError(
        f"{field_name} {str(path)[:80]!r} is not under an allowed location (allowed: {allowed})"
    )


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
