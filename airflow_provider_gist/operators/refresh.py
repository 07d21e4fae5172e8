"""RefreshGistsOperator: keep the gists of a whole index current, incrementally and at the rate limit.

One task lists the index's ready videos, compares them with the store's fingerprints
(:func:`airflow_provider_gist.refresh.plan_refresh`), generates only the missing or stale gists
with bounded concurrency, stores each batch as it completes and returns a small summary.

The work is done by :class:`GistRefresher` (usable without Airflow's task machinery, e.g. by the
benchmark): a pool of threads, each with its own :class:`GistHook` (a ``requests.Session`` is not
meant to be shared between threads) but all sharing ONE
:class:`~airflow_provider_gist.retry.RateLimitPacer`, so the whole pool spends each rate-limit
window's budget as soon as it opens and then waits for the next one instead of drawing 429s.
See docs/performance.md for the design and the measurements.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_gist import gist as gist_model
from airflow_provider_gist.errors import (
    GistAuthError,
    GistConfigError,
    GistNotFoundError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import GistHook, prepare_gist_request
from airflow_provider_gist.ids import validate_index_name
from airflow_provider_gist.refresh import (
    LISTINGS,
    CatalogVideo,
    PlannedVideo,
    RefreshPlan,
    RefreshSummary,
    VideoFailure,
    plan_refresh,
    video_from_listing,
)
from airflow_provider_gist.retry import RateLimitPacers
from airflow_provider_gist.storage.base import GistStore
from airflow_provider_gist.storage.objects import ObjectGistStore
from airflow_provider_gist.storage.sql import DEFAULT_TABLE, SqlGistStore

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_CONCURRENCY = 16
#: More threads than this only add memory and GIL contention: the rate limit is the bottleneck.
MAX_CONCURRENCY = 128
#: Gists are written when this many are waiting, or when FLUSH_SECONDS have passed, whichever
#: comes first: a killed run loses at most about a second of work, and the store sees a few
#: dozen transactions per thousand videos instead of one per video.
FLUSH_SIZE = 50
FLUSH_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
#: Failure kinds that say "the API is unwell" rather than "this video is bad".
SYSTEMIC_KINDS = frozenset({"transient", "rate_limited"})

HookFactory = Callable[[RateLimitPacers], GistHook]


def make_gist_store(
    store: str = "sql",
    *,
    sql_conn_id: str | None = None,
    table: str = DEFAULT_TABLE,
    object_base: str | None = None,
) -> GistStore:
    """The store the arguments describe (same choices as ``StoreGistsOperator``)."""
    if store == "sql":
        return SqlGistStore(conn_id=sql_conn_id or None, table=table)
    if store == "objects":
        return ObjectGistStore(object_base or None)
    raise GistValidationError(f"store must be 'sql' or 'objects', got {store!r}")


def _looks_like_id(value: str) -> bool:
    # TwelveLabs ids are 24 hex characters; anything else is taken as an index name.
    return len(value) == 24 and all(ch in "0123456789abcdefABCDEF" for ch in value)


@dataclass
class _Outcome:
    item: PlannedVideo
    gist: dict[str, Any] | None = None
    error: BaseException | None = None
    attempted: bool = True


class GistRefresher:
    """The refresh engine: list -> plan -> generate (threads, shared pacer) -> store -> summary.

    :param store: where gists are read (fingerprints) and written (``put_many``).
    :param twelvelabs_conn_id: the TwelveLabs connection.
    :param types: gist types (default all three).
    :param model_name: analysis model; ``None`` = the connection's default model.
    :param prompt: custom prompt (its hash becomes the prompt version); ``None`` = built-in.
    :param temperature: sampling temperature 0..1.
    :param max_tokens: output budget per answer.
    :param concurrency: worker threads, i.e. the most ``/analyze`` calls in flight at once.
    :param max_videos: generate at most this many gists per run (``None`` = no cap).
    :param listing: ``indexed_assets`` (current API) or ``videos`` (legacy list).
    :param max_consecutive_failures: stop the run after this many transient/rate-limit failures
        in a row (the API is down, not one video bad); default ``max(10, 2 * concurrency)``.
    :param hook_factory: builds a hook around the shared pacer (tests and benchmarks).
    """

    def __init__(
        self,
        *,
        store: GistStore,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
        types: Any = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = gist_model.DEFAULT_TEMPERATURE,
        max_tokens: int = gist_model.DEFAULT_MAX_TOKENS,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_videos: int | None = None,
        listing: str = "indexed_assets",
        flush_size: int = FLUSH_SIZE,
        flush_seconds: float = FLUSH_SECONDS,
        max_consecutive_failures: int | None = None,
        hook_factory: HookFactory | None = None,
        logger: Any = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise GistValidationError("concurrency must be an integer")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise GistValidationError(f"concurrency must be from 1 to {MAX_CONCURRENCY}")
        if max_videos is not None and (isinstance(max_videos, bool) or not isinstance(max_videos, int)):
            raise GistValidationError("max_videos must be an integer or None")
        if listing not in LISTINGS:
            raise GistValidationError(f"listing must be one of {', '.join(LISTINGS)}, got {listing!r}")
        if flush_size < 1 or flush_seconds <= 0:
            raise GistValidationError("flush_size must be >= 1 and flush_seconds > 0")
        self.store = store
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self.types = gist_model.parse_types(types)
        self.prompt = prompt
        self.temperature = gist_model.validate_temperature(temperature)
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.max_videos = max_videos
        self.listing = listing
        self.flush_size = flush_size
        self.flush_seconds = flush_seconds
        self.max_consecutive_failures = max_consecutive_failures or max(10, 2 * concurrency)
        self.log = logger or logging.getLogger(__name__)
        #: One set of pacers for every hook of this run: the rate limit is per account, not per thread.
        self.pacers = RateLimitPacers()
        self._hook_factory = hook_factory or (
            lambda pacers: GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id, pacers=pacers)
        )
        self._stop = threading.Event()
        self._hook: GistHook | None = None
        self._model: str | None = model_name
        self._prompt_version: str | None = None
        #: The auth/config error that stopped the last run, if any (the operator re-raises it).
        self.fatal_error: BaseException | None = None
        self._aborted: str | None = None
        self._consecutive_systemic = 0
        self._judge_lock = threading.Lock()

    # ------------------------------------------------------------------ setup

    @property
    def hook(self) -> GistHook:
        """The hook used for listing (and the template for the workers' connection settings)."""
        if self._hook is None:
            self._hook = self._hook_factory(self.pacers)
        return self._hook

    def _resolve_request_settings(self) -> None:
        """Validate model, prompt, temperature and tokens once, before any listing or call.

        The prompt version and model name are what stored fingerprints are compared with, so
        they come from the same code that builds each request (``prepare_gist_request``).
        """
        if self._prompt_version is not None:
            return
        model = self._model or self.hook.settings["default_model"]
        request = prepare_gist_request(
            asset_id="refresh-settings-check",
            video_id=None,
            types=self.types,
            model_name=model,
            prompt=self.prompt,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        self._model, self._prompt_version = request.model, request.prompt_version

    @property
    def model(self) -> str:
        self._resolve_request_settings()
        assert self._model is not None
        return self._model

    @property
    def prompt_version(self) -> str:
        self._resolve_request_settings()
        assert self._prompt_version is not None
        return self._prompt_version

    def stop(self) -> None:
        """Ask a running :meth:`generate` to stop starting videos (what is done is still stored)."""
        self._stop.set()

    # ------------------------------------------------------------------ list and plan

    def resolve_index(self, index: str) -> str:
        """The id of ``index``: a 24-hex id is checked with one GET, anything else is looked up by name."""
        if not isinstance(index, str) or not index.strip():
            raise GistValidationError("index must be an index id or name")
        index = index.strip()
        if _looks_like_id(index):
            return str(self.hook.get_index(index)["_id"])
        found = self.hook.find_index_by_name(validate_index_name(index, "index"))
        if found is None:
            raise GistNotFoundError(f"there is no index named {index!r}")
        return str(found["_id"])

    def list_catalog(self, index_id: str) -> list[CatalogVideo]:
        """Every ready video of the index (all pages, 50 per call)."""
        if self.listing == "videos":
            items = self.hook.list_videos(index_id)  # the legacy list holds finished videos only
        else:
            items = list(self.hook.iter_indexed_assets(index_id, status=["ready"]))
        videos = [video for video in map(video_from_listing, items) if video is not None]
        if len(videos) < len(items):
            self.log.warning(
                "%d listed item(s) had neither asset_id nor _id; ignored", len(items) - len(videos)
            )
        return videos

    def plan(self, index_id: str, videos: Sequence[CatalogVideo] | None = None) -> RefreshPlan:
        """Compare the catalog with the store: one listing and one store query, no analyze call."""
        self._resolve_request_settings()
        catalog = self.list_catalog(index_id) if videos is None else list(videos)
        return plan_refresh(
            catalog,
            self.store.fingerprints(index_id),
            types=self.types,
            model=self.model,
            prompt_version=self.prompt_version,
            max_videos=self.max_videos,
        )

    # ------------------------------------------------------------------ generate

    def _worker_hooks(self, count: int) -> queue.SimpleQueue[GistHook]:
        """Hooks for the worker threads, built and connected here in the calling thread.

        Building a session resolves the connection; doing it up front keeps connection lookups
        (which go through the task's supervisor) out of the worker threads.
        """
        hooks: queue.SimpleQueue[GistHook] = queue.SimpleQueue()
        for _ in range(count):
            hook = self._hook_factory(self.pacers)
            hook.url_for("analyze")  # resolves settings and the base URL
            _ = hook.session
            hooks.put(hook)
        return hooks

    def _generate_one(self, item: PlannedVideo, index_id: str, local: threading.local) -> _Outcome:
        if self._stop.is_set():
            return _Outcome(item, attempted=False)
        video = item.video
        refs = {"asset_id": None, "video_id": None, video.video_ref_type: video.video_ref}
        try:
            gist = local.hook.generate_gist(
                **refs,
                types=self.types,
                model_name=self.model,
                prompt=self.prompt,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                index_id=index_id,
                source_updated_at=video.updated_at,
            )
        except Exception as err:  # one video's failure is reported, never raised to the others
            self._judge(VideoFailure.from_error(video.video_ref, err), err)
            return _Outcome(item, error=err)
        self._judge(None, None)
        return _Outcome(item, gist=gist.to_dict())

    def _judge(self, failure: VideoFailure | None, err: BaseException | None) -> None:
        """Decide, in the worker, whether the run must stop, so no further video is started.

        An auth or configuration error means no other video can succeed; a long run of
        transient failures means the API is down. Both stop the run at once (deciding this in
        the collecting thread would let the workers start many more doomed calls meanwhile).
        """
        with self._judge_lock:
            if failure is None:
                self._consecutive_systemic = 0
                return
            if isinstance(err, GistAuthError | GistConfigError):
                if self.fatal_error is None:
                    self.fatal_error = err
                    self._aborted = f"{failure.kind}: {failure.reason}"
                self._stop.set()
                return
            if failure.kind in SYSTEMIC_KINDS:
                self._consecutive_systemic += 1
            else:
                self._consecutive_systemic = 0
            if self._consecutive_systemic >= self.max_consecutive_failures and not self._stop.is_set():
                self._aborted = (
                    f"{self._consecutive_systemic} videos in a row failed with transient or rate-limit "
                    "errors: the API looks unavailable, so the rest is left for the next run"
                )
                self._stop.set()

    def generate(self, index_id: str, todo: Sequence[PlannedVideo], summary: RefreshSummary) -> None:
        """Generate and store the gists of ``todo``; fold every outcome into ``summary``.

        Raises only if the store fails. Everything else becomes a :class:`VideoFailure` in the
        summary; those videos are not stored, so the next run retries them. An auth or
        configuration error (no other video can succeed either) or ``max_consecutive_failures``
        transient errors in a row stop the run early: ``summary.aborted`` says why, the error is
        kept in :attr:`fatal_error`, and the videos not started count as ``not_attempted``.
        """
        if not todo:
            return
        workers = min(self.concurrency, len(todo))
        hooks = self._worker_hooks(workers)
        all_hooks: list[GistHook] = []
        local = threading.local()

        def take_hook() -> None:
            local.hook = hooks.get_nowait()
            all_hooks.append(local.hook)

        buffer: list[dict[str, Any]] = []
        last_flush = last_progress = time.monotonic()
        self.fatal_error, self._aborted, self._consecutive_systemic = None, None, 0

        def flush() -> None:
            nonlocal last_flush
            if buffer:
                summary.stored += self.store.put_many(buffer)
                buffer.clear()
            last_flush = time.monotonic()

        executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="gist-refresh", initializer=take_hook
        )
        try:
            pending: set[Future[_Outcome]] = {
                executor.submit(self._generate_one, item, index_id, local) for item in todo
            }
            while pending:
                done, pending = wait(pending, timeout=self.flush_seconds, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if not outcome.attempted:
                        summary.not_attempted += 1
                    elif outcome.gist is not None:
                        summary.generated += 1
                        usage = outcome.gist.get("usage") or {}
                        summary.output_tokens += int(usage.get("output_tokens") or 0)
                        summary.input_tokens += int(usage.get("input_tokens") or 0)
                        buffer.append(outcome.gist)
                        if len(buffer) >= self.flush_size:
                            flush()
                    else:
                        assert outcome.error is not None
                        summary.failures.append(
                            VideoFailure.from_error(outcome.item.video.video_ref, outcome.error)
                        )
                now = time.monotonic()
                if now - last_flush >= self.flush_seconds:
                    flush()
                if now - last_progress >= PROGRESS_SECONDS:
                    last_progress = now
                    self.log.info(
                        "progress: %d/%d done (%d generated, %d failed)",
                        summary.generated + summary.failed + summary.not_attempted,
                        len(todo),
                        summary.generated,
                        summary.failed,
                    )
        finally:
            # Whatever happened (a kill, a store error), keep what finished; videos not started
            # are cancelled, calls in flight end within the hook's timeouts.
            try:
                flush()
            finally:
                executor.shutdown(wait=True, cancel_futures=True)
                while not hooks.empty():  # built but never taken by a thread
                    all_hooks.append(hooks.get_nowait())
                for hook in all_hooks:
                    hook.close()
                summary.aborted = self._aborted

    # ------------------------------------------------------------------ run

    def run(self, index: str) -> RefreshSummary:
        """Resolve ``index`` (id or name), plan and generate; return the run's summary."""
        started = time.monotonic()
        self._stop.clear()
        self._resolve_request_settings()
        index_id = self.resolve_index(index)
        plan = self.plan(index_id)
        summary = RefreshSummary.from_plan(index_id, plan)
        self.log.info(
            "index %s: %d ready video(s), %d unchanged, %d to generate (%s), %d deferred; "
            "model %s, prompt %s, concurrency %d",
            index_id,
            plan.listed,
            plan.skipped,
            len(plan.todo),
            ", ".join(f"{k} {v}" for k, v in plan.reasons.items()) or "-",
            plan.deferred,
            self.model,
            self.prompt_version,
            self.concurrency,
        )
        try:
            self.generate(index_id, plan.todo, summary)
        finally:
            summary.seconds = time.monotonic() - started
            if self._hook is not None:
                self._hook.close()
        return summary


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
        temperature: float = gist_model.DEFAULT_TEMPERATURE,
        max_tokens: int = gist_model.DEFAULT_MAX_TOKENS,
        max_videos: int | str | None = None,
        concurrency: int | str = DEFAULT_CONCURRENCY,
        listing: str = "indexed_assets",
        store: str = "sql",
        sql_conn_id: str | None = None,
        table: str = DEFAULT_TABLE,
        object_base: str | None = None,
        fail_on_error: bool = False,
        max_consecutive_failures: int | None = None,
        twelvelabs_conn_id: str = GistHook.default_conn_name,
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
        return GistRefresher(
            store=make_gist_store(
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


__all__ = [
    "DEFAULT_CONCURRENCY",
    "GistRefresher",
    "RefreshGistsOperator",
    "make_gist_store",
]
