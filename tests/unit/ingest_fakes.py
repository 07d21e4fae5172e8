"""A tiny in-memory TwelveLabs for the ingest operators' unit tests (tests/unit/test_ingest*.py).

``FakeApi``, on requests_mock callbacks, keeps the resources the operators create, so every test
can count POSTs: the point of these operators is that a retry or a second run never uploads (or
bills) twice. ``FakeStore`` stands in for the task state store.

A test module takes the fixtures by naming them (``api = ingest_fakes.api``): imported by name,
a fixture used as a test's argument reads as a redefinition to the linter.
"""

from __future__ import annotations

import json
import re
from email.parser import BytesParser
from email.policy import default as default_policy
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gist.ingest import durable
from tests.conftest import twelvelabs_conn_json

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

    @staticmethod
    def _one(items: dict[str, Any], request: Any, context: Any, missing: int, what: str) -> dict[str, Any]:
        """The item named by the path's last segment, or the API's answer for an unknown id."""
        item = items.get(request.path.rsplit("/", 1)[1])
        if item is None:
            context.status_code = missing
            return {"code": "resource_not_exist", "message": f"no such {what}"}
        return item

    def _get_indexed(self, request: Any, context: Any) -> dict[str, Any]:
        return self._one(self.indexed, request, context, 404, "indexed asset")

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
        return self._one(self.tasks, request, context, 400, "task")  # the legacy API answers 400

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
    """``twelvelabs_default`` pointing at the fake API, two attempts per call."""
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=2))


@pytest.fixture
def api(requests_mock) -> FakeApi:
    return FakeApi(requests_mock)


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
