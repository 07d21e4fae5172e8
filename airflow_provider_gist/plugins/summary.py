"""The run summary of gist DAGs: what a person looking at a run wants to read.

A DAG's last task calls :func:`build_summary` and pushes the result to XCom under
:data:`SUMMARY_XCOM_KEY`; the gist view's *Gists* tab on the DAG run page finds it there, and
:func:`format_summary` gives the same content as plain text for the task log.

Pure and cheap (standard library only): importable from DAG files, tasks and the web app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: XCom key of the run summary. Any DAG that pushes a summary under this key gets the tab.
SUMMARY_XCOM_KEY = "gist_summary"

#: The gist fields copied into the summary (no usage or prompt details: it is for reading).
_FIELDS = ("video_ref", "video_ref_type", "index_id", "model", "title", "topics", "hashtags", "generated_at")


def build_summary(
    gists: Iterable[Mapping[str, Any] | None],
    *,
    video_urls: Mapping[str, str] | None = None,
    stored: int | None = None,
) -> dict[str, Any]:
    """A small JSON-safe summary of ``gists`` (``None`` entries, from skipped tasks, are dropped).

    :param gists: gist dicts as :class:`~airflow_provider_gist.operators.gist.GenerateGistOperator`
        returns them.
    :param video_urls: ``{asset_id: public video URL}`` for videos ingested from a URL (shown
        instead of the bare asset id); URLs must already be stripped of credentials.
    :param stored: how many records the store task wrote, if known.
    """
    urls = dict(video_urls or {})
    items: list[dict[str, Any]] = []
    for gist in gists:
        if not gist:
            continue
        item = {key: gist.get(key) for key in _FIELDS}
        item["video_url"] = urls.get(str(gist.get("video_ref")))
        items.append(item)
    return {"count": len(items), "stored": stored, "gists": items}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as plain text, one block per video (for task logs)."""
    gists = summary.get("gists") or []
    if not gists:
        return "No gist was generated in this run."
    lines = [f"{len(gists)} gist(s):"]
    for gist in gists:
        video = gist.get("video_url") or f"{gist.get('video_ref_type')} {gist.get('video_ref')}"
        lines.append(f"- {video} (index {gist.get('index_id') or '-'}, model {gist.get('model')})")
        if gist.get("title") is not None:
            lines.append(f"    title:    {gist['title']}")
        if gist.get("topics") is not None:
            lines.append(f"    topics:   {', '.join(gist['topics']) or '-'}")
        if gist.get("hashtags") is not None:
            lines.append(f"    hashtags: {' '.join('#' + tag for tag in gist['hashtags']) or '-'}")
    return "\n".join(lines)
