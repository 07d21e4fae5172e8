"""Who sees which gists: the gist view asks the auth manager about each DAG that stored a gist.

SimpleAuthManager (the tests' default) grants a role over every DAG at once, so it cannot show a
per-DAG rule. :class:`PerDagAuthManager` is SimpleAuthManager plus a table of the DAGs each user
may read, the way FAB's per-DAG permissions or any other auth manager would answer
``is_authorized_dag`` / ``filter_authorized_dag_ids``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from tests.helpers.storage_samples import make_gist

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: user -> the DAGs they may read; None: every DAG
DAG_RULES: dict[str, set[str] | None] = {
    "alice": {"dag_a"},
    "bob": {"dag_b", "dag_never_stored"},
    "carol": set(),
    "root": None,
}


class PerDagAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose DAG access is per DAG and per user (:data:`DAG_RULES`)."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if method != "GET":
            return False
        allowed = DAG_RULES.get(user.get_name(), set())
        if allowed is None:
            return True
        return bool(details is not None and details.id in allowed)


@pytest.fixture
def tokens(airflow_db, monkeypatch) -> dict[str, str]:
    """Bearer tokens of each user of :data:`DAG_RULES`, issued by :class:`PerDagAuthManager`."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.PerDagAuthManager")
    # the auth manager is a process-wide singleton: swap it for this test only
    monkeypatch.setattr(api_app._AuthManagerState, "instance", None)
    manager = api_app.init_auth_manager()
    assert isinstance(manager, PerDagAuthManager)
    # role viewer: SimpleAuthManager's rules still grant the asset read the list route asks for
    return {
        name: manager.generate_jwt(SimpleAuthManagerUser(username=name, role="viewer")) for name in DAG_RULES
    }


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from airflow_provider_gist.plugins import app as view_app
    from airflow_provider_gist.plugins.gist_view import LazyGistViewApp

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    view_app._open_store.cache_clear()
    with TestClient(LazyGistViewApp(), root_path="/gists") as test_client:
        yield test_client
    view_app._open_store.cache_clear()


def _store_as(dag_id: str | None, *refs: str) -> None:
    from airflow_provider_gist.storage import SqlGistStore

    SqlGistStore(dag_id=dag_id).put_many(
        [
            make_gist(ref, "idxA", title=f"{ref} of {dag_id}", generated_at=f"2026-11-2{n}T00:00:00Z")
            for n, ref in refs
        ]
    )


def _refs(client: Any, token: str, **params: Any) -> list[str]:
    resp = client.get("/api/gists", params=params, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return [g["video_ref"] for g in resp.json()["gists"]]


def test_each_user_sees_only_the_gists_of_dags_they_may_read(client, tokens) -> None:
    _store_as("dag_a", (1, "a1"), (3, "a3"), (5, "a5"))
    _store_as("dag_b", (2, "b2"), (4, "b4"))
    _store_as(None, (6, "loose6"))  # stored outside any DAG

    assert _refs(client, tokens["alice"]) == ["a5", "a3", "a1"]
    assert _refs(client, tokens["bob"]) == ["b4", "b2"]
    assert _refs(client, tokens["carol"]) == []
    assert _refs(client, tokens["root"]) == ["loose6", "a5", "b4", "a3", "b2", "a1"]

    # filters and paging apply within what the user may see
    page = client.get(
        "/api/gists", params={"page_size": 2}, headers={"Authorization": f"Bearer {tokens['alice']}"}
    ).json()
    assert [g["video_ref"] for g in page["gists"]] == ["a5", "a3"] and page["has_more"] is True
    assert _refs(client, tokens["bob"], text="a5") == []
    assert all(
        g["dag_id"] == "dag_a"
        for g in client.get("/api/gists", headers={"Authorization": f"Bearer {tokens['alice']}"}).json()[
            "gists"
        ]
    )

    # the HTML page shows the same subset
    html_page = client.get("/", headers={"Authorization": f"Bearer {tokens['alice']}"}).text
    assert "a5 of dag_a" in html_page
    assert "b4 of dag_b" not in html_page and "loose6" not in html_page


def test_the_run_tab_follows_the_same_per_dag_rule(client, tokens, monkeypatch) -> None:
    from airflow_provider_gist.plugins import app as view_app

    monkeypatch.setattr(view_app, "read_run_summary", lambda session, dag, run: None)

    def status(user: str, dag_id: str) -> int:
        resp = client.get(
            "/run",
            params={"dag_id": dag_id, "run_id": "manual__1"},
            headers={"Authorization": f"Bearer {tokens[user]}"},
        )
        return resp.status_code

    assert status("alice", "dag_a") == 200
    assert status("alice", "dag_b") == 403
    assert status("root", "dag_b") == 200


def test_export_thumbnails_and_overview_follow_the_same_per_dag_rule(client, tokens, monkeypatch) -> None:
    import csv
    import io
    import json

    from airflow_provider_gist.plugins import thumbnails
    from airflow_provider_gist.storage import SqlGistStore
    from airflow_provider_gist.storage.runs import write_run

    monkeypatch.setattr(thumbnails, "thumbnail_from_api", lambda hook, gist: None)  # placeholders
    _store_as("dag_a", (1, "a1"), (3, "a3"))
    _store_as("dag_b", (2, "b2"))
    _store_as(None, (4, "loose4"))
    run = {"task_id": "refresh", "map_index": -1, "index_id": "idxA", "status": "success"}
    write_run(
        SqlGistStore(), {**run, "dag_id": "dag_b", "run_id": "r_b", "started_at": "2026-11-25T00:00:00Z"}
    )

    def get(user: str, path: str, **params: Any) -> Any:
        return client.get(path, params=params, headers={"Authorization": f"Bearer {tokens[user]}"})

    def exported(user: str) -> list[str]:
        rows = csv.DictReader(io.StringIO(get(user, "/export.csv").text))
        return [row["video_ref"] for row in rows]

    assert exported("alice") == ["a3", "a1"]
    assert exported("bob") == ["b2"]
    assert exported("carol") == []
    assert exported("root") == ["loose4", "a3", "b2", "a1"]
    assert [g["video_ref"] for g in json.loads(get("alice", "/export.json").text)] == ["a3", "a1"]

    # a thumbnail is a gist's too: another DAG's is "not found", like a gist that does not exist
    assert get("alice", "/thumbnail", index_id="idxA", video_ref="a1").status_code == 200
    assert get("alice", "/thumbnail", index_id="idxA", video_ref="b2").status_code == 404
    assert get("bob", "/thumbnail", index_id="idxA", video_ref="loose4").status_code == 404

    # the overview counts what the user may see, and shows only their DAGs' refresh runs
    (alice_index,) = get("alice", "/api/overview").json()["indexes"]
    assert (alice_index["gists"], alice_index["last_run"]) == (2, None)
    (bob_index,) = get("bob", "/api/overview").json()["indexes"]
    assert (bob_index["gists"], bob_index["last_run"]["run_id"]) == (1, "r_b")
    assert "r_b" not in get("alice", "/").text
