"""A redirect never carries the API key to another server (sync and async hook, real sockets).

Two loopback servers: the "API" answers every request with a redirect to the "other" server,
named by a different host (``localhost`` instead of ``127.0.0.1``) and port. HTTP libraries that
follow redirects drop ``Authorization`` on a host change, but not a custom ``x-api-key`` header,
so only not following at all keeps the key home. The other server records whatever reaches it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_gist.client.retry import RetryPolicy
from airflow_provider_gist.errors import GistApiError
from airflow_provider_gist.hooks.gist import GistHook
from airflow_provider_gist.hooks.gist_async import GistAsyncHook
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

ASSET = "6298d673f1090f1100476d4c"


@dataclass
class Server:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Config:
    status: int = 302
    location: str = ""


def _serve(config: _Config | None, seen: list[dict[str, str]]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            if config is None:  # the other server: a plausible answer, so a follower would succeed
                body = b'{"_id": "6298d673f1090f1100476d4c", "status": "ready", "data": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            else:
                body = b""
                self.send_response(config.status)
                self.send_header("Location", config.location + self.path)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def servers(monkeypatch) -> Iterator[tuple[Server, Server, _Config]]:
    other_seen: list[dict[str, str]] = []
    other_srv, other_url = _serve(None, other_seen)
    other = Server(other_url.replace("127.0.0.1", "localhost"), other_seen)
    config = _Config(location=other.url)
    api_seen: list[dict[str, str]] = []
    api_srv, api_url = _serve(config, api_seen)
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(api_url, max_attempts=2, retry_deadline=5)
    )
    try:
        yield Server(api_url, api_seen), other, config
    finally:
        for srv in (api_srv, other_srv):
            srv.shutdown()
            srv.server_close()


def _check(err: BaseException, api: Server, other: Server) -> None:
    assert api.requests, "the API server was never called"
    assert api.requests[0]["x-api-key"] == TEST_API_KEY  # the key did go to the connection's host
    assert other.requests == [], "the redirect was followed"
    text = f"{err} {err!r} {vars(err)}"
    assert "localhost" in text  # names where the redirect pointed
    assert TEST_API_KEY not in text
    assert "redirect" in str(err)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_sync_hook_never_follows_a_redirect(servers, status):
    api, other, config = servers
    config.status = status
    hook = GistHook(retry_policy=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(GistApiError) as caught:
            hook.get_asset(ASSET)
    finally:
        hook.close()
    _check(caught.value, api, other)
    assert caught.value.status == status


def test_sync_hook_never_follows_a_redirect_of_a_post(servers):
    api, other, config = servers
    config.status = 307  # 307 keeps method and body: a follower would repost to the other host
    hook = GistHook(retry_policy=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(GistApiError) as caught:
            hook.request("POST", "indexes", json_body={"index_name": "x"})
    finally:
        hook.close()
    _check(caught.value, api, other)


@pytest.mark.parametrize("status", [302, 307])
def test_async_hook_never_follows_a_redirect(servers, status):
    api, other, config = servers
    config.status = status
    hook = GistAsyncHook(retry_policy=RetryPolicy(max_attempts=1))
    with pytest.raises(GistApiError) as caught:
        asyncio.run(asyncio.wait_for(hook.get_asset(ASSET), 10))
    _check(caught.value, api, other)
    assert caught.value.status == status
