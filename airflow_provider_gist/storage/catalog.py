"""Read queries of the gist catalog over a SQL store: seek paging, export, counts, top terms, usage.

What the gist view asks a :class:`~airflow_provider_gist.storage.sql.SqlGistStore`, written as
queries that stay cheap however many gists are stored:

* **Paging seeks, never skips.** A page is "the next ``limit`` rows after this one" in the list
  order ``generated_at DESC, index_id, video_ref`` (a :class:`Cursor` names the row), so the
  database walks the ``generated_at`` index from that row instead of reading and dropping
  ``OFFSET`` rows: page 4,000 costs what page 1 costs.
* **Export streams** the same order in seek batches (:meth:`CatalogReader.iter_rows`), so memory
  stays constant at any size.
* **Aggregates** (gists per index, top topics/hashtags, usage per day) are ``GROUP BY`` queries
  in the database; the JSON arrays of topics and hashtags are unpacked with the database's own
  JSON functions (SQLite ``json_each``, PostgreSQL ``jsonb_array_elements_text``).

Every value is a bound parameter; only the (validated) table name is put into SQL text. Read
only: nothing here creates or changes a table.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.storage.base import NO_INDEX, READ_COLUMNS, dumps, row_to_gist

if TYPE_CHECKING:
    from airflow_provider_gist.storage.sql import SqlGistStore

#: The term kinds a chart counts: the stored column and how a term is shown.
TERM_KINDS = {"topic": "topics", "hashtag": "hashtags"}
#: Most characters of one cursor field (ids are at most 64, stamps about 32): refuses junk early.
_MAX_CURSOR_FIELD = 300
#: Rows per query while exporting: big enough to amortise a round trip, small enough to stream.
EXPORT_BATCH = 500
#: Stores (by ``location``) whose table has the catalog indexes.
_INDEXED: set[str] = set()


@dataclass(frozen=True)
class Cursor:
    """One row's place in the list order (``generated_at DESC, index_id, video_ref``).

    ``index_id`` is the stored form (``""`` for "no index"). :meth:`encode` makes the opaque
    token of the ``after``/``before`` query parameters.
    """

    generated_at: str
    index_id: str
    video_ref: str

    @classmethod
    def of(cls, gist: dict[str, Any]) -> Cursor:
        """The cursor of a gist dict as :func:`~.base.row_to_gist` gives it."""
        index_id = gist.get("index_id")
        return cls(
            str(gist["generated_at"]), NO_INDEX if index_id is None else str(index_id), gist["video_ref"]
        )

    def encode(self) -> str:
        raw = json.dumps([self.generated_at, self.index_id, self.video_ref], ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, name: str = "cursor") -> Cursor:
        """The cursor of a token from :meth:`encode`; :class:`GistValidationError` naming ``name``."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            value = json.loads(raw.decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise GistValidationError(f"{name} is not a cursor of this view") from None
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(part, str) and len(part) <= _MAX_CURSOR_FIELD for part in value)
            or not value[0]
            or not value[2]
        ):
            raise GistValidationError(f"{name} is not a cursor of this view")
        return cls(*value)


@dataclass(frozen=True)
class CatalogFilter:
    """Which gists a query covers.

    :param index_id: one index (``None``: all).
    :param text: case-insensitive substring of the title, a topic or a hashtag (``#x``: hashtags only).
    :param topic: gists with exactly this topic.
    :param hashtag: gists with exactly this hashtag (without ``#``).
    :param dag_ids: only gists stored by these DAGs (``None`` in it: gists with no DAG);
        ``None``: every gist.
    """

    index_id: str | None = None
    text: str | None = None
    topic: str | None = None
    hashtag: str | None = None
    dag_ids: frozenset[str | None] | None = None

    @classmethod
    def make(cls, *, dag_ids: Collection[str | None] | None = None, **terms: Any) -> CatalogFilter:
        return cls(dag_ids=None if dag_ids is None else frozenset(dag_ids), **terms)


@dataclass
class Page:
    """One page of gists and the cursors around it (``None``: no page that way)."""

    gists: list[dict[str, Any]] = field(default_factory=list)
    older: Cursor | None = None
    newer: Cursor | None = None


@dataclass(frozen=True)
class DayUsage:
    """Analysis calls and tokens of the stored gists generated on one UTC day (``YYYY-MM-DD``)."""

    day: str
    calls: int
    input_tokens: int
    output_tokens: int


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class CatalogReader:
    """The catalog queries over one :class:`SqlGistStore` (its hook, table and known columns).

    Calls ``store.ensure_table()`` first, so a read-only store can refuse a missing table the
    way it does for its own reads.
    """

    def __init__(self, store: SqlGistStore) -> None:
        self.store = store

    # -- building blocks --------------------------------------------------------------------

    @property
    def _ph(self) -> str:
        return str(self.store.hook.placeholder)

    @property
    def _dialect(self) -> str:
        return str(self.store.hook.dialect_name)

    def _missing(self, column: str) -> bool:
        return column in getattr(self.store, "_missing_columns", frozenset())

    def _select_columns(self) -> str:
        return ", ".join(f"NULL AS {c}" if self._missing(c) else c for c in READ_COLUMNS)

    def _has_term(self, column: str, term: str) -> tuple[str, list[Any]]:
        """SQL true when the JSON array in ``column`` holds ``term`` exactly, and its parameters.

        A ``LIKE`` on the term as the store encodes it (:func:`~.base.dumps`) goes first: a
        plain text test that drops almost every other row before the JSON is parsed.
        """
        ph = self._ph
        prefilter = f"{column} LIKE {ph} ESCAPE '\\'"
        params = ["%" + like_escape(dumps(term)) + "%", term]
        if self._dialect == "postgresql":
            return f"({prefilter} AND {column}::jsonb @> jsonb_build_array(CAST({ph} AS text)))", params
        # SQLite (and any other dialect with json_each): an exact element match.
        exact = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {ph})"
        return f"({prefilter} AND {exact})", params

    def where(self, flt: CatalogFilter) -> tuple[list[str], list[Any]]:
        """The ``WHERE`` clauses (joined with ``AND``) and their parameters for ``flt``."""
        ph = self._ph
        where: list[str] = []
        params: list[Any] = []
        if flt.dag_ids is not None and self._missing("dag_id"):
            if None not in flt.dag_ids:  # a table from before dag_id: every row has no DAG
                where.append("1 = 0")
        elif flt.dag_ids is not None:
            named = sorted(d for d in flt.dag_ids if d)
            # SQLite (no statistics) would take the dag_id index and then sort every row of
            # those DAGs; "+dag_id" keeps it walking the list order and filtering as it goes.
            column = "+dag_id" if self._dialect == "sqlite" else "dag_id"
            either = [f"{column} IN ({', '.join([ph] * len(named))})"] if named else []
            if None in flt.dag_ids:
                either.append("dag_id IS NULL")
            where.append("(" + " OR ".join(either) + ")" if either else "1 = 0")
            params.extend(named)
        if flt.index_id is not None:
            # Without the catalog's (index_id, generated_at) index, SQLite would read the whole
            # index through the primary key and sort it: "+index_id" walks the list order instead.
            walk = self._dialect == "sqlite" and not self._has_catalog_indexes()
            where.append(f"{'+' if walk else ''}index_id = {ph}")
            params.append(flt.index_id)
        if flt.text:
            needle = flt.text.lower()
            columns: tuple[str, ...] = ("title", "topics", "hashtags")
            if needle.startswith("#"):
                needle, columns = needle[1:], ("hashtags",)
            pattern = "%" + like_escape(needle) + "%"
            where.append("(" + " OR ".join(f"LOWER({c}) LIKE {ph} ESCAPE '\\'" for c in columns) + ")")
            params.extend([pattern] * len(columns))
        for term, column in ((flt.topic, "topics"), (flt.hashtag, "hashtags")):
            if term:
                clause, values = self._has_term(column, term)
                where.append(clause)
                params.extend(values)
        return where, params

    def _has_catalog_indexes(self) -> bool:
        """Whether :func:`ensure_catalog_indexes` ran on this SQLite table (remembered once true:
        this provider never drops them)."""
        if self.store.location in _INDEXED:
            return True
        row = self.store.hook.get_first(
            f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = {self._ph}",
            parameters=(f"{self.store.table}_catalog_index",),
        )
        if row and row[0]:
            _INDEXED.add(self.store.location)
            return True
        return False

    @staticmethod
    def _sql_where(where: list[str]) -> str:
        return (" WHERE " + " AND ".join(where)) if where else ""

    # -- the list ---------------------------------------------------------------------------

    def page(
        self,
        flt: CatalogFilter,
        *,
        limit: int,
        after: Cursor | None = None,
        before: Cursor | None = None,
        offset: int = 0,
    ) -> Page:
        """``limit`` gists in list order: the first ones, those after ``after`` (older) or those
        just before ``before`` (newer), with the cursors of the neighbouring pages.

        ``offset`` skips rows the old way (``OFFSET``: the database reads what it skips); only
        for the old ``page`` parameter, never with a cursor.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise GistValidationError(f"limit must be an integer >= 1, got {limit!r}")
        if after is not None and before is not None:
            raise GistValidationError("give after or before, not both")
        if offset and (after is not None or before is not None):
            raise GistValidationError("offset cannot be combined with a cursor")
        self.store.ensure_table()
        ph = self._ph
        where, params = self.where(flt)
        if after is not None:
            # "<=" first: a range the generated_at index can seek to; the rest breaks ties.
            where.append(
                f"generated_at <= {ph} AND (generated_at < {ph} OR index_id > {ph} "
                f"OR (index_id = {ph} AND video_ref > {ph}))"
            )
            params += [
                after.generated_at,
                after.generated_at,
                after.index_id,
                after.index_id,
                after.video_ref,
            ]
        if before is not None:
            where.append(
                f"generated_at >= {ph} AND (generated_at > {ph} OR index_id < {ph} "
                f"OR (index_id = {ph} AND video_ref < {ph}))"
            )
            params += [
                before.generated_at,
                before.generated_at,
                before.index_id,
                before.index_id,
                before.video_ref,
            ]
        order = (
            "generated_at ASC, index_id DESC, video_ref DESC"
            if before is not None
            else "generated_at DESC, index_id, video_ref"
        )
        sql = (
            f"SELECT {self._select_columns()} FROM {self.store.table}{self._sql_where(where)} "
            f"ORDER BY {order} LIMIT {ph}" + (f" OFFSET {ph}" if offset else "")
        )
        rows = self.store.hook.get_records(
            sql, parameters=(*params, limit + 1, *([offset] if offset else []))
        )
        more = len(rows) > limit
        gists = [row_to_gist(row) for row in rows[:limit]]
        if before is not None:
            gists.reverse()
            return Page(
                gists,
                older=Cursor.of(gists[-1]) if gists else before,
                newer=Cursor.of(gists[0]) if more else None,
            )
        return Page(
            gists,
            older=Cursor.of(gists[-1]) if more else None,
            newer=Cursor.of(gists[0]) if (after is not None or offset) and gists else None,
        )

    def iter_rows(self, flt: CatalogFilter, *, batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
        """Every gist of ``flt`` in list order, fetched ``batch`` rows per seek query."""
        after: Cursor | None = None
        while True:
            page = self.page(flt, limit=batch, after=after)
            yield from page.gists
            if page.older is None:
                return
            after = page.older

    # -- aggregates -------------------------------------------------------------------------

    def count(self, flt: CatalogFilter) -> int:
        """How many gists ``flt`` covers."""
        self.store.ensure_table()
        where, params = self.where(flt)
        row = self.store.hook.get_first(
            f"SELECT COUNT(*) FROM {self.store.table}{self._sql_where(where)}", parameters=tuple(params)
        )
        return int(row[0]) if row else 0

    def index_counts(self, flt: CatalogFilter) -> list[tuple[str | None, int]]:
        """``(index_id, gists)`` of every index ``flt`` covers, biggest first (``None``: no index)."""
        self.store.ensure_table()
        where, params = self.where(flt)
        rows = self.store.hook.get_records(
            f"SELECT index_id, COUNT(*) FROM {self.store.table}{self._sql_where(where)} "
            "GROUP BY index_id ORDER BY COUNT(*) DESC, index_id",
            parameters=tuple(params),
        )
        return [(row[0] or None, int(row[1])) for row in rows]

    def top_terms(self, flt: CatalogFilter, kind: str, *, limit: int = 10) -> list[tuple[str, int]]:
        """The ``limit`` most frequent topics or hashtags (``kind``) of ``flt``'s gists, with counts."""
        if kind not in TERM_KINDS:
            raise GistValidationError(f"kind must be one of {', '.join(TERM_KINDS)}, got {kind!r}")
        column = TERM_KINDS[kind]
        self.store.ensure_table()
        where, params = self.where(flt)
        table = self.store.table
        if self._dialect == "postgresql":
            unpack = f"jsonb_array_elements_text({table}.{column}::jsonb)"
            source = f"{table} CROSS JOIN LATERAL {unpack} AS term(value)"
            term = "term.value"
        elif self._dialect == "sqlite":
            source = f"{table}, json_each({table}.{column}) AS term"
            term = "term.value"
        else:
            return self._top_terms_scan(flt, column, limit)
        rows = self.store.hook.get_records(
            f"SELECT {term}, COUNT(*) FROM {source}{self._sql_where(where)} "
            f"GROUP BY {term} ORDER BY COUNT(*) DESC, {term} LIMIT {self._ph}",
            parameters=(*params, limit),
        )
        return [(str(row[0]), int(row[1])) for row in rows]

    def _top_terms_scan(self, flt: CatalogFilter, column: str, limit: int) -> list[tuple[str, int]]:
        # A dialect without JSON functions this module knows: count in Python, batch by batch.
        counts: Counter[str] = Counter()
        for gist in self.iter_rows(flt):
            counts.update(gist.get(column) or ())
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def usage_per_day(self, flt: CatalogFilter, *, days: int = 30) -> list[DayUsage]:
        """Calls and tokens per UTC day of the stored gists of ``flt``, the latest ``days`` days
        that have any, oldest first. One stored gist is one analysis call (a replaced gist's
        call is no longer counted: the store keeps the newest gist of a video)."""
        self.store.ensure_table()
        where, params = self.where(flt)
        stamp = "generated_at" if self._missing("generated_utc") else "COALESCE(generated_utc, generated_at)"
        rows = self.store.hook.get_records(
            f"SELECT SUBSTR({stamp}, 1, 10) AS day, COUNT(*), SUM(COALESCE(input_tokens, 0)), "
            f"SUM(output_tokens) FROM {self.store.table}{self._sql_where(where)} "
            f"GROUP BY SUBSTR({stamp}, 1, 10) ORDER BY day DESC LIMIT {self._ph}",
            parameters=(*params, days),
        )
        return [DayUsage(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in reversed(rows)]


def catalog_index_ddl(table: str) -> list[str]:
    """Indexes that make the catalog's pages index walks with no sort step (see
    :func:`ensure_catalog_indexes`): the list order itself, and the same within one index."""
    create = "CREATE INDEX IF NOT EXISTS"
    return [
        f"{create} {table}_catalog_order ON {table} (generated_at DESC, index_id, video_ref)",
        f"{create} {table}_catalog_index ON {table} (index_id, generated_at DESC, video_ref)",
    ]


def ensure_catalog_indexes(store: SqlGistStore) -> None:
    """Create the catalog's indexes on ``store``'s table if missing (writers only: the view
    never creates anything). Idempotent; ``SqlGistStore.ensure_table`` creates them too."""
    store.ensure_table()
    store.hook.run(catalog_index_ddl(store.table))
