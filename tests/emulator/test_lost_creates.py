"""Faults a durable create must survive: "created, then 5xx" and listings that lag behind creates.

``status_after`` / ``html_after`` run the handler (the resource is created, and a real API would
bill it) and only then answer with an error: the API failing after its commit, or a gateway
timing out while the upstream completes. ``listing_lag`` hides new assets, indexed assets
(videos) and tasks from listings for N seconds, while a GET by id sees them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.emulator import MARENGO, Api, running_api

pytestmark = pytest.mark.integration

FORM = {"method": "url", "url": "https://x.invalid/harbour.mp4"}


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(seed=11)


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _faults(api: Api, *rules: dict[str, Any]) -> None:
    api.control("POST", "/faults", {"rules": list(rules), "mode": "replace"})


def _listed_assets(api: Api) -> list[str]:
    return [a["_id"] for a in api.get("/assets", params={"page_limit": 50}).json()["data"]]


def test_status_after_creates_the_asset_then_answers_500(api: Api) -> None:
    _faults(api, {"op": "create_asset", "kind": "status_after", "status": 500, "count": 1})
    failed = api.call("POST", "/assets", form=FORM, raw=True)
    assert failed.status_code == 500
    assert failed.json()["code"] == "internal_server_error"
    [asset_id] = _listed_assets(api)  # the create happened all the same
    assert api.get(f"/assets/{asset_id}").status_code == 200
    [entry] = [e for e in api.control("GET", "/journal")["entries"] if e["operation"] == "POST /assets"]
    assert (entry["fault"], entry["status"], entry["handled_status"]) == ("status_after", 500, 201)
    # the rule is spent: the next create answers normally and makes a second asset
    assert api.call("POST", "/assets", form=FORM).status_code == 201
    assert len(_listed_assets(api)) == 2
    assert api.control("GET", "/stats")["faults"] == {"status_after": 1}


def test_html_after_is_a_gateway_timeout_page_after_the_indexed_asset_was_created(api: Api) -> None:
    index_id = api.create_index("after", MARENGO)
    asset_id = api.ready_asset("harbour.mp4")
    _faults(api, {"op": "create_indexed_asset", "kind": "html_after", "count": 1})
    failed = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset_id}, raw=True)
    assert failed.status_code == 504  # html_after defaults to a gateway timeout
    assert failed.headers["Content-Type"].startswith("text/html")
    assert "504 Gateway Timeout" in failed.text
    listed = api.get(f"/indexes/{index_id}/indexed-assets").json()["data"]
    assert [item["asset_id"] for item in listed] == [asset_id]


def test_after_kinds_accept_any_status(api: Api) -> None:
    _faults(api, {"op": "create_asset", "kind": "html_after", "status": 502, "count": 1})
    assert api.call("POST", "/assets", form=FORM, raw=True).status_code == 502
    assert len(_listed_assets(api)) == 1


def test_listing_lag_hides_new_assets_from_listings_but_not_from_get(api: Api) -> None:
    assert api.control("POST", "/listing-lag", {"seconds": 5}) == {"seconds": 5.0}
    asset_id = api.create_url_asset("https://x.invalid/late.mp4")["_id"]
    assert api.get(f"/assets/{asset_id}").status_code == 200
    assert _listed_assets(api) == []
    assert api.get("/assets", params={"filename": "late"}).json()["page_info"]["total_results"] == 0
    api.advance(4.9)
    assert _listed_assets(api) == []
    api.advance(0.2)
    assert _listed_assets(api) == [asset_id]


def test_listing_lag_applies_to_indexed_assets_videos_and_tasks(api: Api) -> None:
    index_id = api.seed("lagged", 2)["index_id"]  # ready videos, listed at once without a lag
    assert len(api.get(f"/indexes/{index_id}/indexed-assets").json()["data"]) == 2
    api.advance(5)
    api.control("POST", "/listing-lag", {"seconds": 3})
    asset_id = api.ready_asset("third.mp4")  # moves the clock 0.25 s
    made = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset_id})
    assert made.status_code == 202
    task = api.call("POST", "/tasks", form={"index_id": index_id, "video_url": "https://x.invalid/t.mp4"})
    assert task.status_code == 200

    def counts() -> tuple[int, int, int, int]:
        indexed = api.get(f"/indexes/{index_id}/indexed-assets").json()["page_info"]["total_results"]
        videos = api.get(f"/indexes/{index_id}/videos").json()["page_info"]["total_results"]
        tasks = api.get("/tasks", params={"index_id": index_id}).json()["page_info"]["total_results"]
        of_asset = api.get(f"/assets/{asset_id}/indexed-assets").json()["page_info"]["total_results"]
        return indexed, videos, tasks, of_asset

    assert counts() == (2, 2, 0, 0)  # only the seeded ones, older than the lag
    assert api.get(f"/indexes/{index_id}/indexed-assets/{made.json()['_id']}").status_code == 200
    api.advance(10)  # past the lag, and past indexing: the new videos are ready and listed
    assert counts() == (4, 4, 1, 1)


def test_listing_lag_from_start_config_survives_reset_and_is_validated() -> None:
    for api in running_api(listing_lag=2.5):
        assert api.control("GET", "/listing-lag") == {"seconds": 2.5}
        api.control("POST", "/listing-lag", {"seconds": 0})
        api.control("POST", "/reset")
        assert api.control("GET", "/listing-lag") == {"seconds": 2.5}  # back to the start config
        for bad in ({"seconds": -1}, {"seconds": "soon"}, {"seconds": True}, {}):
            response = requests.post(f"{api.server.url}/_emulator/listing-lag", json=bad, timeout=5)
            assert response.status_code == 400, bad
    with pytest.raises(ValueError, match=">= 0"):
        next(running_api(listing_lag=-1))
