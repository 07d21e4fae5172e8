"""GistAsyncHook with HTTP mocked: connection resolution, headers, retries, typed errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from airflow_provider_gist.client.retry import RetryPolicy
from airflow_provider_gist.errors import (
    GistApiError,
    GistAuthError,
    GistConfigError,
    GistNotFoundError,
    GistRateLimitedError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import DEFAULT_HOST, GistAsyncHook, GistHook
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json
from tests.unit.aio_mock import get_calls, mock_aiohttp

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"
ASSET_URL = f"{BASE}/v1.3/assets/{ASSET}"


@pytest.fixture
def http():
    with mock_aiohttp() as mocked:
        yield mocked


@pytest.fixture
def conn(monkeypatch):
    def set_conn(host: str = BASE, api_key: str = TEST_API_KEY, **extra):
        extra.setdefault("max_attempts", 4)
        monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(host, api_key, **extra))

    set_conn()
    return set_conn


@pytest.fixture(autouse=True)
def no_sync_connection_lookup(monkeypatch):
    """Async code must never resolve the connection through the sync API."""

    def refuse(*args, **kwargs):
        raise AssertionError("sync get_connection called from async code")

    monkeypatch.setattr(GistAsyncHook, "get_connection", classmethod(refuse))
    monkeypatch.setattr(GistHook, "get_connection", classmethod(refuse))


def timed_hook(**kwargs: Any) -> Any:
    """A hook whose sleeps are recorded and advance a fake clock instead of waiting."""
    hook = GistAsyncHook(**kwargs)
    clock = {"now": time.monotonic()}
    hook.sleeps = []  # type: ignore[attr-defined]

    async def fake_sleep(seconds: float) -> None:
        hook.sleeps.append(round(seconds, 3))  # type: ignore[attr-defined]
        clock["now"] += seconds

    hook._sleep = fake_sleep
    hook._clock = lambda: clock["now"]
    return hook


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_sends_the_key_and_our_extras_never_as_headers(http, conn):
    conn(api_version="v1.3", read_timeout=30, default_model="pegasus1.2", **{"X-Team": "video"})
    http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"})
    assert run(timed_hook().get_asset(ASSET)) == {"_id": ASSET, "status": "ready"}
    [call] = get_calls(http, ASSET_URL)
    headers = call.kwargs["headers"]
    assert headers["x-api-key"] == TEST_API_KEY
    assert headers["X-Team"] == "video"  # other extras are headers, as with HttpHook
    for key in ("api_version", "read_timeout", "default_model", "max_attempts", "Authorization"):
        assert key not in headers
    assert call.kwargs.get("auth") is None  # never Basic auth


def test_resolves_the_connection_once(http, conn, monkeypatch):
    seen: list[str] = []
    original = GistAsyncHook.aget_connection.__func__  # type: ignore[attr-defined]

    async def counting(cls, conn_id):
        seen.append(conn_id)
        return await original(cls, conn_id)

    monkeypatch.setattr(GistAsyncHook, "aget_connection", classmethod(counting))
    http.get(ASSET_URL, payload={"status": "ready"}, repeat=True)
    hook = timed_hook()

    async def twice():
        await hook.get_asset(ASSET)
        await hook.get_asset(ASSET)

    run(twice())
    assert seen == ["twelvelabs_default"]


def test_an_empty_host_means_the_public_api(http, conn):
    conn(host="")
    http.get(f"{DEFAULT_HOST}/v1.3/assets/{ASSET}", payload={"status": "ready"})
    assert run(timed_hook().get_asset(ASSET)) == {"status": "ready"}


def test_a_bare_host_means_https(http, conn):
    conn(host="api.twelvelabs.test")
    http.get(ASSET_URL, payload={"status": "ready"})
    assert run(timed_hook().get_asset(ASSET)) == {"status": "ready"}


def test_an_unsupported_api_version_is_a_config_error(http, conn):
    conn(api_version="v9")
    with pytest.raises(GistConfigError, match="api_version"):
        run(timed_hook().get_asset(ASSET))


def test_a_missing_api_key_is_a_config_error(http, conn):
    conn(api_key="")
    with pytest.raises(GistConfigError, match="no API key"):
        run(timed_hook().get_asset(ASSET))


def test_paths_per_method(http, conn):
    index, indexed, task = "ix1", "ia1", "tk1"
    http.get(f"{BASE}/v1.3/indexes/{index}/indexed-assets/{indexed}", payload={"_id": indexed})
    http.get(f"{BASE}/v1.3/tasks/{task}", payload={"_id": task})
    hook = timed_hook()
    assert run(hook.get_indexed_asset(index, indexed)) == {"_id": indexed}
    assert run(hook.get_task(task)) == {"_id": task}


def test_bad_ids_fail_before_any_request(http, conn):
    with pytest.raises(GistValidationError, match=r"^indexing_task_id"):
        run(timed_hook().get_task("../x"))
    assert http.requests == {}


def test_429_waits_for_retry_after(http, conn):
    http.get(ASSET_URL, status=429, headers={"Retry-After": "3"}, body="")
    http.get(ASSET_URL, payload={"status": "ready"})
    hook = timed_hook()
    assert run(hook.get_asset(ASSET)) == {"status": "ready"}
    assert hook.sleeps == [3.0]


def test_429_falls_back_to_ratelimit_reset(http, conn):
    http.get(ASSET_URL, status=429, headers={"X-Ratelimit-Reset": str(time.time() + 5)}, body="")
    http.get(ASSET_URL, payload={"status": "ready"})
    hook = timed_hook()
    run(hook.get_asset(ASSET))
    assert 3.5 < hook.sleeps[0] <= 5.0


def test_5xx_and_connection_errors_back_off_and_are_bounded_by_attempts(http, conn):
    http.get(ASSET_URL, status=502, body="<html>bad gateway</html>")
    http.get(ASSET_URL, exception=aiohttp.ServerDisconnectedError())
    http.get(ASSET_URL, status=500, payload={"message": "boom"})
    http.get(ASSET_URL, status=500, payload={"message": "boom"})
    hook = timed_hook()
    with pytest.raises(GistTransientError, match="boom"):
        run(hook.get_asset(ASSET))
    assert len(get_calls(http, ASSET_URL)) == 4  # max_attempts=4
    assert len(hook.sleeps) == 3
    assert hook.sleeps[2] > hook.sleeps[0]


def test_retries_stop_at_the_deadline(http, conn):
    http.get(ASSET_URL, status=429, headers={"Retry-After": "20"}, body="", repeat=True)
    hook = timed_hook(retry_policy=RetryPolicy(max_attempts=10, deadline=30))
    with pytest.raises(GistRateLimitedError) as err:
        run(hook.get_asset(ASSET))
    assert hook.sleeps == [20.0]
    assert err.value.retry_after == 20.0


def test_a_retry_after_beyond_the_cap_is_not_waited_out(http, conn):
    http.get(ASSET_URL, status=429, headers={"Retry-After": "3600"}, body="")
    hook = timed_hook()
    with pytest.raises(GistRateLimitedError):
        run(hook.get_asset(ASSET))
    assert hook.sleeps == []


def test_401_and_404_are_typed_and_not_retried(http, conn):
    http.get(ASSET_URL, status=401, payload={"code": "api_key_invalid", "message": "The API key is invalid."})
    hook = timed_hook()
    with pytest.raises(GistAuthError) as err:
        run(hook.get_asset(ASSET))
    assert err.value.status == 401
    assert TEST_API_KEY not in str(err.value)
    http.get(ASSET_URL, status=400, payload={"code": "resource_not_exist", "message": "No asset."})
    with pytest.raises(GistNotFoundError):
        run(hook.get_asset(ASSET))
    assert hook.sleeps == []


def test_a_2xx_body_that_is_not_json_is_an_api_error(http, conn):
    http.get(ASSET_URL, status=200, body="<html>portal</html>")
    with pytest.raises(GistApiError, match="not valid JSON"):
        run(timed_hook().get_asset(ASSET))
