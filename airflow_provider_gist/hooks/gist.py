"""GistHook: the TwelveLabs connection, one HTTP session, bounded retries and typed errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import aiohttp
import requests
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook, SessionConfig
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout, ReadTimeout

from airflow_provider_gist import gist as gist_model
from airflow_provider_gist.errors import (
    GistApiError,
    GistAuthError,
    GistConfigError,
    GistError,
    GistModelOutputError,
    GistNotFoundError,
    GistRateLimitedError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.gist import Gist, GistType
from airflow_provider_gist.ids import validate_id, validate_index_name, validate_video_url
from airflow_provider_gist.retry import (
    RateLimitPacers,
    RetryPolicy,
    is_retryable_status,
    parse_retry_after,
    server_wait_hint,
)

DEFAULT_HOST = "https://api.twelvelabs.io"
DEFAULT_API_VERSION = "v1.3"
API_VERSIONS = ("v1.3",)
#: Connection extras that are settings of ours: never sent as HTTP headers.
OWN_EXTRAS = (
    "api_version",
    "default_model",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "retry_deadline",
)
#: The API caps page_limit at 50; fewer, larger pages mean fewer calls against the rate limit.
MAX_PAGE_LIMIT = 50
#: A ceiling on pages fetched by one listing, so a misbehaving server cannot loop us forever.
MAX_PAGES = 10_000


def error_from_response(
    status: int, body_text: str, headers: Mapping[str, str], *, method: str, path: str
) -> GistApiError:
    """Build the typed error for a non-2xx answer from either of the API's error-body shapes.

    Classic endpoints answer ``{"code", "message"}``, newer ones ``{"error": {"code", "message"}}``,
    and a 429 from ``/analyze`` has an empty body. Shared with the async hook.
    """
    code: str | None = None
    message: str | None = None
    text = body_text.strip()
    if text:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            nested = payload.get("error")
            inner: dict[str, Any] = nested if isinstance(nested, dict) else payload
            code = inner.get("code") if isinstance(inner.get("code"), str) else None
            message = inner.get("message") if isinstance(inner.get("message"), str) else None
        if message is None:
            kind = (
                "HTML page" if text.lstrip().lower().startswith(("<!doctype", "<html")) else "non-JSON body"
            )
            message = f"the server answered with a {kind} instead of a TwelveLabs error"
    # The window's reset says when a 429 clears; it says nothing about a 5xx, which backs off.
    retry_after = (
        server_wait_hint(headers) if status == 429 else parse_retry_after(_header(headers, "retry-after"))
    )
    if message is None:
        message = "too many requests" if status == 429 else "no error details in the response"
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "method": method,
        "path": path,
        "retry_after": retry_after,
    }
    if status in (401, 403):
        hint = "the API key is invalid, expired or revoked" if status == 401 else "the API key is not allowed"
        return GistAuthError(f"{message} ({hint}; check the connection's API key)", **kwargs)
    if status == 404 or code == "resource_not_exist":
        return GistNotFoundError(message, **kwargs)
    if status == 429:
        return GistRateLimitedError(message, **kwargs)
    if status >= 500:
        return GistTransientError(message, **kwargs)
    return GistApiError(message, **kwargs)


class GistHook(HttpHook):
    """Talks to the TwelveLabs API (v1.3) with the ``twelvelabs`` connection.

    The API key is the connection's password and goes out as ``x-api-key``. One
    ``requests.Session`` is reused for every call of a hook instance. Calls are retried under
    one :class:`~airflow_provider_gist.retry.RetryPolicy` (429 with ``Retry-After``, 5xx and
    connection failures, bounded by attempts and a deadline), and failures raise typed
    :mod:`~airflow_provider_gist.errors` that never contain the key. Methods return the
    API's decoded JSON (dicts), or :class:`~airflow_provider_gist.gist.Gist` for gists.

    :param twelvelabs_conn_id: connection id (type ``twelvelabs``), default ``twelvelabs_default``.
    :param retry_policy: override the retry bounds read from the connection.
    :param pacers: client-side rate-limit pacing, one window per API rate-limit group; share one
        :class:`~airflow_provider_gist.retry.RateLimitPacers` between hooks that spend one budget.
    """

    conn_name_attr = "twelvelabs_conn_id"
    default_conn_name = "twelvelabs_default"
    conn_type = "twelvelabs"
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
        self._session: requests.Session | None = None
        self._settings: dict[str, Any] | None = None
        self._sleep = time.sleep
        self._clock = time.monotonic

    def __repr__(self) -> str:
        return f"{type(self).__name__}(twelvelabs_conn_id={self.twelvelabs_conn_id!r})"

    # ------------------------------------------------------------------ connection and session

    @property
    def settings(self) -> dict[str, Any]:
        """Our settings from the connection's extras (API version, model, timeouts, retries)."""
        if self._settings is None:
            conn = self._get_twelvelabs_connection()
            self._settings = connection_settings(conn.extra_dejson, self.twelvelabs_conn_id)
        return self._settings

    @property
    def retry_policy(self) -> RetryPolicy:
        if self._retry_policy_override is not None:
            return self._retry_policy_override
        return RetryPolicy.from_settings(self.settings)

    def _get_twelvelabs_connection(self) -> Any:
        try:
            return self.get_connection(self.twelvelabs_conn_id)
        except Exception as err:  # the SDK raises AirflowNotFoundException, or others via secrets backends
            if type(err).__name__ in ("AirflowNotFoundException", "ConnectionNotFound"):
                raise GistConfigError(
                    f"connection {self.twelvelabs_conn_id!r} is not defined: create it in the UI "
                    f"(type TwelveLabs) or set AIRFLOW_CONN_{self.twelvelabs_conn_id.upper()}"
                ) from None
            raise

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A session with ``x-api-key`` set and our own extras kept out of the headers."""
        conn = self._get_twelvelabs_connection()
        if not conn.password:
            raise GistConfigError(
                f"connection {self.twelvelabs_conn_id!r} has no API key: put it in the password field"
            )
        session = super().get_conn(headers, extra_options)
        for key in OWN_EXTRAS:
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

    def url_for(self, path: str) -> str:
        """The one place that builds API URLs: base URL + ``/<api version>/`` + path."""
        base = self.url_from_endpoint("").rstrip("/")
        return f"{base}/{self.settings['api_version']}/{path.lstrip('/')}"

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one API call with retries; return the decoded JSON body (``None`` when empty).

        ``idempotent`` defaults to ``True`` for GET/PUT/DELETE and ``False`` for POST/PATCH.
        Raises :class:`GistApiError` subclasses; never includes the key in them.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        response = self._send_with_retries(
            method, path, params=params, json_body=json_body, data=data, files=files, idempotent=idempotent
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GistApiError(
                "the server answered 2xx with a body that is not valid JSON",
                status=response.status_code,
                method=method,
                path=self._api_path(path),
            ) from None

    def _api_path(self, path: str) -> str:
        return f"/{self.settings['api_version']}/{path.lstrip('/')}"

    def _send_with_retries(
        self,
        method: str,
        path: str,
        *,
        params: Any,
        json_body: Any,
        data: Any,
        files: Any,
        idempotent: bool,
    ) -> requests.Response:
        policy = self.retry_policy
        started = self._clock()
        url = self.url_for(path)
        api_path = self._api_path(path)
        timeout = (self.settings["connect_timeout"], self.settings["read_timeout"])
        pacer = self.pacers.for_call(method, path)
        attempt = 0
        while True:
            attempt += 1
            remaining = policy.deadline - (self._clock() - started)
            pacer.acquire(budget=max(0.0, remaining))
            if files:
                for handle in files.values():
                    # a retried upload must resend the whole file, not the unread rest
                    stream = handle[1] if isinstance(handle, tuple) else handle
                    if hasattr(stream, "seek"):
                        stream.seek(0)
            try:
                prepared = self.session.prepare_request(
                    requests.Request(method, url, params=params, json=json_body, data=data, files=files)
                )
                response = self.run_and_check(
                    self.session, prepared, {"timeout": timeout, "check_response": False}
                )
            except (ConnectTimeout, ReadTimeout, RequestsConnectionError) as err:
                pacer.observe({}, 0)
                never_sent = isinstance(err, ConnectTimeout) or _is_refused(err)
                failure = GistTransientError(
                    f"{_describe_network_error(err)} (attempt {attempt} of {policy.max_attempts})",
                    method=method,
                    path=api_path,
                )
                if not (idempotent or never_sent):
                    raise GistTransientError(
                        f"{_describe_network_error(err)}; not retried because the request may have "
                        "been processed (it can create a resource)",
                        method=method,
                        path=api_path,
                    ) from None
                wait = policy.next_wait(attempt, self._clock() - started)
                if wait is None:
                    raise failure from None
                self.log.warning("%s %s: %s; retrying in %.1fs", method, api_path, failure.api_message, wait)
                self._sleep(wait)
                continue

            pacer.observe(response.headers, response.status_code)
            if response.status_code < 400:
                return response
            error = error_from_response(
                response.status_code, response.text, response.headers, method=method, path=api_path
            )
            if not is_retryable_status(response.status_code, idempotent=idempotent):
                raise error
            wait = policy.next_wait(attempt, self._clock() - started, error.retry_after)
            if wait is None:
                raise error
            self.log.warning(
                "%s %s answered HTTP %s%s; retrying in %.1fs (attempt %d of %d)",
                method,
                api_path,
                response.status_code,
                f" [{error.code}]" if error.code else "",
                wait,
                attempt,
                policy.max_attempts,
            )
            self._sleep(wait)

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, page_limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a page-numbered listing, one page at a time.

        Stops at ``page_info.total_page``, or at an empty page for servers that do not send it.
        """
        base = dict(params or {})
        page = 1
        while page <= MAX_PAGES:
            body = self.request("GET", path, params=_query({**base, "page": page, "page_limit": page_limit}))
            items = (body or {}).get("data") or []
            yield from items
            total = ((body or {}).get("page_info") or {}).get("total_page")
            if not items or (isinstance(total, int) and page >= total):
                return
            page += 1

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
        return True, f"Connected to TwelveLabs API {self.settings['api_version']} at {self.base_url}"

    # ------------------------------------------------------------------ indexes

    def create_index(
        self,
        index_name: str,
        *,
        model_name: str = "pegasus1.2",
        model_options: tuple[str, ...] = ("visual", "audio"),
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

    def ensure_index(self, index_name: str, *, model_name: str = "pegasus1.2") -> str:
        """Id of the index named ``index_name``, creating it (with a Pegasus model) if missing."""
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
        self, url: str, *, filename: str | None = None, user_metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /assets`` with ``method=url``; returns the asset (status ``processing`` or ``ready``)."""
        fields: dict[str, Any] = {"method": "url", "url": validate_video_url(url)}
        if filename:
            fields["filename"] = filename
        if user_metadata:
            fields["user_metadata"] = json.dumps(dict(user_metadata))
        return self.request("POST", "assets", files=_multipart(fields))

    def create_asset_from_file(
        self,
        file: str | Path | IO[bytes],
        *,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /assets`` with ``method=direct`` uploading a local file or an open binary stream."""
        fields: dict[str, Any] = {"method": "direct"}
        if user_metadata:
            fields["user_metadata"] = json.dumps(dict(user_metadata))
        if isinstance(file, str | Path):
            path = Path(file)
            if not path.is_file():
                raise GistValidationError(f"file {str(path)!r} does not exist or is not a file")
            name = filename or path.name
            fields["filename"] = name
            with path.open("rb") as handle:
                return self.request("POST", "assets", files={**_multipart(fields), "file": (name, handle)})
        name = filename or Path(getattr(file, "name", "upload.mp4")).name
        fields["filename"] = name
        return self.request("POST", "assets", files={**_multipart(fields), "file": (name, file)})

    def get_asset(self, asset_id: str) -> dict[str, Any]:
        return self.request("GET", f"assets/{validate_id(asset_id, 'asset_id')}")

    def list_assets(self, *, filename: str | None = None) -> list[dict[str, Any]]:
        """Every asset (all pages), optionally those whose filename contains ``filename``."""
        return list(self.paginate("assets", {"filename": filename} if filename else {}))

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
        return self.request(
            "GET",
            f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets/"
            f"{validate_id(indexed_asset_id, 'indexed_asset_id')}",
        )

    def list_indexed_assets(
        self,
        index_id: str,
        *,
        status: list[str] | None = None,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every indexed asset of an index (all pages), with the API's filters."""
        return list(
            self.iter_indexed_assets(index_id, status=status, filename=filename, user_metadata=user_metadata)
        )

    def iter_indexed_assets(
        self,
        index_id: str,
        *,
        status: list[str] | None = None,
        filename: str | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {}
        if status:
            params["status"] = list(status)
        if filename:
            params["filename"] = filename
        for key, value in (user_metadata or {}).items():
            params[f"user_metadata[{key}]"] = value
        return self.paginate(f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets", params)

    # ------------------------------------------------------------------ legacy tasks and videos

    def create_task(
        self,
        index_id: str,
        *,
        video_url: str | None = None,
        video_file: str | Path | None = None,
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
            return self.request("POST", "tasks", files=_multipart(fields))
        path = Path(str(video_file))
        if not path.is_file():
            raise GistValidationError(f"video_file {str(path)!r} does not exist or is not a file")
        with path.open("rb") as handle:
            return self.request(
                "POST", "tasks", files={**_multipart(fields), "video_file": (path.name, handle)}
            )

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"tasks/{validate_id(task_id, 'indexing_task_id')}")

    def list_videos(
        self, index_id: str, *, filename: str | None = None, user_metadata: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every video of an index (legacy view; all pages)."""
        params: dict[str, Any] = {"filename": filename} if filename else {}
        for key, value in (user_metadata or {}).items():
            params[f"user_metadata[{key}]"] = value
        return list(self.paginate(f"indexes/{validate_id(index_id, 'index_id')}/videos", params))

    def get_video(self, index_id: str, video_id: str) -> dict[str, Any]:
        return self.request(
            "GET", f"indexes/{validate_id(index_id, 'index_id')}/videos/{validate_id(video_id, 'video_id')}"
        )

    # ------------------------------------------------------------------ analysis and gists

    def analyze(
        self,
        *,
        prompt: str,
        model_name: str | None = None,
        asset_id: str | None = None,
        video_id: str | None = None,
        video_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /analyze`` with ``stream: false``; returns ``{id, data, finish_reason, usage}``.

        Give exactly one of ``asset_id`` (current API), ``video_url`` or ``video_id``
        (legacy, pegasus1.2 only).
        """
        given = [
            name
            for name, value in (("asset_id", asset_id), ("video_id", video_id), ("video_url", video_url))
            if value is not None
        ]
        if len(given) != 1:
            raise GistValidationError("analyze needs exactly one of asset_id, video_id and video_url")
        model = gist_model.validate_model(
            model_name or self.settings["default_model"], legacy_video_id=video_id is not None
        )
        body: dict[str, Any] = {"model_name": model, "prompt": prompt, "stream": False}
        if asset_id is not None:
            body["video"] = {"type": "asset_id", "asset_id": validate_id(asset_id, "asset_id")}
        elif video_url is not None:
            body["video"] = {"type": "url", "url": validate_video_url(video_url)}
        else:
            body["video_id"] = validate_id(video_id, "video_id")
        if temperature is not None:
            body["temperature"] = gist_model.validate_temperature(temperature)
        if max_tokens is not None:
            body["max_tokens"] = gist_model.validate_max_tokens(max_tokens, model)
        if response_format is not None:
            body["response_format"] = dict(response_format)
        # /analyze creates nothing server-side, so a retry after a 5xx cannot duplicate a resource.
        return self.request("POST", "analyze", json_body=body, idempotent=True)

    def generate_gist(
        self,
        *,
        asset_id: str | None = None,
        video_id: str | None = None,
        types: Any = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = gist_model.DEFAULT_TEMPERATURE,
        max_tokens: int = gist_model.DEFAULT_MAX_TOKENS,
        method: str = "analyze",
        index_id: str | None = None,
        source_updated_at: str | None = None,
    ) -> Gist:
        """Generate one video's gist; returns a :class:`Gist` with only the requested parts set.

        ``method="analyze"`` (default) asks ``POST /analyze`` for JSON shaped by a json_schema
        built from ``types``. An answer cut off at ``max_tokens`` or not valid as a gist is
        retried once with twice the tokens, then raises :class:`GistModelOutputError`.
        ``method="gist"`` calls the legacy ``POST /gist`` (removed from the public API on
        2026-02-15) for deployments that still serve it.
        """
        request = prepare_gist_request(
            asset_id=asset_id,
            video_id=video_id,
            types=types,
            model_name=model_name or self.settings["default_model"],
            prompt=prompt,
            temperature=temperature,
            max_tokens=max_tokens,
            method=method,
            index_id=index_id,
        )
        if request.method == "gist":
            body = self.request(
                "POST",
                "gist",
                json_body={"video_id": request.video_ref, "types": [t.value for t in request.types]},
                idempotent=True,
            )
            return request.gist_from_legacy(body, source_updated_at=source_updated_at)
        tokens = request.max_tokens
        last_error: GistModelOutputError | None = None
        for _ in range(2):
            answer = self.analyze(**request.analyze_kwargs(tokens))
            try:
                return request.gist_from_analyze(answer, source_updated_at=source_updated_at)
            except GistModelOutputError as err:
                last_error = err
                more = request.more_tokens(tokens)
                self.log.warning("%s; retrying once with max_tokens=%d", err, more)
                tokens = more
        assert last_error is not None
        raise GistModelOutputError(
            f"{last_error} (after one retry with more tokens)",
            finish_reason=last_error.finish_reason,
            generation_id=last_error.generation_id,
        )


class GistRequest:
    """A validated gist request: everything checked before any HTTP call, shared by sync and async paths."""

    def __init__(
        self,
        *,
        video_ref: str,
        video_ref_type: str,
        types: tuple[GistType, ...],
        model: str,
        prompt: str,
        prompt_version: str,
        temperature: float,
        max_tokens: int,
        method: str,
        index_id: str | None,
    ) -> None:
        self.video_ref = video_ref
        self.video_ref_type = video_ref_type
        self.types = types
        self.model = model
        self.prompt = prompt
        self.prompt_version = prompt_version
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.method = method
        self.index_id = index_id
        self.schema = gist_model.build_json_schema(types)

    def analyze_kwargs(self, max_tokens: int) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "model_name": self.model,
            **{self.video_ref_type: self.video_ref},
            "temperature": self.temperature,
            "max_tokens": max_tokens,
            "response_format": {"type": "json_schema", "json_schema": self.schema},
        }

    def more_tokens(self, tokens: int) -> int:
        return min(gist_model.MAX_TOKENS_RANGE[self.model][1], max(tokens * 2, 256))

    def gist_from_analyze(self, answer: Mapping[str, Any], *, source_updated_at: str | None = None) -> Gist:
        """The gist in a non-stream ``/analyze`` answer (``data`` holds the JSON text)."""
        decoded = gist_model.decode_analyze_data(answer, video_ref=self.video_ref)
        return self._gist(decoded, answer, self.prompt_version, source_updated_at)

    def gist_from_legacy(self, body: Mapping[str, Any], *, source_updated_at: str | None = None) -> Gist:
        """The gist in a legacy ``/gist`` answer (the parts are top-level keys)."""
        return self._gist(body, body, "legacy-gist", source_updated_at)

    def _gist(
        self,
        parts: Mapping[str, Any],
        answer: Mapping[str, Any],
        prompt_version: str,
        source_updated_at: str | None,
    ) -> Gist:
        output_tokens, input_tokens = gist_model.usage_of(answer)
        gist = gist_model.gist_from_answer(
            parts,
            types=self.types,
            video_ref=self.video_ref,
            video_ref_type=self.video_ref_type,
            model=self.model,
            generation_id=str(answer.get("id") or ""),
            output_tokens=output_tokens,
            input_tokens=input_tokens,
            index_id=self.index_id,
            source_updated_at=source_updated_at,
        )
        return replace(gist, prompt_version=prompt_version)


def prepare_gist_request(
    *,
    asset_id: str | None,
    video_id: str | None,
    types: Any,
    model_name: str,
    prompt: str | None = None,
    temperature: float = gist_model.DEFAULT_TEMPERATURE,
    max_tokens: int = gist_model.DEFAULT_MAX_TOKENS,
    method: str = "analyze",
    index_id: str | None = None,
) -> GistRequest:
    """Validate every input of a gist request (names the bad field) and build the request."""
    if (asset_id in (None, "")) == (video_id in (None, "")):
        raise GistValidationError(
            "give exactly one of asset_id and video_id (got "
            + ("both" if asset_id and video_id else "neither")
            + ")"
        )
    if method not in ("analyze", "gist"):
        raise GistValidationError(f"method {method!r} is not supported: use 'analyze' or 'gist'")
    video_ref_type = "asset_id" if asset_id else "video_id"
    video_ref = validate_id(asset_id or video_id, video_ref_type)
    if method == "gist" and video_ref_type != "video_id":
        raise GistValidationError("method 'gist' (legacy POST /gist) takes video_id, not asset_id")
    parsed_types = gist_model.parse_types(types)
    model = gist_model.validate_model(model_name, legacy_video_id=video_ref_type == "video_id")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise GistValidationError("prompt must be a non-empty string when given")
    if prompt:
        prompt_text = prompt.strip()
        prompt_version = "custom-" + hashlib.sha256(prompt_text.encode()).hexdigest()[:12]
    else:
        prompt_text = gist_model.build_prompt(parsed_types)
        prompt_version = gist_model.PROMPT_VERSION
    return GistRequest(
        video_ref=video_ref,
        video_ref_type=video_ref_type,
        types=parsed_types,
        model=model,
        prompt=prompt_text,
        prompt_version=prompt_version,
        temperature=gist_model.validate_temperature(temperature),
        max_tokens=gist_model.validate_max_tokens(max_tokens, model),
        method=method,
        index_id=validate_id(index_id, "index_id") if index_id else None,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def _positive(extra: Mapping[str, Any], key: str, default: float, conn_id: str) -> float:
    value = extra.get(key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GistConfigError(f"connection {conn_id!r}: {key} must be a number, got {value!r}") from None
    if number <= 0:
        raise GistConfigError(f"connection {conn_id!r}: {key} must be positive")
    return number


def _multipart(fields: Mapping[str, Any]) -> dict[str, tuple[None, str]]:
    """Text fields sent as multipart parts, as the upload endpoints require even without a file."""
    return {name: (None, str(value)) for name, value in fields.items()}


def _query(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
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


def _is_refused(err: Exception) -> bool:
    """A connection refused or a DNS failure: the request never reached the server."""
    text = repr(err)
    return any(
        marker in text for marker in ("NewConnectionError", "Connection refused", "NameResolutionError")
    )


def _describe_network_error(err: Exception) -> str:
    if isinstance(err, ConnectTimeout):
        return "timed out connecting to the TwelveLabs API"
    if isinstance(err, ReadTimeout):
        return "timed out waiting for the TwelveLabs API to answer"
    if _is_refused(err):
        return "could not connect to the TwelveLabs API (connection refused or host not found)"
    return "the connection to the TwelveLabs API failed (reset or closed)"


def jittered(value: float, spread: float = 0.1) -> float:
    """``value`` spread by up to ``spread`` either way, so parallel pollers do not march in step."""
    return value * (1 + spread * (2 * random.random() - 1))


# ====================================================================== async hook (triggers)

#: Connection extras that configure the HTTP client rather than being headers (as in HttpHook).
_HTTP_OPTION_EXTRAS = frozenset(
    {
        "stream",
        "cert",
        "proxies",
        "proxy",
        "timeout",
        "verify",
        "verify_ssl",
        "allow_redirects",
        "max_redirects",
        "trust_env",
        "check_response",
        "srv_lookup",
    }
)


def connection_settings(extra: Mapping[str, Any], conn_id: str) -> dict[str, Any]:
    """Our settings from a connection's extras, validated: the same rules as ``GistHook.settings``."""
    api_version = str(extra.get("api_version") or DEFAULT_API_VERSION)
    if api_version not in API_VERSIONS:
        raise GistConfigError(
            f"connection {conn_id!r}: api_version {api_version!r} is not supported "
            f"(use {', '.join(API_VERSIONS)})"
        )
    return {
        "api_version": api_version,
        "default_model": str(extra.get("default_model") or gist_model.DEFAULT_MODEL),
        "connect_timeout": _positive(extra, "connect_timeout", 10.0, conn_id),
        "read_timeout": _positive(extra, "read_timeout", 120.0, conn_id),
        "max_attempts": int(_positive(extra, "max_attempts", 6, conn_id)),
        "retry_deadline": _positive(extra, "retry_deadline", 300.0, conn_id),
    }


def _async_base_url(host: str | None, schema: str | None, port: int | None) -> str:
    """The API root from the connection, with the sync hook's rules: bare host = https, empty = default."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_HOST
    base = host if "://" in host else f"{schema or 'https'}://{host}"
    base = base.rstrip("/")
    if port:
        base = f"{base}:{port}"
    return base


class GistAsyncHook(HttpAsyncHook):
    """Read-only, asynchronous access to the TwelveLabs API, for triggers.

    The connection (type ``twelvelabs``) is resolved once, asynchronously, in :meth:`config`:
    never with the sync ``get_connection``, which blocks or fails on a triggerer's event loop.
    The API key goes out as ``x-api-key`` (never as Basic auth), our own extras
    (:data:`OWN_EXTRAS`) are never sent as headers, an empty host means :data:`DEFAULT_HOST`,
    and every path is prefixed with the connection's ``api_version``.

    Calls are retried under the same :class:`~airflow_provider_gist.retry.RetryPolicy` as
    :class:`GistHook` (429 honouring ``Retry-After``/``X-Ratelimit-Reset``, 5xx and connection
    failures with exponential backoff and jitter, bounded by attempts and a deadline), waiting
    with ``asyncio.sleep`` only. Failures raise the typed errors of
    :mod:`~airflow_provider_gist.errors` built by :func:`error_from_response`; they never hold
    the key. Methods return the API's decoded JSON (dicts).

    :param twelvelabs_conn_id: connection id, default ``twelvelabs_default``.
    :param retry_policy: override the retry bounds read from the connection (a trigger that
        counts its own errors passes ``RetryPolicy(max_attempts=1)``).
    """

    conn_name_attr = "twelvelabs_conn_id"
    default_conn_name = "twelvelabs_default"
    conn_type = "twelvelabs"
    hook_name = "TwelveLabs (async)"
    default_host = DEFAULT_HOST

    def __init__(
        self, twelvelabs_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        # retry_limit=1 switches off HttpAsyncHook's own retry (fixed delay, 5xx only, never
        # 429): ours below replaces it, so waits are not multiplied by two nested loops.
        super().__init__(method="GET", http_conn_id=twelvelabs_conn_id, retry_limit=1, retry_delay=0.0)
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self._retry_policy_override = retry_policy
        self._settings: dict[str, Any] | None = None
        # seams for tests: time moves only when the code sleeps
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        self._clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"{type(self).__name__}(twelvelabs_conn_id={self.twelvelabs_conn_id!r})"

    # ------------------------------------------------------------------ connection

    async def _aget_twelvelabs_connection(self) -> Any:
        try:
            return await get_async_connection(conn_id=self.twelvelabs_conn_id, hook=self)
        except Exception as err:  # the SDK raises AirflowNotFoundException, or others via secrets backends
            if type(err).__name__ in ("AirflowNotFoundException", "ConnectionNotFound"):
                raise GistConfigError(
                    f"connection {self.twelvelabs_conn_id!r} is not defined: create it in the UI "
                    f"(type TwelveLabs) or set AIRFLOW_CONN_{self.twelvelabs_conn_id.upper()}"
                ) from None
            raise

    async def config(self) -> SessionConfig:
        """Resolve the connection once (async) into base URL, headers and client options."""
        if self._config is None:
            conn = await self._aget_twelvelabs_connection()
            extra = await get_async_extra_dejson(conn)
            settings = connection_settings(extra, self.twelvelabs_conn_id)
            if not conn.password:
                raise GistConfigError(
                    f"connection {self.twelvelabs_conn_id!r} has no API key: put it in the password field"
                )
            # Like HttpHook, other extras are extra headers; ours and the client options are not.
            headers = {
                str(key): str(value)
                for key, value in extra.items()
                if key not in OWN_EXTRAS and key not in _HTTP_OPTION_EXTRAS and value is not None
            }
            headers["Accept"] = "application/json"
            headers["x-api-key"] = conn.password
            options: dict[str, Any] = {}
            verify = extra.get("verify", extra.get("verify_ssl"))
            if verify is not None and str(verify).lower() in ("false", "0", "no"):
                options["ssl"] = False
            proxy = extra.get("proxy") or extra.get("proxies")
            if isinstance(proxy, Mapping):  # requests-style {"https": url}
                proxy = proxy.get("https") or proxy.get("http")
            if isinstance(proxy, str) and proxy:
                options["proxy"] = proxy
            self.base_url = _async_base_url(conn.host, conn.schema, conn.port)
            self._settings = settings
            self._config = SessionConfig(
                base_url=self.base_url, headers=headers, auth=None, extra_options=options
            )
        return self._config

    @property
    def settings(self) -> dict[str, Any]:
        """Our settings from the connection's extras; available once :meth:`config` has run."""
        if self._settings is None:
            raise RuntimeError("await GistAsyncHook.config() (or any call) before reading settings")
        return self._settings

    @property
    def retry_policy(self) -> RetryPolicy:
        if self._retry_policy_override is not None:
            return self._retry_policy_override
        return RetryPolicy.from_settings(self.settings)

    # ------------------------------------------------------------------ requests

    async def aget(self, path: str, *, params: Mapping[str, str | int | float] | None = None) -> Any:
        """``GET /<api version>/<path>`` with retries; return the decoded JSON (``None`` when empty).

        Raises :class:`~airflow_provider_gist.errors.GistApiError` subclasses: auth (401/403),
        not found, rate limited or transient once the retry budget is spent.
        """
        await self.config()
        api_path = f"/{self.settings['api_version']}/{path.lstrip('/')}"
        policy = self.retry_policy
        timeout = aiohttp.ClientTimeout(
            total=self.settings["connect_timeout"] + self.settings["read_timeout"],
            connect=self.settings["connect_timeout"],
            sock_read=self.settings["read_timeout"],
        )
        started = self._clock()
        attempt = 0
        async with self.session(method="GET") as http:
            while True:
                attempt += 1
                try:
                    response = await http.run(
                        endpoint=api_path,
                        data=dict(params) if params else None,
                        extra_options={"check_response": False, "timeout": timeout},
                    )
                    try:
                        raw = await response.read()
                    finally:
                        response.release()
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as err:
                    failure = GistTransientError(
                        f"{_describe_async_network_error(err)} (attempt {attempt} of {policy.max_attempts})",
                        method="GET",
                        path=api_path,
                    )
                    wait = policy.next_wait(attempt, self._clock() - started)
                    if wait is None:
                        raise failure from None
                    self.log.warning("GET %s: %s; retrying in %.1fs", api_path, failure.api_message, wait)
                    await self._sleep(wait)
                    continue

                text = raw.decode("utf-8", errors="replace")
                if response.status < 400:
                    if not text.strip():
                        return None
                    try:
                        return json.loads(text)
                    except ValueError:
                        raise GistApiError(
                            "the server answered 2xx with a body that is not valid JSON",
                            status=response.status,
                            method="GET",
                            path=api_path,
                        ) from None
                error = error_from_response(
                    response.status, text, response.headers, method="GET", path=api_path
                )
                if not is_retryable_status(response.status, idempotent=True):
                    raise error
                wait = policy.next_wait(attempt, self._clock() - started, error.retry_after)
                if wait is None:
                    raise error
                self.log.warning(
                    "GET %s answered HTTP %s%s; retrying in %.1fs (attempt %d of %d)",
                    api_path,
                    response.status,
                    f" [{error.code}]" if error.code else "",
                    wait,
                    attempt,
                    policy.max_attempts,
                )
                await self._sleep(wait)

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        """``GET /assets/{asset_id}``: the asset (``status`` processing, ready or failed)."""
        return await self.aget(f"assets/{validate_id(asset_id, 'asset_id')}")

    async def get_indexed_asset(self, index_id: str, indexed_asset_id: str) -> dict[str, Any]:
        """``GET /indexes/{index_id}/indexed-assets/{indexed_asset_id}``: the indexed asset."""
        return await self.aget(
            f"indexes/{validate_id(index_id, 'index_id')}/indexed-assets/"
            f"{validate_id(indexed_asset_id, 'indexed_asset_id')}"
        )

    async def get_task(self, task_id: str) -> dict[str, Any]:
        """Legacy ``GET /tasks/{task_id}``: the video indexing task."""
        return await self.aget(f"tasks/{validate_id(task_id, 'indexing_task_id')}")


def _describe_async_network_error(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorError):
        return "could not connect to the TwelveLabs API (connection refused or host not found)"
    if isinstance(err, TimeoutError):
        return "timed out waiting for the TwelveLabs API"
    if isinstance(err, aiohttp.ClientPayloadError):
        return "the TwelveLabs API's answer was cut off"
    return "the connection to the TwelveLabs API failed (reset or closed)"
