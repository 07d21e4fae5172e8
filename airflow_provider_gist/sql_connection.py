"""The SQL connections this provider uses beside the API: the gist store and the pacing store.

Both name an Airflow connection that must resolve to a common.sql ``DbApiHook``; this is the one
place that looks it up and says clearly what is wrong with it. Imports common.sql on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_gist.client.settings import is_missing_connection
from airflow_provider_gist.errors import GistConfigError

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook


def sql_hook(conn_id: str, what: str) -> DbApiHook:
    """The ``DbApiHook`` of the connection ``conn_id``, with SQL logging off.

    :param what: how errors name the connection, e.g. ``"gist store connection 'x'"``.
    :raises GistConfigError: the connection is missing, cannot be loaded, or is not a SQL
        database. Messages keep only an error's type: a lookup's text may carry a URI.
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as err:
        if is_missing_connection(err):
            raise GistConfigError(
                f"{what} is not defined: create it (type postgres, or sqlite for one machine) "
                f"or set AIRFLOW_CONN_{conn_id.upper()}"
            ) from None
        raise GistConfigError(f"{what} could not be loaded ({type(err).__name__})") from None
    try:
        hook = conn.get_hook()
    except Exception as err:
        raise GistConfigError(
            f"{what} (type {conn.conn_type!r}) has no usable hook ({type(err).__name__}): "
            "use a 'postgres' or 'sqlite' connection"
        ) from None
    if not isinstance(hook, DbApiHook):
        raise GistConfigError(
            f"{what} has type {conn.conn_type!r}, which is not a SQL database (DbApiHook): "
            "use a 'postgres' or 'sqlite' connection"
        )
    # run() would log every statement with its parameters at INFO.
    hook.log_sql = False
    return hook
