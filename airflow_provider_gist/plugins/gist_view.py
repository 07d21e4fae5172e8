"""The gist view plugin: stored gists in the Airflow UI, served by the API server.

Registered through the ``airflow.plugins`` entry point (see docs/ui.md). It adds:

* a FastAPI app mounted by the API server at :data:`URL_PREFIX` (``/gists``): an HTML list of
  stored gists with filters and paging, a JSON endpoint, and a per-run summary page;
* a *Gists* entry in the UI's *Browse* menu (the list, framed inside the UI);
* a *Gists* tab on every DAG run page (the run's summary, when the run left one).

Every route sits behind the API server's own authentication and authorization (the same JWT
cookie or bearer token as the REST API). The view only reads: it never creates the gist table
or writes to the metadata DB.

Loading this module is cheap on purpose: every Airflow component loads plugins, but only the
API server serves the app, so FastAPI and the gist store are imported on the first request.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the API server mounts the app (must not start with a reserved prefix such as ``/api/v2``).
URL_PREFIX = "/gists"

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyGistViewApp:
    """An ASGI app that builds the real FastAPI app on its first request.

    The API server mounts whatever ASGI callable a plugin gives it; deferring the build keeps
    ``fastapi`` and the storage layer out of schedulers, DAG processors and workers.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        """The FastAPI app (built once, thread-safe)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_gist.plugins.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        await self.app(scope, receive, send)


gist_view_app = LazyGistViewApp()


class GistViewPlugin(AirflowPlugin):
    """Stored gists in the UI: a Browse menu entry, a DAG run tab and a JSON endpoint."""

    name = "gist_view"
    fastapi_apps = [
        {"app": gist_view_app, "url_prefix": URL_PREFIX, "name": "Gist view"},
    ]
    external_views = [
        {
            "name": "Gists",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "browse",
            # with a url_route the UI frames the page at /plugin/gists, inside its own layout
            "url_route": "gists",
        },
        {
            "name": "Gists",
            "href": f"{URL_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "gists-run",
        },
    ]
