"""Inline SVG charts for the gist view: no script, no external asset, every label escaped.

Two shapes: :func:`bar_chart` (horizontal bars with counts, each bar a link: the top topics and
hashtags, a click filters the list) and :func:`day_chart` (one column per day: analysis calls
or tokens). Pure functions of plain values, drawn at a fixed size and scaled by the browser.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

#: Colours that read on light and dark backgrounds.
BAR_FILL = "#4f6bed"
TAG_FILL = "#2f9e5b"
DAY_FILL = "#8250df"
_LABEL_CHARS = 22


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _empty(title: str, kind: str) -> str:
    return (
        f'<figure class="chart" data-chart="{_e(kind)}"><figcaption>{_e(title)}</figcaption>'
        '<p class="muted">No data.</p></figure>'
    )


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"


def _count(value: int) -> str:
    if value >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,}"


def bar_chart(
    items: Sequence[tuple[str, int, str]],
    *,
    title: str,
    kind: str,
    fill: str = BAR_FILL,
    width: int = 340,
) -> str:
    """Horizontal bars, biggest first: ``items`` is ``(label, count, href)`` (href already escaped).

    Each bar, its label and its count are one link, so a click anywhere on the row follows it;
    the link's ``data-term`` and ``data-kind`` name what it filters by.
    """
    if not items:
        return _empty(title, kind)
    row, label_w, count_w = 22, 150, 54
    bar_w = width - label_w - count_w
    top = max(count for _, count, _ in items) or 1
    height = row * len(items) + 4
    rows = []
    for n, (label, count, href) in enumerate(items):
        y = 2 + n * row
        length = max(2.0, bar_w * count / top)
        rows.append(
            f'<a href="{href}" target="_self" class="bar" data-kind="{_e(kind)}" data-term="{_e(label)}">'
            f"<title>{_e(label)}: {count:,}</title>"
            f'<rect x="0" y="{y}" width="{width}" height="{row - 2}" fill="transparent"/>'
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="lbl">{_e(_short(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" rx="3" fill="{fill}"/>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + 14}" class="num">{_count(count)}</text></a>'
        )
    return (
        f'<figure class="chart" data-chart="{_e(kind)}"><figcaption>{_e(title)}</figcaption>'
        f'<svg role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg></figure>'
    )


def day_chart(
    days: Sequence[tuple[str, int]],
    *,
    title: str,
    kind: str,
    unit: str,
    fill: str = DAY_FILL,
    width: int = 320,
    height: int = 96,
) -> str:
    """One column per day (``(YYYY-MM-DD, value)``, oldest first), the first and last day named
    under the axis and the highest value above it; each column has a tooltip."""
    if not days:
        return _empty(title, kind)
    plot_h, axis = height - 30, height - 18
    top = max(value for _, value in days) or 1
    step = width / max(len(days), 1)
    bar = max(2.0, min(28.0, step * 0.7))
    cols = []
    for n, (day, value) in enumerate(days):
        h = max(1.0, plot_h * value / top) if value else 0.0
        x = n * step + (step - bar) / 2
        cols.append(
            f'<g class="day" data-day="{_e(day)}" data-value="{value}">'
            f"<title>{_e(day)}: {value:,} {_e(unit)}</title>"
            f'<rect x="{x:.1f}" y="{axis - h:.1f}" width="{bar:.1f}" height="{h:.1f}" rx="2" '
            f'fill="{fill}"/></g>'
        )
    first, last = days[0][0], days[-1][0]
    labels = f'<text x="0" y="{height - 4}" class="lbl">{_e(first)}</text>'
    if last != first:
        labels += f'<text x="{width}" y="{height - 4}" text-anchor="end" class="lbl">{_e(last)}</text>'
    return (
        f'<figure class="chart" data-chart="{_e(kind)}"><figcaption>{_e(title)}</figcaption>'
        f'<svg role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="0" y="10" class="num">{_e(unit)}: up to {_count(top)} a day</text>'
        f'<line x1="0" y1="{axis}" x2="{width}" y2="{axis}" class="axis"/>'
        f"{''.join(cols)}{labels}</svg></figure>"
    )
