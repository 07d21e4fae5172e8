"""What a catalog refresh writes about itself: its row in the runs table (:mod:`..storage.runs`).

:class:`RunRecorder` writes the refresh task's row: ``running`` with the latest progress report
while the task works, then the summary (planned, generated, stored, failed, skipped, deferred,
tokens) and how many gists it left stale, by reason. The gist view shows the latest row of each
index.

Stale counts are exact because :class:`TrackingStore` sits between the engine and the store:
before each batch is written it reads the stored fingerprints of that batch's videos (one
primary-key query per batch) and asks :func:`~.plan.regeneration_reason` why each one was
regenerated, with the same inputs the plan had. What the plan found stale minus what was
regenerated is what is left stale.

Recording is best effort: a failure to write the row is logged once and never fails the
refresh (its gists are what matters). Only SQL stores have a runs table. The first write also
creates the catalog's read indexes on the gist table
(:func:`~airflow_provider_gist.storage.catalog.ensure_catalog_indexes`), since the gist view
itself never creates anything.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from airflow_provider_gist.refresh.plan import REASONS, CatalogVideo, RefreshSummary, regeneration_reason
from airflow_provider_gist.storage.catalog import ensure_catalog_indexes
from airflow_provider_gist.storage.runs import STALE_REASONS, write_run

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TrackingStore:
    """A gist store that counts, per :data:`~.plan.REASONS`, why each gist it writes replaced
    the stored one (``new``: nothing was stored), and remembers the first index it is asked about.

    Everything else is the wrapped store's (attribute access falls through).
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self.regenerated: Counter[str] = Counter()
        self.index_id: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def fingerprints(self, index_id: str | None, video_refs: Any = None) -> dict[str, dict[str, Any]]:
        # The engine inspects this signature: keeping video_refs keeps it reading page by page.
        if self.index_id is None:
            self.index_id = index_id
        return dict(self._store.fingerprints(index_id, video_refs=video_refs))

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        batch = list(gists)
        by_index: dict[str | None, list[Mapping[str, Any]]] = {}
        for gist in batch:
            by_index.setdefault(gist.get("index_id"), []).append(gist)
        reasons: Counter[str] = Counter()
        for index_id, items in by_index.items():
            before = self._store.fingerprints(index_id, video_refs=[g["video_ref"] for g in items])
            for gist in items:
                reasons[self._reason(gist, before.get(gist["video_ref"]))] += 1
        written = int(self._store.put_many(batch))
        self.regenerated.update(reasons)
        return written

    @staticmethod
    def _reason(gist: Mapping[str, Any], stored: Mapping[str, Any] | None) -> str:
        video = CatalogVideo(
            gist["video_ref"], gist.get("video_ref_type") or "asset_id", gist.get("source_updated_at")
        )
        reason = regeneration_reason(
            video,
            stored,
            types=gist.get("types") or [],
            model=gist.get("model") or "",
            prompt_version=gist.get("prompt_version") or "",
        )
        return reason or "current"  # stored meanwhile by someone else with the same inputs


class RunRecorder:
    """Writes one refresh task's row; every method is best effort (see the module docstring).

    :param store: the SQL gist store the refresh writes (its runs table sits next to it).
    :param task: ``dag_id``, ``run_id``, ``task_id``, ``map_index``, ``try_number``.
    :param settings: ``model``, ``prompt_version``, ``types`` of the run (once known).
    """

    def __init__(self, store: Any, task: Mapping[str, Any]) -> None:
        self.store = store
        self.task = dict(task)
        self.started_at = _now()
        self.settings: dict[str, Any] = {}
        self._created = False
        self._broken = False
        self._last: dict[str, Any] = {}

    def _write(self, row: dict[str, Any]) -> None:
        if self._broken:
            return
        # Later rows keep what earlier ones said unless they say it again (a failed run keeps
        # the counts of its last progress report).
        self._last = {**self._last, **row}
        full = {
            **self.task,
            **self.settings,
            "started_at": self.started_at,
            "updated_at": _now(),
            **self._last,
        }
        try:
            if not self._created:
                # the view only reads: the writers create what makes its pages index walks
                ensure_catalog_indexes(self.store)
            write_run(self.store, full, create=not self._created)
            self._created = True
        except Exception as err:
            self._broken = True  # one warning, then stop trying: the refresh itself goes on
            log.warning(
                "could not record the refresh run in %s (%s: %s); the gists are not affected",
                getattr(self.store, "location", "the store"),
                type(err).__name__,
                str(err)[:200],
            )

    def progress(self, index_id: str | None, report: Mapping[str, Any]) -> None:
        """A ``running`` row with the latest progress report (once the index is known)."""
        if index_id is None:
            return
        self._write(
            {
                "index_id": index_id,
                "status": "running",
                "generated": report.get("generated"),
                "stored": report.get("stored"),
                "failed": report.get("failed"),
                "progress": dict(report),
            }
        )

    def fail(self, index_id: str | None, error: str) -> None:
        """The row of a run that ended by an exception (killed, timed out, store down): the
        counts of its last progress report stay, stale counts are unknown."""
        if index_id is None:
            return  # it never reached the index: there is nothing to say about one
        self._write({"index_id": index_id, "status": "failed", "finished_at": _now(), "error": error[:300]})

    def finish(
        self,
        summary: RefreshSummary,
        *,
        status: str,
        regenerated: Mapping[str, int] | None,
        error: str | None = None,
    ) -> None:
        """The final row: ``summary``'s counts, and what is left stale when ``regenerated``
        (per reason, from :class:`TrackingStore`) is known."""
        left: dict[str, int] | None = None
        if regenerated is not None:
            left = {
                reason: max(0, int(summary.reasons.get(reason, 0)) - int(regenerated.get(reason, 0)))
                for reason in REASONS
            }
        self._write(
            {
                "index_id": summary.index_id,
                "status": status,
                "finished_at": _now(),
                "listed": summary.listed,
                "skipped": summary.skipped,
                "planned": summary.planned,
                "deferred": summary.deferred,
                "generated": summary.generated,
                "stored": summary.stored,
                "failed": summary.failed,
                "not_attempted": summary.not_attempted,
                "input_tokens": summary.input_tokens,
                "output_tokens": summary.output_tokens,
                "reasons": dict(summary.reasons),
                "left_by_reason": left,
                "progress": None,
                "error": (error or summary.aborted or None) and str(error or summary.aborted)[:300],
            }
        )


__all__ = ["STALE_REASONS", "RunRecorder", "TrackingStore"]
