from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration

# validating, pending, queued and indexing share 5 s (1.25 s each), then ready.
INDEXING = 5.0


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(asset_ready_seconds=0.2, indexing_seconds=INDEXING)


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _task(api: Api, index_id: str, url: str, **form: str) -> dict[str, str]:
    response = api.call("POST", "/tasks", form={"index_id": index_id, "video_url": url, **form})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_task_state_machine_and_video(api: Api) -> None:
    index_id = api.create_index("legacy")
    task = _task(api, index_id, "https://x.invalid/winter_market_tour.mp4", user_metadata='{"show": "ep1"}')
    statuses = []
    for _ in range(5):
        statuses.append(api.get(f"/tasks/{task['_id']}").json()["status"])
        api.advance(1.3)
    assert statuses == ["validating", "pending", "queued", "indexing", "ready"]
    body = api.get(f"/tasks/{task['_id']}").json()
    assert body["video_id"] == task["video_id"]
    assert body["index_id"] == index_id
    assert body["hls"]["status"] == "COMPLETE"  # enable_video_stream defaults to true on /tasks
    video = api.get(f"/indexes/{index_id}/videos/{task['video_id']}").json()
    assert video["system_metadata"]["filename"] == "winter_market_tour.mp4"
    assert video["user_metadata"] == {"show": "ep1"}


def test_video_url_as_a_file_part_and_video_file(api: Api) -> None:
    index_id = api.create_index("forms")
    # SDK 0.4 sends the URL as a file part whose content is the URL.
    as_part = api.call(
        "POST",
        "/tasks",
        form={"index_id": index_id},
        files={"video_url": ("video_url", b"https://x.invalid/city_cooking.mp4")},
    )
    uploaded = api.call(
        "POST",
        "/tasks",
        form={"index_id": index_id, "enable_video_stream": "false"},
        files={"video_file": ("desert_hiking.mp4", b"0" * 2048, "video/mp4")},
    )
    assert as_part.status_code == uploaded.status_code == 200
    api.advance(INDEXING + 0.1)
    names = {v["system_metadata"]["filename"] for v in api.get(f"/indexes/{index_id}/videos").json()["data"]}
    assert names == {"city_cooking.mp4", "desert_hiking.mp4"}
    assert "hls" not in api.get(f"/tasks/{uploaded.json()['_id']}").json()


def test_task_errors(api: Api) -> None:
    index_id = api.create_index("errs")
    no_video = api.call("POST", "/tasks", form={"index_id": index_id}, spec=False)
    assert no_video.status_code == 400
    assert no_video.json()["code"] == "parameter_not_provided"
    bad_index = api.call(
        "POST", "/tasks", form={"index_id": "f" * 24, "video_url": "https://x.invalid/a.mp4"}
    )
    assert bad_index.status_code == 400
    assert bad_index.json()["code"] == "resource_not_exist"
    assert api.get("/tasks/" + "e" * 24).json()["code"] == "resource_not_exist"


def test_corrupt_task_fails_and_is_not_a_video(api: Api) -> None:
    index_id = api.create_index("corrupt")
    task = _task(api, index_id, "https://x.invalid/corrupt_upload.mp4")
    api.advance(INDEXING + 0.1)
    assert api.get(f"/tasks/{task['_id']}").json()["status"] == "failed"
    assert api.get(f"/indexes/{index_id}/videos").json()["data"] == []


def test_list_tasks_filters(api: Api) -> None:
    first, second = api.create_index("one"), api.create_index("two")
    t1 = _task(api, first, "https://x.invalid/a.mp4")
    api.advance(INDEXING + 0.1)
    t2 = _task(api, first, "https://x.invalid/b.mp4")
    _task(api, second, "https://x.invalid/c.mp4")
    in_first = api.get("/tasks", params={"index_id": first}).json()
    assert [t["_id"] for t in in_first["data"]] == [t2["_id"], t1["_id"]]
    ready = api.get("/tasks", params={"status": ["ready", "failed"]}).json()
    assert [t["_id"] for t in ready["data"]] == [t1["_id"]]
    assert api.get("/tasks", params={"status": "bogus"}, spec=False).status_code == 400


def test_videos_list_only_ready_ones_from_tasks_and_indexed_assets(api: Api) -> None:
    index_id = api.create_index("mixed")
    task = _task(api, index_id, "https://x.invalid/from_task.mp4")
    asset = api.create_url_asset("https://x.invalid/from_asset.mp4")
    api.advance(0.3)
    indexed = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset["_id"]}).json()
    assert api.get(f"/indexes/{index_id}/videos").json()["data"] == []
    api.advance(INDEXING + 0.1)
    listed = api.get(f"/indexes/{index_id}/videos").json()
    assert {v["_id"] for v in listed["data"]} == {task["video_id"], indexed["_id"]}
    assert listed["page_info"]["total_results"] == 2
    assert api.get(f"/indexes/{index_id}").json()["video_count"] == 2


def test_video_patch_merges_and_null_deletes(api: Api) -> None:
    index_id = api.create_index("patch")
    task = _task(api, index_id, "https://x.invalid/p.mp4", user_metadata='{"keep": 1, "drop": "x"}')
    api.advance(INDEXING + 0.1)
    path = f"/indexes/{index_id}/videos/{task['video_id']}"
    before = api.get(path).json()["updated_at"]
    api.advance(2)
    assert (
        api.call("PATCH", path, json_body={"user_metadata": {"drop": None, "new": True}}).status_code == 200
    )
    after = api.get(path).json()
    assert after["user_metadata"] == {"keep": 1, "new": True}
    assert after["updated_at"] > before
    only_new = api.get(f"/indexes/{index_id}/videos", params={"user_metadata[new]": "true"}).json()
    assert [v["_id"] for v in only_new["data"]] == [task["video_id"]]


def test_unknown_video_is_404_flat(api: Api) -> None:
    index_id = api.create_index("missing")
    response = api.get(f"/indexes/{index_id}/videos/{'a' * 24}")
    assert response.status_code == 404
    assert response.json()["code"] == "resource_not_exist"
    patch = api.call("PATCH", f"/indexes/{index_id}/videos/{'a' * 24}", json_body={"user_metadata": {"a": 1}})
    assert patch.status_code == 400  # PATCH declares no 404


def test_videos_range_filters_and_sorting(api: Api) -> None:
    seeded = api.seed("ranges", 20)
    index_id = seeded["index_id"]
    everything = api.get(f"/indexes/{index_id}/videos", params={"page_limit": 50}).json()["data"]
    durations = sorted(v["system_metadata"]["duration"] for v in everything)
    cut = durations[10]
    long_ones = api.get(
        f"/indexes/{index_id}/videos", params={"duration[gte]": cut, "page_limit": 50}
    ).json()["data"]
    assert long_ones
    assert all(v["system_metadata"]["duration"] >= cut for v in long_ones)
    assert len(long_ones) == sum(1 for d in durations if d >= cut)
