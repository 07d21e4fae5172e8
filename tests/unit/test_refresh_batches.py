"""The batch refresh engine with a fake API and store: limits, durability, resubmits, nothing lost.

The guarantees (docs/analysis.md): create calls are ceil(N / batch_size) plus resubmits; never
more active batches than allowed (counting other clients'); a retry that lost its state adopts
its batches instead of paying twice; expired and transiently failed items are submitted again,
up to a bound; every ready result is stored once; kill cancels what was submitted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_gist.analysis import prepare_gist_request
from airflow_provider_gist.errors import GistRateLimitedError, GistValidationError
from airflow_provider_gist.refresh.batches import (
    MAX_RESUBMITS,
    BatchRefresher,
    BatchState,
    custom_id_of,
    parse_custom_id,
    run_key,
)
from airflow_provider_gist.refresh.plan import CatalogVideo

INDEX = "0123456789abcdef01234567"
GIST = json.dumps({"title": "T", "topics": ["A"], "hashtags": ["#B"]})


def asset(n: int) -> str:
    return f"a{n:023d}"


class FakeApi:
    """Indexed assets and batches in memory; each batch's items end as the test scripts them."""

    def __init__(self, videos: int) -> None:
        self.listing = [
            {"_id": f"v{n}", "asset_id": asset(n), "status": "ready", "updated_at": "2026-11-20T10:00:00Z"}
            for n in range(videos)
        ]
        self.batches: dict[str, dict[str, Any]] = {}
        self.creates: list[dict[str, Any]] = []
        self.canceled: list[str] = []
        #: batches of other clients that hold active slots
        self.foreign_active = 0
        #: item status for each asset id when its batch ends (default ready)
        self.outcome: dict[str, str] = {}
        self.refuse_creates = 0

    # the hook's methods the engine uses -----------------------------------------------------
    def iter_indexed_assets(self, index_id: str, *, status: list[str]) -> Any:
        return iter(self.listing)

    def iter_batches(self, *, status: list[str]) -> Any:
        mine = [
            {"batch_id": b, "status": v["status"]} for b, v in self.batches.items() if v["status"] in status
        ]
        return iter(
            mine + [{"batch_id": f"foreign{n}", "status": "processing"} for n in range(self.foreign_active)]
        )

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_creates:
            self.refuse_creates -= 1
            raise GistRateLimitedError("too many active batches", status=429)
        batch_id = f"b{len(self.creates) + 1:023d}"
        self.creates.append(body)
        self.batches[batch_id] = {"status": "processing", "items": [r["custom_id"] for r in body["requests"]]}
        return {"batch_id": batch_id, "status": "pending", "items": []}

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return {"batch_id": batch_id, "status": self.batches[batch_id]["status"]}

    def batch_results(self, batch_id: str) -> list[dict[str, Any]]:
        if batch_id.startswith("foreign"):
            return [{"custom_id": "someone-else", "status": "processing"}]
        batch = self.batches[batch_id]
        out = []
        for custom_id in batch["items"]:
            parsed = parse_custom_id(custom_id)
            assert parsed is not None
            status = self.outcome.get(parsed[0], "ready") if batch["status"] == "completed" else "queued"
            item: dict[str, Any] = {"task_id": "t", "custom_id": custom_id, "status": status}
            if status == "ready":
                item["data"] = {
                    "generation_id": f"g-{parsed[0]}",
                    "data": GIST,
                    "finish_reason": "stop",
                    "usage": {"output_tokens": 3},
                }
            elif status == "failed":
                item["error"] = {"code": "video_not_supported", "message": "unsupported codec"}
            out.append(item)
        return out

    def cancel_batch(self, batch_id: str) -> None:
        self.canceled.append(batch_id)

    # test helpers ------------------------------------------------------------------------------
    def finish_all(self) -> None:
        for batch in self.batches.values():
            if batch["status"] == "processing":
                batch["status"] = "completed"


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def fingerprints(self, index_id: str) -> dict[str, dict[str, Any]]:
        return {
            ref: {
                "source_updated_at": g["source_updated_at"],
                "types": g["types"],
                "model": g["model"],
                "prompt_version": g["prompt_version"],
            }
            for ref, g in self.rows.items()
        }

    def put_many(self, gists: list[dict[str, Any]]) -> int:
        for gist in gists:
            assert gist["video_ref"] not in self.rows, "stored twice"
            self.rows[gist["video_ref"]] = gist
            self.writes += 1
        return len(gists)


class Log:
    def info(self, *args: Any) -> None: ...
    def warning(self, *args: Any) -> None: ...


def template(model: str = "pegasus1.5"):
    return prepare_gist_request(asset_id="tmpl", video_id=None, types=None, model_name=model)


def refresher(api: FakeApi, store: FakeStore, saved: list[dict[str, Any]], **kw: Any) -> BatchRefresher:
    return BatchRefresher(
        hook=api,
        store=store,
        template=template(),
        log=Log(),  # type: ignore[arg-type]
        save=lambda state: saved.append(json.loads(json.dumps(state.to_json()))),
        **kw,
    )


def run_to_the_end(engine: BatchRefresher, state: BatchState, api: FakeApi, steps: int = 50) -> int:
    count = 0
    while engine.step(state) is not None:
        api.finish_all()
        count += 1
        assert count < steps
    return count


def test_custom_ids_carry_the_video_and_its_source_version():
    video = CatalogVideo(asset(7), "asset_id", "2026-11-20T10:00:00.250Z")
    parsed = parse_custom_id(custom_id_of(video, "abcd1234"))
    assert parsed == (asset(7), "2026-11-20T10:00:00.250Z", "abcd1234")
    assert len(custom_id_of(video, "abcd1234")) <= 64
    assert parse_custom_id("not-ours") is None and parse_custom_id(None) is None


def test_a_catalog_goes_in_ceil_n_over_size_batches_within_the_active_limit():
    api, store, saved = FakeApi(2500), FakeStore(), []
    engine = refresher(api, store, saved, max_active_batches=2, batch_size=1000)
    state = BatchState(index_id=INDEX, run_key="k1")
    assert engine.step(state) is not None
    assert len(api.creates) == 2, "two free slots: two batches, the third waits"
    assert saved[-1]["batches"] and not state.all_submitted
    run_to_the_end(engine, state, api)
    assert len(api.creates) == 3  # ceil(2500 / 1000)
    assert len(store.rows) == 2500 and store.writes == 2500
    gist = store.rows[asset(0)]
    assert (
        gist["index_id"] == INDEX and gist["model"] == "pegasus1.5" and gist["video_ref_type"] == "asset_id"
    )
    assert gist["source_updated_at"] == "2026-11-20T10:00:00.000Z" and gist["title"] == "T"
    summary = state.to_summary().to_dict()
    assert summary["generated"] == 2500 and summary["stored"] == 2500 and summary["failed"] == 0
    assert summary["planned"] == 2500 and summary["output_tokens"] == 3 * 2500


def test_the_body_is_a_pegasus_15_batch_of_asset_ids():
    api, store, saved = FakeApi(3), FakeStore(), []
    refresher(api, store, saved).step(BatchState(index_id=INDEX, run_key="k1"))
    body = api.creates[0]
    assert body["model_name"] == "pegasus1.5" and body["analysis_mode"] == "general"
    assert (
        body["defaults"]["prompt"]["input_text"]
        and body["defaults"]["response_format"]["type"] == "json_schema"
    )
    assert [r["video"] for r in body["requests"]] == [
        {"type": "asset_id", "asset_id": asset(n)} for n in range(3)
    ]


def test_other_clients_batches_count_against_the_limit():
    api, store, saved = FakeApi(10), FakeStore(), []
    api.foreign_active = 5
    engine = refresher(api, store, saved)
    state = BatchState(index_id=INDEX, run_key="k1")
    assert engine.step(state) == "foreign0" and api.creates == []  # waits for someone else's batch
    assert not state.all_submitted
    api.foreign_active = 4
    assert engine.step(state) == next(iter(api.batches)) and len(api.creates) == 1


def test_a_429_on_create_leaves_the_rest_for_later():
    api, store, saved = FakeApi(30), FakeStore(), []
    api.refuse_creates = 1
    engine = refresher(api, store, saved, batch_size=10)
    state = BatchState(index_id=INDEX, run_key="k1")
    engine.step(state)
    assert api.creates == [] and not state.all_submitted
    run_to_the_end(engine, state, api)
    assert len(api.creates) == 3 and len(store.rows) == 30


def test_an_unchanged_catalog_costs_no_batch():
    api, store, saved = FakeApi(5), FakeStore(), []
    state = BatchState(index_id=INDEX, run_key="k1")
    run_to_the_end(refresher(api, store, saved), state, api)
    again = BatchState(index_id=INDEX, run_key="k2")
    assert refresher(api, store, saved).step(again) is None
    assert len(api.creates) == 1 and again.to_summary().skipped == 5


def test_expired_items_are_resubmitted_up_to_the_bound_then_reported():
    api, store, saved = FakeApi(4), FakeStore(), []
    api.outcome = {asset(0): "canceled", asset(1): "failed"}
    state = BatchState(index_id=INDEX, run_key="k1")
    run_to_the_end(refresher(api, store, saved), state, api)
    # video 0 went into 1 + MAX_RESUBMITS batches, video 1 (a permanent failure) into one
    assert len(api.creates) == 1 + MAX_RESUBMITS
    assert sorted(store.rows) == [asset(2), asset(3)]
    failures = {f.video_ref: f.kind for f in state.to_summary().failures}
    assert failures == {asset(0): "transient", asset(1): "batch_video_not_supported"}


def test_a_retry_that_lost_its_state_adopts_its_batches_instead_of_paying_twice():
    api, store, saved = FakeApi(20), FakeStore(), []
    key = run_key("dag/run/task/-1")
    refresher(api, store, saved, batch_size=10).step(BatchState(index_id=INDEX, run_key=key))
    assert len(api.creates) == 2
    # the try died before its save: the next try starts from nothing but the same run key
    state = BatchState(index_id=INDEX, run_key=key)
    engine = refresher(api, store, saved, batch_size=10)
    engine.adopt(state)
    assert len(state.batches) == 2
    run_to_the_end(engine, state, api)
    assert len(api.creates) == 2 and len(store.rows) == 20


def test_a_step_never_submits_a_video_whose_batch_is_still_running():
    api, store, saved = FakeApi(10), FakeStore(), []
    engine = refresher(api, store, saved, batch_size=5, max_active_batches=5)
    state = BatchState(index_id=INDEX, run_key="k1")
    engine.step(state)
    state.all_submitted = False  # as after a resubmit was planned: the next step re-plans
    engine.step(state)
    assert len(api.creates) == 2


def test_state_round_trips_through_json_and_stays_small():
    api, store, saved = FakeApi(2500), FakeStore(), []
    state = BatchState(index_id=INDEX, run_key="k1")
    run_to_the_end(refresher(api, store, saved), state, api)
    again = BatchState.from_json(json.loads(json.dumps(state.to_json())))
    assert again.to_json() == state.to_json()
    assert max(len(json.dumps(s)) for s in saved) < 4096


def test_cancel_cancels_only_what_is_still_running():
    api, store, saved = FakeApi(30), FakeStore(), []
    engine = refresher(api, store, saved, batch_size=10)
    state = BatchState(index_id=INDEX, run_key="k1")
    engine.step(state)
    engine.cancel(state)
    assert sorted(api.canceled) == sorted(state.batches)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_active_batches": 6}, "max_active_batches"), ({"batch_size": 1001}, "batch_size")],
)
def test_bad_limits_are_refused_before_any_call(kwargs, field):
    api = FakeApi(1)
    with pytest.raises(GistValidationError, match=field):
        refresher(api, FakeStore(), [], **kwargs)
    assert api.creates == []


def test_a_model_batches_do_not_take_is_refused_before_any_call():
    api = FakeApi(1)
    with pytest.raises(GistValidationError, match=r"pegasus1\.5"):
        BatchRefresher(
            hook=api,
            store=FakeStore(),
            template=template("pegasus1.2"),  # type: ignore[arg-type]
            save=lambda s: None,
            log=Log(),
        )


def test_a_cap_holds_for_the_whole_run_across_steps():
    api, store, saved = FakeApi(30), FakeStore(), []
    state = BatchState(index_id=INDEX, run_key="k1")
    run_to_the_end(
        refresher(api, store, saved, batch_size=10, max_active_batches=1, max_videos=15), state, api
    )
    assert [len(body["requests"]) for body in api.creates] == [10, 5]
    summary = state.to_summary()
    assert len(store.rows) == 15 and summary.planned == 15 and summary.deferred == 15


def test_batches_go_out_while_the_listing_is_still_being_read():
    api, store, saved = FakeApi(2500), FakeStore(), []
    read: list[int] = []
    listing = api.listing

    def counting(index_id: str, *, status: list[str]) -> Any:
        for n, item in enumerate(listing, 1):
            read.append(n)
            yield item

    api.iter_indexed_assets = counting  # type: ignore[method-assign]
    created_after: list[int] = []
    create = api.create_batch
    api.create_batch = lambda body: (created_after.append(len(read)), create(body))[1]  # type: ignore[method-assign]
    refresher(api, store, saved, batch_size=1000).step(BatchState(index_id=INDEX, run_key="k1"))
    assert created_after[:2] == [1000, 2000], "each batch is created as soon as its videos are listed"
