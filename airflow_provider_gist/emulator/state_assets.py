"""Assets: create (a 'corrupt' name or URL, or an empty file, fails), metadata edits, delete, JSON."""

from __future__ import annotations

import mimetypes
from typing import Any

from .api_errors import ApiError, invalid, missing, not_found
from .media import MediaInfo
from .metadata import check_metadata
from .resources import Asset
from .state_core import StateCore
from .timeline import Schedule, rfc3339


class AssetStore(StateCore):
    def create_asset(
        self,
        *,
        method: str,
        source: str,
        filename: str,
        size: int | None,
        user_metadata: dict[str, Any] | None,
        enable_hls: bool = False,
        enable_thumbnail: bool = False,
        ready_in: float | None = None,
        asset_id: str | None = None,
    ) -> Asset:
        now = self.now()
        delay = self.timing.asset_ready_seconds if ready_in is None else ready_in
        broken = "corrupt" in source.lower() or "corrupt" in filename.lower() or size == 0
        final = "failed" if broken else "ready"
        asset = Asset(
            id=asset_id or self.new_id(),
            method=method,
            media=MediaInfo.guess(filename, size),
            source=source,
            user_metadata=user_metadata,
            enable_hls=enable_hls,
            enable_thumbnail=enable_thumbnail,
            created_at=now,
            schedule=Schedule.spread(now, delay, ["processing"], final),
            seq=self.next_seq(),
            error="The file could not be decoded (emulated failure: 'corrupt' in its name or URL, or empty)."
            if broken
            else None,
        )
        self.assets[asset.id] = asset
        return asset

    def get_asset(self, asset_id: str) -> Asset:
        asset = self.assets.get(asset_id)
        if asset is None:
            raise not_found("asset", asset_id)
        return asset

    def update_asset_metadata(self, asset_id: str, body: Any, *, replace: bool) -> None:
        """PATCH merges (``null`` deletes a key); PUT replaces. Empty strings are ignored by both,
        and PUT ignores ``null`` too (per the spec)."""
        asset = self.get_asset(asset_id)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        if "user_metadata" not in body:
            raise missing("user_metadata")
        patch = check_metadata(body["user_metadata"], allow_null=True)
        current = {} if replace else dict(asset.user_metadata or {})
        for key, value in patch.items():
            if value == "":
                continue
            if value is None:
                if not replace:
                    current.pop(key, None)
                continue
            current[key] = value
        asset.user_metadata = current or None

    def clear_asset_metadata(self, asset_id: str) -> None:
        self.get_asset(asset_id).user_metadata = None

    def delete_asset(self, asset_id: str, *, force: bool) -> None:
        self.get_asset(asset_id)
        users = [v.id for v in self.indexed.values() if v.asset_id == asset_id]
        if users and not force:
            raise ApiError(
                409,
                "asset_in_use",
                f"The asset {asset_id!r} is used by {len(users)} indexed asset(s); pass force=true.",
            )
        for video_id in users:
            del self.indexed[video_id]
        del self.assets[asset_id]

    def asset_json(self, asset: Asset, *, detail: bool) -> dict[str, Any]:
        now = self.now()
        status = asset.schedule.status(now)
        body: dict[str, Any] = {
            "_id": asset.id,
            "method": asset.method,
            "status": status,
            "filename": asset.media.filename,
            "file_type": mimetypes.guess_type(asset.media.filename)[0] or "video/mp4",
            "created_at": rfc3339(asset.created_at),
        }
        if asset.user_metadata is not None:
            body["user_metadata"] = asset.user_metadata
        if not detail:
            return body
        sub_status = {"processing": "processing", "ready": "ready", "failed": "error"}[status]
        if asset.enable_hls:
            body["hls"] = {
                "manifest_url": f"https://emulator.invalid/hls/{asset.id}/master.m3u8",
                "status": sub_status,
            }
        if asset.enable_thumbnail:
            body["thumbnail"] = {
                "representative_url": f"https://emulator.invalid/thumbnails/{asset.id}.jpg",
                "status": sub_status,
            }
        if status == "ready":
            media = asset.media
            body["size"] = media.size
            body["duration"] = media.duration
            body["technical_metadata"] = {
                "file_size_bytes": media.size,
                "file_mime_type": body["file_type"],
                "video_width": media.width,
                "video_height": media.height,
                "video_fps": media.fps,
                "video_duration_seconds": media.duration,
                "has_audio": True,
            }
        elif status == "failed":
            body["error"] = {"message": asset.error or "Processing failed."}
        return body
