"""The catalog refresh: which videos of an index need a (new) gist (:mod:`.plan`, pure), and the
engine that generates and stores them (:mod:`.engine`, loaded on first use).
"""

from __future__ import annotations

from airflow_provider_gist.refresh.plan import (
    LISTINGS,
    REASONS,
    CatalogVideo,
    PlannedVideo,
    RefreshPlan,
    RefreshSummary,
    VideoFailure,
    failure_kind,
    failure_message,
    plan_refresh,
    regeneration_reason,
    video_from_listing,
)

__all__ = [
    "LISTINGS",
    "REASONS",
    "CatalogVideo",
    "PlannedVideo",
    "RefreshPlan",
    "RefreshSummary",
    "VideoFailure",
    "failure_kind",
    "failure_message",
    "plan_refresh",
    "regeneration_reason",
    "video_from_listing",
]
