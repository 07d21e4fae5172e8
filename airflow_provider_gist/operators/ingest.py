"""Ingest operators: get videos into TwelveLabs without uploading (and paying) twice.

The TwelveLabs API has no idempotency keys: a retried ``POST /assets``, ``POST
/indexes/{id}/indexed-assets`` or ``POST /tasks`` creates a second resource and bills again.
Every operator here therefore obtains its remote resource through :func:`_obtain`, which tries,
in this order:

1. the id saved in ``context["task_state_store"]`` by an earlier try of the same task instance
   (reconnect, unless that resource has ``failed``: then a fresh one is created, as
   :class:`airflow.sdk.ResumableJobMixin` does);
2. a lookup by a deterministic *ingest key* that every create call puts in ``user_metadata``
   (``{"gist_ingest_key": key}``): used when ``reuse_existing`` is on, when the state store is
   unavailable, and on every retry (it also covers a create whose response was lost, which the
   state store cannot);
3. the create call, whose id is written to the state store at once, before any waiting.

See docs/ingest.md for the guarantees and their limits.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from airflow.sdk import BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

from airflow_provider_gist.errors import (
    GistError,
    GistNotFoundError,
    GistTimeoutError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import GistHook
from airflow_provider_gist.ids import (
    MAX_FILENAME,
    validate_filename,
    validate_id,
    validate_index_name,
    validate_video_url,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: user_metadata key carrying the ingest key on every resource we create.
INGEST_KEY_FIELD = "gist_ingest_key"
#: task_state_store keys. Renaming one breaks in-flight retries (the old key is already stored).
STATE_KEY_ASSET = "gist_asset"
STATE_KEY_INDEXED_ASSET = "gist_indexed_asset"
STATE_KEY_INDEXING_TASK = "gist_indexing_task"
#: The API's limit for ``method=direct`` asset uploads; bigger files need a URL.
MAX_DIRECT_UPLOAD_BYTES = 200 * 1024 * 1024
INDEX_MODELS = ("pegasus1.2", "marengo3.0")
DEFAULT_INDEX_MODEL = "pegasus1.2"
DEFAULT_ASSET_TIMEOUT = 1800.0
DEFAULT_POLL_INTERVAL = 10.0
#: Creates per try when the server answers 5xx (each retry follows a lookup by ingest key).
CREATE_ATTEMPTS = 3
CREATE_LOOKUP_DELAY = 1.0


class IngestFailedError(GistError, AirflowFailException):
    """The API reports the asset (or indexed asset, task) as ``failed``.

    Not retried by Airflow: the same file fails the same way, and each retry would upload and
    bill it again. A manual re-run (clear) of the task still creates a fresh one.
    """


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


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
            return {"video_url": _public_url(self.video_url)}
        return {"filename": self.filename}


def ingest_key(kind: str, *, target: str | None, source: str, scope: str | None = None) -> str:
    """The deterministic key put in ``user_metadata[gist_ingest_key]`` (20 hex characters).

    ``kind`` is ``asset``, ``indexed_asset`` or ``indexing_task``; ``target`` the index id
    (``None`` for assets); ``source`` the URL/file identity (or the asset id for indexed assets);
    ``scope`` is ``None`` when resources may be reused across DAG runs, else the task instance.
    """
    payload = json.dumps(
        {"v": 1, "kind": kind, "target": target, "source": source, "scope": scope}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _public_url(url: str) -> str:
    """The URL without user:password, query or fragment: signed URLs carry credentials there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _mask_url_secrets(url: str) -> None:
    parts = urlsplit(url)
    for secret in (parts.password, parts.query):
        if secret and len(secret) > 5:  # the masker ignores very short values anyway
            mask_secret(secret)


def _validate_user_metadata(value: object) -> dict[str, Any]:
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


def _validate_wait(asset_timeout: object, poll_interval: object) -> tuple[float, float]:
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
    if index_model not in INDEX_MODELS:
        raise GistValidationError(f"index_model {index_model!r} is not supported: use one of {INDEX_MODELS}")
    return IndexTarget(
        index_id=validate_id(index_id, "index_id") if _given(index_id) else None,
        index_name=validate_index_name(index_name, "index_name") if _given(index_name) else None,
        create_if_missing=bool(create_index_if_missing),
        model=str(index_model),
    )


def _index_id_of(hook: GistHook, target: IndexTarget) -> str:
    if target.index_id is not None:
        return target.index_id
    assert target.index_name is not None
    if target.create_if_missing:
        # ensure_index is idempotent by name (it re-reads after index_name_already_exists).
        return hook.ensure_index(target.index_name, model_name=target.model)
    found = hook.find_index_by_name(target.index_name)
    if not found:
        raise GistNotFoundError(
            f"index_name {target.index_name!r}: no index with that name "
            "(pass create_index_if_missing=True to create it)"
        )
    return str(found["_id"])


# ---------------------------------------------------------------------------------------------
# durability: one helper for every operator
# ---------------------------------------------------------------------------------------------


class _StateStore:
    """``context["task_state_store"]`` that never fails the task: absent or broken means "unavailable"."""

    def __init__(self, context: Context | Mapping[str, Any], log: Any) -> None:
        self._store = context.get("task_state_store")
        self._log = log
        self.available = self._store is not None
        if not self.available:
            log.warning(
                "task_state_store is not in the context: a retry finds its resources by their "
                "ingest key (user_metadata) instead"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.available:
            return None
        try:
            value = self._store.get(key)  # type: ignore[union-attr]
        except Exception as err:
            self._log.warning(
                "task_state_store.get(%r) failed (%s); falling back to the ingest-key lookup",
                key,
                type(err).__name__,
            )
            self.available = False
            return None
        return dict(value) if isinstance(value, Mapping) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        if not self.available:
            return
        try:
            self._store.set(key, value)  # type: ignore[union-attr]
        except Exception as err:
            # Not fatal: a retry always also looks the resource up by its ingest key.
            self._log.warning(
                "task_state_store.set(%r) failed (%s); a retry will find the resource by its ingest key",
                key,
                type(err).__name__,
            )


@dataclass
class _Durability:
    """What one ``execute()`` knows about its retries: the state store, the try, the reuse scope."""

    store: _StateStore
    reuse_existing: bool
    try_number: int
    #: ``None`` when resources may be reused across DAG runs, else the task instance's identity
    scope: str | None

    @classmethod
    def from_context(
        cls, context: Context | Mapping[str, Any], reuse_existing: bool, log: Any
    ) -> _Durability:
        ti = context.get("ti")
        try_number = getattr(ti, "try_number", None)
        scope: str | None = None
        if not reuse_existing:
            if ti is not None and getattr(ti, "run_id", None):
                map_index = getattr(ti, "map_index", -1)
                scope = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{-1 if map_index is None else map_index}"
            else:  # no task instance (direct execute() call): nothing to share with anyone
                scope = f"adhoc-{uuid.uuid4()}"
        return cls(
            store=_StateStore(context, log),
            reuse_existing=reuse_existing,
            try_number=try_number if isinstance(try_number, int) and try_number > 0 else 1,
            scope=scope,
        )

    @property
    def should_look_up(self) -> bool:
        # A retry always looks: the previous try may have created the resource and died before
        # saving its id, or never received the create response at all.
        return self.reuse_existing or not self.store.available or self.try_number > 1


@dataclass
class _Resource:
    """How to reconnect to, find and create one kind of remote resource."""

    kind: str  # for messages: "asset", "indexed asset", "indexing task"
    state_key: str
    ingest_key: str
    fetch: Callable[[str], dict[str, Any]]
    find: Callable[[], dict[str, Any] | None]
    create: Callable[[], dict[str, Any]]
    #: more ids stored next to ``id`` (e.g. index_id, video_id)
    also_store: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda body: {})


def _status(body: Mapping[str, Any]) -> str | None:
    status = body.get("status")
    return status if isinstance(status, str) else None


def _obtain(resource: _Resource, durability: _Durability, log: Any) -> tuple[dict[str, Any], str]:
    """Reconnect to, find, or create ``resource``; return ``(body, how)``.

    ``how`` is ``"reconnected"`` (id from the state store), ``"found"`` (ingest-key lookup) or
    ``"created"``. A created resource's id is in the state store before this returns.
    """
    stored = durability.store.get(resource.state_key)
    if stored and isinstance(stored.get("id"), str):
        if stored.get("ingest_key") != resource.ingest_key:
            # The inputs changed between tries (a different upstream XCom): not the same video.
            log.warning(
                "stored %s %s was created for other inputs; not reusing it", resource.kind, stored["id"]
            )
        else:
            try:
                body = resource.fetch(stored["id"])
            except GistNotFoundError:
                log.warning("stored %s %s no longer exists; creating a new one", resource.kind, stored["id"])
            else:
                if _status(body) != "failed":
                    log.info(
                        "reconnecting to %s %s from an earlier try (status %s); not creating another",
                        resource.kind,
                        stored["id"],
                        _status(body),
                    )
                    return {**body, "_id": stored["id"]}, "reconnected"
                log.warning("stored %s %s has failed; creating a fresh one", resource.kind, stored["id"])

    if durability.should_look_up:
        found = resource.find()
        if found is not None:
            found_id = str(found["_id"])
            log.info(
                "found existing %s %s by ingest key %s (status %s); not creating another",
                resource.kind,
                found_id,
                resource.ingest_key,
                _status(found),
            )
            durability.store.set(
                resource.state_key,
                {"id": found_id, "ingest_key": resource.ingest_key, **resource.also_store(found)},
            )
            return found, "found"

    body, how = _create(resource, log)
    created_id = str(body["_id"])
    # Saved before anything else can fail, so a retry reconnects instead of creating again.
    durability.store.set(
        resource.state_key, {"id": created_id, "ingest_key": resource.ingest_key, **resource.also_store(body)}
    )
    log.info("%s %s %s (ingest key %s)", how, resource.kind, created_id, resource.ingest_key)
    return body, how


def _create(resource: _Resource, log: Any) -> tuple[dict[str, Any], str]:
    """Create ``resource``; after a 5xx answer, look it up by its ingest key before trying again.

    The hook never repeats a create blindly after a 5xx, since the server may have acted on it.
    But a server that *answered* has finished with the request, so the ingest-key lookup tells
    whether it did: found, we use it; not found, we create again, all within this try. A read
    timeout or a reset stays an error for the task retry, whose delay gives a server that may
    still be working time to finish before the lookup.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return resource.create(), "created"
        except GistTransientError as err:
            if err.status is None or attempt == CREATE_ATTEMPTS:
                raise
            log.warning("%s; looking the %s up by its ingest key before trying again", err, resource.kind)
            time.sleep(CREATE_LOOKUP_DELAY)  # let the listing catch up with a create that did happen
            found = resource.find()
            if found is not None:
                return found, "found"
    raise AssertionError("unreachable: the last attempt returns or raises")


def _first_alive(
    items: Iterator[dict[str, Any]], match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The first listed item that matches and has not failed (listings are newest first)."""
    for item in items:
        if match(item) and _status(item) != "failed" and item.get("_id"):
            return item
    return None


# ---------------------------------------------------------------------------------------------
# the three resources
# ---------------------------------------------------------------------------------------------


def _asset_resource(
    hook: GistHook, source: VideoSource, user_metadata: Mapping[str, Any], durability: _Durability
) -> _Resource:
    # The lookup narrows by filename, so the display name is part of what "the same asset" means.
    identity = f"{source.identity}|filename={source.filename}"
    key = ingest_key("asset", target=None, source=identity, scope=durability.scope)
    metadata = {**user_metadata, INGEST_KEY_FIELD: key}

    def find() -> dict[str, Any] | None:
        # GET /assets has no user_metadata filter: narrow by filename, match the key ourselves.
        return _first_alive(
            hook.paginate("assets", {"filename": source.filename}),
            lambda a: (a.get("user_metadata") or {}).get(INGEST_KEY_FIELD) == key,
        )

    def create() -> dict[str, Any]:
        if source.video_url is not None:
            return hook.create_asset_from_url(
                source.video_url, filename=source.filename, user_metadata=metadata
            )
        assert source.path is not None
        # Opened through ObjectStoragePath, so s3://, gs://, file:// ... all upload the same way.
        with source.path.open("rb") as stream:
            return hook.create_asset_from_file(stream, filename=source.filename, user_metadata=metadata)

    return _Resource("asset", STATE_KEY_ASSET, key, hook.get_asset, find, create)


def _indexed_asset_resource(
    hook: GistHook,
    index_id: str,
    asset_id: str,
    user_metadata: Mapping[str, Any],
    durability: _Durability,
    wait_ready: Callable[[str], dict[str, Any]],
) -> _Resource:
    # The asset is the source of an indexed asset: same asset + same index = same video.
    key = ingest_key("indexed_asset", target=index_id, source=asset_id, scope=durability.scope)

    def find() -> dict[str, Any] | None:
        return _first_alive(
            hook.iter_indexed_assets(index_id, user_metadata={INGEST_KEY_FIELD: key}),
            lambda item: item.get("asset_id") in (None, asset_id),
        )

    def create() -> dict[str, Any]:
        wait_ready(asset_id)  # the API indexes ready assets only
        return hook.create_indexed_asset(
            index_id, asset_id, user_metadata={**user_metadata, INGEST_KEY_FIELD: key}
        )

    return _Resource(
        "indexed asset",
        STATE_KEY_INDEXED_ASSET,
        key,
        lambda ident: hook.get_indexed_asset(index_id, ident),
        find,
        create,
        also_store=lambda body: {"index_id": index_id},
    )


def _indexing_task_resource(
    hook: GistHook,
    index_id: str,
    source: VideoSource,
    user_metadata: Mapping[str, Any],
    durability: _Durability,
) -> _Resource:
    key = ingest_key("indexing_task", target=index_id, source=source.identity, scope=durability.scope)
    metadata = {**user_metadata, INGEST_KEY_FIELD: key}

    def find() -> dict[str, Any] | None:
        # GET /tasks has no user_metadata filter, but the task's video carries our key: find
        # the video, then its task among the index's tasks with the video's file name.
        for video in hook.iter_indexed_assets(index_id, user_metadata={INGEST_KEY_FIELD: key}):
            if _status(video) == "failed" or not video.get("_id"):
                continue
            name = (video.get("system_metadata") or {}).get("filename")
            params: dict[str, Any] = {"index_id": index_id, **({"filename": name} if name else {})}
            video_id = str(video["_id"])
            task = _first_alive(hook.paginate("tasks", params), _has_video(video_id))
            if task is not None:
                return task
        return None

    def create() -> dict[str, Any]:
        if source.video_url is not None:
            return hook.create_task(index_id, video_url=source.video_url, user_metadata=metadata)
        assert source.path is not None
        # GistHook.create_task takes local paths only; post the multipart form ourselves so
        # any ObjectStoragePath (s3://, gs://...) streams the same way.
        fields = {"index_id": (None, index_id), "user_metadata": (None, json.dumps(metadata))}
        with source.path.open("rb") as stream:
            return hook.request("POST", "tasks", files={**fields, "video_file": (source.filename, stream)})

    return _Resource(
        "indexing task",
        STATE_KEY_INDEXING_TASK,
        key,
        hook.get_task,
        find,
        create,
        also_store=lambda body: {"index_id": index_id, "video_id": body.get("video_id")},
    )


def _has_video(video_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda task: task.get("video_id") == video_id


def _wait_for_asset(
    hook: GistHook,
    asset_id: str,
    *,
    timeout: float,
    poll_interval: float,
    log: Any,
    first: dict | None = None,
) -> dict[str, Any]:
    """Poll ``GET /assets/{id}`` until ``ready`` (bounded); raise on ``failed`` or timeout."""
    deadline = time.monotonic() + timeout
    asset = first if first is not None and _status(first) in ("ready", "failed") else None
    while True:
        if asset is None:
            asset = hook.get_asset(asset_id)
        status = _status(asset)
        if status == "ready":
            return asset
        if status == "failed":
            message = ((asset.get("error") or {}).get("message")) or "no reason given"
            raise IngestFailedError(f"asset {asset_id} failed to process: {message}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GistTimeoutError(
                f"asset {asset_id} is still {status!r} after {timeout:g}s; a retry of this task "
                "resumes waiting on the same asset (nothing is uploaded again)"
            )
        log.info("asset %s is %s; checking again in %.1fs", asset_id, status, min(poll_interval, remaining))
        time.sleep(min(poll_interval, remaining))
        asset = None


# ---------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------


class _IngestOperator(BaseOperator):
    """Shared plumbing: the hook, durability bookkeeping and the asset wait."""

    ui_color = "#e6f4ea"

    def _hook(self) -> GistHook:
        return GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)  # type: ignore[attr-defined]

    def _durability(self, context: Context) -> _Durability:
        return _Durability.from_context(context, bool(self.reuse_existing), self.log)  # type: ignore[attr-defined]

    def _obtain_ready_asset(
        self,
        hook: GistHook,
        source: VideoSource,
        user_metadata: Mapping[str, Any],
        durability: _Durability,
        timeout: float,
        poll_interval: float,
    ) -> dict[str, Any]:
        asset, _ = _obtain(_asset_resource(hook, source, user_metadata, durability), durability, self.log)
        asset_id = validate_id(str(asset["_id"]), "asset_id")
        return _wait_for_asset(
            hook, asset_id, timeout=timeout, poll_interval=poll_interval, log=self.log, first=asset
        )


class CreateAssetOperator(_IngestOperator):
    """Upload one video as a TwelveLabs asset and wait (bounded) until it is ``ready``.

    Give ``video_url`` (http/https) or ``file_path`` (a local absolute path, an
    ``ObjectStoragePath`` or an fsspec URL such as ``s3://conn_id@bucket/key``; streamed as the
    upload). A retry reconnects to the asset created by the earlier try (task state store, then
    the ingest key in ``user_metadata``); with ``reuse_existing`` a later DAG run reuses the
    asset made from the same URL/file. Fails with the API's ``error.message`` when processing
    fails, and with :class:`GistTimeoutError` after ``asset_timeout`` seconds (a retry resumes).

    Returns ``{"asset_id", "filename", "status"}``.

    :param video_url: public direct link to the video (templated).
    :param file_path: file to upload instead (templated).
    :param filename: display name (templated); default: the URL's or file's last segment.
    :param user_metadata: extra metadata for the asset (templated).
    :param reuse_existing: reuse an asset a previous DAG run made from the same source (default).
    :param asset_timeout: seconds to wait for ``ready``.
    :param poll_interval: seconds between status checks.
    :param twelvelabs_conn_id: connection id (templated).
    """

    template_fields: Sequence[str] = (
        "video_url",
        "file_path",
        "filename",
        "user_metadata",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"user_metadata": "json"}

    def __init__(
        self,
        *,
        video_url: str | None = None,
        file_path: str | ObjectStoragePath | None = None,
        filename: str | None = None,
        user_metadata: dict[str, Any] | None = None,
        reuse_existing: bool = True,
        asset_timeout: float = DEFAULT_ASSET_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.file_path = file_path
        self.filename = filename
        self.user_metadata = user_metadata
        self.reuse_existing = reuse_existing
        self.asset_timeout = asset_timeout
        self.poll_interval = poll_interval
        self.twelvelabs_conn_id = twelvelabs_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        source = resolve_source(self.video_url, self.file_path, self.filename)
        metadata = _validate_user_metadata(self.user_metadata)
        timeout, interval = _validate_wait(self.asset_timeout, self.poll_interval)
        if source.video_url:
            _mask_url_secrets(source.video_url)
        durability = self._durability(context)
        hook = self._hook()
        try:
            asset = self._obtain_ready_asset(hook, source, metadata, durability, timeout, interval)
        finally:
            hook.close()
        return {
            "asset_id": str(asset["_id"]),
            "filename": str(asset.get("filename") or source.filename),
            "status": str(asset.get("status")),
        }


class IndexAssetOperator(_IngestOperator):
    """Index one asset into an index; return at once, without waiting for indexing.

    The index is ``index_id``, or the index named ``index_name`` (created with ``index_model``
    when ``create_index_if_missing``). If the asset is still processing, waits (bounded) until it
    is ready, since only ready assets can be indexed. Wait for indexing with the
    ``IndexingCompleteSensor`` (deferrable). A retry reconnects to the indexed asset the earlier
    try created; with ``reuse_existing`` the same asset in the same index is never indexed twice.

    Returns ``{"index_id", "indexed_asset_id", "asset_id"}``.
    """

    template_fields: Sequence[str] = (
        "asset_id",
        "index_id",
        "index_name",
        "user_metadata",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"user_metadata": "json"}

    def __init__(
        self,
        *,
        asset_id: str,
        index_id: str | None = None,
        index_name: str | None = None,
        create_index_if_missing: bool = False,
        index_model: str = DEFAULT_INDEX_MODEL,
        user_metadata: dict[str, Any] | None = None,
        reuse_existing: bool = True,
        asset_timeout: float = DEFAULT_ASSET_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id
        self.index_id = index_id
        self.index_name = index_name
        self.create_index_if_missing = create_index_if_missing
        self.index_model = index_model
        self.user_metadata = user_metadata
        self.reuse_existing = reuse_existing
        self.asset_timeout = asset_timeout
        self.poll_interval = poll_interval
        self.twelvelabs_conn_id = twelvelabs_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        asset_id = validate_id(self.asset_id, "asset_id")
        target = resolve_index_target(
            self.index_id, self.index_name, self.create_index_if_missing, self.index_model
        )
        metadata = _validate_user_metadata(self.user_metadata)
        timeout, interval = _validate_wait(self.asset_timeout, self.poll_interval)
        durability = self._durability(context)
        hook = self._hook()
        try:
            index_id = _index_id_of(hook, target)

            def wait_ready(ident: str) -> dict[str, Any]:
                return _wait_for_asset(hook, ident, timeout=timeout, poll_interval=interval, log=self.log)

            resource = _indexed_asset_resource(hook, index_id, asset_id, metadata, durability, wait_ready)
            indexed, _ = _obtain(resource, durability, self.log)
        finally:
            hook.close()
        return {"index_id": index_id, "indexed_asset_id": str(indexed["_id"]), "asset_id": asset_id}


class IngestVideoOperator(_IngestOperator):
    """Upload a video, wait until the asset is ready, and index it: one task per video.

    The convenience the example DAG maps over URLs. Same inputs as :class:`CreateAssetOperator`
    plus the index arguments of :class:`IndexAssetOperator`; the index is resolved before
    anything is uploaded. Both create calls are durable (state store, then ingest key) and
    independent, so a crash after the upload resumes at the wait and never uploads again.
    Does not wait for indexing (use the sensor).

    Returns ``{"asset_id", "index_id", "indexed_asset_id"}`` plus ``"video_url"`` (without
    credentials or query string) or ``"filename"``.
    """

    template_fields: Sequence[str] = (
        "video_url",
        "file_path",
        "filename",
        "index_id",
        "index_name",
        "user_metadata",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"user_metadata": "json"}

    def __init__(
        self,
        *,
        video_url: str | None = None,
        file_path: str | ObjectStoragePath | None = None,
        filename: str | None = None,
        index_id: str | None = None,
        index_name: str | None = None,
        create_index_if_missing: bool = False,
        index_model: str = DEFAULT_INDEX_MODEL,
        user_metadata: dict[str, Any] | None = None,
        reuse_existing: bool = True,
        asset_timeout: float = DEFAULT_ASSET_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.file_path = file_path
        self.filename = filename
        self.index_id = index_id
        self.index_name = index_name
        self.create_index_if_missing = create_index_if_missing
        self.index_model = index_model
        self.user_metadata = user_metadata
        self.reuse_existing = reuse_existing
        self.asset_timeout = asset_timeout
        self.poll_interval = poll_interval
        self.twelvelabs_conn_id = twelvelabs_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        source = resolve_source(self.video_url, self.file_path, self.filename)
        target = resolve_index_target(
            self.index_id, self.index_name, self.create_index_if_missing, self.index_model
        )
        metadata = _validate_user_metadata(self.user_metadata)
        timeout, interval = _validate_wait(self.asset_timeout, self.poll_interval)
        if source.video_url:
            _mask_url_secrets(source.video_url)
        durability = self._durability(context)
        hook = self._hook()
        try:
            # Resolve the index first: a missing index must fail before anything is uploaded.
            index_id = _index_id_of(hook, target)
            asset = self._obtain_ready_asset(hook, source, metadata, durability, timeout, interval)
            asset_id = str(asset["_id"])

            def wait_ready(ident: str) -> dict[str, Any]:
                return _wait_for_asset(hook, ident, timeout=timeout, poll_interval=interval, log=self.log)

            resource = _indexed_asset_resource(hook, index_id, asset_id, metadata, durability, wait_ready)
            indexed, _ = _obtain(resource, durability, self.log)
        finally:
            hook.close()
        return {
            "asset_id": asset_id,
            "index_id": index_id,
            "indexed_asset_id": str(indexed["_id"]),
            **source.result_fields(),
        }


class CreateIndexingTaskOperator(_IngestOperator):
    """Legacy one-shot upload + index (``POST /tasks``); return at once, without waiting.

    ``POST /tasks`` is slated for removal by TwelveLabs: prefer :class:`IngestVideoOperator`.
    Same source and index arguments; the same durability (state store, then the ingest key,
    which the task's video carries in its ``user_metadata``).

    Returns ``{"indexing_task_id", "video_id", "index_id"}``.
    """

    template_fields: Sequence[str] = (
        "video_url",
        "file_path",
        "filename",
        "index_id",
        "index_name",
        "user_metadata",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"user_metadata": "json"}

    def __init__(
        self,
        *,
        video_url: str | None = None,
        file_path: str | ObjectStoragePath | None = None,
        filename: str | None = None,
        index_id: str | None = None,
        index_name: str | None = None,
        create_index_if_missing: bool = False,
        index_model: str = DEFAULT_INDEX_MODEL,
        user_metadata: dict[str, Any] | None = None,
        reuse_existing: bool = True,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.file_path = file_path
        self.filename = filename
        self.index_id = index_id
        self.index_name = index_name
        self.create_index_if_missing = create_index_if_missing
        self.index_model = index_model
        self.user_metadata = user_metadata
        self.reuse_existing = reuse_existing
        self.twelvelabs_conn_id = twelvelabs_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        source = resolve_source(self.video_url, self.file_path, self.filename)
        target = resolve_index_target(
            self.index_id, self.index_name, self.create_index_if_missing, self.index_model
        )
        metadata = _validate_user_metadata(self.user_metadata)
        if source.video_url:
            _mask_url_secrets(source.video_url)
        durability = self._durability(context)
        hook = self._hook()
        try:
            index_id = _index_id_of(hook, target)
            resource = _indexing_task_resource(hook, index_id, source, metadata, durability)
            task, _ = _obtain(resource, durability, self.log)
        finally:
            hook.close()
        return {
            "indexing_task_id": str(task["_id"]),
            "video_id": str(task.get("video_id") or ""),
            "index_id": index_id,
        }
