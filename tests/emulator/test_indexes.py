from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api()


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_401_api_key_invalid(api: Api, key: str | None) -> None:
    response = api.get("/indexes", key=key)
    assert response.status_code == 401
    assert response.json()["code"] == "api_key_invalid"
    assert response.headers["X-Api-Version"] == "1.3"


def test_v12_is_an_alias_of_v13(api: Api) -> None:
    index_id = api.create_index("alias")
    response = api.get(f"/indexes/{index_id}", version="v1.2")
    assert response.status_code == 200
    assert response.json()["index_name"] == "alias"


def test_create_and_get_index(api: Api) -> None:
    index_id = api.create_index("catalog")
    body = api.get(f"/indexes/{index_id}").json()
    assert body["_id"] == index_id
    assert body["models"] == [{"model_name": "marengo3.0", "model_options": ["visual", "audio"]}]
    assert body["video_count"] == 0


def test_duplicate_index_name_is_rejected(api: Api) -> None:
    api.create_index("dup")
    response = api.post(
        "/indexes",
        {"index_name": "dup", "models": [{"model_name": "marengo3.0", "model_options": ["visual"]}]},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "index_name_already_exists"


@pytest.mark.parametrize(
    ("model", "status"), [("pegasus1.2", 201), ("marengo3.0", 201), ("pegasus1.5", 400), ("marengo2.7", 400)]
)
def test_index_models(api: Api, model: str, status: int) -> None:
    response = api.post(
        "/indexes",
        {"index_name": f"m-{model}", "models": [{"model_name": model, "model_options": ["visual"]}]},
    )
    assert response.status_code == status
    if status == 400:
        assert response.json()["code"] == "parameter_invalid"


def test_missing_models_is_parameter_not_provided(api: Api) -> None:
    response = api.post("/indexes", {"index_name": "x"}, spec=False)
    assert response.status_code == 400
    assert response.json()["code"] == "parameter_not_provided"


def test_malformed_json_is_parameter_invalid(api: Api) -> None:
    response = api.session.post(
        f"{api.server.url}/v1.3/indexes",
        data=b'{"index_name": ',
        headers={"x-api-key": api.key, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parameter_invalid"


def test_list_pagination_and_page_past_the_end(api: Api) -> None:
    ids = [api.create_index(f"idx-{i:02d}") for i in range(12)]
    first = api.get("/indexes", params={"page_limit": 5}).json()
    assert first["page_info"] == {"limit_per_page": 5, "page": 1, "total_page": 3, "total_results": 12}
    assert [i["_id"] for i in first["data"]] == ids[::-1][:5]  # newest first by default
    last = api.get("/indexes", params={"page": 3, "page_limit": 5}).json()
    assert len(last["data"]) == 2
    past = api.get("/indexes", params={"page": 4, "page_limit": 5})
    assert past.status_code == 200
    assert past.json() == {
        "data": [],
        "page_info": {"limit_per_page": 5, "page": 4, "total_page": 3, "total_results": 12},
    }
    oldest = api.get("/indexes", params={"sort_option": "asc", "page_limit": 1}).json()
    assert oldest["data"][0]["_id"] == ids[0]


@pytest.mark.parametrize(
    "params", [{"page_limit": 51}, {"page_limit": 0}, {"page": 0}, {"sort_option": "up"}]
)
def test_bad_pagination_is_400(api: Api, params: dict[str, int | str]) -> None:
    response = api.get("/indexes", params=params, spec=False)
    assert response.status_code == 400
    assert response.json()["code"] == "parameter_invalid"


def test_unknown_query_parameter_is_rejected(api: Api) -> None:
    response = api.get("/indexes", params={"limit": 5}, spec=False)
    assert response.status_code == 400
    assert response.json()["code"] == "parameter_unknown"


def test_filter_by_index_name(api: Api) -> None:
    api.create_index("alpha")
    wanted = api.create_index("beta")
    body = api.get("/indexes", params={"index_name": "beta"}).json()
    assert [i["_id"] for i in body["data"]] == [wanted]


def test_unknown_index_is_400_resource_not_exist(api: Api) -> None:
    response = api.get("/indexes/000000000000000000000000")
    assert response.status_code == 400
    assert response.json()["code"] == "resource_not_exist"


def test_delete_index_then_it_is_gone(api: Api) -> None:
    index_id = api.create_index("short-lived")
    response = api.call("DELETE", f"/indexes/{index_id}")
    assert response.status_code == 200
    assert response.content == b""
    assert api.get(f"/indexes/{index_id}").status_code == 400


def test_unknown_route_is_404_flat_error(api: Api) -> None:
    response = api.get("/no-such-thing", raw=True)
    assert response.status_code == 404
    assert response.json()["code"] == "resource_not_exist"


def test_paging_a_big_index_reuses_its_listing_but_never_serves_a_stale_one(api: Api) -> None:
    """The emulator keeps one listing for its next pages (an index of 100,000 videos would take
    seconds per page otherwise); any change to the videos, or a status still moving, drops it."""
    index_id = api.seed("paged", 120)["index_id"]
    path = f"/indexes/{index_id}/indexed-assets"

    def refs(**params: object) -> list[str]:
        out: list[str] = []
        for page in (1, 2, 3):
            body = api.get(path, params={"page": page, "page_limit": 50, **params}).json()
            out += [item["_id"] for item in body["data"]]
        return out

    first = refs(sort_by="updated_at")  # the same query throughout: the same cached listing
    assert len(first) == len(set(first)) == 120
    ready = refs(sort_by="updated_at", status="ready")
    assert ready == first
    # an edit moves a video to the front of the updated_at order
    edited = first[70]
    update = api.call("PATCH", f"{path}/{edited}", json_body={"user_metadata": {"tier": "gold"}})
    assert update.status_code == 200
    assert refs(sort_by="updated_at")[0] == edited
    # a removal and an addition are seen at once
    assert api.call("DELETE", f"{path}/{first[0]}").status_code == 200
    after_delete = refs(sort_by="updated_at")
    assert first[0] not in after_delete and len(after_delete) == 119
    asset_id = api.ready_asset("late.mp4")
    added = api.post(path, {"asset_id": asset_id}).json()["_id"]
    assert added in refs(sort_by="updated_at")
    # the new video is still indexing: listed by status as it moves, never from a stale copy
    assert added not in refs(sort_by="updated_at", status="ready")
    api.advance(1)
    assert added in refs(sort_by="updated_at", status="ready")
