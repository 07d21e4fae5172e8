"""The emulator's start configuration (``EmulatorConfig``): timings, limits, faults, upload sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .faults import parse_rules
from .jobs import JobSettings
from .state import Clock
from .uploads import MIB

DEFAULT_API_KEY = "tlk_emulator_key"
DEFAULT_PORT = 8089


@dataclass
class EmulatorConfig:
    api_key: str = DEFAULT_API_KEY
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    asset_ready_seconds: float = 2.0
    indexing_seconds: float = 4.0
    # group -> (requests per window, window seconds)
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    # The docs never promise Retry-After on a 429 (only X-Ratelimit-Reset), so it is off by default.
    retry_after: bool = False
    faults: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    error_rate: float = 0.0
    latency: float = 0.0
    analyze_latency: float = 0.0
    journal_size: int = 10_000
    # Largest request body read at all (aiohttp's limit for JSON; file parts are streamed).
    max_upload_bytes: int = 250 * MIB
    # POST /assets method=direct: "local video and audio files up to 200 MB".
    max_direct_upload_bytes: int = 200 * MIB
    # Multipart uploads: chunk size (grown for huge files), URLs in the create response,
    # presigned URL lifetime (1 h) and session lifetime (24 h).
    multipart_chunk_size: int = 5 * MIB
    multipart_initial_urls: int = 10
    presigned_url_seconds: float = 3600.0
    upload_session_seconds: float = 86400.0
    # Asynchronous analysis (/analyze/tasks, /analyze/batches): concurrent slots, the pending phase,
    # processing seconds per minute of video analysed, batch expiry (24 h) and retention (30 days),
    # and the active-batch cap (5 per account).
    analysis_slots: int = 4
    analysis_startup_seconds: float = 2.0
    analysis_seconds_per_minute: float = 3.0
    batch_expiry_seconds: float = 86400.0
    batch_retention_seconds: float = 30 * 86400.0
    max_active_batches: int = 5
    # Seconds before a new asset, indexed asset (video) or task shows up in listings (GETs by id
    # see it at once): the eventual consistency a lookup after a lost create must outwait.
    listing_lag: float = 0.0
    clock: Clock | None = None

    def __post_init__(self) -> None:
        if self.host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the emulator binds 127.0.0.1 only, not {self.host!r}")
        self.host = "127.0.0.1"
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.error_rate <= 1:
            raise ValueError("error_rate must be within [0, 1]")
        if (
            min(self.asset_ready_seconds, self.indexing_seconds, self.latency, self.analyze_latency) < 0
            or self.listing_lag < 0
        ):
            raise ValueError("timings and latencies must be >= 0")
        if min(self.multipart_chunk_size, self.multipart_initial_urls) < 1:
            raise ValueError("multipart_chunk_size and multipart_initial_urls must be >= 1")
        if min(self.presigned_url_seconds, self.upload_session_seconds) <= 0:
            raise ValueError("presigned_url_seconds and upload_session_seconds must be > 0")
        self.job_settings()  # validates the analysis knobs
        # Validate early so a bad --faults fails at start, not on the first request.
        parse_rules(self.faults)

    def job_settings(self) -> JobSettings:
        return JobSettings(
            slots=self.analysis_slots,
            startup_seconds=self.analysis_startup_seconds,
            seconds_per_minute=self.analysis_seconds_per_minute,
            batch_expiry_seconds=self.batch_expiry_seconds,
            batch_retention_seconds=self.batch_retention_seconds,
            max_active_batches=self.max_active_batches,
        )
