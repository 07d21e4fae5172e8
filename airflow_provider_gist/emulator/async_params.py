"""Request bodies of the asynchronous analysis creates, checked strictly (spec: CreateAsyncAnalyzeRequest
for ``POST /analyze/tasks``, CreateAnalyzeBatchRequest for ``POST /analyze/batches``).

Each accepted request (a task, or one batch item with the batch's defaults merged in) becomes a
:class:`TaskSpec`. Nothing here looks at assets or the clock: that is the routes' and the job
queue's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import content
from .state import ANALYZE_MODELS, ApiError, invalid, missing

GENERAL = "general"
SEGMENTS = "time_based_metadata"
MODES = (GENERAL, SEGMENTS)
BATCH_MODEL = "pegasus1.5"
MAX_BATCH_ITEMS = 1000
MAX_BATCH_HOURS = 2000
# (model, mode) -> (min, max, default) max_tokens, from the spec's table.
TOKEN_RANGES = {
    ("pegasus1.2", GENERAL): (2, 4096, 4096),
    ("pegasus1.5", GENERAL): (512, 98_304, 4096),
    ("pegasus1.5", SEGMENTS): (2048, 98_304, 32_768),
}
TIME_FORMATS = ("seconds", "hh:mm:ss", "hh:mm:ss.fff")
FIELD_TYPES = ("string", "boolean", "number", "integer", "array", "timestamp")
ITEM_TYPES = ("string", "number", "boolean", "integer")
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ASSET_ID = re.compile(r"[0-9a-fA-F]{24}")
TASK_FIELDS = {
    "model_name",
    "custom_id",
    "video",
    "prompt",
    "prompt_v2",
    "analysis_mode",
    "temperature",
    "max_tokens",
    "response_format",
    "min_segment_duration",
    "max_segment_duration",
    "start_time",
    "end_time",
}
# Fields a batch's ``defaults`` may set and each item may override.
OVERRIDABLE = {
    "prompt",
    "response_format",
    "temperature",
    "max_tokens",
    "min_segment_duration",
    "max_segment_duration",
    "start_time",
    "end_time",
}


@dataclass
class TaskSpec:
    """One analysis request, validated; ``prompt_v2`` also holds a batch's prompt object."""

    model: str
    mode: str
    video: dict[str, Any]
    custom_id: str | None = None
    prompt: str | None = None
    prompt_v2: dict[str, Any] | None = None
    temperature: float = 0.2
    max_tokens: int = 4096
    response_format: dict[str, Any] | None = None
    min_segment: float | None = None
    max_segment: float | None = None
    start_time: float | None = None
    end_time: float | None = None

    @property
    def prompt_text(self) -> str:
        return self.prompt or (self.prompt_v2 or {}).get("input_text", "")

    @property
    def schema(self) -> dict[str, Any] | None:
        fmt = self.response_format or {}
        schema = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
        return schema if isinstance(schema, dict) else None

    @property
    def segment_definitions(self) -> list[dict[str, Any]]:
        fmt = self.response_format or {}
        return list(fmt.get("segment_definitions") or []) if fmt.get("type") == "segment_definitions" else []

    def request_params(self, *, listing: bool) -> dict[str, Any]:
        """``request_params`` of the task object; the list truncates prompts to 30 characters, omits
        the JSON schema and keeps only the first segment definition (spec)."""
        out: dict[str, Any] = {"analysis_mode": self.mode}
        if self.prompt is not None:
            out["prompt"] = self.prompt[:30] if listing else self.prompt
        elif self.prompt_v2 is not None:
            prompt_v2 = dict(self.prompt_v2)
            if "media_sources" in prompt_v2:  # echoed without image data (the spec's item has none)
                prompt_v2["media_sources"] = [
                    {k: v for k, v in m.items() if k != "base64_string"} for m in prompt_v2["media_sources"]
                ]
            if listing:
                prompt_v2["input_text"] = str(prompt_v2.get("input_text", ""))[:30]
            out["prompt_v2"] = prompt_v2
        if self.response_format is not None:
            fmt: dict[str, Any] = {"type": self.response_format["type"]}
            if fmt["type"] == "json_schema" and not listing:
                fmt["json_schema"] = self.response_format.get("json_schema")
            if fmt["type"] == "segment_definitions":
                definitions = self.segment_definitions
                fmt["segment_definitions"] = definitions[:1] if listing else definitions
            out["response_format"] = fmt
        out["temperature"] = self.temperature
        out["max_tokens"] = self.max_tokens
        if self.mode == SEGMENTS:
            for name, value in (
                ("min_segment_duration", self.min_segment),
                ("max_segment_duration", self.max_segment),
            ):
                if value is not None:
                    out[name] = value
        if self.start_time is not None:
            out["start_time"] = self.start_time
        if self.end_time is not None:
            out["end_time"] = self.end_time
        return out


@dataclass
class BatchSpec:
    model: str
    mode: str
    items: list[TaskSpec] = field(default_factory=list)


# -------------------------------------------------------------------------------------------
# small checks
# -------------------------------------------------------------------------------------------
def unknown_fields(value: dict[str, Any], allowed: set[str], where: str = "") -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        names = ", ".join(f"{where}{name}" for name in extra)
        raise ApiError(400, "parameter_unknown", f"Unknown parameter(s): {names}.")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a JSON object.")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{where} must be a number.")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{where} must be a non-empty string.")
    return value


def _custom_id(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CUSTOM_ID.fullmatch(value):
        raise invalid(f"{where} must be 1-64 characters: letters, digits, hyphens and underscores.")
    return value


def _media_sources(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) > 4:
        raise invalid(f"{where} must be a list of at most 4 sources.")
    for i, source in enumerate(value):
        here = f"{where}[{i}]"
        _object(source, here)
        unknown_fields(source, {"name", "media_type", "url", "asset_id", "base64_string"}, here + ".")
        _text(source.get("name"), here + ".name")
        if source.get("media_type") != "image":
            raise invalid(f"{here}.media_type must be image.")
        given = [k for k in ("url", "asset_id", "base64_string") if source.get(k) is not None]
        if len(given) != 1:
            raise invalid(f"{here} needs exactly one of url, asset_id or base64_string.")


def _prompt_object(value: Any, where: str) -> dict[str, Any]:
    prompt = _object(value, where)
    unknown_fields(prompt, {"input_text", "media_sources"}, where + ".")
    _text(prompt.get("input_text"), where + ".input_text")
    if "media_sources" in prompt:
        _media_sources(prompt["media_sources"], where + ".media_sources")
    return dict(prompt)


def _video(value: Any, where: str, *, asset_only: bool) -> dict[str, Any]:
    if value is None:
        raise missing(where)
    video = _object(value, where)
    kind = video.get("type")
    if asset_only and kind != "asset_id":
        raise invalid(f"{where}.type must be asset_id: batch items take assets only.")
    shapes = {"url": "url", "asset_id": "asset_id", "base64_string": "base64_string"}
    if kind not in shapes:
        raise invalid(f"{where}.type must be one of url, asset_id, base64_string.")
    unknown_fields(video, {"type", shapes[kind]}, where + ".")
    payload = video.get(shapes[kind])
    if payload is None:
        raise missing(f"{where}.{shapes[kind]}")
    if not isinstance(payload, str) or not payload:
        raise invalid(f"{where}.{shapes[kind]} must be a non-empty string.")
    if kind == "url" and "://" not in payload:
        raise invalid(f"{where}.url must be an absolute URL.")
    if asset_only and not _ASSET_ID.fullmatch(payload):
        raise invalid(f"{where}.asset_id {payload!r} is malformed (24 hexadecimal characters).")
    return {"type": kind, shapes[kind]: payload}


# -------------------------------------------------------------------------------------------
# response formats
# -------------------------------------------------------------------------------------------
def _json_schema(schema: Any, model: str, where: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise missing(where)
    bad = content.unsupported_keywords(schema)
    if bad:
        raise ApiError(422, "parameter_invalid", f"{where} uses unsupported keyword(s) at {', '.join(bad)}.")
    for pointer, node in _timestamps(schema):
        if model != "pegasus1.5":
            raise invalid(f"{where}{pointer}: the timestamp type needs pegasus1.5.")
        if node.get("format") not in TIME_FORMATS:
            raise invalid(
                f"{where}{pointer}.format: format is required for timestamp type; allowed values: "
                + ", ".join(TIME_FORMATS)
            )
    return schema


def _timestamps(schema: Any, pointer: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "timestamp":
            found.append((pointer, schema))
        for key in ("properties", "$defs"):
            for name, sub in (schema.get(key) or {}).items() if isinstance(schema.get(key), dict) else []:
                found.extend(_timestamps(sub, f"{pointer}.{key}.{name}"))
        if isinstance(schema.get("items"), dict):
            found.extend(_timestamps(schema["items"], pointer + ".items"))
        for i, sub in enumerate(schema.get("anyOf") or []):
            found.extend(_timestamps(sub, f"{pointer}.anyOf[{i}]"))
    return found


def _segment_field(value: Any, where: str) -> None:
    spec = _object(value, where)
    unknown_fields(spec, {"name", "type", "description", "format", "enum", "items"}, where + ".")
    _text(spec.get("name"), where + ".name")
    _text(spec.get("description"), where + ".description")
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        raise invalid(f"{where}.type must be one of {list(FIELD_TYPES)}.")
    if kind == "timestamp":
        if spec.get("format") not in TIME_FORMATS:
            raise invalid(f"{where}.format is required for timestamp fields: one of {list(TIME_FORMATS)}.")
        if "enum" in spec or "items" in spec:
            raise invalid(f"{where}: enum and items are not supported for timestamp fields.")
    elif "format" in spec:
        raise invalid(f"{where}.format is only for timestamp fields.")
    if "enum" in spec and (
        not isinstance(spec["enum"], list)
        or len(spec["enum"]) > 100
        or any(not isinstance(e, str) for e in spec["enum"])
    ):
        raise invalid(f"{where}.enum must be a list of at most 100 strings.")
    if kind == "array":
        items = spec.get("items")
        if not isinstance(items, dict) or items.get("type") not in ITEM_TYPES or set(items) - {"type"}:
            raise invalid(f"{where}.items must be {{type: {' | '.join(ITEM_TYPES)}}} for array fields.")


def _segment_definitions(value: Any, where: str, *, windowed: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= 20:
        raise invalid(f"{where} must be a list of 1 to 20 segment definitions.")
    ids: set[str] = set()
    for i, definition in enumerate(value):
        here = f"{where}[{i}]"
        _object(definition, here)
        unknown_fields(
            definition, {"id", "description", "fields", "media_sources", "time_ranges"}, here + "."
        )
        ident = _text(definition.get("id"), here + ".id")
        if ident in ids:
            raise invalid(f"{here}.id {ident!r} is used twice.")
        ids.add(ident)
        _text(definition.get("description"), here + ".description")
        fields = definition.get("fields", [])
        if not isinstance(fields, list):
            raise invalid(f"{here}.fields must be a list.")
        for j, spec in enumerate(fields):
            _segment_field(spec, f"{here}.fields[{j}]")
        if "media_sources" in definition:
            _media_sources(definition["media_sources"], here + ".media_sources")
        ranges = definition.get("time_ranges")
        if ranges is not None:
            if windowed:
                raise invalid(
                    f"{here}.time_ranges is mutually exclusive with start_time, end_time and the "
                    "segment durations."
                )
            if not isinstance(ranges, list) or not ranges:
                raise invalid(f"{here}.time_ranges must be a non-empty list.")
            for j, window in enumerate(ranges):
                rng = _object(window, f"{here}.time_ranges[{j}]")
                unknown_fields(rng, {"start_time", "end_time"}, f"{here}.time_ranges[{j}].")
                start = _number(rng.get("start_time"), f"{here}.time_ranges[{j}].start_time")
                end = _number(rng.get("end_time"), f"{here}.time_ranges[{j}].end_time")
                if start < 0 or end - start < 2:
                    raise invalid(f"{here}.time_ranges[{j}] must satisfy end_time >= start_time + 2.")
    return value


def _response_format(value: Any, model: str, mode: str, *, windowed: bool, where: str) -> dict[str, Any]:
    fmt = _object(value, where)
    unknown_fields(fmt, {"type", "json_schema", "segment_definitions", "segment_time_format"}, where + ".")
    kind = fmt.get("type")
    if kind == "json_schema":
        if mode != GENERAL:
            raise invalid(f"{where}.type json_schema needs analysis_mode general.")
        if "segment_definitions" in fmt or "segment_time_format" in fmt:
            raise invalid(
                f"{where}: segment_definitions and segment_time_format need type segment_definitions."
            )
        _json_schema(fmt.get("json_schema"), model, where + ".json_schema")
    elif kind == "segment_definitions":
        if mode != SEGMENTS or model != "pegasus1.5":
            raise invalid(f"{where}.type segment_definitions needs pegasus1.5 and analysis_mode {SEGMENTS}.")
        if "json_schema" in fmt:
            raise invalid(f"{where}.json_schema needs type json_schema.")
        if fmt.get("segment_time_format", "seconds") not in TIME_FORMATS:
            raise invalid(f"{where}.segment_time_format must be one of {list(TIME_FORMATS)}.")
        _segment_definitions(
            fmt.get("segment_definitions"), where + ".segment_definitions", windowed=windowed
        )
    else:
        raise invalid(f"{where}.type must be json_schema or segment_definitions.")
    return dict(fmt)


# -------------------------------------------------------------------------------------------
# one request
# -------------------------------------------------------------------------------------------
def _spec(
    fields: dict[str, Any],
    *,
    model: str,
    mode: str,
    video: dict[str, Any],
    custom_id: str | None,
    batch: bool,
    where: str,
) -> TaskSpec:
    """The checks a task and a batch item share. A batch's ``prompt`` is the structured object
    (``{input_text, media_sources?}``, like a task's ``prompt_v2``), never a string."""
    spec = TaskSpec(model=model, mode=mode, video=video, custom_id=custom_id)
    prompt, prompt_v2 = fields.get("prompt"), fields.get("prompt_v2")
    v2_name = "prompt" if batch else "prompt_v2"
    if batch:
        prompt, prompt_v2 = None, fields.get("prompt")
    if prompt is not None and prompt_v2 is not None:
        raise invalid(f"{where}prompt and prompt_v2 are mutually exclusive.")
    if mode == SEGMENTS:
        if prompt is not None or prompt_v2 is not None:
            raise invalid(f"{where}prompt is not supported when analysis_mode is {SEGMENTS}.")
        if model != "pegasus1.5":
            raise invalid(f"analysis_mode {SEGMENTS} needs pegasus1.5.")
        if fields.get("response_format") is None:
            raise missing(f"{where}response_format (type segment_definitions)")
    elif prompt is None and prompt_v2 is None:
        raise missing(f"{where}prompt" + (" (in the item or in defaults)" if batch else ""))
    if prompt is not None:
        spec.prompt = _text(prompt, where + "prompt")
    if prompt_v2 is not None:
        if model != "pegasus1.5":
            raise invalid(f"{where}prompt_v2 needs pegasus1.5.")
        spec.prompt_v2 = _prompt_object(prompt_v2, where + v2_name)
    if "temperature" in fields:
        spec.temperature = _number(fields["temperature"], where + "temperature")
        if not 0 <= spec.temperature <= 1:
            raise invalid(f"{where}temperature must be between 0 and 1.")
    low, high, default = TOKEN_RANGES[(model, mode)]
    tokens = fields.get("max_tokens", default)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not low <= tokens <= high:
        raise invalid(f"{where}max_tokens must be an integer between {low} and {high} for {model} ({mode}).")
    spec.max_tokens = tokens
    for name in ("min_segment_duration", "max_segment_duration"):
        if name in fields:
            if mode != SEGMENTS:
                raise invalid(f"{where}{name} needs analysis_mode {SEGMENTS}.")
            value = _number(fields[name], where + name)
            if value < 2:
                raise invalid(f"{where}{name} must be at least 2 seconds.")
            setattr(spec, "min_segment" if name.startswith("min") else "max_segment", value)
    if spec.min_segment is not None and spec.max_segment is not None and spec.max_segment < spec.min_segment:
        raise invalid(f"{where}max_segment_duration must be >= min_segment_duration.")
    for name in ("start_time", "end_time"):
        if name in fields:
            if model != "pegasus1.5":
                raise invalid(f"{where}{name} needs pegasus1.5.")
            value = _number(fields[name], where + name)
            if value < 0:
                raise invalid(f"{where}{name} must be >= 0.")
            setattr(spec, name, value)
    if spec.start_time is not None and spec.end_time is not None and spec.end_time - spec.start_time < 4:
        raise invalid(f"{where}the clip between start_time and end_time must be at least 4 seconds.")
    windowed = any(
        v is not None for v in (spec.start_time, spec.end_time, spec.min_segment, spec.max_segment)
    )
    if fields.get("response_format") is not None:
        spec.response_format = _response_format(
            fields["response_format"], model, mode, windowed=windowed, where=where + "response_format"
        )
    return spec


def parse_task(body: Any) -> TaskSpec:
    """``POST /analyze/tasks``; every problem is a 400 (422 for unsupported schema keywords)."""
    body = _object(body, "The request body")
    unknown_fields(body, TASK_FIELDS)
    model = body.get("model_name", "pegasus1.2")
    if model not in ANALYZE_MODELS:
        raise invalid(f"model_name must be one of {list(ANALYZE_MODELS)}.")
    mode = body.get("analysis_mode", GENERAL)
    if mode not in MODES:
        raise invalid(f"analysis_mode must be one of {list(MODES)}.")
    custom_id = _custom_id(body.get("custom_id"), "custom_id")
    video = _video(body.get("video"), "video", asset_only=False)
    return _spec(body, model=model, mode=mode, video=video, custom_id=custom_id, batch=False, where="")


def parse_batch(body: Any) -> BatchSpec:
    """``POST /analyze/batches`` up to the per-item checks that need assets (done by the route)."""
    body = _object(body, "The request body")
    unknown_fields(body, {"model_name", "analysis_mode", "defaults", "requests"})
    model = body.get("model_name")
    if model is None:
        raise missing("model_name")
    if model != BATCH_MODEL:
        raise invalid(f"model_name must be {BATCH_MODEL}: batch analysis needs Pegasus 1.5.")
    mode = body.get("analysis_mode")
    if mode is None:
        raise missing("analysis_mode")
    if mode not in MODES:
        raise invalid(f"analysis_mode must be one of {list(MODES)}.")
    defaults = _object(body.get("defaults", {}), "defaults")
    unknown_fields(defaults, OVERRIDABLE, "defaults.")
    requests = body.get("requests")
    if requests is None:
        raise missing("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_BATCH_ITEMS:
        raise invalid(f"requests must be a list of 1 to {MAX_BATCH_ITEMS:,} items.")
    batch = BatchSpec(model=model, mode=mode)
    seen: set[str] = set()
    for i, raw in enumerate(requests):
        where = f"requests[{i}]."
        item = _object(raw, f"requests[{i}]")
        unknown_fields(item, OVERRIDABLE | {"video", "custom_id"}, where)
        custom_id = _custom_id(item.get("custom_id"), where + "custom_id")
        if custom_id is not None:
            if custom_id in seen:
                raise invalid(f"{where}custom_id {custom_id!r} is used twice in this batch.")
            seen.add(custom_id)
        video = _video(item.get("video"), where + "video", asset_only=True)
        merged = {**defaults, **{k: v for k, v in item.items() if k in OVERRIDABLE}}
        batch.items.append(
            _spec(merged, model=model, mode=mode, video=video, custom_id=custom_id, batch=True, where=where)
        )
    return batch
