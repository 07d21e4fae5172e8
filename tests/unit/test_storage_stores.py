"""The behaviour every gist store promises, run against each backend.

Backends: the embedded SQLite file, SQLite through an Airflow connection, PostgreSQL through an
Airflow connection (``postgres`` marker; see tests/helpers/postgres.py) and local ``file://`` objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.storage import ObjectGistStore, SqlGistStore
from airflow_provider_gist.storage import sql as sql_module
from airflow_provider_gist.storage.base import GistStore
from tests.helpers.postgres import (
    airflow_conn_json,
    postgres_uri,  # noqa: F401  (session fixture used via getfixturevalue)
)
from tests.helpers.storage_samples import NASTY, make_gist, stored

PG_PASSWORD = "pg-5ecret-pw-never-shown"

KINDS = [
    "sqlite",
    "sqlite_conn",
    pytest.param("postgres", marks=pytest.mark.postgres),
    "objects",
]


@pytest.fixture(params=KINDS)
def store(request, tmp_path: Path, monkeypatch) -> Iterator[GistStore]:
    """A fresh, empty store of each kind; AIRFLOW_HOME points at a temp dir."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    kind = request.param
    if kind == "sqlite":
        yield SqlGistStore()
    elif kind == "sqlite_conn":
        db = tmp_path / "conn.db"
        monkeypatch.setenv("AIRFLOW_CONN_GIST_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
        yield SqlGistStore("gist_sqlite")
    elif kind == "postgres":
        uri = request.getfixturevalue("postgres_uri")
        # trust auth ignores the password: it is there to prove it never leaks
        monkeypatch.setenv("AIRFLOW_CONN_GIST_PG", airflow_conn_json(uri, password=PG_PASSWORD))
        pg = SqlGistStore("gist_pg")
        yield pg
        pg.hook.run(f"DROP TABLE IF EXISTS {pg.table}")
    else:
        yield ObjectGistStore(f"file://{tmp_path / 'objects'}/")


LATER = "2026-11-27T08:00:00+00:00"  # after make_gist's generated_at


def test_rerun_replaces_never_duplicates(store: GistStore) -> None:
    a, b = make_gist("vidA"), make_gist("vidB")
    assert store.put_many([a, b]) == 2
    a2 = make_gist(
        "vidA",
        title="Second Take",
        id="gen-2",
        usage={"output_tokens": 5, "input_tokens": None},
        generated_at=LATER,
    )
    assert store.put_many([a2, b]) == 1  # b is the same gist again: a no-op
    assert store.put_many([a2]) == 0
    assert store.count() == 2
    got = store.get(a["index_id"], "vidA")
    assert got is not None
    assert stored(got) == a2
    assert got["stored_at"].endswith("+00:00")


def test_same_video_in_two_indexes_and_no_index_are_separate(store: GistStore) -> None:
    store.put_many([make_gist("vid1", "idx1"), make_gist("vid1", "idx2"), make_gist("vid1", None)])
    assert store.count() == 3
    assert store.count("idx1") == 1
    got = store.get(None, "vid1")
    assert got is not None
    assert got["index_id"] is None
    # "" is "no index" too, never a separate key
    store.put_many([make_gist("vid1", "", title="Again", generated_at=LATER)])
    assert store.count() == 3
    got = store.get(None, "vid1")
    assert got is not None
    assert got["title"] == "Again"


def test_duplicates_in_one_batch_last_wins(store: GistStore) -> None:
    n = store.put_many([make_gist("vid1", title="first"), make_gist("vid1", title="last")])
    assert n == 1
    got = store.get("65ef0a1b2c3d4e5f60718293", "vid1")
    assert got is not None
    assert got["title"] == "last"


def test_nasty_strings_round_trip_byte_exact(store: GistStore) -> None:
    gists = [
        make_gist(f"vid{i}", title=text, topics=[text, "plain"], hashtags=[text.replace(" ", "")])
        for i, text in enumerate(NASTY)
    ]
    assert store.put_many(gists) == len(NASTY)
    for gist in gists:
        got = store.get(gist["index_id"], gist["video_ref"])
        assert got is not None
        assert stored(got) == gist
        assert got["title"].encode("utf-8") == gist["title"].encode("utf-8")
    # The injection attempts were data: the table/collection is intact and complete.
    assert store.count() == len(NASTY)


def test_partial_gist_types_round_trip(store: GistStore) -> None:
    only_tags = make_gist("vid1", types=["hashtag"], source_updated_at=None)
    del only_tags["title"], only_tags["topics"]
    title_topic = make_gist("vid2", types=["topic", "title"], hashtags=None)
    del title_topic["hashtags"]
    store.put_many([only_tags, title_topic])
    got1 = store.get(only_tags["index_id"], "vid1")
    assert got1 is not None
    assert stored(got1) == only_tags
    assert "title" not in got1
    got2 = store.get(title_topic["index_id"], "vid2")
    assert got2 is not None
    assert got2["types"] == ["title", "topic"]  # canonical order
    assert "hashtags" not in got2


def test_invalid_gist_in_batch_writes_nothing(store: GistStore) -> None:
    store.put_many([make_gist("vid1", title="original")])
    bad = make_gist("vid3", types=["title", "summary"])
    with pytest.raises(GistValidationError, match="vid3"):
        store.put_many([make_gist("vid1", title="changed"), make_gist("vid2"), bad])
    assert store.count() == 1
    got = store.get("65ef0a1b2c3d4e5f60718293", "vid1")
    assert got is not None
    assert got["title"] == "original"


def test_failure_mid_batch_writes_nothing(store: GistStore, monkeypatch) -> None:
    """The write itself fails after some rows/documents went out: none of the batch survives.

    SQL: more than common.sql's default commit_every (1000) rows, with a NOT NULL violation on the
    last one, so a chunked commit would have left 1000 rows behind. Objects: the last staging
    write fails, so nothing is published and no temporary key is left.
    """
    store.put_many([make_gist("keep", title="original")])
    batch = [make_gist(f"v{i:05d}") for i in range(1100)] + [make_gist("keep", title="changed")]
    if isinstance(store, SqlGistStore):
        real = sql_module.gist_to_row

        def row_then_break(gist: dict[str, Any], *args: Any) -> tuple[Any, ...]:
            row = real(gist, *args)
            if gist["video_ref"] == "keep":  # generation_id NULL -> the database refuses the row
                row = (*row[:3], None, *row[4:])
            return row

        monkeypatch.setattr(sql_module, "gist_to_row", row_then_break)
        with pytest.raises(Exception, match=r"(?i)null"):
            store.put_many(batch)
    else:
        from airflow.sdk import ObjectStoragePath

        real_write = ObjectStoragePath.write_bytes
        calls = {"n": 0}

        def write_then_break(self, data, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == len(batch):
                raise OSError("disk full (simulated)")
            return real_write(self, data, *args, **kwargs)

        monkeypatch.setattr(ObjectStoragePath, "write_bytes", write_then_break)
        with pytest.raises(OSError, match="simulated"):
            store.put_many(batch)
        leftovers = [p for p in Path(store.base.path).rglob("*") if p.is_file() and p.name != "keep.json"]
        assert leftovers == []
    assert store.count() == 1
    got = store.get("65ef0a1b2c3d4e5f60718293", "keep")
    assert got is not None
    assert got["title"] == "original"


def test_fingerprints_per_index(store: GistStore) -> None:
    store.put_many(
        [
            make_gist("vid1", "idx1", source_updated_at="2026-11-20T10:00:00Z"),
            make_gist("vid2", "idx1", source_updated_at=None, types=["title"], topics=None, hashtags=None),
            make_gist("vid3", "idx2", model="pegasus1.5", prompt_version="gist-v2"),
            make_gist("vid4", None),
        ]
    )
    fps = store.fingerprints("idx1")
    assert fps == {
        "vid1": {
            "source_updated_at": "2026-11-20T10:00:00Z",
            "types": ["title", "topic", "hashtag"],
            "model": "pegasus1.2",
            "prompt_version": "gist-v1",
        },
        "vid2": {
            "source_updated_at": None,
            "types": ["title"],
            "model": "pegasus1.2",
            "prompt_version": "gist-v1",
        },
    }
    assert store.fingerprints("idx2")["vid3"]["model"] == "pegasus1.5"
    assert set(store.fingerprints(None)) == {"vid4"}
    assert store.fingerprints("unknownidx") == {}


def test_fingerprints_of_some_videos_only(store: GistStore) -> None:
    """What a refresh reads per listing page: only the videos asked for, and only the stored ones."""
    store.put_many([make_gist(f"vid{i}", "idx1") for i in range(5)] + [make_gist("vid9", "idx2")])
    assert set(store.fingerprints("idx1", video_refs=["vid1", "vid3", "vid3", "nope", "vid9"])) == {
        "vid1",
        "vid3",
    }
    assert store.fingerprints("idx1", video_refs=[]) == {}
    assert set(store.fingerprints("idx2", video_refs=("vid9",))) == {"vid9"}
    assert store.fingerprints("idx1", video_refs=["../escape"]) == {}
    assert store.fingerprints("idx1", video_refs=["vid2"]) == {"vid2": store.fingerprints("idx1")["vid2"]}


def test_list_gists_order_filter_and_pages(store: GistStore) -> None:
    store.put_many(
        [
            make_gist("old", "idx1", generated_at="2026-11-01T00:00:00+00:00", title="Old Harbour"),
            make_gist(
                "new",
                "idx1",
                generated_at="2026-11-25T00:00:00+00:00",
                title="Mountain Bike",
                topics=["Cycling"],
                hashtags=["MTB"],
            ),
            make_gist(
                "mid",
                "idx2",
                generated_at="2026-11-10T00:00:00+00:00",
                title="100% real_deal",
                topics=["Cooking"],
                hashtags=["Harbourside"],
            ),
            make_gist("noidx", None, generated_at="2026-11-05T00:00:00+00:00", title="Loose"),
        ]
    )

    def refs(**kwargs: Any) -> list[str]:
        return [g["video_ref"] for g in store.list_gists(**kwargs)]

    assert refs() == ["new", "mid", "noidx", "old"]
    assert refs(index_id="idx1") == ["new", "old"]
    assert refs(text="HARBOUR") == ["mid", "noidx", "old"]  # title or hashtag "Harbourside"/"HarbourLife"
    assert refs(text="cycl") == ["new"]  # topic
    assert refs(text="#mtb") == ["new"]  # hashtags only
    assert refs(text="#harbour") == ["mid", "noidx", "old"]
    assert refs(text="mountain", index_id="idx2") == []
    # LIKE wildcards are literal characters, not patterns
    assert refs(text="%") == ["mid"]
    assert refs(text="l_deal") == ["mid"]
    assert refs(text="0%_r") == []
    assert refs(limit=2) == ["new", "mid"]
    assert refs(limit=2, offset=2) == ["noidx", "old"]
    assert refs(offset=10) == []
    with pytest.raises(GistValidationError):
        store.list_gists(limit=0)
    assert store.count() == 4
    assert store.count("idx2") == 1


def test_empty_store_reads(store: GistStore) -> None:
    assert store.get("idx1", "vid1") is None
    assert store.list_gists() == []
    assert store.fingerprints("idx1") == {}
    assert store.count() == 0
    assert store.put_many([]) == 0


def test_location_has_no_secret(store: GistStore) -> None:
    store.put_many([make_gist()])
    assert PG_PASSWORD not in store.location
    assert store.location


# --- stale writes: a newer gist wins, an older or equal one is a no-op --------------------------


def test_an_older_or_equal_gist_never_replaces_a_newer_one(store: GistStore) -> None:
    """Clearing an old run's store task (or a slow manual run) must not put an old gist back."""
    newer = make_gist("vid1", title="Newer", id="gen-new", generated_at=LATER)
    assert store.put_many([newer]) == 1
    older = make_gist("vid1", title="Older", id="gen-old")  # generated the day before
    assert store.put_many([older]) == 0
    # the same instant, spelt differently, is equal: a no-op too
    for same in ("2026-11-27T08:00:00Z", "2026-11-27T09:00:00+01:00", "2026-11-27T08:00:00.000000"):
        assert store.put_many([make_gist("vid1", title="Same", generated_at=same)]) == 0
    got = store.get(newer["index_id"], "vid1")
    assert got is not None
    assert stored(got) == newer
    # a batch with an old and a new gist: only the new one is written
    mixed = [make_gist("vid1", title="Older again"), make_gist("vid2", title="First of vid2")]
    assert store.put_many(mixed) == 1
    assert store.get(newer["index_id"], "vid1")["title"] == "Newer"  # type: ignore[index]
    assert store.get(newer["index_id"], "vid2")["title"] == "First of vid2"  # type: ignore[index]
    assert store.count() == 2


def test_a_newer_source_version_wins_over_a_later_generation(store: GistStore) -> None:
    stale = make_gist(
        "vid1", title="Of version 1", source_updated_at="2026-11-20T10:00:00Z", generated_at=LATER
    )
    store.put_many([stale])
    # made earlier, but from the video as it is now: it wins
    current = make_gist("vid1", title="Of version 2", source_updated_at="2026-11-21T00:00:00+00:00")
    assert store.put_many([current]) == 1
    # a late gist of the old version loses, however late it was generated
    late_old = make_gist(
        "vid1",
        title="Of version 1, late",
        source_updated_at="2026-11-20T10:00:00Z",
        generated_at="2026-12-31T00:00:00Z",
    )
    assert store.put_many([late_old]) == 0
    assert store.get(current["index_id"], "vid1")["title"] == "Of version 2"  # type: ignore[index]


def test_without_a_source_stamp_the_later_generation_decides(store: GistStore) -> None:
    store.put_many([make_gist("vid1", title="No stamp", source_updated_at=None)])
    stamped_older = make_gist(
        "vid1",
        title="Stamped, older",
        source_updated_at="2026-11-22T00:00:00Z",
        generated_at="2026-11-01T00:00:00Z",
    )
    assert store.put_many([stamped_older]) == 0
    assert store.put_many([make_gist("vid1", title="Stamped, newer", generated_at=LATER)]) == 1
    assert store.get("65ef0a1b2c3d4e5f60718293", "vid1")["title"] == "Stamped, newer"  # type: ignore[index]


def test_each_gist_names_the_dag_that_stored_it_and_reads_filter_by_dag(store: GistStore) -> None:
    for n, dag_id in enumerate(["dag_a", "dag_b", None], 1):
        store.dag_id = dag_id  # type: ignore[attr-defined]
        store.put_many([make_gist(f"vid{n}", generated_at=f"2026-11-2{n}T00:00:00+00:00")])
    assert store.get("65ef0a1b2c3d4e5f60718293", "vid1")["dag_id"] == "dag_a"  # type: ignore[index]
    assert store.get("65ef0a1b2c3d4e5f60718293", "vid3")["dag_id"] is None  # type: ignore[index]

    def refs(**kwargs: Any) -> list[str]:
        return [g["video_ref"] for g in store.list_gists(**kwargs)]

    assert refs() == ["vid3", "vid2", "vid1"]
    assert refs(dag_ids={"dag_a"}) == ["vid1"]
    assert refs(dag_ids={"dag_a", None}) == ["vid3", "vid1"]
    assert refs(dag_ids={"dag_b", "gone_dag"}, limit=1) == ["vid2"]
    assert refs(dag_ids=set()) == []
    assert store.stored_dag_ids() == {"dag_a", "dag_b", None}
    # a newer gist of the same video from another DAG takes the row over, with its DAG
    store.dag_id = "dag_b"  # type: ignore[attr-defined]
    store.put_many([make_gist("vid1", generated_at=LATER)])
    assert refs(dag_ids={"dag_a"}) == []
    assert store.stored_dag_ids() == {"dag_b", None}
