"""Multipart uploads: sessions, presigned chunk URLs on the emulator's own port, reports, expiry."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration

CHUNK = 1000  # tiny chunks, so a few KB make a many-chunk upload
DATA = bytes(range(256)) * 14  # 3,584 bytes: 3 full chunks and a 584-byte last one


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(
        multipart_chunk_size=CHUNK,
        multipart_initial_urls=2,
        presigned_url_seconds=60,
        upload_session_seconds=600,
    )


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _create(api: Api, data: bytes = DATA, **extra: Any) -> dict[str, Any]:
    body = {"filename": "harbour_timelapse.mp4", "type": "video", "total_size": len(data), **extra}
    response = api.post("/assets/multipart-uploads", body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def _chunk(index: int, data: bytes = DATA) -> bytes:
    return data[(index - 1) * CHUNK : index * CHUNK]


def _report(api: Api, upload_id: str, *chunks: tuple[int, str, int]) -> requests.Response:
    body = {
        "completed_chunks": [
            {"chunk_index": i, "proof": etag, "proof_type": "etag", "chunk_size": size}
            for i, etag, size in chunks
        ]
    }
    return api.post(f"/assets/multipart-uploads/{upload_id}", body)


def test_create_session_gives_presigned_urls_on_the_emulators_port(api: Api) -> None:
    session = _create(api)
    assert session["chunk_size"] == CHUNK
    assert session["total_chunks"] == 4
    assert [u["chunk_index"] for u in session["upload_urls"]] == [1, 2]  # the initial set is partial
    url = urlsplit(session["upload_urls"][0]["url"])
    assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", api.server.port)
    assert url.path == f"/_uploads/{session['upload_id']}/1"
    assert session["asset_id"] != session["upload_id"]
    # The asset id is reserved, but the asset exists only once the upload completes.
    assert api.get(f"/assets/{session['asset_id']}").status_code == 400


def test_full_upload_creates_a_processing_then_ready_asset(api: Api) -> None:
    result = api.multipart_upload("river_sailing.mp4", DATA, report_batch=3, user_metadata={"batch": 7})
    last = result["last_report"]
    assert last["total_completed"] == 4
    assert last["url"].startswith("https://")
    assert last["asset_id"] == result["asset_id"]
    status = api.get(f"/assets/multipart-uploads/{result['upload_id']}").json()
    assert status["status"] == "completed"
    assert (status["chunks_completed"], status["chunks_pending"]) == (4, 0)
    assert status["uploaded_size"] == status["total_size"] == len(DATA)
    asset = api.get(f"/assets/{result['asset_id']}").json()
    assert (asset["status"], asset["method"]) == ("processing", "multipart")
    assert asset["user_metadata"] == {"batch": 7}
    api.advance(0.25)
    ready = api.get(f"/assets/{result['asset_id']}").json()
    assert ready["status"] == "ready"
    assert ready["size"] == len(DATA)
    assert ready["filename"] == "river_sailing.mp4"


def test_chunk_put_needs_no_api_key_and_answers_an_md5_etag(api: Api) -> None:
    session = _create(api)
    url = session["upload_urls"][0]["url"]
    response = requests.put(url, data=_chunk(1), timeout=5)  # no x-api-key at all
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{hashlib.md5(_chunk(1), usedforsecurity=False).hexdigest()}"'
    assert response.content == b""


def test_presigned_urls_are_single_use_signed_and_expire(api: Api) -> None:
    session = _create(api)
    first, second = (u["url"] for u in session["upload_urls"])
    assert api.put_chunk(first, _chunk(1)).status_code == 200
    again = api.put_chunk(first, _chunk(1))
    assert again.status_code == 403
    assert "<Code>AccessDenied</Code>" in again.text
    tampered = second.replace("/2?", "/3?")
    bad = api.put_chunk(tampered, _chunk(3))
    assert (bad.status_code, "SignatureDoesNotMatch" in bad.text) == (403, True)
    api.advance(61)  # presigned_url_seconds=60 in this module
    expired = api.put_chunk(second, _chunk(2))
    assert expired.status_code == 403
    assert "expired" in expired.text
    fresh = api.post(
        f"/assets/multipart-uploads/{session['upload_id']}/presigned-urls", {"start": 2, "count": 3}
    ).json()
    assert [u["chunk_index"] for u in fresh["upload_urls"]] == [2, 3, 4]
    assert (fresh["start_index"], fresh["count"]) == (2, 3)
    assert api.put_chunk(fresh["upload_urls"][0]["url"], _chunk(2)).status_code == 200


def test_reports_are_checked_against_what_was_uploaded(api: Api) -> None:
    session = _create(api)
    upload_id, url = session["upload_id"], session["upload_urls"][0]["url"]
    never_put = _report(api, upload_id, (2, "abc", CHUNK))
    assert (never_put.status_code, never_put.json()["code"]) == (400, "parameter_invalid")
    etag = api.put_chunk(url, _chunk(1)).headers["ETag"]
    wrong_proof = _report(api, upload_id, (1, '"0000"', CHUNK))
    assert wrong_proof.status_code == 400
    wrong_size = _report(api, upload_id, (1, etag, CHUNK - 1))
    assert wrong_size.status_code == 400
    ok = _report(api, upload_id, (1, etag, CHUNK))
    assert ok.json() == {
        "asset_id": session["asset_id"],
        "processed_chunks": 1,
        "duplicate_chunks": 0,
        "total_completed": 1,
    }
    assert "url" not in ok.json()  # not complete yet
    dup = _report(api, upload_id, (1, etag, CHUNK)).json()
    assert (dup["processed_chunks"], dup["duplicate_chunks"], dup["total_completed"]) == (0, 1, 1)


def test_short_chunk_is_refused_at_report_time(api: Api) -> None:
    session = _create(api)
    put = api.put_chunk(session["upload_urls"][0]["url"], _chunk(1)[:10])
    assert put.status_code == 200  # the store takes any size, like S3...
    response = _report(api, session["upload_id"], (1, put.headers["ETag"], 10))
    assert response.status_code == 400  # ...the platform checks it against chunk_size
    assert str(CHUNK) in response.json()["message"]


def test_oversized_chunk_is_refused(api: Api) -> None:
    session = _create(api)
    response = api.put_chunk(session["upload_urls"][0]["url"], b"x" * (CHUNK + 1))
    assert response.status_code == 400
    assert "EntityTooLarge" in response.text


def test_counters_show_which_chunks_were_put_and_reported(api: Api) -> None:
    result = api.multipart_upload("counted.mp4", DATA, report_batch=2)
    counters = api.control("GET", f"/uploads/{result['upload_id']}")
    assert counters["chunk_puts"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert counters["chunk_reports"] == {"1": 1, "2": 1, "3": 1, "4": 1}  # nothing reported twice
    assert counters["status"] == "completed"
    everything = api.control("GET", "/uploads")
    assert (everything["chunk_puts"], everything["chunk_reports"]) == (4, 4)
    journal = api.control("GET", "/journal")["entries"]
    puts = [e for e in journal if e["operation"] == "PUT /_uploads/{upload_id}/{chunk_index}"]
    assert [e["chunk_index"] for e in puts] == [1, 2, 3, 4]
    assert all(e["status"] == 200 and e["body"]["size"] > 0 for e in puts)
    assert all("X-Amz-Signature" not in e["query"] for e in puts)  # a bearer credential
    stats = api.control("GET", "/stats")
    assert stats["calls"]["PUT /_uploads/{upload_id}/{chunk_index}"] == 4
    assert stats["calls"]["POST /assets/multipart-uploads/{upload_id}"] == 2


def test_no_chunk_bytes_are_kept(api: Api) -> None:
    result = api.multipart_upload("light.mp4", DATA)
    session = api.server.emulator.uploads.sessions[result["upload_id"]]
    for record in session.uploaded.values():
        assert set(vars(record)) == {"size", "etag", "at"}


def test_status_pages_through_the_chunks(api: Api) -> None:
    session = _create(api)
    page = api.get(f"/assets/multipart-uploads/{session['upload_id']}", params={"page": 2, "page_limit": 3})
    body = page.json()
    assert [c["index"] for c in body["uploaded_chunks"]] == [4]
    assert body["page_info"] == {"limit_per_page": 3, "page": 2, "total_page": 2, "total_results": 4}
    assert body["status"] == "active"
    assert body["chunks_pending"] == 4
    past = api.get(f"/assets/multipart-uploads/{session['upload_id']}", params={"page": 3, "page_limit": 3})
    assert past.json()["uploaded_chunks"] == []


def test_incomplete_uploads_are_listed_until_completed(api: Api) -> None:
    open_session = _create(api)
    done = api.multipart_upload("done.mp4", DATA)
    listed = api.get("/assets/multipart-uploads").json()
    assert [s["upload_id"] for s in listed["data"]] == [open_session["upload_id"]]
    assert done["upload_id"] not in {s["upload_id"] for s in listed["data"]}
    assert listed["data"][0]["status"] == "active"


def test_sessions_expire(api: Api) -> None:
    session = _create(api)
    api.advance(601)  # upload_session_seconds=600 in this module
    status = api.get(f"/assets/multipart-uploads/{session['upload_id']}").json()
    assert status["status"] == "expired"
    more = api.post(
        f"/assets/multipart-uploads/{session['upload_id']}/presigned-urls", {"start": 1, "count": 1}
    )
    assert more.status_code == 400
    assert more.json()["code"] == "upload_expired"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"filename": "a.mp4", "type": "video", "total_size": 10 * 1024**3 + 1},
            400,
            "video_filesize_too_large",
        ),
        (
            {"filename": "a.png", "type": "image", "total_size": 32 * 1024**2 + 1},
            400,
            "media_filesize_too_large",
        ),
        ({"filename": "a.mp4", "type": "video", "total_size": 0}, 400, "parameter_invalid"),
        ({"filename": "a.mp4", "type": "movie", "total_size": 10}, 400, "parameter_invalid"),
        ({"filename": "a.mp4", "total_size": 10}, 400, "parameter_not_provided"),
    ],
)
def test_create_validation(api: Api, body: dict[str, Any], status: int, code: str) -> None:
    response = api.post("/assets/multipart-uploads", body, spec=False)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_ten_gigabytes_is_accepted_with_bounded_chunks(api: Api) -> None:
    session = _create(api, b"", total_size=10 * 1024**3)
    assert session["total_chunks"] <= 10_000
    assert session["total_chunks"] * session["chunk_size"] >= 10 * 1024**3


def test_presigned_url_requests_are_bounded(api: Api) -> None:
    session = _create(api)
    path = f"/assets/multipart-uploads/{session['upload_id']}/presigned-urls"
    assert api.post(path, {"start": 0, "count": 1}).status_code == 400
    assert api.post(path, {"start": 1, "count": 51}).status_code == 400
    assert api.post(path, {"start": 3, "count": 3}).status_code == 400  # only 4 chunks


def test_unknown_upload_is_404(api: Api) -> None:
    missing = "f" * 24
    assert api.get(f"/assets/multipart-uploads/{missing}").status_code == 404
    assert _report(api, missing, (1, "x", 1)).status_code == 404
    assert (
        api.post(f"/assets/multipart-uploads/{missing}/presigned-urls", {"start": 1, "count": 1}).status_code
        == 404
    )


def test_faults_can_hit_chunk_puts(api: Api) -> None:
    session = _create(api)
    api.control("POST", "/faults", {"op": "upload_chunk", "kind": "status", "status": 503, "count": 1})
    url = session["upload_urls"][0]["url"]
    failed = api.put_chunk(url, _chunk(1))
    assert failed.status_code == 503
    assert "<Code>SlowDown</Code>" in failed.text
    assert api.put_chunk(url, _chunk(1)).status_code == 200  # a failed PUT does not spend the URL
    counters = api.control("GET", f"/uploads/{session['upload_id']}")
    assert counters["chunk_puts"] == {"1": 1}


def test_default_five_mib_chunks_stream_through() -> None:
    data = b"\x5a" * (11 * 1024 * 1024)  # 3 chunks: 5 MiB, 5 MiB, 1 MiB
    for api in running_api():
        result = api.multipart_upload("big_enough.mp4", data)
        assert (result["chunk_size"], result["total_chunks"]) == (5 * 1024 * 1024, 3)
        assert result["last_report"]["total_completed"] == 3
        counters = api.control("GET", f"/uploads/{result['upload_id']}")
        assert counters["chunk_puts"] == {"1": 1, "2": 1, "3": 1}
