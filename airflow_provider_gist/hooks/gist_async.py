"""GistAsyncHook: read-only, asynchronous access to the TwelveLabs API, for triggers.

Loaded by triggers when they run, never by a DAG file: it brings ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.http.hooks.http import HttpAsyncHook, SessionConfig

from airflow_provider_gist.client.api import (
    analysis_task_path,
    asset_path,
    batch_path,
    indexed_asset_path,
    task_path,
)
from airflow_provider_gist.client.failures import TransportFailure, from_aiohttp_error
from airflow_provider_gist.client.retry import Answer, Replay, RetryPolicy, adrive, call_loop
from airflow_provider_gist.client.settings import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    DEFAULT_HOST,
    FIELDS,
    HTTP_OPTION_EXTRAS,
    ApiSettings,
    base_url,
    is_missing_connection,
    missing_connection_error,
    missing_key_error,
)
from airflow_provider_gist.errors import GistApiError


class GistAsyncHook(HttpAsyncHook):
    """Read-only, asynchronous access to the TwelveLabs API, for triggers.

    The connection (type ``twelvelabs``) is resolved once, asynchronously, in :meth:`config`:
    never with the sync ``get_connection``, which blocks or fails on a triggerer's event loop.
    The API key goes out as ``x-api-key`` (never as Basic auth), our own settings
    (:data:`~airflow_provider_gist.client.settings.FIELDS`) are never sent as headers, an empty
    host means the public API, every path is prefixed with the connection's ``api_version``,
    and redirects are never followed.

    Calls go through the same retry loop as :class:`~airflow_provider_gist.hooks.gist.GistHook`
    (:func:`~airflow_provider_gist.client.retry.call_loop`), waiting with ``asyncio.sleep``
    only. Failures raise the typed errors of :mod:`~airflow_provider_gist.errors`; they never
    hold the key. Methods return the API's decoded JSON (dicts).

    :param twelvelabs_conn_id: connection id, default ``twelvelabs_default``.
    :param retry_policy: override the retry bounds read from the connection (a trigger that
        counts its own errors passes ``RetryPolicy(max_attempts=1)``).
    """

    conn_name_attr = "twelvelabs_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "TwelveLabs (async)"
    default_host = DEFAULT_HOST

    def __init__(
        self, twelvelabs_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        # retry_limit=1 switches off HttpAsyncHook's own retry (fixed delay, 5xx only, never
        # 429): ours replaces it, so waits are not multiplied by two nested loops.
        super().__init__(method="GET", http_conn_id=twelvelabs_conn_id, retry_limit=1, retry_delay=0.0)
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self._retry_policy_override = retry_policy
        self._settings: ApiSettings | None = None
        # seams for tests: time moves only when the code sleeps
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        self._clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"{type(self).__name__}(twelvelabs_conn_id={self.twelvelabs_conn_id!r})"

    async def config(self) -> SessionConfig:
        """Resolve the connection once (async) into base URL, headers and client options."""
        if self._config is None:
            try:
                conn = await get_async_connection(conn_id=self.twelvelabs_conn_id, hook=self)
            except Exception as err:  # AirflowNotFoundException, or others via secrets backends
                if is_missing_connection(err):
                    raise missing_connection_error(self.twelvelabs_conn_id) from None
                raise
            extra = await get_async_extra_dejson(conn)
            settings = ApiSettings.from_extra(extra, self.twelvelabs_conn_id)
            if not conn.password:
                raise missing_key_error(self.twelvelabs_conn_id)
            # Like HttpHook, other extras are extra headers; ours and the client options are not.
            headers = {
                str(key): str(value)
                for key, value in extra.items()
                if key not in FIELDS and key not in HTTP_OPTION_EXTRAS and value is not None
            }
            headers["Accept"] = "application/json"
            headers["x-api-key"] = conn.password
            options: dict[str, Any] = {"allow_redirects": False}
            verify = extra.get("verify", extra.get("verify_ssl"))
            if verify is not None and str(verify).lower() in ("false", "0", "no"):
                options["ssl"] = False
            proxy = extra.get("proxy") or extra.get("proxies")
            if isinstance(proxy, Mapping):  # requests-style {"https": url}
                proxy = proxy.get("https") or proxy.get("http")
            if isinstance(proxy, str) and proxy:
                options["proxy"] = proxy
            self.base_url = base_url(conn.host, conn.schema, conn.port)
            self._settings = settings
            self._config = SessionConfig(
                base_url=self.base_url, headers=headers, auth=None, extra_options=options
            )
        return self._config

    @property
    def settings(self) -> ApiSettings:
        """Our settings from the connection's extras; available once :meth:`config` has run."""
        if self._settings is None:
            raise RuntimeError("await GistAsyncHook.config() (or any call) before reading settings")
        return self._settings

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry_policy_override or RetryPolicy.from_settings(self.settings)

    async def aget(self, path: str, *, params: Mapping[str, str | int | float] | None = None) -> Any:
        """``GET /<api version>/<path>`` with retries; return the decoded JSON (``None`` when empty).

        Raises :class:`~airflow_provider_gist.errors.GistApiError` subclasses: auth (401/403),
        not found, rate limited or transient once the retry budget is spent.
        """
        await self.config()
        api_path = f"/{self.settings.api_version}/{path.lstrip('/')}"
        timeout = aiohttp.ClientTimeout(
            total=self.settings.connect_timeout + self.settings.read_timeout,
            connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        async with self.session(method="GET") as http:

            async def send_once(budget: float) -> Answer | TransportFailure:
                try:
                    response = await http.run(
                        endpoint=api_path,
                        data=dict(params) if params else None,
                        extra_options={"check_response": False, "timeout": timeout},
                    )
                    try:
                        return Answer(response.status, response.headers, await response.read())
                    finally:
                        response.release()
                except (aiohttp.ClientError, TimeoutError) as err:
                    return from_aiohttp_error(err)

            loop = call_loop(
                self.retry_policy,
                method="GET",
                path=api_path,
                replay=Replay.ALWAYS,
                clock=self._clock,
                log=self.log,
            )
            answer = await adrive(loop, send_once, self._sleep)
        if not answer.text.strip():
            return None
        try:
            return json.loads(answer.text)
        except ValueError:
            raise GistApiError(
                "the server answered 2xx with a body that is not valid JSON",
                status=answer.status,
                method="GET",
                path=api_path,
            ) from None

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        """``GET /assets/{asset_id}``: the asset (``status`` processing, ready or failed)."""
        return await self.aget(asset_path(asset_id))

    async def get_indexed_asset(self, index_id: str, indexed_asset_id: str) -> dict[str, Any]:
        """``GET /indexes/{index_id}/indexed-assets/{indexed_asset_id}``: the indexed asset."""
        return await self.aget(indexed_asset_path(index_id, indexed_asset_id))

    async def get_task(self, task_id: str) -> dict[str, Any]:
        """Legacy ``GET /tasks/{task_id}``: the video indexing task."""
        return await self.aget(task_path(task_id))

    async def get_analysis_task(self, task_id: str) -> dict[str, Any]:
        """``GET /analyze/tasks/{task_id}``: an asynchronous analysis (``ready`` carries ``result``)."""
        return await self.aget(analysis_task_path(task_id))

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        """``GET /analyze/batches/{batch_id}``: a batch's status and item counts."""
        return await self.aget(batch_path(batch_id))
