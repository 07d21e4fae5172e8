"""Indexed assets (= videos): indexing a ready asset, lookups, metadata edits, embeddings, JSON."""

from __future__ import annotations

from typing import Any

from . import content
from .api_errors import invalid, missing, not_found
from .metadata import check_metadata
from .resources import Asset, Index, IndexedAsset
from .state_assets import AssetStore
from .state_indexes import IndexStore
from .timeline import Schedule, rfc3339

EMBEDDING_OPTIONS = ("visual", "audio", "transcription", "visual-text")
_EMBEDDING_DIMS = 8  # real embeddings are much longer; these are fake anyway
_EMBEDDING_SEGMENT_SECONDS = 10.0


class VideoStore(IndexStore, AssetStore):
    def index_asset(self, index_id: str, body: Any) -> IndexedAsset:
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        index = self.get_index(index_id)
        index.check_accepts_videos()
        asset_id = body.get("asset_id")
        if asset_id is None:
            raise missing("asset_id")
        if not isinstance(asset_id, str):
            raise invalid("asset_id must be a string.")
        asset = self.get_asset(asset_id)
        status = asset.schedule.status(self.now())
        if status != "ready":
            raise invalid(f"The asset {asset_id!r} is {status}; only ready assets can be indexed.")
        stream = body.get("enable_video_stream", False)
        if not isinstance(stream, bool):
            raise invalid("enable_video_stream must be a boolean.")
        metadata = check_metadata(body.get("user_metadata") or {}, allow_null=False)
        return self._add_video(index, asset, dict(metadata), stream, task_id=None)

    def _add_video(
        self,
        index: Index,
        asset: Asset,
        metadata: dict[str, Any],
        stream: bool,
        *,
        task_id: str | None,
        video_id: str | None = None,
        schedule: Schedule | None = None,
        models: list[str] | None = None,
    ) -> IndexedAsset:
        now = self.now()
        broken = asset.error is not None
        schedule = schedule or Schedule.spread(
            now,
            self.timing.indexing_seconds,
            ["pending", "queued", "indexing"],
            "failed" if broken else "ready",
        )
        video = IndexedAsset(
            id=video_id or self.new_id(),
            index_id=index.id,
            asset_id=asset.id,
            media=asset.media,
            user_metadata=metadata,
            enable_video_stream=stream,
            created_at=now,
            schedule=schedule,
            seq=self.next_seq(),
            task_id=task_id,
            models=list(models if models is not None else index.indexing_models),
        )
        self.indexed[video.id] = video
        return video

    def get_video(self, index_id: str, video_id: str, kind: str = "video") -> IndexedAsset:
        self.get_index(index_id)
        video = self.indexed.get(video_id)
        if video is None or video.index_id != index_id:
            raise not_found(kind, video_id)
        return video

    def find_video(self, video_id: str) -> IndexedAsset:
        video = self.indexed.get(video_id)
        if video is None:
            raise not_found("video", video_id)
        return video

    def update_video_metadata(self, index_id: str, video_id: str, body: Any, kind: str = "video") -> None:
        video = self.get_video(index_id, video_id, kind)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        if "user_metadata" not in body:
            raise missing("user_metadata")
        patch = check_metadata(body["user_metadata"], allow_null=True)
        for key, value in patch.items():
            if value is None:
                video.user_metadata.pop(key, None)
            else:
                video.user_metadata[key] = value
        video.metadata_updated_at = self.now()
        self._edits += 1

    def delete_video(self, index_id: str, video_id: str, kind: str = "video") -> None:
        self.get_video(index_id, video_id, kind)
        del self.indexed[video_id]

    def _system_metadata(self, video: IndexedAsset, *, size: bool) -> dict[str, Any]:
        media = video.media
        meta: dict[str, Any] = {
            "filename": media.filename,
            "duration": media.duration,
            "fps": media.fps,
            "width": media.width,
            "height": media.height,
        }
        if size:
            meta["size"] = float(media.size)
        return meta

    def _hls(self, video: IndexedAsset, now: float) -> dict[str, Any]:
        status = video.schedule.status(now)
        return {
            "video_url": f"https://emulator.invalid/hls/{video.id}/stream.m3u8",
            "thumbnail_urls": [f"https://emulator.invalid/thumbnails/{video.id}.jpg"],
            "status": {"ready": "COMPLETE", "failed": "ERROR"}.get(status, "PROCESSING"),
            "updated_at": rfc3339(video.schedule.changed_at(now)),
        }

    def embedding_json(self, video: IndexedAsset, options: list[str]) -> dict[str, Any]:
        """Fake, deterministic segment embeddings. Only a Marengo-indexed video has any: that is
        where the API shows which model indexed a video (``embedding.model_name``)."""
        bad = [o for o in options if o not in EMBEDDING_OPTIONS]
        if bad:
            raise invalid(f"embedding_option must be among {list(EMBEDDING_OPTIONS)}, not {bad}.")
        marengo = next((m for m in video.models if m.startswith("marengo")), None)
        if marengo is None:
            raise invalid(
                f"The video {video.id!r} was not indexed with a Marengo model, so it has no embeddings."
            )
        segments = []
        for option in dict.fromkeys(options):
            start = 0.0
            while start < video.media.duration:
                end = min(start + _EMBEDDING_SEGMENT_SECONDS, video.media.duration)
                floats = [
                    round(
                        (content.digest_int(video.id, option, str(start), str(d)) % 20001 - 10000) / 10000, 4
                    )
                    for d in range(_EMBEDDING_DIMS)
                ]
                segments.append(
                    {
                        "float": floats,
                        "start_offset_sec": round(start, 2),
                        "end_offset_sec": round(end, 2),
                        "embedding_option": option,
                        "embedding_scope": "clip",
                    }
                )
                start = end
        return {"model_name": marengo, "video_embedding": {"segments": segments}}

    def indexed_asset_json(self, video: IndexedAsset, *, detail: bool) -> dict[str, Any]:
        now = self.now()
        status = video.schedule.status(now)
        body: dict[str, Any] = {
            "_id": video.id,
            "asset_id": video.asset_id,
            "status": "pending" if status == "validating" else status,
            "created_at": rfc3339(video.created_at),
            "updated_at": rfc3339(video.updated_at(now)),
            "system_metadata": self._system_metadata(video, size=True),
        }
        if status == "ready":
            body["indexed_at"] = rfc3339(video.schedule.final_at)
        if detail:
            body["user_metadata"] = dict(video.user_metadata)
            if video.enable_video_stream:
                body["hls"] = self._hls(video, now)
        return body

    def video_json(self, video: IndexedAsset, *, detail: bool) -> dict[str, Any]:
        now = self.now()
        body: dict[str, Any] = {
            "_id": video.id,
            "asset_id": video.asset_id,
            "created_at": rfc3339(video.created_at),
            "updated_at": rfc3339(video.updated_at(now)),
            "system_metadata": self._system_metadata(video, size=not detail),
        }
        if video.schedule.status(now) == "ready":
            body["indexed_at"] = rfc3339(video.schedule.final_at)
        if detail:
            body["user_metadata"] = dict(video.user_metadata)
            if video.enable_video_stream:
                body["hls"] = self._hls(video, now)
        return body
