"""Ingest operators: get videos into TwelveLabs without uploading (and paying) twice.

Thin Airflow operators over the ingest engine in :mod:`airflow_provider_gist.ingest`: each
validates its arguments (before any HTTP call), then obtains its remote resources durably
(:func:`~airflow_provider_gist.ingest.durable.obtain`: state store, then ingest key, then
create). See docs/ingest.md for the guarantees and their limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.ids import validate_id
from airflow_provider_gist.ingest.durable import (
    STATE_KEY_ASSET,
    STATE_KEY_INDEXED_ASSET,
    STATE_KEY_INDEXING_TASK,
    Durability,
    ingest_key,
    obtain,
)
from airflow_provider_gist.ingest.resources import (
    DEFAULT_ASSET_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    IngestFailedError,
    asset_resource,
    index_id_of,
    indexed_asset_resource,
    indexing_task_resource,
    wait_for_asset,
)
from airflow_provider_gist.ingest.sources import (
    DEFAULT_INDEX_MODEL,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_UPLOAD_CONCURRENCY,
    INGEST_KEY_FIELD,
    VideoSource,
    mask_url_secrets,
    resolve_index_target,
    resolve_source,
    source_label,
    validate_upload_options,
    validate_user_metadata,
    validate_wait,
)
from airflow_provider_gist.links import (
    TwelveLabsIndexLink,
    TwelveLabsVideoLink,
    persist,
    playground_url_of,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperatorLink, Context

    from airflow_provider_gist.hooks.gist import GistHook


class _IngestOperator(BaseOperator):
    """What every ingest operator shares: metadata, reuse, the asset wait, the connection, the hook."""

    template_fields_renderers = {"user_metadata": "json"}
    ui_color = "#e6f4ea"
    operator_extra_links: tuple[BaseOperatorLink, ...] = (TwelveLabsIndexLink(), TwelveLabsVideoLink())

    def __init__(
        self,
        *,
        user_metadata: dict[str, Any] | None = None,
        reuse_existing: bool = True,
        asset_timeout: float = DEFAULT_ASSET_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.user_metadata = user_metadata
        self.reuse_existing = reuse_existing
        self.asset_timeout = asset_timeout
        self.poll_interval = poll_interval
        self.twelvelabs_conn_id = twelvelabs_conn_id

    @cached_property
    def hook(self) -> GistHook:
        from airflow_provider_gist.hooks.gist import GistHook

        return GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        # Everything is validated first: a bad argument fails before any HTTP call.
        inputs = self.validate()
        durability = Durability.from_context(context, bool(self.reuse_existing), self.log)
        try:
            result = self.ingest(inputs, durability)
            # For get_openlineage_facets_on_complete, which runs on this instance after execute.
            self._lineage_done = (inputs, result)
            # The ids the extra links open (a legacy task's video is a video of its index).
            persist(
                context,
                playground_url_of(self.hook),
                index_id=result.get("index_id"),
                asset_id=result.get("asset_id"),
                indexed_asset_id=result.get("indexed_asset_id") or result.get("video_id"),
            )
            return result
        finally:
            self.hook.close()

    def on_kill(self) -> None:
        self.hook.close()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the video's source (or the asset indexed); outputs: the asset and indexed asset."""
        from airflow_provider_gist.lineage import api_base_of, operator_lineage, source_dataset, video_dataset

        done: Any = getattr(self, "_lineage_done", None) or ({}, {})
        inputs, result = done
        api = api_base_of(self.twelvelabs_conn_id)
        asset = result.get("asset_id") or result.get("video_id")
        made_asset = "source" in inputs  # the asset came from a source in this task
        indexed = result.get("indexed_asset_id")
        source = source_dataset(inputs["source"]) if made_asset else None
        return operator_lineage(
            [source if made_asset else video_dataset(api, asset) if asset else None],
            [
                video_dataset(api, asset) if made_asset and asset else None,
                video_dataset(api, f"indexes/{result['index_id']}/{indexed}") if indexed else None,
            ],
        )

    def validate(self) -> dict[str, Any]:
        """Check the arguments (override to add more); return what :meth:`ingest` needs."""
        timeout, interval = validate_wait(self.asset_timeout, self.poll_interval)
        return {
            "metadata": validate_user_metadata(self.user_metadata),
            "timeout": timeout,
            "interval": interval,
        }

    def ingest(self, inputs: dict[str, Any], durability: Durability) -> dict[str, Any]:
        """Obtain the remote resources and return the XCom dict (override in each operator)."""
        raise NotImplementedError

    def _wait_ready(self, inputs: dict[str, Any]) -> Any:
        return lambda ident: wait_for_asset(
            self.hook, ident, timeout=inputs["timeout"], poll_interval=inputs["interval"], log=self.log
        )

    def _ready_asset(
        self, source: VideoSource, inputs: dict[str, Any], durability: Durability
    ) -> dict[str, Any]:
        resource = asset_resource(
            self.hook, source, inputs["metadata"], durability, inputs.get("upload"), self.log
        )
        asset, _ = obtain(resource, durability, self.log)
        asset_id = validate_id(str(asset["_id"]), "asset_id")
        return wait_for_asset(
            self.hook,
            asset_id,
            timeout=inputs["timeout"],
            poll_interval=inputs["interval"],
            log=self.log,
            first=asset,
        )


class _FromSource(_IngestOperator):
    """Arguments of a video source: ``video_url`` or ``file_path``, and a display ``filename``.

    Files over ``multipart_threshold`` bytes (default 100 MiB) go up in parts, up to 10 GiB,
    with ``upload_concurrency`` chunk uploads at once (default 4).

    ``allowed_path_prefixes`` (DAG code only, not templated): when set, ``file_path`` must lie
    under one of these folders or storage URLs; set it whenever the path can come from a
    trigger form or run conf (docs/ingest.md).

    ``thumbnail`` (default ``True``, where the API's default is off): the upload asks the
    platform for thumbnail images, which the gist view shows on each video's card.
    """

    #: whether this operator's upload can be a multipart one (``POST /tasks`` cannot)
    multipart_uploads = True

    def __init__(
        self,
        *,
        video_url: str | None = None,
        file_path: str | ObjectStoragePath | None = None,
        filename: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
        allowed_path_prefixes: Sequence[str | ObjectStoragePath] | None = None,
        thumbnail: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.thumbnail = thumbnail
        self.video_url = video_url
        self.file_path = file_path
        self.filename = filename
        self.multipart_threshold = multipart_threshold
        self.upload_concurrency = upload_concurrency
        # Not templated on purpose: the allow-list must come from DAG code, never from a run's conf.
        self.allowed_path_prefixes = allowed_path_prefixes

    @property
    def source_label(self) -> str:
        """The source without secrets (public URL or file name): for ``map_index_template``."""
        return source_label(self.video_url, self.file_path)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Airflow stores the rendered fields right after this (redacted by the secrets masker),
        # before execute() runs: a signed URL's query must be registered by then.
        if isinstance(self.video_url, str):
            mask_url_secrets(self.video_url)

    def validate(self) -> dict[str, Any]:
        upload = validate_upload_options(self.multipart_threshold, self.upload_concurrency, self.thumbnail)
        source = resolve_source(
            self.video_url,
            self.file_path,
            self.filename,
            multipart=self.multipart_uploads,
            allowed_prefixes=self.allowed_path_prefixes,
        )
        if source.video_url:
            mask_url_secrets(source.video_url)
        return {**super().validate(), "source": source, "upload": upload}


class _IntoIndex(_IngestOperator):
    """Arguments of a target index: ``index_id``, or ``index_name`` (created on demand if allowed)."""

    def __init__(
        self,
        *,
        index_id: str | None = None,
        index_name: str | None = None,
        create_index_if_missing: bool = False,
        index_model: str = DEFAULT_INDEX_MODEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.index_id = index_id
        self.index_name = index_name
        self.create_index_if_missing = create_index_if_missing
        self.index_model = index_model

    def validate(self) -> dict[str, Any]:
        target = resolve_index_target(
            self.index_id, self.index_name, self.create_index_if_missing, self.index_model
        )
        return {**super().validate(), "target": target}


class CreateAssetOperator(_FromSource):
    """Upload one video as a TwelveLabs asset and wait (bounded) until it is ``ready``.

    Give ``video_url`` (http/https) or ``file_path`` (a local absolute path, an
    ``ObjectStoragePath`` or an fsspec URL such as ``s3://conn_id@bucket/key``; read from its
    storage as it is uploaded, never copied locally). A retry reconnects to the asset created by
    the earlier try (task state store, then the ingest key in ``user_metadata``), or resumes its
    multipart upload; with ``reuse_existing`` a later DAG run reuses the asset made from the
    same URL/file. Fails with the API's ``error.message`` when processing
    fails, and with :class:`GistTimeoutError` after ``asset_timeout`` seconds (a retry resumes).

    Returns ``{"asset_id", "filename", "status"}``. Its extra link opens the asset in the web app.

    :param video_url: public direct link to the video (templated).
    :param file_path: file to upload instead (templated): up to 10 GiB; above
        ``multipart_threshold`` it is uploaded in parts, resumably (a retry sends only the parts
        the API has not received).
    :param filename: display name (templated); default: the URL's or file's last segment.
    :param multipart_threshold: bytes above which a file goes up in parts (default 100 MiB; at
        most the API's 200 MB direct-upload limit).
    :param upload_concurrency: chunk uploads in flight at once (1-16, default 4).
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
    operator_extra_links = (TwelveLabsVideoLink(),)  # no index yet

    def ingest(self, inputs: dict[str, Any], durability: Durability) -> dict[str, Any]:
        source: VideoSource = inputs["source"]
        asset = self._ready_asset(source, inputs, durability)
        return {
            "asset_id": str(asset["_id"]),
            "filename": str(asset.get("filename") or source.filename),
            "status": str(asset.get("status")),
        }


class IndexAssetOperator(_IntoIndex):
    """Index one asset into an index; return at once, without waiting for indexing.

    The index is ``index_id``, or the index named ``index_name`` (created with ``index_model``,
    default ``marengo3.0``, when ``create_index_if_missing``). If the asset is still processing,
    waits (bounded) until it is ready, since only ready assets can be indexed. Wait for indexing
    with the ``IndexingCompleteSensor`` (deferrable). A retry reconnects to the indexed asset the
    earlier try created; with ``reuse_existing`` the same asset in the same index is never
    indexed twice.

    Returns ``{"index_id", "indexed_asset_id", "asset_id"}``.
    """

    template_fields: Sequence[str] = (
        "asset_id",
        "index_id",
        "index_name",
        "user_metadata",
        "twelvelabs_conn_id",
    )

    def __init__(self, *, asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id

    def validate(self) -> dict[str, Any]:
        return {**super().validate(), "asset_id": validate_id(self.asset_id, "asset_id")}

    def ingest(self, inputs: dict[str, Any], durability: Durability) -> dict[str, Any]:
        index_id = index_id_of(self.hook, inputs["target"])
        resource = indexed_asset_resource(
            self.hook, index_id, inputs["asset_id"], inputs["metadata"], durability, self._wait_ready(inputs)
        )
        indexed, _ = obtain(resource, durability, self.log)
        return {"index_id": index_id, "indexed_asset_id": str(indexed["_id"]), "asset_id": inputs["asset_id"]}


class IngestVideoOperator(_FromSource, _IntoIndex):
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

    def ingest(self, inputs: dict[str, Any], durability: Durability) -> dict[str, Any]:
        # Resolve the index first: a missing index must fail before anything is uploaded.
        index_id = index_id_of(self.hook, inputs["target"])
        source: VideoSource = inputs["source"]
        asset_id = str(self._ready_asset(source, inputs, durability)["_id"])
        resource = indexed_asset_resource(
            self.hook, index_id, asset_id, inputs["metadata"], durability, self._wait_ready(inputs)
        )
        indexed, _ = obtain(resource, durability, self.log)
        return {
            "asset_id": asset_id,
            "index_id": index_id,
            "indexed_asset_id": str(indexed["_id"]),
            **source.result_fields(),
        }


class CreateIndexingTaskOperator(_FromSource, _IntoIndex):
    """Legacy one-shot upload + index (``POST /tasks``); return at once, without waiting.

    ``POST /tasks`` is slated for removal by TwelveLabs: prefer :class:`IngestVideoOperator`.
    Same source and index arguments; the same durability (state store, then the ingest key,
    which the task's video carries in its ``user_metadata``).

    Returns ``{"indexing_task_id", "video_id", "index_id"}``.
    """

    template_fields: Sequence[str] = IngestVideoOperator.template_fields
    #: ``POST /tasks`` takes the file in one request: 200 MB at most, never in parts.
    multipart_uploads = False

    def ingest(self, inputs: dict[str, Any], durability: Durability) -> dict[str, Any]:
        index_id = index_id_of(self.hook, inputs["target"])
        resource = indexing_task_resource(
            self.hook, index_id, inputs["source"], inputs["metadata"], durability
        )
        task, _ = obtain(resource, durability, self.log)
        return {
            "indexing_task_id": str(task["_id"]),
            "video_id": str(task.get("video_id") or ""),
            "index_id": index_id,
        }


__all__ = [
    "INGEST_KEY_FIELD",
    "STATE_KEY_ASSET",
    "STATE_KEY_INDEXED_ASSET",
    "STATE_KEY_INDEXING_TASK",
    "CreateAssetOperator",
    "CreateIndexingTaskOperator",
    "IndexAssetOperator",
    "IngestFailedError",
    "IngestVideoOperator",
    "ingest_key",
]
