"""The legacy ``POST /gist`` switch against emulators with and without the endpoint."""

from __future__ import annotations

import time

import pytest

from airflow_provider_gist.emulator.server import start_emulator
from airflow_provider_gist.errors import GistNotFoundError
from airflow_provider_gist.hooks.gist import GistHook
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

pytestmark = pytest.mark.integration


def indexed_video(hook: GistHook) -> str:
    index_id = hook.ensure_index("legacy")
    task = hook.create_task(index_id, video_url="https://videos.example.com/harbour_boats_at_dawn.mp4")
    deadline = time.time() + 10
    while hook.get_task(task["_id"])["status"] != "ready":
        assert time.time() < deadline, "indexing did not finish"
        time.sleep(0.05)
    return str(task["video_id"])


@pytest.mark.parametrize("served", [True, False])
def test_method_gist_uses_the_legacy_endpoint_where_it_still_exists(monkeypatch, served):
    with start_emulator(
        api_key=TEST_API_KEY, enable_gist=served, asset_ready_seconds=0, indexing_seconds=0.1
    ) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(emulator.url))
        hook = GistHook()
        video_id = indexed_video(hook)
        if not served:
            with pytest.raises(GistNotFoundError, match=r"POST /v1\.3/gist failed: HTTP 404"):
                hook.generate_gist(video_id=video_id, method="gist")
            return
        gist = hook.generate_gist(video_id=video_id, types=["title", "hashtag"], method="gist").to_dict()
        assert gist["title"] == "Harbour Boats At Dawn"
        assert gist["hashtags"] and "topics" not in gist
        assert gist["prompt_version"] == "legacy-gist"
        assert gist["video_ref_type"] == "video_id"
