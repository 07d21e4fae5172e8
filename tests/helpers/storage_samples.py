"""Gist dicts for the storage tests (the shape of ``Gist.to_dict()``), and strings that bite."""

from __future__ import annotations

import copy
from typing import Any

#: Strings that break naive SQL, JSON, file or log handling. PostgreSQL text cannot hold NUL,
#: so it is left out (the gist model strips control characters before anything is stored).
NASTY = [
    'It\'s a "quoted" title',
    "'; DROP TABLE video_gists; --",
    "Robert'); DELETE FROM video_gists WHERE ('1'='1",
    "line one\nline two\r\nthree\ttabbed",
    "emoji 🎣🌅 family 👨‍👩‍👧‍👦 flag 🇳🇴 and é̃ combining",
    "percent %s %(name)s %% ? :1 $1 {0} {{ jinja }}",
    "LIKE wildcards 100% _under_ back\\slash \\n not a newline",
    "bidi \u202eevil\u202c zero\u200bwidth",
    "   padded   ",
]


def make_gist(
    video_ref: str = "6298d673f1090f1100476d4c",
    index_id: str | None = "65ef0a1b2c3d4e5f60718293",
    **over: Any,
) -> dict[str, Any]:
    """A valid gist dict with all three parts; keyword overrides replace top-level keys."""
    gist: dict[str, Any] = {
        "id": f"gen-{video_ref}",
        "video_ref": video_ref,
        "video_ref_type": "asset_id",
        "index_id": index_id,
        "model": "pegasus1.2",
        "types": ["title", "topic", "hashtag"],
        "prompt_version": "gist-v1",
        "title": "Sunrise Harbour Fishing",
        "topics": ["Fishing", "Boating"],
        "hashtags": ["Fishing", "HarbourLife"],
        "usage": {"output_tokens": 87, "input_tokens": 9021},
        "generated_at": "2026-11-26T15:40:00+00:00",
        "source_updated_at": "2026-11-20T10:00:00Z",
    }
    gist.update(copy.deepcopy(over))
    return gist


def stored(gist: dict[str, Any]) -> dict[str, Any]:
    """``gist`` as a store gives it back: without ``stored_at`` and ``dag_id`` (compared separately)."""
    return {k: v for k, v in gist.items() if k not in ("stored_at", "dag_id")}


def logs(caplog: Any, capfd: Any) -> str:
    """Everything logged so far: stdlib records (caplog) and Airflow's structlog output (stdout/err)."""
    out, err = capfd.readouterr()
    return caplog.text + out + err
