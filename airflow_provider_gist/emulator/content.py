"""Deterministic, obviously fake "analysis" content derived from a video's filename.

The emulator does not look at video at all. Everything here is a pure function of the
filename (or URL) and the user metadata, so that the same request always yields the same
answer and tests can assert on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any
from urllib.parse import unquote, urlsplit

JsonSchema = dict[str, Any]

# Keywords the real platform rejects with 422 (digest §8); checked anywhere in the schema.
UNSUPPORTED_KEYWORDS = ("minLength", "maxLength", "additionalProperties", "uniqueItems", "maxItems")

_WORD_SPLIT = re.compile(r"[^0-9A-Za-z]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
# A duration token (``90min``, ``2h``, ``3s``) sets the fake duration; it is not a content word.
_DURATION_WORD = re.compile(r"\d+(h|min|s)", re.I)
_KNOWN_EXTENSIONS = re.compile(
    r"\.(mp4|mov|m4v|mkv|webm|avi|mpe?g|ts|flv|wmv|3gp|mp3|wav|m4a|aac|flac)$", re.I
)


def display_name(filename_or_url: str) -> str:
    """The last path segment of a URL or path, percent-decoded; what a user would call the file."""
    path = urlsplit(filename_or_url).path if "://" in filename_or_url else filename_or_url
    name = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    return name or "video"


def words_of(filename: str) -> list[str]:
    """Capitalised words of a filename: ``sunrise_harbour-fishing.mp4`` -> Sunrise, Harbour, Fishing."""
    stem = _KNOWN_EXTENSIONS.sub("", display_name(filename))
    words: list[str] = []
    for chunk in _WORD_SPLIT.split(stem):
        for word in _CAMEL.split(chunk):
            if word and not word.isdigit() and not _DURATION_WORD.fullmatch(word):
                words.append(word[:1].upper() + word[1:].lower())
    return words or ["Untitled", "Video"]


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        if item.lower() not in seen:
            seen.add(item.lower())
            out.append(item)
    return out


def gist_for(filename: str, user_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Title, topics and hashtags for a filename; a string ``topic``/``category`` in metadata adds a topic."""
    words = words_of(filename)
    topics = _dedupe(words)
    for key in ("topic", "category"):
        value = (user_metadata or {}).get(key)
        if isinstance(value, str) and value.strip():
            topics = _dedupe([*topics, " ".join(w.capitalize() for w in value.split())])
    hashtags = ["#" + "".join(t.split()) for t in topics]
    if len(words) > 1:
        hashtags.append("#" + "".join(words))
    return {"title": " ".join(words), "topics": topics, "hashtags": _dedupe(hashtags)}


def digest_int(*parts: str) -> int:
    """A stable integer from strings; Python's hash() is salted per process so it cannot be used."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def plain_text(filename: str, user_metadata: dict[str, Any] | None, prompt: str) -> str:
    gist = gist_for(filename, user_metadata)
    return (
        f"[emulated analysis - no video was watched] The file '{display_name(filename)}' suggests a video "
        f"about {', '.join(gist['topics'])}. Suggested title: {gist['title']}. "
        f"Hashtags: {' '.join(gist['hashtags'])}. Prompt length: {len(prompt)} characters."
    )


def unsupported_keywords(schema: Any, pointer: str = "") -> list[str]:
    """JSON pointers of keywords the platform refuses, plus ``minItems`` values other than 0/1."""
    found: list[str] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            here = f"{pointer}/{key}"
            if key in UNSUPPORTED_KEYWORDS or (key == "minItems" and value not in (0, 1)):
                found.append(here)
            # Property names are data, not keywords: a property called "maxItems" is fine.
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                for name, sub in value.items():
                    found.extend(unsupported_keywords(sub, f"{here}/{name}"))
            elif key in ("items", "anyOf", "oneOf", "allOf", "not", "prefixItems"):
                found.extend(unsupported_keywords(value, here))
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            found.extend(unsupported_keywords(sub, f"{pointer}/{i}"))
    return found


class SchemaFiller:
    """Builds a value valid for a (platform-subset) JSON schema, filling in the gist where names match."""

    def __init__(self, root: JsonSchema, filename: str, user_metadata: dict[str, Any] | None) -> None:
        self.root = root
        self.filename = filename
        self.gist = gist_for(filename, user_metadata)

    def build(self) -> Any:
        return self.value(self.root, "value", 0)

    def _resolve(self, schema: JsonSchema) -> JsonSchema:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def value(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > 20:
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][digest_int(self.filename, name) % len(schema["enum"])]
        if isinstance(schema.get("anyOf"), list) and schema["anyOf"]:
            return self.value(schema["anyOf"][0], name, depth + 1)
        kind = schema.get("type", "object" if "properties" in schema else "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            props = schema.get("properties") or {}
            return {key: self.value(sub, key, depth + 1) for key, sub in props.items()}
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":
            return int(self._number(schema, name, integer=True))
        if kind == "number":
            return self._number(schema, name, integer=False)
        if kind == "boolean":
            return digest_int(self.filename, name) % 2 == 0
        if kind == "timestamp":  # Pegasus 1.5: a number of seconds, or hh:mm:ss[.fff] text
            return format_time(float(digest_int(self.filename, name) % 600), str(schema.get("format")))
        return None

    def _array(self, schema: JsonSchema, name: str, depth: int) -> list[Any]:
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
        assert isinstance(items, dict)
        min_items = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        resolved = self._resolve(items)
        key = name.lower()
        if resolved.get("type", "string") == "string" and "enum" not in resolved and "const" not in resolved:
            if key in ("topics", "topic", "tags", "keywords", "labels", "themes"):
                pool = list(self.gist["topics"])
            elif key in ("hashtags", "hashtag"):
                pool = list(self.gist["hashtags"])
            else:
                pool = list(self.gist["topics"])
            values = [self._fit_string(resolved, v, f"{name}[{i}]") for i, v in enumerate(pool)]
            while len(values) < max(min_items, 1):
                values.append(self._fit_string(resolved, f"{self.gist['title']} {len(values) + 1}", name))
            return values
        count = max(min_items, 1)
        return [self.value(items, f"{name}[{i}]", depth + 1) for i in range(count)]

    def _number(self, schema: JsonSchema, name: str, *, integer: bool) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        low_f = float(low) if isinstance(low, int | float) else 0.0
        high_f = float(high) if isinstance(high, int | float) else low_f + 100.0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            low_f += 1 if integer else 0.5
        if "exclusiveMaximum" in schema and "maximum" not in schema:
            high_f -= 1 if integer else 0.5
        span = max(high_f - low_f, 0.0)
        fraction = (digest_int(self.filename, name) % 1000) / 1000
        picked = low_f + span * fraction
        return float(int(picked) if integer else round(picked, 2))

    def _string(self, schema: JsonSchema, name: str) -> str:
        fmt = schema.get("format")
        seed = digest_int(self.filename, name)
        if fmt == "uuid":
            h = f"{seed:016x}{seed ^ 0x5DEECE66D:016x}"[:32]
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
        if fmt == "date-time":
            return f"2026-01-{1 + seed % 28:02d}T{seed % 24:02d}:{seed % 60:02d}:00Z"
        if fmt == "date":
            return f"2026-01-{1 + seed % 28:02d}"
        if fmt == "time":
            return f"{seed % 24:02d}:{seed % 60:02d}:00"
        key = name.lower()
        if key in ("title", "name", "headline"):
            text = self.gist["title"]
        elif key in ("summary", "description", "synopsis", "caption"):
            text = f"A video about {', '.join(self.gist['topics'])} (emulated, derived from its filename)."
        elif key in ("hashtag",):
            text = self.gist["hashtags"][0]
        else:
            text = f"{self.gist['title']} {name.replace('_', ' ')}".strip()
        return self._fit_string(schema, text, name)

    @staticmethod
    def _fit_string(schema: JsonSchema, text: str, name: str) -> str:
        """Honour ``pattern`` by trying a few natural rewrites; give up quietly if none matches."""
        pattern = schema.get("pattern")
        if not isinstance(pattern, str):
            return text
        try:
            regex = re.compile(pattern)
        except re.error:
            return text
        squashed = re.sub(r"\s+", "", text)
        alnum = re.sub(r"[^0-9A-Za-z]", "", text)
        candidates = [
            text,
            squashed,
            "#" + squashed.lstrip("#"),
            alnum,
            alnum.lower(),
            alnum.upper(),
            "#" + alnum,
            re.sub(r"\s+", "-", text.lower()),
            re.sub(r"\s+", "_", text.lower()),
        ]
        for candidate in candidates:
            if candidate and regex.search(candidate):
                return candidate
        return text


def json_for_schema(schema: JsonSchema, filename: str, user_metadata: dict[str, Any] | None) -> str:
    """JSON text for the schema; separators match what a model typically emits."""
    return json.dumps(SchemaFiller(schema, filename, user_metadata).build(), ensure_ascii=False)


def format_time(seconds: float, fmt: str) -> float | str:
    """A timestamp the way Pegasus 1.5 writes it: ``seconds`` (a number) or ``hh:mm:ss[.fff]``."""
    if fmt not in ("hh:mm:ss", "hh:mm:ss.fff"):
        return round(seconds, 3)
    seconds = max(seconds, 0.0)
    if fmt == "hh:mm:ss":
        whole = round(seconds)
        return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    millis = round(seconds * 1000)
    return (
        f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"
    )


def _field_schema(spec: dict[str, Any]) -> JsonSchema:
    kind = spec.get("type", "string")
    if kind == "array":
        return {"type": "array", "items": {"type": (spec.get("items") or {}).get("type", "string")}}
    schema: JsonSchema = {"type": kind}
    if spec.get("enum"):
        schema["enum"] = spec["enum"]
    return schema


def segments_json(
    definitions: list[dict[str, Any]],
    filename: str,
    user_metadata: dict[str, Any] | None,
    window: tuple[float, float],
    *,
    time_format: str = "seconds",
    min_segment: float | None = None,
    max_segment: float | None = None,
) -> str:
    """Video segmentation output (``time_based_metadata``): JSON text of an object keyed by segment
    definition id, each a list of ``{start_time, end_time, metadata}`` (spec: AnalyzeTaskResult.data).
    One to three segments per definition (each time range, if given, holds one), honouring the
    segment durations."""
    filler = SchemaFiller({}, filename, user_metadata)
    out: dict[str, list[dict[str, Any]]] = {}
    start, end = window
    for definition in definitions:
        ident = str(definition.get("id"))
        ranges = definition.get("time_ranges")
        spans: list[tuple[float, float]]
        if ranges:
            spans = [(float(r["start_time"]), float(r["end_time"])) for r in ranges]
        else:
            length = max(end - start, 0.0)
            count = 1 + digest_int(filename, ident) % 3
            if max_segment:
                count = max(count, math.ceil(length / max_segment))
            if min_segment:
                count = min(count, max(1, math.floor(length / min_segment)))
            step = length / count if count else length
            spans = [(start + i * step, start + (i + 1) * step) for i in range(count)]
        segments = []
        for low, high in spans:
            metadata: dict[str, Any] = {}
            for spec in definition.get("fields") or []:
                name = str(spec.get("name"))
                if spec.get("type") == "timestamp":
                    metadata[name] = format_time(low + (high - low) / 2, str(spec.get("format")))
                else:
                    metadata[name] = filler.value(_field_schema(spec), name, 0)
            segments.append(
                {
                    "start_time": format_time(low, time_format),
                    "end_time": format_time(high, time_format),
                    "metadata": metadata,
                }
            )
        out[ident] = segments
    return json.dumps(out, ensure_ascii=False)
