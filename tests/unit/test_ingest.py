"""Ingest operators with HTTP mocked: validation, return shapes and, above all, durability.

A tiny in-memory TwelveLabs (``FakeApi`` of tests/unit/ingest_fakes.py) keeps the resources the
operators create, so every test can count POSTs: the point of these operators is that a retry
or a second run never uploads (or bills) twice. What a create whose answer was lost does (the
lookup window) is in tests/unit/test_ingest_lookup.py.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_gist.errors import GistNotFoundError, GistTimeoutError, GistValidationError
from airflow_provider_gist.operators.ingest import (
    INGEST_KEY_FIELD,
    STATE_KEY_ASSET,
    STATE_KEY_INDEXED_ASSET,
    STATE_KEY_INDEXING_TASK,
    CreateAssetOperator,
    CreateIndexingTaskOperator,
    IndexAssetOperator,
    IngestFailedError,
    IngestVideoOperator,
    ingest_key,
)
from tests.conftest import TEST_API_KEY
from tests.unit import ingest_fakes
from tests.unit.ingest_fakes import FAST, INDEX, URL, FakeApi, FakeStore, make_context

conn = ingest_fakes.conn  # autouse
api = ingest_fakes.api


# ---------------------------------------------------------------------------------------------
# construction and validation
# ---------------------------------------------------------------------------------------------


def test_construction_does_no_io(requests_mock, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TWELVELABS_DEFAULT")
    op = IngestVideoOperator(task_id="i", video_url="{{ params.url }}", index_name="{{ params.index }}")
    assert op.video_url == "{{ params.url }}"
    assert requests_mock.call_count == 0
    for cls in (CreateAssetOperator, IndexAssetOperator, IngestVideoOperator, CreateIndexingTaskOperator):
        assert "twelvelabs_conn_id" in cls.template_fields
    assert {"video_url", "file_path", "filename", "index_id", "index_name"} <= set(
        IngestVideoOperator.template_fields
    )
    assert {"asset_id", "index_id", "index_name"} <= set(IndexAssetOperator.template_fields)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (CreateAssetOperator, {}, "video_url and file_path"),
        (CreateAssetOperator, {"video_url": URL, "file_path": "/tmp/a.mp4"}, "video_url and file_path"),
        (CreateAssetOperator, {"video_url": "ftp://host/clip.mp4"}, "video_url"),
        (CreateAssetOperator, {"video_url": "file:///etc/passwd"}, "video_url"),
        (CreateAssetOperator, {"video_url": "not a url"}, "video_url"),
        (CreateAssetOperator, {"file_path": "/tmp/../etc/passwd"}, "file_path"),
        (CreateAssetOperator, {"file_path": "relative/clip.mp4"}, "file_path"),
        (CreateAssetOperator, {"file_path": "https://media.example.test/a.mp4"}, "video_url"),
        (CreateAssetOperator, {"file_path": "/nonexistent/gist-tests/clip.mp4"}, "file_path"),
        (CreateAssetOperator, {"video_url": URL, "filename": "../x.mp4"}, "filename"),
        (CreateAssetOperator, {"video_url": URL, "user_metadata": {INGEST_KEY_FIELD: "x"}}, "reserved"),
        (CreateAssetOperator, {"video_url": URL, "user_metadata": {"k": [1]}}, "user_metadata"),
        (CreateAssetOperator, {"video_url": URL, "asset_timeout": 0}, "asset_timeout"),
        (CreateAssetOperator, {"video_url": URL, "poll_interval": -1}, "poll_interval"),
        (IndexAssetOperator, {"asset_id": "../as1", "index_id": INDEX}, "asset_id"),
        (IndexAssetOperator, {"asset_id": "as1", "index_id": "ix/../../v"}, "index_id"),
        (IndexAssetOperator, {"asset_id": "as1"}, "index_id and index_name"),
        (
            IndexAssetOperator,
            {"asset_id": "as1", "index_id": INDEX, "index_name": "c"},
            "index_id and index_name",
        ),
        (IndexAssetOperator, {"asset_id": "as1", "index_name": "c", "index_model": "gpt"}, "index_model"),
        (IngestVideoOperator, {"video_url": "ftp://host/a.mp4", "index_id": INDEX}, "video_url"),
        (IngestVideoOperator, {"video_url": URL, "index_id": "../ix"}, "index_id"),
        (IngestVideoOperator, {"index_id": INDEX}, "video_url and file_path"),
        (IngestVideoOperator, {"video_url": URL, "index_name": " "}, "index_name"),
        (CreateIndexingTaskOperator, {"video_url": "file:///tmp/a.mp4", "index_id": INDEX}, "video_url"),
        (
            CreateIndexingTaskOperator,
            {"video_url": URL, "file_path": "/tmp/a", "index_id": INDEX},
            "file_path",
        ),
        (CreateIndexingTaskOperator, {"video_url": URL}, "index_id and index_name"),
    ],
)
def test_bad_input_names_the_field_before_any_http(requests_mock, cls, kwargs, field):
    op = cls(task_id="t", **kwargs)
    with pytest.raises(GistValidationError, match=field):
        op.execute(context=make_context(FakeStore()))
    assert requests_mock.call_count == 0


def test_oversized_file_is_refused_before_upload(requests_mock, tmp_path):
    # Over 200 MB goes up in parts (tests/unit/test_multipart.py); over 10 GiB the API refuses.
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(10 * 1024**3 + 1)
    with pytest.raises(GistValidationError, match=r"file_path .* 10 GiB"):
        CreateAssetOperator(task_id="t", file_path=str(big), **FAST).execute(make_context(FakeStore()))
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------------------------
# CreateAssetOperator
# ---------------------------------------------------------------------------------------------


def test_first_run_stores_the_asset_id_before_waiting(api):
    store = FakeStore(api)
    out = CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(store))
    assert out == {"asset_id": out["asset_id"], "filename": "harbour.mp4", "status": "ready"}
    assert store.data[STATE_KEY_ASSET]["id"] == out["asset_id"]
    # Written right after the POST, before the first status GET.
    before = store.set_after[STATE_KEY_ASSET]
    assert before[-1] == ("POST", "/v1.3/assets")
    assert not any(path == f"/v1.3/assets/{out['asset_id']}" for _, path in before)
    # The upload carried the ingest key, so the asset can be found without the store.
    sent = json.loads(api.uploads[0]["user_metadata"])
    assert sent == {INGEST_KEY_FIELD: store.data[STATE_KEY_ASSET]["ingest_key"]}
    assert api.uploads[0]["filename"] == "harbour.mp4"
    assert api.uploads[0]["url"] == URL


def test_retry_after_a_crash_while_waiting_reconnects_without_a_second_post(api):
    store = FakeStore(api)
    api.broken_asset_gets = 1  # the first status poll "kills the worker"
    op = CreateAssetOperator(task_id="t", video_url=URL, **FAST)
    with pytest.raises(Exception, match="worker died here"):
        op.execute(make_context(store))
    assert api.asset_posts == 1
    lists_before = api.calls("GET", "/assets")

    out = op.execute(make_context(store, try_number=2))
    assert api.asset_posts == 1
    assert out["asset_id"] == store.data[STATE_KEY_ASSET]["id"]
    assert out["status"] == "ready"
    # The state store answered first: no listing was needed on the retry.
    assert api.calls("GET", "/assets") == lists_before


def test_timeout_is_resumable_and_never_uploads_again(api):
    store = FakeStore(api)
    api.asset_statuses = ["processing"]
    op = CreateAssetOperator(task_id="t", video_url=URL, asset_timeout=0.05, poll_interval=0.01)
    with pytest.raises(GistTimeoutError, match="resumes waiting on the same asset"):
        op.execute(make_context(store))
    next(iter(api.assets.values()))["statuses"] = ["ready"]
    out = op.execute(make_context(store, try_number=2))
    assert api.asset_posts == 1
    assert out["status"] == "ready"


def test_stored_failed_asset_is_replaced_by_a_fresh_one(api):
    store = FakeStore(api)
    api.asset_statuses = ["processing", "failed"]
    op = CreateAssetOperator(task_id="t", video_url=URL, **FAST)
    with pytest.raises(IngestFailedError, match="could not be decoded"):
        op.execute(make_context(store))
    failed_id = store.data[STATE_KEY_ASSET]["id"]

    api.asset_statuses = ["processing", "ready"]
    out = op.execute(make_context(store, try_number=2))
    # The failed asset carries the same ingest key, but a failed one is never reused.
    assert api.asset_posts == 2
    assert out["asset_id"] != failed_id
    assert store.data[STATE_KEY_ASSET]["id"] == out["asset_id"]


def test_without_a_state_store_the_retry_finds_the_asset_by_its_ingest_key(api):
    api.broken_asset_gets = 1
    op = CreateAssetOperator(task_id="t", video_url=URL, reuse_existing=False, **FAST)
    with pytest.raises(Exception, match="worker died here"):
        op.execute(make_context(None))
    out = op.execute(make_context(None, try_number=2))
    assert api.asset_posts == 1
    assert out["asset_id"] == next(iter(api.assets))
    assert api.calls("GET", "/assets") == 2  # looked up on both tries (no store to ask)


@pytest.mark.parametrize("broken", ["get", "set"])
def test_a_failing_state_store_degrades_to_the_ingest_key(api, broken):
    store = FakeStore(api, broken_get=broken == "get", broken_set=broken == "set")
    api.broken_asset_gets = 1
    op = CreateAssetOperator(task_id="t", video_url=URL, reuse_existing=False, **FAST)
    with pytest.raises(Exception, match="worker died here"):
        op.execute(make_context(store))
    out = op.execute(make_context(store, try_number=2))
    assert api.asset_posts == 1
    assert out["status"] == "ready"


def test_a_new_run_reuses_the_asset_only_when_reuse_existing(api):
    CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(FakeStore(api)))
    again = CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(
        make_context(FakeStore(api), run_id="run_2")
    )
    assert api.asset_posts == 1
    assert again["asset_id"] == next(iter(api.assets))

    fresh = CreateAssetOperator(task_id="t", video_url=URL, reuse_existing=False, **FAST)
    out = fresh.execute(make_context(FakeStore(api), run_id="run_3"))
    assert api.asset_posts == 2
    assert out["asset_id"] != again["asset_id"]


def test_stored_id_for_other_inputs_is_not_reused(api):
    store = FakeStore(api)
    CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(store))
    other = "https://media.example.test/videos/other.mp4"
    out = CreateAssetOperator(task_id="t", video_url=other, **FAST).execute(make_context(store, try_number=2))
    assert api.asset_posts == 2
    assert out["filename"] == "other.mp4"


@pytest.mark.parametrize("as_url", [False, True])
def test_file_upload_streams_through_object_storage_path(api, tmp_path, as_url):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 100)
    path = f"file://{clip}" if as_url else str(clip)
    store = FakeStore(api)
    out = CreateAssetOperator(task_id="t", file_path=path, filename="Harbour.mp4", **FAST).execute(
        make_context(store)
    )
    assert out["filename"] == "Harbour.mp4"
    assert out["status"] == "ready"
    upload = api.uploads[0]
    assert upload["method"] == "direct"
    assert upload["file"] == ("Harbour.mp4", clip.read_bytes())
    # A retry of the same file reconnects.
    CreateAssetOperator(task_id="t", file_path=path, filename="Harbour.mp4", **FAST).execute(
        make_context(store, try_number=2)
    )
    assert api.asset_posts == 1


def test_signed_url_query_never_reaches_xcom(api):
    signed = URL + "?X-Amz-Signature=abcdef0123456789&X-Amz-Credential=AKIAEXAMPLE"
    out = IngestVideoOperator(task_id="t", video_url=signed, index_id=INDEX, **FAST).execute(
        make_context(FakeStore(api))
    )
    assert out["video_url"] == URL
    assert "Signature" not in json.dumps(out)


# ---------------------------------------------------------------------------------------------
# IndexAssetOperator and IngestVideoOperator
# ---------------------------------------------------------------------------------------------


def _ready_asset(api: FakeApi) -> str:
    out = CreateAssetOperator(task_id="a", video_url=URL, **FAST).execute(make_context(FakeStore(api)))
    return out["asset_id"]


def test_index_asset_returns_without_waiting_for_indexing(api):
    asset_id = _ready_asset(api)
    store = FakeStore(api)
    out = IndexAssetOperator(task_id="t", asset_id=asset_id, index_id=INDEX, **FAST).execute(
        make_context(store)
    )
    assert out == {"index_id": INDEX, "indexed_asset_id": out["indexed_asset_id"], "asset_id": asset_id}
    assert api.indexed[out["indexed_asset_id"]]["status"] == "pending"
    assert api.calls("GET", r"/indexes/[^/]+/indexed-assets/[^/]+") == 0
    assert store.data[STATE_KEY_INDEXED_ASSET] == {
        "id": out["indexed_asset_id"],
        "ingest_key": ingest_key("indexed_asset", target=INDEX, source=asset_id),
        "index_id": INDEX,
    }
    assert api.indexed[out["indexed_asset_id"]]["user_metadata"] == {
        INGEST_KEY_FIELD: store.data[STATE_KEY_INDEXED_ASSET]["ingest_key"]
    }


def test_index_asset_waits_for_a_processing_asset_before_posting(api):
    api.asset_statuses = ["processing"]
    api.assets["as9"] = {
        "_id": "as9",
        "method": "url",
        "filename": "x.mp4",
        "user_metadata": {},
        "statuses": ["processing", "processing", "ready"],
    }
    out = IndexAssetOperator(task_id="t", asset_id="as9", index_id=INDEX, **FAST).execute(
        make_context(FakeStore(api))
    )
    assert out["asset_id"] == "as9"
    assert api.indexed_posts == 1
    assert api.calls("GET", "/assets/as9") >= 2


def test_index_asset_retry_and_new_run_reuse_the_indexed_asset(api):
    asset_id = _ready_asset(api)
    store = FakeStore(api)
    op = IndexAssetOperator(task_id="t", asset_id=asset_id, index_id=INDEX, **FAST)
    first = op.execute(make_context(store))
    retry = op.execute(make_context(store, try_number=2))
    new_run = op.execute(make_context(FakeStore(api), run_id="run_2"))
    no_store = op.execute(make_context(None, run_id="run_3"))
    assert api.indexed_posts == 1
    assert first == retry == new_run == no_store


def test_missing_index_name_fails_before_any_upload(api):
    op = IngestVideoOperator(task_id="t", video_url=URL, index_name="nope", **FAST)
    with pytest.raises(GistNotFoundError, match="index_name 'nope'"):
        op.execute(make_context(FakeStore(api)))
    assert api.asset_posts == 0


def test_ingest_video_creates_the_index_by_name_when_allowed(api):
    out = IngestVideoOperator(
        task_id="t", video_url=URL, index_name="new-catalog", create_index_if_missing=True, **FAST
    ).execute(make_context(FakeStore(api)))
    assert api.indexes[out["index_id"]] == "new-catalog"
    assert set(out) == {"asset_id", "index_id", "indexed_asset_id", "video_url"}


def test_ingest_video_crash_after_upload_resumes_without_uploading_again(api):
    store = FakeStore(api)
    api.broken_asset_gets = 1
    op = IngestVideoOperator(task_id="t", video_url=URL, index_id=INDEX, **FAST)
    with pytest.raises(Exception, match="worker died here"):
        op.execute(make_context(store))
    assert api.asset_posts == 1
    assert api.indexed_posts == 0
    out = op.execute(make_context(store, try_number=2))
    assert api.asset_posts == 1
    assert api.indexed_posts == 1
    assert store.data[STATE_KEY_ASSET]["id"] == out["asset_id"]
    assert store.data[STATE_KEY_INDEXED_ASSET]["id"] == out["indexed_asset_id"]


def test_ingest_video_second_run_creates_nothing(api):
    op = IngestVideoOperator(task_id="t", video_url=URL, index_id=INDEX, **FAST)
    first = op.execute(make_context(FakeStore(api)))
    second = op.execute(make_context(FakeStore(api), run_id="run_2"))
    assert first == second
    assert api.asset_posts == 1
    assert api.indexed_posts == 1


def test_ingest_video_fresh_asset_after_failure_gets_a_fresh_indexed_asset(api):
    store = FakeStore(api)
    api.asset_statuses = ["failed"]
    op = IngestVideoOperator(task_id="t", video_url=URL, index_id=INDEX, **FAST)
    with pytest.raises(IngestFailedError):
        op.execute(make_context(store))
    assert api.indexed_posts == 0
    api.asset_statuses = ["ready"]
    out = op.execute(make_context(store, try_number=2))
    assert api.asset_posts == 2
    assert api.indexed_posts == 1
    assert out["indexed_asset_id"] in api.indexed


# ---------------------------------------------------------------------------------------------
# legacy /tasks
# ---------------------------------------------------------------------------------------------


def test_legacy_task_is_created_once_and_reconnected(api):
    store = FakeStore(api)
    op = CreateIndexingTaskOperator(task_id="t", video_url=URL, index_id=INDEX)
    first = op.execute(make_context(store))
    assert set(first) == {"indexing_task_id", "video_id", "index_id"}
    assert first["index_id"] == INDEX
    assert store.data[STATE_KEY_INDEXING_TASK]["id"] == first["indexing_task_id"]
    assert store.data[STATE_KEY_INDEXING_TASK]["video_id"] == first["video_id"]
    assert op.execute(make_context(store, try_number=2)) == first
    assert api.task_posts == 1


def test_legacy_task_without_state_store_is_found_through_its_video(api):
    op = CreateIndexingTaskOperator(task_id="t", video_url=URL, index_id=INDEX)
    first = op.execute(make_context(None))
    again = op.execute(make_context(None, try_number=2))
    assert again == first
    assert api.task_posts == 1


def test_legacy_failed_task_is_replaced(api):
    store = FakeStore(api)
    op = CreateIndexingTaskOperator(task_id="t", video_url=URL, index_id=INDEX)
    first = op.execute(make_context(store))
    api.tasks[first["indexing_task_id"]]["status"] = "failed"
    api.indexed[first["video_id"]]["status"] = "failed"
    second = op.execute(make_context(store, try_number=2))
    assert api.task_posts == 2
    assert second["indexing_task_id"] != first["indexing_task_id"]


def test_legacy_file_upload_streams_the_file(api, tmp_path):
    clip = tmp_path / "legacy.mp4"
    clip.write_bytes(b"legacy-bytes")
    out = CreateIndexingTaskOperator(task_id="t", file_path=f"file://{clip}", index_id=INDEX).execute(
        make_context(FakeStore(api))
    )
    upload = api.uploads[0]
    assert upload["video_file"] == ("legacy.mp4", b"legacy-bytes")
    assert upload["index_id"] == INDEX
    assert INGEST_KEY_FIELD in json.loads(upload["user_metadata"])
    assert out["video_id"] in api.indexed


def test_errors_and_results_never_carry_the_api_key(api):
    api.asset_statuses = ["failed"]
    with pytest.raises(IngestFailedError) as err:
        CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(FakeStore(api)))
    assert TEST_API_KEY not in str(err.value)


def test_default_filename_is_the_decoded_last_url_segment(api):
    out = CreateAssetOperator(
        task_id="t", video_url="https://media.example.test/v/Sunrise%20Harbour.mp4?sig=abcdef123", **FAST
    ).execute(make_context(FakeStore(api)))
    assert out["filename"] == "Sunrise Harbour.mp4"
    assert api.uploads[0]["filename"] == "Sunrise Harbour.mp4"
