"""What the catalog page reads: a page of the list, the overview, and the run behind each gist.

Between the routes (:mod:`.app`) and the queries (:mod:`airflow_provider_gist.storage.catalog`,
:mod:`airflow_provider_gist.storage.runs`): it turns the page's validated filters and the
user's visible DAGs into queries, and reads the metadata DB for the DAG runs that stored the
gists on a page. No HTML here (:mod:`.catalog_page`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from airflow_provider_gist.plugins.render import Filters
from airflow_provider_gist.storage.catalog import CatalogFilter, CatalogReader, Cursor, DayUsage, Page
from airflow_provider_gist.storage.runs import latest_runs, stale_counts

#: Indexes listed in the overview (the biggest); the rest are counted.
MAX_INDEXES = 20
#: Bars per term chart.
TOP_TERMS = 10
#: Days in the usage charts (the latest that have gists).
USAGE_DAYS = 30
#: ``stored_at`` has whole seconds: the moment it names lies within this much after it.
_STAMP_SLACK = timedelta(seconds=1)


@dataclass
class IndexStats:
    """One index in the overview: its gists, and what its latest refresh run said."""

    index_id: str | None
    gists: int
    last_run: dict[str, Any] | None = None

    @property
    def stale(self) -> dict[str, int] | None:
        """Gists left stale by the latest refresh, by reason (``None``: not known)."""
        return stale_counts(self.last_run) if self.last_run else None

    @property
    def missing(self) -> int | None:
        """Videos the latest refresh found without a gist and left so (failed or deferred)."""
        left = (self.last_run or {}).get("left_by_reason")
        return int(left.get("new") or 0) if isinstance(left, Mapping) else None


@dataclass
class Overview:
    """The top of the catalog page."""

    indexes: list[IndexStats] = field(default_factory=list)
    more_indexes: int = 0
    topics: list[tuple[str, int]] = field(default_factory=list)
    hashtags: list[tuple[str, int]] = field(default_factory=list)
    usage: list[DayUsage] = field(default_factory=list)


def catalog_filter(filters: Filters, dag_ids: Collection[str | None] | None) -> CatalogFilter:
    """The store query of the page's filters, limited to the DAGs the user may read."""
    return CatalogFilter.make(
        index_id=filters.index_id,
        text=filters.text,
        topic=filters.topic,
        hashtag=filters.hashtag,
        dag_ids=dag_ids,
    )


def read_list(store: Any, filters: Filters, dag_ids: Collection[str | None] | None) -> Page:
    """One page of the list: after/before a cursor (seek), or by the old ``page`` number."""
    reader = CatalogReader(store)
    flt = catalog_filter(filters, dag_ids)
    after = Cursor.decode(filters.after, "after") if filters.after else None
    before = Cursor.decode(filters.before, "before") if filters.before else None
    offset = 0 if (after or before) else (filters.page - 1) * filters.page_size
    return reader.page(flt, limit=filters.page_size, after=after, before=before, offset=offset)


def read_overview(store: Any, filters: Filters, dag_ids: Collection[str | None] | None) -> Overview:
    """Gists per index with each index's latest refresh run, top terms and usage per day.

    The index table counts all of an index's gists (only the index filter applies); the charts
    follow every filter, so they describe what the list shows.
    """
    reader = CatalogReader(store)
    flt = catalog_filter(filters, dag_ids)
    counts = reader.index_counts(CatalogFilter.make(index_id=filters.index_id, dag_ids=dag_ids))
    runs = latest_runs(store, dag_ids=dag_ids)
    if filters.index_id is not None:
        runs = {k: v for k, v in runs.items() if k == filters.index_id}
    stats = [IndexStats(index_id, n, runs.pop(index_id, None)) for index_id, n in counts]
    # a refreshed index with no gist yet (all failed, or all deferred) is worth a row too
    stats += [IndexStats(index_id, 0, run) for index_id, run in runs.items()]
    return Overview(
        indexes=stats[:MAX_INDEXES],
        more_indexes=max(0, len(stats) - MAX_INDEXES),
        topics=reader.top_terms(flt, "topic", limit=TOP_TERMS),
        hashtags=reader.top_terms(flt, "hashtag", limit=TOP_TERMS),
        usage=continuous_days(reader.usage_per_day(flt, days=USAGE_DAYS), USAGE_DAYS),
    )


def continuous_days(days: list[DayUsage], span: int) -> list[DayUsage]:
    """``days`` (oldest first) as an unbroken run of at most ``span`` days ending on the last
    one, days without gists as zeros: a chart's columns are then evenly spaced in time."""
    if not days:
        return []
    try:
        last = date.fromisoformat(days[-1].day)
        first = max(date.fromisoformat(days[0].day), last - timedelta(days=span - 1))
    except ValueError:
        return days  # stamps this provider did not write: shown as they are
    known = {d.day: d for d in days}
    out = []
    while first <= last:
        day = first.isoformat()
        out.append(known.get(day) or DayUsage(day, 0, 0, 0))
        first += timedelta(days=1)
    return out


def _stamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def runs_of(
    session: Any, gists: Iterable[Mapping[str, Any]]
) -> dict[tuple[str | None, str], tuple[str, str | None]]:
    """``{(index_id, video_ref): (dag_id, run_id)}``: the DAG run that made each gist.

    A stored gist names its DAG, when it was generated (``generated_at``, to the microsecond)
    and when it was stored (``stored_at``, to the second); the run is the one of that DAG that
    was running when the gist was generated, else the only one running when it was stored (one
    metadata query per page). A gist no run explains (its runs deleted, or stored outside a
    run) is left out; when several runs remain, ``run_id`` is ``None`` (the link goes to the DAG).
    """
    from airflow.models.dagrun import DagRun
    from sqlalchemy import or_, select

    wanted: list[tuple[tuple[str | None, str], str, datetime, datetime | None]] = []
    for gist in gists:
        dag_id, stored = gist.get("dag_id"), _stamp(gist.get("stored_at"))
        if isinstance(dag_id, str) and dag_id and stored is not None:
            key = (gist.get("index_id"), str(gist["video_ref"]))
            wanted.append((key, dag_id, stored, _stamp(gist.get("generated_at"))))
    if not wanted:
        return {}
    stamps = [w[2] for w in wanted] + [w[3] for w in wanted if w[3] is not None]
    low, high = min(stamps), max(stamps) + _STAMP_SLACK
    rows = session.execute(
        select(DagRun.dag_id, DagRun.run_id, DagRun.start_date, DagRun.end_date)
        .where(
            DagRun.dag_id.in_(sorted({w[1] for w in wanted})),
            DagRun.start_date.is_not(None),
            DagRun.start_date <= high,
            or_(DagRun.end_date.is_(None), DagRun.end_date >= low),
        )
        .limit(5000)
    ).all()
    found: dict[tuple[str | None, str], tuple[str, str | None]] = {}
    for key, dag_id, stored, generated in wanted:
        runs = [row for row in rows if row.dag_id == dag_id]
        hits = [r.run_id for r in runs if generated is not None and _during(r, generated, generated)]
        if len(hits) != 1:
            # stored_at has whole seconds: the store happened in [stored, stored + 1s)
            hits = [r.run_id for r in runs if _during(r, stored, stored + _STAMP_SLACK)]
        if hits:
            found[key] = (dag_id, hits[0] if len(hits) == 1 else None)
    return found


def _during(run: Any, first: datetime, last: datetime) -> bool:
    """Whether ``run`` was going at some moment of ``[first, last]``."""
    return bool(run.start_date <= last and (run.end_date is None or run.end_date >= first))
