"""HTML for the gist view: the shared pieces (style, escaping, gist cards) and the run tab.

Pure functions over plain dicts (no FastAPI, no store), so they are easy to test. Every piece
of data, including ids, goes through :func:`esc` (text and attributes) or :func:`href` (links
built with ``urlencode``, then escaped): titles may contain quotes, ``<script>`` or emoji. The
catalog page itself is :mod:`.catalog_page`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

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
.gist.with-thumb { display: grid; grid-template-columns: 160px 1fr; gap: 14px; align-items: start; }
.thumb { width: 160px; height: 90px; border-radius: 6px; object-fit: cover; display: block;
  background: var(--line); }
.gist .body { min-width: 0; }
section.overview { margin-bottom: 18px; }
table.indexes { border-collapse: collapse; width: 100%; margin-bottom: 14px; font-size: 13px; }
table.indexes th, table.indexes td { border-bottom: 1px solid var(--line); padding: 6px 8px;
  text-align: left; vertical-align: top; }
table.indexes th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-success { color: #1a7f37; } .status-failed { color: var(--err); } .status-running { color: #9a6700; }
.charts { display: flex; flex-wrap: wrap; gap: 18px 32px; }
.charts .stack { display: flex; flex-direction: column; gap: 12px; }
.small { font-size: 11px; }
figure.chart { margin: 0; }
figure.chart figcaption { font-size: 12px; color: var(--muted); font-weight: 600; margin-bottom: 4px; }
figure.chart svg { max-width: 100%; height: auto; overflow: visible; }
figure.chart .lbl { font-size: 11px; fill: var(--fg); }
figure.chart .num { font-size: 11px; fill: var(--muted); }
figure.chart .axis { stroke: var(--line); }
figure.chart a.bar:hover rect[fill="transparent"] { fill: var(--card); }
.active { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: -4px 0 12px;
  font-size: 12px; }
.exports { display: flex; gap: 12px; font-size: 12px; }
"""


def esc(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def href(path: str, params: Mapping[str, object]) -> str:
    """``path?query`` from the non-empty params, escaped for an ``href`` attribute."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return esc(f"{path}?{query}" if query else path)


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
    """The validated query of the list page.

    ``topic``/``hashtag`` are exact terms (a click on a chart bar); ``after``/``before`` are seek
    cursors (:class:`~airflow_provider_gist.storage.catalog.Cursor` tokens) of the *Older* and
    *Newer* links; ``page`` is the old offset paging, still accepted.
    """

    index_id: str | None = None
    text: str | None = None
    page: int = 1
    page_size: int = 25
    topic: str | None = None
    hashtag: str | None = None
    after: str | None = None
    before: str | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.index_id or self.text or self.topic or self.hashtag)

    def params(self, **changes: object) -> dict[str, object]:
        """The query parameters of this view, with ``changes`` applied (default page size omitted).

        A change of any filter starts again from the first page (no cursor).
        """
        out: dict[str, object] = {
            "index_id": self.index_id,
            "text": self.text,
            "topic": self.topic,
            "hashtag": self.hashtag,
            "page": self.page if self.page != 1 else None,
            "page_size": self.page_size if self.page_size != 25 else None,
            "after": self.after,
            "before": self.before,
        }
        if set(changes) & {"index_id", "text", "topic", "hashtag"}:
            out.update(page=None, after=None, before=None)
        out.update(changes)
        if out.get("page") == 1:
            out["page"] = None  # the first page is the plain URL
        return out


@dataclass(frozen=True)
class CardContext:
    """What a gist card links to besides the gist itself.

    :param base: the view's own URL (``/gists/``), for chip and index links.
    :param filters: the list's filters (``None``: a card outside the list, e.g. the run tab).
    :param ui_base: the Airflow UI's base path, for links to DAG runs (opened in the top frame).
    :param runs: ``{(index_id, video_ref): (dag_id, run_id or None)}``: the run that stored a gist.
    :param thumbnails: whether cards show a thumbnail image (from the view's thumbnail route).
    """

    base: str
    filters: Filters | None = None
    ui_base: str = ""
    runs: Mapping[tuple[str | None, str], tuple[str, str | None]] = field(default_factory=dict)
    thumbnails: bool = False


def page_html(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
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
                chips.append(f'<span class="{css}">{esc(label)}</span>')
            else:
                link = href(base, filters.params(text=label, page=None))
                chips.append(
                    f'<a class="{css}" href="{link}" title="Search for {esc(label)}">{esc(label)}</a>'
                )
        out.append(f'<div class="chips" data-kind="{kind}">{"".join(chips)}</div>')
    return "".join(out)


def run_link(ui_base: str, dag_id: str, run_id: str | None) -> str:
    """A link to a DAG run (or to the DAG's runs) in the Airflow UI, opened outside the frame."""
    path = f"{ui_base}/dags/{quote(dag_id, safe='')}"
    if run_id:
        path += f"/runs/{quote(run_id, safe='')}"
    label = f"{dag_id} / {run_id}" if run_id else f"{dag_id} (one of several runs)"
    return f'<a href="{esc(path)}" target="_top" class="run-link">{esc(label)}</a>'


def _tokens(usage: object) -> str:
    if not isinstance(usage, Mapping):
        return "-"
    out, inp = usage.get("output_tokens"), usage.get("input_tokens")
    parts = [
        f"{inp:,} in" if isinstance(inp, int) else None,
        f"{out:,} out" if isinstance(out, int) else None,
    ]
    return " / ".join(p for p in parts if p) or "-"


def _thumb(gist: Mapping[str, Any], ctx: CardContext) -> str:
    params = {"index_id": gist.get("index_id"), "video_ref": gist.get("video_ref")}
    src = href(f"{ctx.base.rstrip('/')}/thumbnail", params)
    return f'<img class="thumb" src="{src}" alt="" width="160" height="90" loading="lazy">'


def gist_card(gist: Mapping[str, Any], base: str | CardContext, filters: Filters | None = None) -> str:
    ctx = base if isinstance(base, CardContext) else CardContext(base=base, filters=filters)
    base, filters = ctx.base, ctx.filters
    title = gist.get("title")
    heading = esc(title) if title else '<span class="muted">(no title requested)</span>'
    video = gist.get("video_url")
    ref = f"{gist.get('video_ref_type') or 'video'} {gist.get('video_ref')}"
    video_html = (
        f'<span>video <a href="{esc(video)}" rel="noopener noreferrer" target="_blank">{esc(video)}</a>'
        f" (<code>{esc(ref)}</code>)</span>"
        if isinstance(video, str) and video.lower().startswith(("http://", "https://"))
        else f"<span>video <code>{esc(ref)}</code></span>"
    )
    index_id = gist.get("index_id")
    if index_id and filters is not None:
        index_html = f'<a href="{href(base, {"index_id": index_id})}"><code>{esc(index_id)}</code></a>'
    else:
        index_html = f"<code>{esc(index_id or '-')}</code>"
    generated = gist.get("generated_at")
    extra = ""
    if filters is not None:  # the list: who made it and what it cost
        made_by = ctx.runs.get((index_id, str(gist.get("video_ref"))))
        if made_by is not None:
            extra += f"<span>by {run_link(ctx.ui_base, *made_by)}</span>"
        elif gist.get("dag_id"):
            extra += f"<span>by <code>{esc(gist.get('dag_id'))}</code></span>"
        extra += f'<span class="tokens">tokens {esc(_tokens(gist.get("usage")))}</span>'
    body = (
        f'<h2 class="title">{heading}</h2>'
        f"{_chips(gist, base, filters)}"
        f'<div class="meta">{video_html}<span>index {index_html}</span>'
        f"<span>model <code>{esc(gist.get('model'))}</code></span>"
        f'<span>generated <time datetime="{esc(generated)}">{esc(format_time(generated))}</time></span>'
        f"{extra}</div>"
    )
    if ctx.thumbnails:
        return (
            f'<article class="gist with-thumb" data-video-ref="{esc(gist.get("video_ref"))}">'
            f'{_thumb(gist, ctx)}<div class="body">{body}</div></article>'
        )
    return f'<article class="gist" data-video-ref="{esc(gist.get("video_ref"))}">{body}</article>'


def render_run(
    summary: Mapping[str, Any] | None,
    *,
    dag_id: str,
    run_id: str,
    list_url: str,
    error: str | None = None,
) -> str:
    """The DAG run tab: the gists the run summarised, or why there are none."""
    parts = [f"<h1>Gists of run <code>{esc(run_id)}</code></h1>"]
    if error:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    elif summary is None:
        parts.append(
            f'<p class="empty">Run <code>{esc(run_id)}</code> of <code>{esc(dag_id)}</code> has no gist '
            "summary (yet): it appears here when the run's summary task has finished.</p>"
        )
    else:
        gists = summary.get("gists") or []
        stored = summary.get("stored")
        line = f"{len(gists)} gist(s)" + (f", {stored} stored" if isinstance(stored, int) else "")
        parts.append(f'<p class="muted">{esc(line)}.</p>')
        parts.extend(gist_card(g, list_url, None) for g in gists)
    parts.append(f'<p><a href="{esc(list_url)}" target="_top">All stored gists</a></p>')
    return page_html(f"Gists of {run_id}", "".join(parts))


def render_message(title: str, message: str) -> str:
    """A bare page with one message (errors before any data could be read)."""
    return page_html(title, f'<h1>{esc(title)}</h1><p class="error" role="alert">{esc(message)}</p>')
