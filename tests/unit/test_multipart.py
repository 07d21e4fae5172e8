"""The multipart upload engine with HTTP mocked: chunking, the concurrency bound, URL renewal,
resuming from the state store, and the chunk PUTs' manners (no key, no redirects).

The API side is :class:`FakeApi` (the hook's thin multipart methods, in memory); the storage side
is a ``requests`` transport adapter (:class:`Storage`) mounted on the uploader's own chunk
session, so the real :class:`~airflow_provider_gist.ingest.chunk_put.ChunkSender` code runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from airflow_provider_gist.errors import GistApiError, GistNotFoundError, GistValidationError
from airflow_provider_gist.ingest.chunk_put import ChunkSender
from airflow_provider_gist.ingest.durable import STATE_KEY_MULTIPART, StateStore
from airflow_provider_gist.ingest.multipart import PUT_ATTEMPTS, MultipartUploader

LOG = logging.getLogger("test_multipart")
STORAGE = "https://storage.test"
KEY = "k" * 20
META = {"gist_ingest_key": KEY, "team": "video"}


class Storage(BaseAdapter):
    """The object store behind presigned URLs: single-use signed URLs, MD5 ETags, scripted faults."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.puts: list[int] = []  # chunk index of every PUT that stored bytes
        self.stored: dict[tuple[str, int], str] = {}  # (upload, chunk) -> md5 of the last good PUT
        self.used: set[str] = set()
        self.valid: set[str] = set()  # signatures the API handed out
        self.gone: set[str] = set()  # uploads the storage no longer knows
        self.script: dict[int, list[int]] = {}  # chunk -> statuses to answer its next PUTs with
        self.headers: list[dict[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert kwargs.get("timeout") is not None, "a chunk PUT without a timeout"
        parts = urlsplit(request.url)
        _, _, upload_id, index_text = parts.path.split("/")
        index = int(index_text)
        signature = parse_qs(parts.query)["sig"][0]
        body = bytes(request.body)
        with self.lock:
            self.headers.append(dict(request.headers))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            with self.lock:
                scripted = self.script.get(index)
                if scripted:
                    status = scripted.pop(0)
                    return _answer(request, status, location=f"https://elsewhere.test/{index}")
                if upload_id in self.gone:
                    return _answer(request, 404, code="NoSuchUpload")
                if signature not in self.valid or signature in self.used:
                    return _answer(request, 403, code="AccessDenied")
                self.used.add(signature)
                self.puts.append(index)
                etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
                self.stored[(upload_id, index)] = etag
                return _answer(request, 200, etag=etag)
        finally:
            with self.lock:
                self.active -= 1

    def close(self) -> None:
        pass


def _answer(request, status: int, *, etag: str = "", code: str = "", location: str = "") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.request = request
    response.url = request.url
    headers = {}
    if etag:
        headers["ETag"] = f'"{etag}"'
    if 300 <= status < 400:
        headers["Location"] = location
    response.headers = CaseInsensitiveDict(headers)
    response._content = (
        f"<Error><Code>{code or 'InternalError'}</Code></Error>".encode() if status >= 400 else b""
    )
    return response


class FakeApi:
    """The hook's multipart methods over in-memory sessions, checked like the API checks them."""

    def __init__(self, storage: Storage, chunk_size: int = 1000, initial_urls: int = 3) -> None:
        self.storage = storage
        self.chunk_size = chunk_size
        self.initial_urls = initial_urls
        self.sessions: dict[str, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.n = 0
        self.expires_in = 3600.0
        self.asset_drops_metadata = False

    def _sign(self, upload_id: str, index: int) -> dict[str, Any]:
        self.n += 1
        signature = f"s{self.n}"
        self.storage.valid.add(signature)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.expires_in))
        return {
            "chunk_index": index,
            "url": f"{STORAGE}/up/{upload_id}/{index}?sig={signature}",
            "expires_at": expires,
        }

    def create_multipart_upload(
        self, filename, total_size, *, file_type="video", user_metadata=None, enable_thumbnail=False
    ):
        self.calls.append("create")
        self.n += 1
        upload_id, asset_id = f"up{self.n:04d}", f"as{self.n:04d}"
        total = math.ceil(total_size / self.chunk_size)
        self.sessions[upload_id] = {
            "asset_id": asset_id,
            "filename": filename,
            "size": total_size,
            "total": total,
            "reported": {},
            "status": "active",
            "metadata": dict(user_metadata or {}),
        }
        return {
            "upload_id": upload_id,
            "asset_id": asset_id,
            "upload_urls": [self._sign(upload_id, i) for i in range(1, min(total, self.initial_urls) + 1)],
            "upload_headers": {"x-amz-server-side-encryption": "AES256"},
            "chunk_size": self.chunk_size,
            "total_chunks": total,
            "expires_at": "2099-01-01T00:00:00Z",
        }

    def _session(self, upload_id: str) -> dict[str, Any]:
        if upload_id not in self.sessions:
            raise GistNotFoundError("no such upload", status=404)
        return self.sessions[upload_id]

    def get_multipart_upload(self, upload_id, *, page=1, page_limit=50):
        self.calls.append(f"status:{page}")
        s = self._session(upload_id)
        chunks = [
            {"index": i, "status": "completed" if i in s["reported"] else "pending"}
            for i in range((page - 1) * page_limit + 1, min(page * page_limit, s["total"]) + 1)
        ]
        return {
            "upload_id": upload_id,
            "status": s["status"],
            "uploaded_chunks": chunks,
            "chunks_completed": len(s["reported"]),
            "page_info": {"page": page, "total_page": math.ceil(s["total"] / page_limit)},
        }

    def iter_multipart_upload_chunks(self, upload_id):
        page = 1
        while True:
            body = self.get_multipart_upload(upload_id, page=page)
            yield from body["uploaded_chunks"]
            if page >= body["page_info"]["total_page"]:
                return
            page += 1

    def report_multipart_chunks(self, upload_id, completed_chunks):
        self.calls.append(f"report:{len(completed_chunks)}")
        s = self._session(upload_id)
        for chunk in completed_chunks:
            index = chunk["chunk_index"]
            assert chunk["proof_type"] == "etag"
            assert self.storage.stored[(upload_id, index)] == chunk["proof"], f"bad proof for {index}"
            expected = (
                self.chunk_size if index < s["total"] else s["size"] - self.chunk_size * (s["total"] - 1)
            )
            assert chunk["chunk_size"] == expected
            s["reported"][index] = s["reported"].get(index, 0) + 1
        out = {"asset_id": s["asset_id"], "total_completed": len(s["reported"])}
        if len(s["reported"]) == s["total"] and s["status"] == "active":
            s["status"] = "completed"
            metadata = {} if self.asset_drops_metadata else dict(s["metadata"])
            self.assets[s["asset_id"]] = {
                "_id": s["asset_id"],
                "status": "processing",
                "user_metadata": metadata,
            }
            out["url"] = "https://cdn.test/asset"
        return out

    def get_multipart_presigned_urls(self, upload_id, start, count):
        self.calls.append(f"urls:{start}+{count}")
        s = self._session(upload_id)
        assert 1 <= count <= 50 and start + count - 1 <= s["total"]
        return {"upload_urls": [self._sign(upload_id, i) for i in range(start, start + count)]}

    def get_asset(self, asset_id):
        if asset_id not in self.assets:
            raise GistNotFoundError("no such asset", status=400)
        return dict(self.assets[asset_id])

    def update_asset_user_metadata(self, asset_id, user_metadata):
        self.calls.append("patch_metadata")
        self.assets[asset_id]["user_metadata"].update(user_metadata)


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes = 0
        self.frozen = False  # writes "succeed" but keep nothing (a kill right after a report)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.writes += 1
        if not self.frozen:
            self.data[key] = value


class Rig:
    def __init__(self, tmp_path, *, size: int, chunk_size: int = 1000, delay: float = 0.0) -> None:
        self.storage = Storage(delay)
        self.api = FakeApi(self.storage, chunk_size)
        self.store = MemoryStore()
        self.file = tmp_path / "catalog_reel.mp4"
        self.data = bytes((i * 7 + 3) % 251 for i in range(size))
        self.file.write_bytes(self.data)

    def uploader(self, **kwargs: Any) -> MultipartUploader:
        session = requests.Session()
        session.mount(STORAGE, self.storage)
        store = StateStore({"task_state_store": self.store}, LOG)
        kwargs.setdefault("sleep", lambda seconds: None)
        return MultipartUploader(self.api, store, LOG, sender=ChunkSender(session), **kwargs)

    def upload(self, uploader: MultipartUploader | None = None) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath

        return (uploader or self.uploader()).upload(
            ObjectStoragePath(f"file://{self.file}"),
            size=len(self.data),
            filename=self.file.name,
            user_metadata=META,
            ingest_key=KEY,
        )


# ---------------------------------------------------------------------------------------------


def test_chunks_are_the_file_in_order_and_reported_in_batches(tmp_path):
    rig = Rig(tmp_path, size=10_500)  # 10 full chunks and a last one of 500 bytes
    uploader = rig.uploader(report_batch=4)
    asset = rig.upload(uploader)

    assert asset["_id"] == "as0001"
    assert asset["user_metadata"] == META  # the session carried it to the asset
    assert sorted(rig.storage.puts) == list(range(1, 12))
    for index in range(1, 12):
        piece = rig.data[(index - 1) * 1000 : index * 1000]
        assert rig.storage.stored[("up0001", index)] == hashlib.md5(piece, usedforsecurity=False).hexdigest()
    reports = [c for c in rig.api.calls if c.startswith("report:")]
    assert all(int(c.split(":")[1]) <= 4 for c in reports) and len(reports) == 3
    assert rig.api.sessions["up0001"]["reported"] == dict.fromkeys(range(1, 12), 1)
    # Three URLs came with the session; the rest in one call (the run of chunks still to send).
    assert [c for c in rig.api.calls if c.startswith("urls")] == ["urls:4+8"]
    # The session's upload_headers go with every PUT; the key never does.
    assert all(h["x-amz-server-side-encryption"] == "AES256" for h in rig.storage.headers)
    assert uploader.stats.chunks_sent == 11 and uploader.stats.bytes_sent == 10_500
    state = rig.store.data[STATE_KEY_MULTIPART]
    assert state["upload_id"] == "up0001" and state["reported"] == [[1, 11]]


def test_puts_run_concurrently_within_the_bound_and_memory_is_bounded(tmp_path):
    rig = Rig(tmp_path, size=40_000, delay=0.02)
    uploader = rig.uploader(concurrency=3)
    rig.upload(uploader)

    assert rig.storage.max_active == 3  # really concurrent, never more than asked
    assert uploader.stats.max_in_flight <= 4  # three sending, one read ahead
    assert uploader.stats.buffers <= 4  # buffers are reused: memory is (concurrency + 1) chunks
    assert sorted(rig.storage.puts) == list(range(1, 41))


def test_a_refused_or_failed_put_is_sent_again_with_a_fresh_url(tmp_path):
    rig = Rig(tmp_path, size=5000)
    rig.storage.script = {2: [403], 4: [500, 503]}  # an expired URL; a storage hiccup twice
    uploader = rig.uploader()
    rig.upload(uploader)

    assert sorted(rig.storage.puts) == [1, 2, 3, 4, 5]
    assert uploader.stats.put_retries == 3
    # Each retry asked for one fresh URL for that chunk alone.
    assert rig.api.calls.count("urls:2+1") == 1 and rig.api.calls.count("urls:4+1") == 2


def test_urls_about_to_expire_are_renewed_before_use(tmp_path):
    rig = Rig(tmp_path, size=3000)
    rig.api.expires_in = 30  # inside the renewal margin: never worth a PUT
    rig.upload()
    assert [c for c in rig.api.calls if c.startswith("urls")] == ["urls:1+3", "urls:2+2", "urls:3+1"]
    assert sorted(rig.storage.puts) == [1, 2, 3]


def test_put_retries_are_bounded_and_a_bad_request_is_not_retried(tmp_path):
    rig = Rig(tmp_path, size=3000)
    rig.storage.script = {2: [503] * 10}
    with pytest.raises(GistApiError, match=rf"chunk 2 .* after {PUT_ATTEMPTS} attempt"):
        rig.upload()
    assert rig.api.calls.count("urls:2+1") == PUT_ATTEMPTS - 1

    rig = Rig(tmp_path, size=3000)
    rig.storage.script = {1: [400]}
    with pytest.raises(GistApiError, match=r"chunk 1 .* after 1 attempt"):
        rig.upload()


def test_a_redirect_is_never_followed(tmp_path):
    rig = Rig(tmp_path, size=1000)
    rig.storage.script = {1: [307] * PUT_ATTEMPTS}
    with pytest.raises(GistApiError, match="redirect"):
        rig.upload()
    assert all("elsewhere" not in str(h) for h in rig.storage.headers)
    assert len(rig.storage.headers) == PUT_ATTEMPTS  # each attempt answered 307, none went on


def test_chunk_puts_carry_no_credentials_even_with_a_netrc(tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine storage.test login user password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    rig = Rig(tmp_path, size=2000)
    rig.upload()
    for headers in rig.storage.headers:
        assert {k.lower() for k in headers} & {"x-api-key", "authorization", "cookie"} == set()


def test_a_retry_resumes_the_session_and_never_resends_reported_chunks(tmp_path):
    rig = Rig(tmp_path, size=10_000)
    rig.storage.script = {7: [400]}  # try 1 dies on chunk 7 (fatal for this try)
    with pytest.raises(GistApiError):
        rig.upload(rig.uploader(concurrency=1, report_batch=2))
    reported_first = set(rig.api.sessions["up0001"]["reported"])
    # Every chunk PUT before the failure was reported, the one read ahead too if it got through.
    assert {1, 2, 3, 4, 5, 6} <= reported_first and 7 not in reported_first
    assert reported_first == set(rig.storage.puts)
    puts_first = len(rig.storage.puts)

    retry = rig.uploader(concurrency=2)
    asset = rig.upload(retry)
    assert asset["_id"] == "as0001"
    assert rig.api.calls.count("create") == 1  # the same session, not a new one
    resent = rig.storage.puts[puts_first:]
    assert sorted(resent) == sorted(set(range(1, 11)) - reported_first)
    assert set(rig.api.sessions["up0001"]["reported"].values()) == {1}  # no chunk reported twice
    assert retry.stats.chunks_skipped == len(reported_first)


def test_the_api_is_trusted_over_a_state_store_that_missed_a_report(tmp_path):
    rig = Rig(tmp_path, size=6000)
    rig.storage.script = {5: [400]}
    uploader = rig.uploader(concurrency=1, report_batch=2)
    original = rig.api.report_multipart_chunks

    def report_then_freeze(upload_id, chunks):
        out = original(upload_id, chunks)
        if 4 in {c["chunk_index"] for c in chunks}:
            rig.store.frozen = True  # chunks 3-4 reported, but their save is lost (a kill)
        return out

    rig.api.report_multipart_chunks = report_then_freeze
    with pytest.raises(GistApiError):
        rig.upload(uploader)
    assert rig.store.data[STATE_KEY_MULTIPART]["reported"] == [[1, 2]]
    rig.store.frozen = False
    rig.api.report_multipart_chunks = original
    known = set(rig.api.sessions["up0001"]["reported"])
    assert {1, 2, 3, 4} <= known
    before = len(rig.storage.puts)
    rig.upload()
    # 3 and 4 (and any chunk reported as the try failed) came from the API's own list.
    assert sorted(rig.storage.puts[before:]) == sorted(set(range(1, 7)) - known)
    assert set(rig.api.sessions["up0001"]["reported"].values()) == {1}
    assert "status:2" not in rig.api.calls  # one page held them all (page_limit 50)


def test_an_expired_session_is_replaced_on_retry(tmp_path):
    rig = Rig(tmp_path, size=3000)
    rig.storage.script = {2: [400]}
    with pytest.raises(GistApiError):
        rig.upload(rig.uploader(concurrency=1, report_batch=1))
    rig.api.sessions["up0001"]["status"] = "expired"
    asset = rig.upload()
    assert rig.api.calls.count("create") == 2
    assert asset["_id"] != "as0001"
    assert rig.store.data[STATE_KEY_MULTIPART]["upload_id"] != "up0001"


def test_a_session_that_vanishes_mid_upload_starts_over_once(tmp_path):
    rig = Rig(tmp_path, size=3000)
    rig.storage.gone.add("up0001")  # the storage answers 404 NoSuchUpload
    asset = rig.upload()
    assert rig.api.calls.count("create") == 2
    assert asset["status"] == "processing"


def test_a_completed_session_is_not_uploaded_again(tmp_path):
    rig = Rig(tmp_path, size=3000)
    rig.upload()
    puts = len(rig.storage.puts)
    again = rig.upload()  # a retry that died after completion, before the asset id was saved
    assert len(rig.storage.puts) == puts
    assert again["_id"] == "as0001"
    rig.api.assets["as0001"]["status"] = "failed"  # ...unless its asset failed: then afresh
    fresh = rig.upload()
    assert fresh["_id"] != "as0001"


def test_metadata_the_asset_lacks_is_patched_in(tmp_path):
    rig = Rig(tmp_path, size=2000)
    rig.api.asset_drops_metadata = True
    asset = rig.upload()
    assert rig.api.calls.count("patch_metadata") == 1
    assert asset["user_metadata"]["gist_ingest_key"] == KEY
    assert rig.api.assets[asset["_id"]]["user_metadata"] == META


def test_without_a_state_store_a_second_create_in_the_same_try_resumes_from_memory(tmp_path):
    rig = Rig(tmp_path, size=4000)
    rig.storage.script = {3: [400]}
    session = requests.Session()
    session.mount(STORAGE, rig.storage)
    uploader = MultipartUploader(
        rig.api, StateStore({}, LOG), LOG, sender=ChunkSender(session), concurrency=1, report_batch=1
    )
    with pytest.raises(GistApiError):
        rig.upload(uploader)
    rig.upload(uploader)
    assert rig.api.calls.count("create") == 1
    assert sorted(rig.storage.puts) == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# validation before any HTTP call


def _sparse(path, size: int):
    with path.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(size)
    return path


def test_the_legacy_operator_keeps_the_direct_limit(requests_mock, tmp_path):
    from airflow_provider_gist.operators.ingest import CreateIndexingTaskOperator

    big = _sparse(tmp_path / "big.mp4", 201 * 1024 * 1024)
    op = CreateIndexingTaskOperator(task_id="t", file_path=str(big), index_id="ix1")
    with pytest.raises(GistValidationError, match=r"file_path .* 200 MB.*IngestVideoOperator"):
        op.execute({})
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"multipart_threshold": 0}, "multipart_threshold"),
        ({"multipart_threshold": 300 * 1024 * 1024}, "multipart_threshold"),
        ({"upload_concurrency": 0}, "upload_concurrency"),
        ({"upload_concurrency": "4"}, "upload_concurrency"),
    ],
)
def test_upload_options_are_validated(requests_mock, tmp_path, kwargs, field):
    from airflow_provider_gist.operators.ingest import IngestVideoOperator

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 10)
    op = IngestVideoOperator(task_id="t", file_path=str(clip), index_id="ix1", **kwargs)
    with pytest.raises(GistValidationError, match=field):
        op.execute({})
    assert requests_mock.call_count == 0
