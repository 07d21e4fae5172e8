"""What every gist store shares: the :class:`GistStore` protocol, gist validation, row conversion.

A stored gist is keyed by ``(index_id, video_ref)``: one record per video per index, replaced
on every rerun. ``index_id`` may be ``None`` (a gist made from an asset that is in no index);
stores that need a non-null key spell that as :data:`NO_INDEX` (SQL) or a reserved folder
name (objects), and give ``None`` back on read.

Pure: no Airflow, no I/O, so both stores (and a web process) can use it cheaply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.model import Gist

#: Stored ``index_id`` meaning "no index": a key column cannot be NULL. ``ids.validate_id``
#: never accepts an empty string, so it cannot collide with a real index id.
NO_INDEX = ""

#: Column order of the SQL table and of :func:`gist_to_row`.
COLUMNS: tuple[str, ...] = (
    "index_id",
    "video_ref",
    "video_ref_type",
    "generation_id",
    "title",
    "topics",
    "hashtags",
    "model",
    "types",
    "prompt_version",
    "source_updated_at",
    "generated_at",
    "output_tokens",
    "input_tokens",
    "stored_at",
)
KEY_COLUMNS: tuple[str, ...] = ("index_id", "video_ref")


@runtime_checkable
class GistStore(Protocol):
    """Where gists are kept: one record per ``(index_id, video_ref)``, replaced on rerun."""

    @property
    def location(self) -> str:
        """Human-readable, secret-free description of where gists go (path, table, base URL)."""
        ...

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        """Validate all gists, then store them all or none; return how many records were written."""
        ...

    def get(self, index_id: str | None, video_ref: str) -> dict[str, Any] | None:
        """The stored gist dict (plus ``stored_at``) or ``None``."""
        ...

    def list_gists(
        self, *, index_id: str | None = None, text: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Stored gists, newest ``generated_at`` first, optionally filtered."""
        ...

    def fingerprints(self, index_id: str | None) -> dict[str, dict[str, Any]]:
        """``{video_ref: {source_updated_at, types, model, prompt_version}}`` for one index."""
        ...

    def count(self, index_id: str | None = None) -> int:
        """Number of stored gists, in one index or in all of them (``None``)."""
        ...


def airflow_home() -> Path:
    """``$AIRFLOW_HOME`` resolved the way Airflow does (default ``~/airflow``), read at call time."""
    value = os.environ.get("AIRFLOW_HOME", "~/airflow")
    # Airflow expands nested env vars and ~ until stable; one pass of each is enough in practice,
    # but loop like airflow.configuration.expand_env_var so "$X" pointing at "~/y" works too.
    while True:
        expanded = os.path.expanduser(os.path.expandvars(value))
        if expanded == value:
            return Path(expanded)
        value = expanded


def stored_at_now() -> str:
    """The ``stored_at`` stamp: ISO 8601, UTC, seconds precision."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def normalize_gists(gists: Iterable[object]) -> list[dict[str, Any]]:
    """Validate every gist before anything is written; later duplicates of a key win.

    Returns the clean gists in input order (a duplicate takes the place of the first occurrence),
    so a batch never tries to write the same ``(index_id, video_ref)`` twice.
    """
    by_key: dict[tuple[str | None, str], dict[str, Any]] = {}
    for position, gist in enumerate(gists):
        clean = Gist.from_dict(gist, position).to_dict()
        by_key[(clean["index_id"], clean["video_ref"])] = clean
    return list(by_key.values())


def dumps(value: object) -> str:
    """JSON for storage: UTF-8 text as is (no \\u escapes), compact, stable."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def gist_to_row(gist: Mapping[str, Any], stored_at: str) -> tuple[Any, ...]:
    """A normalised gist as a row tuple in :data:`COLUMNS` order."""
    return (
        gist["index_id"] if gist["index_id"] is not None else NO_INDEX,
        gist["video_ref"],
        gist["video_ref_type"],
        gist["id"],
        gist.get("title"),
        dumps(gist["topics"]) if "topics" in gist else None,
        dumps(gist["hashtags"]) if "hashtags" in gist else None,
        gist["model"],
        dumps(gist["types"]),
        gist["prompt_version"],
        gist["source_updated_at"],
        gist["generated_at"],
        gist["usage"]["output_tokens"],
        gist["usage"]["input_tokens"],
        stored_at,
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def row_to_gist(row: Sequence[Any]) -> dict[str, Any]:
    """A row in :data:`COLUMNS` order back to the gist dict shape, plus ``stored_at``."""
    rec = dict(zip(COLUMNS, row, strict=True))
    types = json.loads(rec["types"])
    gist: dict[str, Any] = {
        "id": rec["generation_id"],
        "video_ref": rec["video_ref"],
        "video_ref_type": rec["video_ref_type"],
        "index_id": rec["index_id"] or None,
        "model": rec["model"],
        "types": types,
        "prompt_version": rec["prompt_version"],
    }
    if "title" in types:
        gist["title"] = rec["title"]
    if "topic" in types:
        gist["topics"] = json.loads(rec["topics"]) if rec["topics"] is not None else []
    if "hashtag" in types:
        gist["hashtags"] = json.loads(rec["hashtags"]) if rec["hashtags"] is not None else []
    gist["usage"] = {
        "output_tokens": int(rec["output_tokens"]),
        "input_tokens": _opt_int(rec["input_tokens"]),
    }
    gist["generated_at"] = rec["generated_at"]
    gist["source_updated_at"] = rec["source_updated_at"]
    gist["stored_at"] = rec["stored_at"]
    return gist


def fingerprint(gist: Mapping[str, Any]) -> dict[str, Any]:
    """What decides whether a stored gist is still current for a video."""
    return {
        "source_updated_at": gist.get("source_updated_at"),
        "types": list(gist["types"]),
        "model": gist["model"],
        "prompt_version": gist["prompt_version"],
    }


def matches_text(gist: Mapping[str, Any], text: str) -> bool:
    """Case-insensitive substring match on title, topics or hashtags (``#tag`` = hashtags only)."""
    needle = text.casefold()
    if needle.startswith("#"):
        return any(needle[1:] in h.casefold() for h in gist.get("hashtags") or ())
    haystack = [gist.get("title") or "", *(gist.get("topics") or ()), *(gist.get("hashtags") or ())]
    return any(needle in item.casefold() for item in haystack)


def check_page(limit: int, offset: int) -> None:
    """Refuse page arguments that would make an unbounded or nonsensical query."""
    for name, value, minimum in (("limit", limit, 1), ("offset", offset, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise GistValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
