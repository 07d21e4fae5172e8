"""Ingest operators with HTTP mocked: validation, return shapes and, above all, durability.

A tiny in-memory TwelveLabs (``FakeApi``, on requests_mock callbacks) keeps the resources the
operators create, so every test can count POSTs: the point of these operators is that a retry
or a second run never uploads (or bills) twice.
"""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import default as default_policy
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gist.errors import (
    GistNotFoundError,
    GistTimeoutError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.ingest import durable
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
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

BASE = "https://api.twelvelabs.test"
API = f"{BASE}/v1.3"
URL = "https://media.example.test/videos/harbour.mp4"
INDEX = "ix0000000000000000000001"


def _multipart(request: Any) -> dict[str, Any]:
    """The form fields of a multipart request: text as str, file parts as (filename, bytes)."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=default_policy).parsebytes(head + request.body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        filename = part.get_filename()
        fields[name] = (filename, payload) if filename else payload.decode()
    return fields


class FakeApi:
    """Assets, indexed assets, legacy tasks and indexes, held in dicts; statuses scripted per id."""

    def __init__(self, mocker: Any) -> None:
        self.m = mocker
        self.assets: dict[str, dict[str, Any]] = {}
        self.indexed: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.indexes: dict[str, str] = {INDEX: "catalog"}
        self.n = 0
        #: statuses the next GETs of each new asset return, in order (the last one sticks)
        self.asset_statuses = ["processing", "ready"]
        #: answer the next N asset GETs with a 400 (a "crash" while waiting)
        self.broken_asset_gets = 0
        #: create the next indexed asset but answer 500 (the response is lost)
        self.lose_indexed_create = 0
        #: the next N indexed-asset listings do not show it yet (an eventually consistent listing)
        self.lagging_indexed_lists = 0
        self.uploads: list[dict[str, Any]] = []
        ident = r"([A-Za-z0-9_-]+)"
        m = mocker
        m.post(f"{API}/assets", json=self._create_asset, status_code=201)
        m.get(re.compile(rf"{re.escape(API)}/assets(\?.*)?$"), json=self._list_assets)
        m.get(re.compile(rf"{re.escape(API)}/assets/{ident}$"), json=self._get_asset)
        m.post(re.compile(rf"{re.escape(API)}/indexes/{ident}/indexed-assets$"), json=self._create_indexed)
        m.get(
            re.compile(rf"{re.escape(API)}/indexes/{ident}/indexed-assets(\?.*)?$"), json=self._list_indexed
        )
        m.get(
            re.compile(rf"{re.escape(API)}/indexes/{ident}/indexed-assets/{ident}$"), json=self._get_indexed
        )
        m.post(f"{API}/tasks", json=self._create_task)
        m.get(re.compile(rf"{re.escape(API)}/tasks(\?.*)?$"), json=self._list_tasks)
        m.get(re.compile(rf"{re.escape(API)}/tasks/{ident}$"), json=self._get_task)
        m.get(re.compile(rf"{re.escape(API)}/indexes(\?.*)?$"), json=self._list_indexes)
        m.post(f"{API}/indexes", json=self._create_index, status_code=201)

    # --------------------------------------------------------------------------- bookkeeping
    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:022d}"

    def calls(self, method: str, pattern: str) -> int:
        return sum(
            1
            for r in self.m.request_history
            if r.method == method and re.fullmatch(pattern, r.path.removeprefix("/v1.3"))
        )

    @property
    def asset_posts(self) -> int:
        return self.calls("POST", "/assets")

    @property
    def indexed_posts(self) -> int:
        return self.calls("POST", r"/indexes/[^/]+/indexed-assets")

    @property
    def task_posts(self) -> int:
        return self.calls("POST", "/tasks")

    @staticmethod
    def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"data": items, "page_info": {"page": 1, "total_page": 1, "total_results": len(items)}}

    # --------------------------------------------------------------------------- handlers
    def _create_asset(self, request: Any, context: Any) -> dict[str, Any]:
        fields = _multipart(request)
        self.uploads.append(fields)
        asset = {
            "_id": self._id("as"),
            "method": fields["method"],
            "filename": fields.get("filename"),
            "user_metadata": json.loads(fields.get("user_metadata") or "{}"),
            "statuses": list(self.asset_statuses),
        }
        self.assets[asset["_id"]] = asset
        return {**self._asset_view(asset, advance=False)}

    def _asset_view(self, asset: dict[str, Any], *, advance: bool) -> dict[str, Any]:
        statuses = asset["statuses"]
        status = statuses[0]
        if advance and len(statuses) > 1:
            statuses.pop(0)
        body = {k: v for k, v in asset.items() if k != "statuses"}
        body["status"] = status
        if status == "failed":
            body["error"] = {"message": "The file could not be decoded."}
        return body

    def _list_assets(self, request: Any, context: Any) -> dict[str, Any]:
        wanted = (request.qs.get("filename") or [""])[0].lower()
        items = [
            self._asset_view(a, advance=False)
            for a in reversed(self.assets.values())
            if wanted in (a["filename"] or "").lower()
        ]
        return self._page(items)

    def _get_asset(self, request: Any, context: Any) -> dict[str, Any]:
        asset_id = request.path.rsplit("/", 1)[1]
        if self.broken_asset_gets:
            self.broken_asset_gets -= 1
            context.status_code = 400
            return {"code": "emulated_crash", "message": "worker died here"}
        asset = self.assets.get(asset_id)
        if asset is None:
            context.status_code = 400
            return {"code": "resource_not_exist", "message": "no such asset"}
        return self._asset_view(asset, advance=True)

    def _create_indexed(self, request: Any, context: Any) -> dict[str, Any]:
        index_id = request.path.split("/")[-2]
        body = request.json()
        asset = self.assets[body["asset_id"]]
        if asset["statuses"][0] != "ready":
            context.status_code = 400
            return {"code": "parameter_invalid", "message": "only ready assets can be indexed"}
        item = {
            "_id": self._id("ia"),
            "index_id": index_id,
            "asset_id": body["asset_id"],
            "status": "pending",
            "user_metadata": body.get("user_metadata") or {},
            "system_metadata": {"filename": asset["filename"]},
        }
        self.indexed[item["_id"]] = item
        if self.lose_indexed_create:
            self.lose_indexed_create -= 1
            context.status_code = 500
            return {"code": "internal_error", "message": "lost"}
        context.status_code = 202
        return {"_id": item["_id"], "asset_id": item["asset_id"]}

    def _list_indexed(self, request: Any, context: Any) -> dict[str, Any]:
        index_id = request.path.split("/")[-2]
        if self.lagging_indexed_lists:
            self.lagging_indexed_lists -= 1
            return self._page([])
        # requests_mock lower-cases query values; compare case-insensitively
        wanted = {
            k[len("user_metadata[") : -1]: v[0]
            for k, v in request.qs.items()
            if k.startswith("user_metadata[")
        }
        items = [
            i
            for i in reversed(self.indexed.values())
            if i["index_id"] == index_id
            and all(str(i["user_metadata"].get(k, "")).lower() == v for k, v in wanted.items())
        ]
        return self._page([{k: v for k, v in i.items() if k != "user_metadata"} for i in items])

    def _get_indexed(self, request: Any, context: Any) -> dict[str, Any]:
        item = self.indexed.get(request.path.rsplit("/", 1)[1])
        if item is None:
            context.status_code = 404
            return {"code": "resource_not_exist", "message": "no such indexed asset"}
        return item

    def _create_task(self, request: Any, context: Any) -> dict[str, Any]:
        fields = _multipart(request)
        self.uploads.append(fields)
        video_id = self._id("vd")
        name = fields["video_file"][0] if "video_file" in fields else fields["video_url"].rsplit("/", 1)[1]
        task = {
            "_id": self._id("tk"),
            "video_id": video_id,
            "index_id": fields["index_id"],
            "status": "validating",
        }
        self.tasks[task["_id"]] = task
        self.indexed[video_id] = {
            "_id": video_id,
            "index_id": fields["index_id"],
            "asset_id": None,
            "status": "pending",
            "user_metadata": json.loads(fields.get("user_metadata") or "{}"),
            "system_metadata": {"filename": name},
        }
        return {"_id": task["_id"], "video_id": video_id}

    def _list_tasks(self, request: Any, context: Any) -> dict[str, Any]:
        index_id = (request.qs.get("index_id") or [""])[0]
        return self._page([t for t in self.tasks.values() if t["index_id"].lower() == index_id])

    def _get_task(self, request: Any, context: Any) -> dict[str, Any]:
        task = self.tasks.get(request.path.rsplit("/", 1)[1])
        if task is None:
            context.status_code = 400
            return {"code": "resource_not_exist", "message": "no such task"}
        return task

    def _list_indexes(self, request: Any, context: Any) -> dict[str, Any]:
        wanted = (request.qs.get("index_name") or [None])[0]
        items = [{"_id": i, "index_name": n} for i, n in self.indexes.items() if wanted in (None, n.lower())]
        return self._page(items)

    def _create_index(self, request: Any, context: Any) -> dict[str, Any]:
        index_id = self._id("ix")
        self.indexes[index_id] = request.json()["index_name"]
        return {"_id": index_id}


class FakeStore:
    """Stands in for ``context["task_state_store"]``; records when each key was written."""

    def __init__(self, api: FakeApi | None = None, *, broken_get: bool = False, broken_set: bool = False):
        self.data: dict[str, Any] = {}
        self.api = api
        self.broken_get = broken_get
        self.broken_set = broken_set
        #: for each set(): the (method, path) of every HTTP request made before it
        self.set_after: dict[str, list[tuple[str, str]]] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if self.broken_get:
            raise RuntimeError("execution API unreachable")
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.broken_set:
            raise RuntimeError("execution API unreachable")
        self.data[key] = json.loads(json.dumps(value))  # JSON-only, like the real store
        if self.api is not None:
            self.set_after[key] = [(r.method, r.path) for r in self.api.m.request_history]


def make_context(store: FakeStore | None, *, try_number: int = 1, run_id: str = "run_1") -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="d", run_id=run_id, task_id="t", map_index=-1, try_number=try_number)
    context: dict[str, Any] = {"ti": ti}
    if store is not None:
        context["task_state_store"] = store
    return context


FAST = {"poll_interval": 0.01, "asset_timeout": 5}


@pytest.fixture(autouse=True)
def conn(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=2))


@pytest.fixture
def api(requests_mock) -> FakeApi:
    return FakeApi(requests_mock)


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


class FakeTime:
    """Time that moves only when the lookup after a failed create sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def lookup_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(durable, "_sleep", fake.sleep)
    monkeypatch.setattr(durable, "_clock", lambda: fake.now)
    return fake


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
