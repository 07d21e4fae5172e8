"""Every request GistHook/GistAsyncHook sends, and every answer they get, against the official spec.

The hooks talk to the emulator over real HTTP; the emulator's journal records each exchange
as the server read it (never headers), and each one is validated against the strict contract of
the OpenAPI operation it belongs to (tests/contract/openapi.py). Headers come from the client side:
``requests.Session.send`` (GistHook) and ``aiohttp.ClientSession._request`` (GistAsyncHook) are
wrapped to record what went out and what came back, and paired with the journal in order. If the
client drifts from the spec (a field renamed, a multipart boolean sent as "True", a query
parameter the API does not know, a missing x-api-key, an Authorization header) or the emulator
does (a field the client reads missing, a wrong content type), this test fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import requests

from airflow_provider_gist.hooks.gist import GistAsyncHook, GistHook
from tests.contract.openapi import find_operation, validate_request, validate_response

pytestmark = pytest.mark.integration

MULTIPART = {"POST /assets", "POST /tasks"}


def journal(emu) -> list[dict[str, Any]]:
    return requests.get(f"{emu.url}/_emulator/journal", timeout=5).json()["entries"]


@dataclass(frozen=True)
class Wire:
    """The headers of one API exchange as the client sent and received them."""

    method: str
    path: str
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]


def _is_api(path: str) -> bool:
    return path.startswith("/v1.")


@pytest.fixture
def wire(monkeypatch) -> list[Wire]:
    """Every API exchange of the sync (requests) and async (aiohttp) hooks, in order."""
    seen: list[Wire] = []
    send = requests.Session.send

    def recording_send(self, request, **kwargs):
        response = send(self, request, **kwargs)
        path = urlsplit(request.url).path
        if _is_api(path):
            seen.append(
                Wire(
                    str(request.method).upper(),
                    path,
                    dict(request.headers),
                    response.status_code,
                    dict(response.headers),
                )
            )
        return response

    monkeypatch.setattr(requests.Session, "send", recording_send)
    original = aiohttp.ClientSession._request

    async def recording_request(self, method, str_or_url, *args, **kwargs):
        response = await original(self, method, str_or_url, *args, **kwargs)
        if _is_api(response.url.path):
            seen.append(
                Wire(
                    method.upper(),
                    response.url.path,
                    dict(response.request_info.headers),
                    response.status,
                    dict(response.headers),
                )
            )
        return response

    monkeypatch.setattr(aiohttp.ClientSession, "_request", recording_request)
    return seen


def exercise_every_hook_method(tmp_path) -> set[str]:
    """Call each public API method once; return the operations the hooks are expected to use."""
    hook = GistHook()
    assert hook.test_connection()[0]
    index_id = hook.ensure_index("contract-index")
    assert hook.find_index_by_name("contract-index")["_id"] == index_id
    hook.get_index(index_id)
    hook.list_indexes()
    asset = hook.create_asset_from_url(
        "https://videos.example.com/harbour_dawn.mp4",
        filename="harbour_dawn.mp4",
        user_metadata={"k": "v"},
        enable_thumbnail=True,
    )
    assert "thumbnail" in hook.get_asset(asset["_id"])  # asked for, and the spec's shape
    video = tmp_path / "city_walk.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2048)
    direct = hook.create_asset_from_file(video, user_metadata={"source": "file"}, enable_thumbnail=True)
    for asset_id in (asset["_id"], direct["_id"]):
        deadline = time.time() + 10
        while hook.get_asset(asset_id)["status"] != "ready" and time.time() < deadline:
            time.sleep(0.1)
    hook.list_assets(filename="harbour")
    indexed = hook.create_indexed_asset(index_id, asset["_id"], user_metadata={"gist_ingest_key": "abc"})
    deadline = time.time() + 10
    while hook.get_indexed_asset(index_id, indexed["_id"])["status"] != "ready" and time.time() < deadline:
        time.sleep(0.1)
    hook.list_indexed_assets(
        index_id, status=["ready", "failed"], filename="harbour", user_metadata={"gist_ingest_key": "abc"}
    )
    task = hook.create_task(
        index_id, video_url="https://videos.example.com/legacy_clip.mp4", user_metadata={"legacy": True}
    )
    hook.get_task(task["_id"])
    file_task = hook.create_task(index_id, video_file=video)
    hook.get_task(file_task["_id"])
    hook.list_videos(index_id, filename="harbour", user_metadata={"gist_ingest_key": "abc"})
    hook.get_video(index_id, indexed["_id"])
    hook.generate_gist(asset_id=asset["_id"], types=["title", "topic", "hashtag"], index_id=index_id)
    # The legacy video_id path: only videos indexed with Pegasus 1.2 before the 2026 index rule
    # (seeded as such) can still be analysed by video id.
    legacy = requests.post(
        f"{hook.base_url}/_emulator/seed",
        json={"index_name": "contract-legacy", "count": 1, "model_name": "pegasus1.2"},
        timeout=10,
    ).json()
    hook.generate_gist(video_id=legacy["videos"][0]["video_id"], types=["hashtag"], model_name="pegasus1.2")
    hook.analyze(prompt="Describe the video.", asset_id=asset["_id"], model_name="pegasus1.5", max_tokens=600)
    analysis, batch = exercise_async_analysis(hook, asset["_id"])

    async def async_reads() -> None:
        ahook = GistAsyncHook()
        await ahook.get_asset(asset["_id"])
        await ahook.get_indexed_asset(index_id, indexed["_id"])
        await ahook.get_task(task["_id"])
        await ahook.get_analysis_task(analysis)
        await ahook.get_batch(batch)

    asyncio.run(async_reads())
    exercise_multipart(hook, tmp_path)
    return {
        "GET /indexes",
        "POST /indexes",
        "GET /indexes/{index-id}",
        "POST /assets",
        "GET /assets",
        "GET /assets/{asset_id}",
        "POST /indexes/{index-id}/indexed-assets",
        "GET /indexes/{index-id}/indexed-assets",
        "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}",
        "POST /tasks",
        "GET /tasks/{task_id}",
        "GET /indexes/{index-id}/videos",
        "GET /indexes/{index-id}/videos/{video-id}",
        "POST /analyze",
        "POST /assets/multipart-uploads",
        "GET /assets/multipart-uploads/{upload_id}",
        "POST /assets/multipart-uploads/{upload_id}",
        "POST /assets/multipart-uploads/{upload_id}/presigned-urls",
        "PATCH /assets/{asset_id}/user-metadata",
        "POST /analyze/tasks",
        "GET /analyze/tasks",
        "GET /analyze/tasks/{task_id}",
        "POST /analyze/batches",
        "GET /analyze/batches",
        "GET /analyze/batches/{batch_id}",
        "GET /analyze/batches/{batch_id}/results",
        "POST /analyze/batches/{batch_id}/cancel",
    }


NDJSON_RESULTS = "GET /analyze/batches/{batch_id}/results"


def fetch_lines(emu, path: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    response = requests.get(f"{emu.url}{path}", params=query, headers={"x-api-key": emu.api_key}, timeout=10)
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert lines, "a batch's results have one line per item"
    return lines


def exercise_async_analysis(hook: GistHook, asset_id: str) -> tuple[str, str]:
    """An analysis task and a batch, created and read the way the operators do."""
    from airflow_provider_gist.analysis import batch_body, prepare_gist_request

    request = prepare_gist_request(asset_id=asset_id, video_id=None, types=None, model_name="pegasus1.5")
    task = hook.create_analysis_task(request.task_body("gist-contract-0001"))
    hook.get_analysis_task(task["task_id"])
    list(hook.iter_analysis_tasks(asset_id=asset_id))
    batch = hook.create_batch(batch_body(request, [asset_id]))
    hook.get_batch(batch["batch_id"])
    list(hook.iter_batches(status=["pending", "processing"]))
    hook.batch_results(batch["batch_id"])
    hook.cancel_batch(batch["batch_id"])
    return str(task["task_id"]), str(batch["batch_id"])


def exercise_multipart(hook: GistHook, tmp_path) -> None:
    """A multipart upload through the engine (so the calls are sent as the engine sends them).

    The emulator's chunks are 5 MiB and its session comes with URLs for 10 chunks: a file of 12
    chunks makes the engine ask for more URLs. Chunk PUTs go to ``/_uploads``, not the API.
    """
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_gist.ingest.durable import StateStore
    from airflow_provider_gist.ingest.multipart import MultipartUploader

    chunk = 5 * 1024 * 1024
    big = tmp_path / "long_take.mp4"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(11 * chunk + 100)
    uploader = MultipartUploader(hook, StateStore({}, hook.log), hook.log, concurrency=2)
    asset = uploader.upload(
        ObjectStoragePath(f"file://{big}"),
        size=big.stat().st_size,
        filename=big.name,
        user_metadata={"gist_ingest_key": "multipart"},
        ingest_key="multipart",
    )
    assert asset["user_metadata"] == {"gist_ingest_key": "multipart"}
    chunks = list(hook.iter_multipart_upload_chunks(uploader.stats.upload_id))
    assert [c["status"] for c in chunks] == ["completed"] * 12
    hook.update_asset_user_metadata(asset["_id"], {"reviewed": True, "rating": 9.5})


def test_every_exchange_of_the_hooks_matches_the_spec(tl_conn, emu, tmp_path, wire):
    expected = exercise_every_hook_method(tmp_path)
    # Chunk PUTs to presigned URLs are journaled too, but they are storage traffic, not the API.
    entries = [e for e in journal(emu) if _is_api(e["path"])]
    wire = list(wire)  # what the hooks sent; the reads below are the test's own
    assert [(e["method"], e["path"]) for e in entries] == [(w.method, w.path) for w in wire], (
        "the journal and the client-side record disagree"
    )
    seen: set[str] = set()
    for entry, sent in zip(entries, wire, strict=True):
        method, path = entry["method"], entry["path"]
        template, _ = find_operation(method, path)
        key = f"{method} {template}"
        seen.add(key)
        query = {k: v if len(v) > 1 else v[0] for k, v in entry["query"].items()}
        body = entry.get("body")
        # The client sends user_metadata filters as user_metadata[key], never as bare keys.
        strict = {"query": query or None, "headers": sent.request_headers, "metadata_bare_keys": False}
        if key in MULTIPART:
            form = {k: v for k, v in body.items() if not isinstance(v, dict)}
            files = {k: v for k, v in body.items() if isinstance(v, dict)}
            validate_request(method, path, form=form, files=files or None, **strict)
        else:
            validate_request(method, path, json=body, **strict)
        assert entry["status"] < 400, f"{key} answered {entry['status']}: {entry.get('response')}"
        assert sent.status == entry["status"]
        if key == NDJSON_RESULTS:
            # One JSON object per line (JSON Lines): the spec's schema is that of one line.
            for item in fetch_lines(emu, path, entry["query"]):
                validate_response(method, path, entry["status"], item)
            continue
        validate_response(method, path, entry["status"], entry.get("response"), headers=sent.response_headers)
    assert expected <= seen, f"not exercised: {sorted(expected - seen)}"


def test_analyze_body_uses_only_schema_keywords_the_api_accepts(tl_conn, emu):
    hook = GistHook()
    asset = hook.create_asset_from_url("https://videos.example.com/a.mp4")
    deadline = time.time() + 10
    while hook.get_asset(asset["_id"])["status"] != "ready" and time.time() < deadline:
        time.sleep(0.1)
    hook.generate_gist(asset_id=asset["_id"])
    body = next(e for e in journal(emu) if e["path"].endswith("/analyze"))["body"]
    assert body["stream"] is False
    text = json.dumps(body["response_format"])
    for keyword in ("maxItems", "minLength", "maxLength", "uniqueItems", "additionalProperties"):
        assert keyword not in text
