"""Asynchronous analysis: analysis tasks, batches, and the slots that process them.

The processing model (see docs/emulator.md): the account has ``slots`` analysis slots. Tasks (a
single ``POST /analyze/tasks`` or one batch item) wait ``queued`` in one FIFO queue, in creation
order; a free slot takes the oldest. A task in a slot is ``pending`` for ``startup_seconds``, then
``processing``; it leaves the slot ``ready`` (or ``failed``) after
``startup_seconds + seconds_per_minute * minutes analysed``. A task bound to fail (a video over
2 hours or under 4 seconds, a deleted asset, a ``task_failure`` fault) fails at the end of its
``pending`` phase.

Like the rest of the emulator nothing runs in the background: :meth:`JobQueue.settle` replays
every event (a slot frees up, a batch expires) in time order up to the clock's now, and every API
request settles first. Jumping the clock (``POST /_emulator/clock``) therefore moves tasks exactly.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from . import content
from .async_params import SEGMENTS, BatchSpec, TaskSpec
from .faults import FaultRule
from .state import (
    ASYNC_MAX_SECONDS,
    MIN_ANALYSIS_SECONDS,
    Analysis,
    ApiError,
    MediaInfo,
    State,
    clip_seconds,
    rfc3339,
)

# Spec text of the truncation warning on an async result (AnalyzeTaskError).
ASYNC_LENGTH_WARNING = (
    "output truncated: the generation reached the configured max_tokens. The partial output is "
    "returned; raise max_tokens (up to 98304) if you need a longer response."
)
TERMINAL_BATCH = ("completed", "canceled", "expired")
IDEMPOTENCY_SECONDS = 86400.0


@dataclass
class JobSettings:
    slots: int = 4
    startup_seconds: float = 2.0
    seconds_per_minute: float = 3.0
    batch_expiry_seconds: float = 86400.0
    batch_retention_seconds: float = 30 * 86400.0
    max_active_batches: int = 5

    def __post_init__(self) -> None:
        if self.slots < 1 or self.max_active_batches < 0:
            raise ValueError("analysis_slots must be >= 1 and max_active_batches >= 0")
        if min(self.startup_seconds, self.seconds_per_minute) < 0:
            raise ValueError("analysis timings must be >= 0")
        if min(self.batch_expiry_seconds, self.batch_retention_seconds) <= 0:
            raise ValueError("batch_expiry_seconds and batch_retention_seconds must be > 0")


@dataclass
class AnalysisTask:
    id: str
    seq: int
    spec: TaskSpec
    media: MediaInfo
    asset_id: str | None
    created_at: float
    work: float  # seconds in a slot
    result: Analysis | None
    error: dict[str, str] | None = None  # {"code"?, "message"} when bound to fail
    batch_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    final: str | None = None  # ready | failed | canceled

    def status(self, now: float, startup: float) -> str:
        if self.final is not None:
            return self.final
        if self.started_at is None:
            return "queued"
        return "pending" if now < self.started_at + startup else "processing"

    @property
    def ends_at(self) -> float:
        assert self.started_at is not None
        return self.started_at + self.work


@dataclass
class Batch:
    id: str
    seq: int
    model: str
    mode: str
    created_at: float
    expires_at: float
    task_ids: list[str]
    cancel_requested_at: float | None = None
    expired_at: float | None = None
    terminal: str | None = None  # a terminal status never changes: remembered once reached


@dataclass
class JobQueue:
    state: State
    settings: JobSettings = field(default_factory=JobSettings)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tasks: dict[str, AnalysisTask] = {}
        self.batches: dict[str, Batch] = {}
        self.queue: deque[AnalysisTask] = deque()
        self.running: list[AnalysisTask] = []
        self.cursor = self.state.now()
        # Active batches held by "someone else" on the account (control API): count, never listed.
        self.occupied = 0
        self.idempotency: dict[str, tuple[str, dict[str, Any], float]] = {}
        self.counters: Counter[str] = Counter()

    # ---------------------------------------------------------------------- the clock
    def settle(self) -> float:
        """Replay every slot release and batch expiry up to now, in time order."""
        now = max(self.state.now(), self.cursor)
        while True:
            self._fill()
            finish = min((t.ends_at for t in self.running), default=float("inf"))
            expiring = [b for b in self.batches.values() if b.expires_at <= now and not self._terminal(b)]
            expiry = min((b.expires_at for b in expiring), default=float("inf"))
            at = min(finish, expiry)
            if at > now:
                break
            self.cursor = max(self.cursor, at)
            if expiry <= finish:
                for batch in [b for b in expiring if b.expires_at <= at]:
                    self._expire(batch, at)
            else:
                for task in [t for t in self.running if t.ends_at <= at]:
                    self._finish(task, at)
        self.cursor = now
        self._fill()
        retention = self.settings.batch_retention_seconds
        for batch in [b for b in self.batches.values() if b.created_at + retention <= now]:
            self._drop_batch(batch)
        self._fill()
        return now

    def _fill(self) -> None:
        while self.queue and len(self.running) < self.settings.slots:
            task = self.queue.popleft()
            task.started_at = self.cursor
            if task.asset_id is not None and task.asset_id not in self.state.assets and task.error is None:
                # The asset was deleted while the task waited: it cannot be read.
                task.error = {"code": "asset_unavailable", "message": "The asset could not be read."}
                task.result, task.work = None, self.settings.startup_seconds
            self.running.append(task)

    def _finish(self, task: AnalysisTask, at: float) -> None:
        self.running.remove(task)
        task.finished_at = at
        task.final = "failed" if task.error is not None else "ready"

    def _cancel(self, tasks: list[AnalysisTask], at: float) -> None:
        ids = {t.id for t in tasks}
        self.running = [t for t in self.running if t.id not in ids]
        self.queue = deque(t for t in self.queue if t.id not in ids)
        for task in tasks:
            task.finished_at = at
            task.final = "canceled"

    def _expire(self, batch: Batch, at: float) -> None:
        """Unfinished items (queued or processing) are canceled; the batch is ``expired``."""
        self._cancel([t for t in self.batch_tasks(batch) if t.final is None], at)
        batch.expired_at = at

    # ---------------------------------------------------------------------- tasks
    def new_task(
        self,
        spec: TaskSpec,
        media: MediaInfo,
        metadata: dict[str, Any] | None,
        asset_id: str | None,
        fault: FaultRule | None,
        *,
        batch_id: str | None = None,
    ) -> AnalysisTask:
        """A task queued now; its answer (or its failure) is decided here, revealed when it ends."""
        now = self.cursor
        window = clip_seconds(media.duration, spec.start_time, spec.end_time)
        error = _failure(spec, media, fault)
        variant = fault.variant if fault is not None and fault.kind == "model_output" else None
        result = None if error else self._answer(spec, media, metadata, window, variant)
        startup = self.settings.startup_seconds
        work = startup if error else startup + self.settings.seconds_per_minute * window / 60
        task = AnalysisTask(
            id=self.state.new_id(),
            seq=self.state.next_seq(),
            spec=spec,
            media=media,
            asset_id=asset_id,
            created_at=now,
            work=work,
            result=result,
            error=error,
            batch_id=batch_id,
        )
        self.tasks[task.id] = task
        self.queue.append(task)
        return task

    def _answer(
        self,
        spec: TaskSpec,
        media: MediaInfo,
        metadata: dict[str, Any] | None,
        window: float,
        variant: str | None,
    ) -> Analysis:
        data = None
        if spec.mode == SEGMENTS:
            start = spec.start_time or 0.0
            data = content.segments_json(
                spec.segment_definitions,
                media.filename,
                metadata,
                (start, start + window),
                time_format=str((spec.response_format or {}).get("segment_time_format", "seconds")),
                min_segment=spec.min_segment,
                max_segment=spec.max_segment,
            )
        return self.state.render_analysis(
            media,
            metadata,
            spec.prompt_text,
            spec.schema,
            variant,
            spec.max_tokens,
            window=window,
            data=data,
            length_warning=ASYNC_LENGTH_WARNING,
        )

    def create_task(
        self,
        spec: TaskSpec,
        media: MediaInfo,
        metadata: dict[str, Any] | None,
        asset_id: str | None,
        fault: FaultRule | None,
    ) -> AnalysisTask:
        task = self.new_task(spec, media, metadata, asset_id, fault)
        self.counters["analysis_tasks"] += 1
        self._fill()
        return task

    def get_task(self, task_id: str) -> AnalysisTask:
        task = self.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "resource_not_exist", f"The analysis task {task_id!r} does not exist.")
        return task

    def delete_task(self, task_id: str) -> None:
        task = self.get_task(task_id)
        status = task.status(self.cursor, self.settings.startup_seconds)
        if task.batch_id is not None and task.batch_id in self.batches:
            raise ApiError(
                409,
                "task_cannot_be_deleted",
                f"The task belongs to the batch {task.batch_id!r}; delete the batch once it is terminal.",
            )
        if status in ("pending", "processing"):
            raise ApiError(
                409, "task_cannot_be_deleted", f"The task is {status}; it cannot be deleted while processed."
            )
        if task in self.queue:
            self.queue.remove(task)
        del self.tasks[task_id]

    def replay(self, key: str | None, body: Any) -> dict[str, Any] | None:
        """The first answer to an earlier create with this ``Idempotency-Key`` (same body), else None."""
        if not key:
            return None
        entry = self.idempotency.get(key)
        if entry is None or self.cursor - entry[2] >= IDEMPOTENCY_SECONDS:
            return None
        if entry[0] != _fingerprint(body):
            raise ApiError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body.",
            )
        self.counters["idempotent_replays"] += 1
        return dict(entry[1])

    def remember(self, key: str | None, body: Any, answer: dict[str, Any]) -> None:
        if key:
            self.idempotency[key] = (_fingerprint(body), dict(answer), self.cursor)

    def task_json(self, task: AnalysisTask, *, listing: bool = False) -> dict[str, Any]:
        status = task.status(self.cursor, self.settings.startup_seconds)
        source: dict[str, Any] = dict(task.spec.video)
        if source.get("type") == "base64_string":
            source = {"type": "base64_string"}
        # "Present on a best-effort basis once the video has been processed."
        if (
            status in ("processing", "ready", "failed")
            and (task.error or {}).get("code") != "asset_unavailable"
        ):
            source["system_metadata"] = {"duration": task.media.duration}
        body: dict[str, Any] = {
            "task_id": task.id,
            "custom_id": task.spec.custom_id,
            "video_source": source,
            "request_params": task.spec.request_params(listing=listing),
            # The spec's task statuses have no "canceled": a canceled batch item reads as failed.
            "status": "failed" if status == "canceled" else status,
            "created_at": rfc3339(task.created_at),
        }
        if task.finished_at is not None:
            body["completed_at"] = rfc3339(task.finished_at)
        if status == "ready" and task.result is not None:
            body["result"] = _result_json(task.result)
            if task.result.error:
                body["error"] = {"message": task.result.error}
        elif status == "failed" and task.error is not None:
            body["error"] = {"message": task.error["message"]}
        elif status == "canceled":
            body["error"] = {
                "message": "Canceled: the batch was canceled or expired before this item finished."
            }
        return body

    def list_tasks(self, filters: dict[str, str]) -> list[AnalysisTask]:
        startup = self.settings.startup_seconds
        out = []
        for task in self.tasks.values():
            video = task.spec.video
            status = task.status(self.cursor, startup)
            if "status" in filters and ("failed" if status == "canceled" else status) != filters["status"]:
                continue
            if "video_url" in filters and video.get("url") != filters["video_url"]:
                continue
            if "asset_id" in filters and video.get("asset_id") != filters["asset_id"]:
                continue
            if "video_id" in filters:  # tasks of indexed videos cannot be created any more
                continue
            if "analysis_mode" in filters and task.spec.mode != filters["analysis_mode"]:
                continue
            out.append(task)
        return sorted(out, key=lambda t: (t.created_at, t.seq), reverse=True)

    # ---------------------------------------------------------------------- batches
    def active_batches(self) -> int:
        return self.occupied + sum(not self._terminal(b) for b in self.batches.values())

    def check_batch_capacity(self) -> None:
        limit = self.settings.max_active_batches
        if self.active_batches() >= limit:
            raise ApiError(
                429,
                "too_many_requests",
                f"You already have {limit} active batches. Wait for one to complete, be canceled or "
                "expire, then submit again.",
            )

    def create_batch(
        self, spec: BatchSpec, inputs: list[tuple[MediaInfo, dict[str, Any] | None, str, FaultRule | None]]
    ) -> Batch:
        now = self.cursor
        batch = Batch(
            id=self.state.new_id(),
            seq=self.state.next_seq(),
            model=spec.model,
            mode=spec.mode,
            created_at=now,
            expires_at=now + self.settings.batch_expiry_seconds,
            task_ids=[],
        )
        for item, (media, metadata, asset_id, fault) in zip(spec.items, inputs, strict=True):
            task = self.new_task(item, media, metadata, asset_id, fault, batch_id=batch.id)
            batch.task_ids.append(task.id)
        self.batches[batch.id] = batch
        self.counters["batches"] += 1
        self.counters["batch_tasks"] += len(batch.task_ids)
        self._fill()
        return batch

    def get_batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "resource_not_exist", f"The batch {batch_id!r} does not exist.")
        return batch

    def batch_tasks(self, batch: Batch) -> list[AnalysisTask]:
        return [self.tasks[t] for t in batch.task_ids if t in self.tasks]

    def batch_status(self, batch: Batch) -> str:
        if batch.terminal is not None:
            return batch.terminal
        tasks = self.batch_tasks(batch)
        done = all(t.final is not None for t in tasks)
        if batch.expired_at is not None:
            status = "expired"
        elif batch.cancel_requested_at is not None:
            status = "canceled" if done else "canceling"
        elif done:
            status = "completed"
        else:
            status = "processing" if any(t.started_at is not None for t in tasks) else "pending"
        if status in TERMINAL_BATCH:
            batch.terminal = status
        return status

    def _terminal(self, batch: Batch) -> bool:
        return self.batch_status(batch) in TERMINAL_BATCH

    def cancel_batch(self, batch_id: str) -> Batch:
        batch = self.get_batch(batch_id)
        status = self.batch_status(batch)
        if status in TERMINAL_BATCH:
            raise ApiError(409, f"batch_{status}", f"The batch is already {status} and cannot be canceled.")
        if batch.cancel_requested_at is None:
            batch.cancel_requested_at = self.cursor
            queued = [t for t in self.batch_tasks(batch) if t.final is None and t.started_at is None]
            self._cancel(queued, self.cursor)
        return batch

    def expire_batch(self, batch: Batch) -> bool:
        """Control API: the batch expires now (False if it is already terminal)."""
        if self._terminal(batch):
            return False
        batch.expires_at = min(batch.expires_at, self.cursor)
        self.settle()
        return True

    def delete_batch(self, batch_id: str) -> None:
        batch = self.get_batch(batch_id)
        status = self.batch_status(batch)
        if status not in TERMINAL_BATCH:
            raise ApiError(
                409,
                "batch_not_terminal",
                f"The batch is {status}; only completed, canceled or expired batches can be deleted. "
                "Cancel it first.",
            )
        self._drop_batch(batch)

    def _drop_batch(self, batch: Batch) -> None:
        tasks = self.batch_tasks(batch)
        self._cancel([t for t in tasks if t.final is None], self.cursor)
        for task in tasks:
            del self.tasks[task.id]
        del self.batches[batch.id]

    def batch_json(self, batch: Batch) -> dict[str, Any]:
        status = self.batch_status(batch)
        tasks = self.batch_tasks(batch)
        counts = Counter(self.item_status(t) for t in tasks)
        body: dict[str, Any] = {
            "batch_id": batch.id,
            "analysis_mode": batch.mode,
            "model_name": batch.model,
            "status": status,
            "total_items": len(batch.task_ids),
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.expires_at),
        }
        ends = [t.finished_at for t in tasks if t.finished_at is not None]
        end = max(ends, default=batch.cancel_requested_at or batch.created_at)
        if status == "completed":
            body["completed_at"] = rfc3339(end)
        elif status == "canceled":
            body["canceled_at"] = rfc3339(max(end, batch.cancel_requested_at or end))
        elif status == "expired" and batch.expired_at is not None:
            body["expired_at"] = rfc3339(batch.expired_at)
        for name in ("queued", "processing", "ready", "failed", "canceled"):
            body[f"{name}_items"] = counts.get(name, 0)
        return body

    def created_json(self, batch: Batch) -> dict[str, Any]:
        return {
            "batch_id": batch.id,
            "status": self.batch_status(batch),
            "total_items": len(batch.task_ids),
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.expires_at),
            "items": [{"task_id": t.id, "custom_id": t.spec.custom_id} for t in self.batch_tasks(batch)],
        }

    def item_status(self, task: AnalysisTask) -> str:
        """Batch item statuses have no ``pending``: a task in a slot is ``processing``."""
        status = task.status(self.cursor, self.settings.startup_seconds)
        return "processing" if status == "pending" else status

    def result_lines(self, batch: Batch) -> list[dict[str, Any]]:
        lines = []
        for task in self.batch_tasks(batch):
            status = self.item_status(task)
            line: dict[str, Any] = {"task_id": task.id, "custom_id": task.spec.custom_id, "status": status}
            if status == "ready" and task.result is not None:
                line["data"] = _result_json(task.result)
            elif status == "failed" and task.error is not None:
                line["error"] = dict(task.error)
            lines.append(line)
        return lines

    def list_batches(self, statuses: list[str], modes: list[str]) -> list[Batch]:
        out = [
            b
            for b in self.batches.values()
            if (not statuses or self.batch_status(b) in statuses) and (not modes or b.mode in modes)
        ]
        return sorted(out, key=lambda b: (b.created_at, b.seq), reverse=True)

    # ---------------------------------------------------------------------- control API
    def describe(self) -> dict[str, Any]:
        startup = self.settings.startup_seconds
        return {
            "now": self.cursor,
            "slots": self.settings.slots,
            "running": [
                {"task_id": t.id, "batch_id": t.batch_id, "started_at": t.started_at, "ends_at": t.ends_at}
                for t in self.running
            ],
            "queued": [t.id for t in self.queue],
            "tasks": dict(Counter(t.status(self.cursor, startup) for t in self.tasks.values())),
            "batches": {b.id: self.batch_status(b) for b in self.batches.values()},
            "active_batches": self.active_batches(),
            "occupied_batches": self.occupied,
            "max_active_batches": self.settings.max_active_batches,
            "created": self.created_counts(),
        }

    def created_counts(self) -> dict[str, int]:
        return {
            name: self.counters.get(name, 0)
            for name in ("analysis_tasks", "batches", "batch_tasks", "idempotent_replays")
        }


def _failure(spec: TaskSpec, media: MediaInfo, fault: FaultRule | None) -> dict[str, str] | None:
    """Why a task will fail, decided at creation (the API finds out while processing)."""
    if media.duration > ASYNC_MAX_SECONDS:
        return {
            "code": "video_duration_too_long",
            "message": "Video duration exceeds maximum allowed duration (2 hours).",
        }
    if media.duration < MIN_ANALYSIS_SECONDS:
        return {
            "code": "video_duration_too_short",
            "message": f"Video duration is below the minimum of {MIN_ANALYSIS_SECONDS:g} seconds.",
        }
    for name in ("start_time", "end_time"):
        value = getattr(spec, name)
        if value is not None and value > media.duration:
            return {
                "code": "parameter_invalid",
                "message": f"{name} ({value:g}) is beyond the end of the video ({media.duration:g} seconds).",
            }
    if fault is not None and fault.kind == "task_failure":
        error = {"message": fault.message or "The analysis failed (emulated fault)."}
        if fault.code:
            error["code"] = fault.code
        return error
    return None


def _result_json(result: Analysis) -> dict[str, Any]:
    return {
        "generation_id": result.id,
        "data": result.data,
        "finish_reason": result.finish_reason,
        "usage": {"output_tokens": result.output_tokens, "input_tokens": result.input_tokens},
    }


def _fingerprint(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
