"""The catalog refresh's plan, streamed: one listing page at a time, in memory that does not grow
with the catalog.

:func:`~airflow_provider_gist.refresh.plan.plan_refresh` decides over the whole listing and the
whole store at once; for 100,000 videos that is two large maps held for the whole run, and the first
gist waits for the last listing page. :class:`StreamingPlan` makes the same decisions
(:func:`~airflow_provider_gist.refresh.plan.judge`, the loop every plan goes through) as the listing
goes, asking the store only about the videos of the current page, and yields the videos to generate
as soon as it knows them. It keeps the plan's semantics:

* **new before stale.** Videos without any gist are yielded during the listing. Stale ones
  (``source_changed``, ``types_changed``, ``model_changed``, ``prompt_changed``) are kept, at
  most ``stale_memory`` of them, and yielded after the listing, in :data:`REASONS` order and
  listing order within a reason. When more are stale than that, they are not kept: a second
  pass over the listing yields them instead (the trade-off: one more listing, only when more
  than ``stale_memory`` videos are stale, e.g. after a prompt change);
* **max_videos.** New videos first, in listing order, then stale ones by reason: exactly the
  ``max_videos`` videos the whole-catalog plan would choose (when the catalog does not change
  between the two passes); the rest are counted as deferred;
* **duplicates count once** within the last ``recent`` distinct videos listed. A listing shifts
  when videos are added during it, so the same video can show up on two neighbouring pages;
  one that shows up again further away than that window is planned twice (the trade-off for a
  bounded memory; it is skipped anyway if its first gist is stored by then).

Pure apart from the two callables it is given (the listing's pages, the store's fingerprints).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_gist.model import GistType
from airflow_provider_gist.refresh.plan import REASONS, CatalogVideo, PlannedVideo, judge

#: Stale videos kept for after the listing; more mean a second pass over the listing.
STALE_MEMORY = 10_000
#: Distinct videos remembered to recognise one listed twice.
RECENT_REFS = 10_000

Pages = Callable[[], Iterable[Sequence[CatalogVideo]]]
Fingerprints = Callable[[list[str]], Mapping[str, Mapping[str, Any]]]


class RecentRefs:
    """A set of the last ``size`` distinct refs added (the oldest is forgotten first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._refs: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, ref: object) -> bool:
        """Whether ``ref`` is among the recent ones; if so it becomes the most recent.

        The plan asks exactly when the video is listed again, and that listing makes it recent
        (as :meth:`add` of a ref already there does).
        """
        if isinstance(ref, str) and ref in self._refs:
            self._refs.move_to_end(ref)
            return True
        return False

    def add(self, ref: str) -> bool:
        """Remember ``ref``; ``False`` if it was already among the recent ones."""
        if ref in self:
            return False
        self._refs[ref] = None
        if len(self._refs) > self.size:
            self._refs.popitem(last=False)
        return True


class StreamingPlan:
    """Iterate to get the videos that need a gist, in plan order; counts fill in as it goes.

    :param pages: a fresh iteration over the catalog, one listing page (a list) at a time;
        called once, and again for a second pass when more than ``stale_memory`` are stale.
    :param fingerprints: the store's fingerprints of the given video refs (those stored).
    """

    def __init__(
        self,
        pages: Pages,
        fingerprints: Fingerprints,
        *,
        types: Sequence[GistType],
        model: str,
        prompt_version: str,
        max_videos: int | None = None,
        stale_memory: int = STALE_MEMORY,
        recent: int = RECENT_REFS,
    ) -> None:
        if max_videos is not None and max_videos < 0:
            from airflow_provider_gist.errors import GistValidationError

            raise GistValidationError("max_videos must be >= 0 (or None for no cap)")
        self._pages = pages
        self._fingerprints = fingerprints
        self._types, self._model, self._prompt_version = types, model, prompt_version
        self.max_videos = max_videos
        self.stale_memory = stale_memory
        self.recent = recent
        #: distinct videos listed, of which ``skipped`` need no gist
        self.listed = 0
        self.skipped = 0
        #: videos needing a gist, by reason (yielded or deferred)
        self.needed: Counter[str] = Counter()
        #: videos yielded so far
        self.planned = 0
        #: whether the listing was read to its end (the counts are then the whole catalog's)
        self.complete = False
        #: whether the stale videos took a second pass over the listing
        self.second_pass = False

    @property
    def reasons(self) -> dict[str, int]:
        """Videos needing a gist by reason, in :data:`REASONS` order (as the plan reports them)."""
        return {reason: self.needed[reason] for reason in REASONS if self.needed[reason]}

    @property
    def deferred(self) -> int:
        """Videos that need a gist and were not planned (past ``max_videos``, or not listed yet)."""
        return sum(self.needed.values()) - self.planned

    def _room(self) -> float:
        return float("inf") if self.max_videos is None else self.max_videos - self.planned

    def _classified(self) -> Iterator[tuple[CatalogVideo, str | None]]:
        """Every distinct listed video with its reason (``None``: current), page by page."""
        recent = RecentRefs(self.recent)
        for page in self._pages():
            # The store is asked about every ref of the page, not only those ``recent`` does not
            # hold yet: a ref can drop out of ``recent`` while the page is judged (the window
            # is full) and is then judged as listed anew, which needs its fingerprint. A listing
            # repeats a video rarely, so the extra refs cost next to nothing.
            refs = list(dict.fromkeys(video.video_ref for video in page))
            stored = self._fingerprints(refs) if refs else {}
            yield from judge(
                page,
                stored,
                recent,
                types=self._types,
                model=self._model,
                prompt_version=self._prompt_version,
            )

    def __iter__(self) -> Iterator[PlannedVideo]:
        stale: list[PlannedVideo] = []
        kept = True  # stale videos all fit in memory (else: a second pass)
        for video, reason in self._classified():
            self.listed += 1
            if reason is None:
                self.skipped += 1
                continue
            self.needed[reason] += 1
            if reason == "new":
                if self._room() > 0:
                    self.planned += 1
                    yield PlannedVideo(video, reason)
            elif kept:
                if len(stale) < self.stale_memory:
                    stale.append(PlannedVideo(video, reason))
                else:
                    kept = False
                    stale.clear()
        self.complete = True
        quotas = self._stale_quotas()
        if not sum(quotas.values()):
            return  # nothing stale, or no room left for it
        later = sorted(stale, key=lambda item: REASONS.index(item.reason)) if kept else self._stale_again()
        for item in later:
            if quotas[item.reason] > 0:
                quotas[item.reason] -= 1
                self.planned += 1
                yield item

    def _stale_quotas(self) -> Counter[str]:
        """How many stale videos of each reason fit in the room left, in :data:`REASONS` order."""
        room = self._room()
        quotas: Counter[str] = Counter()
        for reason in REASONS[1:]:
            take = int(min(room, self.needed[reason]))
            quotas[reason] = take
            room -= take
        return quotas

    def _stale_again(self) -> Iterator[PlannedVideo]:
        """The stale videos, from a second pass over the listing (too many to keep).

        The reasons that fit whole come in one pass, in listing order (all of them are done, so
        their order only says which go first); the one reason that fits only in part (the quotas
        fill in :data:`REASONS` order) gets a pass of its own, so that its first videos in
        listing order are the ones chosen, as in the whole-catalog plan.
        """
        self.second_pass = True
        quotas = self._stale_quotas()
        whole = {reason for reason in REASONS[1:] if quotas[reason] >= self.needed[reason]}
        partial = [reason for reason in REASONS[1:] if 0 < quotas[reason] < self.needed[reason]]
        if whole:
            yield from self._pass_for(whole)
        for reason in partial:  # at most one
            yield from self._pass_for({reason})

    def _pass_for(self, reasons: set[str]) -> Iterator[PlannedVideo]:
        for video, reason in self._classified():
            if reason in reasons:
                yield PlannedVideo(video, reason)
