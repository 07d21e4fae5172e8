"""The emulated account's resources: indexes, assets, indexed assets (= videos), tasks, analyses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .api_errors import ApiError
from .media import MediaInfo
from .timeline import Schedule

MARENGO = "marengo3.0"


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
