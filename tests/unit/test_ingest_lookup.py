"""A create whose answer was lost: the ingest operators look for what it made before sending again.

After a create call fails in a way that may have left the resource made (a 500, a gateway
page, a read timeout, a garbled 2xx), the operator lists by the ingest key for the connection's
lookup window (``create_lookup_seconds``) instead of creating again in the same try. Time is
faked: the lookups' pauses are recorded, never slept.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_gist.errors import GistTransientError
from airflow_provider_gist.operators.ingest import (
    INGEST_KEY_FIELD,
    STATE_KEY_INDEXED_ASSET,
    CreateAssetOperator,
    IndexAssetOperator,
    IngestVideoOperator,
    ingest_key,
)
from tests.conftest import twelvelabs_conn_json
from tests.unit import ingest_fakes
from tests.unit.ingest_fakes import API, BASE, FAST, INDEX, URL, FakeStore, make_context

conn = ingest_fakes.conn  # autouse
api = ingest_fakes.api
lookup_time = ingest_fakes.lookup_time


#: The connection's lookup window in these tests (create_lookup_seconds): lookups at 0, 0.5,
#: 1.5, 3.5 and 6 s (the pauses double from 0.5 s; the last one is cut to the window's end).
WINDOW = 6
LOOKUP_PAUSES = [0.5, 1.0, 2.0, 2.5]


@pytest.fixture
def windowed(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(BASE, max_attempts=2, create_lookup_seconds=WINDOW),
    )


def _assets_answering(
    requests_mock, *answers: dict[str, Any], listed: list[list[dict]] | None = None
) -> None:
    """``POST /assets`` answers these in turn; the asset listing shows ``listed`` pages in turn."""
    requests_mock.post(f"{API}/assets", list(answers))
    pages = [{"json": {"data": items, "page_info": {"total_page": 1}}} for items in (listed or [[]])]
    requests_mock.get(f"{API}/assets", pages)
    requests_mock.get(f"{API}/assets/a1", json={"_id": "a1", "status": "ready", "filename": "harbour.mp4"})


def _lookups(requests_mock) -> int:
    return sum(1 for r in requests_mock.request_history if r.method == "GET" and r.path == "/v1.3/assets")


def _posts(requests_mock) -> int:
    return sum(1 for r in requests_mock.request_history if r.method == "POST")


def test_a_create_answered_500_is_recovered_by_the_ingest_key_in_the_same_try(api, lookup_time):
    """The server created the indexed asset but answered 500: found by its key, not created again."""
    store = FakeStore(api)
    api.lose_indexed_create = 1
    op = IngestVideoOperator(task_id="t", video_url=URL, index_id=INDEX, **FAST)
    out = op.execute(make_context(store))
    assert api.asset_posts == 1
    assert api.indexed_posts == 1
    assert out["indexed_asset_id"] == next(iter(api.indexed))
    assert store.data[STATE_KEY_INDEXED_ASSET]["id"] == out["indexed_asset_id"]
    assert lookup_time.sleeps == []  # listed at once: found by the first lookup


def test_a_create_answered_500_is_found_when_the_listing_lags(api, lookup_time, windowed):
    """Created, then 500, and the listing shows it only on the fourth lookup: still one create."""
    api.lose_indexed_create = 1
    api.lagging_indexed_lists = 1 + 3  # the lookup before the create, then three after the 500
    out = IngestVideoOperator(task_id="t", video_url=URL, index_id=INDEX, **FAST).execute(
        make_context(FakeStore(api))
    )
    assert api.indexed_posts == 1
    assert out["indexed_asset_id"] == next(iter(api.indexed))
    assert lookup_time.sleeps == [0.5, 1.0, 2.0]


def test_an_api_500_that_created_nothing_is_sent_again_only_after_the_lookup_window(
    requests_mock, lookup_time, windowed
):
    """The API itself answered (a code, not a gateway): once the window shows nothing, create again."""
    _assets_answering(
        requests_mock,
        {"status_code": 500, "json": {"code": "internal_error", "message": "boom"}},
        {"status_code": 201, "json": {"_id": "a1", "status": "ready", "filename": "harbour.mp4"}},
    )
    out = CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert out["asset_id"] == "a1"
    assert _posts(requests_mock) == 2
    assert lookup_time.sleeps == LOOKUP_PAUSES  # the whole window was looked through first
    assert _lookups(requests_mock) == 1 + 5  # the lookup before the create, then 5 after the 500
    assert lookup_time.now == WINDOW


@pytest.mark.parametrize(
    "answer",
    [
        {"status_code": 504, "text": "<html><title>504 Gateway Timeout</title></html>"},
        {"status_code": 502, "json": {"message": "Bad gateway"}},
        {"status_code": 503, "json": {"code": "service_unavailable", "message": "later"}},
    ],
    ids=["504-html", "502-no-code", "503"],
)
def test_a_gateway_5xx_is_never_followed_by_a_second_create_in_the_same_try(
    requests_mock, lookup_time, windowed, answer
):
    """A gateway may answer while the API still works on the upload: look, never upload again."""
    _assets_answering(requests_mock, answer)
    with pytest.raises(GistTransientError, match="may still be creating"):
        CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert _posts(requests_mock) == 1  # not resent by the hook (a 503 proves nothing), nor by us
    assert lookup_time.sleeps == LOOKUP_PAUSES


def test_a_gateway_5xx_whose_upload_lands_during_the_window_is_found(requests_mock, lookup_time, windowed):
    late = {"_id": "a1", "status": "processing", "filename": "harbour.mp4"}
    late["user_metadata"] = {INGEST_KEY_FIELD: _asset_key()}
    _assets_answering(
        requests_mock,
        {"status_code": 504, "text": "<html>504</html>"},
        listed=[[], [], [], [late]],  # before the create, then twice empty, then listed
    )
    out = CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert out["asset_id"] == "a1"
    assert _posts(requests_mock) == 1
    assert lookup_time.sleeps == [0.5, 1.0]


def _asset_key() -> str:
    from airflow_provider_gist.ingest.sources import resolve_source

    source = resolve_source(URL, None, None)
    return ingest_key("asset", target=None, source=f"{source.identity}|filename={source.filename}")


def test_a_create_that_timed_out_is_looked_for_then_left_to_the_task_retry(
    requests_mock, lookup_time, windowed
):
    """After a read timeout the server may still be working: look for the window, never POST again."""
    import requests as _requests

    requests_mock.post(f"{API}/assets", exc=_requests.exceptions.ReadTimeout("slow"))
    requests_mock.get(f"{API}/assets", json={"data": [], "page_info": {"total_page": 1}})
    with pytest.raises(GistTransientError, match="may have been processed"):
        CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert _posts(requests_mock) == 1
    assert lookup_time.sleeps == LOOKUP_PAUSES


def test_a_garbled_2xx_create_is_found_in_the_same_try(requests_mock, lookup_time, windowed):
    """The API answered 201 with half a body: it surely created the asset, so it is looked up."""
    made = {"_id": "a1", "status": "ready", "filename": "harbour.mp4", "user_metadata": {}}
    made["user_metadata"][INGEST_KEY_FIELD] = _asset_key()
    _assets_answering(requests_mock, {"status_code": 201, "text": '{"_id": "a'}, listed=[[], [made]])
    out = CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert out["asset_id"] == "a1"
    assert _posts(requests_mock) == 1


def test_a_read_that_failed_before_the_create_was_sent_is_not_looked_up(
    requests_mock, api, lookup_time, windowed
):
    """Indexing first waits for the asset: a GET that fails (5xx) made nothing, so no lookup window."""
    asset_id = "as0000000000000000000001"
    requests_mock.get(f"{API}/assets/{asset_id}", status_code=500, json={"code": "internal", "message": "x"})
    op = IndexAssetOperator(task_id="t", asset_id=asset_id, index_id=INDEX, **FAST)
    with pytest.raises(GistTransientError, match=r"GET /v1\.3/assets/.* HTTP 500"):
        op.execute(make_context(FakeStore(api)))
    assert lookup_time.sleeps == []
    assert api.indexed_posts == 0


def test_a_refused_create_is_not_looked_up(requests_mock, lookup_time, windowed):
    """A 4xx is answered before anything is done: no lookup window, the error at once."""
    _assets_answering(
        requests_mock, {"status_code": 400, "json": {"code": "parameter_invalid", "message": "no"}}
    )
    with pytest.raises(Exception, match="parameter_invalid"):
        CreateAssetOperator(task_id="t", video_url=URL, **FAST).execute(make_context(None))
    assert lookup_time.sleeps == []
    assert _lookups(requests_mock) == 1  # the lookup before the create only
