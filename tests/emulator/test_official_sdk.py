"""The official ``twelvelabs`` Python SDK, pointed at the emulator, for every operation it serves.

If the SDK cannot talk to the emulator, the emulator is wrong (the SDK is generated from the
API definition). Each test drives one group; the last one checks that, together, they called
every operation the emulator serves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError
from twelvelabs.errors import BadRequestError, ConflictError, NotFoundError, TooManyRequestsError
from twelvelabs.indexes import IndexesCreateRequestModelsItem
from twelvelabs.types import (
    AsyncResponseFormat,
    BatchDefaults,
    BatchItemRequest,
    BatchPrompt,
    BatchVideoContext,
    CompletedChunk,
    SyncResponseFormat,
    VideoContext_AssetId,
)
from twelvelabs.wrapper.multipart_upload_client_wrapper import MultipartUploadClientWrapper

from airflow_provider_gist.emulator import EmulatorServer, start_emulator

pytestmark = pytest.mark.integration

CHUNK = 1024
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "topics": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "topics"],
}
MARENGO = [IndexesCreateRequestModelsItem(model_name="marengo3.0", model_options=["visual", "audio"])]
CALLED: set[str] = set()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    emu = start_emulator(
        asset_ready_seconds=0.2,
        indexing_seconds=0.3,
        multipart_chunk_size=CHUNK,
        multipart_initial_urls=2,
        analysis_startup_seconds=0.5,
        analysis_seconds_per_minute=0.5,  # at most 5.5 s for the (<= 10-minute) fake videos
    )
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def client(server: EmulatorServer) -> TwelveLabs:
    return TwelveLabs(api_key=server.api_key, base_url=server.base_url, timeout=10)


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    _control(server, "POST", "/reset")
    yield
    CALLED.update(_control(server, "GET", "/stats")["calls"])


def _control(server: EmulatorServer, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{server.url}/_emulator{path}", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def _advance(server: EmulatorServer, seconds: float) -> None:
    _control(server, "POST", "/clock", {"advance": seconds})


def _ready_asset(client: TwelveLabs, server: EmulatorServer, name: str) -> str:
    asset = client.assets.create(method="url", url=f"https://cdn.example.invalid/{name}")
    assert asset.id is not None
    _advance(server, 0.25)
    return asset.id


def test_indexes(client: TwelveLabs) -> None:
    created = client.indexes.create(index_name="sdk-index", models=MARENGO, addons=["thumbnail"])
    assert created.id
    index = client.indexes.retrieve(created.id)
    assert (index.index_name, index.models[0].model_name if index.models else None) == (
        "sdk-index",
        "marengo3.0",
    )
    client.indexes.update(created.id, index_name="sdk-renamed")
    listed = list(client.indexes.list(index_name="sdk-renamed", page_limit=5))
    assert [i.id for i in listed] == [created.id]
    client.indexes.delete(created.id)
    with pytest.raises(BadRequestError) as err:
        client.indexes.retrieve(created.id)
    assert err.value.body["code"] == "resource_not_exist"


def test_assets_and_their_metadata(client: TwelveLabs, server: EmulatorServer, tmp_path: Path) -> None:
    by_url = client.assets.create(
        method="url",
        url="https://cdn.example.invalid/sunrise_harbour.mp4",
        user_metadata=json.dumps({"a": 1}),
    )
    assert (by_url.status, by_url.method) == ("processing", "url")
    video = tmp_path / "city_cycling.mp4"
    video.write_bytes(b"\x00fake-video" * 300)
    with video.open("rb") as fh:
        direct = client.assets.create(method="direct", file=fh, enable_hls=True)
    assert direct.filename == "city_cycling.mp4"
    _advance(server, 0.25)
    assert by_url.id and direct.id
    ready = client.assets.retrieve(direct.id)
    assert (ready.status, ready.size) == ("ready", 3300)
    assert {a.id for a in client.assets.list(page_limit=1)} <= {by_url.id, direct.id}
    assert len(list(client.assets.list(page_limit=1))) == 2  # the pager walks both pages
    client.assets.update_user_metadata(by_url.id, user_metadata={"a": None, "b": "two"})
    assert client.assets.retrieve(by_url.id).user_metadata == {"b": "two"}
    client.assets.replace_user_metadata(by_url.id, user_metadata={"c": True})
    assert client.assets.retrieve(by_url.id).user_metadata == {"c": True}
    client.assets.delete_user_metadata(by_url.id)
    assert client.assets.retrieve(by_url.id).user_metadata is None
    with pytest.raises(NotFoundError):
        client.assets.update_user_metadata("0" * 24, user_metadata={"a": 1})
    client.assets.delete(direct.id)
    with pytest.raises(BadRequestError):
        client.assets.retrieve(direct.id)


def test_multipart_upload_low_level(client: TwelveLabs, server: EmulatorServer) -> None:
    data = bytes(range(256)) * 10  # 2,560 bytes: chunks of 1,024, 1,024 and 512
    session = client.multipart_upload.create(filename="long_take.mp4", type="video", total_size=len(data))
    assert session.upload_id and session.asset_id and session.upload_urls
    assert (session.chunk_size, session.total_chunks) == (CHUNK, 3)
    urls = {u.chunk_index: u.url for u in session.upload_urls if u.chunk_index is not None}
    more = client.multipart_upload.get_additional_presigned_urls(session.upload_id, start=3, count=1)
    urls.update({u.chunk_index: u.url for u in more.upload_urls or [] if u.chunk_index is not None})
    assert sorted(urls) == [1, 2, 3]
    incomplete = list(client.multipart_upload.list_incomplete_uploads())
    assert [u.upload_id for u in incomplete] == [session.upload_id]
    chunks = []
    for index in (1, 2, 3):
        piece = data[(index - 1) * CHUNK : index * CHUNK]
        put = requests.put(str(urls[index]), data=piece, timeout=5)  # no API key, like S3
        chunks.append(
            CompletedChunk(
                chunk_index=index,
                proof=put.headers["ETag"].strip('"'),
                proof_type="etag",
                chunk_size=len(piece),
            )
        )
    first = client.multipart_upload.report_chunk_batch(session.upload_id, completed_chunks=chunks[:2])
    assert (first.processed_chunks, first.total_completed, first.url) == (2, 2, None)
    last = client.multipart_upload.report_chunk_batch(session.upload_id, completed_chunks=chunks[1:])
    assert (last.processed_chunks, last.duplicate_chunks, last.total_completed) == (1, 1, 3)
    assert last.url
    statuses = [c.status for c in client.multipart_upload.get_status(session.upload_id, page_limit=2)]
    assert statuses == ["completed"] * 3  # the pager walked two pages
    assert list(client.multipart_upload.list_incomplete_uploads()) == []
    _advance(server, 0.25)
    assert client.assets.retrieve(session.asset_id).status == "ready"
    with pytest.raises(NotFoundError):
        client.multipart_upload.report_chunk_batch("f" * 24, completed_chunks=chunks[:1])


def test_multipart_upload_file_helper(client: TwelveLabs, server: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "river_rafting.mp4"
    path.write_bytes(b"0123456789" * 700)  # 7,000 bytes -> 7 chunks, more than the initial URLs
    # TwelveLabs() installs the wrapper with the high-level helper; its attribute is typed as the base.
    uploader = cast(MultipartUploadClientWrapper, client.multipart_upload)
    result = uploader.upload_file(path, batch_size=3, max_workers=2)
    assert result.asset_url
    counters = _control(server, "GET", "/uploads")
    assert counters["chunk_puts"] == 7
    assert counters["chunk_reports"] == 7  # the helper reported each chunk exactly once
    _advance(server, 0.25)
    asset = client.assets.retrieve(result.asset_id)
    assert (asset.status, asset.filename, asset.size) == ("ready", "river_rafting.mp4", 7000)


def test_indexed_assets(client: TwelveLabs, server: EmulatorServer) -> None:
    index_id = client.indexes.create(index_name="sdk-indexed", models=MARENGO).id
    assert index_id
    asset_id = _ready_asset(client, server, "mountain_hike.mp4")
    created = client.indexes.indexed_assets.create(index_id, asset_id=asset_id, user_metadata={"k": "v"})
    assert created.id and created.asset_id == asset_id
    _advance(server, 0.35)
    detail = client.indexes.indexed_assets.retrieve(index_id, created.id, embedding_option=["visual"])
    assert detail.status == "ready"
    assert detail.embedding is not None and detail.embedding.model_name == "marengo3.0"
    listed = list(client.indexes.indexed_assets.list(index_id, status=["ready"], user_metadata={"k": "v"}))
    assert [v.id for v in listed] == [created.id]
    by_asset = list(client.indexes.indexed_assets.list_by_asset(asset_id))
    assert [(v.id, v.index.id if v.index else None) for v in by_asset] == [(created.id, index_id)]
    client.indexes.indexed_assets.update(index_id, created.id, user_metadata={"k": None, "n": 2})
    assert client.indexes.indexed_assets.retrieve(index_id, created.id).user_metadata == {"n": 2}
    client.indexes.indexed_assets.delete(index_id, created.id)
    with pytest.raises(NotFoundError):
        client.indexes.indexed_assets.retrieve(index_id, created.id)


def test_pegasus_only_index_refuses_videos_through_the_sdk(
    client: TwelveLabs, server: EmulatorServer
) -> None:
    pegasus = [IndexesCreateRequestModelsItem(model_name="pegasus1.2", model_options=["visual", "audio"])]
    index_id = client.indexes.create(index_name="sdk-pegasus", models=pegasus).id
    assert index_id
    asset_id = _ready_asset(client, server, "nope.mp4")
    with pytest.raises(BadRequestError) as err:
        client.indexes.indexed_assets.create(index_id, asset_id=asset_id)
    assert err.value.body["code"] == "index_not_supported"
    with pytest.raises(BadRequestError):
        client.tasks.create(index_id=index_id, video_url="https://cdn.example.invalid/nope.mp4")


def test_tasks_and_videos(client: TwelveLabs, server: EmulatorServer) -> None:
    index_id = client.indexes.create(index_name="sdk-tasks", models=MARENGO).id
    assert index_id
    task = client.tasks.create(
        index_id=index_id,
        video_url="https://cdn.example.invalid/winter_market.mp4",
        user_metadata=json.dumps({"show": "ep1"}),
    )
    assert task.id and task.video_id
    assert client.tasks.retrieve(task.id).status == "validating"
    _advance(server, 0.35)
    assert [t.id for t in client.tasks.list(index_id=index_id, status=["ready"])] == [task.id]
    videos = list(client.indexes.videos.list(index_id, user_metadata={"show": "ep1"}))
    assert [v.id for v in videos] == [task.video_id]
    client.indexes.videos.update(index_id, task.video_id, user_metadata={"show": "ep2"})
    video = client.indexes.videos.retrieve(index_id, task.video_id)
    assert video.user_metadata == {"show": "ep2"}
    assert video.system_metadata is not None and video.system_metadata.filename == "winter_market.mp4"
    client.indexes.videos.delete(index_id, task.video_id)
    with pytest.raises(NotFoundError):
        client.indexes.videos.retrieve(index_id, task.video_id)
    client.tasks.delete(task.id)
    with pytest.raises(BadRequestError):
        client.tasks.retrieve(task.id)


def test_analyze(client: TwelveLabs, server: EmulatorServer) -> None:
    asset_id = _ready_asset(client, server, "sunrise_harbour_fishing.mp4")
    video = VideoContext_AssetId(asset_id=asset_id)
    fmt = SyncResponseFormat(type="json_schema", json_schema=SCHEMA)
    result = client.analyze(video=video, prompt="Title and topics.", response_format=fmt, max_tokens=1024)
    assert result.finish_reason == "stop"
    assert json.loads(result.data or "{}")["title"] == "Sunrise Harbour Fishing"
    events = list(client.analyze_stream(video=video, prompt="Title and topics.", response_format=fmt))
    text = "".join(getattr(e, "text", "") or "" for e in events if e.event_type == "text_generation")
    assert json.loads(text)["topics"] == ["Sunrise", "Harbour", "Fishing"]
    assert events[-1].event_type == "stream_end"
    with pytest.raises(NotFoundError):
        client.analyze(video=VideoContext_AssetId(asset_id="0" * 24), prompt="x")


def test_rate_limited_analyze_surfaces_as_a_429(client: TwelveLabs, server: EmulatorServer) -> None:
    asset_id = _ready_asset(client, server, "limited.mp4")
    _control(server, "POST", "/rate-limits", {"groups": {"analyze": 0}})
    with pytest.raises(ApiError) as err:  # the empty 429 body of /analyze: plain ApiError
        client.analyze(video=VideoContext_AssetId(asset_id=asset_id), prompt="x")
    assert err.value.status_code == 429
    assert err.value.headers is not None and "retry-after" not in err.value.headers


def test_async_analysis_tasks(client: TwelveLabs, server: EmulatorServer) -> None:
    asset_id = _ready_asset(client, server, "sunrise_harbour_fishing.mp4")
    fmt = AsyncResponseFormat(type="json_schema", json_schema=SCHEMA)
    created = client.analyze_async.tasks.create(
        video=VideoContext_AssetId(asset_id=asset_id),
        prompt="Title and topics.",
        custom_id="sdk-1",
        response_format=fmt,
        max_tokens=1024,
    )
    assert created.task_id and created.status in ("queued", "pending")
    _advance(server, 10)
    task = client.analyze_async.tasks.retrieve(created.task_id)
    assert (task.status, task.custom_id) == ("ready", "sdk-1")
    assert task.result is not None and task.result.finish_reason == "stop"
    assert json.loads(task.result.data)["title"] == "Sunrise Harbour Fishing"
    listed = client.analyze_async.tasks.list(asset_id=asset_id, status="ready", page_limit=1)  # one page
    assert [t.task_id for t in listed.data or []] == [created.task_id]
    assert listed.page_info is not None and listed.page_info.total_results == 1
    client.analyze_async.tasks.delete(created.task_id)
    with pytest.raises(NotFoundError) as err:
        client.analyze_async.tasks.retrieve(created.task_id)
    assert err.value.body["error"]["code"] == "resource_not_exist"
    with pytest.raises(BadRequestError):
        client.analyze_async.tasks.create(video=VideoContext_AssetId(asset_id="0" * 24), prompt="x")


def test_batches(client: TwelveLabs, server: EmulatorServer) -> None:
    ids = [_ready_asset(client, server, name) for name in ("city_cycling.mp4", "forest_hiking.mp4")]
    defaults = BatchDefaults(
        prompt=BatchPrompt(input_text="Title and topics."),
        response_format=AsyncResponseFormat(type="json_schema", json_schema=SCHEMA),
    )

    def items(prefix: str) -> list[BatchItemRequest]:
        return [
            BatchItemRequest(video=BatchVideoContext(type="asset_id", asset_id=a), custom_id=f"{prefix}-{i}")
            for i, a in enumerate(ids)
        ]

    batches = client.analyze_async.batches
    created = batches.create(
        model_name="pegasus1.5", analysis_mode="general", defaults=defaults, requests=items("a")
    )
    assert (created.total_items, [i.custom_id for i in created.items]) == (2, ["a-0", "a-1"])
    running = list(batches.results(created.batch_id))  # readable while the batch runs
    assert [(r.custom_id, r.data) for r in running] == [("a-0", None), ("a-1", None)]
    _advance(server, 20)
    batch = batches.retrieve(created.batch_id)
    assert (batch.status, batch.ready_items, batch.failed_items) == ("completed", 2, 0)
    results = list(batches.results(created.batch_id))
    assert results[0].data is not None and json.loads(results[0].data.data)["title"] == "City Cycling"
    assert [b.batch_id for b in batches.list(status=["completed"], page_limit=1)] == [created.batch_id]
    with pytest.raises(ConflictError):
        batches.cancel(created.batch_id)
    second = batches.create(
        model_name="pegasus1.5", analysis_mode="general", defaults=defaults, requests=items("b")
    )
    assert batches.cancel(second.batch_id).status == "canceling"  # its items were already processing
    with pytest.raises(ConflictError) as conflict:
        batches.delete(second.batch_id)
    assert conflict.value.body["error"]["code"] == "batch_not_terminal"
    batches.delete(created.batch_id)
    with pytest.raises(NotFoundError):
        batches.retrieve(created.batch_id)
    _control(server, "POST", "/batches/occupy", {"count": 5})
    with pytest.raises(TooManyRequestsError) as err:
        batches.create(
            model_name="pegasus1.5", analysis_mode="general", defaults=defaults, requests=items("c")
        )
    assert err.value.body["error"]["code"] == "too_many_requests"


def test_every_served_operation_was_called_through_the_sdk(server: EmulatorServer) -> None:
    served = {op["key"] for op in _control(server, "GET", "/operations")["operations"]}
    missing = sorted(served - CALLED)
    assert not missing, f"not exercised through the SDK: {missing}"
