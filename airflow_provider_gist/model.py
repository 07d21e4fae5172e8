"""The gist: what it is, how it is checked, and how a person reads it.

A gist is one video's title, topics and hashtags, in the public shape of the old ``/gist``
endpoint (``id``, ``title``, ``topics``, ``hashtags``, ``usage``) plus where it came from.
Every gist passes through here twice at most: built from a model's answer
(:func:`gist_from_answer`, which cleans the labels) and checked as a dict before it is stored
(:meth:`Gist.from_dict`, which only validates). How a gist is *asked for* lives in
:mod:`airflow_provider_gist.analysis`.

Pure: no HTTP, no Airflow. Everything here is unit-tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow_provider_gist.errors import GistModelOutputError, GistValidationError
from airflow_provider_gist.ids import validate_id, validate_optional_id


class GistType(StrEnum):
    """The three kinds of gist the legacy ``/gist`` endpoint offered (its names are kept)."""

    TITLE = "title"
    TOPIC = "topic"
    HASHTAG = "hashtag"


ALL_TYPES: tuple[GistType, ...] = (GistType.TITLE, GistType.TOPIC, GistType.HASHTAG)

#: Where each type lands in the answer and in :meth:`Gist.to_dict` (the legacy plural keys).
FIELD_OF: dict[GistType, str] = {
    GistType.TITLE: "title",
    GistType.TOPIC: "topics",
    GistType.HASHTAG: "hashtags",
}

#: Bumped whenever the prompt or schema changes meaning, so stored gists can be refreshed.
PROMPT_VERSION = "gist-v1"
VIDEO_REF_TYPES = ("asset_id", "video_id")

# Upper bounds the prompt asks for; the schema cannot say maxItems (422), so we cut here.
MAX_TOPICS = 5
MAX_HASHTAGS = 8
MAX_TITLE_CHARS = 300

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


def parse_types(value: object, field_name: str = "types") -> tuple[GistType, ...]:
    """Turn user input into a de-duplicated tuple of gist types in canonical order.

    Accepts ``None`` (all three), a string (``"title"`` or ``"title,topic"``) or an iterable
    of strings. Unknown or empty input raises :class:`GistValidationError` naming the field.
    """
    if value is None:
        return ALL_TYPES
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",")]
    elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        items = list(value)
    else:
        raise GistValidationError(f"{field_name} must be a list of gist types, got {type(value).__name__}")
    if not items or all(item == "" for item in items):
        raise GistValidationError(f"{field_name} must name at least one of {', '.join(ALL_TYPES)}")
    allowed = {t.value: t for t in ALL_TYPES}
    unknown = [
        repr(item) for item in items if not (isinstance(item, str) and item.strip().lower() in allowed)
    ]
    if unknown:
        raise GistValidationError(
            f"{field_name} has unknown gist type(s) {', '.join(unknown)}: allowed are {', '.join(ALL_TYPES)}"
        )
    wanted = {allowed[str(item).strip().lower()] for item in items}
    return tuple(t for t in ALL_TYPES if t in wanted)


#: Invisible format characters that are part of the text itself, so they are kept: ZWNJ and ZWJ
#: (Persian and Indic spelling; emoji sequences such as the family or profession emoji).
_KEPT_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})
#: Tag characters: the hidden letters of subdivision flags (England, Scotland, Wales).
_TAG_CHARS = ("\U000e0020", "\U000e007f")


def _kept(ch: str) -> bool:
    return (
        ch.isprintable() or ch.isspace() or ch in _KEPT_FORMAT_CHARS or _TAG_CHARS[0] <= ch <= _TAG_CHARS[1]
    )


def _clean_text(value: str) -> str:
    # Control characters (NUL above all) cannot be stored in PostgreSQL text and never belong
    # in a title, nor do bidi overrides or zero-width spaces; whitespace runs, newlines
    # included, fold to one space. ZWJ/ZWNJ and tag characters stay: replacing them would
    # break emoji sequences (a family emoji into four people) and words.
    printable = "".join(ch if _kept(ch) else " " for ch in value)
    return " ".join(printable.split())


def normalize_labels(
    values: Iterable[object], *, hashtag: bool = False, limit: int | None = None
) -> tuple[str, ...]:
    """Trim, strip a leading ``#``, drop empties, de-duplicate case-insensitively keeping order.

    Hashtags also lose inner whitespace (``"#Harbour Life"`` -> ``"HarbourLife"``), since a
    hashtag with a space is two words to every platform that reads it.
    """
    seen: set[str] = set()
    out: list[str] = []
    for raw in values:
        if not isinstance(raw, str):
            continue
        text = _clean_text(raw).lstrip("#").strip()
        if hashtag:
            text = "".join(text.split()).lstrip("#")
        key = text.casefold()
        if not text or key in seen:
            continue
        seen.add(key)
        out.append(text)
        if limit is not None and len(out) >= limit:
            break
    return tuple(out)


def utc_now_iso() -> str:
    """Now, as the ISO 8601 UTC stamp gists carry."""
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Gist:
    """One video's gist: only the requested parts are set; small and JSON-safe via :meth:`to_dict`."""

    id: str
    video_ref: str
    video_ref_type: str  # "asset_id" | "video_id"
    model: str
    types: tuple[GistType, ...]
    title: str | None = None
    topics: tuple[str, ...] | None = None
    hashtags: tuple[str, ...] | None = None
    output_tokens: int = 0
    input_tokens: int | None = None
    #: ISO 8601, kept as text so a stored gist reads back exactly as it was written
    generated_at: str = field(default_factory=utc_now_iso)
    index_id: str | None = None
    source_updated_at: str | None = None
    prompt_version: str = PROMPT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (XCom-ready); ``title``/``topics``/``hashtags`` only if requested."""
        out: dict[str, Any] = {
            "id": self.id,
            "video_ref": self.video_ref,
            "video_ref_type": self.video_ref_type,
            "index_id": self.index_id,
            "model": self.model,
            "types": [t.value for t in self.types],
            "prompt_version": self.prompt_version,
        }
        if GistType.TITLE in self.types:
            out["title"] = self.title
        if GistType.TOPIC in self.types:
            out["topics"] = list(self.topics or ())
        if GistType.HASHTAG in self.types:
            out["hashtags"] = list(self.hashtags or ())
        out["usage"] = {"output_tokens": self.output_tokens, "input_tokens": self.input_tokens}
        out["generated_at"] = self.generated_at
        out["source_updated_at"] = self.source_updated_at
        return out

    @classmethod
    def from_dict(cls, data: object, position: int = 0) -> Gist:
        """Check a gist dict (as :meth:`to_dict` makes it) against the contract; never rewrites it.

        Unknown keys are dropped and ``types`` is put in canonical order; anything else that is
        off raises :class:`GistValidationError` naming the gist (``position`` in its batch) and
        the field. ``to_dict()`` of the result is the clean copy a store writes.
        """
        return _gist_from_dict(data, position)

    def describe(self) -> str:
        """One line a person reads in a task log (see :func:`describe_gist`)."""
        return describe_gist(self.to_dict())


def describe_gist(gist: Mapping[str, Any]) -> str:
    """One line for a gist dict: where it is from, then its title, topics and #hashtags."""
    where = f"{gist.get('video_ref_type')} {gist.get('video_ref')}"
    if gist.get("index_id"):
        where += f" (index {gist['index_id']})"
    parts = []
    if gist.get("title") is not None:
        parts.append(f"title: {gist['title']!r}")
    if gist.get("topics") is not None:
        parts.append("topics: " + (", ".join(gist["topics"]) or "-"))
    if gist.get("hashtags") is not None:
        parts.append("hashtags: " + (" ".join("#" + h for h in gist["hashtags"]) or "-"))
    return f"{where}: " + "; ".join(parts)


def gist_from_answer(
    answer: Mapping[str, Any],
    *,
    types: tuple[GistType, ...],
    video_ref: str,
    video_ref_type: str,
    model: str,
    generation_id: str,
    output_tokens: int,
    input_tokens: int | None = None,
    index_id: str | None = None,
    source_updated_at: str | None = None,
    generated_at: str | None = None,
    prompt_version: str = PROMPT_VERSION,
) -> Gist:
    """Validate and normalize a decoded answer into a :class:`Gist` (labels cleaned and capped).

    Raises :class:`GistModelOutputError` naming what is missing or malformed.
    """
    problems: list[str] = []
    title: str | None = None
    topics: tuple[str, ...] | None = None
    hashtags: tuple[str, ...] | None = None
    if GistType.TITLE in types:
        raw_title = answer.get("title")
        if not isinstance(raw_title, str) or not _clean_text(raw_title).strip("\"' "):
            problems.append("'title' is missing or not a non-empty string")
        else:
            title = _clean_text(raw_title).strip("\"'").strip()[:MAX_TITLE_CHARS]
    for gist_type, limit in ((GistType.TOPIC, MAX_TOPICS), (GistType.HASHTAG, MAX_HASHTAGS)):
        if gist_type not in types:
            continue
        key = FIELD_OF[gist_type]
        raw = answer.get(key)
        if not isinstance(raw, list):
            problems.append(f"{key!r} is missing or not a list")
            continue
        labels = normalize_labels(raw, hashtag=gist_type is GistType.HASHTAG, limit=limit)
        if not labels:
            problems.append(f"{key!r} has no usable entries")
        elif gist_type is GistType.TOPIC:
            topics = labels
        else:
            hashtags = labels
    if problems:
        raise GistModelOutputError(
            f"model output for {video_ref_type} {video_ref} is not a valid gist: " + "; ".join(problems),
            generation_id=generation_id,
        )
    return Gist(
        id=generation_id,
        video_ref=video_ref,
        video_ref_type=video_ref_type,
        model=model,
        types=types,
        title=title,
        topics=topics,
        hashtags=hashtags,
        output_tokens=output_tokens,
        input_tokens=input_tokens,
        index_id=index_id,
        source_updated_at=source_updated_at,
        generated_at=generated_at or utc_now_iso(),
        prompt_version=prompt_version,
    )


def _fail(position: int, ref: object, message: str) -> GistValidationError:
    who = f"gist #{position}" + (f" (video_ref {ref!r})" if isinstance(ref, str) and len(ref) <= 80 else "")
    return GistValidationError(f"{who}: {message}")


def _str_list(value: object, position: int, ref: object, key: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(position, ref, f"{key} must be a list of strings")
    return list(value)


def _gist_from_dict(gist: object, position: int) -> Gist:
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

    parts: dict[str, Any] = {}
    for gist_type in ALL_TYPES:
        key = FIELD_OF[gist_type]
        value = gist.get(key)
        if gist_type not in types:
            if value is not None:
                raise _fail(position, ref, f"{key} is set but {gist_type.value!r} is not in types")
        elif key == "title":
            if value is not None and not isinstance(value, str):
                raise _fail(position, ref, "title must be a string")
            parts[key] = value
        else:
            parts[key] = tuple(_str_list(value if value is not None else [], position, ref, key))

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

    stamps: dict[str, str | None] = {}
    for key in ("generated_at", "source_updated_at"):
        value = gist.get(key)
        if value is None and key == "source_updated_at":
            stamps[key] = None
            continue
        if not isinstance(value, str):
            raise _fail(position, ref, f"{key} must be an ISO 8601 string")
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise _fail(position, ref, f"{key} {value[:40]!r} is not an ISO 8601 timestamp") from None
        stamps[key] = value
    return Gist(
        id=gist["id"],
        video_ref=video_ref,
        video_ref_type=gist["video_ref_type"],
        model=gist["model"],
        types=types,
        output_tokens=output_tokens,
        input_tokens=input_tokens,
        generated_at=str(stamps["generated_at"]),
        index_id=index_id,
        source_updated_at=stamps["source_updated_at"],
        prompt_version=gist["prompt_version"],
        **parts,
    )
