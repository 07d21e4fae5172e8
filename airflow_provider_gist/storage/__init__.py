"""Where gists are kept: a SQL table (default: SQLite under ``$AIRFLOW_HOME``) or JSON objects.

``SqlGistStore`` and ``ObjectGistStore`` share the :class:`~.base.GistStore` read/write API, so
the store operator, the catalog refresh and the gist view can use either. :func:`make_store`
is the one place that turns a DAG's arguments into a store.

The stores' modules (common.sql, ObjectStoragePath) load on first use, not when a DAG file
imports an operator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_gist.errors import GistConfigError, GistValidationError

if TYPE_CHECKING:
    from airflow_provider_gist.storage.base import GistStore
    from airflow_provider_gist.storage.objects import ObjectGistStore
    from airflow_provider_gist.storage.sql import SqlGistStore

#: The kinds of store a DAG can name.
STORES = ("sql", "objects")
#: The default SQL table (a plain identifier).
DEFAULT_TABLE = "video_gists"


def make_store(
    store: str = "sql",
    *,
    sql_conn_id: str | None = None,
    table: str = DEFAULT_TABLE,
    object_base: str | None = None,
    dag_id: str | None = None,
) -> GistStore:
    """The store the arguments describe, validated here (at run time, not at DAG parse time).

    :param store: ``"sql"`` (:class:`SqlGistStore`) or ``"objects"`` (:class:`ObjectGistStore`).
    :param sql_conn_id: SQL connection (``sqlite``/``postgres``).
    :param table: SQL table name (plain identifier).
    :param object_base: base URL for ``"objects"``.
    :param dag_id: the DAG that writes (stamped on every gist it stores; the gist view shows a
        gist to users who may read that DAG).

    A DAG that names no location (no ``sql_conn_id`` for ``"sql"``, no ``object_base`` for
    ``"objects"``) gets the deployment's store, the connection ``gist_store_default``
    (:mod:`.default`; its kind wins over the default ``store="sql"``). Without that connection:
    ``$AIRFLOW_HOME/gists.db`` or ``file://$AIRFLOW_HOME/gists/`` under LocalExecutor and
    ``dag.test()``, and a :class:`~airflow_provider_gist.errors.GistConfigError` under a
    distributed executor, where each worker's ``$AIRFLOW_HOME`` is its own.
    """
    if store not in STORES:
        raise GistValidationError(f"store must be one of {', '.join(STORES)}, got {store!r}")
    named = sql_conn_id if store == "sql" else object_base
    if not named:
        from airflow_provider_gist.storage.default import deployment_store, require_local_default

        location = deployment_store()
        if location is None:
            require_local_default()
        elif store == "objects" and location.kind == "sql":
            raise GistConfigError(
                "store='objects' names no object_base, and the connection gist_store_default is a SQL "
                "store: give object_base, or use store='sql'"
            )
        else:
            store, sql_conn_id, object_base = location.kind, location.sql_conn_id, location.object_base
            if location.table and table == DEFAULT_TABLE:
                table = location.table
    if store == "sql":
        from airflow_provider_gist.storage.sql import SqlGistStore

        return SqlGistStore(conn_id=sql_conn_id or None, table=table, dag_id=dag_id)
    from airflow_provider_gist.storage.objects import ObjectGistStore

    return ObjectGistStore(object_base or None, dag_id=dag_id)


def __getattr__(name: str) -> Any:
    # The store classes, importable from here without loading both backends up front.
    if name == "SqlGistStore":
        from airflow_provider_gist.storage.sql import SqlGistStore

        return SqlGistStore
    if name == "ObjectGistStore":
        from airflow_provider_gist.storage.objects import ObjectGistStore

        return ObjectGistStore
    if name in ("GistStore", "normalize_gists"):
        from airflow_provider_gist.storage import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_TABLE", "STORES", "GistStore", "ObjectGistStore", "SqlGistStore", "make_store"]
