"""The gist model: what a gist is, how we ask ``/analyze`` for one, and how we read the answer.

TwelveLabs removed ``POST /gist`` on 2026-02-15. We now ask ``POST /analyze`` (``stream: false``)
for a JSON answer constrained by ``response_format: {type: json_schema}`` and map it back to the
old public shape (``id``, ``title``, ``topics``, ``hashtags``, ``usage``).

This module is pure: no HTTP, no Airflow. Everything here is unit-tested directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow_provider_gist.errors import GistModelOutputError, GistValidationError


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

DEFAULT_MODEL = "pegasus1.2"
#: Models that can answer ``/analyze``; ``video_id`` references work with pegasus1.2 only.
ANALYZE_MODELS = ("pegasus1.2", "pegasus1.5")
LEGACY_VIDEO_ID_MODELS = ("pegasus1.2",)
#: ``max_tokens`` ranges the API enforces per model (digest §8).
MAX_TOKENS_RANGE: dict[str, tuple[int, int]] = {"pegasus1.2": (2, 4096), "pegasus1.5": (512, 98304)}
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TEMPERATURE = 0.2

# Upper bounds the prompt asks for; the schema cannot say maxItems (422), so we cut here.
MAX_TOPICS = 5
MAX_HASHTAGS = 8
MAX_TITLE_CHARS = 300

_DEFINITIONS: dict[GistType, str] = {
    GistType.TITLE: (
        "`title`: one specific, descriptive title for the whole video, at most 12 words, "
        "no quotation marks and no hashtags."
    ),
    GistType.TOPIC: (
        "`topics`: 2 to 5 short labels (1 to 4 words each, Title Case) naming the main themes "
        "the video covers, most important first."
    ),
    GistType.HASHTAG: (
        "`hashtags`: 3 to 8 hashtags for sharing the video, each starting with `#`, without "
        "spaces, CamelCase for multi-word tags, most relevant first."
    ),
}


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


def validate_model(model_name: object, *, legacy_video_id: bool, field_name: str = "model_name") -> str:
    """Return the model name if ``/analyze`` accepts it for this kind of video reference."""
    if not isinstance(model_name, str) or model_name not in ANALYZE_MODELS:
        raise GistValidationError(
            f"{field_name} {model_name!r} is not an analysis model: use one of {', '.join(ANALYZE_MODELS)}"
        )
    if legacy_video_id and model_name not in LEGACY_VIDEO_ID_MODELS:
        raise GistValidationError(
            f"{field_name} {model_name!r} does not accept video_id references: pass asset_id instead, "
            f"or use {LEGACY_VIDEO_ID_MODELS[0]}"
        )
    return model_name


def validate_max_tokens(max_tokens: object, model_name: str, field_name: str = "max_tokens") -> int:
    """Return ``max_tokens`` if it is an integer in the model's accepted range."""
    low, high = MAX_TOKENS_RANGE[model_name]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not low <= max_tokens <= high:
        raise GistValidationError(f"{field_name} must be an integer from {low} to {high} for {model_name}")
    return max_tokens


def validate_temperature(temperature: object, field_name: str = "temperature") -> float:
    """Return ``temperature`` as a float if it lies in the API's range 0..1."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        raise GistValidationError(f"{field_name} must be a number from 0 to 1")
    return float(temperature)


def build_json_schema(types: Iterable[GistType]) -> dict[str, Any]:
    """The ``response_format.json_schema`` for the requested types.

    Only keywords the API accepts: no ``maxItems``, ``minLength``, ``uniqueItems`` or
    ``additionalProperties`` (each is rejected with 422). Every property is required, so the
    first one is too, as the API recommends.
    """
    properties: dict[str, Any] = {}
    for gist_type in types:
        if gist_type is GistType.TITLE:
            properties["title"] = {"type": "string", "description": "Title of the video."}
        elif gist_type is GistType.TOPIC:
            properties["topics"] = {"type": "array", "minItems": 1, "items": {"type": "string"}}
        else:
            properties["hashtags"] = {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "pattern": r"^#[^\s#]+$"},
            }
    if not properties:
        raise GistValidationError("types must name at least one gist type")
    return {"type": "object", "properties": properties, "required": list(properties)}


def build_prompt(types: Iterable[GistType]) -> str:
    """The instruction sent with the schema, written from the legacy definitions of each type."""
    chosen = list(types)
    lines = [
        "Watch the entire video, including speech, sounds and on-screen text, and describe it.",
        "Produce:",
        *(f"- {_DEFINITIONS[t]}" for t in chosen),
        "Write in the main spoken language of the video (English if there is no speech).",
        "Output only JSON that matches the given schema, with no other text.",
    ]
    return "\n".join(lines)


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


def normalise_labels(
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
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
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
        out["generated_at"] = self.generated_at.isoformat()
        out["source_updated_at"] = self.source_updated_at
        return out

    def summary(self) -> str:
        """One human-readable line per part, for task logs and run notes."""
        parts = []
        if self.title is not None:
            parts.append(f"title: {self.title}")
        if self.topics is not None:
            parts.append(f"topics: {', '.join(self.topics)}")
        if self.hashtags is not None:
            parts.append(f"hashtags: {' '.join('#' + h for h in self.hashtags)}")
        return f"{self.video_ref_type} {self.video_ref}: " + "; ".join(parts)


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
    generated_at: datetime | None = None,
) -> Gist:
    """Validate and normalise a decoded answer into a :class:`Gist`.

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
        labels = normalise_labels(raw, hashtag=gist_type is GistType.HASHTAG, limit=limit)
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
        generated_at=generated_at or datetime.now(UTC),
    )


def decode_analyze_data(body: Mapping[str, Any], *, video_ref: str) -> dict[str, Any]:
    """Check ``finish_reason`` and decode the ``data`` string of a non-stream ``/analyze`` answer."""
    generation_id = str(body.get("id") or "")
    finish_reason = body.get("finish_reason")
    if finish_reason == "length":
        raise GistModelOutputError(
            f"model output for {video_ref} was cut off at max_tokens (finish_reason 'length')",
            finish_reason="length",
            generation_id=generation_id,
        )
    data = body.get("data")
    if not isinstance(data, str):
        raise GistModelOutputError(
            f"/analyze answer for {video_ref} has no 'data' string", generation_id=generation_id
        )
    try:
        decoded = json.loads(data)
    except json.JSONDecodeError as err:
        raise GistModelOutputError(
            f"model output for {video_ref} is not valid JSON ({err.msg} at char {err.pos})",
            finish_reason=str(finish_reason) if finish_reason else None,
            generation_id=generation_id,
        ) from None
    if not isinstance(decoded, dict):
        raise GistModelOutputError(
            f"model output for {video_ref} is JSON but not an object", generation_id=generation_id
        )
    return decoded


def usage_of(body: Mapping[str, Any]) -> tuple[int, int | None]:
    """``(output_tokens, input_tokens)`` from an answer's ``usage`` object, tolerating absence."""
    usage = body.get("usage") if isinstance(body.get("usage"), Mapping) else {}
    out = usage.get("output_tokens") if isinstance(usage, Mapping) else None
    inp = usage.get("input_tokens") if isinstance(usage, Mapping) else None
    return (int(out) if isinstance(out, int) else 0, int(inp) if isinstance(inp, int) else None)
