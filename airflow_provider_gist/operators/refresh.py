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
from airflow_provider_gist.refresh.plan import DEFAULT_CONCURRENCY
from airflow_provider_gist.storage import DEFAULT_TABLE, make_store

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gist.refresh.engine import GistRefresher


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

    Returns :meth:`RefreshSummary.to_dict`: counts, token totals, at most 20 failures with
    reasons; never gists or secrets. For account-wide budgets, run refreshes in a pool
    (``pool="twelvelabs_api"``): the pacer spaces calls inside the task, the pool keeps other
    API tasks from competing with it.
    """

    template_fields: Sequence[str] = (
        "index",
        "types",
        "model_name",
        "prompt",
        "max_videos",
        "concurrency",
        "listing",
        "sql_conn_id",
        "table",
        "object_base",
        "twelvelabs_conn_id",
    )
    template_fields_renderers = {"types": "json", "prompt": "md"}
    ui_color = "#e8f0fe"

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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

    def make_refresher(self) -> GistRefresher:
        """The engine for this task's (rendered) arguments; validates every one of them."""
        from airflow_provider_gist.refresh.engine import GistRefresher

        return GistRefresher(
            store=make_store(
                self.store, sql_conn_id=self.sql_conn_id, table=self.table, object_base=self.object_base
            ),
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

    def execute(self, context: Context) -> dict[str, Any]:
        self._refresher = self.make_refresher()
        summary = self._refresher.run(self.index)
        for line in summary.log_lines():
            self.log.info("%s", line)
        result = summary.to_dict()
        if self._refresher.fatal_error is not None:
            raise self._refresher.fatal_error
        if summary.aborted:
            # Systemic: the API is unavailable. Stored work is kept; the next run continues.
            raise GistTransientError(f"catalog refresh stopped early: {summary.aborted}")
        if self.fail_on_error and summary.failed:
            raise AirflowFailException(
                f"{summary.failed} video(s) got no gist (fail_on_error=True); "
                f"{summary.stored} stored. See the failures above."
            )
        return result

    def on_kill(self) -> None:
        # Stop starting new videos; the engine still stores what finished before the task ends.
        if self._refresher is not None:
            self._refresher.stop()


def __getattr__(name: str) -> Any:
    # The engine stays importable from here for one release, loaded on first use.
    if name == "GistRefresher":
        from airflow_provider_gist.refresh.engine import GistRefresher

        return GistRefresher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_CONCURRENCY", "GistRefresher", "RefreshGistsOperator"]
