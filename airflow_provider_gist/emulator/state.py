"""In-memory model of the emulated account: indexes, assets, indexed assets (= videos), tasks, analysis.

Statuses are never advanced by a background job. Each resource stores a schedule of
(time, status) steps fixed at creation, and its status is read from the clock when asked.
That keeps the emulator single-threaded, lets tests jump the clock, and makes timing exact.
"""

from __future__ import annotations

import bisect
import json
import math
import mimetypes
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import content

INDEX_MODELS = ("pegasus1.2", "marengo3.0")
MARENGO = "marengo3.0"
EMBEDDING_OPTIONS = ("visual", "audio", "transcription", "visual-text")
_EMBEDDING_DIMS = 8  # real embeddings are much longer; these are fake anyway
_EMBEDDING_SEGMENT_SECONDS = 10.0
ANALYZE_MODELS = ("pegasus1.2", "pegasus1.5")
MODEL_OPTIONS = ("visual", "audio")
MAX_TOKENS = {"pegasus1.2": (2, 4096), "pegasus1.5": (512, 98304)}
DEFAULT_MAX_TOKENS = 4096
CHARS_PER_TOKEN = 4
# Input duration limits (spec, "Input requirements"): 4 s to 1 hour for sync /analyze, to 2 hours
# for async analysis tasks and batch items.
MIN_ANALYSIS_SECONDS = 4.0
SYNC_MAX_SECONDS = 3600.0
ASYNC_MAX_SECONDS = 7200.0
LENGTH_WARNING = "The response was truncated because it reached the max_tokens limit."
# A duration written in a filename (``lecture_90min.mp4``, ``keynote-2.5h.mov``, ``clip_3s.mp4``)
# is the video's duration, so tests can make long (or too short) videos on purpose.
_DURATION_TOKEN = re.compile(r"(?:^|[_\-\s])(\d+(?:\.\d+)?)(h|min|s)(?=$|[_\-\s])", re.I)
_UNIT_SECONDS = {"h": 3600.0, "min": 60.0, "s": 1.0}
_RESOLUTIONS = ((1920, 1080), (1280, 720), (3840, 2160), (1080, 1920), (854, 480))
_FPS = (24.0, 25.0, 29.97, 30.0, 60.0)


class ApiError(Exception):
    """An API error response. ``resource_not_exist`` becomes 404 only where the spec declares 404."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(400, "parameter_invalid", message)


def missing(name: str) -> ApiError:
    return ApiError(400, "parameter_not_provided", f"The {name} parameter is required but was not provided.")


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(400, "resource_not_exist", f"The {kind} {ident!r} does not exist.")


class Clock:
    """Wall-clock time plus an offset that tests can push forward."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self.offset = 0.0

    def now(self) -> float:
        return self._source() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_rfc3339(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise invalid(f"{text!r} is not an RFC 3339 date-time.") from exc


@dataclass
class Schedule:
    """Status steps ``[(at, status), ...]`` in time order; the first step is at creation."""

    steps: list[tuple[float, str]]

    def status(self, now: float) -> str:
        return self.steps[self._index(now)][1]

    def changed_at(self, now: float) -> float:
        return self.steps[self._index(now)][0]

    @property
    def final_at(self) -> float:
        return self.steps[-1][0]

    def _index(self, now: float) -> int:
        return max(bisect.bisect_right([t for t, _ in self.steps], now) - 1, 0)

    @classmethod
    def spread(cls, start: float, total: float, names: Iterable[str], final: str) -> Schedule:
        """Intermediate statuses share ``total`` seconds evenly; ``final`` is reached at start+total."""
        names = list(names)
        step = total / max(len(names), 1)
        steps = [(start + i * step, name) for i, name in enumerate(names)]
        return cls([*steps, (start + total, final)])


@dataclass
class MediaInfo:
    """Fake technical metadata; stable per filename so two runs agree."""

    filename: str
    duration: float
    width: int
    height: int
    fps: float
    size: int

    @classmethod
    def guess(cls, filename: str, size: int | None = None) -> MediaInfo:
        h = content.digest_int(filename)
        duration = _duration_in_name(filename) or 20.0 + h % 580 + (h // 1000 % 100) / 100
        width, height = _RESOLUTIONS[h % len(_RESOLUTIONS)]
        bytes_guess = int(duration * 5_000_000 / 8)
        return cls(filename, round(duration, 2), width, height, _FPS[h % len(_FPS)], size or bytes_guess)


def _duration_in_name(filename: str) -> float | None:
    stem = content.display_name(filename).rsplit(".", 1)[0]
    match = _DURATION_TOKEN.search(stem)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def check_sync_duration(duration: float) -> None:
    """``POST /analyze`` takes videos of 4 s to 1 hour (400 otherwise; longer ones go async)."""
    if duration > SYNC_MAX_SECONDS:
        raise ApiError(
            400,
            "video_duration_too_long",
            f"The video is {duration:g} seconds long; POST /analyze takes videos of up to 1 hour. "
            "Use POST /analyze/tasks for videos of up to 2 hours.",
        )
    if duration < MIN_ANALYSIS_SECONDS:
        raise ApiError(
            400,
            "video_duration_too_short",
            f"The video is {duration:g} seconds long; the minimum is {MIN_ANALYSIS_SECONDS:g} seconds.",
        )


@dataclass
class Index:
    id: str
    name: str
    models: list[dict[str, Any]]
    addons: list[str]
    created_at: float
    updated_at: float
    seq: int

    @property
    def has_pegasus(self) -> bool:
        return any(str(m.get("model_name", "")).startswith("pegasus") for m in self.models)

    @property
    def indexing_models(self) -> list[str]:
        """Models new videos are indexed with today: Marengo only (docs, 2026). Empty for an index
        that has only Pegasus 1.2, which no longer accepts videos."""
        return [m["model_name"] for m in self.models if str(m["model_name"]).startswith("marengo")]

    def check_accepts_videos(self) -> None:
        if not self.indexing_models:
            raise ApiError(
                400,
                "index_not_supported",
                f"You can no longer add videos to the index {self.id!r}: it has only Pegasus 1.2 enabled. "
                "Create an index with marengo3.0 to search, or analyze the asset directly "
                "(POST /analyze with video: {type: asset_id}), which needs no index.",
            )


@dataclass
class Asset:
    id: str
    method: str
    media: MediaInfo
    source: str  # URL, or the uploaded filename; "corrupt" in it makes processing fail
    user_metadata: dict[str, Any] | None
    enable_hls: bool
    enable_thumbnail: bool
    created_at: float
    schedule: Schedule
    seq: int
    error: str | None = None


@dataclass
class IndexedAsset:
    """An asset indexed into an index. Its ``id`` doubles as the legacy video id."""

    id: str
    index_id: str
    asset_id: str
    media: MediaInfo
    user_metadata: dict[str, Any]
    enable_video_stream: bool
    created_at: float
    schedule: Schedule
    seq: int
    metadata_updated_at: float | None = None
    task_id: str | None = None
    # Models this video was indexed with (Marengo only since 2026; legacy seeds may say Pegasus).
    models: list[str] = field(default_factory=lambda: [MARENGO])

    def updated_at(self, now: float) -> float:
        return max(self.schedule.changed_at(now), self.metadata_updated_at or 0.0)


@dataclass
class Task:
    id: str
    index_id: str
    video_id: str
    asset_id: str
    media: MediaInfo
    enable_video_stream: bool
    created_at: float
    schedule: Schedule
    seq: int


@dataclass
class Analysis:
    id: str
    data: str
    finish_reason: str
    output_tokens: int
    input_tokens: int
    error: str | None = None


@dataclass
class Timing:
    asset_ready_seconds: float = 2.0
    indexing_seconds: float = 4.0


def check_metadata(value: Any, *, allow_null: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("user_metadata must be a JSON object.")
    for key, item in value.items():
        if item is None and allow_null:
            continue
        if not isinstance(item, str | int | float | bool):
            raise invalid(f"user_metadata[{key!r}] must be a string, number or boolean.")
    return value


def metadata_matches(actual: dict[str, Any] | None, wanted: dict[str, str]) -> bool:
    """Query values are text; compare them the way a user would expect for each stored type."""
    actual = actual or {}
    for key, text in wanted.items():
        if key not in actual:
            return False
        value = actual[key]
        if isinstance(value, bool):
            if text.lower() != str(value).lower():
                return False
        elif isinstance(value, int | float):
            try:
                if float(text) != float(value):
                    return False
            except ValueError:
                return False
        elif str(value) != text:
            return False
    return True


@dataclass
class Page:
    items: list[Any]
    page: int
    limit: int
    total: int

    def page_info(self) -> dict[str, int]:
        return {
            "limit_per_page": self.limit,
            "page": self.page,
            "total_page": math.ceil(self.total / self.limit),
            "total_results": self.total,
        }


def paginate(items: list[Any], page: int, limit: int) -> Page:
    start = (page - 1) * limit
    return Page(items[start : start + limit], page, limit, len(items))


@dataclass
class State:
    timing: Timing = field(default_factory=Timing)
    clock: Clock = field(default_factory=Clock)
    seed: int = 0
    indexes: dict[str, Index] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    indexed: dict[str, IndexedAsset] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._edits = 0

    def reset(self) -> None:
        self.indexes.clear()
        self.assets.clear()
        self.indexed.clear()
        self.tasks.clear()
        self._rng = random.Random(self.seed)
        self._seq = 0
        self._edits += 1

    def version(self) -> tuple[int, int, int]:
        """Changes whenever a video is added, removed or edited (for caching listings)."""
        return len(self.indexed), self._seq, self._edits

    # ids --------------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def now(self) -> float:
        return self.clock.now()

    # indexes ----------------------------------------------------------------------------
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

    # assets -----------------------------------------------------------------------------
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

    # indexed assets / videos ------------------------------------------------------------
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

    # legacy tasks -----------------------------------------------------------------------
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

    # analysis ---------------------------------------------------------------------------
    def resolve_analysis_input(
        self, body: dict[str, Any], model: str
    ) -> tuple[MediaInfo, dict[str, Any] | None]:
        has_id, has_video = body.get("video_id") is not None, body.get("video") is not None
        if has_id and has_video:
            raise invalid("Provide exactly one of video_id or video, not both.")
        if not has_id and not has_video:
            raise missing("video")
        if has_id:
            video_id = body["video_id"]
            if model != "pegasus1.2":
                raise invalid(
                    f"video_id is not supported by {model}; pass video: {{type: asset_id, ...}} instead."
                )
            if not isinstance(video_id, str):
                raise invalid("video_id must be a string.")
            video = self.find_video(video_id)
            if not self.indexes[video.index_id].has_pegasus:
                raise ApiError(
                    400,
                    "index_not_supported_for_generate",
                    f"The index of video {video_id!r} has no Pegasus model, so it cannot be analyzed.",
                )
            if not any(m.startswith("pegasus") for m in video.models):
                raise ApiError(
                    400,
                    "index_not_supported_for_generate",
                    f"The video {video_id!r} was indexed with Marengo only (videos added to an index with "
                    "Marengo and Pegasus 1.2 are), so it cannot be analyzed by video_id; pass "
                    "video: {type: asset_id, ...} instead.",
                )
            status = video.schedule.status(self.now())
            if status != "ready":
                raise ApiError(400, "video_not_ready", f"The video {video_id!r} is {status}, not ready.")
            return video.media, video.user_metadata
        video_ctx = body["video"]
        if not isinstance(video_ctx, dict):
            raise invalid("video must be an object with a type.")
        kind = video_ctx.get("type")
        if kind == "url":
            url = video_ctx.get("url")
            if not isinstance(url, str) or "://" not in url:
                raise invalid("video.url must be an absolute URL.")
            if "corrupt" in url.lower():
                raise invalid(
                    "The video at video.url could not be processed (emulated: 'corrupt' in the URL)."
                )
            return MediaInfo.guess(content.display_name(url)), None
        if kind == "asset_id":
            asset_id = video_ctx.get("asset_id")
            if not isinstance(asset_id, str):
                raise missing("video.asset_id")
            asset = self.get_asset(asset_id)
            status = asset.schedule.status(self.now())
            if status != "ready":
                raise ApiError(400, "video_not_ready", f"The asset {asset_id!r} is {status}, not ready.")
            return asset.media, asset.user_metadata
        if kind == "base64_string":
            if not isinstance(video_ctx.get("base64_string"), str) or not video_ctx["base64_string"]:
                raise missing("video.base64_string")
            return MediaInfo.guess("base64_video.mp4"), None
        raise invalid("video.type must be one of url, asset_id, base64_string.")

    def analyze(self, body: dict[str, Any], schema: dict[str, Any] | None, variant: str | None) -> Analysis:
        """Sync analysis: resolve the input, check its duration (4 s to 1 h), produce the answer."""
        model = body.get("model_name", "pegasus1.2")
        media, metadata = self.resolve_analysis_input(body, model)
        check_sync_duration(media.duration)
        prompt = body.get("prompt") or (body.get("prompt_v2") or {}).get("input_text", "")
        return self.render_analysis(
            media,
            metadata,
            prompt,
            schema,
            variant,
            body.get("max_tokens", DEFAULT_MAX_TOKENS),
            window=clip_seconds(media.duration, body.get("start_time"), body.get("end_time")),
        )

    def render_analysis(
        self,
        media: MediaInfo,
        metadata: dict[str, Any] | None,
        prompt: str,
        schema: dict[str, Any] | None,
        variant: str | None,
        max_tokens: int,
        *,
        window: float | None = None,
        data: str | None = None,
        length_warning: str = LENGTH_WARNING,
    ) -> Analysis:
        """Everything but validation: produce text (or take ``data``), then apply max_tokens and any
        model_output fault. Shared by sync ``/analyze`` and the async tasks and batch items."""
        if data is None:
            if schema is not None:
                data = content.json_for_schema(schema, media.filename, metadata)
            else:
                data = content.plain_text(media.filename, metadata, prompt)
        finish, error = "stop", None
        if schema is not None and variant in ("not_json", "missing_keys", "wrong_types"):
            data = _spoil(data, variant, media.filename)
        limit_chars = max_tokens * CHARS_PER_TOKEN
        if variant == "length":
            limit_chars = min(limit_chars, max(len(data) // 2, 1))
        if len(data) > limit_chars:
            data = data[:limit_chars]
            finish = "length"
            error = length_warning
        seconds = media.duration if window is None else window
        return Analysis(
            id=self.new_uuid(),
            data=data,
            finish_reason=finish,
            output_tokens=max(1, math.ceil(len(data) / CHARS_PER_TOKEN)),
            input_tokens=int(seconds * 40) + math.ceil(len(prompt) / CHARS_PER_TOKEN),
            error=error,
        )

    # bulk seeding for benchmarks ----------------------------------------------------------
    def seed_index(
        self,
        index_name: str,
        count: int,
        models: list[dict[str, Any]],
        filenames: list[str] | None,
        user_metadata: dict[str, Any] | None,
        *,
        legacy: bool = False,
    ) -> tuple[Index, list[IndexedAsset]]:
        """Ready videos, instantly. They are indexed as the API would today (Marengo only), except
        in an index with only Pegasus 1.2 or with ``legacy``: then with every model of the index, as
        videos indexed before the 2026 rule were (the only way to get such videos now)."""
        index = next((i for i in self.indexes.values() if i.name == index_name), None)
        if index is None:
            index = self.create_index({"index_name": index_name, "models": models})
        video_models = (
            [m["model_name"] for m in index.models]
            if legacy or not index.indexing_models
            else index.indexing_models
        )
        names = list(filenames or [])
        while len(names) < count:
            names.append(_seed_filename(len(names)))
        videos = []
        for name in names[:count]:
            asset = self.create_asset(
                method="url",
                source=f"https://media.example.invalid/{name}",
                filename=name,
                size=None,
                user_metadata=dict(user_metadata) if user_metadata else None,
                ready_in=0.0,
            )
            now = self.now()
            final = "failed" if asset.error else "ready"
            videos.append(
                self._add_video(
                    index,
                    asset,
                    dict(user_metadata or {}),
                    False,
                    task_id=None,
                    schedule=Schedule([(now, final)]),
                    models=video_models,
                )
            )
        return index, videos


def clip_seconds(duration: float, start: Any, end: Any) -> float:
    """Seconds analysed: the ``start_time``/``end_time`` window (Pegasus 1.5), else the whole video."""
    low = float(start) if isinstance(start, int | float) else 0.0
    high = float(end) if isinstance(end, int | float) else duration
    return max(min(high, duration) - max(low, 0.0), 0.0)


_SEED_WORDS = (
    ("sunrise", "harbour", "mountain", "city", "forest", "desert", "river", "winter", "market", "island"),
    (
        "fishing",
        "cycling",
        "cooking",
        "hiking",
        "sailing",
        "dancing",
        "painting",
        "surfing",
        "baking",
        "climbing",
    ),
    ("tour", "lesson", "diary", "review", "festival", "race", "workshop", "journey", "highlights", "morning"),
)


def _seed_filename(i: int) -> str:
    a, b, c = _SEED_WORDS
    return f"{a[i % 10]}_{b[i // 10 % 10]}_{c[i // 100 % 10]}_{i:05d}.mp4"


def _spoil(data: str, variant: str, filename: str) -> str:
    """Realistic ways a model's JSON goes wrong, for clients' output validation."""
    if variant == "not_json":
        return "Sure! Here is what I found in the video:\n" + content.plain_text(filename, None, "")
    try:
        value = json.loads(data)
    except ValueError:
        return data
    if not isinstance(value, dict) or not value:
        return data
    if variant == "missing_keys":
        value.pop(list(value)[-1])
        return json.dumps(value, ensure_ascii=False)

    def wrong(item: Any) -> Any:
        if isinstance(item, str):
            return [item]
        if isinstance(item, list):
            return ", ".join(str(x) for x in item)
        if isinstance(item, bool | int | float):
            return str(item)
        return [item]

    return json.dumps({k: wrong(v) for k, v in value.items()}, ensure_ascii=False)
