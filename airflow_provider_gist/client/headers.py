"""What the server's headers say about waiting: ``Retry-After`` and ``X-Ratelimit-*``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, looked up case-insensitively (``name`` in lower case)."""
    return next((value for key, value in headers.items() if key.lower() == name), None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def reset_epoch(value: str, now: float) -> float | None:
    """``X-Ratelimit-Reset`` as epoch seconds, not clamped to now (a delta is added to ``now``)."""
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    # A small value is a delta, not an epoch: some gateways send it that way.
    return reset if reset >= 1_000_000_000 else now + reset


def parse_ratelimit_reset(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until ``X-Ratelimit-Reset`` (epoch seconds of the window's end), or ``None``."""
    if value is None or not value.strip():
        return None
    current = time.time() if now is None else now
    epoch = reset_epoch(value, current)
    return None if epoch is None else max(0.0, epoch - current)


def server_wait_hint(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """How long the server asks us to wait, from ``Retry-After`` first, else ``X-Ratelimit-Reset``."""
    hint = parse_retry_after(header(headers, "retry-after"), now=now)
    if hint is None:
        hint = parse_ratelimit_reset(header(headers, "x-ratelimit-reset"), now=now)
    return hint


def int_header(value: str | None) -> int | None:
    """A non-negative integer header value, or ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0, int(float(value.strip())))
    except ValueError:
        return None
