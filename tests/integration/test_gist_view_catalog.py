"""The catalog page of the gist view over HTTP: overview, chart links, seek paging, export, thumbnails.

The app runs behind the API server's authentication (SimpleAuthManager, as in
test_gist_view.py, whose fixtures are reused); per-DAG rules come from test_gist_view_access.py's
auth manager. Thumbnails are looked up in the emulator over real HTTP.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_gist.plugins.export import CSV_COLUMNS
from airflow_provider_gist.storage import SqlGistStore
from airflow_provider_gist.storage.runs import write_run
from tests.conftest import TEST_API_KEY
from tests.helpers import gist_view
from tests.helpers.storage_samples import make_gist

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IDX_A, IDX_B = "65ef0a1b2c3d4e5f60718293", "65ef0a1b2c3d4e5f60718294"


# the shared fixtures of the gist view app (tests/helpers/gist_view.py)
auth, home, client, _get = gist_view.auth, gist_view.home, gist_view.client, gist_view.get


@pytest.fixture(autouse=True)
def _fresh_thumbnail_cache() -> Iterator[None]:
    from airflow_provider_gist.plugins import routes

    routes._caches.clear()
    yield
    routes._caches.clear()


def _store(gists: list[dict[str, Any]], dag_id: str | None = "dag_a") -> None:
    SqlGistStore(dag_id=dag_id).put_many(gists)


def _catalog() -> list[dict[str, Any]]:
    out = []
    for n in range(1, 10):
        out.append(
            make_gist(
                video_ref=f"vid{n}",
                index_id=IDX_A if n <= 6 else IDX_B,
                title=f"Video {n}",
                topics=["Fishing", "Boats"] if n % 3 == 0 else ["Cycling"],
                hashtags=["Sea"] if n % 3 == 0 else ["Bike", "City"],
                generated_at=f"2026-11-{10 + n}T10:00:00+00:00",
                usage={"output_tokens": 10 * n, "input_tokens": 100 * n},
            )
        )
    return out


def _refs(page: str) -> list[str]:
    return re.findall(r'<article class="gist[^"]*" data-video-ref="([^"]+)"', page)


def _hrefs(page: str, pattern: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(rf'href="([^"]*{pattern}[^"]*)"', page)]


def test_overview_shows_each_index_its_stale_gists_and_latest_refresh(client, auth) -> None:
    _store(_catalog())
    write_run(
        SqlGistStore(),
        {
            "dag_id": "gist_catalog_refresh",
            "run_id": "scheduled__2026-11-26T00:00:00+00:00",
            "task_id": "refresh_gists",
            "map_index": -1,
            "index_id": IDX_A,
            "status": "success",
            "started_at": "2026-11-26T00:00:00+00:00",
            "finished_at": "2026-11-26T00:03:00+00:00",
            "planned": 5,
            "generated": 4,
            "failed": 1,
            "skipped": 7,
            "reasons": {"new": 2, "source_changed": 3},
            "left_by_reason": {
                "new": 1,
                "source_changed": 2,
                "types_changed": 0,
                "model_changed": 1,
                "prompt_changed": 0,
            },
        },
    )
    page = _get(client, "/", auth["admin"]).text
    row_a = page.split(f'<tr data-index="{IDX_A}">')[1].split("</tr>")[0]
    assert 'data-gists="6"' in row_a and 'data-stale="3"' in row_a
    assert "source changed 2, other model 1" in row_a
    assert "planned 5, generated 4, failed 1, skipped 7" in row_a
    assert "2026-11-26 00:03 UTC" in row_a and "success" in row_a
    # a link to that DAG run in the Airflow UI, out of the frame
    assert (
        'href="/dags/gist_catalog_refresh/runs/scheduled__2026-11-26T00%3A00%3A00%2B00%3A00" target="_top"'
        in row_a
    )
    row_b = page.split(f'<tr data-index="{IDX_B}">')[1].split("</tr>")[0]
    assert 'data-gists="3"' in row_b and "no refresh run" in row_b

    # the charts: counted bars that link to the filter; usage per day
    assert re.search(r'data-kind="topic" data-term="Cycling">.*?>6</text>', page)
    assert re.search(r'data-kind="hashtag" data-term="#Sea">.*?>3</text>', page)
    calls = page.split('data-chart="calls"')[1].split("</figure>")[0]
    assert calls.count('class="day"') == 9  # 2026-11-11 .. 2026-11-19, one gist a day
    assert 'data-day="2026-11-19" data-value="990"' in page  # tokens: 900 in + 90 out


def test_clicking_a_topic_bar_filters_the_list_and_the_charts(client, auth) -> None:
    _store(_catalog())
    page = _get(client, "/", auth["admin"]).text
    (bar,) = _hrefs(page.split('data-term="Fishing"')[0].rsplit("<a ", 1)[1], "topic=")
    filtered = _get(client, bar.removeprefix("/gists"), auth["admin"]).text
    assert _refs(filtered) == ["vid9", "vid6", "vid3"]
    assert "Top topics (this filter)" in filtered and 'data-active="topic"' in filtered
    assert re.search(r'data-term="Boats">.*?>3</text>', filtered)
    assert "Cycling" not in filtered.split('data-chart="topic"')[1].split("</figure>")[0]
    # the filter's own links keep it: remove it, export it
    assert any("topic=" not in h for h in _hrefs(filtered, r"\?"))
    assert _hrefs(filtered, "export.csv") == ["/gists/export.csv?topic=Fishing"]


def test_seek_paging_through_the_page_and_the_json(client, auth) -> None:
    _store(_catalog())
    first = _get(client, "/", auth["admin"], params={"page_size": 4}).text
    assert _refs(first) == ["vid9", "vid8", "vid7", "vid6"] and "<table" in first
    (older,) = _hrefs(first, "after=")
    second = _get(client, older.removeprefix("/gists"), auth["admin"]).text
    assert _refs(second) == ["vid5", "vid4", "vid3", "vid2"]
    assert "<table" not in second  # deeper pages read one page of rows, no overview

    body = _get(client, "/api/gists", auth["admin"], params={"page_size": 4}).json()
    walked = [g["video_ref"] for g in body["gists"]]
    while body["next_cursor"]:
        body = _get(
            client, "/api/gists", auth["admin"], params={"page_size": 4, "after": body["next_cursor"]}
        ).json()
        walked += [g["video_ref"] for g in body["gists"]]
    assert walked == [f"vid{n}" for n in range(9, 0, -1)]
    assert body["has_more"] is False and body["prev_cursor"]
    back = _get(
        client, "/api/gists", auth["admin"], params={"page_size": 4, "before": body["prev_cursor"]}
    ).json()
    assert [g["video_ref"] for g in back["gists"]] == ["vid5", "vid4", "vid3", "vid2"]

    bad = _get(client, "/api/gists", auth["admin"], params={"after": "nonsense!"})
    assert bad.status_code == 400 and "after is not a cursor" in bad.json()["detail"]


def test_each_card_shows_tokens_model_and_a_thumbnail(client, auth) -> None:
    _store(_catalog()[:1])
    page = _get(client, "/", auth["admin"]).text
    card = page.split('data-video-ref="vid1"')[1].split("</article>")[0]
    assert "tokens 100 in / 10 out" in card and "model <code>pegasus1.2</code>" in card
    assert f'src="/gists/thumbnail?index_id={IDX_A}&amp;video_ref=vid1"' in card
    assert "by <code>dag_a</code>" in card  # its DAG (no DAG run of it in the metadata DB)


def test_overview_json(client, auth) -> None:
    _store(_catalog())
    body = _get(client, "/api/overview", auth["admin"], params={"index_id": IDX_B}).json()
    assert [(i["index_id"], i["gists"], i["stale"]) for i in body["indexes"]] == [(IDX_B, 3, None)]
    assert body["topics"] == [
        {"term": "Cycling", "count": 2},
        {"term": "Boats", "count": 1},
        {"term": "Fishing", "count": 1},
    ]
    assert sum(day["calls"] for day in body["usage"]) == 3


# --- export ----------------------------------------------------------------------------------------


def test_export_csv_matches_the_store_and_is_safe_to_open(client, auth) -> None:
    gists = _catalog()
    gists[0]["title"] = '=HYPERLINK("https://evil.example")'
    _store(gists)
    resp = _get(client, "/export.csv", auth["admin"], params={"index_id": IDX_A})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"].startswith('attachment; filename="gists-')
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    stored = {g["video_ref"]: g for g in SqlGistStore().list_gists(index_id=IDX_A)}
    assert [r["video_ref"] for r in rows] == ["vid6", "vid5", "vid4", "vid3", "vid2", "vid1"]
    for row in rows:
        gist = stored[row["video_ref"]]
        assert row["topics"] == "; ".join(gist["topics"]) and row["generated_at"] == gist["generated_at"]
        assert int(row["output_tokens"]) == gist["usage"]["output_tokens"]
    assert rows[-1]["title"] == '\'=HYPERLINK("https://evil.example")'

    as_json = _get(client, "/export.json", auth["admin"], params={"topic": "Fishing"})
    assert [g["video_ref"] for g in json.loads(as_json.text)] == ["vid9", "vid6", "vid3"]
    assert _get(client, "/export.csv", None).status_code == 401
    assert _get(client, "/export.csv", auth["nobody"]).status_code == 403


def test_export_of_an_empty_store_is_a_header_and_creates_nothing(client, auth, home: Path) -> None:
    assert _get(client, "/export.csv", auth["admin"]).text.strip() == ",".join(CSV_COLUMNS)
    assert json.loads(_get(client, "/export.json", auth["admin"]).text) == []
    assert not (home / "gists.db").exists()


# --- thumbnails -------------------------------------------------------------------------------


def _asset_with_thumbnail(emu: Any) -> str:
    fields = {"method": "url", "url": "https://videos.example.com/harbour.mp4", "enable_thumbnail": "true"}
    resp = requests.post(
        f"{emu.base_url}/assets",
        files={k: (None, v) for k, v in fields.items()},
        headers={"x-api-key": TEST_API_KEY},
        timeout=10,
    )
    resp.raise_for_status()
    asset_id = str(resp.json()["_id"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # its thumbnail is "ready" once the asset is
        got = requests.get(
            f"{emu.base_url}/assets/{asset_id}", headers={"x-api-key": TEST_API_KEY}, timeout=10
        )
        if got.json()["status"] == "ready":
            return asset_id
        time.sleep(0.1)
    raise AssertionError(f"asset {asset_id} never became ready")


def test_thumbnail_is_the_apis_or_the_placeholder(client, auth, tl_conn, emu, monkeypatch) -> None:
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.plugins import routes, thumbnails

    asset_id = _asset_with_thumbnail(emu)
    _store([make_gist(video_ref=asset_id, index_id=IDX_A)])
    gist = SqlGistStore().get(IDX_A, asset_id)
    # the API's answer, over real HTTP: the emulator names its thumbnails under .invalid
    hook = GistHook()
    emulated = thumbnails.thumbnail_from_api(hook, gist)
    hook.close()
    assert emulated == f"https://emulator.invalid/thumbnails/{asset_id}.jpg"

    # ... which never resolves, so the route draws the placeholder instead of a broken image
    resp = _get(client, "/thumbnail", auth["admin"], params={"index_id": IDX_A, "video_ref": asset_id})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("image/svg+xml")
    assert resp.text.startswith("<svg") and "script" not in resp.text

    # a real https thumbnail: the browser is sent there
    routes._caches.clear()
    monkeypatch.setattr(
        thumbnails, "thumbnail_from_api", lambda hook, gist: "https://cdn.example.com/t/1.jpg?sig=x"
    )
    resp = _get(client, "/thumbnail", auth["admin"], params={"index_id": IDX_A, "video_ref": asset_id})
    assert resp.status_code == 302 and resp.headers["location"] == "https://cdn.example.com/t/1.jpg?sig=x"

    # thumbnails switched off: the placeholder, without asking the API
    routes._caches.clear()
    monkeypatch.setenv("AIRFLOW__GIST_VIEW__THUMBNAILS", "False")
    monkeypatch.setattr(thumbnails, "thumbnail_from_api", lambda hook, gist: pytest.fail("asked the API"))
    resp = _get(client, "/thumbnail", auth["admin"], params={"index_id": IDX_A, "video_ref": asset_id})
    assert resp.headers["content-type"].startswith("image/svg+xml")


def test_thumbnail_of_an_unknown_gist_is_not_found(client, auth) -> None:
    _store([make_gist(video_ref="vid1", index_id=IDX_A)])
    resp = _get(client, "/thumbnail", auth["admin"], params={"index_id": IDX_B, "video_ref": "vid1"})
    assert resp.status_code == 404
    assert _get(client, "/thumbnail", auth["admin"], params={"video_ref": "../x"}).status_code == 400


def test_usable_thumbnail_urls() -> None:
    from airflow_provider_gist.plugins.thumbnails import usable_url

    assert usable_url("https://cdn.example.com/a.jpg") == "https://cdn.example.com/a.jpg"
    for bad in (
        "http://cdn.example.com/a.jpg",
        "javascript:alert(1)",
        "https://x.invalid/a.jpg",
        "",
        None,
        5,
    ):
        assert usable_url(bad) is None
    assert usable_url("https://cdn.example.com/" + "a" * 5000) is None
