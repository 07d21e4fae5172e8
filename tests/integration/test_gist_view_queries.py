"""The gist view's queries on real databases: seek paging, exact terms, counts, usage, runs, export.

Each query test runs on the embedded SQLite store and on PostgreSQL (``postgres`` marker; see
tests/helpers/postgres.py), through :class:`~airflow_provider_gist.storage.catalog.CatalogReader`
over a :class:`~airflow_provider_gist.storage.sql.SqlGistStore`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.plugins.catalog import continuous_days
from airflow_provider_gist.plugins.export import CSV_COLUMNS, safe_cell, stream_csv, stream_json
from airflow_provider_gist.storage import SqlGistStore
from airflow_provider_gist.storage.catalog import (
    CatalogFilter,
    CatalogReader,
    Cursor,
    DayUsage,
    ensure_catalog_indexes,
)
from airflow_provider_gist.storage.runs import latest_runs, runs_table, stale_counts, write_run
from tests.helpers.postgres import (
    airflow_conn_json,
    postgres_uri,  # noqa: F401  (session fixture used via getfixturevalue)
)
from tests.helpers.storage_samples import make_gist

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IDX_A, IDX_B = "65ef0a1b2c3d4e5f60718293", "65ef0a1b2c3d4e5f60718294"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path, monkeypatch) -> Iterator[SqlGistStore]:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        yield SqlGistStore()
        return
    monkeypatch.setenv(
        "AIRFLOW_CONN_GIST_VIEW_PG", airflow_conn_json(request.getfixturevalue("postgres_uri"))
    )
    pg = SqlGistStore("gist_view_pg")
    yield pg
    pg.hook.run([f"DROP TABLE IF EXISTS {pg.table}", f"DROP TABLE IF EXISTS {runs_table(pg.table)}"])


def put(store: SqlGistStore, gists: list[dict[str, Any]], dag_id: str | None = None) -> None:
    SqlGistStore(store.conn_id, store.table, dag_id=dag_id).put_many(gists)


def catalog(count: int = 23) -> list[dict[str, Any]]:
    """Gists with ties: three share each ``generated_at``, spread over two indexes and none."""
    gists = []
    for n in range(count):
        gists.append(
            make_gist(
                video_ref=f"v{n:03d}",
                index_id=[IDX_A, IDX_B, None][n % 3],
                generated_at=f"2026-11-{1 + n // 3:02d}T10:00:00+00:00",
            )
        )
    return gists


def expected_order(gists: list[dict[str, Any]]) -> list[str]:
    """The list order, computed independently: newest first, then index ("" = none), then video."""
    ordered = sorted(gists, key=lambda g: g["video_ref"])
    ordered.sort(key=lambda g: g["index_id"] or "")
    ordered.sort(key=lambda g: g["generated_at"], reverse=True)
    return [g["video_ref"] for g in ordered]


# --- seek paging -----------------------------------------------------------------------------


def test_pages_walk_the_whole_list_both_ways_without_gaps_or_duplicates(store) -> None:
    gists = catalog(23)
    put(store, gists)
    reader = CatalogReader(store)
    flt = CatalogFilter()

    pages, after = [], None
    while True:
        page = reader.page(flt, limit=5, after=after)
        pages.append([g["video_ref"] for g in page.gists])
        if page.older is None:
            break
        after = page.older
    assert [ref for chunk in pages for ref in chunk] == expected_order(gists)
    assert [len(chunk) for chunk in pages] == [5, 5, 5, 5, 3]

    # back from the last page with the newer cursors: the same pages, in reverse
    back, before = [], reader.page(flt, limit=5, after=after).newer
    while before is not None:
        page = reader.page(flt, limit=5, before=before)
        back.append([g["video_ref"] for g in page.gists])
        before = page.newer
    assert back == pages[-2::-1]


def test_pages_of_a_filter_stay_inside_it(store) -> None:
    gists = catalog(23)
    put(store, gists[:12], dag_id="dag_a")
    put(store, gists[12:], dag_id="dag_b")
    reader = CatalogReader(store)
    flt = CatalogFilter.make(index_id=IDX_A, dag_ids={"dag_a"})
    walked = [g["video_ref"] for g in reader.iter_rows(flt, batch=2)]
    wanted = [g for g in gists[:12] if g["index_id"] == IDX_A]
    assert walked == expected_order(wanted)
    assert reader.count(flt) == len(wanted)
    # no DAG may be read: nothing, even with the index filter
    assert reader.page(CatalogFilter.make(dag_ids=set()), limit=5).gists == []


def test_seek_pages_never_skip_rows_with_offset(store, monkeypatch) -> None:
    """What keeps deep pages cheap: a cursor page asks for limit + 1 rows after a row, no OFFSET."""
    put(store, catalog(12))
    ensure_catalog_indexes(store)
    reader = CatalogReader(store)
    first = reader.page(CatalogFilter(), limit=4)
    seen: list[tuple[str, tuple[Any, ...]]] = []
    real = store.hook.get_records

    def spy(sql: str, parameters: Any = None, **kwargs: Any) -> Any:
        seen.append((sql, tuple(parameters or ())))
        return real(sql, parameters=parameters, **kwargs)

    monkeypatch.setattr(store.hook, "get_records", spy)
    assert first.older is not None
    deep = reader.page(CatalogFilter(), limit=4, after=first.older)
    assert [g["video_ref"] for g in deep.gists] == expected_order(catalog(12))[4:8]
    ((sql, params),) = seen
    assert "OFFSET" not in sql.upper()
    assert params[-1] == 5  # the page and one row to know whether an older page exists


def test_a_cursor_is_opaque_and_checked() -> None:
    cursor = Cursor("2026-11-26T10:00:00+00:00", "", "v1")
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "not base64 !", "WzEsMiwzXQ", Cursor("x", "y", "").encode()):
        with pytest.raises(GistValidationError, match="after is not a cursor"):
            Cursor.decode(bad, "after")


# --- filters, counts, top terms, usage ------------------------------------------------------


def test_topic_and_hashtag_filters_match_whole_terms_only(store) -> None:
    put(
        store,
        [
            make_gist(video_ref="exact", topics=["Fishing", "Boats"], hashtags=["Harbour"]),
            make_gist(video_ref="longer", topics=["Flyfishing"], hashtags=["HarbourLife"]),
            make_gist(video_ref="title", title="Fishing trip", topics=["Boats"], hashtags=["x"]),
            make_gist(video_ref="case", topics=["fishing"], hashtags=["harbour"]),
            make_gist(video_ref="quote", topics=['say "Fishing" twice', 'a"Fishing'], hashtags=["y"]),
        ],
    )
    reader = CatalogReader(store)

    def refs(**terms: str) -> set[str]:
        return {g["video_ref"] for g in reader.iter_rows(CatalogFilter.make(**terms))}

    assert refs(topic="Fishing") == {"exact"}
    assert refs(hashtag="Harbour") == {"exact"}
    assert refs(topic='a"Fishing') == {"quote"}
    assert refs(topic="Boats", hashtag="x") == {"title"}
    assert refs(text="fishing") == {"exact", "longer", "title", "case", "quote"}  # the substring search


def test_index_counts_and_top_terms_follow_the_filter(store) -> None:
    put(
        store,
        [
            make_gist(video_ref="a1", index_id=IDX_A, topics=["Fishing", "Boats"], hashtags=["Sea"]),
            make_gist(video_ref="a2", index_id=IDX_A, topics=["Fishing"], hashtags=["Sea", "Dawn"]),
            make_gist(video_ref="a3", index_id=IDX_A, topics=["Cycling"], hashtags=["Bike"]),
            make_gist(video_ref="b1", index_id=IDX_B, topics=["Fishing"], hashtags=["Sea"]),
            make_gist(video_ref="n1", index_id=None, topics=["Boats"], hashtags=[]),
        ],
        dag_id="dag_a",
    )
    reader = CatalogReader(store)
    assert reader.index_counts(CatalogFilter()) == [(IDX_A, 3), (None, 1), (IDX_B, 1)]
    assert reader.top_terms(CatalogFilter(), "topic") == [("Fishing", 3), ("Boats", 2), ("Cycling", 1)]
    assert reader.top_terms(CatalogFilter(), "hashtag", limit=2) == [("Sea", 3), ("Bike", 1)]
    assert reader.top_terms(CatalogFilter(index_id=IDX_A, topic="Fishing"), "hashtag") == [
        ("Sea", 2),
        ("Dawn", 1),
    ]
    assert reader.top_terms(CatalogFilter.make(dag_ids={"other"}), "topic") == []
    with pytest.raises(GistValidationError, match="kind must be one of"):
        reader.top_terms(CatalogFilter(), "title")


def test_usage_per_day_counts_calls_and_tokens_per_utc_day(store) -> None:
    put(
        store,
        [
            make_gist(
                video_ref="d1",
                generated_at="2026-11-25T09:00:00+00:00",
                usage={"output_tokens": 10, "input_tokens": 100},
            ),
            make_gist(
                video_ref="d2",
                generated_at="2026-11-25T23:30:00Z",
                usage={"output_tokens": 20, "input_tokens": None},
            ),
            # 23:30 at UTC-2 is the next UTC day
            make_gist(
                video_ref="d3",
                generated_at="2026-11-25T23:30:00-02:00",
                usage={"output_tokens": 5, "input_tokens": 50},
            ),
            make_gist(
                video_ref="d4",
                generated_at="2026-11-28T08:00:00+00:00",
                usage={"output_tokens": 1, "input_tokens": 2},
            ),
        ],
    )
    reader = CatalogReader(store)
    days = reader.usage_per_day(CatalogFilter())
    assert days == [
        DayUsage("2026-11-25", 2, 100, 30),
        DayUsage("2026-11-26", 1, 50, 5),
        DayUsage("2026-11-28", 1, 2, 1),
    ]
    assert reader.usage_per_day(CatalogFilter(), days=1) == [DayUsage("2026-11-28", 1, 2, 1)]
    # the chart's days: unbroken, the missing day as zero, at most the span ending on the last day
    assert [d.day for d in continuous_days(days, 30)] == [
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
    ]
    assert continuous_days(days, 30)[2] == DayUsage("2026-11-27", 0, 0, 0)
    assert [d.day for d in continuous_days(days, 2)] == ["2026-11-27", "2026-11-28"]


# --- refresh runs -----------------------------------------------------------------------------


def run_row(**over: Any) -> dict[str, Any]:
    row = {
        "dag_id": "gist_catalog_refresh",
        "run_id": "scheduled__1",
        "task_id": "refresh_gists",
        "map_index": -1,
        "index_id": IDX_A,
        "status": "success",
        "started_at": "2026-11-26T00:00:00+00:00",
        "planned": 5,
        "generated": 4,
        "failed": 1,
        "skipped": 10,
        "reasons": {"new": 2, "source_changed": 3},
        "left_by_reason": {
            "new": 1,
            "source_changed": 0,
            "types_changed": 0,
            "model_changed": 2,
            "prompt_changed": 0,
        },
    }
    row.update(over)
    return row


def test_runs_table_keeps_the_latest_run_of_each_index(store) -> None:
    put(store, catalog(3))
    assert latest_runs(store) == {}  # no table yet: no runs, not an error
    write_run(store, run_row())
    write_run(store, run_row(run_id="scheduled__2", started_at="2026-11-27T00:00:00+00:00", status="running"))
    write_run(store, run_row(run_id="scheduled__2", started_at="2026-11-27T00:00:00+00:00", generated=9))
    write_run(store, run_row(run_id="other", dag_id="dag_b", index_id=IDX_B))
    runs = latest_runs(store)
    assert set(runs) == {IDX_A, IDX_B}
    latest = runs[IDX_A]
    assert (latest["run_id"], latest["status"], latest["generated"]) == ("scheduled__2", "success", 9)
    assert latest["reasons"] == {"new": 2, "source_changed": 3}
    assert stale_counts(latest) == {
        "source_changed": 0,
        "types_changed": 0,
        "model_changed": 2,
        "prompt_changed": 0,
    }
    assert stale_counts({"left_by_reason": None}) is None
    # only the runs of DAGs the user may read
    assert set(latest_runs(store, dag_ids={"dag_b"})) == {IDX_B}
    assert latest_runs(store, dag_ids={None}) == {}
    with pytest.raises(GistValidationError, match="status must be one of"):
        write_run(store, run_row(status="done"))


# --- export -----------------------------------------------------------------------------------------


def test_export_streams_every_row_in_list_order(store) -> None:
    gists = catalog(11)
    put(store, gists)
    rows = CatalogReader(store).iter_rows(CatalogFilter(), batch=4)
    chunks = list(stream_json(rows))
    assert len(chunks) == 11 + 2  # one chunk per gist: nothing is gathered first
    assert [g["video_ref"] for g in json.loads("".join(chunks))] == expected_order(gists)
    text = "".join(stream_csv(CatalogReader(store).iter_rows(CatalogFilter(), batch=4)))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["video_ref"] for r in parsed] == expected_order(gists)
    assert list(parsed[0]) == list(CSV_COLUMNS)


def test_csv_cells_never_start_a_formula() -> None:
    nasty = make_gist(
        video_ref="v1",
        title='=HYPERLINK("https://evil.example","x")',
        topics=["+1", "-2", "@SUM(A1)", "plain", "\tTab"],
        hashtags=["=cmd"],
    )
    nasty["dag_id"] = "@dag"
    (row,) = list(csv.reader(io.StringIO("".join(stream_csv([nasty])))))[1:]
    cells = dict(zip(CSV_COLUMNS, row, strict=True))
    assert cells["title"] == '\'=HYPERLINK("https://evil.example","x")'
    assert cells["topics"] == "'+1; -2; @SUM(A1); plain; \tTab"  # the cell starts with +: quoted once
    assert cells["hashtags"] == "#=cmd"  # starts with '#': not a formula
    assert cells["dag_id"] == "'@dag"
    assert cells["input_tokens"] == "9021" and cells["generation_id"] == "gen-v1"
    assert [safe_cell(v) for v in ("-", "+", "=", "@", "\rx", "a=b", None, 5)] == [
        "'-", "'+", "'=", "'@", "'\rx", "a=b", "", "5",
    ]  # fmt: skip
