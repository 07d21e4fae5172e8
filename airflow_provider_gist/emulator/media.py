"""A video's fake technical metadata (from its filename) and the analysis duration limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import content
from .api_errors import ApiError

# Input duration limits (spec, "Input requirements"): 4 s to 1 hour for sync /analyze, to 2 hours
# for async analysis tasks and batch items.
MIN_ANALYSIS_SECONDS = 4.0
SYNC_MAX_SECONDS = 3600.0
ASYNC_MAX_SECONDS = 7200.0
# A duration written in a filename (``lecture_90min.mp4``, ``keynote-2.5h.mov``, ``clip_3s.mp4``)
# is the video's duration, so tests can make long (or too short) videos on purpose.
_DURATION_TOKEN = re.compile(r"(?:^|[_\-\s])(\d+(?:\.\d+)?)(h|min|s)(?=$|[_\-\s])", re.I)
_UNIT_SECONDS = {"h": 3600.0, "min": 60.0, "s": 1.0}
_RESOLUTIONS = ((1920, 1080), (1280, 720), (3840, 2160), (1080, 1920), (854, 480))
_FPS = (24.0, 25.0, 29.97, 30.0, 60.0)


@dataclass
class MediaInfo:
    """Fake technical metadata; stable per filename so two runs agree."""

    filename: str
    duration: float
    width: int
    height: int
    fps: float
    size: int

    @classmethod
    def guess(cls, filename: str, size: int | None = None) -> MediaInfo:
        h = content.digest_int(filename)
        duration = _duration_in_name(filename) or 20.0 + h % 580 + (h // 1000 % 100) / 100
        width, height = _RESOLUTIONS[h % len(_RESOLUTIONS)]
        bytes_guess = int(duration * 5_000_000 / 8)
        return cls(filename, round(duration, 2), width, height, _FPS[h % len(_FPS)], size or bytes_guess)


def _duration_in_name(filename: str) -> float | None:
    stem = content.display_name(filename).rsplit(".", 1)[0]
    match = _DURATION_TOKEN.search(stem)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def check_sync_duration(duration: float) -> None:
    """``POST /analyze`` takes videos of 4 s to 1 hour (400 otherwise; longer ones go async)."""
    if duration > SYNC_MAX_SECONDS:
        raise ApiError(
            400,
            "video_duration_too_long",
            f"The video is {duration:g} seconds long; POST /analyze takes videos of up to 1 hour. "
            "Use POST /analyze/tasks for videos of up to 2 hours.",
        )
    if duration < MIN_ANALYSIS_SECONDS:
        raise ApiError(
            400,
            "video_duration_too_short",
            f"The video is {duration:g} seconds long; the minimum is {MIN_ANALYSIS_SECONDS:g} seconds.",
        )


def clip_seconds(duration: float, start: Any, end: Any) -> float:
    """Seconds analysed: the ``start_time``/``end_time`` window (Pegasus 1.5), else the whole video."""
    low = float(start) if isinstance(start, int | float) else 0.0
    high = float(end) if isinstance(end, int | float) else duration
    return max(min(high, duration) - max(low, 0.0), 0.0)
