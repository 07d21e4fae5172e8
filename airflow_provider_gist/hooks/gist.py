"""GistHook: the ``twelvelabs`` connection and one HTTP session, with the API's calls mixed in.

The calls themselves (paths, bodies, listings, gists) are
:class:`~airflow_provider_gist.client.api.TwelveLabsApi`; the retry loop, error mapping and pacing
are in :mod:`airflow_provider_gist.client`. This module adds what is Airflow's: the connection,
the ``requests`` session, the UI's connection test. The async hook for triggers is
:mod:`airflow_provider_gist.hooks.gist_async` (still importable from here, loaded on first use).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_provider_gist.client.api import TwelveLabsApi
from airflow_provider_gist.client.failures import TransportFailure, from_requests_error
from airflow_provider_gist.client.pacing import Pacer, RateLimitPacers
from airflow_provider_gist.client.retry import Answer, Replay, RetryPolicy, call_loop, drive
from airflow_provider_gist.client.settings import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    DEFAULT_HOST,
    FIELDS,
    ApiSettings,
    is_missing_connection,
    missing_connection_error,
    missing_key_error,
)
from airflow_provider_gist.errors import GistApiError, GistAuthError, GistError

if TYPE_CHECKING:
    from airflow_provider_gist.client.shared_pacing import SharedWindows
    from airflow_provider_gist.hooks.gist_async import GistAsyncHook


class GistHook(TwelveLabsApi, HttpHook):
    """Talks to the TwelveLabs API (v1.3) with the ``twelvelabs`` connection.

    The API key is the connection's password and goes out as ``x-api-key``, to the connection's
    host only (redirects are never followed). One ``requests.Session`` is reused for every call
    of a hook instance; :meth:`close` releases it. Calls are retried under one
    :class:`~airflow_provider_gist.client.retry.RetryPolicy` (429 with ``Retry-After``, 5xx and
    connection failures, bounded by attempts and a deadline, never replaying what could act
    twice), and failures raise typed :mod:`~airflow_provider_gist.errors` that never contain
    the key. Methods return the API's decoded JSON (dicts), or a
    :class:`~airflow_provider_gist.model.Gist` for gists.

    :param twelvelabs_conn_id: connection id (type ``twelvelabs``), default ``twelvelabs_default``.
    :param retry_policy: override the retry bounds read from the connection.
    :param pacers: client-side rate-limit pacing, one window per API rate-limit group; share one
        :class:`~airflow_provider_gist.client.pacing.RateLimitPacers` between hooks that spend one budget.
        When the connection names a ``pacing_conn_id``, the hook moves their windows into that
        database on its first call, so tasks on every worker spend one budget together.
    """

    conn_name_attr = "twelvelabs_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "TwelveLabs"
    default_host = DEFAULT_HOST

    def __init__(
        self,
        twelvelabs_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        pacers: RateLimitPacers | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(method="GET", http_conn_id=twelvelabs_conn_id, **kwargs)
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self._retry_policy_override = retry_policy
        self.pacers = pacers or RateLimitPacers()
        #: pacers made here are closed here; shared ones belong to whoever passed them
        self._own_pacers = pacers is None
        self._pacing_checked = False
        self._session: requests.Session | None = None
        self._settings: ApiSettings | None = None
        #: Set by a caller that may shut down mid-call (the refresh engine): once it returns true,
        #: a failed attempt is not retried and no rate-limit window is waited for.
        self.stopping: Callable[[], bool] | None = None
        # seams for tests: time moves only when the code sleeps
        self._sleep = time.sleep
        self._clock = time.monotonic

    def __repr__(self) -> str:
        return f"{type(self).__name__}(twelvelabs_conn_id={self.twelvelabs_conn_id!r})"

    # ------------------------------------------------------------------ connection and session

    @property
    def settings(self) -> ApiSettings:  # type: ignore[override]
        """Our settings from the connection's extras (API version, model, timeouts, retries)."""
        if self._settings is None:
            conn = self._get_twelvelabs_connection()
            self._settings = ApiSettings.from_extra(conn.extra_dejson, self.twelvelabs_conn_id)
        return self._settings

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry_policy_override or RetryPolicy.from_settings(self.settings)

    def _get_twelvelabs_connection(self) -> Any:
        try:
            return self.get_connection(self.twelvelabs_conn_id)
        except Exception as err:  # the SDK raises AirflowNotFoundException, or others via secrets backends
            if is_missing_connection(err):
                raise missing_connection_error(self.twelvelabs_conn_id) from None
            raise

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A session with ``x-api-key`` set and our own extras kept out of the headers."""
        conn = self._get_twelvelabs_connection()
        if not conn.password:
            raise missing_key_error(self.twelvelabs_conn_id)
        session = super().get_conn(headers, extra_options)
        for key in FIELDS:
            session.headers.pop(key, None)
        # HttpHook would send login/password as Basic auth; the API wants the key header only.
        session.auth = None
        session.headers["x-api-key"] = conn.password
        session.headers.setdefault("Accept", "application/json")
        return session

    def _set_base_url(self, connection: Any) -> None:
        super()._set_base_url(connection)
        # A bare host ("api.twelvelabs.io") means https here, not HttpHook's http default.
        host = connection.host or ""
        if host and "://" not in host and not connection.schema:
            self.base_url = "https://" + self.base_url.removeprefix("http://")
        self.base_url = self.base_url.rstrip("/")

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = self.get_conn()
        return self._session

    def close(self) -> None:
        """Close the pooled connections (the hook stays usable; a new session opens on demand)."""
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._own_pacers and self.pacers.shared is not None:
            # the pacing store's connection and thread; the next call opens them again
            self.pacers.unshare()
            self._pacing_checked = False

    def url_for(self, path: str) -> str:
        """The one place that builds API URLs: base URL + ``/<api version>/`` + path."""
        api_path = self.api_path(path)  # reads the connection first: a missing one gets our error
        return f"{self.url_from_endpoint('').rstrip('/')}{api_path}"

    def api_path(self, path: str) -> str:
        return f"/{self.settings.api_version}/{path.lstrip('/')}"

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        files: Mapping[str, Any] | None = None,
        replay: Replay | None = None,
        read_timeout: float | None = None,
        idempotent: bool | None = None,
        ndjson: bool = False,
    ) -> Any:
        """Send one API call with retries; return the decoded JSON body (``None`` when empty).

        ``replay`` says what may be sent again (default: reads always, POST/PATCH only when
        the server surely did not act); ``idempotent=True`` is the same as ``Replay.ALWAYS``.
        ``ndjson=True`` decodes a body of one JSON value per line into a list.
        Raises :class:`GistApiError` subclasses; never includes the key in them.
        """
        method = method.upper()
        if replay is None:
            replay = Replay.ALWAYS if idempotent else Replay.for_method(method)
        url, api_path = self.url_for(path), self.api_path(path)
        timeout = (self.settings.connect_timeout, read_timeout or self.settings.read_timeout)
        pacer = self._pacer_for(method, path)
        session = self.session

        def send_once(budget: float) -> Answer | TransportFailure:
            for handle in (files or {}).values():
                # a retried upload must resend the whole file, not the unread rest
                stream = handle[1] if isinstance(handle, tuple) else handle
                if hasattr(stream, "seek"):
                    stream.seek(0)
            prepared = session.prepare_request(
                requests.Request(method, url, params=params, json=json_body, files=files)
            )
            environment = session.merge_environment_settings(
                prepared.url, proxies=session.proxies, stream=False, verify=session.verify, cert=session.cert
            )
            pacer.acquire(budget=budget, stop=self.stopping)
            try:
                response = session.send(prepared, timeout=timeout, allow_redirects=False, **environment)
                # Read inside the try: a body cut off mid-read (ChunkedEncodingError,
                # ContentDecodingError) is a transport failure like any other, never a raw
                # requests exception, and the reservation below is still released.
                body = response.content
            except BaseException as err:
                # released on every path, or the pacer would count this call in flight forever
                pacer.observe({}, 0)
                if isinstance(err, requests.RequestException):
                    return from_requests_error(err)
                raise
            pacer.observe(response.headers, response.status_code)
            return Answer(response.status_code, response.headers, body)

        loop = call_loop(
            self.retry_policy,
            method=method,
            path=api_path,
            replay=replay,
            clock=self._clock,
            log=self.log,
            stopping=self.stopping,
        )
        answer = drive(loop, send_once, self._sleep)
        if not answer.body:
            return None
        try:
            if ndjson:  # one JSON value per line; blank lines allowed
                return [json.loads(line) for line in answer.body.splitlines() if line.strip()]
            return json.loads(answer.body)
        except ValueError:
            raise GistApiError(
                "the server answered 2xx with a body that is not valid JSON",
                status=answer.status,
                method=method,
                path=api_path,
            ) from None

    def _pacer_for(self, method: str, path: str) -> Pacer:
        """The call's pacer; on the first call, its windows move to the pacing store if one is set."""
        if not self._pacing_checked:
            pacing_conn_id = self.settings.pacing_conn_id
            if pacing_conn_id:
                self.pacers.share(self.pacing_scope, lambda: shared_windows(pacing_conn_id))
            self._pacing_checked = True
        return self.pacers.for_call(method, path)

    @property
    def pacing_scope(self) -> str:
        """Which budget a shared window counts: this connection id and the API's address (no key)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url_for(""))
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        root = parts.path.rstrip("/").removesuffix(f"/{self.settings.api_version}")
        return f"{self.twelvelabs_conn_id} {parts.scheme}://{host}{root}"

    # ------------------------------------------------------------------ connection test

    def test_connection(self) -> tuple[bool, str]:
        """One cheap, non-billable read (``GET /indexes?page_limit=1``); ``(ok, message)``."""
        try:
            self.request("GET", "indexes", params={"page": 1, "page_limit": 1})
        except GistAuthError as err:
            return False, f"TwelveLabs rejected the API key (HTTP {err.status}): check the password field"
        except GistError as err:
            return False, str(err)
        except Exception as err:  # a connection test reports, it does not raise
            return False, f"{type(err).__name__}: {err}"
        finally:
            self.close()
        return True, f"Connected to TwelveLabs API {self.settings.api_version} at {self.base_url}"


def shared_windows(conn_id: str) -> SharedWindows:
    """The pacing store behind the SQL connection ``conn_id`` (its ``DbApiHook`` opens the connections).

    Raises :class:`GistConfigError` when the connection is missing or is not a PostgreSQL or
    SQLite database: a setting to fix, unlike a database that does not answer, which only
    makes the pacers fall back to their own process.
    """
    from airflow_provider_gist.client.shared_pacing import DIALECTS, SharedWindows
    from airflow_provider_gist.errors import GistConfigError
    from airflow_provider_gist.sql_connection import sql_hook

    where = f"pacing connection {conn_id!r} (pacing_conn_id of the TwelveLabs connection)"
    hook = sql_hook(conn_id, where)
    dialect = hook.dialect_name
    if dialect not in DIALECTS:
        raise GistConfigError(
            f"{where} is a {dialect!r} database: shared windows need 'postgres' or 'sqlite'"
        )
    return SharedWindows(
        hook.get_conn,
        dialect=dialect,
        placeholder=hook.placeholder,
        label=f"pacing store connection {conn_id!r}",
    )


def __getattr__(name: str) -> Any:
    # Kept importable from here for one release; loaded on first use (it brings aiohttp).
    if name == "GistAsyncHook":
        from airflow_provider_gist.hooks.gist_async import GistAsyncHook

        return GistAsyncHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_HOST", "GistAsyncHook", "GistHook", "shared_windows"]
