"""`airflow providers list` and `airflow connections test` as a user runs them, against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

pytestmark = pytest.mark.integration


def airflow_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_providers_list_shows_the_provider():
    out = airflow_cli("providers", "list")
    assert out.returncode == 0, out.stderr
    assert "airflow-provider-gist" in out.stdout


def test_connections_test_passes_with_the_key_and_fails_clearly_without(emu):
    good = airflow_cli(
        "connections",
        "test",
        "twelvelabs_default",
        AIRFLOW_CONN_TWELVELABS_DEFAULT=twelvelabs_conn_json(emu.url),
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Connection success" in good.stdout

    bad = airflow_cli(
        "connections",
        "test",
        "twelvelabs_default",
        AIRFLOW_CONN_TWELVELABS_DEFAULT=twelvelabs_conn_json(emu.url, api_key="tlk_wrong_key_0000"),
    )
    text = bad.stdout + bad.stderr
    assert "Connection success" not in text
    assert "rejected the API key" in text
    assert TEST_API_KEY not in text and "tlk_wrong_key_0000" not in text
