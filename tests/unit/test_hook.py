"""GistHook with HTTP mocked: headers, retries, error mapping, pagination, secrets."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests

from airflow_provider_gist.client.pacing import RateLimitPacer, RateLimitPacers
from airflow_provider_gist.errors import (
    GistApiError,
    GistAuthError,
    GistConfigError,
    GistModelOutputError,
    GistNotFoundError,
    GistRateLimitedError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import GistHook
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

BASE = "https://api.twelvelabs.test"
ASSET = "6298d673f1090f1100476d4c"
GOOD = {"title": "Harbour at Dawn", "topics": ["Fishing", "Boats"], "hashtags": ["#Fishing", "#Harbour"]}


def analyze_answer(data: object = GOOD, finish_reason: str = "stop") -> dict:
    return {
        "id": "gen-1",
        "data": data if isinstance(data, str) else json.dumps(data),
        "finish_reason": finish_reason,
        "usage": {"output_tokens": 30, "input_tokens": 900},
    }


class FakeClock:
    """Time that moves only when the code under test sleeps, so retry waits cost no real time."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def fake_timed(hook: GistHook) -> GistHook:
    clock = FakeClock()
    hook._sleep = clock.sleep
    hook._clock = clock.time
    hook.pacers = RateLimitPacers(lambda: RateLimitPacer(clock=clock.time, sleep=clock.sleep))
    hook.sleeps = clock.sleeps  # type: ignore[attr-defined]
    return hook


@pytest.fixture
def hook(monkeypatch) -> GistHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(BASE, api_version="v1.3", read_timeout=5, max_attempts=4),
    )
    return fake_timed(GistHook())


def test_sends_key_header_and_never_our_extras_as_headers(hook, requests_mock):
    requests_mock.get(f"{BASE}/v1.3/indexes", json={"data": [], "page_info": {"total_page": 1}})
    hook.list_indexes()
    sent = requests_mock.last_request.headers
    assert sent["x-api-key"] == TEST_API_KEY
    for key in ("api_version", "read_timeout", "max_attempts", "Authorization"):
        assert key not in sent


def test_one_session_is_reused(hook, requests_mock):
    requests_mock.get(f"{BASE}/v1.3/indexes/ix1", json={"_id": "ix1"})
    hook.get_index("ix1")
    first = hook.session
    hook.get_index("ix1")
    assert hook.session is first


def test_429_with_retry_after_is_waited_out(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        [
            {"status_code": 429, "headers": {"Retry-After": "2"}, "text": ""},
            {"status_code": 200, "json": analyze_answer()},
        ],
    )
    gist = hook.generate_gist(asset_id=ASSET)
    assert hook.sleeps == [2.0]
    assert gist.title == "Harbour at Dawn"
    assert requests_mock.call_count == 2


def test_429_falls_back_to_ratelimit_reset(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v1.3/indexes/ix1",
        [
            {"status_code": 429, "headers": {"X-Ratelimit-Reset": str(time.time() + 5)}, "text": ""},
            {"status_code": 200, "json": {"_id": "ix1"}},
        ],
    )
    hook.get_index("ix1")
    assert 3.5 < hook.sleeps[0] <= 5.0


def test_two_500s_then_200_succeed_with_growing_backoff(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        [
            {"status_code": 500, "json": {"code": "internal_error", "message": "boom"}},
            {"status_code": 500, "json": {"code": "internal_error", "message": "boom"}},
            {"status_code": 200, "json": analyze_answer()},
        ],
    )
    assert hook.generate_gist(asset_id=ASSET, types=["title"]).title == "Harbour at Dawn"
    assert len(hook.sleeps) == 2 and hook.sleeps[1] > hook.sleeps[0] * 1.2


def test_401_is_not_retried_and_says_the_key_is_invalid(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        status_code=401,
        json={"code": "api_key_invalid", "message": "The API key is invalid."},
    )
    with pytest.raises(GistAuthError) as err:
        hook.generate_gist(asset_id=ASSET)
    assert requests_mock.call_count == 1
    assert err.value.status == 401 and err.value.code == "api_key_invalid"
    assert "API key is invalid" in str(err.value) and TEST_API_KEY not in str(err.value)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, {"code": "parameter_invalid", "message": "bad"}, GistApiError, "parameter_invalid"),
        (
            404,
            {"code": "resource_not_exist", "message": "no such asset"},
            GistNotFoundError,
            "resource_not_exist",
        ),
        (
            400,
            {"code": "resource_not_exist", "message": "no such index"},
            GistNotFoundError,
            "resource_not_exist",
        ),
        (404, {"error": {"code": "not_found", "message": "nested shape"}}, GistNotFoundError, "not_found"),
        (
            422,
            {"code": "parameter_invalid", "message": "maxItems is not supported"},
            GistApiError,
            "parameter_invalid",
        ),
    ],
)
def test_error_bodies_of_both_shapes_become_typed_errors(hook, requests_mock, status, body, cls, code):
    requests_mock.get(f"{BASE}/v1.3/assets/{ASSET}", status_code=status, json=body)
    with pytest.raises(cls) as err:
        hook.get_asset(ASSET)
    assert err.value.status == status and err.value.code == code
    assert body.get("message", body.get("error", {}).get("message")) in str(err.value)
    assert requests_mock.call_count == 1


def test_html_error_page_and_exhausted_5xx(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v1.3/assets/{ASSET}", status_code=502, text="<html><body>Bad gateway</body></html>"
    )
    with pytest.raises(GistTransientError, match="HTML page") as err:
        hook.get_asset(ASSET)
    assert requests_mock.call_count == 4  # max_attempts from the connection
    assert err.value.status == 502


def test_exhausted_429_is_rate_limited_error_with_hint(hook, requests_mock):
    requests_mock.get(f"{BASE}/v1.3/indexes/ix1", status_code=429, headers={"Retry-After": "1"}, text="")
    with pytest.raises(GistRateLimitedError) as err:
        hook.get_index("ix1")
    assert err.value.retry_after == 1.0 and requests_mock.call_count == 4


def test_long_retry_after_is_not_waited_in_process(hook, requests_mock):
    requests_mock.get(f"{BASE}/v1.3/indexes/ix1", status_code=429, headers={"Retry-After": "3600"}, text="")
    with pytest.raises(GistRateLimitedError):
        hook.get_index("ix1")
    assert requests_mock.call_count == 1 and hook.sleeps == []


def test_creating_post_is_not_retried_after_500_or_read_timeout(hook, requests_mock):
    requests_mock.post(f"{BASE}/v1.3/assets", status_code=500, json={"code": "x", "message": "y"})
    with pytest.raises(GistTransientError):
        hook.create_asset_from_url("https://cdn.example.com/a.mp4")
    assert requests_mock.call_count == 1
    requests_mock.post(f"{BASE}/v1.3/assets", exc=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(GistTransientError, match="may have been processed"):
        hook.create_asset_from_url("https://cdn.example.com/a.mp4")


def test_creating_post_is_retried_after_429_and_connect_timeout_only(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v1.3/assets",
        [
            {"exc": requests.exceptions.ConnectTimeout("no route")},
            {"status_code": 429, "json": {"code": "too_many_requests", "message": "later"}},
            {"status_code": 201, "json": {"_id": ASSET, "status": "processing"}},
        ],
    )
    assert hook.create_asset_from_url("https://cdn.example.com/a.mp4")["_id"] == ASSET
    assert requests_mock.call_count == 3


def test_creating_post_is_not_resent_after_a_503(hook, requests_mock):
    """A gateway answers 503 while the API may still be creating: resending could upload twice."""
    requests_mock.post(
        f"{BASE}/v1.3/assets", status_code=503, json={"code": "unavailable", "message": "later"}
    )
    with pytest.raises(GistTransientError, match="HTTP 503"):
        hook.create_asset_from_url("https://cdn.example.com/a.mp4")
    assert requests_mock.call_count == 1


def test_deadline_bounds_the_whole_call(monkeypatch, requests_mock):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=10, retry_deadline=5)
    )
    hook = fake_timed(GistHook())
    slept = hook.sleeps  # type: ignore[attr-defined]
    requests_mock.get(f"{BASE}/v1.3/indexes/ix1", status_code=429, headers={"Retry-After": "2"}, text="")
    with pytest.raises(GistRateLimitedError):
        hook.get_index("ix1")
    assert sum(slept) <= 5  # never plans past the deadline


def test_length_is_retried_once_with_more_tokens_then_a_clear_error(hook, requests_mock):
    requests_mock.post(f"{BASE}/v1.3/analyze", json=analyze_answer('{"title": "Harb', "length"))
    with pytest.raises(GistModelOutputError, match="cut off at max_tokens") as err:
        hook.generate_gist(asset_id=ASSET, max_tokens=300)
    assert err.value.finish_reason == "length"
    sent = [r.json()["max_tokens"] for r in requests_mock.request_history]
    assert sent == [300, 600]


def test_length_then_complete_answer_succeeds(hook, requests_mock):
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        [
            {"json": analyze_answer('{"title": "Harb', "length")},
            {"json": analyze_answer()},
        ],
    )
    assert hook.generate_gist(asset_id=ASSET).hashtags == ("Fishing", "Harbour")


def test_analyze_request_shape(hook, requests_mock):
    requests_mock.post(f"{BASE}/v1.3/analyze", json=analyze_answer({"hashtags": ["#a"]}))
    hook.generate_gist(asset_id=ASSET, types=["hashtag"], model_name="pegasus1.5", max_tokens=600)
    body = requests_mock.last_request.json()
    assert body["stream"] is False
    assert body["video"] == {"type": "asset_id", "asset_id": ASSET}
    assert "video_id" not in body
    assert body["model_name"] == "pegasus1.5"
    assert body["response_format"]["type"] == "json_schema"
    assert list(body["response_format"]["json_schema"]["properties"]) == ["hashtags"]


def test_legacy_video_id_uses_video_id_field(hook, requests_mock):
    requests_mock.post(f"{BASE}/v1.3/analyze", json=analyze_answer())
    gist = hook.generate_gist(video_id=ASSET)
    assert requests_mock.last_request.json()["video_id"] == ASSET
    assert gist.video_ref_type == "video_id"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "neither"),
        ({"asset_id": ASSET, "video_id": ASSET}, "both"),
        ({"asset_id": "../x"}, "asset_id"),
        ({"asset_id": ASSET, "types": ["titel"]}, "types"),
        ({"asset_id": ASSET, "types": []}, "types"),
        ({"video_id": ASSET, "model_name": "pegasus1.5"}, "model_name"),
        ({"asset_id": ASSET, "max_tokens": 1}, "max_tokens"),
    ],
)
def test_bad_input_fails_before_any_http_call(hook, requests_mock, kwargs, needle):
    with pytest.raises(GistValidationError, match=needle):
        hook.generate_gist(**kwargs)
    assert requests_mock.call_count == 0


def test_missing_connection_and_missing_key(monkeypatch, requests_mock):
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    with pytest.raises(GistConfigError, match="connection 'nope' is not defined"):
        GistHook(twelvelabs_conn_id="nope").get_index("ix1")
    monkeypatch.setenv("AIRFLOW_CONN_NOKEY", json.dumps({"conn_type": "twelvelabs", "host": BASE}))
    with pytest.raises(GistConfigError, match="no API key"):
        GistHook(twelvelabs_conn_id="nokey").get_index("ix1")
    assert requests_mock.call_count == 0


def test_default_host_and_bare_host_use_https(monkeypatch, requests_mock):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", json.dumps({"conn_type": "twelvelabs", "password": "k"})
    )
    assert GistHook().url_for("indexes") == "https://api.twelvelabs.io/v1.3/indexes"
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        json.dumps({"conn_type": "twelvelabs", "host": "api.twelvelabs.io", "password": "k"}),
    )
    assert GistHook().url_for("indexes") == "https://api.twelvelabs.io/v1.3/indexes"


def test_pagination_follows_total_page_and_stops_on_empty(hook, requests_mock):
    pages = {1: ["a", "b"], 2: ["c"], 3: []}
    requests_mock.get(
        f"{BASE}/v1.3/indexes/ix1/indexed-assets",
        [
            {"json": {"data": [{"_id": i} for i in pages[p]], "page_info": {"page": p, "total_page": 2}}}
            for p in (1, 2)
        ],
    )
    ids = [x["_id"] for x in hook.list_indexed_assets("ix1", status=["ready"], user_metadata={"k": "v"})]
    assert ids == ["a", "b", "c"]
    qs = requests_mock.request_history[0].qs
    assert qs["status"] == ["ready"] and qs["page_limit"] == ["50"] and qs["user_metadata[k]"] == ["v"]


def test_test_connection_reports_wrong_key(hook, requests_mock):
    requests_mock.get(
        f"{BASE}/v1.3/indexes", status_code=401, json={"code": "api_key_invalid", "message": "bad"}
    )
    ok, message = hook.test_connection()
    assert not ok and "API key" in message and TEST_API_KEY not in message
    requests_mock.get(f"{BASE}/v1.3/indexes", json={"data": [], "page_info": {}})
    assert hook.test_connection()[0] is True
    assert requests_mock.last_request.qs["page_limit"] == ["1"]


def test_key_never_in_logs_reprs_or_errors(hook, requests_mock, caplog):
    caplog.set_level(logging.DEBUG)
    requests_mock.post(
        f"{BASE}/v1.3/analyze",
        [
            {"status_code": 503, "text": ""},
            {"status_code": 401, "json": {"code": "api_key_invalid", "message": "bad key"}},
        ],
    )
    with pytest.raises(GistAuthError) as err:
        hook.generate_gist(asset_id=ASSET)
    texts = [
        caplog.text,
        repr(hook),
        str(err.value),
        repr(err.value),
        json.dumps(err.value.__reduce__()[1][1:]),
    ]
    assert all(TEST_API_KEY not in t for t in texts)


def test_deterministic_errors_are_not_retried_by_airflow():
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_gist.errors import GistConfigError

    assert issubclass(GistValidationError, AirflowFailException)
    assert issubclass(GistConfigError, AirflowFailException)
    assert issubclass(GistAuthError, AirflowFailException)
    assert not issubclass(GistTransientError, AirflowFailException)
    assert not issubclass(GistRateLimitedError, AirflowFailException)


def test_a_5xx_backs_off_instead_of_waiting_for_the_rate_window(hook, requests_mock):
    window_end = str(time.time() + 50)
    requests_mock.get(
        f"{BASE}/v1.3/indexes/ix1",
        [
            {"status_code": 503, "headers": {"X-Ratelimit-Reset": window_end}, "text": ""},
            {"status_code": 200, "json": {"_id": "ix1"}},
        ],
    )
    hook.get_index("ix1")
    assert hook.sleeps[0] <= 1.0  # first backoff step, not the 50 s to the window's end
