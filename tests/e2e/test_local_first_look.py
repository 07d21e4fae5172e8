"""The first look: ``scripts/airflow-local.sh up`` as a new user runs it, then ``down``.

Default settings (LocalExecutor, DAGs unpaused, the emulator seeded with a small catalog):
the scheduled ``gist_catalog_refresh`` fires at once and must succeed, refreshing the seeded
index "gist-catalog" into gists the gist view lists, with no failed run anywhere. Then
``down``, right after, must leave no process of the deployment behind (the scheduler's
LocalExecutor workers included).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.local_deployment import (
    Deployment,
    free_port,
    kill_leftovers,
    leftovers,
    remove_home,
    script_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SEEDED = 3


@pytest.fixture(scope="module")
def local() -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="gist-e2e-local-"))
    api_port = free_port()
    env = script_env(
        home,
        GIST_LOCAL_PORT=str(api_port),
        GIST_EMULATOR_PORT=str(free_port()),
        GIST_EMULATOR_SEED=str(SEEDED),
        GIST_EMULATOR_ARGS="--analysis-startup-seconds 0.3 --analysis-seconds-per-minute 0.1",
        GIST_HEALTH_TIMEOUT="150",
    )
    dep = Deployment(home=home, env=env, url=f"http://127.0.0.1:{api_port}")
    try:
        dep.up()
        yield dep
    finally:
        dep.down()
        kill_leftovers(home)
        remove_home(home)


def test_the_scheduled_refresh_succeeds_at_once(local: Deployment) -> None:
    dag_id = "gist_catalog_refresh"
    deadline = time.monotonic() + 120
    while not (runs := local.runs(dag_id) if local.api("GET", f"/api/v2/dags/{dag_id}").ok else []):
        assert time.monotonic() < deadline, "the scheduled refresh did not start"
        time.sleep(1)
    run = runs[0]
    assert run["run_type"] == "scheduled"
    assert local.wait_for_run(dag_id, run["dag_run_id"]) == "success"

    listing = local.api("GET", "/gists/api/gists").json()
    assert len(listing["gists"]) == SEEDED
    assert {g["dag_id"] for g in listing["gists"]} == {dag_id}
    failed = local.api("GET", "/api/v2/dags/~/dagRuns", params={"state": "failed"}).json()
    assert failed["total_entries"] == 0


def test_down_right_after_leaves_nothing_running(local: Deployment) -> None:
    assert leftovers(local.home)
    result = local.down()
    assert result.returncode == 0, result.stderr
    assert leftovers(local.home) == []
    assert "running" not in local.run_script("status").stdout
