"""The FastAPI app behind the gist view (built lazily by :mod:`.gist_view`).

Routes, relative to the mount point (``/gists``):

``GET /``            the catalog page: per-index stats and charts (first page), then the list of
                     stored gists (``index_id``, ``text``, ``topic``, ``hashtag``, ``page_size``,
                     seek cursors ``after``/``before``; the old ``page`` number still works)
``GET /api/gists``   the list as JSON (with ``next_cursor``/``prev_cursor``)
``GET /run``         HTML summary of one DAG run (``dag_id``, ``run_id``): the *Gists* run tab
``GET /export.csv``, ``/export.json``, ``/thumbnail``, ``/api/overview``: see :mod:`.routes`

Authentication and authorization are the API server's: the dependencies from
:mod:`airflow.api_fastapi.core_api.security` read the same JWT (``Authorization: Bearer`` or the
UI's ``_token`` cookie) and ask the configured auth manager. Listing gists needs *read* access
to assets (gists are the content of the ``twelvelabs_gists`` asset), and then shows only the
gists stored by DAGs the user may read (the auth manager's per-DAG check, one batch per request:
:func:`visible_dag_ids`); a gist that names no DAG is shown only to users who may read every
DAG. A run's summary is an XCom of that run, so it needs *read* access to the DAG's XComs. A
browser without a session is sent to the login page; API clients get 401/403.

Read-only by construction: the store is opened without creating its table (a missing file or
table reads as "no gists yet") and the metadata DB is only queried.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_asset, requires_access_dag
from airflow.configuration import conf
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import inspect as sa_inspect

from airflow_provider_gist.errors import GistConfigError, GistValidationError
from airflow_provider_gist.ids import validate_id
from airflow_provider_gist.plugins.catalog_page import render_catalog
from airflow_provider_gist.plugins.render import Filters, render_message, render_run
from airflow_provider_gist.plugins.summary import SUMMARY_XCOM_KEY
from airflow_provider_gist.storage import DEFAULT_TABLE, SqlGistStore
from airflow_provider_gist.storage.base import READ_COLUMNS
from airflow_provider_gist.storage.catalog import Page

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
MAX_TEXT = 200
#: Config section for the view (``AIRFLOW__GIST_VIEW__SQL_CONN_ID`` ...): where gists are read.
CONF_SECTION = "gist_view"

# Pages hold user content (titles from a model): no scripts at all, framing only by the UI itself.
# Images may come from https: the thumbnail route redirects to the API's signed thumbnail URLs.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; form-action 'self'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


#: Query parameters are parsed by hand (:func:`parse_filters`) so errors name them in the page too.
QueryStr = Annotated[str | None, Query()]


class _NoGistTable(Exception):
    """The store has no table (or no file) yet: nothing was stored."""


NoGistTable = _NoGistTable


class ReadOnlyGistStore(SqlGistStore):
    """A :class:`SqlGistStore` that never creates anything: no file, no table, no index.

    ``SqlGistStore.ensure_table`` creates the table on first use (and switches the embedded
    SQLite file to WAL); a web view must not, so this checks instead and raises
    :class:`_NoGistTable` when there is nothing to read.
    """

    def ensure_table(self) -> None:
        if self._table_ready:
            return
        path = self.db_path
        if path is not None and not path.is_file():
            raise _NoGistTable  # connecting would create the SQLite file
        if not sa_inspect(self.hook.get_sqlalchemy_engine()).has_table(self.table):
            raise _NoGistTable
        # A table from before a column existed is read as it is (no migration from the view):
        # its rows have no dag_id, so only users who may read every DAG see them.
        self._missing_columns = frozenset(set(READ_COLUMNS) - self.existing_columns())
        self._table_ready = True


def store_error(err: BaseException) -> str:
    """What the page says when the store cannot be read: our configuration errors say what to set
    (they carry no secrets); anything else only its type (details in the API server log)."""
    if isinstance(err, GistConfigError):
        return str(err)
    return f"The gist store could not be read ({type(err).__name__}); see the API server log."


def get_store() -> ReadOnlyGistStore:
    """The store the view reads, looked up per request (a connection added later is seen at once).

    ``[gist_view] sql_conn_id`` / ``table`` when set; else the deployment's store, the connection
    ``gist_store_default`` (the one every store task writes to when its DAG names none); else the
    embedded SQLite file, under LocalExecutor only (as for the store tasks: under a distributed
    executor that file is not where any gist went, so the page says what to configure instead
    of showing an empty list). The view reads SQL stores only: an object-store default is a
    :class:`~airflow_provider_gist.errors.GistConfigError` that says so.
    """
    from airflow_provider_gist.storage.default import (
        DEFAULT_STORE_CONN_ID,
        deployment_store,
        require_local_default,
    )

    conn_id = conf.get(CONF_SECTION, "sql_conn_id", fallback="") or None
    table = conf.get(CONF_SECTION, "table", fallback="") or None
    if conn_id is None:
        location = deployment_store()
        if location is not None and location.object_base:
            raise GistConfigError(
                f"the connection {DEFAULT_STORE_CONN_ID!r} names an object store; the gist view reads "
                "SQL stores only: set [gist_view] sql_conn_id to a SQL copy, or store gists in SQL"
            )
        if location is not None:
            conn_id, table = location.sql_conn_id, table or location.table
        else:
            require_local_default()
    return _open_store(conn_id, table or DEFAULT_TABLE)


@functools.cache
def _open_store(conn_id: str | None, table: str) -> ReadOnlyGistStore:
    # One store (and its engine) per location for the life of the API server.
    return ReadOnlyGistStore(conn_id, table=table)


def _full_path(request: Request) -> str:
    """The request path including the mount point (Starlette versions differ on including it)."""
    root, path = request.scope.get("root_path", ""), request.url.path
    return path if not root or path.startswith(root) else root + path


def _login_redirect(request: Request) -> RedirectResponse:
    """To the auth manager's login page, coming back here afterwards."""
    base_path = ui_base_path()
    target = _full_path(request) + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"{base_path}/api/v2/auth/login?{urlencode({'next': target})}", status.HTTP_307_TEMPORARY_REDIRECT
    )


def _term(value: str | None, name: str, limit: int = MAX_TEXT) -> str | None:
    """A free-text parameter: stripped, ``None`` if empty, printable and at most ``limit`` long."""
    got = value.strip() if value and value.strip() else None
    if got is not None and (len(got) > limit or any(ord(ch) < 32 for ch in got)):
        raise GistValidationError(f"{name} must be at most {limit} printable characters")
    return got


def parse_filters(
    index_id: str | None,
    text: str | None,
    page: str | None,
    page_size: str | None,
    *,
    topic: str | None = None,
    hashtag: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Filters:
    """Validate the list query; errors name the parameter (:class:`GistValidationError`)."""
    from airflow_provider_gist.storage.catalog import Cursor

    index = validate_id(index_id.strip(), "index_id") if index_id and index_id.strip() else None
    needle = _term(text, "text")
    tag = _term(hashtag, "hashtag")
    cursors = {"after": _term(after, "after", 2000), "before": _term(before, "before", 2000)}
    for name, token in cursors.items():
        if token is not None:
            Cursor.decode(token, name)  # refused here, with the parameter's name
    if cursors["after"] and cursors["before"]:
        raise GistValidationError("give after or before, not both")

    def number(value: str | None, name: str, default: int, high: int | None) -> int:
        if value is None or value == "":
            return default
        try:
            got = int(value)
        except ValueError:
            raise GistValidationError(f"{name} must be a whole number, got {value[:20]!r}") from None
        if got < 1 or (high is not None and got > high):
            raise GistValidationError(f"{name} must be between 1 and {high or 'any'}, got {got}")
        return got

    return Filters(
        index_id=index,
        text=needle,
        page=number(page, "page", 1, 100_000),
        page_size=number(page_size, "page_size", 25, MAX_PAGE_SIZE),
        topic=_term(topic, "topic"),
        hashtag=tag.removeprefix("#") or None if tag else None,
        after=cursors["after"],
        before=cursors["before"],
    )


def visible_dag_ids(user: Any, session: Any) -> set[str | None] | None:
    """The DAGs whose gists ``user`` may see; ``None``: all gists (the user may read every DAG).

    A gist is a DAG's output, so it is shown to whoever may read the DAG that stored it: the
    auth manager's per-DAG rule, asked once for the DAG ids found in the store
    (``filter_authorized_dag_ids``, per team as ``get_authorized_dag_ids`` does). Gists with no
    DAG (stored from code outside a DAG, or before gists named their DAG) are only for users
    who may read every DAG.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.models.dag import DagModel

    auth_manager = get_auth_manager()
    if auth_manager.is_authorized_dag(method="GET", user=user):
        return None
    try:
        stored = {dag_id for dag_id in get_store().stored_dag_ids() if dag_id}
    except _NoGistTable:
        return set()
    if not stored:
        return set()
    teams = DagModel.get_dag_id_to_team_name_mapping(sorted(stored), session=session)
    by_team: dict[str | None, set[str]] = {}
    for dag_id in stored:
        by_team.setdefault(teams.get(dag_id), set()).add(dag_id)
    allowed: set[str | None] = set()
    for team_name, dag_ids in by_team.items():
        allowed |= auth_manager.filter_authorized_dag_ids(
            dag_ids=dag_ids, user=user, method="GET", team_name=team_name
        )
    return allowed


def read_page(filters: Filters, dag_ids: set[str | None] | None = None) -> Page:
    """One page of gists in list order, with the cursors of the pages around it.

    ``dag_ids`` (from :func:`visible_dag_ids`) limits the page to the gists of those DAGs.
    """
    from airflow_provider_gist.plugins.catalog import read_list

    try:
        return read_list(get_store(), filters, dag_ids)
    except _NoGistTable:
        return Page()


def ui_base_path() -> str:
    """The Airflow UI's base path (``[api] base_url``), for links to DAG runs."""
    return urlsplit(conf.get("api", "base_url", fallback="/") or "/").path.rstrip("/")


def _list_html(request: Request, session: Any, filters: Filters, dag_ids: set[str | None] | None) -> str:
    """The catalog page: the overview on a first page, then the page of gists."""
    from airflow_provider_gist.plugins.catalog import read_overview, runs_of

    base = f"{request.scope.get('root_path', '')}/"
    page = read_page(filters, dag_ids)
    overview = None
    if not (filters.after or filters.before or filters.page > 1):
        try:
            overview = read_overview(get_store(), filters, dag_ids)
        except _NoGistTable:
            overview = None
    try:
        runs = runs_of(session, page.gists)
    except Exception:
        # which run stored a gist is a nicety: the list is shown without it
        log.exception("gist view: looking up the DAG runs of the gists failed")
        runs = {}
    return render_catalog(
        page,
        filters,
        base=base,
        overview=overview,
        ui_base=ui_base_path(),
        runs=runs,
        thumbnails=conf.getboolean(CONF_SECTION, "thumbnails", fallback=True),
    )


def read_run_summary(session: Any, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The latest summary XCom (:data:`SUMMARY_XCOM_KEY`) of one DAG run, or ``None``."""
    from airflow.models.xcom import XComModel

    row = session.scalars(
        XComModel.get_many(run_id=run_id, dag_ids=dag_id, key=SUMMARY_XCOM_KEY, limit=1)
    ).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    return value if isinstance(value, dict) else None


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=_SECURITY_HEADERS)


def create_app() -> FastAPI:
    """Build the gist view app (called once, on the first request the API server routes here)."""
    app = FastAPI(
        title="Gist view",
        description="Stored video gists (read-only), under the API server's authentication.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(HTTPException)
    async def _auth_errors(request: Request, exc: HTTPException) -> Response:
        # Browsers without a session go to the login page; API clients keep the status code.
        root = request.scope.get("root_path", "")
        wants_html = "text/html" in request.headers.get("accept", "") and not _full_path(request).startswith(
            f"{root}/api/"
        )
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_html:
            return _login_redirect(request)
        if wants_html:
            return _html(render_message("Gists", str(exc.detail)), exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    read_gists = [Depends(requires_access_asset("GET"))]

    @app.get("/", response_class=HTMLResponse, dependencies=read_gists)
    def list_page(
        request: Request,
        user: GetUserDep,
        session: SessionDep,
        index_id: QueryStr = None,
        text: QueryStr = None,
        page: QueryStr = None,
        page_size: QueryStr = None,
        topic: QueryStr = None,
        hashtag: QueryStr = None,
        after: QueryStr = None,
        before: QueryStr = None,
    ) -> HTMLResponse:
        base = f"{request.scope.get('root_path', '')}/"
        try:
            filters = parse_filters(
                index_id, text, page, page_size, topic=topic, hashtag=hashtag, after=after, before=before
            )
        except GistValidationError as err:
            return _html(render_catalog(Page(), Filters(), base=base, error=str(err)), 400)
        try:
            return _html(_list_html(request, session, filters, visible_dag_ids(user, session)))
        except Exception as err:
            log.exception("gist view: reading the store failed")
            message = store_error(err)
            return _html(render_catalog(Page(), filters, base=base, error=message), 503)

    @app.get("/api/gists", dependencies=read_gists)
    def list_json(
        user: GetUserDep,
        session: SessionDep,
        index_id: QueryStr = None,
        text: QueryStr = None,
        page: QueryStr = None,
        page_size: QueryStr = None,
        topic: QueryStr = None,
        hashtag: QueryStr = None,
        after: QueryStr = None,
        before: QueryStr = None,
    ) -> JSONResponse:
        try:
            filters = parse_filters(
                index_id, text, page, page_size, topic=topic, hashtag=hashtag, after=after, before=before
            )
        except GistValidationError as err:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(err)) from None
        try:
            result = read_page(filters, visible_dag_ids(user, session))
        except Exception as err:
            log.exception("gist view: reading the store failed")
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                store_error(err),
            ) from None
        return JSONResponse(
            {
                "gists": result.gists,
                "page": filters.page,
                "page_size": filters.page_size,
                "has_more": result.older is not None,
                # seek paging: pass next_cursor as ``after`` (older), prev_cursor as ``before`` (newer)
                "next_cursor": result.older.encode() if result.older else None,
                "prev_cursor": result.newer.encode() if result.newer else None,
                "filters": {
                    "index_id": filters.index_id,
                    "text": filters.text,
                    "topic": filters.topic,
                    "hashtag": filters.hashtag,
                },
            },
            headers={"Cache-Control": "no-store"},
        )

    @app.get(
        "/run",
        response_class=HTMLResponse,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.XCOM))],
    )
    def run_page(
        request: Request, session: SessionDep, dag_id: str = Query(), run_id: str = Query()
    ) -> HTMLResponse:
        list_url = f"{request.scope.get('root_path', '')}/"
        if len(dag_id) > 250 or len(run_id) > 250:
            return _html(render_message("Gists", "dag_id and run_id must be at most 250 characters"), 400)
        try:
            summary = read_run_summary(session, dag_id, run_id)
        except Exception as err:
            log.exception("gist view: reading the run summary failed")
            message = f"The run summary could not be read ({type(err).__name__})."
            return _html(
                render_run(None, dag_id=dag_id, run_id=run_id, list_url=list_url, error=message), 503
            )
        return _html(render_run(summary, dag_id=dag_id, run_id=run_id, list_url=list_url))

    from airflow_provider_gist.plugins.routes import add_catalog_routes

    add_catalog_routes(app, read_gists)
    return app
