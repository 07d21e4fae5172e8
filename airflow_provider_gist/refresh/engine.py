"""The catalog refresh engine: list -> plan -> generate (threads, shared pacer) -> store -> summary.

:class:`GistRefresher` does the work of
:class:`~airflow_provider_gist.operators.refresh.RefreshGistsOperator` and is usable without
Airflow's task machinery (the benchmark drives it directly): a pool of threads, each with its own
:class:`~airflow_provider_gist.hooks.gist.GistHook` (a ``requests.Session`` is not meant to be
shared between threads) but all sharing ONE set of
:class:`~airflow_provider_gist.client.pacing.RateLimitPacers`, so the whole pool spends each
rate-limit window's budget as soon as it opens and then waits for the next one instead of
drawing 429s. The pure half (what to regenerate, the summary) is :mod:`.plan`.
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
from typing import Any

from airflow_provider_gist.analysis import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    prepare_gist_request,
    validate_temperature,
)
from airflow_provider_gist.client.pacing import RateLimitPacers
from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.errors import (
    GistAuthError,
    GistConfigError,
    GistNotFoundError,
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import GistHook
from airflow_provider_gist.ids import validate_index_name
from airflow_provider_gist.model import parse_types
from airflow_provider_gist.refresh.plan import (
    DEFAULT_CONCURRENCY,
    LISTINGS,
    MAX_CONCURRENCY,
    CatalogVideo,
    PlannedVideo,
    RefreshPlan,
    RefreshSummary,
    VideoFailure,
    plan_refresh,
    video_from_listing,
)
from airflow_provider_gist.storage.base import GistStore

#: Gists are written when this many are waiting, or when FLUSH_SECONDS have passed, whichever
#: comes first: a killed run loses at most about a second of work, and the store sees a few
#: dozen transactions per thousand videos instead of one per video.
FLUSH_SIZE = 50
FLUSH_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
#: Failure kinds that say "the API is unwell" rather than "this video is bad".
SYSTEMIC_KINDS = frozenset({"transient", "rate_limited"})

HookFactory = Callable[[RateLimitPacers], GistHook]


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
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        types: Any = None,
        model_name: str | None = None,
        prompt: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
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
        self.types = parse_types(types)
        self.prompt = prompt
        self.temperature = validate_temperature(temperature)
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
        model = self._model or self.hook.settings.default_model
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
