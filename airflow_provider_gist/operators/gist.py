"""GenerateGistOperator: one video's gist, as a small JSON-safe dict, sync or deferred."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException

from airflow_provider_gist.analysis import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    GistRequest,
    prepare_gist_request,
)
from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.errors import GistModelOutputError, GistTimeoutError, GistValidationError
from airflow_provider_gist.links import (
    TwelveLabsAnalysisTaskLink,
    TwelveLabsIndexLink,
    TwelveLabsVideoLink,
    persist,
    playground_url_of,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.model import Gist

#: How long a deferred (or worker-polled) analysis may take before the task fails.
DEFAULT_ANALYSIS_TIMEOUT = 3 * 3600.0
DEFAULT_POLL_INTERVAL = 15.0


class GenerateGistOperator(BaseOperator):
    """Generate the gist (title, topics, hashtags) of one video and return it as a dict.

    Give exactly one of ``asset_id`` (current API; any Pegasus model) or ``video_id`` (a video
    indexed through the legacy flow; ``pegasus1.2`` only). The gist is asked of
    ``POST /analyze`` (``POST /gist`` was removed on 2026-02-15) and returned in the old
    endpoint's shape. Every input is validated before any HTTP call, and errors name the field.
    The returned dict holds exactly the requested keys among ``title``, ``topics`` and
    ``hashtags``, plus ``id``, ``video_ref``, ``model``, ``usage`` and timestamps.

    :param asset_id: asset to describe (templated).
    :param video_id: legacy indexed video to describe (templated).
    :param types: subset of ``title``, ``topic``, ``hashtag`` (templated; default all three).
    :param model_name: ``pegasus1.2`` or ``pegasus1.5``; default: the connection's default model.
    :param prompt: replaces the built-in prompt; the JSON schema still shapes the answer.
    :param temperature: 0..1, default 0.2.
    :param max_tokens: output budget; an answer cut off is retried once with twice as many.
    :param index_id: index the video belongs to, recorded with the gist (templated).
    :param source_updated_at: the video's ``updated_at``, recorded so a refresh can skip it later.
    :param twelvelabs_conn_id: connection id (templated).
    :param deferrable: analyse through an asynchronous analysis task and wait in the triggerer,
        holding no worker slot (default: ``[operators] default_deferrable``). Needs ``asset_id``.
        Videos over one hour always go through an analysis task (sync analysis stops at one
        hour); without ``deferrable`` the worker then polls.
    :param analysis_timeout: seconds an analysis task may take (default three hours).
    :param poll_interval: seconds between status checks of an analysis task.
    :param duration: the video's length in seconds if known (templated; e.g. the indexing
        sensor's ``duration``); otherwise a non-deferrable task reads it from the asset.

    An analysis task is created once per gist and task instance: its id is kept in the task's
    state store before the task defers, and a retry finds it again by its ``custom_id``, so no
    retry, crash or triggerer restart pays for a second one (docs/analysis.md).
    """

    template_fields: Sequence[str] = (
        "asset_id",
        "video_id",
        "types",
        "model_name",
        "prompt",
        "index_id",
        "source_updated_at",
        "duration",
        "poll_interval",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"types": "json", "prompt": "md"}
    ui_color = "#e8f0fe"
    operator_extra_links = (TwelveLabsVideoLink(), TwelveLabsIndexLink(), TwelveLabsAnalysisTaskLink())

    def __init__(
        self,
        *,
        asset_id: str | None = None,
        video_id: str | None = None,
        types: Sequence[str] | str | None = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        index_id: str | None = None,
        source_updated_at: str | None = None,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        analysis_timeout: float = DEFAULT_ANALYSIS_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        duration: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.duration = duration
        self.deferrable = deferrable
        self.analysis_timeout = analysis_timeout
        self.poll_interval = poll_interval
        self.asset_id = asset_id
        self.video_id = video_id
        self.types = types
        self.model_name = model_name
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.index_id = index_id
        self.source_updated_at = source_updated_at
        self.twelvelabs_conn_id = twelvelabs_conn_id

    @cached_property
    def hook(self) -> GistHook:
        from airflow_provider_gist.hooks.gist import GistHook

        return GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)

    def prepare(self) -> GistRequest:
        """Every input validated (naming the field) before any HTTP call."""
        for name in ("poll_interval", "analysis_timeout"):  # templated: may arrive as text
            try:
                seconds = float(getattr(self, name))
            except (TypeError, ValueError):
                seconds = 0.0
            if not 0 < seconds < float("inf"):
                raise GistValidationError(f"{name} must be a positive number of seconds")
            setattr(self, name, seconds)
        return prepare_gist_request(
            asset_id=self.asset_id or None,
            video_id=self.video_id or None,
            types=self.types,
            model_name=self.model_name or self.hook.settings.default_model,
            prompt=self.prompt,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            index_id=self.index_id or None,
        )

    def execute(self, context: Context) -> dict[str, Any] | None:
        try:
            request = self.prepare()
            self._persist_links(context, request)
            if self._use_task(request):
                return self._start_task(context, request, request.max_tokens, retried=False)
            gist = self.hook.generate_gist(
                asset_id=self.asset_id or None,
                video_id=self.video_id or None,
                types=self.types,
                model_name=request.model,
                prompt=self.prompt,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                index_id=self.index_id or None,
                source_updated_at=self.source_updated_at or None,
            )
        finally:
            self.hook.close()
        return self._done(gist)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        retried: bool = False,
    ) -> dict[str, Any] | None:
        """Resume after the trigger: read the task (a real state check) and return the gist."""
        if not isinstance(event, dict):
            raise AirflowException(f"the trigger ended without a usable event: {event!r}")
        status, task_id = event.get("status"), event.get("analysis_task_id")
        if status == "timeout":
            raise GistTimeoutError(f"{event.get('message')}; a retry resumes waiting on the same analysis")
        if status not in ("ready", "failed") or not isinstance(task_id, str):
            raise AirflowException(f"waiting for analysis task {task_id} failed: {event.get('message')}")
        request = self.prepare()
        # Pushed again: the XComs of the deferred part may be cleared when the task resumes.
        self._persist_links(context, request, analysis_task_id=task_id)
        try:
            task = self.hook.get_analysis_task(task_id)
            return self._finish(context, request, task, max_tokens or request.max_tokens, retried)
        finally:
            self.hook.close()

    def on_kill(self) -> None:
        self.hook.close()

    # ------------------------------------------------------------------ the analysis task path

    def _use_task(self, request: GistRequest) -> bool:
        from airflow_provider_gist.async_analysis import SYNC_MAX_SECONDS

        if request.video_ref_type != "asset_id":
            if self.deferrable:
                self.log.warning("video_id cannot be analysed by an analysis task: analysing synchronously")
            return False
        if self.deferrable:
            return True
        duration = self.duration
        if duration in (None, ""):  # unknown: one cheap read (a different rate-limit group)
            duration = self.hook.get_asset(request.video_ref).get("duration")
        try:
            duration = float(duration)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            duration = None
        if duration is not None and duration > SYNC_MAX_SECONDS:
            self.log.info(
                "the video lasts %.0f s, past sync analysis' hour: using an analysis task", duration
            )
            return True
        return False

    def _start_task(
        self, context: Context, request: GistRequest, tokens: int, *, retried: bool
    ) -> dict[str, Any] | None:
        from airflow_provider_gist.async_analysis import obtain_task
        from airflow_provider_gist.ingest.durable import Durability

        durability = Durability.from_context(context, reuse_existing=False, log=self.log)
        task = obtain_task(self.hook, request, tokens, durability, self.log)
        return self._finish(context, request, task, tokens, retried)

    def _wait_in_worker(self, task_id: str) -> dict[str, Any]:
        from airflow_provider_gist.async_analysis import wait_in_worker

        return wait_in_worker(
            self.hook, task_id, timeout=self.analysis_timeout, poll_interval=self.poll_interval, log=self.log
        )

    def _defer_to(self, task_id: str, tokens: int, retried: bool) -> None:
        from airflow_provider_gist.triggers.analysis import AnalysisTaskTrigger

        now = time.time()
        self.defer(
            trigger=AnalysisTaskTrigger(
                analysis_task_id=task_id,
                deadline=now + self.analysis_timeout,
                twelvelabs_conn_id=self.twelvelabs_conn_id,
                poll_interval=self.poll_interval,
                started_at=now,
            ),
            method_name="execute_complete",
            kwargs={"max_tokens": tokens, "retried": retried},
            timeout=timedelta(seconds=self.analysis_timeout),
        )

    def _finish(
        self, context: Context, request: GistRequest, task: dict[str, Any], tokens: int, retried: bool
    ) -> dict[str, Any] | None:
        from airflow_provider_gist.async_analysis import TERMINAL, gist_of_ready_task

        if task.get("status") not in TERMINAL:  # not done yet (or the event ran ahead of a read)
            task_id = str(task.get("task_id") or task.get("_id"))
            # before deferring: the task runner reads the links when the task defers
            self._persist_links(context, request, analysis_task_id=task_id)
            if self.deferrable:
                self._defer_to(task_id, tokens, retried)
            task = self._wait_in_worker(task_id)
        try:
            gist = gist_of_ready_task(request, task, self.source_updated_at or None)
        except GistModelOutputError as err:
            more = request.more_tokens(tokens)
            if retried or more == tokens:
                raise GistModelOutputError(
                    f"{err} (after one retry with more tokens)" if retried else str(err),
                    finish_reason=err.finish_reason,
                    generation_id=err.generation_id,
                ) from None
            self.log.warning("%s; asking once more with max_tokens=%d", err, more)
            return self._start_task(context, request, more, retried=True)
        return self._done(gist)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the video (asset or legacy video); job facet: the model and prompt version."""
        from airflow_provider_gist.lineage import api_base_of, operator_lineage, video_dataset

        request: GistRequest | None = getattr(self, "_lineage_request", None)
        ref = request.video_ref if request else (self.asset_id or self.video_id)
        return operator_lineage(
            [video_dataset(api_base_of(self.twelvelabs_conn_id), ref) if ref else None],
            model=request.model if request else None,
            prompt_version=request.prompt_version if request else None,
            types=request.types if request else (),
        )

    def _persist_links(
        self, context: Context, request: GistRequest, analysis_task_id: str | None = None
    ) -> None:
        """The ids the extra links open (a legacy video is a video of ``index_id``)."""
        self._lineage_request = request  # what get_openlineage_facets_on_complete reports
        persist(
            context,
            playground_url_of(self.hook),
            index_id=self.index_id,
            asset_id=self.asset_id,
            indexed_asset_id=self.video_id if self.index_id else None,
            analysis_task_id=analysis_task_id,
        )

    def _done(self, gist: Gist) -> dict[str, Any]:
        self.log.info("Gist for %s", gist.describe())
        return gist.to_dict()
