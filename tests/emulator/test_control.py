from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_gist.emulator import EmulatorConfig, EmulatorProcess, start_emulator
from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration

SECRET = "tlk_secret_do_not_log_123"


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(api_key=SECRET)


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def test_journal_records_requests_without_headers_or_key(api: Api) -> None:
    index_id = api.create_index("journal")
    api.call(
        "POST",
        "/tasks",
        form={"index_id": index_id, "user_metadata": '{"a": 1}'},
        files={"video_file": ("clip.mp4", b"x" * 1234, "video/mp4")},
    )
    api.get("/indexes", params={"index_name": "journal", "page_limit": 5})
    journal = api.control("GET", "/journal")
    entries = journal["entries"]
    assert [e["operation"] for e in entries] == ["POST /indexes", "POST /tasks", "GET /indexes"]
    create, task, listing = entries
    assert create["body"]["index_name"] == "journal"
    assert create["status"] == 201
    assert create["response"] == {"_id": index_id}
    assert task["body"]["video_file"] == {"filename": "clip.mp4", "size": 1234}
    assert task["body"]["index_id"] == index_id
    assert listing["query"] == {"index_name": ["journal"], "page_limit": ["5"]}
    assert listing["response"]["page_info"]["total_results"] == 1
    raw = json.dumps(journal)
    assert SECRET not in raw
    assert "x-api-key" not in raw.lower()
    assert "headers" not in raw
    later = api.control("GET", f"/journal?since={listing['seq'] - 1}")["entries"]
    assert [e["seq"] for e in later] == [listing["seq"]]


def test_journal_records_stream_events_and_unmatched_paths(api: Api) -> None:
    video_id = api.seed("j", 1, model_name="pegasus1.2")["videos"][0]["video_id"]
    api.post("/analyze", {"video_id": video_id, "prompt": "p"})
    api.get("/not-a-route", raw=True)
    entries = api.control("GET", "/journal")["entries"]
    assert entries[0]["response_events"][0]["event_type"] == "stream_start"
    assert entries[1]["operation"] is None
    assert entries[1]["status"] == 404


def test_clear_journal_keeps_sequence_numbers(api: Api) -> None:
    api.get("/indexes")
    last = api.control("DELETE", "/journal")["last_seq"]
    api.get("/indexes")
    entries = api.control("GET", "/journal")["entries"]
    assert [e["seq"] for e in entries] == [last + 1]


def test_stats_count_calls_and_statuses(api: Api) -> None:
    api.get("/indexes")
    api.get("/indexes", key="nope")
    api.get("/indexes/" + "0" * 24)
    stats = api.control("GET", "/stats")
    assert stats["calls"] == {"GET /indexes": 2, "GET /indexes/{index-id}": 1}
    assert stats["statuses"]["GET /indexes"] == {"200": 1, "401": 1}
    assert stats["statuses"]["GET /indexes/{index-id}"] == {"400": 1}
    assert stats["total_requests"] == 3
    assert stats["total_429"] == 0


def test_reset_clears_everything(api: Api) -> None:
    api.create_index("gone")
    api.control("POST", "/faults", {"op": "*", "kind": "status", "status": 500})
    api.control("POST", "/reset")
    assert api.get("/indexes").json()["data"] == []
    assert api.control("GET", "/faults")["rules"] == []
    assert api.control("GET", "/stats")["total_requests"] == 1


def test_seeding_a_thousand_videos_is_fast(api: Api) -> None:
    started = time.perf_counter()
    seeded = api.seed("bench", 1000)
    elapsed = time.perf_counter() - started
    assert seeded["count"] == 1000
    assert len({v["video_id"] for v in seeded["videos"]}) == 1000
    assert elapsed < 2.0
    index_id = seeded["index_id"]
    assert api.get(f"/indexes/{index_id}").json()["video_count"] == 1000
    page = api.get(f"/indexes/{index_id}/videos", params={"page_limit": 50, "page": 20}).json()
    assert page["page_info"] == {"limit_per_page": 50, "page": 20, "total_page": 20, "total_results": 1000}
    # seeding again by name reuses the index
    assert api.seed("bench", 5)["index_id"] == index_id
    asset_id = seeded["videos"][0]["asset_id"]
    assert api.get(f"/assets/{asset_id}").json()["status"] == "ready"


def test_seed_with_filenames_and_metadata(api: Api) -> None:
    seeded = api.seed("named", 2, filenames=["a_b.mp4", "c_d.mp4"], user_metadata={"batch": 7})
    index_id = seeded["index_id"]
    assert [v["filename"] for v in seeded["videos"]] == ["a_b.mp4", "c_d.mp4"]
    found = api.get(f"/indexes/{index_id}/videos", params={"user_metadata[batch]": "7"}).json()
    assert found["page_info"]["total_results"] == 2


def test_clock_advances_status(api: Api) -> None:
    asset = api.create_url_asset("https://x.invalid/clock.mp4")
    before = api.control("GET", "/clock")["now"]
    after = api.control("POST", "/clock", {"advance": 10})["now"]
    assert after - before >= 10
    assert api.get(f"/assets/{asset['_id']}").json()["status"] == "ready"


def test_operations_listing(api: Api) -> None:
    ops = api.control("GET", "/operations")
    keys = {o["key"] for o in ops["operations"]}
    assert "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}" in keys
    assert ops["aliases"]["analyze"] == "POST /analyze"


def test_only_loopback_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        EmulatorConfig(host="0.0.0.0")  # noqa: S104 - the point is that it is refused
    with pytest.raises(ValueError, match="kind"):
        EmulatorConfig(faults=[{"op": "*", "kind": "nope"}])


def test_context_manager_stops_the_server() -> None:
    with start_emulator() as server:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/_emulator/health", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_emulator/health", timeout=2)


def test_cli_process_prints_url_and_stops_on_sigterm() -> None:
    proc = EmulatorProcess(["--retry-after", "--rate-limit", "1", "--asset-ready-seconds", "0"])
    try:
        assert proc.url.startswith("http://127.0.0.1:")
        health = requests.get(f"{proc.url}/_emulator/health", timeout=5).json()
        assert health["status"] == "ok"
        assert "gist_enabled" not in health
        limits = requests.get(f"{proc.url}/_emulator/rate-limits", timeout=5).json()
        assert limits["groups"]["analyze"]["limit"] == 1
        assert limits["retry_after"] is True
        response = requests.get(f"{proc.base_url}/indexes", headers={"x-api-key": proc.api_key}, timeout=5)
        assert response.status_code == 200
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
    finally:
        proc.stop()
