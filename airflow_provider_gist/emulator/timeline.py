"""Time in the emulator: a clock tests can push forward, RFC 3339 text, and status schedules.

Statuses are never advanced by a background job. Each resource stores a schedule of
(time, status) steps fixed at creation, and its status is read from the clock when asked.
That keeps the emulator single-threaded, lets tests jump the clock, and makes timing exact.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .api_errors import invalid


class Clock:
    """Wall-clock time plus an offset that tests can push forward."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self.offset = 0.0

    def now(self) -> float:
        return self._source() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_rfc3339(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise invalid(f"{text!r} is not an RFC 3339 date-time.") from exc


@dataclass
class Schedule:
    """Status steps ``[(at, status), ...]`` in time order; the first step is at creation."""

    steps: list[tuple[float, str]]

    def status(self, now: float) -> str:
        return self.steps[self._index(now)][1]

    def changed_at(self, now: float) -> float:
        return self.steps[self._index(now)][0]

    @property
    def final_at(self) -> float:
        return self.steps[-1][0]

    def _index(self, now: float) -> int:
        return max(bisect.bisect_right([t for t, _ in self.steps], now) - 1, 0)

    @classmethod
    def spread(cls, start: float, total: float, names: Iterable[str], final: str) -> Schedule:
        """Intermediate statuses share ``total`` seconds evenly; ``final`` is reached at start+total."""
        names = list(names)
        step = total / max(len(names), 1)
        steps = [(start + i * step, name) for i, name in enumerate(names)]
        return cls([*steps, (start + total, final)])


@dataclass
class Timing:
    asset_ready_seconds: float = 2.0
    indexing_seconds: float = 4.0
