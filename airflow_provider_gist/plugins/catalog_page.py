"""The catalog page of the gist view: the overview (indexes, charts), the filters and the list.

Pure rendering over what :mod:`.catalog` read; every value goes through
:func:`~.render.esc` or :func:`~.render.href`. The overview is drawn on a list's first page
only: paging deeper reads one page of rows and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_gist.plugins.catalog import IndexStats, Overview
from airflow_provider_gist.plugins.charts import TAG_FILL, bar_chart, day_chart
from airflow_provider_gist.plugins.render import (
    CardContext,
    Filters,
    esc,
    format_time,
    gist_card,
    href,
    page_html,
    run_link,
)
from airflow_provider_gist.storage.catalog import Page

_REASON_LABELS = {
    "source_changed": "source changed",
    "types_changed": "other types",
    "model_changed": "other model",
    "prompt_changed": "other prompt",
}


def _num(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _stale_cell(stats: IndexStats) -> str:
    stale = stats.stale
    if stale is None:
        why = "no finished refresh run" if not stats.last_run else "this run did not count them"
        return f'<td class="num muted" title="unknown: {esc(why)}">-</td>'
    detail = ", ".join(
        f"{label} {stale[reason]:,}" for reason, label in _REASON_LABELS.items() if stale[reason]
    )
    total = sum(stale.values())
    why = f'<br><span class="muted small">{esc(detail)}</span>' if detail else ""
    return f'<td class="num" data-stale="{total}">{total:,}{why}</td>'


def _eta(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return ""
    return f", ETA {seconds / 60:.0f}m" if seconds >= 90 else f", ETA {seconds:.0f}s"


def _did(run: Mapping[str, Any]) -> str:
    if run.get("status") == "running":
        progress = run.get("progress") or {}
        return (
            f"running: {_num(progress.get('done'))}/{_num(progress.get('total'))} done, "
            f"{_num(progress.get('failed'))} failed{_eta(progress.get('eta_seconds'))}"
        )
    parts = [
        f"planned {_num(run.get('planned'))}",
        f"generated {_num(run.get('generated'))}",
        f"failed {_num(run.get('failed'))}",
        f"skipped {_num(run.get('skipped'))}",
    ]
    if run.get("deferred"):
        parts.append(f"deferred {_num(run.get('deferred'))}")
    text = ", ".join(parts)
    if run.get("error"):
        text += f" ({run['error']})"
    return text


def _index_row(stats: IndexStats, base: str, ui_base: str) -> str:
    index = (
        f'<a href="{href(base, {"index_id": stats.index_id})}"><code>{esc(stats.index_id)}</code></a>'
        if stats.index_id
        else '<span class="muted">(no index)</span>'
    )
    run = stats.last_run
    if run is None:
        when = did = '<span class="muted">no refresh run</span>'
    else:
        status = str(run.get("status"))
        stamp = run.get("finished_at") or run.get("updated_at") or run.get("started_at")
        when = (
            f'<time datetime="{esc(stamp)}">{esc(format_time(stamp))}</time> '
            f'<span class="status-{esc(status)}">{esc(status)}</span><br>'
            f"{run_link(ui_base, str(run['dag_id']), str(run['run_id']))}"
        )
        did = esc(_did(run))
    missing = stats.missing
    return (
        f'<tr data-index="{esc(stats.index_id or "")}"><td>{index}</td>'
        f'<td class="num" data-gists="{stats.gists}">{stats.gists:,}</td>{_stale_cell(stats)}'
        f'<td class="num">{"-" if missing is None else f"{missing:,}"}</td>'
        f'<td class="last-run">{when}</td><td class="did">{did}</td></tr>'
    )


def _overview(overview: Overview, filters: Filters, base: str, ui_base: str) -> str:
    rows = "".join(_index_row(stats, base, ui_base) for stats in overview.indexes)
    if not rows:
        rows = '<tr><td colspan="6" class="muted">No index has gists yet.</td></tr>'
    more = (
        f'<p class="muted">… and {overview.more_indexes:,} more indexes (filter by index id).</p>'
        if overview.more_indexes
        else ""
    )
    table = (
        '<table class="indexes"><thead><tr><th>Index</th><th class="num">Gists</th>'
        '<th class="num" title="stored gists the latest refresh found out of date and left so">Stale</th>'
        '<th class="num" title="videos the latest refresh found without a gist and left so">Missing</th>'
        "<th>Last refresh</th><th>What it did</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}"
    )
    scope = "this filter" if filters.filtered else "all gists"
    topics = bar_chart(
        [(term, n, href(base, filters.params(topic=term))) for term, n in overview.topics],
        title=f"Top topics ({scope})",
        kind="topic",
    )
    hashtags = bar_chart(
        [(f"#{term}", n, href(base, filters.params(hashtag=term))) for term, n in overview.hashtags],
        title=f"Top hashtags ({scope})",
        kind="hashtag",
        fill=TAG_FILL,
    )
    calls = day_chart(
        [(d.day, d.calls) for d in overview.usage], title="Analysis calls per day", kind="calls", unit="calls"
    )
    tokens = day_chart(
        [(d.day, d.input_tokens + d.output_tokens) for d in overview.usage],
        title="Tokens per day (input + output)",
        kind="tokens",
        unit="tokens",
    )
    charts = f'<div class="charts">{topics}{hashtags}<div class="stack">{calls}{tokens}</div></div>'
    return f'<section class="overview">{table}{charts}</section>'


def _form(filters: Filters, base: str) -> str:
    # a chart's term and the page size survive a new search; the cursor does not (a new list)
    kept = {"topic": filters.topic, "hashtag": filters.hashtag}
    kept["page_size"] = str(filters.page_size) if filters.page_size != 25 else None
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{esc(value)}">' for name, value in kept.items() if value
    )
    return (
        f'<form class="filters" method="get" action="{esc(base)}">'
        f'<label>Index id<input name="index_id" value="{esc(filters.index_id)}" '
        'placeholder="all indexes" autocomplete="off"></label>'
        f'<label>Topic, hashtag or title<input name="text" value="{esc(filters.text)}" '
        'placeholder="e.g. fishing or #harbour" autocomplete="off"></label>'
        f'{hidden}<button type="submit">Filter</button>'
        f'<a href="{esc(base)}">Clear</a></form>'
    )


def _active_terms(filters: Filters, base: str) -> str:
    chips = []
    if filters.topic:
        chips.append(
            f'<span class="chip" data-active="topic">topic: {esc(filters.topic)}</span>'
            f'<a href="{href(base, filters.params(topic=None))}" title="Remove this filter">&times;</a>'
        )
    if filters.hashtag:
        chips.append(
            f'<span class="chip tag" data-active="hashtag">#{esc(filters.hashtag)}</span>'
            f'<a href="{href(base, filters.params(hashtag=None))}" title="Remove this filter">&times;</a>'
        )
    return f'<div class="active">Filtered by {"".join(chips)}</div>' if chips else ""


def _pager(page: Page, filters: Filters, base: str) -> str:
    parts = []
    if page.newer is not None:
        newer = filters.params(page=None, after=None, before=page.newer.encode())
        parts.append(f'<a rel="prev" href="{href(base, newer)}">← Newer</a>')
    if filters.after or filters.before or filters.page > 1:
        parts.append(
            f'<a href="{href(base, filters.params(page=None, after=None, before=None))}">First page</a>'
        )
    if page.older is not None:
        older = filters.params(page=None, before=None, after=page.older.encode())
        parts.append(f'<a rel="next" href="{href(base, older)}">Older →</a>')
    json_href = href(f"{base.rstrip('/')}/api/gists", filters.params())
    parts.append(f'<a class="muted" href="{json_href}">JSON</a>')
    return f'<nav class="pager">{"".join(parts)}</nav>'


def _exports(filters: Filters, base: str) -> str:
    params = filters.params(page=None, page_size=None, after=None, before=None)
    root = base.rstrip("/")
    return (
        '<div class="exports">Export this filter: '
        f'<a href="{href(f"{root}/export.csv", params)}" download>CSV</a>'
        f'<a href="{href(f"{root}/export.json", params)}" download>JSON</a></div>'
    )


def render_catalog(
    page: Page,
    filters: Filters,
    *,
    base: str,
    overview: Overview | None = None,
    ui_base: str = "",
    runs: Mapping[tuple[str | None, str], tuple[str, str | None]] | None = None,
    thumbnails: bool = False,
    error: str | None = None,
) -> str:
    """The whole page: overview (first page only), filters, export links, cards, pager."""
    parts = ["<h1>Video gists</h1>"]
    if overview is not None:
        parts.append(_overview(overview, filters, base, ui_base))
    parts += [_form(filters, base), _active_terms(filters, base)]
    gists: Sequence[Mapping[str, Any]] = page.gists
    if error:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    elif not gists:
        what = "match these filters" if filters.filtered else "are stored yet"
        parts.append(f'<p class="empty">No gists {what}.</p>')
    else:
        parts.append(_exports(filters, base))
    ctx = CardContext(base=base, filters=filters, ui_base=ui_base, runs=runs or {}, thumbnails=thumbnails)
    parts.extend(gist_card(g, ctx) for g in gists)
    parts.append(_pager(page, filters, base))
    return page_html("Video gists", "".join(parts))
