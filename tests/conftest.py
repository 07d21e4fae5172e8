"""Shared test setup.

Airflow reads its configuration at import time, so the environment is set here, before any
test module imports airflow: a throwaway AIRFLOW_HOME with its own SQLite metadata DB (never
the one of a running deployment), no example DAGs, and this repo's dags/ as the DAGs folder.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="gist-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# A JWT secret of recommended length (Airflow generates a 16-byte one, which PyJWT warns about).
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
# The example DAGs read their poll interval at parse time; the emulator answers in tenths of a second.
os.environ["GIST_POLL_INTERVAL"] = "0.2"
# No test may reach beyond loopback; these keep libraries from trying.
os.environ["NO_PROXY"] = "*"
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)

TEST_API_KEY = "tlk_test_key_5ecret_0123456789"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB for dag.test() (once per session, in the throwaway home)."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=os.environ.copy(),
            capture_output=True,
        )
        marker.touch()
    return _HOME


@pytest.fixture(scope="session")
def emulator() -> Iterator:
    """The API emulator on a free loopback port, fast timings, shared by the session."""
    from airflow_provider_gist.emulator.server import start_emulator

    handle = start_emulator(
        api_key=TEST_API_KEY,
        asset_ready_seconds=0.2,
        indexing_seconds=0.4,
        # analysis tasks in a fraction of a second: 16 slots, 0.1 s pending, 0.05 s per video minute
        analysis_slots=16,
        analysis_startup_seconds=0.1,
        analysis_seconds_per_minute=0.05,
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def emu(emulator) -> Iterator:
    """The shared emulator with state, faults and journal cleared before each test."""
    import requests

    requests.post(f"{emulator.url}/_emulator/reset", timeout=5).raise_for_status()
    yield emulator
    requests.delete(f"{emulator.url}/_emulator/faults", timeout=5)


def twelvelabs_conn_json(url: str, api_key: str = TEST_API_KEY, **extra: object) -> str:
    return json.dumps({"conn_type": "twelvelabs", "host": url, "password": api_key, "extra": extra})


@pytest.fixture
def tl_conn(emu, monkeypatch) -> str:
    """``twelvelabs_default`` pointing at the emulator, through the env var as users would set it."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(emu.url, max_attempts=4, retry_deadline=30),
    )
    return "twelvelabs_default"
