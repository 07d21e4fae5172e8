"""The 2026 index rule: no new videos in a Pegasus-1.2-only index; Marengo only in a mixed one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator import MARENGO, MARENGO_AND_PEGASUS, PEGASUS, Api, running_api

pytestmark = pytest.mark.integration

PROMPT = "Summarize."


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api()


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def test_a_pegasus_only_index_can_still_be_created_but_takes_no_videos(api: Api) -> None:
    index_id = api.create_index("pegasus-only", PEGASUS)
    asset_id = api.ready_asset("pegasus_only.mp4")
    indexed = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset_id})
    assert indexed.status_code == 400
    assert indexed.json()["code"] == "index_not_supported"
    assert "Pegasus 1.2" in indexed.json()["message"]
    task = api.call("POST", "/tasks", form={"index_id": index_id, "video_url": "https://x.invalid/t.mp4"})
    assert (task.status_code, task.json()["code"]) == (400, "index_not_supported")
    # Nothing was created on the way: no task, no asset from the /tasks call.
    assert api.get("/tasks").json()["data"] == []
    assert len(api.server.emulator.state.assets) == 1  # only the ready_asset one
    assert api.get(f"/indexes/{index_id}/indexed-assets").json()["data"] == []


def test_a_marengo_and_pegasus_index_indexes_with_marengo_only(api: Api) -> None:
    index_id = api.create_index("both", MARENGO_AND_PEGASUS)
    asset_id = api.ready_asset("both_models.mp4")
    created = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset_id})
    assert created.status_code == 202
    video_id = created.json()["_id"]
    api.advance(0.35)
    path = f"/indexes/{index_id}/indexed-assets/{video_id}"
    embedded = api.get(path, params={"embedding_option": ["visual", "audio"]}).json()
    assert embedded["status"] == "ready"
    assert embedded["embedding"]["model_name"] == "marengo3.0"
    segments = embedded["embedding"]["video_embedding"]["segments"]
    assert {s["embedding_option"] for s in segments} == {"visual", "audio"}
    assert "embedding" not in api.get(path).json()  # only when asked for
    video = api.get(f"/indexes/{index_id}/videos/{video_id}", params={"embedding_option": "visual"}).json()
    assert video["embedding"]["model_name"] == "marengo3.0"
    # Not indexed with Pegasus, so it cannot be analyzed by video_id...
    by_id = api.post("/analyze", {"video_id": video_id, "prompt": PROMPT, "stream": False})
    assert (by_id.status_code, by_id.json()["code"]) == (400, "index_not_supported_for_generate")
    # ...while its asset can, with no index involved at all.
    by_asset = api.post(
        "/analyze", {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": PROMPT, "stream": False}
    )
    assert by_asset.status_code == 200


def test_legacy_tasks_into_a_mixed_index_also_index_with_marengo(api: Api) -> None:
    index_id = api.create_index("both-tasks", MARENGO_AND_PEGASUS)
    task = api.call("POST", "/tasks", form={"index_id": index_id, "video_url": "https://x.invalid/m.mp4"})
    assert task.status_code == 200
    api.advance(0.35)
    video = api.get(
        f"/indexes/{index_id}/videos/{task.json()['video_id']}", params={"embedding_option": "visual"}
    )
    assert video.json()["embedding"]["model_name"] == "marengo3.0"


def test_analysis_needs_no_index(api: Api) -> None:
    asset_id = api.ready_asset("no_index_needed.mp4")
    assert api.get("/indexes").json()["data"] == []
    response = api.post(
        "/analyze", {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": PROMPT, "stream": False}
    )
    assert response.status_code == 200
    assert "No Index Needed" in response.json()["data"]


def test_seed_makes_marengo_indexes_by_default(api: Api) -> None:
    seeded = api.seed("seeded", 2)
    assert seeded["models"] == MARENGO
    assert api.get(f"/indexes/{seeded['index_id']}").json()["models"] == MARENGO
    video_id = seeded["videos"][0]["video_id"]
    response = api.post("/analyze", {"video_id": video_id, "prompt": PROMPT, "stream": False})
    assert response.json()["code"] == "index_not_supported_for_generate"


def test_legacy_seeds_hold_videos_indexed_with_pegasus(api: Api) -> None:
    # Videos indexed before the rule still exist in Pegasus indexes; seeding is the only way to get them.
    seeded = api.seed("legacy", 1, model_name="pegasus1.2")
    video_id = seeded["videos"][0]["video_id"]
    ok = api.post("/analyze", {"video_id": video_id, "prompt": PROMPT, "stream": False})
    assert ok.status_code == 200
    no_embeddings = api.get(
        f"/indexes/{seeded['index_id']}/videos/{video_id}", params={"embedding_option": "visual"}
    )
    assert no_embeddings.status_code == 400
    both = api.seed("legacy-both", 1, models=MARENGO_AND_PEGASUS, legacy=True)
    video = both["videos"][0]["video_id"]
    assert api.post("/analyze", {"video_id": video, "prompt": PROMPT, "stream": False}).status_code == 200
    mixed = api.seed("mixed-today", 1, models=MARENGO_AND_PEGASUS)["videos"][0]["video_id"]
    assert api.post("/analyze", {"video_id": mixed, "prompt": PROMPT, "stream": False}).status_code == 400


def test_unknown_embedding_option_is_400(api: Api) -> None:
    seeded = api.seed("emb", 1)
    path = f"/indexes/{seeded['index_id']}/videos/{seeded['videos'][0]['video_id']}"
    assert api.get(path, params={"embedding_option": "smell"}, spec=False).status_code == 400
