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
from airflow_provider_gist.gist import ALL_TYPES, FIELD_OF, parse_types
from airflow_provider_gist.ids import validate_id, validate_optional_id

#: Stored ``index_id`` meaning "no index": a key column cannot be NULL. ``ids.validate_id``
#: never accepts an empty string, so it cannot collide with a real index id.
NO_INDEX = ""

VIDEO_REF_TYPES = ("asset_id", "video_id")

#: Keys every gist dict must carry (``index_id`` and ``source_updated_at`` may be ``None``).
REQUIRED_KEYS = (
    "id",
    "video_ref",
    "video_ref_type",
    "model",
    "types",
    "prompt_version",
    "usage",
    "generated_at",
)

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


def utc_now_iso() -> str:
    """The ``stored_at`` stamp: ISO 8601, UTC, seconds precision."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fail(position: int, ref: object, message: str) -> GistValidationError:
    who = f"gist #{position}" + (f" (video_ref {ref!r})" if isinstance(ref, str) and len(ref) <= 80 else "")
    return GistValidationError(f"{who}: {message}")


def _str_list(value: object, position: int, ref: object, key: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(position, ref, f"{key} must be a list of strings")
    return list(value)


def normalize_gist(gist: object, position: int = 0) -> dict[str, Any]:
    """Check one gist dict against the contract and return a clean copy in canonical key order.

    Unknown keys are dropped; ``types`` is put in canonical order; parts that were not requested
    are left out. Raises :class:`GistValidationError` naming the gist and the field.
    """
    if not isinstance(gist, Mapping):
        raise _fail(position, None, f"expected a gist dict, got {type(gist).__name__}")
    ref = gist.get("video_ref")
    missing = [key for key in REQUIRED_KEYS if key not in gist]
    if missing:
        raise _fail(position, ref, f"missing key(s) {', '.join(missing)}")
    if not isinstance(gist["types"], list | tuple):
        raise _fail(position, ref, "types must be a list")
    try:  # these raise GistValidationError naming the field; add which gist it was
        video_ref = validate_id(ref, "video_ref")
        index_id = validate_optional_id(gist.get("index_id"), "index_id")
        types = parse_types(gist["types"])
    except GistValidationError as err:
        raise _fail(position, ref, str(err)) from None
    if gist["video_ref_type"] not in VIDEO_REF_TYPES:
        raise _fail(position, ref, f"video_ref_type must be one of {', '.join(VIDEO_REF_TYPES)}")
    for key in ("id", "model", "prompt_version"):
        if not isinstance(gist[key], str) or not gist[key]:
            raise _fail(position, ref, f"{key} must be a non-empty string")

    out: dict[str, Any] = {
        "id": gist["id"],
        "video_ref": video_ref,
        "video_ref_type": gist["video_ref_type"],
        "index_id": index_id,
        "model": gist["model"],
        "types": [t.value for t in types],
        "prompt_version": gist["prompt_version"],
    }
    for gist_type in ALL_TYPES:
        key = FIELD_OF[gist_type]
        if gist_type not in types:
            if gist.get(key) is not None:
                raise _fail(position, ref, f"{key} is set but {gist_type.value!r} is not in types")
            continue
        value = gist.get(key)
        if key == "title":
            if value is not None and not isinstance(value, str):
                raise _fail(position, ref, "title must be a string")
            out[key] = value
        else:
            out[key] = _str_list(value if value is not None else [], position, ref, key)

    usage = gist["usage"]
    if not isinstance(usage, Mapping):
        raise _fail(position, ref, "usage must be a dict")
    output_tokens, input_tokens = usage.get("output_tokens"), usage.get("input_tokens")
    # bool is an int subclass: refuse it explicitly, a True token count is a bug upstream
    if not isinstance(output_tokens, int) or isinstance(output_tokens, bool) or output_tokens < 0:
        raise _fail(position, ref, "usage.output_tokens must be a non-negative integer")
    if input_tokens is not None and (
        not isinstance(input_tokens, int) or isinstance(input_tokens, bool) or input_tokens < 0
    ):
        raise _fail(position, ref, "usage.input_tokens must be a non-negative integer or null")
    out["usage"] = {"output_tokens": output_tokens, "input_tokens": input_tokens}

    for key in ("generated_at", "source_updated_at"):
        value = gist.get(key)
        if value is None and key == "source_updated_at":
            out[key] = None
            continue
        if not isinstance(value, str):
            raise _fail(position, ref, f"{key} must be an ISO 8601 string")
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise _fail(position, ref, f"{key} {value[:40]!r} is not an ISO 8601 timestamp") from None
        out[key] = value
    return out


def normalize_gists(gists: Iterable[object]) -> list[dict[str, Any]]:
    """Validate every gist before anything is written; later duplicates of a key win.

    Returns the clean gists in input order (a duplicate takes the place of the first occurrence),
    so a batch never tries to write the same ``(index_id, video_ref)`` twice.
    """
    by_key: dict[tuple[str | None, str], dict[str, Any]] = {}
    for position, gist in enumerate(gists):
        clean = normalize_gist(gist, position)
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
