"""The package's shape: public import paths that users write keep working, and a DAG file that
imports the operators and sensors does not load the HTTP and async stacks (they cost DAG-parse
time on every parse; hooks and triggers load them when a task runs)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from bench.import_cost import MODULES, MUST_NOT_LOAD


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("airflow_provider_gist.hooks.gist", "GistHook"),
        ("airflow_provider_gist.hooks.gist", "GistAsyncHook"),
        ("airflow_provider_gist.hooks.gist_async", "GistAsyncHook"),
        ("airflow_provider_gist.operators.gist", "GenerateGistOperator"),
        ("airflow_provider_gist.operators.ingest", "IngestVideoOperator"),
        ("airflow_provider_gist.operators.ingest", "CreateAssetOperator"),
        ("airflow_provider_gist.operators.ingest", "IndexAssetOperator"),
        ("airflow_provider_gist.operators.ingest", "CreateIndexingTaskOperator"),
        ("airflow_provider_gist.operators.store", "StoreGistsOperator"),
        ("airflow_provider_gist.operators.store", "GISTS_ASSET"),
        ("airflow_provider_gist.operators.refresh", "RefreshGistsOperator"),
        ("airflow_provider_gist.operators.refresh", "GistRefresher"),
        ("airflow_provider_gist.sensors.indexing", "IndexingCompleteSensor"),
        ("airflow_provider_gist.sensors.indexing", "AssetReadySensor"),
        ("airflow_provider_gist.triggers.indexing", "IndexedAssetReadyTrigger"),
        ("airflow_provider_gist.triggers.indexing", "AssetReadyTrigger"),
        ("airflow_provider_gist.triggers.indexing", "IndexingTaskTrigger"),
        ("airflow_provider_gist.storage", "SqlGistStore"),
        ("airflow_provider_gist.storage", "ObjectGistStore"),
    ],
)
def test_public_import_paths_keep_working(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    assert getattr(value, "__name__", None) == name or getattr(value, "name", None) == "twelvelabs_gists"


def test_lazy_reexports_are_the_real_classes() -> None:
    from airflow_provider_gist.hooks import gist, gist_async
    from airflow_provider_gist.operators import refresh
    from airflow_provider_gist.refresh import engine

    assert gist.GistAsyncHook is gist_async.GistAsyncHook
    assert refresh.GistRefresher is engine.GistRefresher
    with pytest.raises(AttributeError):
        _ = gist.NoSuchThing


def test_a_dag_file_import_loads_no_http_or_async_stack() -> None:
    code = (
        "import sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    new = loaded.stdout.split()
    offenders = [m for m in new if any(m == bad or m.startswith(bad + ".") for bad in MUST_NOT_LOAD)]
    assert offenders == []
    assert "airflow_provider_gist.operators.gist" in new  # the probe really imported ours
