from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    # Indexing is slow enough that a busy machine cannot skip a status between clock jumps.
    yield from running_api(asset_ready_seconds=0.2, indexing_seconds=4.0)


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def test_url_asset_goes_processing_then_ready(api: Api) -> None:
    asset = api.create_url_asset(
        "https://cdn.example.invalid/media/sunrise_harbour_fishing.mp4", user_metadata='{"team": "news"}'
    )
    assert asset["status"] == "processing"
    assert asset["method"] == "url"
    assert asset["filename"] == "sunrise_harbour_fishing.mp4"
    assert asset["user_metadata"] == {"team": "news"}
    assert "technical_metadata" not in api.get(f"/assets/{asset['_id']}").json()
    api.advance(0.25)
    ready = api.get(f"/assets/{asset['_id']}").json()
    assert ready["status"] == "ready"
    assert ready["technical_metadata"]["video_duration_seconds"] == ready["duration"]


def test_direct_upload_uses_real_timing_and_file_size(api: Api) -> None:
    payload = b"\x00\x01fake-video" * 100
    response = api.call(
        "POST", "/assets", form={"method": "direct"}, files={"file": ("clip.mp4", payload, "video/mp4")}
    )
    assert response.status_code == 201
    asset_id = response.json()["_id"]
    time.sleep(0.25)  # no clock jump here: the real clock must drive the status too
    body = api.get(f"/assets/{asset_id}").json()
    assert body["status"] == "ready"
    assert body["size"] == len(payload)
    assert body["filename"] == "clip.mp4"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({}, "parameter_not_provided"),
        ({"method": "url"}, "parameter_not_provided"),
        ({"method": "direct"}, "parameter_not_provided"),
        (
            {"method": "url", "url": "https://x.invalid/a.mp4", "user_metadata": "not json"},
            "parameter_invalid",
        ),
    ],
)
def test_invalid_asset_uploads(api: Api, form: dict[str, str], code: str) -> None:
    response = api.call("POST", "/assets", form=form, spec=False)
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_assets_need_multipart(api: Api) -> None:
    response = api.post("/assets", {"method": "url", "url": "https://x.invalid/a.mp4"}, spec=False)
    assert response.status_code == 400


def test_corrupt_asset_fails_with_error_message(api: Api) -> None:
    asset = api.create_url_asset("https://x.invalid/corrupt_clip.mp4")
    api.advance(0.25)
    body = api.get(f"/assets/{asset['_id']}").json()
    assert body["status"] == "failed"
    assert body["error"]["message"]


def test_list_assets_filters(api: Api) -> None:
    meta = '{"batch": 1}'  # see test_asset_without_metadata_has_no_user_metadata_field
    a = api.create_url_asset("https://x.invalid/alpha_beach.mp4", user_metadata=meta)
    b = api.create_url_asset("https://x.invalid/beta_city.mp4", user_metadata=meta)
    api.create_url_asset("https://x.invalid/gamma_forest.mp4", user_metadata=meta)
    by_ids = api.get("/assets", params={"asset_ids": [a["_id"], b["_id"]]}).json()
    assert {x["_id"] for x in by_ids["data"]} == {a["_id"], b["_id"]}
    by_name = api.get("/assets", params={"filename": "BETA"}).json()
    assert [x["_id"] for x in by_name["data"]] == [b["_id"]]
    assert api.get("/assets", params={"page_limit": 2}).json()["page_info"]["total_page"] == 2


def test_delete_asset_in_use_needs_force(api: Api) -> None:
    index_id = api.create_index("i")
    asset = api.create_url_asset("https://x.invalid/in_use.mp4")
    api.advance(0.25)
    assert api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset["_id"]}).status_code == 202
    assert api.call("DELETE", f"/assets/{asset['_id']}").status_code == 409
    assert api.call("DELETE", f"/assets/{asset['_id']}", params={"force": "true"}).status_code == 200
    assert api.get(f"/assets/{asset['_id']}").status_code == 400


def _ready_asset(api: Api, name: str, **form: str) -> str:
    asset = api.create_url_asset(f"https://x.invalid/{name}", **form)
    api.advance(0.25)
    return str(asset["_id"])


def test_indexed_asset_status_progression(api: Api) -> None:
    index_id = api.create_index("progress")
    asset_id = _ready_asset(api, "river_cycling_tour.mp4")
    created = api.post(
        f"/indexes/{index_id}/indexed-assets", {"asset_id": asset_id, "enable_video_stream": True}
    )
    assert created.status_code == 202
    assert created.json()["asset_id"] == asset_id
    path = f"/indexes/{index_id}/indexed-assets/{created.json()['_id']}"
    seen = []
    for _ in range(4):
        seen.append(api.get(path).json()["status"])
        api.advance(1.4)  # pending, queued and indexing share the 4 s evenly
    assert seen == ["pending", "queued", "indexing", "ready"]
    body = api.get(path).json()
    assert body["system_metadata"]["filename"] == "river_cycling_tour.mp4"
    assert body["hls"]["status"] == "COMPLETE"
    assert "indexed_at" in body


def test_indexed_asset_of_corrupt_asset_fails(api: Api) -> None:
    index_id = api.create_index("fail")
    asset = api.create_url_asset("https://x.invalid/corrupt.mp4")
    api.advance(0.25)
    assert api.get(f"/assets/{asset['_id']}").json()["status"] == "failed"
    response = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": asset["_id"]})
    assert response.status_code == 400  # only ready assets can be indexed


def test_indexing_errors(api: Api) -> None:
    index_id = api.create_index("errors")
    missing = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": "0" * 24})
    assert missing.status_code == 404
    assert missing.json()["code"] == "resource_not_exist"
    processing = api.create_url_asset("https://x.invalid/slow.mp4")
    not_ready = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": processing["_id"]})
    assert not_ready.status_code == 400
    unknown_index = api.post("/indexes/" + "1" * 24 + "/indexed-assets", {"asset_id": processing["_id"]})
    assert unknown_index.status_code == 404
    assert api.get(f"/indexes/{index_id}/indexed-assets/{'2' * 24}").status_code == 404


def test_indexed_asset_list_filters(api: Api) -> None:
    index_id = api.create_index("filters")
    ids = {}
    for name, meta in [
        ("a_news.mp4", {"category": "news", "rank": 3}),
        ("b_sport.mp4", {"category": "sport"}),
    ]:
        asset_id = _ready_asset(api, name)
        body = {"asset_id": asset_id, "user_metadata": meta}
        ids[name] = api.post(f"/indexes/{index_id}/indexed-assets", body).json()["_id"]
    api.advance(4.0)
    late = api.post(f"/indexes/{index_id}/indexed-assets", {"asset_id": _ready_asset(api, "c_late.mp4")})
    path = f"/indexes/{index_id}/indexed-assets"

    def listed(params: dict[str, object]) -> list[str]:
        return [v["_id"] for v in api.get(path, params=params).json()["data"]]

    assert listed({"status": "ready"}) == [ids["b_sport.mp4"], ids["a_news.mp4"]]
    assert set(listed({"status": ["ready", "pending"]})) == {*ids.values(), late.json()["_id"]}
    assert listed({"filename": "sport"}) == [ids["b_sport.mp4"]]
    assert listed({"user_metadata[category]": "news"}) == [ids["a_news.mp4"]]
    assert listed({"category": "sport"}) == [ids["b_sport.mp4"]]  # bare key form from the docs
    assert listed({"rank": "3"}) == [ids["a_news.mp4"]]
    assert listed({"sort_option": "asc", "status": "ready"}) == [ids["a_news.mp4"], ids["b_sport.mp4"]]


def test_patch_indexed_asset_metadata_bumps_updated_at(api: Api) -> None:
    index_id = api.create_index("patch")
    video_id = api.post(
        f"/indexes/{index_id}/indexed-assets",
        {"asset_id": _ready_asset(api, "p.mp4"), "user_metadata": {"a": 1}},
    ).json()["_id"]
    api.advance(1.0)
    path = f"/indexes/{index_id}/indexed-assets/{video_id}"
    before = api.get(path).json()["updated_at"]
    api.advance(1.0)
    response = api.call("PATCH", path, json_body={"user_metadata": {"b": "two", "a": None}})
    assert response.status_code == 200
    after = api.get(path).json()
    assert after["user_metadata"] == {"b": "two"}
    assert after["updated_at"] > before
    assert api.call("DELETE", path).status_code == 200
    assert api.get(path).status_code == 404


def test_user_metadata_must_be_scalar_values(api: Api) -> None:
    index_id = api.create_index("meta")
    body = {"asset_id": _ready_asset(api, "m.mp4"), "user_metadata": {"nested": {"x": 1}}}
    response = api.post(f"/indexes/{index_id}/indexed-assets", body)
    assert response.status_code == 400
    assert json.loads(response.text)["code"] == "parameter_invalid"


def test_asset_without_metadata_has_no_user_metadata_field(api: Api) -> None:
    # Spec (Asset.user_metadata): "This field is absent when no metadata has been set."
    asset = api.create_url_asset("https://x.invalid/plain.mp4")
    assert "user_metadata" not in asset
    assert "user_metadata" not in api.get(f"/assets/{asset['_id']}").json()


def test_asset_user_metadata_patch_put_delete(api: Api) -> None:
    asset = api.create_url_asset("https://x.invalid/meta.mp4", user_metadata='{"a": 1, "b": "two"}')
    path = f"/assets/{asset['_id']}/user-metadata"
    # PATCH merges: a value sets, null deletes, "" is ignored, omitted keys stay.
    patched = api.call("PATCH", path, json_body={"user_metadata": {"a": None, "c": True, "b": ""}})
    assert (patched.status_code, patched.content) == (200, b"")
    assert api.get(f"/assets/{asset['_id']}").json()["user_metadata"] == {"b": "two", "c": True}
    # PUT replaces: omitted keys go, null and "" are ignored.
    replaced = api.call("PUT", path, json_body={"user_metadata": {"d": 4.5, "e": None, "f": ""}})
    assert replaced.status_code == 200
    assert api.get(f"/assets/{asset['_id']}").json()["user_metadata"] == {"d": 4.5}
    assert api.call("DELETE", path).status_code == 200
    assert "user_metadata" not in api.get(f"/assets/{asset['_id']}").json()
    missing = api.call("PATCH", f"/assets/{'0' * 24}/user-metadata", json_body={"user_metadata": {"a": 1}})
    assert (missing.status_code, missing.json()["code"]) == (404, "resource_not_exist")
    nested = api.call("PUT", path, json_body={"user_metadata": {"x": {"y": 1}}})
    assert nested.status_code == 400


def test_list_indexed_assets_of_an_asset(api: Api) -> None:
    asset_id = _ready_asset(api, "shared.mp4")
    first, second = api.create_index("first"), api.create_index("second")
    a = api.post(f"/indexes/{first}/indexed-assets", {"asset_id": asset_id}).json()["_id"]
    b = api.post(f"/indexes/{second}/indexed-assets", {"asset_id": asset_id}).json()["_id"]
    listed = api.get(f"/assets/{asset_id}/indexed-assets").json()
    assert listed["data"] == [
        {"_id": b, "index": {"_id": second, "name": "second"}},
        {"_id": a, "index": {"_id": first, "name": "first"}},
    ]
    assert listed["page_info"]["total_results"] == 2
    assert api.get(f"/assets/{'0' * 24}/indexed-assets").status_code == 400


def test_direct_upload_over_the_limit_is_400_filesize_too_large() -> None:
    for api in running_api(max_direct_upload_bytes=1000):
        ok = api.call("POST", "/assets", form={"method": "direct"}, files={"file": ("ok.mp4", b"x" * 1000)})
        assert ok.status_code == 201
        big = api.call("POST", "/assets", form={"method": "direct"}, files={"file": ("big.mp4", b"x" * 1001)})
        assert big.status_code == 400
        assert big.json()["code"] == "video_filesize_too_large"
        assert "multipart" in big.json()["message"]
        # /tasks is not held to the direct-upload limit (2 GB there)
        index_id = api.create_index("tasks")
        task = api.call(
            "POST", "/tasks", form={"index_id": index_id}, files={"video_file": ("t.mp4", b"x" * 2000)}
        )
        assert task.status_code == 200


def test_default_direct_upload_limit_is_200_mib(api: Api) -> None:
    assert api.server.config.max_direct_upload_bytes == 200 * 1024 * 1024
