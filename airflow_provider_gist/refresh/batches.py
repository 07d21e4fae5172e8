"""Batch refresh: a catalog's planned videos through ``/analyze/batches`` (Pegasus 1.5).

A sync refresh makes one ``/analyze`` call per video and can never beat the per-call rate limit.
A batch takes up to 1,000 videos in one create call and the API works through them on its own
capacity; the worker only submits, and waits in the triggerer. The refresh runs in *steps*
(the operator's ``execute`` and every resume after the trigger), each of which:

1. **collects** the batches that ended: their results are stored as gists; items that were
   canceled (the batch expired) or failed transiently are left unstored, so the next plan picks
   them up again, up to :data:`MAX_RESUBMITS` times each; other failures are reported;
2. **submits** what is still to do, re-planned exactly as the sync refresh plans (unchanged
   videos cost nothing), in batches of at most 1,000, while the account has fewer active
   batches than ``max_active_batches`` (the API allows 5; other clients may share them);
3. returns the batch to wait for next, or ``None`` when nothing is left.

What survives a retry or a crash lives in ``task_state_store`` and stays small: our batch ids,
how often each failing video was tried, and the summary's counts. Every item's ``custom_id``
is ``<asset id>-<updated_at in ms>-<run key>``: a result names its video and source version
without any listing, and a retry that lost a batch id (a crash between the create and the
save) adopts its batches back by the run key instead of paying for them twice.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_gist.analysis import MAX_BATCH_ITEMS, GistRequest, answer_of_task, batch_body
from airflow_provider_gist.errors import GistModelOutputError, GistRateLimitedError, GistValidationError
from airflow_provider_gist.refresh.plan import (
    CatalogVideo,
    RefreshSummary,
    VideoFailure,
    judge,
    plan_refresh,
    video_from_listing,
)

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.storage.base import GistStore

#: task_state_store key of a batch refresh. Renaming it breaks in-flight retries.
STATE_KEY_BATCHES = "gist_refresh_batches"
#: Batch statuses that hold one of the account's active-batch slots, and those that end a batch.
ACTIVE_STATUSES = ("pending", "processing", "canceling")
TERMINAL_STATUSES = frozenset({"completed", "canceled", "expired"})
#: The API's own limit of active batches per account.
MAX_ACTIVE_BATCHES = 5
#: How many times one video is submitted again after its item was canceled or failed transiently.
MAX_RESUBMITS = 2
#: Item error codes (or words in them) that say "the platform was unwell", not "this video is bad".
_TRANSIENT_MARKERS = ("internal", "unavailable", "timeout", "transient", "overloaded", "rate")
#: Gists are written in chunks of this many, so a large batch is not one huge transaction.
STORE_CHUNK = 200


def run_key(scope: str) -> str:
    """Eight characters naming one task instance's refresh in every ``custom_id`` it submits."""
    return hashlib.sha256(scope.encode()).hexdigest()[:8]


def custom_id_of(video: CatalogVideo, key: str) -> str:
    stamp = _epoch_ms(video.updated_at)
    return f"{video.video_ref}-{stamp}-{key}"


def parse_custom_id(custom_id: object) -> tuple[str, str | None, str] | None:
    """``(asset_id, source_updated_at, run key)`` from one of our ``custom_id``\\ s, else ``None``."""
    if not isinstance(custom_id, str):
        return None
    parts = custom_id.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    asset_id, millis, key = parts
    updated = None if millis == "0" else _iso_of_ms(int(millis))
    return asset_id, updated, key


def _epoch_ms(value: str | None) -> int:
    if not value:
        return 0
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _iso_of_ms(millis: int) -> str:
    when = datetime.fromtimestamp(millis / 1000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_transient(error: Mapping[str, Any] | None) -> bool:
    text = " ".join(str((error or {}).get(k) or "") for k in ("code", "message")).lower()
    return any(marker in text for marker in _TRANSIENT_MARKERS)


@dataclass
class BatchState:
    """What a batch refresh keeps between its steps and tries (JSON, a few KB)."""

    index_id: str
    run_key: str
    #: batch id -> {"collected": bool}, in submission order
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: asset id -> times its item ended canceled or failed (only videos that failed at all)
    attempts: dict[str, int] = field(default_factory=dict)
    all_submitted: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    failures: list[list[str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "index_id": self.index_id,
            "run_key": self.run_key,
            "batches": self.batches,
            "attempts": self.attempts,
            "all_submitted": self.all_submitted,
            "summary": self.summary,
            "failures": self.failures,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchState:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def active(self) -> list[str]:
        return [batch_id for batch_id, info in self.batches.items() if not info.get("collected")]

    def to_summary(self) -> RefreshSummary:
        counts = self.summary
        summary = RefreshSummary(index_id=self.index_id, reasons=dict(counts.get("reasons") or {}))
        for name in ("listed", "skipped", "planned", "deferred", "generated", "stored", "not_attempted"):
            setattr(summary, name, int(counts.get(name) or 0))
        for name in ("output_tokens", "input_tokens"):
            setattr(summary, name, int(counts.get(name) or 0))
        summary.failures = [VideoFailure(*f) for f in self.failures]
        summary.seconds = time.time() - self.started
        return summary


class BatchRefresher:
    """The steps of one batch refresh (see the module's docstring).

    :param hook: the TwelveLabs hook (one per step; the operator closes it).
    :param store: where gists are compared (fingerprints) and written.
    :param template: the gist request every item shares (Pegasus 1.5: checked here).
    :param save: writes the state durably (``task_state_store``) after every change.
    :param max_active_batches: most batches active on the account at once (1..5).
    :param batch_size: videos per batch (1..1,000).
    """

    def __init__(
        self,
        *,
        hook: GistHook,
        store: GistStore,
        template: GistRequest,
        save: Callable[[BatchState], None],
        max_active_batches: int = MAX_ACTIVE_BATCHES,
        batch_size: int = MAX_BATCH_ITEMS,
        max_videos: int | None = None,
        max_resubmits: int = MAX_RESUBMITS,
        log: Any,
    ) -> None:
        if not 1 <= max_active_batches <= MAX_ACTIVE_BATCHES:
            raise GistValidationError(f"max_active_batches must be from 1 to {MAX_ACTIVE_BATCHES}")
        if not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise GistValidationError(f"batch_size must be from 1 to {MAX_BATCH_ITEMS}")
        batch_body(template, [template.video_ref])  # the model must be one batches take
        self.hook = hook
        self.store = store
        self.template = template
        self.save = save
        self.max_active = max_active_batches
        self.batch_size = batch_size
        self.max_videos = max_videos
        self.max_resubmits = max_resubmits
        self.log = log

    # ------------------------------------------------------------------ one step

    def step(self, state: BatchState) -> str | None:
        """Collect what ended, submit what is left; return the batch to wait for, or ``None``."""
        self.collect(state)
        blocking = self.submit(state) if not state.all_submitted else None
        active = state.active
        if active:
            return active[0]
        if blocking is not None:
            # every slot is someone else's: wait for one of their batches to end
            self.log.info("all active-batch slots are taken by other clients; waiting for batch %s", blocking)
            return blocking
        if not state.all_submitted:  # refused with no batch to wait for: left for the next run
            state.summary["not_attempted"] = state.summary.get("unsubmitted", 0)
        return None

    def adopt(self, state: BatchState) -> None:
        """After a lost save, take back the account's active batches that carry our run key."""
        for batch in self.hook.iter_batches(status=list(ACTIVE_STATUSES)):
            batch_id = str(batch.get("batch_id") or "")
            if not batch_id or batch_id in state.batches:
                continue
            first = next(iter(self.hook.batch_results(batch_id)), None)
            parsed = parse_custom_id((first or {}).get("custom_id"))
            if parsed and parsed[2] == state.run_key:
                self.log.info("adopting batch %s, submitted by an earlier try of this task", batch_id)
                state.batches[batch_id] = {"collected": False}
        self.save(state)

    # ------------------------------------------------------------------ collect

    def collect(self, state: BatchState) -> None:
        for batch_id in state.active:
            batch = self.hook.get_batch(batch_id)
            if batch.get("status") not in TERMINAL_STATUSES:
                continue
            self._collect_results(state, batch_id, self.hook.batch_results(batch_id))
            state.batches[batch_id]["collected"] = True
            self.save(state)  # after the store: a crash before this only stores the same rows again

    def _collect_results(self, state: BatchState, batch_id: str, items: Iterable[Mapping[str, Any]]) -> None:
        gists: list[dict[str, Any]] = []
        counts = state.summary
        for item in items:
            parsed = parse_custom_id(item.get("custom_id"))
            if parsed is None:
                continue
            asset_id, updated_at, _ = parsed
            status = item.get("status")
            if status == "ready":
                request = replace(self.template, video_ref=asset_id, index_id=state.index_id)
                try:
                    gist = request.gist_from_analyze(answer_of_task(item), source_updated_at=updated_at)
                except GistModelOutputError as err:
                    self._give_up(state, VideoFailure.from_error(asset_id, err))
                    continue
                gists.append(gist.to_dict())
                counts["output_tokens"] = int(counts.get("output_tokens") or 0) + gist.output_tokens
                counts["input_tokens"] = int(counts.get("input_tokens") or 0) + (gist.input_tokens or 0)
            elif status == "canceled" or (status == "failed" and is_transient(item.get("error"))):
                tries = state.attempts.get(asset_id, 0) + 1
                state.attempts[asset_id] = tries
                if tries > self.max_resubmits:
                    why = (item.get("error") or {}).get("message") or "no reason given"
                    reason = f"{status} in {tries} batches in a row: {why}"
                    self._give_up(state, VideoFailure(asset_id, "transient", reason[:300]))
                else:
                    state.all_submitted = False  # it goes into a later batch
            elif status == "failed":
                error = item.get("error") or {}
                kind = f"batch_{error.get('code') or 'failed'}"
                reason = str(error.get("message") or "failed")[:300]
                self._give_up(state, VideoFailure(asset_id, kind, reason))
        for start in range(0, len(gists), STORE_CHUNK):
            counts["stored"] = int(counts.get("stored") or 0) + self.store.put_many(
                gists[start : start + STORE_CHUNK]
            )
        counts["generated"] = int(counts.get("generated") or 0) + len(gists)
        self.log.info("batch %s ended: %d gist(s) stored", batch_id, len(gists))

    def _give_up(self, state: BatchState, failure: VideoFailure) -> None:
        state.attempts[failure.video_ref] = self.max_resubmits + 1  # never re-planned in this run
        state.failures.append([failure.video_ref, failure.kind, failure.reason])

    # ------------------------------------------------------------------ submit

    def _catalog(self, index_id: str) -> Iterator[CatalogVideo]:
        """The index's ready videos known by asset id, one listing page at a time."""
        for item in self.hook.iter_indexed_assets(index_id, status=["ready"]):
            video = video_from_listing(item)
            if video is not None and video.video_ref_type == "asset_id":
                yield video

    def _candidates(self, state: BatchState) -> Iterator[CatalogVideo]:
        """The videos that need a gist, as the listing goes (recording the plan's counts).

        Without ``max_videos`` the order does not matter, so videos stream out page by page and
        the first batch is submitted after its first thousand videos, not after the whole
        listing. With a cap, the classic plan (new videos first) decides which ones go.
        """
        fingerprints = self.store.fingerprints(state.index_id)
        plan_args = {"types": self.template.types, "model": self.template.model}
        if self.max_videos is not None:
            videos = list(self._catalog(state.index_id))
            args = {**plan_args, "prompt_version": self.template.prompt_version}
            capped = plan_refresh(videos, fingerprints, max_videos=self.max_videos, **args)  # type: ignore[arg-type]
            self._record_plan(state, capped.listed, capped.skipped, capped.deferred, capped.reasons)
            # the cap is per run: videos submitted for the first time count, resubmits do not
            room = max(0, self.max_videos - int(state.summary.get("submitted") or 0))
            for item in plan_refresh(videos, fingerprints, **args).todo:  # type: ignore[arg-type]
                if item.video.video_ref in state.attempts:
                    yield item.video
                elif room > 0:
                    room -= 1
                    yield item.video
            return
        seen: set[str] = set()
        reasons: Counter[str] = Counter()
        judged = judge(
            self._catalog(state.index_id),
            fingerprints,
            seen,
            types=self.template.types,
            model=self.template.model,
            prompt_version=self.template.prompt_version,
        )
        for video, reason in judged:
            if reason is not None:
                reasons[reason] += 1
                yield video
        self._record_plan(state, len(seen), len(seen) - sum(reasons.values()), 0, dict(reasons))

    @staticmethod
    def _record_plan(
        state: BatchState, listed: int, skipped: int, deferred: int, reasons: dict[str, int]
    ) -> None:
        # The first complete plan is the run's: later plans see the run's own gists as unchanged.
        if not state.summary.get("planned_once"):
            state.summary.update(
                planned_once=True,
                listed=listed,
                skipped=skipped,
                planned=sum(reasons.values()) - deferred,
                deferred=deferred,
                reasons=dict(reasons),
            )

    def submit(self, state: BatchState) -> str | None:
        """Submit what is left while slots are free; return a foreign batch to wait for when every
        slot is someone else's (``None`` otherwise)."""
        in_flight = self._in_flight(state)
        account_active = [
            str(b.get("batch_id")) for b in self.hook.iter_batches(status=list(ACTIVE_STATUSES))
        ]
        free = self.max_active - len(account_active)
        left = 0  # videos that need a gist but wait for a later step
        chunk: list[CatalogVideo] = []
        for video in self._candidates(state):
            if video.video_ref in in_flight or state.attempts.get(video.video_ref, 0) > self.max_resubmits:
                continue
            if free <= 0:
                left += 1  # the listing goes on: the plan's counts need all of it
                continue
            chunk.append(video)
            if len(chunk) == self.batch_size:
                free, left = self._submit_chunk(state, chunk, free, left)
                chunk = []
        if chunk:
            if free > 0:
                free, left = self._submit_chunk(state, chunk, free, left)
            else:
                left += len(chunk)
        state.all_submitted = not left
        state.summary["unsubmitted"] = left
        self.save(state)
        if left and not state.active:
            return next((b for b in account_active if b not in state.batches), None)
        return None

    def _submit_chunk(
        self, state: BatchState, chunk: list[CatalogVideo], free: int, left: int
    ) -> tuple[int, int]:
        """Create one batch of ``chunk``; return the slots still free and the videos left over."""
        body = batch_body(self.template, [video.video_ref for video in chunk])
        for request, video in zip(body["requests"], chunk, strict=True):
            request["custom_id"] = custom_id_of(video, state.run_key)
        try:
            created = self.hook.create_batch(body)
        except GistRateLimitedError:
            self.log.info("the account has no free batch slot now (429); submitting the rest later")
            return 0, left + len(chunk)
        state.batches[str(created["batch_id"])] = {"collected": False}
        new = sum(1 for video in chunk if video.video_ref not in state.attempts)
        state.summary["submitted"] = int(state.summary.get("submitted") or 0) + new
        self.save(state)  # at once: a retry must wait for this batch, not submit it again
        self.log.info("submitted batch %s with %d video(s)", created["batch_id"], len(chunk))
        return free - 1, left

    def _in_flight(self, state: BatchState) -> set[str]:
        """Videos in our batches that have not been collected (they must not be submitted twice)."""
        refs: set[str] = set()
        for batch_id in state.active:
            for item in self.hook.batch_results(batch_id):
                parsed = parse_custom_id(item.get("custom_id"))
                if parsed:
                    refs.add(parsed[0])
        return refs

    # ------------------------------------------------------------------ kill

    def cancel(self, state: BatchState) -> None:
        """Cancel what this refresh submitted and is still running (queued items are not billed)."""
        for batch_id in state.active:
            self.hook.cancel_batch(batch_id)
            self.log.info("canceled batch %s", batch_id)
