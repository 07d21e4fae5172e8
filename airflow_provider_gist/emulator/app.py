"""aiohttp application: the emulated TwelveLabs v1.3 routes and the ``/_emulator`` control API.

Request pipeline for API routes (order matters and is documented in docs/emulator.md):
route match -> auth -> rate limit -> latency -> fault pick -> handler -> render (+ fault) -> journal.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from . import content
from .faults import ALIASES, FaultInjector, FaultRule, RateDecision, RateLimiter, group_of, parse_rules
from .state import (
    ANALYZE_MODELS,
    MAX_TOKENS,
    ApiError,
    Clock,
    IndexedAsset,
    Page,
    State,
    Timing,
    check_metadata,
    invalid,
    metadata_matches,
    missing,
    paginate,
    parse_rfc3339,
)

DEFAULT_API_KEY = "tlk_emulator_key"
DEFAULT_PORT = 8089
API_VERSIONS = ("v1.3", "v1.2")
MAX_PAGE_LIMIT = 50
ANALYZE_FIELDS = {
    "model_name",
    "video_id",
    "video",
    "prompt",
    "prompt_v2",
    "temperature",
    "stream",
    "response_format",
    "max_tokens",
    "start_time",
    "end_time",
}


@dataclass
class EmulatorConfig:
    api_key: str = DEFAULT_API_KEY
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    asset_ready_seconds: float = 2.0
    indexing_seconds: float = 4.0
    enable_gist: bool = False
    # group -> (requests per window, window seconds)
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    error_rate: float = 0.0
    latency: float = 0.0
    analyze_latency: float = 0.0
    journal_size: int = 10_000
    max_upload_bytes: int = 250 * 1024 * 1024
    clock: Clock | None = None

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the emulator binds 127.0.0.1 only, not {self.host!r}")
        self.host = "127.0.0.1"
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.error_rate <= 1:
            raise ValueError("error_rate must be within [0, 1]")
        if min(self.asset_ready_seconds, self.indexing_seconds, self.latency, self.analyze_latency) < 0:
            raise ValueError("timings and latencies must be >= 0")
        # Validate early so a bad --faults fails at start, not on the first request.
        parse_rules(self.faults)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    handler: str
    has_404: bool = False

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


OPERATIONS = (
    Operation("POST", "/indexes", "create_index"),
    Operation("GET", "/indexes", "list_indexes"),
    Operation("GET", "/indexes/{index-id}", "get_index"),
    Operation("PUT", "/indexes/{index-id}", "update_index"),
    Operation("DELETE", "/indexes/{index-id}", "delete_index"),
    Operation("POST", "/assets", "create_asset"),
    Operation("GET", "/assets", "list_assets"),
    Operation("GET", "/assets/{asset_id}", "get_asset"),
    Operation("DELETE", "/assets/{asset_id}", "delete_asset"),
    Operation("POST", "/indexes/{index-id}/indexed-assets", "create_indexed_asset", has_404=True),
    Operation("GET", "/indexes/{index-id}/indexed-assets", "list_indexed_assets"),
    Operation(
        "GET", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "get_indexed_asset", has_404=True
    ),
    Operation("PATCH", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "update_indexed_asset"),
    Operation("DELETE", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "delete_indexed_asset"),
    Operation("POST", "/tasks", "create_task"),
    Operation("GET", "/tasks", "list_tasks"),
    Operation("GET", "/tasks/{task_id}", "get_task"),
    Operation("DELETE", "/tasks/{task_id}", "delete_task"),
    Operation("GET", "/indexes/{index-id}/videos", "list_videos"),
    Operation("GET", "/indexes/{index-id}/videos/{video-id}", "get_video", has_404=True),
    Operation("PATCH", "/indexes/{index-id}/videos/{video-id}", "update_video"),
    Operation("DELETE", "/indexes/{index-id}/videos/{video-id}", "delete_video"),
    Operation("POST", "/analyze", "analyze", has_404=True),
    Operation("POST", "/gist", "gist"),
)
MULTIPART_OPS = {"POST /assets", "POST /tasks"}
PAGINATION = {"page", "page_limit"}
SORTING = {"sort_by", "sort_option"}
RANGES = ("duration", "fps", "width", "height", "size")
# Query names each operation understands; anything else is a 400, except on the lists that
# treat unknown bare keys as user_metadata filters.
KNOWN_QUERY: dict[str, set[str]] = {
    "GET /indexes": PAGINATION
    | SORTING
    | {"index_name", "model_options", "model_family", "created_at", "updated_at"},
    "GET /assets": PAGINATION | {"asset_ids", "asset_types", "filename"},
    "DELETE /assets/{asset_id}": {"force"},
    "GET /tasks": PAGINATION
    | SORTING
    | {"index_id", "status", "filename", "duration", "width", "height", "created_at", "updated_at"},
    "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}": {"embedding_option", "transcription"},
    "GET /indexes/{index-id}/videos/{video-id}": {"embedding_option", "transcription"},
}
METADATA_LISTS = {"GET /indexes/{index-id}/videos", "GET /indexes/{index-id}/indexed-assets"}


def _aiohttp_path(template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: "{" + m.group(1).replace("-", "_") + "}", template)


class Query:
    """Query parameters in wire order, repeated keys kept (a tiny multidict of our own)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, key: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._pairs if k == key), default)

    def getall(self, key: str, default: list[str] | None = None) -> list[str]:
        values = [v for k, v in self._pairs if k == key]
        return values or list(default or [])

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._pairs))

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self._pairs)


@dataclass
class FilePart:
    filename: str
    size: int
    head: bytes

    def journal(self) -> dict[str, Any]:
        return {"filename": self.filename, "size": self.size}


@dataclass
class Call:
    """One parsed API request, independent of aiohttp so handlers stay plain functions."""

    op: Operation
    version: str
    params: dict[str, str]
    query: Query
    json: Any = None
    json_error: str | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[FilePart]] = field(default_factory=dict)
    fault: FaultRule | None = None

    def field_value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def journal_body(self) -> Any:
        if self.fields or self.files:
            out: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in self.fields.items()}
            for name, parts in self.files.items():
                out[name] = parts[0].journal() if len(parts) == 1 else [p.journal() for p in parts]
            return out
        return self.json


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    events: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Emulator:
    """Everything mutable about one running emulator; shared by the routes and the control API."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = config.clock or Clock()
        self.state = State(
            timing=Timing(config.asset_ready_seconds, config.indexing_seconds),
            clock=self.clock,
            seed=config.seed,
        )
        self.faults = FaultInjector(config.seed, config.error_rate)
        self.faults.set_rules(parse_rules(config.faults), append=False)
        self.limiter = RateLimiter(self.clock.now(), config.rate_limits)
        self.api_key: str | None = config.api_key
        self.journal: deque[dict[str, Any]] = deque(maxlen=config.journal_size)
        self.seq = 0
        self.stats_calls: Counter[str] = Counter()
        self.stats_statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.stats_faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.started = time.time()

    def reset(self) -> None:
        """Back to the start configuration (faults, key, limits); the journal seq keeps counting."""
        self.state.reset()
        self.faults = FaultInjector(self.config.seed, self.config.error_rate)
        self.faults.set_rules(parse_rules(self.config.faults), append=False)
        self.limiter = RateLimiter(self.clock.now(), self.config.rate_limits)
        self.api_key = self.config.api_key
        self.journal.clear()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats_calls.clear()
        self.stats_statuses.clear()
        self.stats_faults.clear()
        self.rate_limited = 0

    def stats(self) -> dict[str, Any]:
        total_429 = sum(s.get("429", 0) for s in self.stats_statuses.values())
        return {
            "calls": dict(self.stats_calls),
            "statuses": {k: dict(v) for k, v in self.stats_statuses.items()},
            "total_requests": sum(self.stats_calls.values()),
            "total_429": total_429,
            "rate_limited": self.rate_limited,
            "faults": dict(self.stats_faults),
        }

    # ---------------------------------------------------------------------------------------
    # helpers shared by handlers
    # ---------------------------------------------------------------------------------------
    def check_query(self, call: Call) -> None:
        known = KNOWN_QUERY.get(call.op.key, set())
        if call.op.key in METADATA_LISTS:
            return
        for name in call.query:
            base = name.split("[", 1)[0]
            if base not in known:
                raise ApiError(
                    400, "parameter_unknown", f"The query parameter {name!r} is not supported here."
                )

    @staticmethod
    def _int(call: Call, name: str, default: int) -> int:
        raw = call.query.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise invalid(f"The {name} parameter must be an integer.") from exc

    def _paged(self, call: Call, items: list[Any], render: Callable[[Any], dict[str, Any]]) -> Reply:
        page = self._int(call, "page", 1)
        limit = self._int(call, "page_limit", 10)
        if page < 1:
            raise invalid("The page parameter must be >= 1.")
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise invalid(f"The page_limit parameter must be between 1 and {MAX_PAGE_LIMIT}.")
        result: Page = paginate(items, page, limit)
        return Reply(200, {"data": [render(i) for i in result.items], "page_info": result.page_info()})

    @staticmethod
    def _sorted(call: Call, items: list[Any], updated: Callable[[Any], float]) -> list[Any]:
        sort_by = call.query.get("sort_by", "created_at")
        option = call.query.get("sort_option", "desc")
        if sort_by not in ("created_at", "updated_at"):
            raise invalid("sort_by must be created_at or updated_at.")
        if option not in ("asc", "desc"):
            raise invalid("sort_option must be asc or desc.")
        if sort_by == "created_at":
            return sorted(items, key=lambda i: (i.created_at, i.seq), reverse=option == "desc")
        return sorted(items, key=lambda i: (updated(i), i.seq), reverse=option == "desc")

    @staticmethod
    def _since(call: Call, name: str) -> float | None:
        raw = call.query.get(name)
        return None if raw is None else parse_rfc3339(raw)

    @staticmethod
    def _bool(raw: str | None, name: str, default: bool) -> bool:
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise invalid(f"The {name} parameter must be true or false.")

    def _json_body(self, call: Call) -> Any:
        if call.json_error:
            raise invalid(call.json_error)
        return call.json

    def _video_filters(self, call: Call, videos: list[IndexedAsset]) -> list[IndexedAsset]:
        known = (
            PAGINATION
            | SORTING
            | {"filename", "created_at", "updated_at", "status", "user_metadata", *RANGES}
        )
        wanted_meta: dict[str, str] = {}
        ranges: dict[tuple[str, str], float] = {}
        for name, value in call.query.items():
            match = re.fullmatch(r"(\w+)\[([^\]]+)\]", name)
            if match and match.group(1) == "user_metadata":
                wanted_meta[match.group(2)] = value
            elif match and match.group(1) in RANGES and match.group(2) in ("gte", "lte"):
                try:
                    ranges[(match.group(1), match.group(2))] = float(value)
                except ValueError as exc:
                    raise invalid(f"{name} must be a number.") from exc
            elif match:
                raise ApiError(
                    400, "parameter_unknown", f"The query parameter {name!r} is not supported here."
                )
            elif name not in known:
                # The docs show bare keys (?category=news); the SDK sends user_metadata[category].
                wanted_meta[name] = value
        filename = call.query.get("filename")
        created = self._since(call, "created_at")
        updated = self._since(call, "updated_at")
        now = self.state.now()
        out = []
        for video in videos:
            media = video.media
            if filename and filename.lower() not in media.filename.lower():
                continue
            if created is not None and video.created_at < created:
                continue
            if updated is not None and (
                video.metadata_updated_at is None or video.metadata_updated_at < updated
            ):
                continue
            if not metadata_matches(video.user_metadata, wanted_meta):
                continue
            values = {
                "duration": media.duration,
                "fps": media.fps,
                "width": media.width,
                "height": media.height,
                "size": media.size,
            }
            if any(
                (bound == "gte" and values[attr] < limit) or (bound == "lte" and values[attr] > limit)
                for (attr, bound), limit in ranges.items()
            ):
                continue
            out.append(video)
        statuses = call.query.getall("status", [])
        if statuses:
            allowed = {"ready", "pending", "queued", "indexing", "failed"}
            if any(s not in allowed for s in statuses):
                raise invalid(f"status must be among {sorted(allowed)}.")
            out = [v for v in out if v.schedule.status(now) in statuses]
        return self._sorted(call, out, lambda v: v.updated_at(now))

    # ---------------------------------------------------------------------------------------
    # indexes
    # ---------------------------------------------------------------------------------------
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

    # ---------------------------------------------------------------------------------------
    # assets
    # ---------------------------------------------------------------------------------------
    def _metadata_field(self, call: Call) -> dict[str, Any] | None:
        raw = call.field_value("user_metadata")
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise invalid("user_metadata must be a JSON-encoded object.") from exc
        return dict(check_metadata(value, allow_null=False))

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
        items = list(self.state.assets.values())
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

    # ---------------------------------------------------------------------------------------
    # indexed assets and videos
    # ---------------------------------------------------------------------------------------
    def create_indexed_asset(self, call: Call) -> Reply:
        video = self.state.index_asset(call.params["index-id"], self._json_body(call))
        return Reply(202, {"_id": video.id, "asset_id": video.asset_id})

    def list_indexed_assets(self, call: Call) -> Reply:
        index = self.state.get_index(call.params["index-id"])
        videos = [v for v in self.state.indexed.values() if v.index_id == index.id]
        items = self._video_filters(call, videos)
        return self._paged(call, items, lambda v: self.state.indexed_asset_json(v, detail=False))

    def get_indexed_asset(self, call: Call) -> Reply:
        video = self.state.get_video(
            call.params["index-id"], call.params["indexed-asset-id"], "indexed asset"
        )
        return Reply(200, self.state.indexed_asset_json(video, detail=True))

    def update_indexed_asset(self, call: Call) -> Reply:
        body = self._json_body(call)
        self.state.update_video_metadata(
            call.params["index-id"], call.params["indexed-asset-id"], body, "indexed asset"
        )
        return Reply(200)

    def delete_indexed_asset(self, call: Call) -> Reply:
        self.state.delete_video(call.params["index-id"], call.params["indexed-asset-id"], "indexed asset")
        return Reply(200)

    def list_videos(self, call: Call) -> Reply:
        index = self.state.get_index(call.params["index-id"])
        if "status" in call.query:
            raise ApiError(400, "parameter_unknown", "The videos list has no status filter.")
        now = self.state.now()
        # Only finished videos are "videos"; in-progress ones show up in indexed-assets and tasks.
        videos = [
            v
            for v in self.state.indexed.values()
            if v.index_id == index.id and v.schedule.status(now) == "ready"
        ]
        items = self._video_filters(call, videos)
        return self._paged(call, items, lambda v: self.state.video_json(v, detail=False))

    def get_video(self, call: Call) -> Reply:
        video = self.state.get_video(call.params["index-id"], call.params["video-id"])
        return Reply(200, self.state.video_json(video, detail=True))

    def update_video(self, call: Call) -> Reply:
        self.state.update_video_metadata(
            call.params["index-id"], call.params["video-id"], self._json_body(call)
        )
        return Reply(200)

    def delete_video(self, call: Call) -> Reply:
        self.state.delete_video(call.params["index-id"], call.params["video-id"])
        return Reply(200)

    # ---------------------------------------------------------------------------------------
    # legacy tasks
    # ---------------------------------------------------------------------------------------
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
        items = list(self.state.tasks.values())
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

    # ---------------------------------------------------------------------------------------
    # analysis
    # ---------------------------------------------------------------------------------------
    def _analyze_params(self, body: Any) -> tuple[dict[str, Any], str, bool, dict[str, Any] | None]:
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        unknown = sorted(set(body) - ANALYZE_FIELDS)
        if unknown:
            raise ApiError(400, "parameter_unknown", f"Unknown parameter(s): {', '.join(unknown)}.")
        model = body.get("model_name", "pegasus1.2")
        if model not in ANALYZE_MODELS:
            raise invalid(f"model_name must be one of {list(ANALYZE_MODELS)}.")
        prompt, prompt_v2 = body.get("prompt"), body.get("prompt_v2")
        if prompt is None and prompt_v2 is None:
            raise missing("prompt")
        if prompt is not None and prompt_v2 is not None:
            raise invalid("prompt and prompt_v2 are mutually exclusive.")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise invalid("prompt must be a non-empty string.")
        if prompt_v2 is not None:
            if model != "pegasus1.5":
                raise invalid("prompt_v2 requires pegasus1.5.")
            if not isinstance(prompt_v2, dict) or not isinstance(prompt_v2.get("input_text"), str):
                raise invalid("prompt_v2 must be an object with input_text.")
        temperature = body.get("temperature", 0.2)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0 <= temperature <= 1
        ):
            raise invalid("temperature must be a number between 0 and 1.")
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise invalid("stream must be a boolean.")
        max_tokens = body.get("max_tokens", 4096)
        low, high = MAX_TOKENS[model]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not low <= max_tokens <= high:
            raise invalid(f"max_tokens must be an integer between {low} and {high} for {model}.")
        for name in ("start_time", "end_time"):
            if name in body:
                if model != "pegasus1.5":
                    raise invalid(f"{name} requires pegasus1.5.")
                if isinstance(body[name], bool) or not isinstance(body[name], int | float) or body[name] < 0:
                    raise invalid(f"{name} must be a non-negative number.")
        if "start_time" in body and "end_time" in body and body["end_time"] - body["start_time"] < 4:
            raise invalid("The clip between start_time and end_time must be at least 4 seconds.")
        schema = None
        fmt = body.get("response_format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
                raise invalid("response_format.type must be json_schema.")
            schema = fmt.get("json_schema")
            if not isinstance(schema, dict):
                raise missing("response_format.json_schema")
            bad = content.unsupported_keywords(schema)
            if bad:
                raise ApiError(
                    422,
                    "parameter_invalid",
                    f"response_format.json_schema uses unsupported keyword(s) at {', '.join(bad)}.",
                )
        return body, model, stream, schema

    def analyze(self, call: Call) -> Reply:
        body, _model, stream, schema = self._analyze_params(self._json_body(call))
        variant = call.fault.variant if call.fault and call.fault.kind == "model_output" else None
        result = self.state.analyze(body, schema, variant)
        usage = {"output_tokens": result.output_tokens, "input_tokens": result.input_tokens}
        if not stream:
            out: dict[str, Any] = {
                "id": result.id,
                "data": result.data,
                "finish_reason": result.finish_reason,
                "usage": usage,
            }
            if result.error:
                out["error"] = {"message": result.error}
            return Reply(200, out)
        events: list[dict[str, Any]] = [
            {"event_type": "stream_start", "metadata": {"generation_id": result.id}}
        ]
        events += [{"event_type": "text_generation", "text": t} for t in _fragments(result.data, result.id)]
        end: dict[str, Any] = {
            "event_type": "stream_end",
            "finish_reason": result.finish_reason,
            "metadata": {"generation_id": result.id, "usage": usage},
        }
        if result.error:
            end["error"] = {"message": result.error}
        events.append(end)
        return Reply(200, events=events)

    def gist(self, call: Call) -> Reply:
        body = self._json_body(call)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        video_id, types = body.get("video_id"), body.get("types")
        if video_id is None:
            raise missing("video_id")
        if types is None:
            raise missing("types")
        if (
            not isinstance(types, list)
            or not types
            or any(t not in ("title", "topic", "hashtag") for t in types)
        ):
            raise invalid("types must be a non-empty array of title, topic, hashtag.")
        media, metadata = self.state.resolve_analysis_input({"video_id": video_id}, "pegasus1.2")
        gist = content.gist_for(media.filename, metadata)
        out: dict[str, Any] = {"id": self.state.new_uuid()}
        for wanted, key in (("title", "title"), ("topic", "topics"), ("hashtag", "hashtags")):
            if wanted in types:
                out[key] = gist[key]
        text = json.dumps({k: v for k, v in out.items() if k != "id"})
        out["usage"] = {"output_tokens": max(1, math.ceil(len(text) / 4))}
        return Reply(200, out)


def _fragments(text: str, salt: str) -> list[str]:
    """Split like a token stream would: arbitrary, uneven cuts, stable for a given generation."""
    out, i, n = [], 0, 0
    while i < len(text):
        size = 3 + content.digest_int(salt, str(n)) % 14
        out.append(text[i : i + size])
        i, n = i + size, n + 1
    return out


# -------------------------------------------------------------------------------------------
# HTTP plumbing
# -------------------------------------------------------------------------------------------
EMULATOR_KEY = web.AppKey("emulator", Emulator)
ROUTES_KEY = web.AppKey("routes", dict)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _error_body(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


_HTML_TITLES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_DEFAULT_CODES = {
    400: "parameter_invalid",
    401: "api_key_invalid",
    403: "api_not_allowed",
    404: "resource_not_exist",
    408: "request_canceled_or_timed_out",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


async def _read_call(request: web.Request, op: Operation, max_bytes: int) -> Call:
    params = {
        name.strip("{}"): request.match_info[name.strip("{}").replace("-", "_")]
        for name in re.findall(r"\{[^}]+\}", op.template)
    }
    call = Call(
        op=op,
        version=request.match_info.get("version", "v1.3"),
        params=params,
        query=Query(list(request.query.items())),
    )
    if op.key in MULTIPART_OPS:
        if not request.content_type.startswith("multipart/"):
            call.json_error = f"{op.key} expects multipart/form-data, got {request.content_type!r}."
            await request.read()
            return call
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                call.fields.setdefault(part.name, []).append(await part.text())
                continue
            size, head = 0, b""
            while chunk := await part.read_chunk(1 << 16):
                if len(head) < 4096:
                    head += chunk[: 4096 - len(head)]
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(400, "video_filesize_too_large", f"The file exceeds {max_bytes} bytes.")
            call.files.setdefault(part.name, []).append(FilePart(part.filename, size, head))
        return call
    raw = await request.read()
    if raw:
        if request.content_type != "application/json":
            call.json_error = f"Expected an application/json body, got {request.content_type!r}."
            return call
        try:
            call.json = json.loads(raw)
        except ValueError as exc:
            call.json_error = f"The request body is not valid JSON: {exc}."
            call.json = {"_unparsed": raw[:500].decode("utf-8", "replace")}
    return call


class Pipeline:
    """Runs one API request through auth, limits, faults and the handler, then renders it."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        routes: dict[Any, Operation] = request.app[ROUTES_KEY]
        op = routes.get(request.match_info.route)
        if op is not None and op.template == "/gist" and not emu.config.enable_gist:
            op = None
        emu.seq += 1
        entry: dict[str, Any] = {
            "seq": emu.seq,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "operation": op.key if op else None,
            "query": {k: request.query.getall(k) for k in request.query},
        }
        emu.journal.append(entry)
        key = op.key if op else "unmatched"
        emu.stats_calls[key] += 1
        version = request.match_info.get("version", "v1.3")
        headers = {"X-Api-Version": version.lstrip("v")}
        started = time.perf_counter()
        try:
            response = await self._run(request, op, entry, headers)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        emu.stats_statuses[key][str(entry.get("status", 0))] += 1
        return response

    async def _run(
        self, request: web.Request, op: Operation | None, entry: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        emu = self.emu
        if op is None:
            await request.read()
            return await self._send(
                request,
                entry,
                Reply(
                    404, _error_body("resource_not_exist", f"No route for {request.method} {request.path}.")
                ),
                headers,
            )
        try:
            call = await _read_call(request, op, emu.config.max_upload_bytes)
        except ApiError as err:
            return await self._send(
                request, entry, Reply(err.status, _error_body(err.code, err.message)), headers
            )
        entry["body"] = call.journal_body()
        supplied = request.headers.get("x-api-key", "")
        if emu.api_key is None or not hmac.compare_digest(supplied.encode(), emu.api_key.encode()):
            return await self._send(
                request,
                entry,
                Reply(401, _error_body("api_key_invalid", "The API key is invalid or expired.")),
                headers,
            )
        decision = emu.limiter.check(group_of(op.key), emu.clock.now())
        if decision is not None:
            headers.update(decision.headers(emu.clock.now()))
            if not decision.allowed:
                emu.rate_limited += 1
                return await self._send(
                    request, entry, self._too_many(op, decision, emu.clock.now()), headers
                )
        delay = emu.config.latency + (emu.config.analyze_latency if op.key == "POST /analyze" else 0.0)
        if delay:
            await asyncio.sleep(delay)
        rule = emu.faults.pick(op.key)
        if rule is not None:
            emu.stats_faults[rule.kind] += 1
            entry["fault"] = rule.kind
            early = await self._early_fault(request, rule, entry, headers)
            if early is not None:
                return early
            call.fault = rule
        reply = self._handle(op, call)
        return await self._send(request, entry, reply, headers, rule)

    def _handle(self, op: Operation, call: Call) -> Reply:
        try:
            if op.key in KNOWN_QUERY or op.method == "GET":
                self.emu.check_query(call)
            reply: Reply = getattr(self.emu, op.handler)(call)
            return reply
        except ApiError as err:
            status = err.status
            if err.code == "resource_not_exist":
                status = 404 if op.has_404 else 400
            return Reply(status, _error_body(err.code, err.message))

    @staticmethod
    def _too_many(op: Operation, decision: RateDecision, now: float) -> Reply:
        if op.key == "POST /analyze":
            # The spec declares an empty body for /analyze 429s.
            return Reply(429)
        return Reply(
            429,
            _error_body(
                "too_many_requests",
                f"You have exceeded the rate limit ({decision.limit} requests per window); "
                f"retry after {max(1, math.ceil(decision.reset_at - now))} seconds.",
            ),
        )

    async def _early_fault(
        self, request: web.Request, rule: FaultRule, entry: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse | None:
        """Faults that replace the response; ``None`` means run the handler (maybe after a delay)."""
        if rule.kind == "key_revoked":
            self.emu.api_key = None
            return await self._send(
                request,
                entry,
                Reply(401, _error_body("api_key_invalid", "The API key has been revoked.")),
                headers,
            )
        if rule.kind == "slow":
            await asyncio.sleep(rule.delay)
            return None
        if rule.kind == "reset":
            entry["status"] = 0
            if request.transport is not None:
                request.transport.abort()
            # Never sent: the transport is gone; aiohttp just needs a response object.
            return web.Response(status=500)
        if rule.kind == "html":
            title = _HTML_TITLES.get(rule.status, "Error")
            page = (
                f"<html><head><title>{rule.status} {title}</title></head><body><center><h1>{rule.status} "
                f"{title}</h1></center><hr><center>emulated-proxy</center></body></html>\n"
            )
            entry["status"] = rule.status
            return web.Response(status=rule.status, text=page, content_type="text/html", headers=headers)
        if rule.kind == "status":
            extra = dict(rule.headers)
            if rule.retry_after is not None:
                extra["Retry-After"] = str(max(0, math.ceil(rule.retry_after)))
            if rule.empty_body:
                reply = Reply(rule.status, headers=extra)
            elif rule.body is not None:
                reply = Reply(rule.status, rule.body, headers=extra)
            else:
                code = rule.code or _DEFAULT_CODES.get(rule.status, "error")
                reply = Reply(
                    rule.status,
                    _error_body(code, rule.message or f"Injected {rule.status} error."),
                    headers=extra,
                )
            return await self._send(request, entry, reply, headers)
        return None

    async def _send(
        self,
        request: web.Request,
        entry: dict[str, Any],
        reply: Reply,
        headers: dict[str, str],
        rule: FaultRule | None = None,
    ) -> web.StreamResponse:
        entry["status"] = reply.status
        all_headers = {**headers, **reply.headers}
        if reply.events is not None:
            entry["response_events"] = reply.events
            lines = [_json_bytes(e) + b"\n" for e in reply.events]
            return await self._stream(request, reply.status, all_headers, lines, "application/x-ndjson", rule)
        if reply.body is not None:
            entry["response"] = reply.body
            payload = _json_bytes(reply.body)
        else:
            payload = b""
        if rule is not None and rule.kind == "malformed_json":
            # The handler ran (side effects happened) but the client only sees half the JSON.
            payload = payload[: max(len(payload) // 2, 2)] if payload else b'{"'
            entry["response"] = None
            entry["response_truncated"] = payload.decode("utf-8", "replace")
        content_type = "application/json" if payload else None
        if rule is not None and rule.kind == "slow_body":
            return await self._stream(request, reply.status, all_headers, [payload], content_type, rule)
        response = web.Response(status=reply.status, body=payload or None, headers=all_headers)
        if content_type:
            response.content_type = content_type
        return response

    @staticmethod
    async def _stream(
        request: web.Request,
        status: int,
        headers: dict[str, str],
        chunks: list[bytes],
        content_type: str | None,
        rule: FaultRule | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        if content_type:
            response.content_type = content_type
        stall = rule is not None and rule.kind == "slow_body"
        if stall:
            # Declaring the length makes clients wait for the stalled remainder instead of ending early.
            response.content_length = sum(len(c) for c in chunks)
        await response.prepare(request)
        data = b"".join(chunks) if stall else b""
        if stall and rule is not None:
            half = max(len(data) // 2, 1) if data else 0
            await response.write(data[:half])
            await asyncio.sleep(rule.delay)
            await response.write(data[half:])
        else:
            for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response


# -------------------------------------------------------------------------------------------
# control API
# -------------------------------------------------------------------------------------------
async def _control_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from exc


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _control_routes(emu: Emulator) -> list[web.RouteDef]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "emulator": "twelvelabs",
                "api_versions": list(API_VERSIONS),
                "gist_enabled": emu.config.enable_gist,
                "uptime_seconds": round(time.time() - emu.started, 3),
                "now": emu.clock.now(),
            }
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(emu.stats())

    async def clear_stats(_: web.Request) -> web.Response:
        emu.reset_stats()
        return web.json_response({"ok": True})

    async def journal(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _control_error("since must be an integer")
        entries = [e for e in emu.journal if e["seq"] > since]
        return web.json_response({"entries": entries, "last_seq": emu.seq})

    async def clear_journal(_: web.Request) -> web.Response:
        emu.journal.clear()
        return web.json_response({"ok": True, "last_seq": emu.seq})

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(
            {"rules": [r.to_dict() for r in emu.faults.rules], "error_rate": emu.faults.error_rate}
        )

    async def set_faults(request: web.Request) -> web.Response:
        body = await _control_body(request)
        append = not (isinstance(body, dict) and body.get("mode") == "replace")
        try:
            rules = parse_rules(body)
            if isinstance(body, dict) and "error_rate" in body:
                rate = float(body["error_rate"])
                if not 0 <= rate <= 1:
                    raise ValueError("error_rate must be within [0, 1]")
                emu.faults.error_rate = rate
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))
        emu.faults.set_rules(rules, append=append)
        return web.json_response({"rules": [r.to_dict() for r in emu.faults.rules]})

    async def clear_faults(_: web.Request) -> web.Response:
        emu.faults.set_rules([], append=False)
        emu.faults.error_rate = 0.0
        return web.json_response({"rules": []})

    async def reset(_: web.Request) -> web.Response:
        emu.reset()
        return web.json_response({"ok": True})

    async def seed(request: web.Request) -> web.Response:
        body = await _control_body(request)
        if not isinstance(body, dict):
            return _control_error("body must be an object")
        try:
            filenames = body.get("filenames")
            default_count = len(filenames) if isinstance(filenames, list) else 10
            count = int(body.get("count", default_count))
            if not 0 <= count <= 100_000:
                raise ValueError("count must be within [0, 100000]")
            if filenames is not None and not (
                isinstance(filenames, list) and all(isinstance(f, str) and f for f in filenames)
            ):
                raise ValueError("filenames must be a list of non-empty strings")
            metadata = body.get("user_metadata")
            if metadata is not None:
                check_metadata(metadata, allow_null=False)
            index, videos = emu.state.seed_index(
                str(body.get("index_name", "emulator-seed")),
                count,
                str(body.get("model_name", "pegasus1.2")),
                filenames,
                metadata,
            )
        except ApiError as err:
            return _control_error(err.message)
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))
        return web.json_response(
            {
                "index_id": index.id,
                "index_name": index.name,
                "count": len(videos),
                "videos": [
                    {"video_id": v.id, "asset_id": v.asset_id, "filename": v.media.filename} for v in videos
                ],
            }
        )

    async def clock(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _control_body(request)
            try:
                seconds = float(body.get("advance", 0)) if isinstance(body, dict) else float("nan")
            except (TypeError, ValueError):
                seconds = float("nan")
            if not seconds >= 0:
                return _control_error("advance must be a number of seconds >= 0")
            emu.clock.advance(seconds)
        return web.json_response({"now": emu.clock.now(), "offset": emu.clock.offset})

    async def keys(request: web.Request) -> web.Response:
        body = await _control_body(request)
        if isinstance(body, dict) and body.get("revoke") is True:
            emu.api_key = None
        elif isinstance(body, dict) and isinstance(body.get("api_key"), str) and body["api_key"]:
            emu.api_key = body["api_key"]
        else:
            return _control_error('send {"api_key": "..."} or {"revoke": true}')
        # Never echo the key back: the response only says whether one is active.
        return web.json_response({"key_active": emu.api_key is not None})

    async def rate_limits(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _control_body(request)
            try:
                if not isinstance(body, dict):
                    raise ValueError("body must be an object")
                window = float(body.get("window", 60))
                limits: dict[str, tuple[int, float]] = {}
                for group, value in (body.get("groups") or {}).items():
                    if isinstance(value, dict):
                        limits[group] = (int(value["limit"]), float(value.get("window", window)))
                    else:
                        limits[group] = (int(value), window)
                emu.limiter.configure(limits, origin=emu.clock.now())
            except (ValueError, TypeError, KeyError) as exc:
                return _control_error(str(exc))
        return web.json_response({"groups": emu.limiter.describe(), "origin": emu.limiter.origin})

    async def operations(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "operations": [
                    {"key": op.key, "group": group_of(op.key), "has_404": op.has_404} for op in OPERATIONS
                ],
                "aliases": ALIASES,
            }
        )

    base = "/_emulator"
    return [
        web.get(f"{base}/health", health),
        web.get(f"{base}/stats", stats),
        web.delete(f"{base}/stats", clear_stats),
        web.get(f"{base}/journal", journal),
        web.delete(f"{base}/journal", clear_journal),
        web.get(f"{base}/faults", get_faults),
        web.post(f"{base}/faults", set_faults),
        web.delete(f"{base}/faults", clear_faults),
        web.post(f"{base}/reset", reset),
        web.post(f"{base}/seed", seed),
        web.get(f"{base}/clock", clock),
        web.post(f"{base}/clock", clock),
        web.post(f"{base}/keys", keys),
        web.get(f"{base}/rate-limits", rate_limits),
        web.post(f"{base}/rate-limits", rate_limits),
        web.get(f"{base}/operations", operations),
    ]


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    config = config or EmulatorConfig()
    emulator = Emulator(config)
    # Multipart uploads are streamed and size-checked in _read_call; this bounds JSON bodies.
    app = web.Application(client_max_size=config.max_upload_bytes)
    app[EMULATOR_KEY] = emulator
    pipeline = Pipeline(emulator)
    app.add_routes(_control_routes(emulator))
    routes: dict[Any, Operation] = {}
    prefix = r"/{version:v1\.[23]}"
    for op in OPERATIONS:
        route = app.router.add_route(op.method, prefix + _aiohttp_path(op.template), pipeline)
        routes[route] = op
    app.router.add_route("*", prefix + "/{tail:.*}", pipeline)
    app[ROUTES_KEY] = routes
    return app
