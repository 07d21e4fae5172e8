"""The gist view app under test: tokens of the API server's auth manager, a fresh store home, a client.

Import the fixtures into a test module (``from tests.helpers.gist_view import auth, client, home``)
and call :func:`get` for requests with a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def auth(airflow_db) -> dict[str, str]:
    """Bearer tokens of an admin and of a user with no role (SimpleAuthManager)."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = init_auth_manager()
    return {
        "admin": manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin")),
        "nobody": manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None)),
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """A fresh AIRFLOW_HOME for the embedded store the view reads (the metadata DB stays the tests')."""
    from airflow_provider_gist.plugins import app as view_app

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    view_app._open_store.cache_clear()
    yield tmp_path
    view_app._open_store.cache_clear()


@pytest.fixture
def client(home: Path) -> Iterator[Any]:
    """The gist view app as the API server mounts it (``/gists``), through its lazy wrapper."""
    from fastapi.testclient import TestClient

    from airflow_provider_gist.plugins.gist_view import LazyGistViewApp

    with TestClient(LazyGistViewApp(), root_path="/gists") as test_client:
        yield test_client


def get(client: Any, path: str, token: str | None = None, **kwargs: Any) -> Any:
    """``GET path`` with ``token`` as bearer (none: anonymous), redirects not followed."""
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers, follow_redirects=False, **kwargs)
