"""Handlers: asynchronous analysis (``/analyze/tasks``) and batch analysis (``/analyze/batches``).

Bodies are checked by :mod:`.async_params`, the processing model lives in :mod:`.jobs`. Errors of
these operations are nested ``{"error": {code, message}}`` bodies (the pipeline renders them),
except ``GET /analyze/tasks``, whose declared error is the classic flat body.
"""

from __future__ import annotations

from typing import Any

from .async_params import MAX_BATCH_HOURS, MODES, parse_batch, parse_task
from .calls import Call, Reply
from .faults import FaultRule
from .handlers import HandlerBase
from .state import ApiError, MediaInfo, clip_seconds, invalid

TASK_STATUSES = ("queued", "pending", "processing", "ready", "failed")
BATCH_STATUSES = ("pending", "processing", "canceling", "canceled", "completed", "expired")
JSONL = "application/jsonl"


class AsyncAnalysisRoutes(HandlerBase):
    # analysis tasks ------------------------------------------------------------------------
    def create_analysis_task(self, call: Call) -> Reply:
        body = self._json_body(call)
        replay = self.jobs.replay(call.idempotency_key, body)
        if replay is not None:
            return Reply(202, replay)
        spec = parse_task(body)
        media, metadata = self.state.resolve_analysis_input({"video": spec.video}, spec.model)
        task = self.jobs.create_task(
            spec, media, metadata, spec.video.get("asset_id"), self.faults.pick_task(call.op.key)
        )
        answer = {
            "task_id": task.id,
            "status": task.status(self.jobs.cursor, self.jobs.settings.startup_seconds),
        }
        self.jobs.remember(call.idempotency_key, body, answer)
        return Reply(202, answer)

    def list_analysis_tasks(self, call: Call) -> Reply:
        filters: dict[str, str] = {}
        for name in ("status", "video_url", "asset_id", "video_id", "analysis_mode"):
            values = call.query.getall(name, [])
            if len(values) > 1:
                raise invalid(f"The {name} parameter takes one value.")
            if values:
                filters[name] = values[0]
        if filters.get("status", "ready") not in TASK_STATUSES:
            raise invalid(f"status must be one of {list(TASK_STATUSES)}.")
        if filters.get("analysis_mode", "general") not in MODES:
            raise invalid(f"analysis_mode must be one of {list(MODES)}.")
        tasks = self.jobs.list_tasks(filters)
        return self._paged(call, tasks, lambda t: self.jobs.task_json(t, listing=True))

    def get_analysis_task(self, call: Call) -> Reply:
        return Reply(200, self.jobs.task_json(self.jobs.get_task(call.params["task_id"])))

    def delete_analysis_task(self, call: Call) -> Reply:
        self.jobs.delete_task(call.params["task_id"])
        return Reply(200)

    # batches -------------------------------------------------------------------------------
    def create_batch(self, call: Call) -> Reply:
        """400 (body) -> 404 (unknown asset) -> 400 (over 2,000 hours) -> 409 (asset not ready)
        -> 429 (5 active batches) -> 201. Nothing is created unless every check passes."""
        spec = parse_batch(self._json_body(call))
        assets = []
        for i, item in enumerate(spec.items):
            asset_id = item.video["asset_id"]
            asset = self.state.assets.get(asset_id)
            if asset is None:
                raise ApiError(
                    404,
                    "resource_not_exist",
                    f"requests[{i}].video.asset_id: the asset {asset_id!r} does not exist.",
                )
            assets.append(asset)
        hours = (
            sum(
                clip_seconds(a.media.duration, s.start_time, s.end_time)
                for a, s in zip(assets, spec.items, strict=True)
            )
            / 3600
        )
        if hours > MAX_BATCH_HOURS:
            raise invalid(
                f"The batch holds {hours:,.1f} hours of video; a batch takes up to {MAX_BATCH_HOURS:,}."
            )
        now = self.state.now()
        for i, asset in enumerate(assets):
            status = asset.schedule.status(now)
            if status != "ready":
                raise ApiError(
                    409,
                    "video_not_ready",
                    f"requests[{i}].video.asset_id: the asset {asset.id!r} is {status}, not ready.",
                )
        self.jobs.check_batch_capacity()
        inputs: list[tuple[MediaInfo, dict[str, Any] | None, str, FaultRule | None]] = [
            (asset.media, asset.user_metadata, asset.id, self.faults.pick_task(call.op.key))
            for asset in assets
        ]
        batch = self.jobs.create_batch(spec, inputs)
        return Reply(201, self.jobs.created_json(batch))

    def list_batches(self, call: Call) -> Reply:
        statuses = call.query.getall("status", [])
        if any(s not in BATCH_STATUSES for s in statuses):
            raise invalid(f"status must be among {list(BATCH_STATUSES)}.")
        modes = call.query.getall("analysis_mode", [])
        if any(m not in MODES for m in modes):
            raise invalid(f"analysis_mode must be among {list(MODES)}.")
        batches = self.jobs.list_batches(statuses, modes)
        return self._paged(call, batches, self.jobs.batch_json)

    def get_batch(self, call: Call) -> Reply:
        return Reply(200, self.jobs.batch_json(self.jobs.get_batch(call.params["batch_id"])))

    def cancel_batch(self, call: Call) -> Reply:
        return Reply(202, self.jobs.batch_json(self.jobs.cancel_batch(call.params["batch_id"])))

    def delete_batch(self, call: Call) -> Reply:
        self.jobs.delete_batch(call.params["batch_id"])
        return Reply(200)

    def get_batch_results(self, call: Call) -> Reply:
        """JSON Lines, one line per item in submission order; callable while the batch runs."""
        batch = self.jobs.get_batch(call.params["batch_id"])
        return Reply(200, events=self.jobs.result_lines(batch), events_type=JSONL)
