"""GistRefresher with a fake hook and store: failure isolation, early stops, batching, the operator."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_gist.client.api import TwelveLabsApi
from airflow_provider_gist.client.pacing import RateLimitPacers
from airflow_provider_gist.client.settings import ApiSettings
from airflow_provider_gist.errors import (
    GistAuthError,
    GistModelOutputError,
    GistNotFoundError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.model import ALL_TYPES, PROMPT_VERSION, Gist
from airflow_provider_gist.operators.refresh import GistRefresher, RefreshGistsOperator, _as_int

INDEX = "0123456789abcdef01234567"
T0 = "2026-11-20T10:00:00.000Z"


class FakeStore:
    def __init__(self, fingerprints: dict[str, dict[str, Any]] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.rows: dict[str, dict[str, Any]] = {}
        self._fps = fingerprints or {}
        self.fingerprint_reads: list[list[str] | None] = []

    location = "memory"

    def put_many(self, gists):
        gists = list(gists)
        self.batches.append([g["video_ref"] for g in gists])
        for g in gists:
            self.rows[g["video_ref"]] = g
        return len(gists)

    def fingerprints(self, index_id, video_refs=None):
        self.fingerprint_reads.append(None if video_refs is None else list(video_refs))
        if video_refs is None:
            return dict(self._fps)
        return {ref: self._fps[ref] for ref in video_refs if ref in self._fps}


class FakeHook:
    """Answers like GistHook; ``errors`` maps a video ref to the exception its gist raises."""

    def __init__(self, pacers: RateLimitPacers, videos: list[dict[str, Any]], errors: dict[str, Exception]):
        self.pacers = pacers
        self.videos = videos
        self.errors = errors
        self.settings = ApiSettings()
        self.session = object()
        self.calls: list[str] = []
        self.closed = False

    def url_for(self, path: str) -> str:
        return f"http://fake/v1.3/{path}"

    def get_index(self, index_id: str) -> dict[str, Any]:
        return {"_id": index_id}

    def find_index_by_name(self, name: str) -> dict[str, Any] | None:
        return {"_id": INDEX, "index_name": name} if name == "catalog" else None

    resolve_index = TwelveLabsApi.resolve_index  # the real rule, over this fake's reads

    def iter_indexed_assets(self, index_id: str, *, status=None):
        assert status == ["ready"]
        return iter(self.videos)

    def iter_videos(self, index_id: str):
        return iter(self.videos)

    def generate_gist(self, *, asset_id=None, video_id=None, index_id=None, source_updated_at=None, **kw):
        ref = asset_id or video_id
        self.calls.append(ref)
        if ref in self.errors:
            raise self.errors[ref]
        return Gist(
            id=f"gen-{ref}",
            video_ref=ref,
            video_ref_type="asset_id" if asset_id else "video_id",
            model=kw["model_name"],
            types=ALL_TYPES,
            title=f"Title {ref}",
            topics=("Topic",),
            hashtags=("Tag",),
            output_tokens=10,
            input_tokens=100,
            index_id=index_id,
            source_updated_at=source_updated_at,
            generated_at=datetime(2026, 11, 26, tzinfo=UTC),
            prompt_version=(kw.get("prompt") and "custom") or PROMPT_VERSION,
        )

    def close(self) -> None:
        self.closed = True


def make(n: int = 10, errors: dict[str, Exception] | None = None, store: FakeStore | None = None, **kwargs):
    videos = [{"_id": f"v{i:03d}", "asset_id": f"a{i:03d}", "updated_at": T0} for i in range(n)]
    hooks: list[FakeHook] = []
    lock = threading.Lock()

    def factory(pacers: RateLimitPacers) -> FakeHook:
        hook = FakeHook(pacers, videos, errors or {})
        with lock:
            hooks.append(hook)
        return hook

    kwargs.setdefault("concurrency", 4)
    refresher = GistRefresher(store=store or FakeStore(), hook_factory=factory, **kwargs)
    return refresher, hooks


def calls(hooks: list[FakeHook]) -> list[str]:
    return sorted(ref for hook in hooks for ref in hook.calls)


def test_one_videos_failure_never_fails_the_others():
    errors = {
        "a003": GistNotFoundError("asset a003 does not exist", status=404, code="resource_not_exist"),
        "a007": GistModelOutputError("model output for a007 is not valid JSON"),
    }
    store = FakeStore()
    refresher, hooks = make(10, errors, store)
    summary = refresher.run("catalog")
    assert sorted(store.rows) == [f"a{i:03d}" for i in range(10) if i not in (3, 7)]
    out = summary.to_dict()
    assert (out["generated"], out["stored"], out["failed"], out["not_attempted"]) == (8, 8, 2, 0)
    assert {f["video_ref"]: f["kind"] for f in out["failures"]} == {
        "a003": "not_found",
        "a007": "model_output",
    }
    assert out["output_tokens"] == 80
    assert out["aborted"] is None
    assert refresher.fatal_error is None
    # every gist records the index and the video's updated_at, so the next run can skip it
    assert {g["index_id"] for g in store.rows.values()} == {INDEX}
    assert {g["source_updated_at"] for g in store.rows.values()} == {T0}
    # every worker hook was closed, and all share the refresher's pacers
    assert all(h.closed for h in hooks)
    assert {id(h.pacers) for h in hooks} == {id(refresher.pacers)}


def test_unchanged_videos_cost_no_call_and_stale_ones_are_redone():
    fps = {
        f"a{i:03d}": {
            "source_updated_at": T0,
            "types": ["title", "topic", "hashtag"],
            "model": "pegasus1.2",
            "prompt_version": PROMPT_VERSION,
        }
        for i in range(10)
    }
    fps["a004"]["model"] = "pegasus1.5"
    refresher, hooks = make(10, store=FakeStore(fps))
    summary = refresher.run(INDEX)  # an id is used as is (one GET)
    assert calls(hooks) == ["a004"]
    assert (summary.skipped, summary.generated, summary.reasons) == (9, 1, {"model_changed": 1})


def test_gists_are_stored_in_batches_as_they_complete():
    store = FakeStore()
    refresher, _ = make(7, store=store, flush_size=2, concurrency=1)
    refresher.run("catalog")
    assert sum(len(b) for b in store.batches) == 7
    assert len(store.batches) >= 4  # never one big write at the end


def test_max_videos_defers_the_rest():
    store = FakeStore()
    refresher, hooks = make(10, store=store, max_videos=4)
    summary = refresher.run("catalog")
    assert len(calls(hooks)) == 4
    assert (summary.planned, summary.deferred, summary.stored) == (4, 6, 4)


def test_auth_error_stops_the_run_and_keeps_finished_work():
    store = FakeStore()
    refresher, hooks = make(10, {"a002": GistAuthError("key revoked", status=401)}, store, concurrency=1)
    summary = refresher.run("catalog")
    assert isinstance(refresher.fatal_error, GistAuthError)
    assert summary.aborted
    assert "auth" in summary.aborted
    assert sorted(store.rows) == ["a000", "a001"]  # done before the error: kept
    assert summary.not_attempted == 7
    assert calls(hooks) == ["a000", "a001", "a002"]


def test_a_run_of_transient_failures_trips_the_breaker():
    errors = {f"a{i:03d}": GistTransientError("HTTP 503", status=503) for i in range(40)}
    refresher, _hooks = make(40, errors, concurrency=1, max_consecutive_failures=5)
    summary = refresher.run("catalog")
    assert summary.failed == 5
    assert summary.not_attempted == 35
    assert "in a row" in (summary.aborted or "")
    assert refresher.fatal_error is None


def test_unknown_index_name_is_an_error():
    refresher, _ = make(1)
    with pytest.raises(GistNotFoundError, match="no index named"):
        refresher.run("nope")


def test_bad_settings_fail_before_any_call():
    with pytest.raises(GistValidationError):
        make(1, concurrency=0)
    with pytest.raises(GistValidationError):
        make(1, types=["title", "plot"])
    refresher, hooks = make(1, model_name="gpt-4")
    with pytest.raises(GistValidationError, match="model_name"):
        refresher.run("catalog")
    assert calls(hooks) == []


def test_operator_init_does_no_io_and_coerces_templated_ints():
    op = RefreshGistsOperator(task_id="refresh", index="{{ params.index }}", max_videos="{{ params.n }}")
    assert op.index == "{{ params.index }}"
    assert _as_int("25", "max_videos", minimum=0, allow_none=True) == 25
    assert _as_int("None", "max_videos", minimum=0, allow_none=True) is None
    with pytest.raises(GistValidationError):
        _as_int("many", "concurrency", minimum=1)
    with pytest.raises(GistValidationError):
        _as_int(True, "concurrency", minimum=1)
    assert {"index", "types", "max_videos", "concurrency", "twelvelabs_conn_id"} <= set(op.template_fields)
