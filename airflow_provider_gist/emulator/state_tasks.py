"""Legacy indexing tasks: one call makes the asset, the video and the task that tracks them."""

from __future__ import annotations

from typing import Any

from . import content
from .api_errors import ApiError, not_found
from .resources import Task
from .state_videos import VideoStore
from .timeline import Schedule, rfc3339


class TaskStore(VideoStore):
    def create_task(
        self,
        index_id: str,
        *,
        video_url: str | None,
        file_name: str | None,
        file_size: int | None,
        user_metadata: dict[str, Any] | None,
        enable_video_stream: bool,
    ) -> Task:
        index = self.get_index(index_id)
        index.check_accepts_videos()
        now = self.now()
        total = self.timing.indexing_seconds
        if video_url is not None:
            asset = self.create_asset(
                method="url",
                source=video_url,
                filename=content.display_name(video_url),
                size=None,
                user_metadata=None,
                ready_in=total,
            )
        else:
            name = file_name or "video.mp4"
            asset = self.create_asset(
                method="direct",
                source=name,
                filename=name,
                size=file_size,
                user_metadata=None,
                ready_in=total,
            )
        broken = asset.error is not None
        schedule = Schedule.spread(
            now, total, ["validating", "pending", "queued", "indexing"], "failed" if broken else "ready"
        )
        video = self._add_video(
            index, asset, dict(user_metadata or {}), enable_video_stream, task_id=None, schedule=schedule
        )
        task = Task(
            id=self.new_id(),
            index_id=index.id,
            video_id=video.id,
            asset_id=asset.id,
            media=asset.media,
            enable_video_stream=enable_video_stream,
            created_at=now,
            schedule=schedule,
            seq=self.next_seq(),
        )
        video.task_id = task.id
        self.tasks[task.id] = task
        return task

    def get_task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise not_found("task", task_id)
        return task

    def delete_task(self, task_id: str) -> None:
        task = self.get_task(task_id)
        status = task.schedule.status(self.now())
        if status not in ("ready", "failed"):
            raise ApiError(
                400,
                "task_cannot_be_deleted",
                f"The task is {status}; only ready or failed tasks can be deleted.",
            )
        if status == "ready" and task.video_id in self.indexed:
            raise ApiError(400, "task_cannot_be_deleted", "Delete the task's video first.")
        del self.tasks[task_id]

    def task_json(self, task: Task, *, detail: bool) -> dict[str, Any]:
        now = self.now()
        media = task.media
        body: dict[str, Any] = {
            "_id": task.id,
            "video_id": task.video_id,
            "index_id": task.index_id,
            "status": task.schedule.status(now),
            "created_at": rfc3339(task.created_at),
            "updated_at": rfc3339(task.schedule.changed_at(now)),
            "system_metadata": {
                "filename": media.filename,
                "duration": media.duration,
                "width": media.width,
                "height": media.height,
            },
        }
        video = self.indexed.get(task.video_id)
        if detail and task.enable_video_stream and video is not None:
            body["hls"] = self._hls(video, now)
        return body
