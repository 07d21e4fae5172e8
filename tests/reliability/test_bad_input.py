"""Bad input: refused with an error naming the field, before any HTTP call; nasty text kept byte-exact.

* Ids that could change a URL path or an object key (``../``, ``/``, ``?``, ``#``, ``%2F``,
  unicode, empty, very long, ...) given to every operator and sensor that takes an id.
* Misspelled gist types, unsupported URL schemes, bad index names.
* Each must raise :class:`GistValidationError` naming the field, and the emulator must have seen
  **no request at all** (``/_emulator/stats`` and the journal are empty).
* Titles, topics and hashtags with quotes, SQL fragments, newlines and emoji: through a real
  ``/analyze`` answer, the model layer (which folds whitespace and control characters on purpose),
  ``StoreGistsOperator`` and back out of SQLite and PostgreSQL, byte for byte; and raw at the
  storage layer, where nothing is folded.
* Object-storage keys that try to leave their prefix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gist.errors import GistValidationError
from tests.helpers.postgres import (
    airflow_conn_json,
    postgres_uri,  # noqa: F401  (session fixture)
)
from tests.helpers.storage_samples import NASTY, make_gist, stored
from tests.reliability.harness import EmulatorControl, execute_with_deferral, task_context

pytestmark = pytest.mark.integration

GOOD_ID = "6298d673f1090f1100476d4c"
GOOD_INDEX = "65ef0a1b2c3d4e5f60718293"
GOOD_URL = "https://videos.example.com/sunrise_harbour_fishing.mp4"

BAD_IDS: dict[str, str] = {
    "dotdot": "../../etc/passwd",
    "dotdot-encoded": "%2e%2e%2f%2e%2e",
    "slash": "abc/def",
    "backslash": "abc\\def",
    "query": "abc?page=2",
    "fragment": "abc#frag",
    "ampersand": "abc&x=1",
    "space": "abc def",
    "newline": "abc\ndef",
    "nul": "abc\x00def",
    "unicode": "vidéo42",
    "fullwidth": "\uff41\uff42\uff43\uff11\uff12\uff13",
    "rtl-override": "abc\u202edef",
    "empty": "",
    "blank": "   ",
    "leading-dot": ".hidden",
    "leading-dash": "-rf",
    "too-long": "a" * 65,
    "very-long": "a" * 100_000,
}

# (operator description, field the error must name, factory from a bad value)
OperatorFactory = Callable[[str], Any]


def _generate(**kw: Any) -> Any:
    from airflow_provider_gist.operators.gist import GenerateGistOperator

    kw.setdefault("duration", 60)  # known length: no asset read before the (faked) analysis
    return GenerateGistOperator(task_id="generate", **kw)


def _ingest(cls_name: str, **kw: Any) -> Any:
    from airflow_provider_gist.operators import ingest

    if cls_name != "CreateIndexingTaskOperator":  # the legacy operator does not wait
        kw["poll_interval"] = 0.05
    return getattr(ingest, cls_name)(task_id="ingest", **kw)


def _indexing_sensor(**kw: Any) -> Any:
    from airflow_provider_gist.sensors.indexing import IndexingCompleteSensor

    return IndexingCompleteSensor(task_id="wait", deferrable=True, poll_interval=0.05, timeout=5, **kw)


def _asset_sensor(**kw: Any) -> Any:
    from airflow_provider_gist.sensors.indexing import AssetReadySensor

    return AssetReadySensor(task_id="wait_asset", deferrable=True, poll_interval=0.05, timeout=5, **kw)


def _store(**kw: Any) -> Any:
    from airflow_provider_gist.operators.store import StoreGistsOperator

    return StoreGistsOperator(task_id="store", **kw)


ID_TARGETS: dict[str, tuple[str, OperatorFactory]] = {
    "generate.asset_id": ("asset_id", lambda v: _generate(asset_id=v)),
    "generate.video_id": ("video_id", lambda v: _generate(video_id=v)),
    "generate.index_id": ("index_id", lambda v: _generate(asset_id=GOOD_ID, index_id=v)),
    "index_asset.asset_id": (
        "asset_id",
        lambda v: _ingest("IndexAssetOperator", asset_id=v, index_id=GOOD_INDEX),
    ),
    "index_asset.index_id": (
        "index_id",
        lambda v: _ingest("IndexAssetOperator", asset_id=GOOD_ID, index_id=v),
    ),
    "ingest_video.index_id": (
        "index_id",
        lambda v: _ingest("IngestVideoOperator", video_url=GOOD_URL, index_id=v),
    ),
    "indexing_task.index_id": (
        "index_id",
        lambda v: _ingest("CreateIndexingTaskOperator", video_url=GOOD_URL, index_id=v),
    ),
    "sensor.index_id": ("index_id", lambda v: _indexing_sensor(index_id=v, indexed_asset_id=GOOD_ID)),
    "sensor.indexed_asset_id": (
        "indexed_asset_id",
        lambda v: _indexing_sensor(index_id=GOOD_INDEX, indexed_asset_id=v),
    ),
    "sensor.indexing_task_id": ("indexing_task_id", lambda v: _indexing_sensor(indexing_task_id=v)),
    "asset_sensor.asset_id": ("asset_id", lambda v: _asset_sensor(asset_id=v)),
    "store.video_ref": ("video_ref", lambda v: _store(gists=[make_gist(video_ref=v)])),
    "store.index_id": ("index_id", lambda v: _store(gists=[make_gist(index_id=v)])),
    "store_objects.video_ref": (
        "video_ref",
        lambda v: _store(gists=[make_gist(video_ref=v)], store="objects"),
    ),
}

# Where an empty id means "not given" the operator says which argument is missing instead.
EMPTY_MEANS_MISSING = {
    "generate.asset_id": "give exactly one of asset_id and video_id",
    "generate.video_id": "give exactly one of asset_id and video_id",
    "ingest_video.index_id": "give exactly one of index_id and index_name",
    "indexing_task.index_id": "give exactly one of index_id and index_name",
    "index_asset.index_id": "give exactly one of index_id and index_name",
    "generate.index_id": None,  # no index is a valid choice: nothing to refuse
    "store.index_id": None,  # a gist outside any index is valid
}


def _assert_no_http(ctl: EmulatorControl) -> None:
    stats = ctl.stats()
    assert stats["total_requests"] == 0, f"HTTP calls were made: {stats['calls']}"
    assert ctl.journal() == []


def _refused(operator: Any, field: str) -> GistValidationError:
    with pytest.raises(GistValidationError) as info:
        execute_with_deferral(operator, task_context())
    assert field in str(info.value), f"the error does not name {field!r}: {info.value}"
    return info.value


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
@pytest.mark.parametrize("target", list(ID_TARGETS))
def test_bad_ids_are_refused_naming_the_field_before_any_http_call(
    target: str, bad: str, ctl, rel_conn, gist_home, tmp_path: Path
) -> None:
    field, factory = ID_TARGETS[target]
    if bad == "" and target in EMPTY_MEANS_MISSING:
        expected = EMPTY_MEANS_MISSING[target]
        if expected is None:
            pytest.skip("an empty value means 'none' here, which is valid")
        field = expected
    if target == "store_objects.video_ref":
        before = sorted(p for p in tmp_path.rglob("*"))
    error = _refused(factory(bad), field)
    assert len(str(error)) < 400, "the error should quote a long value shortened"
    _assert_no_http(ctl)
    from airflow_provider_gist.storage.sql import SqlGistStore

    if (gist_home / "gists.db").exists():
        assert SqlGistStore().count() == 0
    if target == "store_objects.video_ref":
        assert sorted(p for p in tmp_path.rglob("*")) == before, "something was written"


@pytest.mark.parametrize(
    ("types", "named"),
    [
        (["titel"], "'titel'"),
        (["title", "hashtags"], "'hashtags'"),
        (["topics"], "'topics'"),
        ("title,tpoic", "'tpoic'"),
        ([], "at least one"),
        ("", "at least one"),
        ([None], "None"),
        (["title; DROP TABLE video_gists"], "DROP TABLE"),
    ],
)
def test_misspelled_gist_types_are_refused_before_any_http_call(
    types: Any, named: str, ctl, rel_conn
) -> None:
    error = _refused(_generate(asset_id=GOOD_ID, types=types), "types")
    assert named in str(error)
    assert "allowed are title, topic, hashtag" in str(error) or "at least one" in str(error)
    _assert_no_http(ctl)


def test_misspelled_gist_types_in_a_gist_to_store_are_refused(ctl, gist_home) -> None:
    _refused(_store(gists=[make_gist(types=["title", "hashtagz"])]), "hashtagz")
    _assert_no_http(ctl)


BAD_URLS = {
    "ftp": "ftp://videos.example.com/a.mp4",
    "file": "file:///etc/passwd",
    "javascript": "javascript:alert(1)",
    "data": "data:video/mp4;base64,AAAA",
    "gopher": "gopher://videos.example.com/a.mp4",
    "s3": "s3://bucket/a.mp4",
    "scheme-relative": "//videos.example.com/a.mp4",
    "no-host": "https:///a.mp4",
    "space": "https://videos.example.com/a b.mp4",
    "empty": "",
    "not-a-url": "sunrise_harbour_fishing.mp4",
}


@pytest.mark.parametrize("url", list(BAD_URLS.values()), ids=list(BAD_URLS))
@pytest.mark.parametrize(
    "operator", ["CreateAssetOperator", "IngestVideoOperator", "CreateIndexingTaskOperator"]
)
def test_unsupported_urls_are_refused_naming_the_field(operator: str, url: str, ctl, rel_conn) -> None:
    kwargs: dict[str, Any] = {"video_url": url}
    if operator != "CreateAssetOperator":
        kwargs["index_name"] = "catalog"
    field = "give exactly one of video_url and file_path" if url == "" else "video_url"
    _refused(_ingest(operator, **kwargs), field)
    _assert_no_http(ctl)


@pytest.mark.parametrize("name", ["", "   ", "bad\nname", "tab\tname", "nul\x00name", "x" * 201], ids=repr)
def test_bad_index_names_are_refused_before_any_http_call(name: str, ctl, rel_conn) -> None:
    field = "give exactly one of index_id and index_name" if name == "" else "index_name"
    _refused(_ingest("IngestVideoOperator", video_url=GOOD_URL, index_name=name), field)
    _assert_no_http(ctl)


# ---------------------------------------------------------------------------------------------
# nasty text, stored byte-exact
# ---------------------------------------------------------------------------------------------

STORE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def sql_conn_id(request, gist_home, monkeypatch) -> str | None:
    """``None`` for the embedded SQLite file, else a PostgreSQL connection id (fresh table)."""
    if request.param == "sqlite":
        return None
    uri = request.getfixturevalue("postgres_uri")
    monkeypatch.setenv("AIRFLOW_CONN_GISTS_PG", airflow_conn_json(uri))
    from airflow_provider_gist.storage.sql import SqlGistStore

    store = SqlGistStore("gists_pg")
    store.ensure_table()
    store.hook.run(f"DELETE FROM {store.table}")
    return "gists_pg"


def _analyze_answer(title: str, topics: list[str], hashtags: list[str]) -> dict[str, Any]:
    data = json.dumps({"title": title, "topics": topics, "hashtags": hashtags}, ensure_ascii=False)
    return {
        "id": "6f2b5c1e-0000-4000-8000-000000000001",
        "data": data,
        "finish_reason": "stop",
        "usage": {"output_tokens": 99, "input_tokens": 1000},
    }


def _exact(value: Any) -> Any:
    """Bytes of every string (so equality is byte equality, not a normalising comparison)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


#: (what the model says, what the model layer keeps as a topic). The model layer folds whitespace
#: runs (newlines included) to one space and turns control characters, bidi overrides and zero-width
#: spaces into spaces, by design; everything else (quotes, SQL, emoji sequences, ZWJ/ZWNJ,
#: combining marks, compatibility characters) must come through untouched.
MODEL_TEXT: list[tuple[str, str]] = [
    ('It\'s a "quoted" title', 'It\'s a "quoted" title'),
    ("'; DROP TABLE video_gists; --", "'; DROP TABLE video_gists; --"),
    ("Robert'); DELETE FROM video_gists WHERE ('1'='1", "Robert'); DELETE FROM video_gists WHERE ('1'='1"),
    ("line one\nline two\r\nthree\ttabbed", "line one line two three tabbed"),
    ("family 👨\u200d👩\u200d👧\u200d👦 flag 🇳🇴 é̃", "family 👨\u200d👩\u200d👧\u200d👦 flag 🇳🇴 é̃"),
    (
        "Scotland 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "Scotland 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ),
    (
        "Persian \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "Persian \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    ),
    ("percent %s %(name)s %% ? :1 $1 {0} {{ jinja }}", "percent %s %(name)s %% ? :1 $1 {0} {{ jinja }}"),
    ("LIKE 100% _under_ back\\slash \\n not a newline", "LIKE 100% _under_ back\\slash \\n not a newline"),
    ("bidi \u202eevil\u202c zero\u200bwidth", "bidi evil zero width"),
    ("NUL\x00 and bell\x07!", "NUL and bell !"),
    ("compat ½ Ω ﬁ \uff21\uff22\uff23", "compat ½ Ω ﬁ \uff21\uff22\uff23"),
    ("   padded   ", "padded"),
]


@pytest.mark.parametrize("sql_conn_id", STORE_BACKENDS, indirect=True)
def test_nasty_model_text_goes_through_generate_and_store_byte_exact(sql_conn_id, ctl, rel_conn) -> None:
    """Real /analyze answers full of quotes, SQL, newlines and emoji, generated, stored, read back."""
    from airflow_provider_gist.storage.sql import SqlGistStore

    generated = []
    for n, (said, kept) in enumerate(MODEL_TEXT):
        asset_id = f"{GOOD_ID[:-2]}{n:02d}"
        answer = _analyze_answer(said, [said, f"topic {n}"], [f"#{said}", "#plain"])
        ctl.clear_faults()
        ctl.add_faults([{"op": "analyze", "kind": "status", "status": 200, "body": answer, "count": 1}])
        gist = _generate(asset_id=asset_id, index_id=GOOD_INDEX).execute(task_context())
        # what the model layer lets through (titles also lose surrounding quotes; hashtags all spaces)
        assert _exact(gist["topics"]) == _exact([kept, f"topic {n}"]), said
        assert _exact(gist["title"]) == _exact(kept.strip("\"'").strip()), said
        assert _exact(gist["hashtags"]) == _exact(["".join(kept.split()).lstrip("#"), "plain"]), said
        generated.append(gist)
    result = _store(gists=generated, sql_conn_id=sql_conn_id, outlets=[]).execute(task_context())
    assert result["stored"] == len(MODEL_TEXT)

    store = SqlGistStore(sql_conn_id)
    assert store.count() == len(MODEL_TEXT)
    for gist in generated:
        row = store.get(GOOD_INDEX, gist["video_ref"])
        assert row is not None
        for key in ("title", "topics", "hashtags"):
            assert _exact(row[key]) == _exact(gist[key]), f"{key} of {gist['video_ref']} changed in the store"


@pytest.mark.parametrize("sql_conn_id", STORE_BACKENDS, indirect=True)
def test_raw_nasty_text_round_trips_byte_exact_at_the_storage_layer(sql_conn_id) -> None:
    """The store itself folds nothing: newlines, CRLF, tabs, bidi marks and emoji come back as given."""
    from airflow_provider_gist.storage.sql import SqlGistStore

    store = SqlGistStore(sql_conn_id)
    gists = [
        make_gist(f"raw{n:02d}", GOOD_INDEX, title=text, topics=[text, text[::-1]], hashtags=[text])
        for n, text in enumerate(NASTY)
    ]
    assert store.put_many(gists) == len(gists)
    assert store.put_many(gists) == 0  # the same gists again: nothing newer, nothing written
    assert store.count() == len(gists)
    for gist in gists:
        row = store.get(GOOD_INDEX, gist["video_ref"])
        assert row is not None
        assert stored(row) == gist
        for key in ("title", "topics", "hashtags"):
            assert _exact(row[key]) == _exact(gist[key])
    # and the SQL fragments were data, not SQL: the table and every row are still there
    assert {g["video_ref"] for g in store.list_gists(limit=100)} == {g["video_ref"] for g in gists}


def test_sqlite_file_holds_the_text_as_utf8(gist_home) -> None:
    from airflow_provider_gist.storage.sql import SqlGistStore

    text = "emoji 🎣🌅 family 👨‍👩‍👧‍👦 'quote' \"dq\" ; DROP TABLE x; --"
    SqlGistStore().put_many([make_gist(title=text, topics=[text], hashtags=["Fishing🎣"])])
    raw = (gist_home / "gists.db").read_bytes()
    wal = gist_home / "gists.db-wal"
    if wal.exists():
        raw += wal.read_bytes()
    assert text.encode("utf-8") in raw
    assert "Fishing🎣".encode() in raw  # JSON columns are UTF-8 text, not \u escapes


# ---------------------------------------------------------------------------------------------
# object keys
# ---------------------------------------------------------------------------------------------

ESCAPING_KEYS = ["..", "../outside", "a/../../outside", "%2e%2e", "..%2Foutside", "/abs", ".dot", "_no_index"]


@pytest.mark.parametrize("which", ["index_id", "video_ref"])
@pytest.mark.parametrize("key", ESCAPING_KEYS)
def test_object_keys_cannot_leave_their_prefix(key: str, which: str, tmp_path: Path) -> None:
    from airflow_provider_gist.storage.objects import ObjectGistStore

    base = tmp_path / "bucket" / "gists"
    base.mkdir(parents=True)
    store = ObjectGistStore(f"file://{base}/")
    gist = make_gist(**{which: key})
    with pytest.raises(GistValidationError, match=which):
        store.put_many([gist])
    with pytest.raises(GistValidationError, match=which):
        store.path_for(gist["index_id"], gist["video_ref"])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "a document was written somewhere"
    # and a good gist lands under the prefix, at the documented key
    store.put_many([make_gist()])
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [base / GOOD_INDEX / f"{GOOD_ID}.json"]
