from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.emulator import Api, running_api

pytestmark = pytest.mark.integration

PROMPT = "Title, topics, hashtags."
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "topics": {"type": "array", "items": {"type": "string"}},
        "hashtags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "topics", "hashtags"],
}


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    yield from running_api(seed=7)


@pytest.fixture(autouse=True)
def _clean(api: Api) -> None:
    api.control("POST", "/reset")


def _faults(api: Api, *rules: dict[str, Any]) -> None:
    api.control("POST", "/faults", {"rules": list(rules), "mode": "replace"})


def _analyze_body(api: Api, **extra: Any) -> dict[str, Any]:
    asset_id = api.seed("faults", 1, filenames=["sunrise_harbour_fishing.mp4"])["videos"][0]["asset_id"]
    return {
        "video": {"type": "asset_id", "asset_id": asset_id},
        "prompt": PROMPT,
        "stream": False,
        "response_format": {"type": "json_schema", "json_schema": SCHEMA},
        **extra,
    }


# rate limiting --------------------------------------------------------------------------------
def test_analyze_rate_limit_429_has_headers_and_empty_body(api: Api) -> None:
    api.control("POST", "/rate-limits", {"groups": {"analyze": 2}, "window": 30, "retry_after": True})
    body = _analyze_body(api)
    ok = [api.post("/analyze", body) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    assert ok[0].headers["X-Ratelimit-Limit"] == "2"
    assert ok[0].headers["X-Ratelimit-Remaining"] == "1"
    assert ok[1].headers["X-Ratelimit-Remaining"] == "0"
    limited = api.post("/analyze", body)
    assert limited.status_code == 429
    assert limited.content == b""
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert limited.headers["X-Ratelimit-Used"] == "2"
    reset = limited.headers["X-Ratelimit-Reset"]
    assert reset.isdigit()  # whole UTC epoch seconds, as the docs describe it
    assert int(reset) > time.time()
    # Rejected requests do not consume budget: the next window starts fresh.
    api.advance(30)
    again = api.post("/analyze", body)
    assert again.status_code == 200
    assert again.headers["X-Ratelimit-Remaining"] == "1"
    assert api.control("GET", "/stats")["total_429"] == 1


def test_other_groups_get_a_json_429_and_do_not_share_counters(api: Api) -> None:
    api.control("POST", "/rate-limits", {"groups": {"upload": 1, "analyze": 100}, "window": 60})
    first = api.call("POST", "/assets", form={"method": "url", "url": "https://x.invalid/a.mp4"})
    second = api.call("POST", "/assets", form={"method": "url", "url": "https://x.invalid/b.mp4"})
    assert (first.status_code, second.status_code) == (201, 429)
    assert second.json()["code"] == "too_many_requests"
    assert "Retry-After" not in second.headers  # undocumented, so off unless switched on
    assert second.headers["X-Ratelimit-Remaining"] == "0"
    # the read group is unlimited and carries no rate-limit headers
    listing = api.get("/indexes")
    assert listing.status_code == 200
    assert "X-Ratelimit-Limit" not in listing.headers


def test_rate_limit_from_start_config() -> None:
    for api in running_api(rate_limits={"index": (1, 60.0)}):
        index_id = api.create_index("limits")
        form = {"index_id": index_id, "video_url": "https://x.invalid/a.mp4"}
        assert api.call("POST", "/tasks", form=form).status_code == 200
        assert api.call("POST", "/tasks", form=form).status_code == 429


# faults ----------------------------------------------------------------------------------------
def test_status_fault_applies_to_the_next_n_requests_only(api: Api) -> None:
    _faults(api, {"op": "list_indexes", "kind": "status", "status": 503, "count": 2, "retry_after": 3})
    statuses = [api.get("/indexes") for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "3"
    assert statuses[0].json()["code"] == "service_unavailable"
    assert api.get("/tasks").status_code == 200  # other operations untouched


def test_status_fault_with_empty_or_custom_body(api: Api) -> None:
    _faults(
        api,
        {"op": "GET /indexes", "kind": "status", "status": 429, "count": 1, "empty_body": True},
        {"op": "GET /indexes", "kind": "status", "status": 400, "count": 1, "code": "token_limit_exceeded"},
    )
    empty = api.get("/indexes", raw=True)  # a deliberate fault: /indexes never sends an empty 429
    assert (empty.status_code, empty.content) == (429, b"")
    custom = api.get("/indexes")
    assert (custom.status_code, custom.json()["code"]) == (400, "token_limit_exceeded")


def test_html_fault_looks_like_a_proxy_page(api: Api) -> None:
    _faults(api, {"op": "*", "kind": "html", "status": 502, "count": 1})
    response = api.get("/indexes", raw=True)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_reset_fault_drops_the_connection(api: Api) -> None:
    _faults(api, {"op": "get_index", "kind": "reset", "count": 1})
    index_id = api.create_index("reset")
    with pytest.raises(requests.ConnectionError):
        api.get(f"/indexes/{index_id}")
    assert api.get(f"/indexes/{index_id}").status_code == 200


def test_slow_fault_delays_headers(api: Api) -> None:
    _faults(api, {"op": "list_indexes", "kind": "slow", "delay": 0.4, "count": 1})
    with pytest.raises(requests.ReadTimeout):
        api.get("/indexes", timeout=0.15)
    started = time.perf_counter()
    assert api.get("/indexes").status_code == 200
    assert time.perf_counter() - started < 0.3


def test_slow_body_fault_stalls_after_headers(api: Api) -> None:
    _faults(api, {"op": "list_indexes", "kind": "slow_body", "delay": 0.4, "count": 1})
    api.create_index("body")
    started = time.perf_counter()
    response = api.get("/indexes", stream=True, raw=True)
    header_time = time.perf_counter() - started
    assert response.status_code == 200
    assert header_time < 0.3
    body = response.content
    assert time.perf_counter() - started >= 0.4
    assert json.loads(body)["data"][0]["index_name"] == "body"


def test_malformed_json_fault_truncates_but_runs_the_handler(api: Api) -> None:
    _faults(api, {"op": "create_index", "kind": "malformed_json", "count": 1})
    response = api.post(
        "/indexes", {"index_name": "half", "models": [{"model_name": "pegasus1.2"}]}, spec=False, raw=True
    )
    assert response.status_code == 201
    with pytest.raises(requests.JSONDecodeError):
        response.json()
    listed = api.get("/indexes", params={"index_name": "half"}).json()
    assert listed["page_info"]["total_results"] == 1  # the side effect happened


@pytest.mark.parametrize("variant", ["not_json", "missing_keys", "wrong_types", "length"])
def test_model_output_faults(api: Api, variant: str) -> None:
    body = _analyze_body(api)
    _faults(api, {"op": "analyze", "kind": "model_output", "variant": variant, "count": 1})
    spoiled = api.post("/analyze", body).json()
    clean = api.post("/analyze", body).json()
    assert json.loads(clean["data"])["title"] == "Sunrise Harbour Fishing"
    if variant == "not_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(spoiled["data"])
    elif variant == "missing_keys":
        assert set(json.loads(spoiled["data"])) == {"title", "topics"}
    elif variant == "wrong_types":
        data = json.loads(spoiled["data"])
        assert isinstance(data["title"], list)
        assert isinstance(data["topics"], str)
    else:
        assert spoiled["finish_reason"] == "length"
        assert spoiled["error"]["message"]
        assert clean["data"].startswith(spoiled["data"])
        with pytest.raises(json.JSONDecodeError):
            json.loads(spoiled["data"])


def test_model_output_length_also_in_stream(api: Api) -> None:
    body = _analyze_body(api, stream=True)
    _faults(api, {"op": "analyze", "kind": "model_output", "variant": "length", "count": 1})
    lines = [json.loads(x) for x in api.post("/analyze", body).text.splitlines() if x.strip()]
    assert lines[-1]["finish_reason"] == "length"
    assert lines[-1]["error"]["message"]


def test_key_revoked_fault_and_key_control(api: Api) -> None:
    _faults(api, {"op": "get_task", "kind": "key_revoked", "count": 1})
    assert api.get("/tasks/" + "a" * 24).status_code == 401
    assert api.get("/indexes").status_code == 401  # from now on, everywhere
    assert api.control("POST", "/keys", {"api_key": "tlk_rotated"}) == {"key_active": True}
    assert api.get("/indexes", key="tlk_rotated").status_code == 200
    assert api.get("/indexes").status_code == 401
    api.control("POST", "/keys", {"revoke": True})
    assert api.get("/indexes", key="tlk_rotated").status_code == 401


def test_rate_faults_are_seeded_and_reproducible(api: Api) -> None:
    def run() -> list[int]:
        api.control("POST", "/reset")
        _faults(api, {"op": "list_indexes", "kind": "status", "status": 500, "rate": 0.5})
        return [api.get("/indexes").status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 500 in first
    assert 200 in first


def test_error_rate_and_latency_from_config() -> None:
    for api in running_api(error_rate=1.0, latency=0.05):
        started = time.perf_counter()
        statuses = {api.get("/indexes", raw=True).status_code for _ in range(10)}
        assert statuses <= {500, 502, 503}
        assert len(statuses) > 1
        assert time.perf_counter() - started >= 0.5
        assert api.control("GET", "/health")["status"] == "ok"  # control API is never faulted


def test_faults_from_start_config_and_listing() -> None:
    rules = [{"op": "create_asset", "kind": "status", "status": 500, "count": 1}]
    for api in running_api(faults=rules):
        listed = api.control("GET", "/faults")["rules"]
        assert listed[0]["op"] == "POST /assets"
        form = {"method": "url", "url": "https://x.invalid/a.mp4"}
        assert api.call("POST", "/assets", form=form).status_code == 500
        assert api.call("POST", "/assets", form=form).status_code == 201


def test_invalid_fault_rules_are_rejected(api: Api) -> None:
    response = requests.post(
        f"{api.server.url}/_emulator/faults", json={"op": "*", "kind": "explode"}, timeout=5
    )
    assert response.status_code == 400
    assert "kind" in response.json()["error"]


def test_retry_after_is_off_by_default_and_switchable(api: Api) -> None:
    api.control("POST", "/rate-limits", {"groups": {"upload": 1}, "window": 60})
    form = {"method": "url", "url": "https://x.invalid/a.mp4"}
    assert api.call("POST", "/assets", form=form).status_code == 201
    plain = api.call("POST", "/assets", form=form)
    assert plain.status_code == 429
    assert "Retry-After" not in plain.headers
    assert int(plain.headers["X-Ratelimit-Reset"]) >= time.time()
    # Switching Retry-After on keeps the limits and their window.
    assert api.control("POST", "/rate-limits", {"retry_after": True})["groups"]["upload"]["limit"] == 1
    with_header = api.call("POST", "/assets", form=form)
    assert with_header.status_code == 429
    assert 1 <= int(with_header.headers["Retry-After"]) <= 60
    assert api.control("POST", "/rate-limits", {"retry_after": False})["retry_after"] is False
    assert "Retry-After" not in api.call("POST", "/assets", form=form).headers


def test_retry_after_from_start_config() -> None:
    for api in running_api(rate_limits={"analyze": (0, 60.0)}, retry_after=True):
        asset_id = api.ready_asset("limited.mp4")
        body = {"video": {"type": "asset_id", "asset_id": asset_id}, "prompt": "p", "stream": False}
        limited = api.post("/analyze", body)
        assert (limited.status_code, limited.content) == (429, b"")
        assert limited.headers["Retry-After"].isdigit()


def test_rate_limit_headers_only_on_documented_rate_limited_endpoints(api: Api) -> None:
    api.control("POST", "/rate-limits", {"groups": {"read": 1, "index": 5}, "window": 60})
    index_id = api.create_index("documented")  # POST /indexes is in the emulator's "read" group
    assert api.get("/indexes").status_code == 429
    statuses = api.control("GET", "/stats")["statuses"]
    assert statuses["GET /indexes"] == {"429": 1}
    api.control("POST", "/rate-limits", {"groups": {"read": 100, "index": 5}, "window": 60})
    assert "X-Ratelimit-Limit" not in api.get("/indexes").headers
    task = api.call("POST", "/tasks", form={"index_id": index_id, "video_url": "https://x.invalid/t.mp4"})
    assert task.headers["X-Ratelimit-Limit"] == "5"
    assert task.headers["X-Ratelimit-Used"] == "1"
    assert task.headers["X-Ratelimit-Reset"].isdigit()
