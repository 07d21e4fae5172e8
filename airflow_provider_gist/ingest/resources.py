"""The three remote resources ingest creates, and the wait for an asset to be ready.

Each ``*_resource`` function says how to fetch, find (by ingest key) and create one kind of
resource with a hook; :func:`~airflow_provider_gist.ingest.durable.obtain` does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_gist.errors import GistError, GistNotFoundError, GistTimeoutError
from airflow_provider_gist.ingest.durable import (
    STATE_KEY_ASSET,
    STATE_KEY_INDEXED_ASSET,
    STATE_KEY_INDEXING_TASK,
    Durability,
    Resource,
    alive,
    first_alive,
    ingest_key,
    status_of,
)
from airflow_provider_gist.ingest.sources import INGEST_KEY_FIELD, IndexTarget, UploadOptions, VideoSource

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist import GistHook

DEFAULT_ASSET_TIMEOUT = 1800.0
DEFAULT_POLL_INTERVAL = 10.0


class IngestFailedError(GistError, AirflowFailException):
    """The API reports the asset (or indexed asset, task) as ``failed``.

    Not retried by Airflow: the same file fails the same way, and each retry would upload and
    bill it again. A manual re-run (clear) of the task still creates a fresh one.
    """


def index_id_of(hook: GistHook, target: IndexTarget) -> str:
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


def asset_resource(
    hook: GistHook,
    source: VideoSource,
    user_metadata: Mapping[str, Any],
    durability: Durability,
    upload: UploadOptions | None = None,
    log: Any = None,
) -> Resource:
    # The lookup narrows by filename, so the display name is part of what "the same asset" means.
    identity = f"{source.identity}|filename={source.filename}"
    key = ingest_key("asset", target=None, source=identity, scope=durability.scope)
    metadata = {**user_metadata, INGEST_KEY_FIELD: key}

    def find() -> dict[str, Any] | None:
        # GET /assets has no user_metadata filter: narrow by filename, match the key ourselves.
        return first_alive(
            hook.iter_assets(filename=source.filename),
            lambda a: (a.get("user_metadata") or {}).get(INGEST_KEY_FIELD) == key,
        )

    def create() -> dict[str, Any]:
        if source.video_url is not None:
            return hook.create_asset_from_url(
                source.video_url,
                filename=source.filename,
                user_metadata=metadata,
                enable_thumbnail=options.thumbnail,
            )
        assert source.path is not None
        if options.multipart(source):
            assert source.size is not None
            # Resumes the session an earlier try saved in the state store; the session carries
            # the metadata (ingest key included) to the asset it creates, so find() works too.
            return uploader().upload(
                source.path,
                size=source.size,
                filename=source.filename,
                user_metadata=metadata,
                ingest_key=key,
                enable_thumbnail=options.thumbnail,
            )
        # Opened through ObjectStoragePath, so s3://, gs://, file:// ... all upload the same way.
        with source.path.open("rb") as stream:
            return hook.create_asset_from_file(
                stream, filename=source.filename, user_metadata=metadata, enable_thumbnail=options.thumbnail
            )

    options = upload or UploadOptions()
    made: list[Any] = []

    def uploader() -> Any:
        # One uploader per resource: a second create() in the same try (after a 5xx) resumes
        # its session from memory even when the state store is unavailable. Imported here: it
        # brings requests and threads, which a DAG file's import must not load.
        if not made:
            from airflow_provider_gist.ingest.multipart import MultipartUploader

            made.append(
                MultipartUploader(hook, durability.store, log or hook.log, concurrency=options.concurrency)
            )
        return made[0]

    return Resource(
        "asset",
        STATE_KEY_ASSET,
        key,
        hook.get_asset,
        find,
        create,
        lookup_seconds=hook.settings.create_lookup_seconds,
    )


def indexed_asset_resource(
    hook: GistHook,
    index_id: str,
    asset_id: str,
    user_metadata: Mapping[str, Any],
    durability: Durability,
    wait_ready: Callable[[str], dict[str, Any]],
) -> Resource:
    # The asset is the source of an indexed asset: same asset + same index = same video.
    key = ingest_key("indexed_asset", target=index_id, source=asset_id, scope=durability.scope)

    def find() -> dict[str, Any] | None:
        return first_alive(
            hook.iter_indexed_assets(index_id, user_metadata={INGEST_KEY_FIELD: key}),
            lambda item: item.get("asset_id") in (None, asset_id),
        )

    def create() -> dict[str, Any]:
        wait_ready(asset_id)  # the API indexes ready assets only
        return hook.create_indexed_asset(
            index_id, asset_id, user_metadata={**user_metadata, INGEST_KEY_FIELD: key}
        )

    return Resource(
        "indexed asset",
        STATE_KEY_INDEXED_ASSET,
        key,
        lambda ident: hook.get_indexed_asset(index_id, ident),
        find,
        create,
        also_store=lambda body: {"index_id": index_id},
        lookup_seconds=hook.settings.create_lookup_seconds,
    )


def indexing_task_resource(
    hook: GistHook,
    index_id: str,
    source: VideoSource,
    user_metadata: Mapping[str, Any],
    durability: Durability,
) -> Resource:
    key = ingest_key("indexing_task", target=index_id, source=source.identity, scope=durability.scope)
    metadata = {**user_metadata, INGEST_KEY_FIELD: key}

    def find() -> dict[str, Any] | None:
        # GET /tasks has no user_metadata filter, but the task's video carries our key: find
        # the video, then its task among the index's tasks with the video's file name.
        for video in hook.iter_indexed_assets(index_id, user_metadata={INGEST_KEY_FIELD: key}):
            if not alive(video):
                continue
            name = (video.get("system_metadata") or {}).get("filename")
            video_id = str(video["_id"])
            tasks = hook.iter_tasks(index_id, filename=name or None)
            task = next((t for t in tasks if t.get("video_id") == video_id and alive(t)), None)
            if task is not None:
                return task
        return None

    def create() -> dict[str, Any]:
        if source.video_url is not None:
            return hook.create_task(index_id, video_url=source.video_url, user_metadata=metadata)
        assert source.path is not None
        # Opened through ObjectStoragePath, so s3://, gs://, file:// ... all upload the same way.
        with source.path.open("rb") as stream:
            return hook.create_task(
                index_id, video_file=stream, filename=source.filename, user_metadata=metadata
            )

    return Resource(
        "indexing task",
        STATE_KEY_INDEXING_TASK,
        key,
        hook.get_task,
        find,
        create,
        also_store=lambda body: {"index_id": index_id, "video_id": body.get("video_id")},
        lookup_seconds=hook.settings.create_lookup_seconds,
    )


def wait_for_asset(
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
    asset = first if first is not None and status_of(first) in ("ready", "failed") else None
    while True:
        if asset is None:
            asset = hook.get_asset(asset_id)
        status = status_of(asset)
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
