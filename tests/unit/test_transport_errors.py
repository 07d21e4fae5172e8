"""A connection dropped mid-body never escapes as a raw library exception, and never leaks the pacer.

Before the client's one retry loop, a ``ChunkedEncodingError`` or ``ContentDecodingError``
raised while reading an answer went past the retry loop untyped, and the rate-limit pacer kept
counting that call in flight forever (so, after enough of them, a whole window's budget looked
reserved and every thread waited). These tests cut answers off in the middle of their body, the
way ``requests`` and ``aiohttp`` report it, and check both halves: a typed
:class:`GistTransientError`, and the pacer's ``in_flight`` back to 0.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

from airflow_provider_gist.client.pacing import RateLimitPacer, RateLimitPacers
from airflow_provider_gist.errors import GistTransientError
from airflow_provider_gist.hooks.gist import GistAsyncHook, GistHook
from tests.conftest import twelvelabs_conn_json
from tests.unit.aio_mock import mock_aiohttp

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"
ASSET_URL = f"{BASE}/v1.3/assets/{ASSET}"
#: urllib3's errors for a body cut off mid-read, and what requests turns them into
MID_BODY = [
    urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(10 bytes read)"),
    urllib3.exceptions.DecodeError("Received response with content-encoding: gzip, but failed to decode"),
]


class CutOffBody(io.RawIOBase):
    """A urllib3-like raw body that gives a few bytes, then fails the way a dropped connection does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def stream(self, chunk_size: int, decode_content: bool = True) -> Any:
        yield b'{"_id": "6298d6'
        raise self.error

    def release_conn(self) -> None:
        pass


class CutOffAdapter(HTTPAdapter):
    """Answers 200 with headers, then drops the connection in the body (inside ``Session.send``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.sends = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sends += 1
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response.raw = CutOffBody(self.error)
        response.url = request.url or ""
        response.request = request
        return response


class LazySession(requests.Session):
    """A session whose ``send`` returns before the body is read (as with ``stream=True``), so the
    failure surfaces where the hook reads ``response.content``, not inside ``send``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.sends = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sends += 1
        return CutOffAdapter(self.error).send(request)


@pytest.fixture
def hook(monkeypatch) -> GistHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=3, read_timeout=5)
    )
    hook = GistHook()
    hook._sleep = lambda seconds: None  # retries cost no time
    hook.pacers = RateLimitPacers(lambda: RateLimitPacer(sleep=lambda seconds: None))
    return hook


def in_flight(hook: GistHook, method: str, path: str) -> int:
    return hook.pacers.for_call(method, path)._in_flight


def _with_session(hook: GistHook, session: requests.Session) -> requests.Session:
    real = hook.get_conn()  # the connection's headers (x-api-key), on the session under test
    session.headers.update(real.headers)
    real.close()
    hook._session = session
    return session


@pytest.mark.parametrize("cause", MID_BODY, ids=["chunked", "decoding"])
def test_a_body_cut_off_inside_send_is_a_typed_transient_error_and_frees_the_pacer(hook, cause):
    session = _with_session(hook, requests.Session())
    adapter = CutOffAdapter(cause)
    session.mount("https://", adapter)
    with pytest.raises(GistTransientError, match="answer was cut off"):
        hook.get_asset(ASSET)
    assert adapter.sends == 3  # a read: replayed up to the connection's 3 attempts
    assert in_flight(hook, "GET", f"assets/{ASSET}") == 0


@pytest.mark.parametrize("cause", MID_BODY, ids=["chunked", "decoding"])
def test_a_body_cut_off_while_the_hook_reads_it_is_a_typed_transient_error(hook, cause):
    session = _with_session(hook, LazySession(cause))
    with pytest.raises(GistTransientError, match="answer was cut off"):
        hook.get_asset(ASSET)
    assert session.sends == 3
    assert in_flight(hook, "GET", f"assets/{ASSET}") == 0


@pytest.mark.parametrize("cause", MID_BODY, ids=["chunked", "decoding"])
def test_a_create_cut_off_mid_body_is_not_replayed_and_frees_the_pacer(hook, cause):
    session = _with_session(hook, LazySession(cause))
    with pytest.raises(GistTransientError, match="cut off; not retried because the request may have"):
        hook.create_asset_from_url("https://cdn.example.com/a.mp4")
    assert session.sends == 1  # a create whose answer was lost is never sent twice blindly
    assert in_flight(hook, "POST", "assets") == 0


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ChunkedEncodingError("Connection broken"),
        requests.exceptions.ContentDecodingError("bad gzip"),
        requests.exceptions.ConnectionError("reset by peer"),
        requests.exceptions.RequestException("anything else requests may raise"),
    ],
    ids=["chunked", "decoding", "connection", "other"],
)
def test_every_requests_exception_from_send_is_typed_and_frees_the_pacer(hook, error):
    class Raising(requests.Session):
        def send(self, request, **kwargs):  # type: ignore[override]
            raise error

    _with_session(hook, Raising())
    with pytest.raises(GistTransientError):
        hook.get_asset(ASSET)
    assert in_flight(hook, "GET", f"assets/{ASSET}") == 0


# ------------------------------------------------------------------------------------ async hook


@pytest.fixture
def async_conn(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=3))


def _timed_async_hook() -> GistAsyncHook:
    hook = GistAsyncHook()
    clock = {"now": time.monotonic()}

    async def fake_sleep(seconds: float) -> None:
        clock["now"] += seconds

    hook._sleep = fake_sleep
    hook._clock = lambda: clock["now"]
    return hook


def _cut_off_reads(monkeypatch, failures: int) -> list[int]:
    """Make the next ``failures`` body reads fail as aiohttp does when the peer drops mid-body."""
    original = aiohttp.ClientResponse.read
    reads: list[int] = []

    async def read(self: aiohttp.ClientResponse) -> bytes:
        reads.append(1)
        if len(reads) <= failures:
            raise aiohttp.ClientPayloadError("Response payload is not completed")
        return await original(self)

    monkeypatch.setattr(aiohttp.ClientResponse, "read", read)
    return reads


def test_async_payload_cut_off_mid_read_is_a_typed_transient_error(async_conn, monkeypatch):
    reads = _cut_off_reads(monkeypatch, failures=10)
    with mock_aiohttp() as http:
        http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"}, repeat=True)
        with pytest.raises(GistTransientError, match="answer was cut off"):
            asyncio.run(asyncio.wait_for(_timed_async_hook().get_asset(ASSET), 5))
    assert len(reads) == 3  # every attempt read a cut-off body; none escaped as ClientPayloadError


def test_async_payload_cut_off_once_is_retried(async_conn, monkeypatch):
    reads = _cut_off_reads(monkeypatch, failures=1)
    with mock_aiohttp() as http:
        http.get(ASSET_URL, payload={"_id": ASSET, "status": "ready"}, repeat=True)
        body = asyncio.run(asyncio.wait_for(_timed_async_hook().get_asset(ASSET), 5))
    assert body == {"_id": ASSET, "status": "ready"}
    assert len(reads) == 2
