"""Handler: sync analysis (``POST /analyze``). It needs no index: ``video: {type: asset_id}``
works on any ready asset; the deprecated ``video_id`` only for videos indexed with Pegasus."""

from __future__ import annotations

from typing import Any

from . import content
from .calls import Call, Reply
from .handlers import HandlerBase
from .state import ANALYZE_MODELS, MAX_TOKENS, ApiError, invalid, missing

ANALYZE_FIELDS = {
    "model_name",
    "video_id",
    "video",
    "prompt",
    "prompt_v2",
    "temperature",
    "stream",
    "response_format",
    "max_tokens",
    "start_time",
    "end_time",
}


class AnalyzeRoutes(HandlerBase):
    def _analyze_params(self, body: Any) -> tuple[dict[str, Any], str, bool, dict[str, Any] | None]:
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        unknown = sorted(set(body) - ANALYZE_FIELDS)
        if unknown:
            raise ApiError(400, "parameter_unknown", f"Unknown parameter(s): {', '.join(unknown)}.")
        model = body.get("model_name", "pegasus1.2")
        if model not in ANALYZE_MODELS:
            raise invalid(f"model_name must be one of {list(ANALYZE_MODELS)}.")
        prompt, prompt_v2 = body.get("prompt"), body.get("prompt_v2")
        if prompt is None and prompt_v2 is None:
            raise missing("prompt")
        if prompt is not None and prompt_v2 is not None:
            raise invalid("prompt and prompt_v2 are mutually exclusive.")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise invalid("prompt must be a non-empty string.")
        if prompt_v2 is not None:
            if model != "pegasus1.5":
                raise invalid("prompt_v2 requires pegasus1.5.")
            if not isinstance(prompt_v2, dict) or not isinstance(prompt_v2.get("input_text"), str):
                raise invalid("prompt_v2 must be an object with input_text.")
        temperature = body.get("temperature", 0.2)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0 <= temperature <= 1
        ):
            raise invalid("temperature must be a number between 0 and 1.")
        stream = body.get("stream", True)
        if not isinstance(stream, bool):
            raise invalid("stream must be a boolean.")
        max_tokens = body.get("max_tokens", 4096)
        low, high = MAX_TOKENS[model]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not low <= max_tokens <= high:
            raise invalid(f"max_tokens must be an integer between {low} and {high} for {model}.")
        for name in ("start_time", "end_time"):
            if name in body:
                if model != "pegasus1.5":
                    raise invalid(f"{name} requires pegasus1.5.")
                if isinstance(body[name], bool) or not isinstance(body[name], int | float) or body[name] < 0:
                    raise invalid(f"{name} must be a non-negative number.")
        if "start_time" in body and "end_time" in body and body["end_time"] - body["start_time"] < 4:
            raise invalid("The clip between start_time and end_time must be at least 4 seconds.")
        schema = None
        fmt = body.get("response_format")
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
                raise invalid("response_format.type must be json_schema.")
            schema = fmt.get("json_schema")
            if not isinstance(schema, dict):
                raise missing("response_format.json_schema")
            bad = content.unsupported_keywords(schema)
            if bad:
                raise ApiError(
                    422,
                    "parameter_invalid",
                    f"response_format.json_schema uses unsupported keyword(s) at {', '.join(bad)}.",
                )
        return body, model, stream, schema

    def analyze(self, call: Call) -> Reply:
        body, _model, stream, schema = self._analyze_params(self._json_body(call))
        variant = call.fault.variant if call.fault and call.fault.kind == "model_output" else None
        result = self.state.analyze(body, schema, variant)
        usage = {"output_tokens": result.output_tokens, "input_tokens": result.input_tokens}
        if not stream:
            out: dict[str, Any] = {
                "id": result.id,
                "data": result.data,
                "finish_reason": result.finish_reason,
                "usage": usage,
            }
            if result.error:
                out["error"] = {"message": result.error}
            return Reply(200, out)
        events: list[dict[str, Any]] = [
            {"event_type": "stream_start", "metadata": {"generation_id": result.id}}
        ]
        events += [{"event_type": "text_generation", "text": t} for t in _fragments(result.data, result.id)]
        end: dict[str, Any] = {
            "event_type": "stream_end",
            "finish_reason": result.finish_reason,
            "metadata": {"generation_id": result.id, "usage": usage},
        }
        if result.error:
            end["error"] = {"message": result.error}
        events.append(end)
        return Reply(200, events=events)


def _fragments(text: str, salt: str) -> list[str]:
    """Split like a token stream would: arbitrary, uneven cuts, stable for a given generation."""
    out, i, n = [], 0, 0
    while i < len(text):
        size = 3 + content.digest_int(salt, str(n)) % 14
        out.append(text[i : i + size])
        i, n = i + size, n + 1
    return out
