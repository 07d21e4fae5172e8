"""The catalog routes of the gist view beyond the list: export, thumbnails and the overview as JSON.

``GET /export.csv``, ``GET /export.json``  the list's filter, every page, streamed
``GET /thumbnail``                          a gist's video thumbnail (302) or the placeholder
``GET /api/overview``                       the catalog page's overview as JSON

Same authentication and the same per-DAG filtering as the list (:mod:`.app`): these routes
need read access to assets and only ever touch gists of DAGs the user may read.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.ids import validate_id
from airflow_provider_gist.plugins.export import stream_csv, stream_json
from airflow_provider_gist.plugins.thumbnails import PLACEHOLDER_SVG, ThumbnailCache, api_lookup
from airflow_provider_gist.storage.catalog import CatalogReader

log = logging.getLogger(__name__)

#: Default TwelveLabs connection of the thumbnail lookups (``[gist_view] twelvelabs_conn_id``).
DEFAULT_TWELVELABS_CONN_ID = "twelvelabs_default"
_IMAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    # the placeholder and the redirect are the same for a while: let the browser reuse them
    "Cache-Control": "private, max-age=300",
}
_caches: dict[str, ThumbnailCache] = {}
_caches_lock = threading.Lock()


def thumbnail_cache(conn_id: str) -> ThumbnailCache:
    """The server's thumbnail cache for one TwelveLabs connection."""
    with _caches_lock:
        if conn_id not in _caches:
            _caches[conn_id] = ThumbnailCache(api_lookup(conn_id))
        return _caches[conn_id]


def _placeholder() -> Response:
    return Response(PLACEHOLDER_SVG, media_type="image/svg+xml", headers=_IMAGE_HEADERS)


def add_catalog_routes(app: FastAPI, dependencies: list[Any]) -> None:
    """Add the export, thumbnail and overview routes to the view's ``app``."""
    from airflow_provider_gist.plugins import app as view
    from airflow_provider_gist.plugins.catalog import catalog_filter, read_overview

    def filters_of(request: Request) -> Any:
        q = request.query_params
        try:
            return view.parse_filters(
                q.get("index_id"), q.get("text"), None, None, topic=q.get("topic"), hashtag=q.get("hashtag")
            )
        except GistValidationError as err:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(err)) from None

    def export(request: Request, user: Any, session: Any, kind: str) -> Response:
        filters = filters_of(request)
        try:
            rows = CatalogReader(view.get_store()).iter_rows(
                catalog_filter(filters, view.visible_dag_ids(user, session))
            )
            first = list(itertools.islice(rows, 1))  # the first query fails here, not mid-stream
        except view.NoGistTable:
            rows, first = iter(()), []
        except Exception as err:
            log.exception("gist view: export failed")
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                view.store_error(err),
            ) from None
        gists: Iterator[dict[str, Any]] = itertools.chain(first, rows)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        body = stream_csv(gists) if kind == "csv" else stream_json(gists)
        media = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
        return StreamingResponse(
            body,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="gists-{stamp}.{kind}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/export.csv", dependencies=dependencies)
    def export_csv(request: Request, user: GetUserDep, session: SessionDep) -> Response:
        return export(request, user, session, "csv")

    @app.get("/export.json", dependencies=dependencies)
    def export_json(request: Request, user: GetUserDep, session: SessionDep) -> Response:
        return export(request, user, session, "json")

    @app.get("/thumbnail", dependencies=dependencies)
    def thumbnail(
        user: GetUserDep,
        session: SessionDep,
        video_ref: str = Query(),
        index_id: str | None = Query(None),
    ) -> Response:
        try:
            ref = validate_id(video_ref, "video_ref")
            index = validate_id(index_id, "index_id") if index_id else None
        except GistValidationError as err:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(err)) from None
        try:
            gist = view.get_store().get(index, ref)
            visible = view.visible_dag_ids(user, session)
        except view.NoGistTable:
            gist, visible = None, None
        if gist is None or (visible is not None and gist.get("dag_id") not in visible):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such gist")  # same answer: nothing leaks
        if not view.conf.getboolean(view.CONF_SECTION, "thumbnails", fallback=True):
            return _placeholder()
        conn_id = (
            view.conf.get(view.CONF_SECTION, "twelvelabs_conn_id", fallback="") or DEFAULT_TWELVELABS_CONN_ID
        )
        url = thumbnail_cache(conn_id).get(gist)
        if url is None:
            return _placeholder()
        return RedirectResponse(url, status.HTTP_302_FOUND, headers=_IMAGE_HEADERS)

    @app.get("/api/overview", dependencies=dependencies)
    def overview_json(request: Request, user: GetUserDep, session: SessionDep) -> JSONResponse:
        filters = filters_of(request)
        try:
            overview = read_overview(view.get_store(), filters, view.visible_dag_ids(user, session))
        except view.NoGistTable:
            overview = None
        except Exception as err:
            log.exception("gist view: reading the overview failed")
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                view.store_error(err),
            ) from None
        return JSONResponse(overview_dict(overview), headers={"Cache-Control": "no-store"})


def overview_dict(overview: Any) -> dict[str, Any]:
    """The overview as JSON: indexes (gists, stale, missing, last run), top terms, usage per day."""
    if overview is None:
        return {"indexes": [], "more_indexes": 0, "topics": [], "hashtags": [], "usage": []}
    return {
        "indexes": [
            {
                "index_id": stats.index_id,
                "gists": stats.gists,
                "stale": stats.stale,
                "missing": stats.missing,
                "last_run": stats.last_run,
            }
            for stats in overview.indexes
        ],
        "more_indexes": overview.more_indexes,
        "topics": [{"term": term, "count": n} for term, n in overview.topics],
        "hashtags": [{"term": term, "count": n} for term, n in overview.hashtags],
        "usage": [vars(day) for day in overview.usage],
    }
