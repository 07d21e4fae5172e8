"""How a gist is asked for: from "types + options" to the ``/analyze`` body, and back.

TwelveLabs removed ``POST /gist`` on 2026-02-15. We now ask ``POST /analyze`` (``stream: false``)
for a JSON answer constrained by ``response_format: {type: json_schema}`` and map it back to the
old public shape with :func:`~airflow_provider_gist.model.gist_from_answer`.
:class:`GistRequest` is that one path, validated before any HTTP call; the sync hook, the
refresh and any asynchronous analysis build their requests here, never elsewhere.

Pure: no HTTP, no Airflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_gist.client.settings import ANALYZE_MODELS, ApiSettings
from airflow_provider_gist.errors import GistModelOutputError, GistValidationError
from airflow_provider_gist.ids import validate_id, validate_video_url
from airflow_provider_gist.model import PROMPT_VERSION, Gist, GistType, gist_from_answer, parse_types

DEFAULT_MODEL = ApiSettings().default_model
#: ``video_id`` references (videos indexed through the legacy flow) work with pegasus1.2 only.
LEGACY_VIDEO_ID_MODELS = ("pegasus1.2",)
#: ``max_tokens`` ranges the API enforces per model (digest §8).
MAX_TOKENS_RANGE: dict[str, tuple[int, int]] = {"pegasus1.2": (2, 4096), "pegasus1.5": (512, 98304)}
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TEMPERATURE = 0.2

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


def analyze_body(
    *,
    prompt: str,
    model_name: str,
    asset_id: str | None = None,
    video_id: str | None = None,
    video_url: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The validated body of a non-stream ``POST /analyze``: exactly one video reference.

    ``asset_id`` is the current API's reference; ``video_url`` a public link; ``video_id`` a
    video indexed through the legacy flow (``pegasus1.2`` only).
    """
    given = [
        name
        for name, value in (("asset_id", asset_id), ("video_id", video_id), ("video_url", video_url))
        if value is not None
    ]
    if len(given) != 1:
        raise GistValidationError("analyze needs exactly one of asset_id, video_id and video_url")
    model = validate_model(model_name, legacy_video_id=video_id is not None)
    body: dict[str, Any] = {"model_name": model, "prompt": prompt, "stream": False}
    if asset_id is not None:
        body["video"] = {"type": "asset_id", "asset_id": validate_id(asset_id, "asset_id")}
    elif video_url is not None:
        body["video"] = {"type": "url", "url": validate_video_url(video_url)}
    else:
        body["video_id"] = validate_id(video_id, "video_id")
    if temperature is not None:
        body["temperature"] = validate_temperature(temperature)
    if max_tokens is not None:
        body["max_tokens"] = validate_max_tokens(max_tokens, model)
    if response_format is not None:
        body["response_format"] = dict(response_format)
    return body


@dataclass(frozen=True)
class GistRequest:
    """A validated gist request: everything is checked before any HTTP call (:func:`prepare_gist_request`)."""

    video_ref: str
    video_ref_type: str  # "asset_id" | "video_id"
    types: tuple[GistType, ...]
    model: str
    prompt: str
    prompt_version: str
    temperature: float
    max_tokens: int
    index_id: str | None = None

    @property
    def schema(self) -> dict[str, Any]:
        return build_json_schema(self.types)

    def body(self, max_tokens: int | None = None) -> dict[str, Any]:
        """The ``/analyze`` body asking for this gist (with ``max_tokens``, default the request's)."""
        return analyze_body(
            prompt=self.prompt,
            model_name=self.model,
            **{self.video_ref_type: self.video_ref},
            temperature=self.temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            response_format={"type": "json_schema", "json_schema": self.schema},
        )

    def task_body(self, custom_id: str, max_tokens: int | None = None) -> dict[str, Any]:
        """The ``POST /analyze/tasks`` body asking for this gist: the sync body, tagged with
        ``custom_id`` (how a retry finds the task again) and without ``stream``."""
        if self.video_ref_type != "asset_id":
            raise GistValidationError(
                "asynchronous analysis takes asset_id: the API's analysis tasks do not accept video_id"
            )
        body = self.body(max_tokens)
        body.pop("stream")
        return {**body, "custom_id": custom_id}

    def more_tokens(self, tokens: int) -> int:
        """The budget of the one retry after an answer cut off at ``tokens``."""
        return min(MAX_TOKENS_RANGE[self.model][1], max(tokens * 2, 256))

    def gist_from_analyze(self, answer: Mapping[str, Any], *, source_updated_at: str | None = None) -> Gist:
        """The gist in a non-stream ``/analyze`` answer (``data`` holds the JSON text)."""
        decoded = decode_analyze_data(answer, video_ref=self.video_ref)
        output_tokens, input_tokens = usage_of(answer)
        return gist_from_answer(
            decoded,
            types=self.types,
            video_ref=self.video_ref,
            video_ref_type=self.video_ref_type,
            model=self.model,
            generation_id=str(answer.get("id") or ""),
            output_tokens=output_tokens,
            input_tokens=input_tokens,
            index_id=self.index_id,
            source_updated_at=source_updated_at,
            prompt_version=self.prompt_version,
        )


#: Batches take at most this many videos, and only Pegasus 1.5 (digest section 9.3).
MAX_BATCH_ITEMS = 1000
BATCH_MODELS = ("pegasus1.5",)


def batch_body(template: GistRequest, asset_ids: Sequence[str]) -> dict[str, Any]:
    """The ``POST /analyze/batches`` body asking for the gists of ``asset_ids``.

    ``template`` carries what every item shares (prompt, schema, temperature, tokens); each
    item is ``{video: {type: asset_id}, custom_id: asset_id}`` so a result names its video.
    """
    if template.model not in BATCH_MODELS:
        raise GistValidationError(
            f"model_name {template.model!r}: batch analysis takes {', '.join(BATCH_MODELS)} only"
        )
    if not 1 <= len(asset_ids) <= MAX_BATCH_ITEMS:
        raise GistValidationError(f"a batch takes 1 to {MAX_BATCH_ITEMS} videos, got {len(asset_ids)}")
    return {
        "model_name": template.model,
        "analysis_mode": "general",
        "defaults": {
            # a batch's prompt is an object, unlike /analyze's string
            "prompt": {"input_text": template.prompt},
            "response_format": {"type": "json_schema", "json_schema": template.schema},
            "temperature": template.temperature,
            "max_tokens": template.max_tokens,
        },
        "requests": [
            {"video": {"type": "asset_id", "asset_id": validate_id(a, "asset_id")}, "custom_id": a}
            for a in asset_ids
        ],
    }


def answer_of_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ready`` analysis task's (or batch item's) ``result`` in the shape of a sync answer."""
    result = task.get("result") if isinstance(task.get("result"), Mapping) else task.get("data")
    if not isinstance(result, Mapping):
        return {"id": "", "data": None}
    return {**result, "id": result.get("generation_id") or result.get("id") or ""}


def prepare_gist_request(
    *,
    asset_id: str | None,
    video_id: str | None,
    types: Any,
    model_name: str,
    prompt: str | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    index_id: str | None = None,
) -> GistRequest:
    """Validate every input of a gist request (names the bad field) and build the request."""
    if (asset_id in (None, "")) == (video_id in (None, "")):
        raise GistValidationError(
            "give exactly one of asset_id and video_id (got "
            + ("both" if asset_id and video_id else "neither")
            + ")"
        )
    video_ref_type = "asset_id" if asset_id else "video_id"
    video_ref = validate_id(asset_id or video_id, video_ref_type)
    parsed_types = parse_types(types)
    model = validate_model(model_name, legacy_video_id=video_ref_type == "video_id")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise GistValidationError("prompt must be a non-empty string when given")
    if prompt:
        prompt_text = prompt.strip()
        prompt_version = "custom-" + hashlib.sha256(prompt_text.encode()).hexdigest()[:12]
    else:
        prompt_text = build_prompt(parsed_types)
        prompt_version = PROMPT_VERSION
    return GistRequest(
        video_ref=video_ref,
        video_ref_type=video_ref_type,
        types=parsed_types,
        model=model,
        prompt=prompt_text,
        prompt_version=prompt_version,
        temperature=validate_temperature(temperature),
        max_tokens=validate_max_tokens(max_tokens, model),
        index_id=validate_id(index_id, "index_id") if index_id else None,
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
