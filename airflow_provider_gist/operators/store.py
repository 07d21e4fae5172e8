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

#: Most videos named as lineage inputs of one store task (an event must stay small).
LINEAGE_VIDEOS = 1000

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
    :param sql_conn_id: SQL connection (``sqlite``/``postgres``).
    :param table: SQL table name (plain identifier).
    :param object_base: base URL for ``store="objects"``.

    Name no location (the usual case) and the gists go to the deployment's store, the connection
    ``gist_store_default``; without it, ``$AIRFLOW_HOME/gists.db`` (or ``file://$AIRFLOW_HOME/gists/``)
    under LocalExecutor and ``dag.test()``, and a clear error under a distributed executor
    (:func:`~airflow_provider_gist.storage.make_store`). Where gists are written is the
    deployment's choice, never a run's: a conf value would let anyone who may trigger the DAG
    write to any SQL connection the workers can reach.

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

    def make_store(self, dag_id: str | None = None) -> GistStore:
        """The store the arguments describe (validated at run time, not in ``__init__``)."""
        return make_store(
            self.store,
            sql_conn_id=self.sql_conn_id,
            table=self.table,
            object_base=self.object_base,
            dag_id=dag_id,
        )

    def _writing_dag_id(self, context: Context) -> str | None:
        """The DAG this run belongs to: each stored gist names it (the gist view's access rule)."""
        ti = context.get("ti")
        dag_id = getattr(ti, "dag_id", None)
        if not dag_id and self.has_dag():
            dag_id = self.dag.dag_id
        return str(dag_id) if dag_id else None

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gist.storage.base import normalize_gists

        store = self.make_store(self._writing_dag_id(context))
        gists = normalize_gists(collect_gists(self.gists))  # all validated before any write
        if not gists:
            raise AirflowSkipException("no gists to store (empty input or all upstreams skipped)")

        stored = store.put_many(gists)
        refs = [gist["video_ref"] for gist in gists]
        self._lineage_done = (store, gists)  # for get_openlineage_facets_on_complete
        self.log.info("Stored %d gist(s) in %s", stored, store.location)
        if stored < len(gists):
            self.log.info(
                "Kept %d stored gist(s) that are as new as or newer than this run's", len(gists) - stored
            )
        for gist in gists:
            self.log.info("  %s", describe_gist(gist))

        extra: dict[str, JsonValue] = {"stored": stored, "video_refs": list(refs[:EVENT_REFS])}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)
        return {"stored": stored, "store": self.store, "location": store.location, "video_refs": refs}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the videos (at most :data:`LINEAGE_VIDEOS`); output: the gist table or folder.

        The gists do not say which API host made them: the videos are named in the default
        API's namespace.
        """
        from airflow_provider_gist.lineage import operator_lineage, store_dataset, video_dataset

        store, gists = getattr(self, "_lineage_done", None) or (None, [])
        models = {(g.get("model"), g.get("prompt_version")) for g in gists}
        model, prompt_version = models.pop() if len(models) == 1 else (None, None)
        return operator_lineage(
            [video_dataset(None, g["video_ref"]) for g in gists[:LINEAGE_VIDEOS]],
            [store_dataset(store) if store is not None else None],
            model=model,
            prompt_version=prompt_version,
        )
