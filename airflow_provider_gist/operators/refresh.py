"""RefreshGistsOperator: keep the gists of a whole index current, incrementally and at the rate limit.

One task lists the index's ready videos, compares them with the store's fingerprints, generates
only the missing or stale gists with bounded concurrency, stores each batch as it completes and
returns a small summary. The work is done by
:class:`~airflow_provider_gist.refresh.engine.GistRefresher`, loaded when the task runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_gist.analysis import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.errors import GistTransientError, GistValidationError
from airflow_provider_gist.links import TwelveLabsIndexLink, persist, playground_url_of
from airflow_provider_gist.refresh.plan import DEFAULT_CONCURRENCY
from airflow_provider_gist.storage import DEFAULT_TABLE, make_store

#: How a refresh asks for gists: one sync call per video, or batches.
ANALYSIS_MODES = ("sync", "batch")

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gist.refresh.engine import GistRefresher
    from airflow_provider_gist.refresh.plan import RefreshSummary
    from airflow_provider_gist.refresh.record import RunRecorder


def _run_settings(model: Any, prompt_version: Any, types: Any) -> dict[str, Any]:
    """The settings a refresh row records (what its gists were compared with)."""
    return {
        "model": str(model),
        "prompt_version": str(prompt_version),
        "types": [str(getattr(t, "value", t)) for t in types or ()],
    }


def _as_int(value: Any, name: str, *, minimum: int, allow_none: bool = False) -> int | None:
    """A templated integer argument (Jinja renders strings unless the DAG renders native objects)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if allow_none:
            return None
        raise GistValidationError(f"{name} is required")
    if isinstance(value, bool):
        raise GistValidationError(f"{name} must be an integer, got a boolean")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise GistValidationError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise GistValidationError(f"{name} must be >= {minimum}, got {number}")
    return number


class RefreshGistsOperator(BaseOperator):
    """Bring the stored gists of one index up to date; return a small summary dict.

    Lists the index's ready videos (all pages), skips those whose stored gist is current (same
    ``updated_at``, types, model and prompt version: no API call), generates the rest with up to
    ``concurrency`` calls in flight, paced by the API's ``X-Ratelimit-*`` headers, and stores
    them in batches as they complete, so a killed or timed-out run keeps its finished work and
    the next run does only the rest.

    One video's failure (not found, not ready, bad model output, another 4xx, retries spent)
    never stops the others: it is listed in the summary and, being unstored, retried next run.
    The task succeeds with failures reported unless ``fail_on_error`` is set. It fails when
    the run cannot go on at all: bad index, auth or configuration error, failing store, or
    ``max_consecutive_failures`` transient errors in a row (the API is down).

    :param index: index id or name (templated).
    :param types: gist types, default all three (templated).
    :param model_name: ``pegasus1.2``/``pegasus1.5``; default the connection's (templated).
    :param prompt: custom prompt (templated); changing it regenerates every gist.
    :param temperature: 0..1.
    :param max_tokens: output budget per answer.
    :param max_videos: at most this many gists per run; the rest wait for the next (templated).
    :param concurrency: most ``/analyze`` calls in flight at once (templated, 1..128).
    :param listing: ``indexed_assets`` (default) or ``videos`` (legacy list) (templated).
    :param store: ``sql`` or ``objects``; ``sql_conn_id``, ``table``, ``object_base`` as for
        ``StoreGistsOperator`` (templated).
    :param fail_on_error: fail the task (after storing everything else) if any video failed.
    :param max_consecutive_failures: transient failures in a row that end the run.
    :param twelvelabs_conn_id: connection id (templated).
    :param analysis: ``sync`` (default: one ``/analyze`` call per video, paced at the rate
        limit) or ``batch`` (``/analyze/batches``, Pegasus 1.5 and assets only: up to 1,000
        videos per create call, processed on the API's capacity while the task waits deferred;
        see docs/analysis.md) (templated).
    :param max_active_batches: batch mode: most batches active on the account at once (1..5,
        default 5; lower it when other clients share the account).
    :param batch_size: batch mode: videos per batch (1..1,000).
    :param poll_interval: batch mode: seconds between the triggerer's status checks.
    :param batch_timeout: batch mode: seconds the whole refresh may take (default 26 h, past the
        API's 24 h batch expiry).

    Returns :meth:`RefreshSummary.to_dict`: counts, token totals, at most 20 failures with
    reasons; never gists or secrets. With a SQL store, the task also writes its row in the
    store's refresh runs table (``<table>_runs``: progress while it runs, then the counts and
    what it left stale), which the gist view shows per index (docs/ui.md). For account-wide
    budgets, run refreshes in a pool (``pool="twelvelabs_api"``): the pacer spaces calls inside
    the task, the pool keeps other API tasks from competing with it.
    """

    template_fields: Sequence[str] = (
        "index",
        "types",
        "model_name",
        "prompt",
        "max_videos",
        "concurrency",
        "listing",
        "analysis",
        "sql_conn_id",
        "table",
        "object_base",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"types": "json", "prompt": "md"}
    ui_color = "#e8f0fe"
    operator_extra_links = (TwelveLabsIndexLink(),)

    def __init__(
        self,
        *,
        index: str,
        types: Sequence[str] | str | None = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_videos: int | str | None = None,
        concurrency: int | str = DEFAULT_CONCURRENCY,
        listing: str = "indexed_assets",
        store: str = "sql",
        sql_conn_id: str | None = None,
        table: str = DEFAULT_TABLE,
        object_base: str | None = None,
        fail_on_error: bool = False,
        max_consecutive_failures: int | None = None,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        analysis: str = "sync",
        max_active_batches: int = 5,
        batch_size: int = 1000,
        poll_interval: float = 60.0,
        batch_timeout: float = 26 * 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.analysis = analysis
        self.max_active_batches = max_active_batches
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self._batches: Any = None
        self.index = index
        self.types = types
        self.model_name = model_name
        self.prompt = prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_videos = max_videos
        self.concurrency = concurrency
        self.listing = listing
        self.store = store
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.object_base = object_base
        self.fail_on_error = fail_on_error
        self.max_consecutive_failures = max_consecutive_failures
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self._refresher: GistRefresher | None = None

    def _make_store(self) -> Any:
        return make_store(
            self.store,
            sql_conn_id=self.sql_conn_id,
            table=self.table,
            object_base=self.object_base,
            # stored gists name their DAG: the gist view shows them to whoever may read it
            dag_id=self.dag.dag_id if self.has_dag() else None,
        )

    def make_refresher(self) -> GistRefresher:
        """The engine for this task's (rendered) arguments; validates every one of them."""
        from airflow_provider_gist.refresh.engine import GistRefresher

        return GistRefresher(
            store=self._make_store(),
            twelvelabs_conn_id=self.twelvelabs_conn_id,
            types=self.types or None,
            model_name=self.model_name or None,
            prompt=self.prompt or None,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            concurrency=_as_int(self.concurrency, "concurrency", minimum=1) or DEFAULT_CONCURRENCY,
            max_videos=_as_int(self.max_videos, "max_videos", minimum=0, allow_none=True),
            listing=self.listing,
            max_consecutive_failures=self.max_consecutive_failures,
            logger=self.log,
        )

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.analysis not in ANALYSIS_MODES:
            raise GistValidationError(
                f"analysis must be one of {', '.join(ANALYSIS_MODES)}, got {self.analysis!r}"
            )
        if self.analysis == "batch":
            return self._batch_step(context)
        self._refresher = refresher = self.make_refresher()
        recorder = self._recorder(context, refresher.store)
        tracking = None
        if recorder is not None:
            from airflow_provider_gist.refresh.record import TrackingStore

            refresher.store = tracking = TrackingStore(refresher.store)
        refresher.on_progress = self._progress_pusher(context, recorder, tracking, refresher)
        try:
            summary = refresher.run(self.index)
        except BaseException as err:
            if recorder is not None and tracking is not None:
                recorder.fail(tracking.index_id, f"{type(err).__name__}: {err}")
            raise
        persist(context, playground_url_of(refresher.hook), index_id=summary.index_id)
        self._lineage = (summary.index_id, refresher.model, refresher.prompt_version)
        if recorder is not None:
            recorder.settings = _run_settings(refresher.model, refresher.prompt_version, refresher.types)
            failed = bool(refresher.fatal_error or summary.aborted or (self.fail_on_error and summary.failed))
            recorder.finish(
                summary,
                status="failed" if failed else "success",
                regenerated=tracking.regenerated if tracking is not None else None,
                error=str(refresher.fatal_error) if refresher.fatal_error is not None else None,
            )
        if refresher.fatal_error is not None:
            raise refresher.fatal_error
        return self._report(summary)

    def _recorder(self, context: Context, store: Any) -> RunRecorder | None:
        """The writer of this task's row in the refresh runs table (SQL stores in a DAG run only)."""
        from airflow_provider_gist.storage.sql import SqlGistStore

        ti = context.get("ti")
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
        dag_id = getattr(ti, "dag_id", None) or (self.dag.dag_id if self.has_dag() else None)
        if not isinstance(store, SqlGistStore) or not run_id or not dag_id:
            return None  # objects stores keep no run rows; a bare execute() has no run to name
        from airflow_provider_gist.refresh.record import RunRecorder

        map_index = getattr(ti, "map_index", -1)
        try_number = getattr(ti, "try_number", None)
        return RunRecorder(
            store,
            {
                "dag_id": str(dag_id),
                "run_id": str(run_id),
                "task_id": self.task_id,
                "map_index": map_index if isinstance(map_index, int) else -1,
                "try_number": try_number if isinstance(try_number, int) else None,
            },
        )

    @staticmethod
    def _progress_pusher(
        context: Context, recorder: RunRecorder | None = None, tracking: Any = None, refresher: Any = None
    ) -> Any:
        """Push each progress report as the ``gist_progress`` XCom, for the UI while the task runs,
        and into the run's row of the refresh runs table (what the gist view shows)."""
        from airflow_provider_gist.refresh.progress import PROGRESS_XCOM_KEY

        push = getattr(context.get("ti"), "xcom_push", None)
        if not callable(push) and recorder is None:  # a direct execute() call: the log lines are the progress
            return None

        def on_progress(report: dict[str, Any]) -> None:
            if callable(push):
                push(key=PROGRESS_XCOM_KEY, value=report)
            if recorder is not None and tracking is not None:
                if not recorder.settings and refresher is not None:
                    recorder.settings = _run_settings(
                        refresher.model, refresher.prompt_version, refresher.types
                    )
                recorder.progress(tracking.index_id, report)

        return on_progress

    def _report(self, summary: RefreshSummary) -> dict[str, Any]:
        for line in summary.log_lines():
            self.log.info("%s", line)
        result = summary.to_dict()
        if summary.aborted:
            # Systemic: the API is unavailable. Stored work is kept; the next run continues.
            raise GistTransientError(f"catalog refresh stopped early: {summary.aborted}")
        if self.fail_on_error and summary.failed:
            raise AirflowFailException(
                f"{summary.failed} video(s) got no gist (fail_on_error=True); "
                f"{summary.stored} stored. See the failures above."
            )
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the index (its videos, too many to name one by one); output: the gist store."""
        from airflow_provider_gist.lineage import api_base_of, operator_lineage, store_dataset, video_dataset

        index_id, model, prompt_version = getattr(self, "_lineage", None) or (None, None, None)
        api = api_base_of(self.twelvelabs_conn_id)
        return operator_lineage(
            [video_dataset(api, f"indexes/{index_id}") if index_id else None],
            [store_dataset(self._make_store())],
            model=model,
            prompt_version=prompt_version,
        )

    def on_kill(self) -> None:
        # Called from the SIGTERM handler (or after a timeout): no new video starts, the calls in
        # flight stop retrying, what finishes within the engine's grace is stored, and the run
        # then fails ("stopped early"), so a killed refresh never reports success.
        if self._refresher is not None:
            self._refresher.stop()
        if self._batches is not None:  # cancel the batches this refresh submitted (queued items are free)
            refresher, state = self._batches
            refresher.cancel(state)

    # ------------------------------------------------------------------ batch mode

    def _batch_step(self, context: Context) -> dict[str, Any] | None:
        """One step of a batch refresh: collect, submit, then defer, or report when all is done."""
        from airflow_provider_gist.analysis import prepare_gist_request
        from airflow_provider_gist.hooks.gist import GistHook
        from airflow_provider_gist.ingest.durable import Durability
        from airflow_provider_gist.refresh.batches import (
            STATE_KEY_BATCHES,
            BatchRefresher,
            BatchState,
            run_key,
        )

        hook = GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)
        try:
            template = prepare_gist_request(
                asset_id="batch-template",
                video_id=None,
                types=self.types or None,
                model_name=self.model_name or hook.settings.default_model,
                prompt=self.prompt or None,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
            durability = Durability.from_context(context, reuse_existing=False, log=self.log)
            saved = durability.store.get(STATE_KEY_BATCHES)
            if saved and saved.get("done"):
                saved = None  # a cleared task refreshes afresh
            refresher = BatchRefresher(
                hook=hook,
                store=self._make_store(),
                template=template,
                save=lambda state: durability.store.set(STATE_KEY_BATCHES, state.to_json()),
                max_active_batches=_as_int(self.max_active_batches, "max_active_batches", minimum=1) or 5,
                batch_size=_as_int(self.batch_size, "batch_size", minimum=1) or 1000,
                max_videos=_as_int(self.max_videos, "max_videos", minimum=0, allow_none=True),
                log=self.log,
            )
            if saved:
                state = BatchState.from_json(saved)
            else:
                state = BatchState(
                    index_id=hook.resolve_index(self.index), run_key=run_key(str(durability.scope))
                )
                if durability.should_look_up:  # a retry that lost its state: take its batches back
                    refresher.adopt(state)
            self._batches = (refresher, state)
            persist(context, playground_url_of(hook), index_id=state.index_id)
            self._lineage = (state.index_id, template.model, template.prompt_version)
            wait_for = refresher.step(state)
            if wait_for is None:
                durability.store.set(STATE_KEY_BATCHES, {**state.to_json(), "done": True})
        finally:
            hook.close()
        if wait_for is not None:
            self._defer_to_batch(wait_for, state.started)
        summary = state.to_summary()
        recorder = self._recorder(context, refresher.store)
        if recorder is not None:
            # A batch refresh spans deferrals (a new operator object each time), so it cannot
            # count what it regenerated per reason: its row leaves the stale counts unknown.
            recorder.settings = _run_settings(template.model, template.prompt_version, template.types)
            failed = bool(summary.aborted or (self.fail_on_error and summary.failed))
            recorder.finish(summary, status="failed" if failed else "success", regenerated=None)
        return self._report(summary)

    def _defer_to_batch(self, batch_id: str, started: float) -> None:
        import time
        from datetime import timedelta

        from airflow_provider_gist.triggers.analysis import AnalysisBatchTrigger

        self.log.info("waiting in the triggerer for batch %s", batch_id)
        deadline = started + float(self.batch_timeout)
        self.defer(
            trigger=AnalysisBatchTrigger(
                batch_id=batch_id,
                deadline=deadline,
                twelvelabs_conn_id=self.twelvelabs_conn_id,
                poll_interval=float(self.poll_interval),
            ),
            method_name="resume_batches",
            timeout=timedelta(seconds=max(1.0, deadline - time.time())),
        )

    def resume_batches(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """After a batch ended (or the wait failed): collect it, submit more, wait again or report."""
        if not isinstance(event, dict) or event.get("status") != "ready":
            message = event.get("message") if isinstance(event, dict) else repr(event)
            raise GistTransientError(
                f"waiting for a batch failed: {message}; a retry resumes the same batches"
            )
        return self._batch_step(context)


def __getattr__(name: str) -> Any:
    # The engine stays importable from here for one release, loaded on first use.
    if name == "GistRefresher":
        from airflow_provider_gist.refresh.engine import GistRefresher

        return GistRefresher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_CONCURRENCY", "GistRefresher", "RefreshGistsOperator"]
