"""The gist view plugin app over a real SQLite store, through HTTP (Starlette's TestClient).

Authentication is the API server's own: the auth manager configured for the tests
(SimpleAuthManager) issues the JWTs, and the metadata DB (``airflow_db``) backs token checks
and the run summary XComs.
"""

from __future__ import annotations

import html
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import gist_view
from tests.helpers.storage_samples import make_gist

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NASTY = "Fish \"quoted\" & <script>alert('x')</script> 🎣 'single'"


# the shared fixtures of the gist view app (tests/helpers/gist_view.py)
auth, home, client, _get = gist_view.auth, gist_view.home, gist_view.client, gist_view.get


def _store(gists: list[dict[str, Any]]) -> None:
    from airflow_provider_gist.storage import SqlGistStore

    SqlGistStore().put_many(gists)


def _catalog() -> list[dict[str, Any]]:
    gists = []
    for n in range(1, 8):
        gist = make_gist(
            video_ref=f"vid{n}",
            index_id="idxA" if n % 2 else "idxB",
            title=f"Video {n}",
            topics=["Fishing", "Harbour"] if n <= 3 else ["Cycling"],
            hashtags=["HarbourLife"] if n <= 3 else ["Bike"],
            generated_at=f"2026-11-2{n}T10:00:00+00:00",
        )
        gists.append(gist)
    return gists


# --- authentication -------------------------------------------------------------------------


def test_requires_the_api_servers_authentication(client, auth) -> None:
    assert _get(client, "/api/gists").status_code == 401
    assert _get(client, "/api/gists", "not-a-jwt").status_code == 403
    # a browser without a session is sent to Airflow's login, and comes back afterwards
    resp = _get(client, "/?text=harbour", headers={"accept": "text/html"})
    assert resp.status_code == 307
    assert resp.headers["location"] == "/api/v2/auth/login?next=%2Fgists%2F%3Ftext%3Dharbour"


def test_authorization_is_the_auth_managers(client, auth) -> None:
    # SimpleAuthManager: a user without a role may read nothing
    assert _get(client, "/api/gists", auth["nobody"]).status_code == 403
    assert _get(client, "/api/gists", auth["admin"]).status_code == 200


# --- list: empty, ordering, filters, paging ---------------------------------------------------


def test_no_store_yet_reads_as_empty_and_creates_nothing(client, auth, home: Path) -> None:
    resp = _get(client, "/", auth["admin"])
    assert resp.status_code == 200
    assert "No gists are stored yet." in resp.text
    assert _get(client, "/api/gists", auth["admin"]).json()["gists"] == []
    assert not (home / "gists.db").exists()  # read-only: the view never creates the store


def test_existing_file_without_table_is_not_modified(client, auth, home: Path) -> None:
    sqlite3.connect(home / "gists.db").close()
    assert _get(client, "/api/gists", auth["admin"]).json()["gists"] == []
    with sqlite3.connect(home / "gists.db") as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_newest_first_with_paging(client, auth) -> None:
    _store(_catalog())
    first = _get(client, "/api/gists", auth["admin"], params={"page_size": 3}).json()
    assert [g["video_ref"] for g in first["gists"]] == ["vid7", "vid6", "vid5"]
    assert first["has_more"] is True
    last = _get(client, "/api/gists", auth["admin"], params={"page_size": 3, "page": 3}).json()
    assert [g["video_ref"] for g in last["gists"]] == ["vid1"]
    assert last["has_more"] is False

    # the old page numbers still work; the page's links seek from its first and last rows
    page2 = _get(client, "/", auth["admin"], params={"page_size": 3, "page": 2}).text
    assert _card_refs(page2) == ["vid4", "vid3", "vid2"]
    older = _get(client, _link(page2, "next"), auth["admin"]).text
    assert _card_refs(older) == ["vid1"] and 'rel="next"' not in older
    newer = _get(client, _link(page2, "prev"), auth["admin"]).text
    assert _card_refs(newer) == ["vid7", "vid6", "vid5"]
    assert 'rel="prev"' not in newer  # nothing is newer than the first page


def _card_refs(page: str) -> list[str]:
    return [part.split('"')[0] for part in page.split('data-video-ref="')[1:]]


def _link(page: str, rel: str) -> str:
    """The path of the page's ``rel`` link (``next``: older, ``prev``: newer), unescaped."""
    after = page.split(f'rel="{rel}" href="', 1)[1]
    return html.unescape(after.split('"', 1)[0]).removeprefix("/gists")


def test_filters_by_index_and_text(client, auth) -> None:
    _store(_catalog())

    def refs(**params: Any) -> list[str]:
        body = _get(client, "/api/gists", auth["admin"], params=params).json()
        return [g["video_ref"] for g in body["gists"]]

    assert refs(index_id="idxB") == ["vid6", "vid4", "vid2"]
    assert refs(text="harbour") == ["vid3", "vid2", "vid1"]  # topic or hashtag, any case
    assert refs(text="#bike") == ["vid7", "vid6", "vid5", "vid4"]  # '#': hashtags only
    assert refs(text="#fishing") == []  # a topic, not a hashtag
    assert refs(text="harbour", index_id="idxA") == ["vid3", "vid1"]
    assert refs(text="Video 5") == ["vid5"]  # titles too

    page = _get(client, "/", auth["admin"], params={"text": "harbour", "index_id": "idxA"}).text
    assert 'value="harbour"' in page and 'value="idxA"' in page  # the form keeps the filters
    # chips link to a search for themselves, keeping the index filter
    assert 'href="/gists/?index_id=idxA&amp;text=%23HarbourLife"' in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"index_id": "../x"}, "index_id"),
        ({"page": "0"}, "page"),
        ({"page": "two"}, "page"),
        ({"page_size": "1000"}, "page_size"),
        ({"text": "x" * 300}, "text"),
    ],
)
def test_bad_query_names_the_parameter(client, auth, params: dict[str, str], message: str) -> None:
    resp = _get(client, "/api/gists", auth["admin"], params=params)
    assert resp.status_code == 400
    assert message in resp.json()["detail"]
    page = _get(client, "/", auth["admin"], params=params)
    assert page.status_code == 400
    assert message in page.text


# --- escaping -----------------------------------------------------------------------------------


def test_every_value_is_escaped(client, auth) -> None:
    gist = make_gist(
        video_ref="vidX",
        index_id="idxA",
        title=NASTY,
        topics=['<img src=x onerror="alert(1)">', "Quote \"'"],
        hashtags=["</span><script>x()</script>"],
    )
    _store([gist])
    resp = _get(client, "/", auth["admin"], params={"text": '"><script>alert(2)</script>'})
    assert resp.status_code == 200
    assert "<script>" not in resp.text  # neither from the data nor from the query
    assert 'value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"' in resp.text

    page = _get(client, "/", auth["admin"]).text
    assert "<script>" not in page and "<img src=x" not in page  # (thumbnails are <img class="thumb">)
    assert f'<h2 class="title">{html.escape(NASTY, quote=True)}</h2>' in page
    assert "🎣" in page  # UTF-8 text, not mangled
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    # scripts cannot run even if something slipped through; only the UI itself may frame the page
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"

    # JSON carries the raw values (JSON escaping, not HTML)
    (got,) = _get(client, "/api/gists", auth["admin"]).json()["gists"]
    assert got["title"] == NASTY
    assert got["hashtags"] == ["</span><script>x()</script>"]


def test_json_has_the_stored_fields(client, auth) -> None:
    gist = make_gist(
        video_ref="vid1", index_id="idxA", title="Harbour", generated_at="2026-11-26T09:00:00+00:00"
    )
    _store([gist])
    (got,) = _get(client, "/api/gists", auth["admin"]).json()["gists"]
    for key in (
        "video_ref",
        "video_ref_type",
        "index_id",
        "model",
        "title",
        "topics",
        "hashtags",
        "generated_at",
    ):
        assert got[key] == gist[key], key
    assert "stored_at" in got
    html_page = _get(client, "/", auth["admin"]).text
    assert "2026-11-26 09:00 UTC" in html_page
    assert f"model <code>{gist['model']}</code>" in html_page


# --- the DAG run tab ------------------------------------------------------------------------


def test_run_tab_shows_the_runs_summary(client, auth, monkeypatch) -> None:
    """Rendering and access rules; reading the real XCom is covered by test_gist_manual_dag.py."""
    from airflow_provider_gist.plugins import app as view_app
    from airflow_provider_gist.plugins.summary import build_summary

    dag_id, run_id = "gist_manual", "manual__2026-11-26T10:00:00+00:00"
    summary = build_summary(
        [make_gist(video_ref="vid1", index_id="idxA", title=NASTY, topics=["Fishing"], hashtags=["Harbour"])],
        video_urls={"vid1": "https://videos.example.com/a.mp4"},
        stored=1,
    )
    asked: list[tuple[str, str]] = []

    def fake_read(session: Any, dag: str, run: str) -> dict[str, Any] | None:
        asked.append((dag, run))
        return summary if run == run_id else None

    monkeypatch.setattr(view_app, "read_run_summary", fake_read)

    params = {"dag_id": dag_id, "run_id": run_id}
    resp = _get(client, "/run", auth["admin"], params=params)
    assert resp.status_code == 200
    assert html.escape(NASTY, quote=True) in resp.text and "<script>" not in resp.text
    assert 'href="https://videos.example.com/a.mp4"' in resp.text
    assert '<span class="chip tag">#Harbour</span>' in resp.text

    other = _get(client, "/run", auth["admin"], params={"dag_id": dag_id, "run_id": "nope"})
    assert other.status_code == 200
    assert "has no gist summary (yet)" in other.text
    assert _get(client, "/run", auth["nobody"], params=params).status_code == 403
    assert _get(client, "/run", None, params=params).status_code == 401
    assert asked == [(dag_id, run_id), (dag_id, "nope")]  # never read without access


# --- the plugin itself ----------------------------------------------------------------------------


def test_plugin_declares_the_app_and_the_ui_links() -> None:
    from airflow_provider_gist.plugins import gist_view

    plugin = gist_view.GistViewPlugin
    assert plugin.name == "gist_view"
    (mount,) = plugin.fastapi_apps
    assert mount["url_prefix"] == "/gists"
    views = {view["destination"]: view for view in plugin.external_views}
    assert views["nav"]["href"] == "/gists/" and views["nav"]["url_route"] == "gists"
    assert views["dag_run"]["href"] == "/gists/run?dag_id={DAG_ID}&run_id={RUN_ID}"
    # serialisable the way /api/v2/plugins reports plugins
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse

    for view in plugin.external_views:
        ExternalViewResponse.model_validate(view)
    FastAPIAppResponse.model_validate({**mount, "app": type(mount["app"]).__name__})


def test_loading_the_plugin_does_not_import_the_web_app() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import airflow_provider_gist.plugins.gist_view as m; "
        "print(sorted(x for x in ('fastapi', 'airflow_provider_gist.plugins.app', "
        "'airflow_provider_gist.storage') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_deployment_store_is_read_and_a_store_it_cannot_read_is_named(
    client, auth, home: Path, monkeypatch
) -> None:
    """The view reads gist_store_default; an object-store default says what to set, not just 503."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_STORE_DEFAULT", json.dumps({"conn_type": "sqlite", "host": str(home / "d.db")})
    )
    from airflow_provider_gist.storage import SqlGistStore

    SqlGistStore("gist_store_default").put_many([make_gist(title="From the deployment store")])
    listing = _get(client, "/api/gists", auth["admin"]).json()
    assert [g["title"] for g in listing["gists"]] == ["From the deployment store"]
    assert not (home / "gists.db").exists()

    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_STORE_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"object_base": f"file://{home}/objects/"}}),
    )
    resp = _get(client, "/api/gists", auth["admin"])
    assert resp.status_code == 503
    assert "reads SQL stores only" in resp.json()["detail"]
    page = _get(client, "/", auth["admin"])
    assert page.status_code == 503 and "reads SQL stores only" in html.unescape(page.text)
