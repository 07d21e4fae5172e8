"""What every wait for a remote object shares: its name, its fields when ready, its failure reason.

The sensors (:mod:`airflow_provider_gist.sensors.indexing`) and the triggers they defer to
(:mod:`airflow_provider_gist.triggers.indexing`) judge and report an asset, an indexed asset or a
legacy indexing task the same way through these functions. Pure: no HTTP, no Airflow, so a
DAG file importing a sensor does not load the trigger machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Fields per resource: what the event carries for "ready" and the sensors push to XCom.
READY_FIELDS: dict[str, tuple[str, ...]] = {
    "asset": ("asset_id", "status", "filename", "file_type", "duration", "created_at"),
    "indexed_asset": (
        "index_id",
        "indexed_asset_id",
        "video_id",
        "asset_id",
        "status",
        "filename",
        "duration",
        "updated_at",
        "indexed_at",
    ),
    "indexing_task": (
        "indexing_task_id",
        "index_id",
        "video_id",
        "status",
        "filename",
        "duration",
        "updated_at",
    ),
    # the result itself is read by the operator when it resumes (a real state check), not
    # carried in the event: a gist's JSON has no place in the triggerer's event table
    "analysis_task": ("analysis_task_id", "custom_id", "status", "created_at", "completed_at"),
    "analysis_batch": ("batch_id", "status", "total_items", "created_at", "completed_at"),
}

_NOUNS = {
    "asset": "asset",
    "indexed_asset": "indexed asset",
    "indexing_task": "indexing task",
    "analysis_task": "analysis task",
    "analysis_batch": "batch",
}


def describe(resource: str, ids: Mapping[str, Any]) -> str:
    """Human name of the awaited object, e.g. ``indexed asset 66a0... in index 65ef...``."""
    noun = _NOUNS.get(resource, resource)
    if resource == "asset":
        return f"{noun} {ids.get('asset_id')}"
    if resource == "indexed_asset":
        return f"{noun} {ids.get('indexed_asset_id')} in index {ids.get('index_id')}"
    if resource == "analysis_task":
        return f"{noun} {ids.get('analysis_task_id')}"
    if resource == "analysis_batch":
        return f"{noun} {ids.get('batch_id')}"
    return f"{noun} {ids.get('indexing_task_id')}"


def ready_fields(resource: str, remote: Mapping[str, Any], ids: Mapping[str, Any]) -> dict[str, Any]:
    """An API object as the small, JSON-safe dict the sensors return (one shape per resource).

    ``ids`` are the ids we asked for; values the API returns win only where we had none. The
    indexed asset's id doubles as the video id in its index (search, analysis by video id).
    """
    raw_system = remote.get("system_metadata")
    system: Mapping[str, Any] = raw_system if isinstance(raw_system, Mapping) else {}
    values: dict[str, Any] = {
        "status": remote.get("status"),
        "filename": remote.get("filename") or system.get("filename"),
        "duration": remote.get("duration") if remote.get("duration") is not None else system.get("duration"),
        "file_type": remote.get("file_type"),
        "created_at": remote.get("created_at"),
        "updated_at": remote.get("updated_at"),
        "indexed_at": remote.get("indexed_at"),
        "asset_id": remote.get("asset_id"),
        "index_id": remote.get("index_id"),
        "video_id": remote.get("video_id"),
        "custom_id": remote.get("custom_id"),
        "completed_at": remote.get("completed_at"),
        "total_items": remote.get("total_items"),
    }
    if resource == "asset":
        values["asset_id"] = remote.get("_id")
    elif resource == "indexed_asset":
        values["indexed_asset_id"] = remote.get("_id")
        values["video_id"] = remote.get("_id")
    elif resource == "indexing_task":
        values["indexing_task_id"] = remote.get("_id")
    elif resource == "analysis_task":
        values["analysis_task_id"] = remote.get("task_id")
    elif resource == "analysis_batch":
        values["batch_id"] = remote.get("batch_id")
    for key, value in ids.items():
        values[key] = value  # the ids we were given are authoritative
    return {key: _plain(values.get(key)) for key in READY_FIELDS[resource]}


def failure_reason(resource: str, remote: Mapping[str, Any], ids: Mapping[str, Any]) -> str:
    """The API's reason for a ``failed`` object, else a clear default (callers name the object).

    Assets answer ``error.message``; indexed assets and legacy tasks document no reason, so we
    read whatever the API gives in the usual places and fall back to our own text.
    """
    error = remote.get("error")
    candidates = [
        error.get("message") if isinstance(error, Mapping) else error,
        remote.get("failure_reason"),
        remote.get("message"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return "the API gave no reason (check the video's format, length and URL)"


def _plain(value: Any) -> Any:
    """Keep XCom and event values to JSON scalars: anything else becomes its string form."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
