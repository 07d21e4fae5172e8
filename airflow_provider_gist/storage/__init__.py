"""Where gists are kept: a SQL table (default: SQLite under ``$AIRFLOW_HOME``) or JSON objects.

``SqlGistStore`` and ``ObjectGistStore`` share the :class:`GistStore` read/write API, so the
store operator, a catalog refresh and a UI view can use either.
"""

from __future__ import annotations

from airflow_provider_gist.storage.base import GistStore, normalize_gist, normalize_gists
from airflow_provider_gist.storage.objects import ObjectGistStore
from airflow_provider_gist.storage.sql import DEFAULT_TABLE, SqlGistStore

__all__ = [
    "DEFAULT_TABLE",
    "GistStore",
    "ObjectGistStore",
    "SqlGistStore",
    "normalize_gist",
    "normalize_gists",
]
