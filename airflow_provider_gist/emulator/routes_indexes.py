"""Handlers: indexes, indexed assets, videos (the legacy view of indexed assets) and legacy tasks."""

from __future__ import annotations

from typing import Any

from .calls import Call, Reply
from .handlers import HandlerBase
from .state import ApiError, IndexedAsset, invalid, missing


class IndexRoutes(HandlerBase):
    # -- indexes --------------------------------------------------------------------------
    def create_index(self, call: Call) -> Reply:
        index = self.state.create_index(self._json_body(call))
        return Reply(201, {"_id": index.id})

    def list_indexes(self, call: Call) -> Reply:
        items = list(self.state.indexes.values())
        name = call.query.get("index_name")
        if name is not None:
            items = [i for i in items if i.name == name]
        family = call.query.get("model_family")
        if family is not None:
            if family not in ("marengo", "pegasus"):
                raise invalid("model_family must be marengo or pegasus.")
            items = [i for i in items if any(m["model_name"].startswith(family) for m in i.models)]
        options = call.query.get("model_options")
        if options:
            wanted = {o.strip() for o in options.split(",") if o.strip()}
            items = [i for i in items if any(wanted <= set(m["model_options"]) for m in i.models)]
        created, updated = self._since(call, "created_at"), self._since(call, "updated_at")
        if created is not None:
            items = [i for i in items if i.created_at >= created]
        if updated is not None:
            items = [i for i in items if i.updated_at >= updated]
        items = self._sorted(call, items, lambda i: i.updated_at)
        return self._paged(call, items, self.state.index_json)

    def get_index(self, call: Call) -> Reply:
        return Reply(200, self.state.index_json(self.state.get_index(call.params["index-id"])))

    def update_index(self, call: Call) -> Reply:
        self.state.rename_index(call.params["index-id"], self._json_body(call))
        return Reply(200)

    def delete_index(self, call: Call) -> Reply:
        self.state.delete_index(call.params["index-id"])
        return Reply(200)

    # -- indexed assets -------------------------------------------------------------------
    def create_indexed_asset(self, call: Call) -> Reply:
        video = self.state.index_asset(call.params["index-id"], self._json_body(call))
        return Reply(202, {"_id": video.id, "asset_id": video.asset_id})

    def list_indexed_assets(self, call: Call) -> Reply:
        index = self.state.get_index(call.params["index-id"])
        items = self._video_listing(call, index.id)
        return self._paged(call, items, lambda v: self.state.indexed_asset_json(v, detail=False))

    def _with_extras(self, call: Call, video: IndexedAsset, body: dict[str, Any]) -> dict[str, Any]:
        options = call.query.getall("embedding_option", [])
        if options:
            body["embedding"] = self.state.embedding_json(video, options)
        self._bool(call.query.get("transcription"), "transcription", False)
        return body

    def get_indexed_asset(self, call: Call) -> Reply:
        video = self.state.get_video(
            call.params["index-id"], call.params["indexed-asset-id"], "indexed asset"
        )
        body = self.state.indexed_asset_json(video, detail=True)
        return Reply(200, self._with_extras(call, video, body))

    def update_indexed_asset(self, call: Call) -> Reply:
        body = self._json_body(call)
        self.state.update_video_metadata(
            call.params["index-id"], call.params["indexed-asset-id"], body, "indexed asset"
        )
        return Reply(200)

    def delete_indexed_asset(self, call: Call) -> Reply:
        self.state.delete_video(call.params["index-id"], call.params["indexed-asset-id"], "indexed asset")
        return Reply(200)

    def list_asset_indexed_assets(self, call: Call) -> Reply:
        asset = self.state.get_asset(call.params["asset_id"])
        items = sorted(
            self._listed(v for v in self.state.indexed.values() if v.asset_id == asset.id),
            key=lambda v: (v.created_at, v.seq),
            reverse=True,
        )

        def render(video: IndexedAsset) -> dict[str, Any]:
            index = self.state.indexes[video.index_id]
            return {"_id": video.id, "index": {"_id": index.id, "name": index.name}}

        return self._paged(call, items, render)

    # -- videos ---------------------------------------------------------------------------
    def list_videos(self, call: Call) -> Reply:
        index = self.state.get_index(call.params["index-id"])
        if "status" in call.query:
            raise ApiError(400, "parameter_unknown", "The videos list has no status filter.")
        # Only finished videos are "videos"; in-progress ones show up in indexed-assets and tasks.
        items = self._video_listing(call, index.id, ready_only=True)
        return self._paged(call, items, lambda v: self.state.video_json(v, detail=False))

    def get_video(self, call: Call) -> Reply:
        video = self.state.get_video(call.params["index-id"], call.params["video-id"])
        body = self.state.video_json(video, detail=True)
        return Reply(200, self._with_extras(call, video, body))

    def update_video(self, call: Call) -> Reply:
        self.state.update_video_metadata(
            call.params["index-id"], call.params["video-id"], self._json_body(call)
        )
        return Reply(200)

    def delete_video(self, call: Call) -> Reply:
        self.state.delete_video(call.params["index-id"], call.params["video-id"])
        return Reply(200)

    # -- legacy tasks ---------------------------------------------------------------------
    def create_task(self, call: Call) -> Reply:
        index_id = call.field_value("index_id")
        if not index_id:
            raise missing("index_id")
        url = call.field_value("video_url")
        if url is None and call.files.get("video_url"):
            # SDK 0.4 sends the URL as a file part whose content is the URL.
            url = call.files["video_url"][0].head.decode("utf-8", "replace").strip()
        video_files = call.files.get("video_file", [])
        if url is None and not video_files:
            raise missing("video_url or video_file")
        if url is not None and video_files:
            raise invalid("Provide either video_url or video_file, not both.")
        if url is not None and "://" not in url:
            raise invalid("video_url must be an absolute URL.")
        task = self.state.create_task(
            index_id,
            video_url=url,
            file_name=video_files[0].filename if video_files else None,
            file_size=video_files[0].size if video_files else None,
            user_metadata=self._metadata_field(call),
            enable_video_stream=self._bool(
                call.field_value("enable_video_stream"), "enable_video_stream", True
            ),
        )
        return Reply(200, {"_id": task.id, "video_id": task.video_id})

    def list_tasks(self, call: Call) -> Reply:
        now = self.state.now()
        items = self._listed(self.state.tasks.values())
        index_id = call.query.get("index_id")
        if index_id is not None:
            items = [t for t in items if t.index_id == index_id]
        statuses = call.query.getall("status", [])
        allowed = {"ready", "uploading", "validating", "pending", "queued", "indexing", "failed"}
        if any(s not in allowed for s in statuses):
            raise invalid(f"status must be among {sorted(allowed)}.")
        if statuses:
            items = [t for t in items if t.schedule.status(now) in statuses]
        filename = call.query.get("filename")
        if filename:
            items = [t for t in items if filename.lower() in t.media.filename.lower()]
        created, updated = self._since(call, "created_at"), self._since(call, "updated_at")
        if created is not None:
            items = [t for t in items if t.created_at >= created]
        if updated is not None:
            items = [t for t in items if t.schedule.changed_at(now) >= updated]
        items = self._sorted(call, items, lambda t: t.schedule.changed_at(now))
        return self._paged(call, items, lambda t: self.state.task_json(t, detail=False))

    def get_task(self, call: Call) -> Reply:
        return Reply(200, self.state.task_json(self.state.get_task(call.params["task_id"]), detail=True))

    def delete_task(self, call: Call) -> Reply:
        self.state.delete_task(call.params["task_id"])
        return Reply(200)
