"""Indexes: create (model and addon rules), rename, delete (with their videos and tasks), JSON."""

from __future__ import annotations

from typing import Any

from .api_errors import ApiError, invalid, missing, not_found
from .resources import Index
from .state_core import StateCore
from .timeline import rfc3339

INDEX_MODELS = ("pegasus1.2", "marengo3.0")
MODEL_OPTIONS = ("visual", "audio")


class IndexStore(StateCore):
    def create_index(self, body: Any) -> Index:
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        name = body.get("index_name")
        if name is None:
            raise missing("index_name")
        if not isinstance(name, str) or not name.strip():
            raise invalid("The index_name parameter must be a non-empty string.")
        models = body.get("models")
        if models is None:
            raise missing("models")
        if not isinstance(models, list) or not models:
            raise invalid("The models parameter must be a non-empty array.")
        clean: list[dict[str, Any]] = []
        for model in models:
            if not isinstance(model, dict) or "model_name" not in model:
                raise invalid("Each item of models needs a model_name.")
            model_name = model["model_name"]
            if model_name not in INDEX_MODELS:
                raise invalid(
                    f"The model_name {model_name!r} is not an index model; use one of {list(INDEX_MODELS)}."
                )
            options = model.get("model_options", list(MODEL_OPTIONS))
            if not isinstance(options, list) or not options or any(o not in MODEL_OPTIONS for o in options):
                raise invalid(f"model_options must be a non-empty subset of {list(MODEL_OPTIONS)}.")
            clean.append({"model_name": model_name, "model_options": list(options)})
        addons = body.get("addons", [])
        if not isinstance(addons, list) or any(a != "thumbnail" for a in addons):
            raise invalid("addons may only contain 'thumbnail'.")
        if addons and not any(m["model_name"].startswith("marengo") for m in clean):
            raise invalid("addons can only be enabled with a Marengo model.")
        if any(i.name == name for i in self.indexes.values()):
            raise ApiError(400, "index_name_already_exists", f"An index named {name!r} already exists.")
        now = self.now()
        index = Index(self.new_id(), name, clean, list(addons), now, now, self.next_seq())
        self.indexes[index.id] = index
        return index

    def get_index(self, index_id: str) -> Index:
        index = self.indexes.get(index_id)
        if index is None:
            raise not_found("index", index_id)
        return index

    def rename_index(self, index_id: str, body: Any) -> None:
        index = self.get_index(index_id)
        name = body.get("index_name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise missing("index_name")
        if any(i.name == name and i.id != index_id for i in self.indexes.values()):
            raise ApiError(400, "index_name_already_exists", f"An index named {name!r} already exists.")
        index.name = name
        index.updated_at = self.now()

    def delete_index(self, index_id: str) -> None:
        self.get_index(index_id)
        del self.indexes[index_id]
        for video_id in [v.id for v in self.indexed.values() if v.index_id == index_id]:
            del self.indexed[video_id]
        for task_id in [t.id for t in self.tasks.values() if t.index_id == index_id]:
            del self.tasks[task_id]

    def index_json(self, index: Index) -> dict[str, Any]:
        now = self.now()
        ready = [
            v for v in self.indexed.values() if v.index_id == index.id and v.schedule.status(now) == "ready"
        ]
        return {
            "_id": index.id,
            "index_name": index.name,
            "models": index.models,
            "addons": index.addons,
            "video_count": len(ready),
            "total_duration": round(sum(v.media.duration for v in ready), 2),
            "created_at": rfc3339(index.created_at),
            "updated_at": rfc3339(index.updated_at),
            # Free-plan behaviour: indexes expire after 90 days.
            "expires_at": rfc3339(index.created_at + 90 * 86400),
        }
