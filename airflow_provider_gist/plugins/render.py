"""HTML for the gist view: small server-rendered pages, every value escaped.

Pure functions over plain dicts (no FastAPI, no store), so they are easy to test. Every piece
of data, including ids, goes through :func:`_e` (text and attributes) or :func:`_url` (links
built with ``urlencode``, then escaped): titles may contain quotes, ``<script>`` or emoji.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

_STYLE = """
:root { color-scheme: light dark; --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --chip:#eef2ff;
  --chip-fg:#27306b; --tag:#e7f5ec; --tag-fg:#1a5c35; --bg:#ffffff; --card:#f6f8fa; --err:#b42318; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6edf3; --muted:#9198a1; --line:#3d444d;
  --chip:#27306b; --chip-fg:#dbe1ff; --tag:#1a4a2e; --tag-fg:#c9f0d6; --bg:#0d1117; --card:#151b23;
  --err:#ff8a80; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; padding: 16px 20px; }
h1 { font-size: 20px; margin: 0 0 12px; }
form.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; margin-bottom: 14px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
form.filters input { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--bg); color: var(--fg); min-width: 220px; }
button { font: inherit; padding: 5px 14px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--card); color: var(--fg); cursor: pointer; }
a { color: #0969da; }
.gist { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin-bottom: 10px;
  background: var(--card); }
.gist h2 { font-size: 16px; margin: 0 0 6px; overflow-wrap: anywhere; }
.meta { color: var(--muted); font-size: 12px; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.chips { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 0; }
.chip { display: inline-block; padding: 1px 10px; border-radius: 999px; font-size: 12px;
  text-decoration: none; background: var(--chip); color: var(--chip-fg); }
.chip.tag { background: var(--tag); color: var(--tag-fg); }
.empty { color: var(--muted); padding: 20px 0; }
.error { color: var(--err); font-weight: 600; margin-bottom: 12px; }
.pager { display: flex; gap: 16px; align-items: center; margin-top: 12px; }
.muted { color: var(--muted); }
code { font-size: 12px; }
"""


def _e(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _url(path: str, params: Mapping[str, object]) -> str:
    """``path?query`` from the non-empty params, escaped for an ``href`` attribute."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return _e(f"{path}?{query}" if query else path)


def format_time(value: object) -> str:
    """``2026-11-26 15:04 UTC`` from an ISO 8601 stamp; the raw text if it does not parse."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return value
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Filters:
    """The validated query of the list page."""

    index_id: str | None = None
    text: str | None = None
    page: int = 1
    page_size: int = 25

    def params(self, **changes: object) -> dict[str, object]:
        """The query parameters of this view, with ``changes`` applied (default page size omitted)."""
        out: dict[str, object] = {
            "index_id": self.index_id,
            "text": self.text,
            "page": self.page if self.page != 1 else None,
            "page_size": self.page_size if self.page_size != 25 else None,
        }
        out.update(changes)
        if out.get("page") == 1:
            out["page"] = None  # the first page is the plain URL
        return out


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _chips(gist: Mapping[str, Any], base: str, filters: Filters | None) -> str:
    """Topic and hashtag chips; in the list each chip links to a search for itself."""
    out: list[str] = []
    for kind, values, prefix, css in (
        ("topics", gist.get("topics"), "", "chip"),
        ("hashtags", gist.get("hashtags"), "#", "chip tag"),
    ):
        if not values:
            continue
        chips = []
        for value in values:
            label = f"{prefix}{value}"
            if filters is None:
                chips.append(f'<span class="{css}">{_e(label)}</span>')
            else:
                href = _url(base, filters.params(text=label, page=None))
                chips.append(f'<a class="{css}" href="{href}" title="Search for {_e(label)}">{_e(label)}</a>')
        out.append(f'<div class="chips" data-kind="{kind}">{"".join(chips)}</div>')
    return "".join(out)


def _gist_card(gist: Mapping[str, Any], base: str, filters: Filters | None) -> str:
    title = gist.get("title")
    heading = _e(title) if title else '<span class="muted">(no title requested)</span>'
    video = gist.get("video_url")
    ref = f"{gist.get('video_ref_type') or 'video'} {gist.get('video_ref')}"
    video_html = (
        f'<span>video <a href="{_e(video)}" rel="noopener noreferrer" target="_blank">{_e(video)}</a>'
        f" (<code>{_e(ref)}</code>)</span>"
        if isinstance(video, str) and video.lower().startswith(("http://", "https://"))
        else f"<span>video <code>{_e(ref)}</code></span>"
    )
    index_id = gist.get("index_id")
    if index_id and filters is not None:
        index_html = f'<a href="{_url(base, {"index_id": index_id})}"><code>{_e(index_id)}</code></a>'
    else:
        index_html = f"<code>{_e(index_id or '-')}</code>"
    generated = gist.get("generated_at")
    return (
        f'<article class="gist" data-video-ref="{_e(gist.get("video_ref"))}">'
        f'<h2 class="title">{heading}</h2>'
        f"{_chips(gist, base, filters)}"
        f'<div class="meta">{video_html}<span>index {index_html}</span>'
        f"<span>model <code>{_e(gist.get('model'))}</code></span>"
        f'<span>generated <time datetime="{_e(generated)}">{_e(format_time(generated))}</time></span></div>'
        "</article>"
    )


def render_list(
    gists: Sequence[Mapping[str, Any]],
    filters: Filters,
    *,
    base: str,
    has_more: bool,
    error: str | None = None,
) -> str:
    """The list page: filter form, gist cards (newest first), pager and a link to the JSON."""
    form = (
        f'<form class="filters" method="get" action="{_e(base)}">'
        f'<label>Index id<input name="index_id" value="{_e(filters.index_id)}" '
        'placeholder="all indexes" autocomplete="off"></label>'
        f'<label>Topic, hashtag or title<input name="text" value="{_e(filters.text)}" '
        'placeholder="e.g. fishing or #harbour" autocomplete="off"></label>'
        '<button type="submit">Filter</button>'
        f'<a href="{_e(base)}">Clear</a></form>'
    )
    parts = ["<h1>Video gists</h1>", form]
    if error:
        parts.append(f'<p class="error" role="alert">{_e(error)}</p>')
    elif not gists:
        what = "match these filters" if (filters.index_id or filters.text) else "are stored yet"
        parts.append(f'<p class="empty">No gists {what}.</p>')
    parts.extend(_gist_card(g, base, filters) for g in gists)
    pager = [f'<span class="muted">Page {filters.page}</span>']
    if filters.page > 1:
        pager.insert(
            0, f'<a rel="prev" href="{_url(base, filters.params(page=filters.page - 1))}">← Newer</a>'
        )
    if has_more:
        pager.append(f'<a rel="next" href="{_url(base, filters.params(page=filters.page + 1))}">Older →</a>')
    json_href = _url(f"{base.rstrip('/')}/api/gists", filters.params())
    pager.append(f'<a class="muted" href="{json_href}">JSON</a>')
    parts.append(f'<nav class="pager">{"".join(pager)}</nav>')
    return _page("Video gists", "".join(parts))


def render_run(
    summary: Mapping[str, Any] | None,
    *,
    dag_id: str,
    run_id: str,
    list_url: str,
    error: str | None = None,
) -> str:
    """The DAG run tab: the gists the run summarised, or why there are none."""
    parts = [f"<h1>Gists of run <code>{_e(run_id)}</code></h1>"]
    if error:
        parts.append(f'<p class="error" role="alert">{_e(error)}</p>')
    elif summary is None:
        parts.append(
            f'<p class="empty">Run <code>{_e(run_id)}</code> of <code>{_e(dag_id)}</code> has no gist '
            "summary (yet): it appears here when the run's summary task has finished.</p>"
        )
    else:
        gists = summary.get("gists") or []
        stored = summary.get("stored")
        line = f"{len(gists)} gist(s)" + (f", {stored} stored" if isinstance(stored, int) else "")
        parts.append(f'<p class="muted">{_e(line)}.</p>')
        parts.extend(_gist_card(g, list_url, None) for g in gists)
    parts.append(f'<p><a href="{_e(list_url)}" target="_top">All stored gists</a></p>')
    return _page(f"Gists of {run_id}", "".join(parts))


def render_message(title: str, message: str) -> str:
    """A bare page with one message (errors before any data could be read)."""
    return _page(title, f'<h1>{_e(title)}</h1><p class="error" role="alert">{_e(message)}</p>')
