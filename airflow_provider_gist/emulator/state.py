"""In-memory model of the emulated account: indexes, assets, indexed assets (= videos), tasks, analysis.

``State`` is the one object the routes hold. Each resource family keeps its operations in its own
module, and ``State`` joins them:

- ``state_core``: the stored resources, the clock, ids, ``reset`` and ``version``
- ``state_indexes``, ``state_assets``, ``state_videos`` (with embeddings), ``state_tasks``
- ``state_analysis``: which video an analysis reads, sync ``/analyze``, the shared answer
- ``state_seed``: bulk seeding for benchmarks

The names the rest of the emulator imports from here (errors, clock and schedules, media, the
resource models, metadata and paging helpers) live in their own modules and are re-exported, so
``from .state import X`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api_errors import ApiError, invalid, missing, not_found
from .media import (
    ASYNC_MAX_SECONDS,
    MIN_ANALYSIS_SECONDS,
    SYNC_MAX_SECONDS,
    MediaInfo,
    check_sync_duration,
    clip_seconds,
)
from .metadata import check_metadata, metadata_matches
from .paging import Page, paginate
from .resources import MARENGO, Analysis, Asset, Index, IndexedAsset, Task
from .state_analysis import (
    ANALYZE_MODELS,
    CHARS_PER_TOKEN,
    DEFAULT_MAX_TOKENS,
    LENGTH_WARNING,
    MAX_TOKENS,
    AnalysisStore,
)
from .state_indexes import INDEX_MODELS, MODEL_OPTIONS
from .state_seed import SeedStore
from .state_tasks import TaskStore
from .state_videos import EMBEDDING_OPTIONS
from .timeline import Clock, Schedule, Timing, parse_rfc3339, rfc3339

__all__ = [
    "ANALYZE_MODELS",
    "ASYNC_MAX_SECONDS",
    "CHARS_PER_TOKEN",
    "DEFAULT_MAX_TOKENS",
    "EMBEDDING_OPTIONS",
    "INDEX_MODELS",
    "LENGTH_WARNING",
    "MARENGO",
    "MAX_TOKENS",
    "MIN_ANALYSIS_SECONDS",
    "MODEL_OPTIONS",
    "SYNC_MAX_SECONDS",
    "Analysis",
    "ApiError",
    "Asset",
    "Clock",
    "Index",
    "IndexedAsset",
    "MediaInfo",
    "Page",
    "Schedule",
    "State",
    "Task",
    "Timing",
    "check_metadata",
    "check_sync_duration",
    "clip_seconds",
    "invalid",
    "metadata_matches",
    "missing",
    "not_found",
    "paginate",
    "parse_rfc3339",
    "rfc3339",
]


@dataclass
class State(TaskStore, AnalysisStore, SeedStore):
    """The emulated account. Its fields (``timing``, ``clock``, ``seed`` and the resource dicts) are
    ``StateCore``'s; re-declaring it a dataclass keeps the generated ``__init__``/``__repr__``/``__eq__``
    those of ``State``, exactly as when it was one class."""
