"""Export of the gist list as CSV or JSON: streamed, so memory stays constant at any size.

Both walk the same query as the list (filters, the user's visible DAGs) in seek batches
(:meth:`~airflow_provider_gist.storage.catalog.CatalogReader.iter_rows`) and yield text as they
go. CSV cells are safe to open in a spreadsheet: a cell that starts with ``=``, ``+``, ``-``,
``@`` (or a tab or carriage return, which some spreadsheets skip before reading a formula) gets
a leading ``'``, so a title like ``=HYPERLINK(...)`` stays text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: CSV columns, in order; ``topics``/``hashtags``/``types`` are joined (``; ``, `` ``, ``,``).
CSV_COLUMNS: tuple[str, ...] = (
    "index_id",
    "video_ref",
    "video_ref_type",
    "title",
    "topics",
    "hashtags",
    "model",
    "types",
    "prompt_version",
    "generated_at",
    "source_updated_at",
    "stored_at",
    "dag_id",
    "input_tokens",
    "output_tokens",
    "generation_id",
)
#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Rows written into the CSV buffer before it is handed to the server (a few kilobytes a chunk).
_ROWS_PER_CHUNK = 200


def safe_cell(value: object) -> str:
    """A CSV cell's text, neutralised if a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_row(gist: Mapping[str, Any]) -> list[str]:
    """One gist as CSV cells in :data:`CSV_COLUMNS` order (already neutralised)."""
    usage = gist.get("usage") or {}
    values: dict[str, object] = {
        **gist,
        "topics": "; ".join(gist.get("topics") or ()),
        "hashtags": " ".join("#" + tag for tag in gist.get("hashtags") or ()),
        "types": ",".join(gist.get("types") or ()),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "generation_id": gist.get("id"),
    }
    return [safe_cell(values.get(column)) for column in CSV_COLUMNS]


def stream_csv(gists: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The header, then the rows, in chunks of :data:`_ROWS_PER_CHUNK` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    pending = 0
    for gist in gists:
        writer.writerow(csv_row(gist))
        pending += 1
        if pending >= _ROWS_PER_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def stream_json(gists: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """A JSON array of the stored gist dicts (as ``/api/gists`` gives them), one item a chunk."""
    yield "["
    first = True
    for gist in gists:
        yield ("" if first else ",") + "\n" + json.dumps(gist, ensure_ascii=False, separators=(",", ":"))
        first = False
    yield "\n]\n"
