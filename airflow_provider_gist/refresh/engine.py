"""The catalog refresh engine: list -> plan -> generate (threads, shared pacer) -> store -> summary.

:class:`GistRefresher` does the work of
:class:`~airflow_provider_gist.operators.refresh.RefreshGistsOperator` and is usable without
Airflow's task machinery (the benchmark drives it directly): a pool of threads, each with its own
:class:`~airflow_provider_gist.hooks.gist.GistHook` (a ``requests.Session`` is not meant to be
shared between threads) but all sharing ONE set of
:class:`~airflow_provider_gist.client.pacing.RateLimitPacers`, so the whole pool spends each
rate-limit window's budget as soon as it opens and then waits for the next one instead of
drawing 429s. The pure half (what to regenerate, the summary) is :mod:`.plan`.

It streams: the catalog is listed and planned one page at a time (:mod:`.stream`), and at most
``2 x concurrency`` planned videos are handed to the threads ahead of them, so its memory and its
work per video do not grow with the catalog. It stops cleanly: on an interrupt, a timeout, a kill
(:meth:`GistRefresher.stop`) or a store error it starts no more videos, tells the calls in flight
not to retry, waits a bounded grace for them and stores everything that finished.
See docs/performance.md for the design and the measurements.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    GistValidationError,
)
from airflow_provider_gist.hooks.gist import GistHook
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
from airflow_provider_gist.refresh.progress import progress_line, progress_report
from airflow_provider_gist.refresh.stream import STALE_MEMORY, StreamingPlan
from airflow_provider_gist.storage.base import GistStore

#: Gists are written when this many are waiting, or when FLUSH_SECONDS have passed, whichever
#: comes first: a killed run loses at most about a second of work, and the store sees a few
#: dozen transactions per thousand videos instead of one per video.
FLUSH_SIZE = 50
FLUSH_SECONDS = 1.0
PROGRESS_SECONDS = 10.0
#: Planned videos handed to the thread pool, per thread: enough to keep every thread busy while
#: the main thread lists the next page, never the whole catalog.
QUEUE_PER_THREAD = 2
#: Seconds a stopping run waits for the calls already in flight (they no longer retry): their
#: answers are paid for, so they are stored; a call still out after that is given up.
STOP_GRACE_SECONDS = 30.0
#: Videos per listing page (the API's largest page), which is also what the store is asked
#: about at a time.
PAGE_SIZE = 50
#: Failure kinds that say "the API is unwell" rather than "this video is bad".
SYSTEMIC_KINDS = frozenset({"transient", "rate_limited"})

HookFactory = Callable[[RateLimitPacers], GistHook]


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
    :param stop_grace: seconds a stopping run waits for the calls in flight, to store their gists.
    :param stale_memory: stale videos kept to be done after the new ones; past it, a second pass
        over the listing finds them (see :mod:`.stream`).
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
        stop_grace: float = STOP_GRACE_SECONDS,
        stale_memory: int = STALE_MEMORY,
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
        if stop_grace < 0 or stale_memory < 0:
            raise GistValidationError("stop_grace and stale_memory must be >= 0")
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
        self.stop_grace = stop_grace
        self.stale_memory = stale_memory
        self.log = logger or logging.getLogger(__name__)
        #: One set of pacers for every hook of this run: the rate limit is per account, not per thread.
        self.pacers = RateLimitPacers()
        self._hook_factory = hook_factory or (
            lambda pacers: GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id, pacers=pacers)
        )
        self._stop = threading.Event()
        #: why :meth:`stop` was called from outside (on_kill), if it was
        self._stop_reason: str | None = None
        self._hook: GistHook | None = None
        self._model: str | None = model_name
        self._prompt_version: str | None = None
        #: The auth/config error that stopped the last run, if any (the operator re-raises it).
        self.fatal_error: BaseException | None = None
        self._aborted: str | None = None
        self._consecutive_systemic = 0
        self._judge_lock = threading.Lock()
        #: every fingerprint of the index, only for stores that cannot read them per page
        self._whole_store: dict[str, dict[str, Any]] | None = None
        #: Called (main thread) with each progress report (:mod:`.progress`); the operator pushes it.
        self.on_progress: Callable[[dict[str, Any]], None] | None = None

    # ------------------------------------------------------------------ setup

    @property
    def hook(self) -> GistHook:
        """The hook used for listing (and the template for the workers' connection settings)."""
        if self._hook is None:
            self._hook = self._new_hook()
        return self._hook

    def _new_hook(self) -> GistHook:
        hook = self._hook_factory(self.pacers)
        # A stopping run must not wait out retries (up to the retry deadline) or rate windows.
        hook.stopping = self._stop.is_set
        return hook

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

    def stop(self, reason: str = "stopped from outside (the task was killed)") -> None:
        """Stop a running :meth:`generate` (any thread; ``on_kill``): no video is started any more,
        the calls in flight do not retry, and what finished within ``stop_grace`` is stored. The
        run then ends with ``summary.aborted`` set to ``reason``."""
        self._stop_reason = reason
        self._stop.set()

    # ------------------------------------------------------------------ list and plan

    def resolve_index(self, index: str) -> str:
        """The id of ``index`` (an id, checked with one GET, or a name); see ``GistHook.resolve_index``."""
        return self.hook.resolve_index(index)

    def iter_catalog(self, index_id: str) -> Iterator[CatalogVideo]:
        """Every ready video of the index, one listing page (50 per call) at a time."""
        if self.listing == "videos":
            items = self.hook.iter_videos(index_id)  # the legacy list holds finished videos only
        else:
            items = self.hook.iter_indexed_assets(index_id, status=["ready"])
        unusable = 0
        for item in items:
            video = video_from_listing(item)
            if video is None:
                unusable += 1
            else:
                yield video
        if unusable:
            self.log.warning("%d listed item(s) had neither asset_id nor _id; ignored", unusable)

    def list_catalog(self, index_id: str) -> list[CatalogVideo]:
        """:meth:`iter_catalog` as a list (small catalogs and tests; a refresh streams it)."""
        return list(self.iter_catalog(index_id))

    def pages(self, index_id: str) -> Iterator[list[CatalogVideo]]:
        """:meth:`iter_catalog` in pages of :data:`PAGE_SIZE`, as the store is asked about them."""
        videos = self.iter_catalog(index_id)
        while page := list(itertools.islice(videos, PAGE_SIZE)):
            yield page

    def stored_fingerprints(self, index_id: str, video_refs: list[str]) -> dict[str, dict[str, Any]]:
        """The store's fingerprints of ``video_refs`` (one query per listing page)."""
        if self._whole_store is not None:
            return {ref: self._whole_store[ref] for ref in video_refs if ref in self._whole_store}
        if "video_refs" in inspect.signature(self.store.fingerprints).parameters:
            return self.store.fingerprints(index_id, video_refs=video_refs)
        # A store written before fingerprints took video_refs: read them all, once.
        self.log.warning(
            "store %s cannot read fingerprints per page; reading them all at once (memory grows "
            "with the index)",
            type(self.store).__name__,
        )
        self._whole_store = self.store.fingerprints(index_id)
        return self.stored_fingerprints(index_id, video_refs)

    def streaming_plan(self, index_id: str) -> StreamingPlan:
        """The plan of this run, made as the catalog is listed (see :mod:`.stream`)."""
        self._resolve_request_settings()
        self._whole_store = None
        return StreamingPlan(
            lambda: self.pages(index_id),
            lambda refs: self.stored_fingerprints(index_id, refs),
            types=self.types,
            model=self.model,
            prompt_version=self.prompt_version,
            max_videos=self.max_videos,
            stale_memory=self.stale_memory,
        )

    def plan(self, index_id: str, videos: Sequence[CatalogVideo] | None = None) -> RefreshPlan:
        """The whole plan at once: one listing and one store query, no analyze call.

        Holds the whole catalog and every stored fingerprint in memory; :meth:`run` streams
        instead (:meth:`streaming_plan`).
        """
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

    def _worker_hook(self) -> GistHook:
        """A hook for one worker thread, built and connected here in the calling thread.

        Building a session resolves the connection; doing it in the main thread keeps connection
        lookups (which go through the task's supervisor) out of the worker threads.
        """
        hook = self._new_hook()
        hook.url_for("analyze")  # resolves settings and the base URL
        _ = hook.session
        return hook

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

    def generate(self, index_id: str, todo: Iterable[PlannedVideo], summary: RefreshSummary) -> None:
        """Generate and store the gists of ``todo``; fold every outcome into ``summary``.

        ``todo`` is consumed as the threads free up: at most ``2 x concurrency`` videos are
        queued ahead of them, so a streamed plan lists the catalog only as fast as it is worked
        through. Raises only if the store fails, or when the main thread is interrupted
        (``KeyboardInterrupt``, Airflow's ``AirflowTaskTimeout``); then, as after :meth:`stop`,
        nothing more is started, the calls in flight do not retry, and every gist that finished
        within ``stop_grace`` is stored before the error goes on. Everything else becomes a
        :class:`VideoFailure` in the summary; those videos are not stored, so the next run
        retries them. An auth or configuration error (no other video can succeed either) or
        ``max_consecutive_failures`` transient errors in a row stop the run early:
        ``summary.aborted`` says why, the error is kept in :attr:`fatal_error`, and the rest of
        the plan is counted as ``not_attempted`` (listed, never sent to the analysis).
        """
        items = iter(todo)
        hooks: queue.SimpleQueue[GistHook] = queue.SimpleQueue()
        all_hooks: list[GistHook] = []
        local = threading.local()

        def take_hook() -> None:
            local.hook = hooks.get_nowait()
            all_hooks.append(local.hook)

        buffer: list[dict[str, Any]] = []
        clock = {"flush": time.monotonic(), "progress": time.monotonic(), "start": time.monotonic()}
        self.fatal_error, self._aborted, self._consecutive_systemic = None, None, 0
        #: submitted and not collected yet: the only record of work in flight
        owner: dict[Future[_Outcome], PlannedVideo] = {}

        def flush() -> None:
            if buffer:
                summary.stored += self.store.put_many(buffer)
                buffer.clear()  # only once stored: a failed write is tried again on the way out
            clock["flush"] = time.monotonic()

        def collect(done: Iterable[Future[_Outcome]]) -> None:
            for future in done:
                if future.cancelled():
                    summary.not_attempted += 1
                else:
                    self._fold(future.result(), summary, buffer)
                del owner[future]  # after folding: an interrupt in between loses nothing
                if len(buffer) >= self.flush_size:
                    flush()

        executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="gist-refresh", initializer=take_hook
        )
        built, ahead = 0, QUEUE_PER_THREAD * self.concurrency
        failing: BaseException | None = None
        try:
            while True:
                while not self._stop.is_set() and len(owner) < ahead:
                    item = next(items, None)  # may list the next page and read the store
                    if item is None:
                        break
                    if built < self.concurrency:  # one hook per thread the pool may start
                        hooks.put(self._worker_hook())
                        built += 1
                    owner[executor.submit(self._generate_one, item, index_id, local)] = item
                if not owner or self._stop.is_set():
                    break
                done, _ = wait(set(owner), timeout=self.flush_seconds, return_when=FIRST_COMPLETED)
                collect(done)
                now = time.monotonic()
                if now - clock["flush"] >= self.flush_seconds:
                    flush()
                if now - clock["progress"] >= PROGRESS_SECONDS:
                    clock["progress"] = now
                    self._progress(summary, todo, now - clock["start"])
            self._wind_down(owner, collect, summary)
            if self._aborted is not None and self._stop_reason is None:
                self._count_the_rest(items, summary)
        except BaseException as err:
            failing = err
            self._stop.set()  # whatever it was: start nothing more, retry nothing more
            self._wind_down(owner, collect, summary)
            raise
        finally:
            try:
                flush()
            except Exception as err:
                if failing is None:
                    raise
                self.log.error("the finished gists could not be stored either: %s", err)
            finally:
                executor.shutdown(wait=not owner, cancel_futures=True)
                while not hooks.empty():  # built but never taken by a thread
                    all_hooks.append(hooks.get_nowait())
                for hook in all_hooks:
                    hook.close()
                summary.aborted = self._aborted or self._stop_reason
                self._progress(summary, todo, time.monotonic() - clock["start"])  # the final counts

    def _progress(self, summary: RefreshSummary, todo: Iterable[PlannedVideo], elapsed: float) -> None:
        """Log a progress line and hand the report on; progress never fails the refresh."""
        try:
            report = progress_report(summary, todo, elapsed)
            self.log.info("%s", progress_line(report))
            if self.on_progress is not None:
                self.on_progress(report)
        except Exception as err:
            self.log.warning("could not report progress: %s", err)

    def _fold(self, outcome: _Outcome, summary: RefreshSummary, buffer: list[dict[str, Any]]) -> None:
        if not outcome.attempted:
            summary.not_attempted += 1
        elif outcome.gist is not None:
            summary.generated += 1
            usage = outcome.gist.get("usage") or {}
            summary.output_tokens += int(usage.get("output_tokens") or 0)
            summary.input_tokens += int(usage.get("input_tokens") or 0)
            buffer.append(outcome.gist)
        else:
            assert outcome.error is not None
            summary.add_failure(VideoFailure.from_error(outcome.item.video.video_ref, outcome.error))

    def _wind_down(
        self,
        owner: dict[Future[_Outcome], PlannedVideo],
        collect: Callable[[Iterable[Future[_Outcome]]], None],
        summary: RefreshSummary,
    ) -> None:
        """Stopping: cancel what has not started, give the calls in flight ``stop_grace`` seconds.

        Those calls no longer retry (their hooks see the stop), so they end with their current
        attempt; their gists are paid for and are collected for the store. What is still out
        after the grace is given up, and reported.
        """
        if not owner:
            return
        for future in list(owner):
            future.cancel()  # only those no thread has started
        deadline = time.monotonic() + self.stop_grace
        while owner:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done, _ = wait(set(owner), timeout=left, return_when=FIRST_COMPLETED)
            collect(done)
        if owner:
            self.log.warning(
                "%d call(s) still in flight %gs after the run began to stop; their gists, if they "
                "come, are not stored (the next run redoes those videos)",
                len(owner),
                self.stop_grace,
            )
            for item in owner.values():
                summary.add_failure(
                    VideoFailure(item.video.video_ref, "interrupted", "still in flight when the run stopped")
                )

    def _count_the_rest(self, items: Iterator[PlannedVideo], summary: RefreshSummary) -> None:
        """After an early stop, count the rest of the plan as not attempted (listing only: no
        analysis call, and no listing retry, since the hooks see the stop)."""
        try:
            for _ in items:
                summary.not_attempted += 1
        except Exception as err:
            self.log.warning("the listing stopped too (%s): the counts cover what was listed", err)

    # ------------------------------------------------------------------ run

    def run(self, index: str) -> RefreshSummary:
        """Resolve ``index`` (id or name), then plan and generate as the catalog is listed."""
        started = time.monotonic()
        self._stop.clear()
        self._stop_reason = None
        self._resolve_request_settings()
        index_id = self.resolve_index(index)
        plan = self.streaming_plan(index_id)
        summary = RefreshSummary(index_id=index_id)
        self.log.info(
            "index %s: listing and planning page by page; model %s, prompt %s, concurrency %d",
            index_id,
            self.model,
            self.prompt_version,
            self.concurrency,
        )
        try:
            self.generate(index_id, plan, summary)
        finally:
            summary.listed, summary.skipped, summary.reasons = plan.listed, plan.skipped, plan.reasons
            summary.planned, summary.deferred = plan.planned, plan.deferred
            summary.seconds = time.monotonic() - started
            if self._hook is not None:
                self._hook.close()
            # The run owns its pacers: close the shared pacing table's connection, if any.
            self.pacers.unshare()
            self.log.info(
                "index %s: %d ready video(s)%s, %d unchanged, %d to generate (%s), %d deferred%s",
                index_id,
                plan.listed,
                "" if plan.complete else " listed so far",
                plan.skipped,
                plan.planned,
                ", ".join(f"{k} {v}" for k, v in plan.reasons.items()) or "-",
                plan.deferred,
                "; the stale ones took a second pass over the listing" if plan.second_pass else "",
            )
        return summary
