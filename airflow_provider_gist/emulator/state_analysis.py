"""Analysis: which video an analysis reads, sync ``/analyze``, and the answer shared with async tasks."""

from __future__ import annotations

import json
import math
from typing import Any

from . import content
from .api_errors import ApiError, invalid, missing
from .media import MediaInfo, check_sync_duration, clip_seconds
from .resources import Analysis
from .state_videos import VideoStore

ANALYZE_MODELS = ("pegasus1.2", "pegasus1.5")
MAX_TOKENS = {"pegasus1.2": (2, 4096), "pegasus1.5": (512, 98304)}
DEFAULT_MAX_TOKENS = 4096
CHARS_PER_TOKEN = 4
LENGTH_WARNING = "The response was truncated because it reached the max_tokens limit."


class AnalysisStore(VideoStore):
    def resolve_analysis_input(
        self, body: dict[str, Any], model: str
    ) -> tuple[MediaInfo, dict[str, Any] | None]:
        has_id, has_video = body.get("video_id") is not None, body.get("video") is not None
        if has_id and has_video:
            raise invalid("Provide exactly one of video_id or video, not both.")
        if not has_id and not has_video:
            raise missing("video")
        if has_id:
            video_id = body["video_id"]
            if model != "pegasus1.2":
                raise invalid(
                    f"video_id is not supported by {model}; pass video: {{type: asset_id, ...}} instead."
                )
            if not isinstance(video_id, str):
                raise invalid("video_id must be a string.")
            video = self.find_video(video_id)
            if not self.indexes[video.index_id].has_pegasus:
                raise ApiError(
                    400,
                    "index_not_supported_for_generate",
                    f"The index of video {video_id!r} has no Pegasus model, so it cannot be analyzed.",
                )
            if not any(m.startswith("pegasus") for m in video.models):
                raise ApiError(
                    400,
                    "index_not_supported_for_generate",
                    f"The video {video_id!r} was indexed with Marengo only (videos added to an index with "
                    "Marengo and Pegasus 1.2 are), so it cannot be analyzed by video_id; pass "
                    "video: {type: asset_id, ...} instead.",
                )
            status = video.schedule.status(self.now())
            if status != "ready":
                raise ApiError(400, "video_not_ready", f"The video {video_id!r} is {status}, not ready.")
            return video.media, video.user_metadata
        video_ctx = body["video"]
        if not isinstance(video_ctx, dict):
            raise invalid("video must be an object with a type.")
        kind = video_ctx.get("type")
        if kind == "url":
            url = video_ctx.get("url")
            if not isinstance(url, str) or "://" not in url:
                raise invalid("video.url must be an absolute URL.")
            if "corrupt" in url.lower():
                raise invalid(
                    "The video at video.url could not be processed (emulated: 'corrupt' in the URL)."
                )
            return MediaInfo.guess(content.display_name(url)), None
        if kind == "asset_id":
            asset_id = video_ctx.get("asset_id")
            if not isinstance(asset_id, str):
                raise missing("video.asset_id")
            asset = self.get_asset(asset_id)
            status = asset.schedule.status(self.now())
            if status != "ready":
                raise ApiError(400, "video_not_ready", f"The asset {asset_id!r} is {status}, not ready.")
            return asset.media, asset.user_metadata
        if kind == "base64_string":
            if not isinstance(video_ctx.get("base64_string"), str) or not video_ctx["base64_string"]:
                raise missing("video.base64_string")
            return MediaInfo.guess("base64_video.mp4"), None
        raise invalid("video.type must be one of url, asset_id, base64_string.")

    def analyze(self, body: dict[str, Any], schema: dict[str, Any] | None, variant: str | None) -> Analysis:
        """Sync analysis: resolve the input, check its duration (4 s to 1 h), produce the answer."""
        model = body.get("model_name", "pegasus1.2")
        media, metadata = self.resolve_analysis_input(body, model)
        check_sync_duration(media.duration)
        prompt = body.get("prompt") or (body.get("prompt_v2") or {}).get("input_text", "")
        return self.render_analysis(
            media,
            metadata,
            prompt,
            schema,
            variant,
            body.get("max_tokens", DEFAULT_MAX_TOKENS),
            window=clip_seconds(media.duration, body.get("start_time"), body.get("end_time")),
        )

    def render_analysis(
        self,
        media: MediaInfo,
        metadata: dict[str, Any] | None,
        prompt: str,
        schema: dict[str, Any] | None,
        variant: str | None,
        max_tokens: int,
        *,
        window: float | None = None,
        data: str | None = None,
        length_warning: str = LENGTH_WARNING,
    ) -> Analysis:
        """Everything but validation: produce text (or take ``data``), then apply max_tokens and any
        model_output fault. Shared by sync ``/analyze`` and the async tasks and batch items."""
        if data is None:
            if schema is not None:
                data = content.json_for_schema(schema, media.filename, metadata)
            else:
                data = content.plain_text(media.filename, metadata, prompt)
        finish, error = "stop", None
        if schema is not None and variant in ("not_json", "missing_keys", "wrong_types"):
            data = _spoil(data, variant, media.filename)
        limit_chars = max_tokens * CHARS_PER_TOKEN
        if variant == "length":
            limit_chars = min(limit_chars, max(len(data) // 2, 1))
        if len(data) > limit_chars:
            data = data[:limit_chars]
            finish = "length"
            error = length_warning
        seconds = media.duration if window is None else window
        return Analysis(
            id=self.new_uuid(),
            data=data,
            finish_reason=finish,
            output_tokens=max(1, math.ceil(len(data) / CHARS_PER_TOKEN)),
            input_tokens=int(seconds * 40) + math.ceil(len(prompt) / CHARS_PER_TOKEN),
            error=error,
        )


def _spoil(data: str, variant: str, filename: str) -> str:
    """Realistic ways a model's JSON goes wrong, for clients' output validation."""
    if variant == "not_json":
        return "Sure! Here is what I found in the video:\n" + content.plain_text(filename, None, "")
    try:
        value = json.loads(data)
    except ValueError:
        return data
    if not isinstance(value, dict) or not value:
        return data
    if variant == "missing_keys":
        value.pop(list(value)[-1])
        return json.dumps(value, ensure_ascii=False)

    def wrong(item: Any) -> Any:
        if isinstance(item, str):
            return [item]
        if isinstance(item, list):
            return ", ".join(str(x) for x in item)
        if isinstance(item, bool | int | float):
            return str(item)
        return [item]

    return json.dumps({k: wrong(v) for k, v in value.items()}, ensure_ascii=False)
