"""What every gist store shares: the :class:`GistStore` protocol, gist validation, row conversion.

A stored gist is keyed by ``(index_id, video_ref)``: one record per video per index, replaced
only by a newer gist (:func:`supersedes`), and stamped with the DAG that stored it (``dag_id``,
which decides who may read it in the gist view). ``index_id`` may be ``None`` (a gist made
from an asset that is in no index); stores that need a non-null key spell that as
:data:`NO_INDEX` (SQL) or a reserved folder name (objects), and give ``None`` back on read.

Pure: no Airflow, no I/O, so both stores (and a web process) can use it cheaply.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.model import Gist

#: Stored ``index_id`` meaning "no index": a key column cannot be NULL. ``ids.validate_id``
#: never accepts an empty string, so it cannot collide with a real index id.
NO_INDEX = ""

#: Columns a read gives back, in :func:`row_to_gist` order.
READ_COLUMNS: tuple[str, ...] = (
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
    "dag_id",
)
#: Normalised UTC forms of ``generated_at``/``source_updated_at``: written, never read back.
#: The stored stamps stay byte-exact as the gist carried them ("Z", "+00:00", offsets, any
#: precision), which do not sort as text; these do, so the database itself can decide which of
#: two gists is newer (:func:`supersedes`) inside the upsert.
ORDER_COLUMNS: tuple[str, ...] = ("generated_utc", "source_updated_utc")
#: Column order of the SQL table and of :func:`gist_to_row`.
COLUMNS: tuple[str, ...] = (*READ_COLUMNS, *ORDER_COLUMNS)
KEY_COLUMNS: tuple[str, ...] = ("index_id", "video_ref")


@runtime_checkable
class GistStore(Protocol):
    """Where gists are kept: one record per ``(index_id, video_ref)``, replaced on rerun."""

    @property
    def location(self) -> str:
        """Human-readable, secret-free description of where gists go (path, table, base URL)."""
        ...

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        """Validate all gists, then store them all or none; return how many records were written.

        A gist replaces a stored one only if it :func:`supersedes` it; the others are skipped
        (not counted). Records are stamped with the store's ``dag_id``.
        """
        ...

    def get(self, index_id: str | None, video_ref: str) -> dict[str, Any] | None:
        """The stored gist dict (plus ``stored_at``) or ``None``."""
        ...

    def list_gists(
        self,
        *,
        index_id: str | None = None,
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
        dag_ids: Collection[str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored gists, newest ``generated_at`` first, optionally filtered.

        ``dag_ids``: only gists stored by these DAGs (``None`` in it: gists with no DAG);
        ``None`` means no DAG filter.
        """
        ...

    def stored_dag_ids(self) -> set[str | None]:
        """The DAG ids that stored the gists (``None``: gists stored outside any DAG)."""
        ...

    def fingerprints(
        self, index_id: str | None, video_refs: Collection[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{video_ref: {source_updated_at, types, model, prompt_version}}`` for one index.

        With ``video_refs``, only those videos (the ones stored): a catalog refresh asks page by
        page, so its memory does not grow with the index.
        """
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


def gist_to_row(gist: Mapping[str, Any], stored_at: str, dag_id: str | None = None) -> tuple[Any, ...]:
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
        dag_id,
        utc_key(gist["generated_at"]),
        utc_key(gist["source_updated_at"]),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def row_to_gist(row: Sequence[Any]) -> dict[str, Any]:
    """A row in :data:`READ_COLUMNS` order back to the gist dict shape, plus ``stored_at`` and ``dag_id``."""
    rec = dict(zip(READ_COLUMNS, row, strict=True))
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
    gist["dag_id"] = rec["dag_id"] or None
    return gist


def utc_key(stamp: str | None) -> str | None:
    """An ISO 8601 stamp as fixed-width UTC text (microseconds), so that text order is time order.

    A stamp without an offset is taken as UTC (the API and this provider always write UTC).
    """
    if stamp is None:
        return None
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def supersedes(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether gist ``new`` may replace the stored gist ``old`` of the same video.

    A gist of a newer source version (``source_updated_at``) wins; for the same version (or when
    either does not know it) the later ``generated_at`` wins; equal is a no-op. So clearing an
    old run's store task, or a manual run that finishes after a refresh, never puts an older
    gist back. The SQL store runs the same rule inside its upsert (``sql._NEWER``).
    """
    new_source, old_source = utc_key(new.get("source_updated_at")), utc_key(old.get("source_updated_at"))
    if new_source is not None and old_source is not None and new_source != old_source:
        return new_source > old_source
    old_generated = old.get("generated_at")
    if old_generated is None:
        return True
    return str(utc_key(new["generated_at"])) > str(utc_key(old_generated))


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
