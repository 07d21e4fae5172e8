"""The triggers deferred analysis waits on: one analysis task, or one batch, until it is done.

The same polling loop as the indexing waits (:class:`~.indexing.TwelveLabsStatusTrigger`):
GETs only, an absolute deadline that survives a triggerer restart, transient errors tolerated.
The event carries the task's id and status, never its result: the operator reads the result
when it resumes (a real state check), so no gist passes through the triggerer's event table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_gist.triggers.indexing import TwelveLabsStatusTrigger

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist_async import GistAsyncHook


class AnalysisTaskTrigger(TwelveLabsStatusTrigger):
    """Wait for an analysis task (``GET /analyze/tasks/{task_id}``) to be ``ready`` or ``failed``."""

    resource = "analysis_task"
    id_fields = ("analysis_task_id",)

    def __init__(self, *, analysis_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.analysis_task_id = analysis_task_id

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        return await hook.get_analysis_task(self.analysis_task_id)


class AnalysisBatchTrigger(TwelveLabsStatusTrigger):
    """Wait for a batch (``GET /analyze/batches/{batch_id}``) to end: ``completed``, ``canceled``
    or ``expired`` all end the wait (a batch never ``fails``; its items do, one by one)."""

    resource = "analysis_batch"
    id_fields = ("batch_id",)
    done_statuses = frozenset({"completed", "canceled", "expired"})
    failed_statuses = frozenset()

    def __init__(self, *, batch_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        return await hook.get_batch(self.batch_id)
