"""The TwelveLabs API's calls: paths, bodies and listings, written once against ``request()``.

:class:`TwelveLabsApi` is mixed into :class:`~airflow_provider_gist.hooks.gist.GistHook`, which
supplies the transport (``request``) and the connection's settings. Every id that goes into a
path is validated first (:mod:`airflow_provider_gist.ids`), so a malformed one fails before any
HTTP call, naming the field. The path builders at the bottom are shared with the async hook.

Override to change a call: every method here is a thin mapping of one API operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_gist.analysis import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    analyze_body,
    prepare_gist_request,
)
from airflow_provider_gist.client.retry import Replay
from airflow_provider_gist.errors import (
    GistApiError,
    GistModelOutputError,
    GistNotFoundError,
    GistValidationError,
)
from airflow_provider_gist.ids import validate_id, validate_index_name, validate_video_url

if TYPE_CHECKING:
    from airflow_provider_gist.client.settings import ApiSettings
    from airflow_provider_gist.model import Gist

#: The API caps page_limit at 50; fewer, larger pages mean fewer calls against the rate limit.
MAX_PAGE_LIMIT = 50
#: A ceiling on pages fetched by one listing, so a misbehaving server cannot loop us forever.
MAX_PAGES = 10_000
#: The index model videos are indexed with when a DAG creates an index (an index is for search:
#: analysis takes an asset id and needs no index).
DEFAULT_INDEX_MODEL = "marengo3.0"
DEFAULT_INDEX_MODEL_OPTIONS = ("visual", "audio")


class TwelveLabsApi:
    """The API's operations. A subclass provides ``request``, ``settings`` and ``log``."""

    settings: ApiSettings
    log: Any  # the hook's logger
    #: ``request(method, path, *, params, json_body, files, replay, read_timeout)``: send one call
    #: (path relative to the API version) with retries; return the decoded JSON.
    request: Callable[..., Any]

    # ------------------------------------------------------------------ listings

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, page_limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a page-numbered listing, one page at a time.

        Stops at ``page_info.total_page``, or at an empty page for servers that do not send it.
        """
        base = dict(params or {})
        page = 1
        while page <= MAX_PAGES:
            body = self.request("GET", path, params=query({**base, "page": page, "page_limit": page_limit}))
            items = (body or {}).get("data") or []
            yield from items
            total = ((body or {}).get("page_info") or {}).get("total_page")
            if not items or (isinstance(total, int) and page >= total):
                return
            page += 1

    # ------------------------------------------------------------------ indexes

    def create_index(
        self,
        index_name: str,
        *,
        model_name: str = DEFAULT_INDEX_MODEL,
        model_options: tuple[str, ...] = DEFAULT_INDEX_MODEL_OPTIONS,
    ) -> str:
        """Create an index with one model; return its id."""
        name = validate_index_name(index_name)
        body = self.request(
            "POST",
            "indexes",
            json_body={
                "index_name": name,
                "models": [{"model_name": model_name, "model_options": list(model_options)}],
            },
        )
        return str(body["_id"])

    def get_index(self, index_id: str) -> dict[str, Any]:
        return self.request("GET", f"indexes/{validate_id(index_id, 'index_id')}")

    def list_indexes(self, *, index_name: str | None = None) -> list[dict[str, Any]]:
        """Every index (all pages), optionally filtered by name."""
        params = {"index_name": validate_index_name(index_name)} if index_name else {}
        return list(self.paginate("indexes", params))

    def find_index_by_name(self, index_name: str) -> dict[str, Any] | None:
        """The index whose name is exactly ``index_name``, or ``None``."""
        name = validate_index_name(index_name)
        return next((ix for ix in self.list_indexes(index_name=name) if ix.get("index_name") == name), None)

    def resolve_index(self, index: str) -> str:
        """The id of ``index``: a 24-hex id is checked with one GET, anything else is a name."""
        if not isinstance(index, str) or not index.strip():
            raise GistValidationError("index must be an index id or name")
        index = index.strip()
        # TwelveLabs ids are 24 hex characters; anything else is taken as an index name.
        if len(index) == 24 and all(ch in "0123456789abcdefABCDEF" for ch in index):
            return str(self.get_index(index)["_id"])
        found = self.find_index_by_name(validate_index_name(index, "index"))
        if found is None:
            raise GistNotFoundError(f"there is no index named {index!r}")
        return str(found["_id"])

    def ensure_index(self, index_name: str, *, model_name: str = DEFAULT_INDEX_MODEL) -> str:
        """Id of the index named ``index_name``, creating it (with ``model_name``) if missing."""
        found = self.find_index_by_name(index_name)
        if found:
            return str(found["_id"])
        try:
            return self.create_index(index_name, model_name=model_name)
        except GistApiError as err:
            if err.code == "index_name_already_exists":  # created concurrently by another task
                found = self.find_index_by_name(index_name)
                if found:
                    return str(found["_id"])
            raise

    # ------------------------------------------------------------------ assets

    def create_asset_from_url(
        self,
        url: str,
        *,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
        enable_thumbnail: bool = False,
    ) -> dict[str, Any]:
        """``POST /assets`` with ``method=url``; returns the asset (status ``processing`` or ``ready``).

        ``enable_thumbnail``: the platform makes thumbnail images (``thumbnail`` on the asset).
        """
        fields: dict[str, Any] = {"method": "url", "url": validate_video_url(url)}
        if enable_thumbnail:
            fields["enable_thumbnail"] = "true"
        if filename:
            fields["filename"] = filename
        if user_metadata:
            fields["user_metadata"] = json.dumps(dict(user_metadata))
        return self.request("POST", "assets", files=multipart(fields))

    def create_asset_from_file(
        self,
        file: str | Path | IO[bytes],
        *,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
        enable_thumbnail: bool = False,
    ) -> dict[str, Any]:
        """``POST /assets`` with ``method=direct`` uploading a local file or an open binary stream."""
        fields: dict[str, Any] = {"method": "direct"}
        if enable_thumbnail:
            fields["enable_thumbnail"] = "true"
        if user_metadata:
            fields["user_metadata"] = json.dumps(dict(user_metadata))
        if isinstance(file, str | Path):
            path = Path(file)
            if not path.is_file():
                raise GistValidationError(f"file {str(path)!r} does not exist or is not a file")
            name = filename or path.name
            fields["filename"] = name
            with path.open("rb") as handle:
                return self.request("POST", "assets", files={**multipart(fields), "file": (name, handle)})
        name = filename or Path(getattr(file, "name", "upload.mp4")).name
        fields["filename"] = name
        return self.request("POST", "assets", files={**multipart(fields), "file": (name, file)})

    def get_asset(self, asset_id: str) -> dict[str, Any]:
        return self.request("GET", asset_path(asset_id))

    def iter_assets(self, *, filename: str | None = None) -> Iterator[dict[str, Any]]:
        """Every asset (all pages, newest first), optionally those whose filename contains ``filename``."""
        return self.paginate("assets", {"filename": filename} if filename else {})

    def list_assets(self, *, filename: str | None = None) -> list[dict[str, Any]]:
        return list(self.iter_assets(filename=filename))

    def update_asset_user_metadata(self, asset_id: str, user_metadata: Mapping[str, Any]) -> None:
        """``PATCH /assets/{id}/user-metadata``: merge keys into the asset's metadata (200, no body).

        A merge of the same values leaves the same metadata, so it is sent again after any failure.
        """
        self.request(
            "PATCH",
            f"{asset_path(asset_id)}/user-metadata",
            json_body={"user_metadata": dict(user_metadata)},
            replay=Replay.ALWAYS,
        )

    # ------------------------------------------------------------------ multipart uploads

    def create_multipart_upload(
        self,
        filename: str,
        total_size: int,
        *,
        file_type: str = "video",
        user_metadata: Mapping[str, Any] | None = None,
        enable_thumbnail: bool = False,
    ) -> dict[str, Any]:
        """``POST /assets/multipart-uploads``: a session for a file of ``total_size`` bytes.

        Returns ``{upload_id, asset_id, upload_urls, upload_headers, chunk_size, total_chunks,
        expires_at}``; the server chooses ``chunk_size``. A create, so replayed only when the
        server surely did not act: a second session would be an orphan (no asset exists until a
        session's chunks are all reported, and it expires after 24 hours), harmless but useless.
        """
        body: dict[str, Any] = {"filename": filename, "type": file_type, "total_size": int(total_size)}
        if enable_thumbnail:
            body["enable_thumbnail"] = True
        if user_metadata:
            body["user_metadata"] = dict(user_metadata)
        return self.request("POST", "assets/multipart-uploads", json_body=body, replay=Replay.UNPROCESSED)

    def get_multipart_upload(self, upload_id: str, *, page: int = 1, page_limit: int = MAX_PAGE_LIMIT) -> Any:
        """``GET /assets/multipart-uploads/{id}``: the session's status and one page of its chunks."""
        return self.request(
            "GET", multipart_upload_path(upload_id), params={"page": page, "page_limit": page_limit}
        )

    def iter_multipart_upload_chunks(self, upload_id: str) -> Iterator[dict[str, Any]]:
        """Every chunk of a session's status (``{index, status, ...}``), page by page."""
        page = 1
        while page <= MAX_PAGES:
            body = self.get_multipart_upload(upload_id, page=page) or {}
            chunks = body.get("uploaded_chunks") or []
            yield from chunks
            total = (body.get("page_info") or {}).get("total_page")
            if not chunks or (isinstance(total, int) and page >= total):
                return
            page += 1

    def report_multipart_chunks(self, upload_id: str, completed_chunks: Sequence[Mapping[str, Any]]) -> Any:
        """``POST /assets/multipart-uploads/{id}``: report chunks uploaded (with their ETags).

        Replayed after any failure: the API counts a chunk reported twice as a duplicate and
        ignores it, and the report that completes the upload creates the asset whose id the
        session reserved, so a second copy of that report cannot create a second asset either.
        """
        return self.request(
            "POST",
            multipart_upload_path(upload_id),
            json_body={"completed_chunks": [dict(chunk) for chunk in completed_chunks]},
            replay=Replay.ALWAYS,
        )

    def get_multipart_presigned_urls(self, upload_id: str, start: int, count: int) -> Any:
        """``POST /assets/multipart-uploads/{id}/presigned-urls``: fresh URLs for chunks ``start..``.

        Replayed after any failure: it only signs URLs (an hour each, single-use); a lost
        answer leaves unused URLs behind, nothing else.
        """
        return self.request(
            "POST",
            f"{multipart_upload_path(upload_id)}/presigned-urls",
            json_body={"start": int(start), "count": int(count)},
            replay=Replay.ALWAYS,
        )

    # ------------------------------------------------------------------ indexed assets

    def create_indexed_asset(
        self,
        index_id: str,
        asset_id: str,
        *,
        user_metadata: Mapping[str, Any] | None = None,
        enable_video_stream: bool = False,
    ) -> dict[str, Any]:
        """Index a ready asset; returns ``{"_id": indexed asset id, "asset_id": ...}``."""
        body: dict[str, Any] = {
            "asset_id": validate_id(asset_id, "asset_id"),
            "enable_video_stream": enable_video_stream,
        }
        if user_metadata:
            body["user_metadata"] = dict(user_metadata)
        return self.request(
            "POST", f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets", json_body=body
        )

    def get_indexed_asset(self, index_id: str, indexed_asset_id: str) -> dict[str, Any]:
        return self.request("GET", indexed_asset_path(index_id, indexed_asset_id))

    def iter_indexed_assets(
        self,
        index_id: str,
        *,
        status: list[str] | None = None,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every indexed asset of an index (all pages, one at a time), with the API's filters."""
        params: dict[str, Any] = {}
        if status:
            params["status"] = list(status)
        if filename:
            params["filename"] = filename
        params.update(metadata_filter(user_metadata))
        return self.paginate(f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets", params)

    def list_indexed_assets(self, index_id: str, **filters: Any) -> list[dict[str, Any]]:
        """:meth:`iter_indexed_assets` as a list."""
        return list(self.iter_indexed_assets(index_id, **filters))

    # ------------------------------------------------------------------ legacy tasks and videos

    def create_task(
        self,
        index_id: str,
        *,
        video_url: str | None = None,
        video_file: str | Path | IO[bytes] | None = None,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Legacy ``POST /tasks`` (upload + index in one call); returns ``{"_id", "video_id"}``."""
        if (video_url is None) == (video_file is None):
            raise GistValidationError("create_task needs exactly one of video_url and video_file")
        fields: dict[str, Any] = {"index_id": validate_id(index_id, "index_id")}
        if user_metadata:
            fields["user_metadata"] = json.dumps(dict(user_metadata))
        if video_url is not None:
            fields["video_url"] = validate_video_url(video_url)
            return self.request("POST", "tasks", files=multipart(fields))
        if not isinstance(video_file, str | Path):
            name = filename or Path(getattr(video_file, "name", "upload.mp4")).name
            return self.request(
                "POST", "tasks", files={**multipart(fields), "video_file": (name, video_file)}
            )
        path = Path(str(video_file))
        if not path.is_file():
            raise GistValidationError(f"video_file {str(path)!r} does not exist or is not a file")
        with path.open("rb") as handle:
            return self.request(
                "POST", "tasks", files={**multipart(fields), "video_file": (filename or path.name, handle)}
            )

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", task_path(task_id))

    def iter_tasks(self, index_id: str, *, filename: str | None = None) -> Iterator[dict[str, Any]]:
        """The index's legacy indexing tasks (all pages, newest first)."""
        params: dict[str, Any] = {"index_id": validate_id(index_id, "index_id")}
        if filename:
            params["filename"] = filename
        return self.paginate("tasks", params)

    def iter_videos(
        self, index_id: str, *, filename: str | None = None, user_metadata: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every video of an index (legacy view; all pages, one at a time)."""
        params: dict[str, Any] = {"filename": filename} if filename else {}
        params.update(metadata_filter(user_metadata))
        return self.paginate(f"indexes/{validate_id(index_id, 'index_id')}/videos", params)

    def list_videos(
        self, index_id: str, *, filename: str | None = None, user_metadata: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`iter_videos` as a list."""
        return list(self.iter_videos(index_id, filename=filename, user_metadata=user_metadata))

    def get_video(self, index_id: str, video_id: str) -> dict[str, Any]:
        return self.request(
            "GET", f"indexes/{validate_id(index_id, 'index_id')}/videos/{validate_id(video_id, 'video_id')}"
        )

    # ------------------------------------------------------------------ analysis and gists

    def analyze(self, *, prompt: str, model_name: str | None = None, **options: Any) -> dict[str, Any]:
        """``POST /analyze`` with ``stream: false``; returns ``{id, data, finish_reason, usage}``.

        ``options`` are those of :func:`~airflow_provider_gist.analysis.analyze_body`: exactly
        one of ``asset_id``, ``video_url`` or ``video_id``, and ``temperature``, ``max_tokens``,
        ``response_format``. Waits up to the connection's ``analyze_timeout`` and is never sent
        twice after a read timeout (see :class:`~airflow_provider_gist.client.retry.Replay`).
        """
        body = analyze_body(prompt=prompt, model_name=model_name or self.settings.default_model, **options)
        return self.analyze_body(body)

    def analyze_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /analyze`` with a body built by :mod:`~airflow_provider_gist.analysis`."""
        return self.request(
            "POST",
            "analyze",
            json_body=dict(body),
            replay=Replay.AFTER_ANSWER,
            read_timeout=self.settings.analyze_timeout,
        )

    def generate_gist(
        self,
        *,
        asset_id: str | None = None,
        video_id: str | None = None,
        types: Any = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        index_id: str | None = None,
        source_updated_at: str | None = None,
    ) -> Gist:
        """Generate one video's gist; returns a :class:`~airflow_provider_gist.model.Gist`.

        Asks ``POST /analyze`` for JSON shaped by a json_schema built from ``types``. An answer
        cut off at ``max_tokens`` or not valid as a gist is retried once with twice the tokens,
        then raises :class:`GistModelOutputError`.
        """
        request = prepare_gist_request(
            asset_id=asset_id,
            video_id=video_id,
            types=types,
            model_name=model_name or self.settings.default_model,
            prompt=prompt,
            temperature=temperature,
            max_tokens=max_tokens,
            index_id=index_id,
        )
        tokens = request.max_tokens
        try:
            return request.gist_from_analyze(
                self.analyze_body(request.body(tokens)), source_updated_at=source_updated_at
            )
        except GistModelOutputError as err:
            tokens = request.more_tokens(tokens)
            self.log.warning("%s; retrying once with max_tokens=%d", err, tokens)
        answer = self.analyze_body(request.body(tokens))
        try:
            return request.gist_from_analyze(answer, source_updated_at=source_updated_at)
        except GistModelOutputError as err:
            raise GistModelOutputError(
                f"{err} (after one retry with more tokens)",
                finish_reason=err.finish_reason,
                generation_id=err.generation_id,
            ) from None

    # ------------------------------------------------------------------ asynchronous analysis

    def create_analysis_task(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /analyze/tasks``; returns ``{"task_id", "status"}``.

        A create, billed when it runs: sent again only when the server surely did not act
        (a retry of the task finds it by ``custom_id`` instead, see ``iter_analysis_tasks``).
        """
        return self.request("POST", "analyze/tasks", json_body=dict(body), replay=Replay.UNPROCESSED)

    def get_analysis_task(self, task_id: str) -> dict[str, Any]:
        """``GET /analyze/tasks/{task_id}``: status, and ``result`` once ``ready``."""
        return self.request("GET", analysis_task_path(task_id))

    def iter_analysis_tasks(
        self, *, asset_id: str | None = None, status: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The account's analysis tasks (all pages, newest first), optionally of one asset."""
        params: dict[str, Any] = {}
        if asset_id:
            params["asset_id"] = validate_id(asset_id, "asset_id")
        if status:
            params["status"] = status
        return self.paginate("analyze/tasks", params)

    def delete_analysis_task(self, task_id: str) -> None:
        """``DELETE /analyze/tasks/{task_id}`` (the API refuses it with 409 while processing)."""
        self.request("DELETE", analysis_task_path(task_id))

    # ------------------------------------------------------------------ batches (Pegasus 1.5)

    def create_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /analyze/batches``; returns ``{batch_id, status, items: [{task_id, custom_id}]}``.

        A create (its items are billed): sent again only when the server surely did not act.
        A 429 means the account already has its five active batches.
        """
        return self.request("POST", "analyze/batches", json_body=dict(body), replay=Replay.UNPROCESSED)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """``GET /analyze/batches/{batch_id}``: status and per-status item counts."""
        return self.request("GET", batch_path(batch_id))

    def iter_batches(self, *, status: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """The account's batches (all pages), optionally in the given statuses."""
        return self.paginate("analyze/batches", {"status": list(status)} if status else {})

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        """``GET /analyze/batches/{batch_id}/results``: one item per line (NDJSON), callable while
        the batch runs; ``data`` holds a ready item's result, ``error`` a failed item's reason."""
        return self.request("GET", f"{batch_path(batch_id)}/results", ndjson=True) or []

    def cancel_batch(self, batch_id: str) -> dict[str, Any] | None:
        """``POST /analyze/batches/{batch_id}/cancel``: queued items are canceled (not billed).

        Safe to repeat (a batch already ending answers 409), so it is replayed like a read;
        returns ``None`` when the batch had already ended.
        """
        try:
            return self.request("POST", f"{batch_path(batch_id)}/cancel", replay=Replay.ALWAYS)
        except GistApiError as err:
            if err.status == 409:
                return None
            raise


# ---------------------------------------------------------------------- shared with the async hook


def batch_path(batch_id: str) -> str:
    return f"analyze/batches/{validate_id(batch_id, 'batch_id')}"


def analysis_task_path(task_id: str) -> str:
    return f"analyze/tasks/{validate_id(task_id, 'analysis_task_id')}"


def asset_path(asset_id: str) -> str:
    return f"assets/{validate_id(asset_id, 'asset_id')}"


def multipart_upload_path(upload_id: str) -> str:
    return f"assets/multipart-uploads/{validate_id(upload_id, 'upload_id')}"


def indexed_asset_path(index_id: str, indexed_asset_id: str) -> str:
    return (
        f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets/"
        f"{validate_id(indexed_asset_id, 'indexed_asset_id')}"
    )


def task_path(task_id: str) -> str:
    return f"tasks/{validate_id(task_id, 'indexing_task_id')}"


def metadata_filter(user_metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``user_metadata[key]=value`` query filters, as the listings take them."""
    return {f"user_metadata[{key}]": value for key, value in (user_metadata or {}).items()}


def multipart(fields: Mapping[str, Any]) -> dict[str, tuple[None, str]]:
    """Text fields sent as multipart parts, as the upload endpoints require even without a file."""
    return {name: (None, str(value)) for name, value in fields.items()}


def query(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Query pairs with repeated keys for lists (``status=ready&status=failed``), as the API expects."""
    pairs: list[tuple[str, Any]] = []
    for key, value in params.items():
        if isinstance(value, list | tuple):
            pairs.extend((key, item) for item in value)
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif value is not None:
            pairs.append((key, value))
    return pairs
