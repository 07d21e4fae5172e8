"""Asynchronous analysis: one ``/analyze/tasks`` task per gist and per task try, never two.

A sync ``POST /analyze`` holds a worker for the whole analysis and stops at one hour of video;
an analysis task (``POST /analyze/tasks``, up to two hours) is created once and then only read.
Since every task is billed, it is obtained *durably* with the ingest engine's mechanism
(:func:`~airflow_provider_gist.ingest.durable.obtain`):

1. the task id kept in ``task_state_store`` by this try (the operator resumes from a deferral
   or a triggerer restart into the same try) or an earlier one;
2. on a retry, a lookup by ``custom_id``: every task we create carries a deterministic key of
   the task instance and the request (a crash after the create and before the id was saved
   still finds its task, whatever its status: a task still running is waited for, not redone);
3. the create, whose id is saved at once, before the operator defers.

Airflow-free apart from the task context the durability helper reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_gist.analysis import GistRequest, answer_of_task
from airflow_provider_gist.errors import GistError, GistTimeoutError
from airflow_provider_gist.ingest.durable import Durability, Resource, first_alive, ingest_key, obtain
from airflow_provider_gist.waits import failure_reason

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.model import Gist

#: task_state_store key of the analysis task. Renaming it breaks in-flight retries.
STATE_KEY_ANALYSIS_TASK = "gist_analysis_task"
#: Sync /analyze takes videos up to one hour; longer ones must go through an analysis task.
SYNC_MAX_SECONDS = 3600.0
#: Statuses after which an analysis task never changes again.
TERMINAL = frozenset({"ready", "failed"})


class AnalysisFailedError(GistError):
    """The API reports the analysis task as ``failed`` (retried by Airflow: a new try makes a new task)."""


def _with_id(task: Mapping[str, Any]) -> dict[str, Any]:
    # The durability helper speaks of "_id"; analysis tasks call theirs "task_id".
    return {**task, "_id": task.get("task_id") or task.get("_id")}


def task_resource(hook: GistHook, request: GistRequest, max_tokens: int, durability: Durability) -> Resource:
    """How to reconnect to, find (by ``custom_id``) and create the analysis task of ``request``."""
    fingerprint = json.dumps(request.body(max_tokens), sort_keys=True)
    key = ingest_key("analysis_task", target=request.model, source=fingerprint, scope=durability.scope)
    custom_id = f"gist-{key}"

    def find() -> dict[str, Any] | None:
        tasks = (_with_id(t) for t in hook.iter_analysis_tasks(asset_id=request.video_ref))
        return first_alive(tasks, lambda t: t.get("custom_id") == custom_id)

    return Resource(
        "analysis task",
        STATE_KEY_ANALYSIS_TASK,
        key,
        lambda ident: _with_id(hook.get_analysis_task(ident)),
        find,
        lambda: _with_id(hook.create_analysis_task(request.task_body(custom_id, max_tokens))),
        also_store=lambda body: {"max_tokens": max_tokens},
        # the connection's window, as for uploads: a deployment sets it past its listing lag
        lookup_seconds=hook.settings.create_lookup_seconds,
    )


def obtain_task(
    hook: GistHook, request: GistRequest, max_tokens: int, durability: Durability, log: Any
) -> dict[str, Any]:
    """The analysis task of ``request`` (reconnected, found or created); its id is ``["_id"]``."""
    task, _ = obtain(task_resource(hook, request, max_tokens, durability), durability, log)
    return task


def gist_of_ready_task(request: GistRequest, task: Mapping[str, Any], source_updated_at: str | None) -> Gist:
    """The gist in a finished task; raises :class:`AnalysisFailedError` or ``GistModelOutputError``."""
    if task.get("status") == "failed":
        reason = failure_reason("analysis_task", task, {})
        raise AnalysisFailedError(f"analysis task {task.get('task_id') or task.get('_id')} failed: {reason}")
    return request.gist_from_analyze(answer_of_task(task), source_updated_at=source_updated_at)


def wait_in_worker(
    hook: GistHook, task_id: str, *, timeout: float, poll_interval: float, log: Any
) -> dict[str, Any]:
    """Poll the task from the worker until it is ``ready`` or ``failed`` (non-deferrable mode)."""
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        task = hook.get_analysis_task(task_id)
        status = task.get("status")
        if status in TERMINAL:
            return task
        if status != last:
            log.info("analysis task %s is %s", task_id, status)
            last = status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GistTimeoutError(
                f"analysis task {task_id} is still {status!r} after {timeout:g}s; a retry of this task "
                "resumes waiting on the same analysis (nothing is analysed again)"
            )
        time.sleep(min(poll_interval, remaining))
