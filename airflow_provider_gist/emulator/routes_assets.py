"""Handlers: assets (direct and URL uploads) and their user metadata."""

from __future__ import annotations

from . import content
from .calls import Call, Reply
from .handlers import HandlerBase
from .state import invalid, missing


class AssetRoutes(HandlerBase):
    def create_asset(self, call: Call) -> Reply:
        method = call.field_value("method")
        if method is None:
            raise missing("method")
        if method not in ("direct", "url"):
            raise invalid("method must be direct or url.")
        metadata = self._metadata_field(call)
        hls = self._bool(call.field_value("enable_hls"), "enable_hls", False)
        thumb = self._bool(call.field_value("enable_thumbnail"), "enable_thumbnail", False)
        name = call.field_value("filename")
        if method == "url":
            url = call.field_value("url")
            if not url:
                raise missing("url")
            if "://" not in url:
                raise invalid("url must be an absolute URL.")
            source, size, name = url, None, name or content.display_name(url)
        else:
            parts = call.files.get("file")
            if not parts:
                raise missing("file")
            part = parts[0]
            source, size, name = part.filename, part.size, name or part.filename or "upload.mp4"
        asset = self.state.create_asset(
            method=method,
            source=source,
            filename=name,
            size=size,
            user_metadata=metadata,
            enable_hls=hls,
            enable_thumbnail=thumb,
        )
        return Reply(201, self.state.asset_json(asset, detail=False))

    def list_assets(self, call: Call) -> Reply:
        items = self._listed(self.state.assets.values())
        ids = call.query.getall("asset_ids", [])
        if ids:
            items = [a for a in items if a.id in ids]
        types = call.query.getall("asset_types", [])
        if any(t not in ("image", "video", "audio") for t in types):
            raise invalid("asset_types must be among image, video, audio.")
        if types and "video" not in types:
            items = []  # the emulator only holds videos
        filename = call.query.get("filename")
        if filename:
            items = [a for a in items if filename.lower() in a.media.filename.lower()]
        items.sort(key=lambda a: (a.created_at, a.seq), reverse=True)
        return self._paged(call, items, lambda a: self.state.asset_json(a, detail=True))

    def get_asset(self, call: Call) -> Reply:
        return Reply(200, self.state.asset_json(self.state.get_asset(call.params["asset_id"]), detail=True))

    def delete_asset(self, call: Call) -> Reply:
        force = self._bool(call.query.get("force"), "force", False)
        self.state.delete_asset(call.params["asset_id"], force=force)
        return Reply(200)

    def update_asset_metadata(self, call: Call) -> Reply:
        self.state.update_asset_metadata(call.params["asset_id"], self._json_body(call), replace=False)
        return Reply(200)

    def replace_asset_metadata(self, call: Call) -> Reply:
        self.state.update_asset_metadata(call.params["asset_id"], self._json_body(call), replace=True)
        return Reply(200)

    def delete_asset_metadata(self, call: Call) -> Reply:
        self.state.clear_asset_metadata(call.params["asset_id"])
        return Reply(200)
