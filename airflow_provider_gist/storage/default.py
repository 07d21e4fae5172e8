"""The deployment's gist store: the connection ``gist_store_default``, else a safe local default.

A DAG that names no store writes where the deployment says: the Airflow connection
:data:`DEFAULT_STORE_CONN_ID` (set in the UI, as ``AIRFLOW_CONN_GIST_STORE_DEFAULT`` or in a
secrets backend), read when the task runs. Every store task, the catalog refresh and the gist
view then use the one store, whichever worker runs them.

With no such connection the embedded SQLite file ``$AIRFLOW_HOME/gists.db`` is the zero-setup
default, but only where every task and the gist view share one disk (LocalExecutor,
``dag.test()``). Under a distributed executor each worker has its own ``$AIRFLOW_HOME``: gists
would be scattered over files nobody reads, so storing fails instead, saying how to configure it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_gist.errors import GistConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: The connection that names the deployment's gist store.
DEFAULT_STORE_CONN_ID = "gist_store_default"

#: Executors that run every task on the machine that also serves the UI (one ``$AIRFLOW_HOME``).
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})

HOW_TO_CONFIGURE = (
    f"set the Airflow connection {DEFAULT_STORE_CONN_ID!r} to the one store every worker and the "
    "API server reach: a SQL connection (e.g. AIRFLOW_CONN_GIST_STORE_DEFAULT="
    "'postgresql://user:pass@db-host:5432/gists'), or any connection whose extra has "
    '"object_base" (e.g. {"conn_type": "generic", "extra": {"object_base": '
    '"s3://aws_default@bucket/gists/"}}); or name a store in the DAG (sql_conn_id / object_base)'
)


@dataclass(frozen=True)
class StoreLocation:
    """Where the deployment's gists live: a SQL connection, or an object-storage base URL."""

    #: SQL connection id (``None`` with ``object_base``)
    sql_conn_id: str | None = None
    #: base URL of an object store (``None`` for SQL)
    object_base: str | None = None
    #: SQL table named in the connection's extra ``table`` (``None`` = the DAG's or the default)
    table: str | None = None

    @property
    def kind(self) -> str:
        return "objects" if self.object_base else "sql"


def distributed_executors(executor_setting: str | None = None) -> list[str]:
    """The configured executors that may run a task on another machine (``[core] executor``).

    The setting is a comma-separated list of names, module paths or ``alias:module.Class``;
    only the class name matters here.
    """
    if executor_setting is None:
        from airflow.configuration import conf

        executor_setting = conf.get("core", "executor", fallback="LocalExecutor") or "LocalExecutor"
    names = [part.strip() for part in executor_setting.split(",") if part.strip()]
    return [name for name in names if name.split(":")[-1].split(".")[-1] not in LOCAL_EXECUTORS]


def _lookup(conn_id: str) -> Connection | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as err:
        # A secrets backend that is down is not "not configured": say so (never its URI).
        raise GistConfigError(
            f"gist store connection {conn_id!r} could not be loaded ({type(err).__name__})"
        ) from None


def deployment_store() -> StoreLocation | None:
    """The store the connection ``gist_store_default`` names, or ``None`` when it is not set."""
    conn = _lookup(DEFAULT_STORE_CONN_ID)
    if conn is None:
        return None
    extra = conn.extra_dejson if conn.extra else {}
    table = extra.get("table") or None
    object_base = extra.get("object_base") or None
    if object_base is not None:
        if not isinstance(object_base, str):
            raise GistConfigError(f"connection {DEFAULT_STORE_CONN_ID!r}: extra 'object_base' must be a URL")
        return StoreLocation(object_base=object_base)
    if table is not None and not isinstance(table, str):
        raise GistConfigError(f"connection {DEFAULT_STORE_CONN_ID!r}: extra 'table' must be a table name")
    return StoreLocation(sql_conn_id=DEFAULT_STORE_CONN_ID, table=table)


def require_local_default() -> None:
    """Refuse the worker-local default store under a distributed executor (:class:`GistConfigError`)."""
    remote = distributed_executors()
    if remote:
        raise GistConfigError(
            f"no gist store configured, and [core] executor = {', '.join(remote)} runs tasks on "
            f"workers that do not share $AIRFLOW_HOME, so the embedded SQLite default would scatter "
            f"gists over the workers' disks: {HOW_TO_CONFIGURE}"
        )
