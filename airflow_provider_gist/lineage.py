"""OpenLineage for the gist operators: which videos went in, which table or folder came out.

Dataset names follow OpenLineage's naming conventions (openlineage.io/docs/spec/naming):

- a video in TwelveLabs: namespace ``twelvelabs://<API host[:port]>``, name the asset id (or
  the legacy video id);
- a video's source: a URL is ``<scheme>://<host[:port]>`` + its path (never the userinfo or the
  query, where signed URLs keep their credentials); a local file is ``file`` + its path; an
  object is ``<protocol>://<bucket>`` + its key;
- the gist table: the embedded SQLite file is ``sqlite://<path>`` + the table; a connection is
  ``<type>://<host>:<port>`` + ``<database>.public.<table>`` for Postgres, the table otherwise;
  an object store folder is named like an object.

A job facet, ``twelvelabs_gist``, names the model and prompt version the gists came from.
Everything OpenLineage is imported when lineage is asked for (only with the OpenLineage
provider installed), never when a DAG file is parsed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_gist.client.settings import DEFAULT_HOST

#: (namespace, name) of one dataset
DatasetId = tuple[str, str]
#: ObjectStoragePath protocols that are the worker's own disk
_LOCAL = ("file", "local", "")
#: The job facet's key in OpenLineage events.
FACET_NAME = "twelvelabs_gist"


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def api_namespace(api_base: str | None) -> str:
    """``twelvelabs://<host[:port]>`` of the API a hook talks to (the default API when unknown)."""
    return f"twelvelabs://{_host_port(api_base or DEFAULT_HOST)}"


def api_base_of(conn_id: str) -> str | None:
    """The API root of a TwelveLabs connection; ``None`` (the default API) when it cannot be read."""
    from airflow_provider_gist.client.settings import base_url

    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # lineage must not fail a task that did its work
        return None
    return base_url(conn.host, conn.schema, conn.port)


def video_dataset(api_base: str | None, video_ref: str) -> DatasetId:
    return api_namespace(api_base), str(video_ref)


def url_dataset(url: str) -> DatasetId:
    """A URL as a dataset: scheme and host (no userinfo), path (no query or fragment)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{_host_port(url)}", parts.path or "/"


def path_dataset(protocol: str, path: str) -> DatasetId:
    """An ObjectStoragePath's protocol and path (``bucket/key``; its conn id never shows)."""
    if protocol in _LOCAL:
        return "file", "/" + path.lstrip("/")
    bucket, _, key = path.lstrip("/").partition("/")
    return f"{protocol}://{bucket}", key or "/"


def source_dataset(source: Any) -> DatasetId | None:
    """The dataset of an ingest :class:`~airflow_provider_gist.ingest.sources.VideoSource`."""
    if getattr(source, "video_url", None):
        return url_dataset(source.video_url)
    path = getattr(source, "path", None)
    if path is not None:
        return path_dataset(str(getattr(path, "protocol", "") or ""), str(path.path))
    return None


def store_dataset(store: Any) -> DatasetId | None:
    """Where a gist store writes, as a dataset (``None`` for a store we cannot name)."""
    table = getattr(store, "table", None)
    if table is not None:  # SqlGistStore
        if store.db_path is not None:
            return f"sqlite://{store.db_path}", str(table)
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(store.conn_id)
        if conn.conn_type in ("postgres", "postgresql"):
            database = conn.schema or "postgres"
            return f"postgres://{conn.host}:{conn.port or 5432}", f"{database}.public.{table}"
        if conn.conn_type == "sqlite":
            return f"sqlite://{conn.host}", str(table)
        return f"{conn.conn_type}://{conn.host}:{conn.port}", str(table)
    base = getattr(store, "base", None)
    if base is not None:  # ObjectGistStore
        return path_dataset(str(base.protocol or ""), str(base.path))
    return None


@functools.cache
def _facet_class() -> type:
    """The job facet class, built on first use (attrs + the OpenLineage client, loaded lazily)."""
    import attr
    from openlineage.client.generated.base import JobFacet

    @attr.define
    class TwelveLabsGistJobFacet(JobFacet):
        """The model and prompt version that made (or would make) the gists."""

        model: str | None = attr.field(default=None)
        promptVersion: str | None = attr.field(default=None)  # OpenLineage's camelCase
        types: list[str] = attr.field(factory=list)

    # The schema URL stays JobFacet's: the facet is a plain job facet with three more fields.
    return TwelveLabsGistJobFacet


def operator_lineage(
    inputs: Iterable[DatasetId | None],
    outputs: Iterable[DatasetId | None] = (),
    *,
    model: str | None = None,
    prompt_version: str | None = None,
    types: Iterable[str] = (),
) -> Any:
    """An ``OperatorLineage`` of these datasets (``None`` entries dropped, duplicates once)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(ids: Iterable[DatasetId | None]) -> list[Any]:
        unique = dict.fromkeys(i for i in ids if i is not None)
        return [Dataset(namespace=ns, name=name) for ns, name in unique]

    job_facets: dict[str, Any] = {}
    if model or prompt_version:
        names = [str(getattr(t, "value", t)) for t in types]  # GistType members or plain strings
        job_facets[FACET_NAME] = _facet_class()(model=model, promptVersion=prompt_version, types=names)
    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs), job_facets=job_facets)
