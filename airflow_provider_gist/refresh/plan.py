"""Catalog refresh planning: which videos of an index need a (new) gist, and the run's summary.

Pure: no HTTP, no Airflow, no storage I/O. The refresh operator
(:mod:`airflow_provider_gist.operators.refresh`) lists the index, reads the store's
``fingerprints(index_id)`` and hands both to :func:`plan_refresh`; after generating it folds
the outcomes into a :class:`RefreshSummary`, whose :meth:`~RefreshSummary.to_dict` is the
task's small XCom.

A video needs a gist when (see :func:`regeneration_reason`):

* ``new``: nothing is stored for it;
* ``source_changed``: its ``updated_at`` is newer than the stored ``source_updated_at``
  (or the stored gist does not record one, or either timestamp cannot be read);
* ``types_changed`` / ``model_changed`` / ``prompt_changed``: the stored gist was made with other
  gist types, another model or another prompt version than this run asks for.

Otherwise it is skipped and costs no API call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from airflow_provider_gist.errors import (
    GistApiError,
    GistAuthError,
    GistConfigError,
    GistModelOutputError,
    GistNotFoundError,
    GistRateLimitedError,
    GistTransientError,
    GistValidationError,
)
from airflow_provider_gist.model import GistType, parse_types

#: Reasons to (re)generate, in the order a capped run works through them: videos without any
#: gist first, then stale ones.
REASONS = ("new", "source_changed", "types_changed", "model_changed", "prompt_changed")
#: How many failures are listed one by one in the summary (the rest are only counted), so the
#: XCom stays small however many videos fail.
MAX_LISTED_FAILURES = 20
#: A failure reason is cut to this many characters in the summary.
MAX_REASON_CHARS = 300
#: Failures a run keeps one by one (past it, only their kinds are counted), so the memory of a
#: refresh does not grow with the number of failing videos of a huge catalog.
MAX_KEPT_FAILURES = 1000
#: Listings the refresh understands: ``indexed_assets`` (current API) or ``videos`` (legacy).
LISTINGS = ("indexed_assets", "videos")
#: Calls in flight at once by default, and the most a run may ask for: beyond that, threads only
#: add memory and GIL contention, since the rate limit is the bottleneck.
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 128


@dataclass(frozen=True, slots=True)
class CatalogVideo:
    """One ready video of the index, as the refresh sees it.

    ``video_ref`` is what ``/analyze`` is asked about and what the store keys the gist by: the
    asset id when the listing gives one (every model accepts it), else the legacy video id
    (``pegasus1.2`` only). ``updated_at`` is the listing's RFC 3339 ``updated_at``.
    """

    video_ref: str
    video_ref_type: str  # "asset_id" | "video_id"
    updated_at: str | None = None


def video_from_listing(item: Mapping[str, Any]) -> CatalogVideo | None:
    """A :class:`CatalogVideo` from one item of ``indexed-assets`` or ``videos``; ``None`` if unusable."""
    asset_id = item.get("asset_id")
    updated = item.get("updated_at")
    updated_at = updated if isinstance(updated, str) and updated else None
    if isinstance(asset_id, str) and asset_id:
        return CatalogVideo(asset_id, "asset_id", updated_at)
    video_id = item.get("_id")
    if isinstance(video_id, str) and video_id:
        return CatalogVideo(video_id, "video_id", updated_at)
    return None


@dataclass(frozen=True, slots=True)
class PlannedVideo:
    """A video that needs a gist, and why (one of :data:`REASONS`)."""

    video: CatalogVideo
    reason: str


@dataclass(frozen=True)
class RefreshPlan:
    """What one run will do: ``todo`` in order, plus counts for the summary."""

    todo: tuple[PlannedVideo, ...]
    listed: int
    skipped: int
    deferred: int
    reasons: dict[str, int]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    # A naive timestamp cannot be ordered against an aware one; the API always sends UTC.
    return parsed if parsed.tzinfo is not None else None


def regeneration_reason(
    video: CatalogVideo,
    stored: Mapping[str, Any] | None,
    *,
    types: Sequence[GistType],
    model: str,
    prompt_version: str,
) -> str | None:
    """Why ``video`` needs a new gist given its ``stored`` fingerprint, or ``None`` if it does not.

    ``stored`` is one value of ``GistStore.fingerprints()``:
    ``{source_updated_at, types, model, prompt_version}``.
    """
    if stored is None:
        return "new"
    if video.updated_at is not None:
        current, recorded = _parse_time(video.updated_at), _parse_time(stored.get("source_updated_at"))
        # Unreadable or unrecorded times cannot prove the gist is current: regenerate.
        if current is None or recorded is None or current > recorded:
            return "source_changed"
    try:
        stored_types = parse_types(stored.get("types") or [])
    except GistValidationError:
        return "types_changed"
    if set(stored_types) != set(types):
        return "types_changed"
    if stored.get("model") != model:
        return "model_changed"
    if stored.get("prompt_version") != prompt_version:
        return "prompt_changed"
    return None


class SeenRefs(Protocol):
    """What a plan remembers of the videos listed so far: a set, or a bounded window of the
    most recent refs (the streaming plan's ``RecentRefs``)."""

    def __contains__(self, ref: object, /) -> bool: ...

    def add(self, ref: str, /) -> object: ...


def judge(
    videos: Iterable[CatalogVideo],
    fingerprints: Mapping[str, Mapping[str, Any]],
    seen: SeenRefs,
    *,
    types: Sequence[GistType],
    model: str,
    prompt_version: str,
) -> Iterator[tuple[CatalogVideo, str | None]]:
    """Each video listed for the first time (``seen`` collects them), with why it needs a gist
    (``None``: its stored gist is current). The one loop every plan goes through."""
    for video in videos:
        if video.video_ref in seen:
            continue
        seen.add(video.video_ref)
        stored = fingerprints.get(video.video_ref)
        yield (
            video,
            regeneration_reason(video, stored, types=types, model=model, prompt_version=prompt_version),
        )


def plan_refresh(
    videos: Iterable[CatalogVideo],
    fingerprints: Mapping[str, Mapping[str, Any]],
    *,
    types: Sequence[GistType],
    model: str,
    prompt_version: str,
    max_videos: int | None = None,
) -> RefreshPlan:
    """Decide which videos need a gist this run.

    Duplicates (the same ``video_ref`` listed twice) count once. The videos that need a gist are
    ordered by :data:`REASONS` (new ones first), keeping the listing's order within a reason;
    with ``max_videos`` only that many are planned and the rest are counted as ``deferred``
    (a later run picks them up, since nothing was stored for them).
    """
    if max_videos is not None and max_videos < 0:
        raise GistValidationError("max_videos must be >= 0 (or None for no cap)")
    seen: set[str] = set()
    needed: dict[str, list[PlannedVideo]] = {reason: [] for reason in REASONS}
    skipped = 0
    for video, reason in judge(
        videos, fingerprints, seen, types=types, model=model, prompt_version=prompt_version
    ):
        if reason is None:
            skipped += 1
        else:
            needed[reason].append(PlannedVideo(video, reason))
    ordered = [item for reason in REASONS for item in needed[reason]]
    cap = len(ordered) if max_videos is None else min(max_videos, len(ordered))
    todo = tuple(ordered[:cap])
    return RefreshPlan(
        todo=todo,
        listed=len(seen),
        skipped=skipped,
        deferred=len(ordered) - cap,
        reasons={reason: len(items) for reason, items in needed.items() if items},
    )


# ---------------------------------------------------------------------------------------- failures


def failure_kind(err: BaseException) -> str:
    """A short, stable category for a per-video failure (for counting and alerting)."""
    if isinstance(err, GistNotFoundError):
        return "not_found"
    if isinstance(err, GistModelOutputError):
        return "model_output"
    if isinstance(err, GistRateLimitedError):
        return "rate_limited"
    if isinstance(err, GistTransientError):
        return "transient"
    if isinstance(err, GistAuthError):
        return "auth"
    if isinstance(err, GistApiError):
        code = err.code or "error"
        return "not_ready" if code == "video_not_ready" else f"http_{err.status}_{code}"
    if isinstance(err, GistValidationError):
        return "invalid"
    if isinstance(err, GistConfigError):
        return "config"
    return "error"


def failure_message(err: BaseException) -> str:
    """A one-line reason, cut to :data:`MAX_REASON_CHARS`. Our errors never carry the API key."""
    text = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, GistApiError | GistModelOutputError | GistValidationError | GistConfigError):
        text = f"{type(err).__name__}: {text}"
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class VideoFailure:
    """One video that got no gist this run: it is not stored, so the next run tries it again."""

    video_ref: str
    kind: str
    reason: str

    @classmethod
    def from_error(cls, video_ref: str, err: BaseException) -> VideoFailure:
        return cls(video_ref, failure_kind(err), failure_message(err))


# ----------------------------------------------------------------------------------------- summary


@dataclass
class RefreshSummary:
    """Counts of one refresh run; :meth:`to_dict` is the (small, JSON-safe) XCom."""

    index_id: str
    listed: int = 0
    skipped: int = 0
    planned: int = 0
    deferred: int = 0
    generated: int = 0
    stored: int = 0
    not_attempted: int = 0
    output_tokens: int = 0
    input_tokens: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    failures: list[VideoFailure] = field(default_factory=list)
    #: failures past :data:`MAX_KEPT_FAILURES`, counted by kind only
    more_failures: dict[str, int] = field(default_factory=dict)
    aborted: str | None = None

    @classmethod
    def from_plan(cls, index_id: str, plan: RefreshPlan) -> RefreshSummary:
        return cls(
            index_id=index_id,
            listed=plan.listed,
            skipped=plan.skipped,
            planned=len(plan.todo),
            deferred=plan.deferred,
            reasons=dict(plan.reasons),
        )

    @property
    def failed(self) -> int:
        return len(self.failures) + sum(self.more_failures.values())

    def add_failure(self, failure: VideoFailure) -> None:
        """Keep ``failure`` (or, past :data:`MAX_KEPT_FAILURES`, count its kind only)."""
        if len(self.failures) < MAX_KEPT_FAILURES:
            self.failures.append(failure)
        else:
            self.more_failures[failure.kind] = self.more_failures.get(failure.kind, 0) + 1

    def to_dict(self, max_failures: int = MAX_LISTED_FAILURES) -> dict[str, Any]:
        """Counts, token totals and at most ``max_failures`` failures (never gists, never secrets)."""
        kinds = Counter(f.kind for f in self.failures) + Counter(self.more_failures)
        return {
            "index_id": self.index_id,
            "listed": self.listed,
            "skipped": self.skipped,
            "planned": self.planned,
            "deferred": self.deferred,
            "generated": self.generated,
            "stored": self.stored,
            "failed": self.failed,
            "not_attempted": self.not_attempted,
            "reasons": dict(self.reasons),
            "failure_kinds": dict(sorted(kinds.items())),
            "failures": [
                {"video_ref": f.video_ref, "kind": f.kind, "reason": f.reason}
                for f in self.failures[:max_failures]
            ],
            "failures_truncated": max(0, self.failed - max_failures),
            "output_tokens": self.output_tokens,
            "input_tokens": self.input_tokens,
            "seconds": round(self.seconds, 3),
            "aborted": self.aborted,
        }

    def log_lines(self) -> list[str]:
        """A short human-readable report for the task log."""
        lines = [
            f"index {self.index_id}: {self.listed} ready video(s) listed, "
            f"{self.skipped} unchanged (skipped), "
            f"{self.planned} planned, {self.deferred} deferred to a later run",
            f"generated {self.generated}, stored {self.stored}, failed {self.failed}, "
            f"not attempted {self.not_attempted}; output tokens {self.output_tokens}, "
            f"input tokens {self.input_tokens}; {self.seconds:.1f}s",
        ]
        if self.reasons:
            lines.append("why planned: " + ", ".join(f"{k} {v}" for k, v in self.reasons.items()))
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        for failure in self.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"failed {failure.video_ref} [{failure.kind}]: {failure.reason}")
        if self.failed > MAX_LISTED_FAILURES:
            lines.append(f"... and {self.failed - MAX_LISTED_FAILURES} more failure(s)")
        return lines
