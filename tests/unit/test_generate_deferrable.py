"""GenerateGistOperator through analysis tasks, HTTP mocked: one task per try, resume, length retry.

The guarantees under test (docs/analysis.md): an analysis task is created at most once per gist
and task instance, whatever happens between the create and the end of the wait (a crash before
the id is saved, a retry while the task still runs, a resume after the trigger); a task cut off
at ``max_tokens`` gets exactly one new task with twice the tokens; videos over an hour never go
to sync ``/analyze``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gist.async_analysis import STATE_KEY_ANALYSIS_TASK
from airflow_provider_gist.errors import GistModelOutputError
from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.triggers.analysis import AnalysisTaskTrigger
from tests.conftest import twelvelabs_conn_json
from tests.unit.ingest_fakes import FakeStore, make_context

BASE = "https://api.twelvelabs.test"
API = f"{BASE}/v1.3"
ASSET = "6298d673f1090f1100476d4c"
GIST = {"title": "Harbour at Dawn", "topics": ["Boats"], "hashtags": ["#Sea"]}


class FakeTasks:
    """``/analyze/tasks`` in a dict: each task's statuses scripted, creates counted."""

    def __init__(self, mocker: Any, *, duration: float = 60.0) -> None:
        self.m = mocker
        self.tasks: dict[str, dict[str, Any]] = {}
        #: what each new task's GETs return in turn (the last one sticks)
        self.statuses = ["processing", "ready"]
        #: finish_reason of the next results, in turn (the last one sticks)
        self.finish = ["stop"]
        self.bodies: list[dict[str, Any]] = []
        ident = r"([A-Za-z0-9_-]+)"
        mocker.post(f"{API}/analyze/tasks", json=self._create, status_code=202)
        mocker.get(re.compile(rf"{re.escape(API)}/analyze/tasks(\?.*)?$"), json=self._list)
        mocker.get(re.compile(rf"{re.escape(API)}/analyze/tasks/{ident}$"), json=self._get)
        mocker.get(f"{API}/assets/{ASSET}", json={"_id": ASSET, "status": "ready", "duration": duration})
        mocker.post(
            f"{API}/analyze",
            json={
                "id": "g-sync",
                "data": json.dumps(GIST),
                "finish_reason": "stop",
                "usage": {"output_tokens": 9},
            },
        )

    @property
    def creates(self) -> int:
        return sum(
            1 for r in self.m.request_history if r.method == "POST" and r.path.endswith("/analyze/tasks")
        )

    @property
    def sync_calls(self) -> int:
        return sum(1 for r in self.m.request_history if r.method == "POST" and r.path.endswith("/analyze"))

    def _create(self, request: Any, context: Any) -> dict[str, Any]:
        body = request.json()
        self.bodies.append(body)
        task_id = f"task{len(self.tasks) + 1:020d}"
        finish = self.finish[min(len(self.tasks), len(self.finish) - 1)]
        self.tasks[task_id] = {"body": body, "gets": 0, "finish": finish}
        return {"task_id": task_id, "status": "queued"}

    def _view(self, task_id: str) -> dict[str, Any]:
        task = self.tasks[task_id]
        status = self.statuses[min(task["gets"], len(self.statuses) - 1)]
        out: dict[str, Any] = {
            "task_id": task_id,
            "custom_id": task["body"].get("custom_id"),
            "status": status,
            "created_at": "2026-12-01T10:00:00Z",
        }
        if status == "ready":
            out["result"] = {
                "generation_id": f"gen-{task_id}",
                "data": json.dumps(GIST),
                "finish_reason": task["finish"],
                "usage": {"output_tokens": 12},
            }
        return out

    def _get(self, request: Any, context: Any) -> dict[str, Any]:
        task_id = request.path.rsplit("/", 1)[-1]
        view = self._view(task_id)
        self.tasks[task_id]["gets"] += 1
        return view

    def _list(self, request: Any, context: Any) -> dict[str, Any]:
        items = [self._view(t) for t in reversed(list(self.tasks))]  # newest first
        return {
            "data": items,
            "page_info": {"page": 1, "total_page": 1, "total_results": len(items), "limit_per_page": 50},
        }


@pytest.fixture(autouse=True)
def conn(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(BASE, max_attempts=2))


@pytest.fixture
def api(requests_mock) -> FakeTasks:
    return FakeTasks(requests_mock)


def op(**kwargs: Any) -> GenerateGistOperator:
    return GenerateGistOperator(task_id="t", asset_id=ASSET, poll_interval=0.01, **kwargs)


def defer(operator: GenerateGistOperator, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return deferred.value


def resume(
    operator: GenerateGistOperator, context: dict[str, Any], deferred: TaskDeferred, api: FakeTasks
) -> Any:
    """What the triggerer does: poll until the task is done, then resume the operator."""
    trigger = deferred.trigger
    assert isinstance(trigger, AnalysisTaskTrigger)
    api.tasks[trigger.analysis_task_id]["gets"] = len(api.statuses)  # the trigger's polls
    event = {"status": "ready", "resource": "analysis_task", "analysis_task_id": trigger.analysis_task_id}
    return getattr(operator, deferred.method_name)(context, event, **(deferred.kwargs or {}))


def test_deferrable_creates_one_task_saves_it_first_and_resumes_into_the_gist(api):
    store = FakeStore()
    context = make_context(store)
    operator = op(deferrable=True)
    deferred = defer(operator, context)
    assert api.creates == 1 and api.sync_calls == 0
    saved = store.data[STATE_KEY_ANALYSIS_TASK]
    assert saved["id"] == deferred.trigger.analysis_task_id  # saved before deferring
    body = api.bodies[0]
    assert body["video"] == {"type": "asset_id", "asset_id": ASSET} and "stream" not in body
    assert body["custom_id"].startswith("gist-") and body["response_format"]["type"] == "json_schema"
    gist = resume(operator, context, deferred, api)
    assert gist["title"] == "Harbour at Dawn" and gist["hashtags"] == ["Sea"]
    assert gist["id"] == f"gen-{saved['id']}" and api.creates == 1


def test_a_retry_while_the_task_still_runs_waits_for_it_and_creates_none(api):
    store = FakeStore()
    api.statuses = ["processing"]
    first = defer(op(deferrable=True), make_context(store))
    second = defer(op(deferrable=True), make_context(store, try_number=2))
    assert api.creates == 1
    assert second.trigger.analysis_task_id == first.trigger.analysis_task_id


def test_a_crash_after_the_create_and_before_the_id_was_saved_finds_the_task_by_custom_id(api):
    # try 1 created the task, then died before task_state_store.set: the store is empty
    defer(op(deferrable=True), make_context(FakeStore(broken_set=True)))
    assert api.creates == 1
    retry = defer(op(deferrable=True), make_context(FakeStore(), try_number=2))
    assert api.creates == 1, "the retry found its task by custom_id instead of paying for another"
    assert retry.trigger.analysis_task_id in api.tasks


def test_another_task_instance_never_reuses_the_task(api):
    defer(op(deferrable=True), make_context(FakeStore(), run_id="run_1"))
    defer(op(deferrable=True), make_context(FakeStore(), run_id="run_2", try_number=2))
    assert api.creates == 2
    assert api.bodies[0]["custom_id"] != api.bodies[1]["custom_id"]


def test_a_result_cut_off_gets_exactly_one_new_task_with_twice_the_tokens(api):
    store = FakeStore()
    context = make_context(store)
    api.finish = ["length", "stop"]
    operator = op(deferrable=True, max_tokens=600)
    first = defer(operator, context)
    with pytest.raises(TaskDeferred) as again:
        resume(operator, context, first, api)
    second = again.value
    assert api.creates == 2 and api.bodies[1]["max_tokens"] == 1200
    gist = resume(operator, context, second, api)
    assert gist["title"] == "Harbour at Dawn" and api.creates == 2


def test_cut_off_twice_fails_with_the_model_output_error(api):
    context = make_context(FakeStore())
    api.finish = ["length"]
    operator = op(deferrable=True, max_tokens=600)
    first = defer(operator, context)
    with pytest.raises(TaskDeferred) as again:
        resume(operator, context, first, api)
    with pytest.raises(GistModelOutputError, match="after one retry with more tokens"):
        resume(operator, context, again.value, api)
    assert api.creates == 2


def test_a_failed_task_fails_the_try_and_the_next_try_makes_a_new_one(api):
    store = FakeStore()
    api.statuses = ["failed"]
    operator = op(deferrable=True)
    deferred = defer(operator, make_context(store))
    with pytest.raises(Exception, match="failed"):
        getattr(operator, deferred.method_name)(
            make_context(store),
            {"status": "failed", "analysis_task_id": deferred.trigger.analysis_task_id, "message": "bad"},
        )
    defer(op(deferrable=True), make_context(store, try_number=2))
    assert api.creates == 2


def test_a_video_over_an_hour_uses_a_task_even_without_deferral_and_the_worker_polls(requests_mock):
    api = FakeTasks(requests_mock, duration=5400.0)
    api.statuses = ["queued", "processing", "ready"]
    gist = op(deferrable=False).execute(make_context(FakeStore()))
    assert gist["title"] == "Harbour at Dawn"
    assert api.creates == 1 and api.sync_calls == 0


def test_a_short_video_without_deferral_stays_on_sync_analyze(api):
    gist = op(deferrable=False).execute(make_context(FakeStore()))
    assert gist["id"] == "g-sync" and api.creates == 0 and api.sync_calls == 1


def test_a_known_duration_saves_the_asset_read(api, requests_mock):
    op(deferrable=False, duration="42.5").execute(make_context(FakeStore()))
    assert not any(r.path.endswith(f"/assets/{ASSET.lower()}") for r in requests_mock.request_history)


def test_video_id_cannot_use_a_task_so_it_is_analysed_synchronously(api):
    operator = GenerateGistOperator(task_id="t", video_id=ASSET, model_name="pegasus1.2", deferrable=True)
    gist = operator.execute(make_context(FakeStore()))
    assert gist["video_ref_type"] == "video_id" and api.creates == 0 and api.sync_calls == 1


def test_the_trigger_round_trips_through_serialize():
    trigger = AnalysisTaskTrigger(analysis_task_id="task1", deadline=2e9, poll_interval=5)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_gist.triggers.analysis.AnalysisTaskTrigger"
    assert AnalysisTaskTrigger(**kwargs).serialize() == (path, kwargs)
    assert "password" not in json.dumps(kwargs) and kwargs["analysis_task_id"] == "task1"
