"""The refresh streams: bounded work in flight, planning page by page, and the plan's semantics kept.

Before, every planned video became a future up front and the loop waited on the whole pending
set each time (work growing with the square of the catalog), and the whole listing and every
stored fingerprint were held in memory. These tests pin the bounds, and check against
:func:`plan_refresh` (the whole-catalog plan) that streaming chooses the same videos in the same
order: new ones first, ``max_videos`` respected, duplicates counted once.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from airflow_provider_gist.model import ALL_TYPES, PROMPT_VERSION
from airflow_provider_gist.refresh import engine
from airflow_provider_gist.refresh.plan import CatalogVideo, plan_refresh
from airflow_provider_gist.refresh.stream import RecentRefs, StreamingPlan
from tests.unit.test_refresh_engine import T0, FakeHook, FakeStore

MODEL = "pegasus1.2"
LATER = "2026-11-21T10:00:00.000Z"


def fingerprint(**changes: Any) -> dict[str, Any]:
    return {
        "source_updated_at": T0,
        "types": ["title", "topic", "hashtag"],
        "model": MODEL,
        "prompt_version": PROMPT_VERSION,
        **changes,
    }


STALE = {
    "source_changed": {"source_updated_at": "2026-11-19T10:00:00.000Z"},
    "types_changed": {"types": ["title"]},
    "model_changed": {"model": "pegasus1.5"},
    "prompt_changed": {"prompt_version": "custom-1"},
}


def catalog(n: int, seed: int) -> tuple[list[CatalogVideo], dict[str, dict[str, Any]]]:
    """``n`` listed videos (a few listed twice, on neighbouring pages) and a store that has some of
    them current, some stale for every reason, and none of the rest."""
    rng = random.Random(seed)
    videos = [CatalogVideo(f"a{i:05d}", "asset_id", T0) for i in range(n)]
    for _ in range(n // 20):  # a listing that shifted while it was read
        at = rng.randrange(1, n)
        videos.insert(min(n, at + rng.randrange(1, 60)), videos[at])
    stored: dict[str, dict[str, Any]] = {}
    for video in videos:
        kind = rng.choice(["new", "new", "current", "current", *STALE])
        if kind == "current":
            stored[video.video_ref] = fingerprint()
        elif kind in STALE:
            stored[video.video_ref] = fingerprint(**STALE[kind])
    return videos, stored


def streamed(videos: list[CatalogVideo], stored: dict[str, Any], **kwargs: Any) -> tuple[StreamingPlan, list]:
    asked: list[int] = []

    def pages():
        for start in range(0, len(videos), 50):
            yield videos[start : start + 50]

    def fingerprints(refs: list[str]) -> dict[str, Any]:
        asked.append(len(refs))
        return {ref: stored[ref] for ref in refs if ref in stored}

    plan = StreamingPlan(
        pages, fingerprints, types=ALL_TYPES, model=MODEL, prompt_version=PROMPT_VERSION, **kwargs
    )
    todo = [(item.video.video_ref, item.reason) for item in plan]
    assert asked and max(asked) <= 50  # the store is asked about one listing page at a time
    return plan, todo


@pytest.mark.parametrize("max_videos", [None, 0, 7, 150, 230, 10_000])
@pytest.mark.parametrize("seed", [1, 2])
def test_streaming_chooses_what_the_whole_catalog_plan_chooses(max_videos, seed):
    videos, stored = catalog(400, seed)
    whole = plan_refresh(
        videos, stored, types=ALL_TYPES, model=MODEL, prompt_version=PROMPT_VERSION, max_videos=max_videos
    )
    expected = [(item.video.video_ref, item.reason) for item in whole.todo]
    plan, todo = streamed(videos, stored, max_videos=max_videos)
    assert todo == expected  # same videos, same order: new first, then stale by reason
    assert (plan.listed, plan.skipped, plan.reasons, plan.planned, plan.deferred) == (
        whole.listed,
        whole.skipped,
        whole.reasons,
        len(whole.todo),
        whole.deferred,
    )
    assert not plan.second_pass

    # Too many stale videos to keep: a second pass over the listing finds them. Same choice;
    # the reasons that fit whole come in listing order.
    plan, again = streamed(videos, stored, max_videos=max_videos, stale_memory=10)
    assert sorted(again) == sorted(expected)
    new = [entry for entry in expected if entry[1] == "new"]
    assert again[: len(new)] == new
    assert (plan.planned, plan.deferred) == (len(whole.todo), whole.deferred)
    assert plan.second_pass == any(reason != "new" for _, reason in expected)


def test_recent_refs_forget_the_oldest():
    recent = RecentRefs(3)
    assert [recent.add(ref) for ref in "abcab"] == [True, True, True, False, False]
    assert recent.add("d") is True  # forgets "c", the least recently seen
    assert recent.add("c") is True  # forgets "a"
    assert recent.add("a") is True
    assert recent.add("d") is False


# ------------------------------------------------------------------------------ the engine


class CountingHook(FakeHook):
    """Records how far the listing ran ahead of the finished gists."""

    listed = 0
    finished = 0
    most_ahead = 0
    lock = threading.Lock()

    def iter_indexed_assets(self, index_id: str, *, status=None):
        for item in super().iter_indexed_assets(index_id, status=status):
            with CountingHook.lock:
                CountingHook.listed += int(item["asset_id"][1:]) % 3 != 0  # current ones are no work
                CountingHook.most_ahead = max(
                    CountingHook.most_ahead, CountingHook.listed - CountingHook.finished
                )
            yield item

    def generate_gist(self, **kw: Any) -> Any:
        gist = super().generate_gist(**kw)
        with CountingHook.lock:
            CountingHook.finished += 1
        return gist


def test_the_engine_keeps_a_bounded_queue_and_plans_page_by_page(monkeypatch):
    videos = [{"_id": f"v{i:05d}", "asset_id": f"a{i:05d}", "updated_at": T0} for i in range(3000)]
    sizes: list[int] = []
    real_wait = engine.wait

    def recording_wait(fs, *args, **kwargs):
        fs = set(fs)
        sizes.append(len(fs))
        return real_wait(fs, *args, **kwargs)

    monkeypatch.setattr(engine, "wait", recording_wait)
    CountingHook.listed = CountingHook.finished = CountingHook.most_ahead = 0
    store = FakeStore({f"a{i:05d}": fingerprint() for i in range(0, 3000, 3)})  # a third is current
    refresher = engine.GistRefresher(
        store=store, concurrency=4, hook_factory=lambda pacers: CountingHook(pacers, videos, {})
    )
    summary = refresher.run("catalog")
    assert (summary.listed, summary.skipped, summary.generated, summary.stored) == (3000, 1000, 2000, 2000)
    # each wait looks at the bounded queue (2 x concurrency), never at every planned video
    assert max(sizes) <= 2 * 4
    # the listing runs at most a page (and the queue) ahead of the work: it is not read up front
    assert CountingHook.most_ahead <= 50 + 2 * 4 + 4
    # the store was asked page by page, never for the whole index
    assert None not in store.fingerprint_reads
    assert max(len(refs or ()) for refs in store.fingerprint_reads) <= 50


def test_a_capped_run_does_new_videos_first_then_stale_ones_by_reason():
    videos = [{"_id": f"v{i:03d}", "asset_id": f"a{i:03d}", "updated_at": T0} for i in range(12)]
    stored = {
        "a000": fingerprint(**STALE["prompt_changed"]),
        "a001": fingerprint(**STALE["source_changed"]),
        "a002": fingerprint(),
        "a004": fingerprint(**STALE["model_changed"]),
        "a005": fingerprint(**STALE["source_changed"]),
    }
    calls: list[str] = []

    class Recording(FakeHook):
        def generate_gist(self, **kw: Any) -> Any:
            calls.append(kw["asset_id"])
            return super().generate_gist(**kw)

    refresher = engine.GistRefresher(
        store=FakeStore(stored),
        concurrency=1,
        max_videos=9,
        hook_factory=lambda pacers: Recording(pacers, videos, {}),
    )
    summary = refresher.run("catalog")
    new = ["a003", "a006", "a007", "a008", "a009", "a010", "a011"]
    assert calls == [*new, "a001", "a005"]  # then model_changed and prompt_changed are deferred
    assert (summary.planned, summary.deferred, summary.skipped) == (9, 2, 1)
    assert summary.reasons == {"new": 7, "source_changed": 2, "model_changed": 1, "prompt_changed": 1}


def test_a_video_listed_twice_is_generated_once():
    videos = [{"_id": f"v{i:03d}", "asset_id": f"a{i:03d}", "updated_at": T0} for i in range(80)]
    videos.insert(55, videos[48])  # shifted onto the next page while the listing was read
    hooks: list[FakeHook] = []

    def factory(pacers):
        hooks.append(FakeHook(pacers, videos, {}))
        return hooks[-1]

    summary = engine.GistRefresher(store=FakeStore(), concurrency=4, hook_factory=factory).run("catalog")
    assert sorted(ref for hook in hooks for ref in hook.calls) == [f"a{i:03d}" for i in range(80)]
    assert (summary.listed, summary.generated) == (80, 80)
