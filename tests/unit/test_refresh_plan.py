"""The pure refresh planner and summary: which videos need a gist, and what a run reports."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gist.errors import (
    GistApiError,
    GistModelOutputError,
    GistNotFoundError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.model import ALL_TYPES, PROMPT_VERSION, GistType
from airflow_provider_gist.refresh.plan import (
    MAX_LISTED_FAILURES,
    CatalogVideo,
    RefreshSummary,
    VideoFailure,
    failure_kind,
    plan_refresh,
    regeneration_reason,
    video_from_listing,
)

T0 = "2026-11-20T10:00:00.000Z"
T1 = "2026-11-21T10:00:00.000Z"
MODEL = "pegasus1.2"


def stored(**overrides):
    fp = {
        "source_updated_at": T0,
        "types": ["title", "topic", "hashtag"],
        "model": MODEL,
        "prompt_version": PROMPT_VERSION,
    }
    fp.update(overrides)
    return fp


def reason(video, fp, types=ALL_TYPES, model=MODEL, prompt_version=PROMPT_VERSION):
    return regeneration_reason(video, fp, types=types, model=model, prompt_version=prompt_version)


VIDEO = CatalogVideo("asset0001", "asset_id", T0)


def test_unchanged_video_is_skipped():
    assert reason(VIDEO, stored()) is None
    # Same instant written differently (offset instead of Z) is still the same time.
    assert reason(CatalogVideo("asset0001", "asset_id", "2026-11-20T10:00:00+00:00"), stored()) is None
    # Stored types in another order are the same set.
    assert reason(VIDEO, stored(types=["hashtag", "title", "topic"])) is None


@pytest.mark.parametrize(
    ("video", "fp", "kwargs", "expected"),
    [
        (VIDEO, None, {}, "new"),
        (CatalogVideo("asset0001", "asset_id", T1), stored(), {}, "source_changed"),
        (VIDEO, stored(source_updated_at=None), {}, "source_changed"),
        (CatalogVideo("asset0001", "asset_id", "yesterday"), stored(), {}, "source_changed"),
        (VIDEO, stored(types=["title"]), {}, "types_changed"),
        (VIDEO, stored(), {"types": (GistType.TITLE,)}, "types_changed"),
        (VIDEO, stored(types=["bogus"]), {}, "types_changed"),
        (VIDEO, stored(model="pegasus1.5"), {}, "model_changed"),
        (VIDEO, stored(), {"prompt_version": "gist-v2"}, "prompt_changed"),
    ],
)
def test_each_reason_to_regenerate(video, fp, kwargs, expected):
    assert reason(video, fp, **kwargs) == expected


def test_older_listing_time_does_not_regenerate():
    # A clock going backwards (or a restored backup) is not a reason to pay for a new gist.
    assert reason(CatalogVideo("asset0001", "asset_id", "2026-11-01T00:00:00Z"), stored()) is None


def test_video_without_updated_at_is_judged_by_the_rest():
    video = CatalogVideo("asset0001", "asset_id", None)
    assert reason(video, stored()) is None
    assert reason(video, stored(model="pegasus1.5")) == "model_changed"


def test_listing_items_prefer_asset_id():
    assert video_from_listing({"_id": "vid1", "asset_id": "asset1", "updated_at": T0}) == CatalogVideo(
        "asset1", "asset_id", T0
    )
    assert video_from_listing({"_id": "vid1", "updated_at": ""}) == CatalogVideo("vid1", "video_id", None)
    assert video_from_listing({"status": "ready"}) is None


def _plan(videos, fps, **kwargs):
    return plan_refresh(videos, fps, types=ALL_TYPES, model=MODEL, prompt_version=PROMPT_VERSION, **kwargs)


def test_plan_counts_orders_and_caps():
    videos = [
        CatalogVideo("a1", "asset_id", T1),  # stored earlier: source changed
        CatalogVideo("a2", "asset_id", T0),  # new
        CatalogVideo("a3", "asset_id", T0),  # unchanged
        CatalogVideo("a4", "asset_id", T0),  # new
        CatalogVideo("a3", "asset_id", T0),  # listed twice: counted once
    ]
    fps = {"a1": stored(), "a3": stored(), "gone": stored()}
    plan = _plan(videos, fps)
    assert plan.listed == 4
    assert plan.skipped == 1
    assert [(p.video.video_ref, p.reason) for p in plan.todo] == [
        ("a2", "new"),
        ("a4", "new"),
        ("a1", "source_changed"),
    ]
    assert plan.reasons == {"new": 2, "source_changed": 1}
    assert plan.deferred == 0

    capped = _plan(videos, fps, max_videos=2)
    assert [p.video.video_ref for p in capped.todo] == ["a2", "a4"]  # new ones first
    assert capped.deferred == 1
    assert _plan(videos, fps, max_videos=0).todo == ()


def test_unchanged_catalog_plans_nothing():
    videos = [CatalogVideo(f"a{i}", "asset_id", T0) for i in range(100)]
    plan = _plan(videos, {v.video_ref: stored() for v in videos})
    assert plan.todo == ()
    assert plan.skipped == 100


def test_negative_cap_is_refused():
    with pytest.raises(GistValidationError, match="max_videos"):
        _plan([], {}, max_videos=-1)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (GistNotFoundError("gone", status=404, code="resource_not_exist"), "not_found"),
        (GistApiError("not ready", status=400, code="video_not_ready"), "not_ready"),
        (GistApiError("too long", status=400, code="token_limit_exceeded"), "http_400_token_limit_exceeded"),
        (GistModelOutputError("bad json"), "model_output"),
        (GistTransientError("503", status=503), "transient"),
        (RuntimeError("boom"), "error"),
    ],
)
def test_failure_kinds(err, kind):
    assert failure_kind(err) == kind


def test_summary_is_small_json_and_caps_failures():
    summary = RefreshSummary(index_id="idx1", listed=1000, skipped=900, planned=100, generated=70, stored=70)
    summary.failures = [
        VideoFailure.from_error(f"a{i}", GistNotFoundError("x" * 1000, status=404)) for i in range(30)
    ]
    out = summary.to_dict()
    text = json.dumps(out)
    assert len(text) < 12_000  # small however many videos fail
    assert out["failed"] == 30
    assert len(out["failures"]) == MAX_LISTED_FAILURES
    assert out["failures_truncated"] == 30 - MAX_LISTED_FAILURES
    assert out["failure_kinds"] == {"not_found": 30}
    assert all(len(f["reason"]) <= 300 for f in out["failures"])
    assert set(out) >= {"listed", "skipped", "generated", "failed", "output_tokens", "deferred", "stored"}
    assert any("more failure" in line for line in summary.log_lines())
