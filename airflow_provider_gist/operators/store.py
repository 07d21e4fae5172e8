"""StoreGistsOperator: write generated gists to a store and announce them as an asset event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.model import describe_gist
from airflow_provider_gist.storage import DEFAULT_TABLE, make_store

if TYPE_CHECKING:
    from airflow.sdk import Context
    from pydantic.types import JsonValue

    from airflow_provider_gist.storage.base import GistStore

#: Updated by every successful store; schedule consumers with ``schedule=[GISTS_ASSET]``.
GISTS_ASSET = Asset(uri="x-twelvelabs://gists", name="twelvelabs_gists")

#: How many video refs go into the asset event's ``extra`` (it is clear text in the DB and UI).
EVENT_REFS = 20


def collect_gists(value: object) -> list[object]:
    """Flatten the operator's ``gists`` argument into a list, dropping ``None`` (skipped upstreams).

    Accepts one gist dict, a list/tuple, or any other iterable such as the lazy sequence a
    mapped task's output resolves to. Elements are checked later by ``normalize_gists``.
    """
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise GistValidationError(f"gists must be a gist dict or a list of them, got {type(value).__name__}")
    return [item for item in value if item is not None]


class StoreGistsOperator(BaseOperator):
    """Validate gist dicts and upsert them into a gist store in one go; emit an asset event.

    :param gists: a gist dict, a list of them, or a mapped task's output (templated). ``None``
        entries (skipped upstreams) are ignored. Every gist is validated before anything is written.
    :param store: ``"sql"`` (:class:`SqlGistStore`) or ``"objects"`` (:class:`ObjectGistStore`).
    :param sql_conn_id: SQL connection (``sqlite``/``postgres``); ``None`` = ``$AIRFLOW_HOME/gists.db``.
    :param table: SQL table name (plain identifier).
    :param object_base: base URL for ``store="objects"``; ``None`` = ``file://$AIRFLOW_HOME/gists/``.

    Outlets default to :data:`GISTS_ASSET`; each Asset outlet's event gets
    ``extra = {"stored": n, "video_refs": [first refs]}``. Returns
    ``{"stored", "store", "location", "video_refs"}`` (no secrets). Nothing to store -> skipped,
    so no asset event fires for an empty batch.
    """

    template_fields: Sequence[str] = ("gists", "sql_conn_id", "table", "object_base")
    template_fields_renderers = {"gists": "json"}

    def __init__(
        self,
        *,
        gists: Any,
        store: str = "sql",
        sql_conn_id: str | None = None,
        table: str = DEFAULT_TABLE,
        object_base: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [GISTS_ASSET])
        super().__init__(**kwargs)
        self.gists = gists
        self.store = store
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.object_base = object_base

    def make_store(self) -> GistStore:
        """The store the arguments describe (validated at run time, not in ``__init__``)."""
        return make_store(
            self.store, sql_conn_id=self.sql_conn_id, table=self.table, object_base=self.object_base
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gist.storage.base import normalize_gists

        store = self.make_store()
        gists = normalize_gists(collect_gists(self.gists))  # all validated before any write
        if not gists:
            raise AirflowSkipException("no gists to store (empty input or all upstreams skipped)")

        stored = store.put_many(gists)
        refs = [gist["video_ref"] for gist in gists]
        self.log.info("Stored %d gist(s) in %s", stored, store.location)
        for gist in gists:
            self.log.info("  %s", describe_gist(gist))

        extra: dict[str, JsonValue] = {"stored": stored, "video_refs": list(refs[:EVENT_REFS])}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)
        return {"stored": stored, "store": self.store, "location": store.location, "video_refs": refs}
