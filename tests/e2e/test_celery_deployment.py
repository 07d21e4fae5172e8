"""The production shape, end to end: ``scripts/airflow-local.sh up --executor celery``.

One deployment for the module (PostgreSQL metadata DB and result backend, Redis broker, API
server, scheduler, DAG processor, triggerer, two Celery workers with a disk each), with the
emulator as the API and no gist store configured at first (``GIST_LOCAL_STORE=none``). DAGs
start paused; each test unpauses the one it runs. In order:

1. with no store, the store task fails at once with the error naming ``gist_store_default``
   (read from the task log, which the API server fetches from the worker that ran the task);
2. ``gist_store_default`` is added through the REST API (as a user would in the UI; workers
   look it up through the API server), then ``gist_index_and_generate`` runs over 12 videos;
   once worker-1 has finished a task and is running another, its whole process tree is
   SIGKILLed. The run still succeeds: the lost task instances are retried on worker-2 after
   the heartbeat timeout, the emulator counts one upload, one indexing and one analysis per
   video, and every gist is stored once in PostgreSQL and listed by the gist view;
3. ``gist_catalog_refresh``, unpaused right after the kill, runs its schedule at once and
   refreshes the seeded catalog on the remaining worker;
4. ``down`` stops every process ``up`` started (including PostgreSQL and Redis).

Needs ``redis-server`` and the PostgreSQL server binaries (``apt-get install -y redis-server
postgresql``). Without them the module is skipped, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.local_deployment import (
    Deployment,
    free_port,
    kill_leftovers,
    leftovers,
    process_tree,
    remove_home,
    script_env,
    titles_in,
)
from tests.helpers.postgres import find_pg_bin

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

WORKER_1, WORKER_2 = "127.0.0.2", "127.0.0.3"  # the workers' hostnames (their loopback addresses)
PLACES = ["harbour", "mountain", "desert", "forest", "river", "island"]
ACTIVITIES = ["sailing", "climbing"]
VIDEOS = [f"https://videos.example.com/{place}_{what}.mp4" for what in ACTIVITIES for place in PLACES]
TITLES = [f"{place.title()} {what.title()}" for what in ACTIVITIES for place in PLACES]
NO_STORE_VIDEO = "https://videos.example.com/glacier_kayaking.mp4"
SEEDED = 4  # videos in the emulator's "gist-catalog" (the first look's catalog)
HEARTBEAT_TIMEOUT = 30
#: What the emulator had counted before the 12-video run (the refresh's test reads it too).
BEFORE_RUN: dict[str, Any] = {}


def _missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server (apt-get install -y redis-server)"
    if find_pg_bin() is None:
        return "the PostgreSQL server binaries (apt-get install -y postgresql)"
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError:
        return "the celery extra (pip install -e '.[celery]')"
    return None


@pytest.fixture(scope="module")
def celery() -> Iterator[Deployment]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":  # CI must run it: a skip would hide the gap
            pytest.fail(f"the Celery deployment test needs {missing}")
        pytest.skip(f"needs {missing}")
    home = Path(tempfile.mkdtemp(prefix="gist-e2e-celery-"))
    api_port = free_port()
    env = script_env(
        home,
        GIST_LOCAL_PORT=str(api_port),
        GIST_EMULATOR_PORT=str(free_port()),
        GIST_PG_PORT=str(free_port()),
        GIST_REDIS_PORT=str(free_port()),
        GIST_WORKER_LOG_PORT=str(free_port("127.0.0.1", WORKER_1, WORKER_2)),
        # An upload takes 2 s to process: ingest tasks stay running long enough to be killed.
        GIST_EMULATOR_ARGS="--asset-ready-seconds 2 --indexing-seconds 1 --analysis-slots 16 "
        "--analysis-startup-seconds 0.3 --analysis-seconds-per-minute 0.1",
        GIST_EMULATOR_SEED=str(SEEDED),
        GIST_POLL_INTERVAL="0.5",  # the example DAGs' polls (read when a DAG file is parsed)
        GIST_HEARTBEAT_TIMEOUT=str(HEARTBEAT_TIMEOUT),
        GIST_QUEUED_TIMEOUT="60",
        GIST_LOCAL_DAGS_PAUSED="True",
        GIST_LOCAL_STORE="none",
        GIST_HEALTH_TIMEOUT="240",
        GIST_STOP_GRACE="20",
        PYTHONDONTWRITEBYTECODE="1",
    )
    dep = Deployment(home=home, env=env, url=f"http://127.0.0.1:{api_port}")
    try:
        dep.up("--executor", "celery")
        for dag_id in ("gist_index_and_generate", "gist_catalog_refresh"):
            dep.wait_for_dag(dag_id)
        yield dep
    finally:
        dep.down()
        kill_leftovers(home)
        remove_home(home)


def emulator(dep: Deployment, path: str) -> dict[str, Any]:
    resp = requests.get(f"http://127.0.0.1:{dep.env['GIST_EMULATOR_PORT']}{path}", timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def gists_db(dep: Deployment, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query in the deployment's PostgreSQL database ``gists``."""
    import psycopg

    uri = (
        f"postgresql://gist_store:{dep.secrets['GIST_LOCAL_STORE_PASSWORD']}@127.0.0.1:"
        f"{dep.env['GIST_PG_PORT']}/gists"
    )
    with psycopg.connect(uri, connect_timeout=10) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def store_rows(dep: Deployment, dag_id: str) -> list[tuple[str, str, str]]:
    """(index_id, video_ref, title) of every gist ``dag_id`` stored in the deployment's PostgreSQL."""
    rows = gists_db(dep, "SELECT index_id, video_ref, title FROM video_gists WHERE dag_id = %s", dag_id)
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def test_without_a_store_the_store_task_fails_naming_the_connection(celery: Deployment) -> None:
    dag_id = "gist_index_and_generate"
    celery.unpause(dag_id)
    # Not one of VIDEOS: an upload is reused across runs, and the next test counts uploads.
    conf = {"video_urls": [NO_STORE_VIDEO], "index_name": "e2e-no-store", "types": ["title"]}
    run_id = celery.trigger(dag_id, conf)
    assert celery.wait_for_run(dag_id, run_id) == "failed"

    tis = {ti["task_id"]: ti for ti in celery.task_instances(dag_id, run_id)}
    store = tis["video.store_gist"]
    assert store["state"] == "failed"
    assert store["try_number"] == 1  # a configuration error is not retried
    assert tis["video.generate_gist"]["state"] == "success"  # everything up to the store worked
    text = celery.task_log(store)
    assert "GistConfigError" in text
    assert "gist_store_default" in text
    assert store["hostname"] in (WORKER_1, WORKER_2)
    assert f"http://{store['hostname']}:" in text  # served by that worker's own log server


def test_twelve_videos_survive_losing_a_worker(celery: Deployment) -> None:
    # The deployment's store, added as a user would (REST = the UI's Admin > Connections).
    resp = celery.api(
        "POST",
        "/api/v2/connections",
        json={
            "connection_id": "gist_store_default",
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": int(celery.env["GIST_PG_PORT"]),
            "login": "gist_store",
            "password": celery.secrets["GIST_LOCAL_STORE_PASSWORD"],
            "schema": "gists",
        },
    )
    assert resp.status_code == 201, resp.text

    dag_id = "gist_index_and_generate"
    before = BEFORE_RUN["stats"] = emulator(celery, "/_emulator/stats")
    run_id = celery.trigger(dag_id, {"video_urls": VIDEOS, "index_name": "e2e-celery"})

    # Kill worker-1 once it has finished a task of this run and is running another.
    deadline = time.monotonic() + 180
    while True:
        tis = celery.task_instances(dag_id, run_id)
        on_1 = [ti for ti in tis if ti["hostname"] == WORKER_1]
        if any(ti["state"] == "success" for ti in on_1) and any(ti["state"] == "running" for ti in on_1):
            break
        state = celery.run_state(dag_id, run_id)
        assert state in ("queued", "running"), f"the run ended ({state}) before worker-1 could be killed"
        assert time.monotonic() < deadline, f"worker-1 never ran a task of the run: {tis}"
        time.sleep(0.3)
    for pid in process_tree(celery.pid("worker-1")):  # the Celery main process and every child
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lost = {
        (ti["task_id"], ti["map_index"]): ti["try_number"]
        for ti in celery.task_instances(dag_id, run_id)
        if ti["hostname"] == WORKER_1 and ti["state"] == "running"
    }
    assert lost, "the kill came after worker-1's tasks had finished"
    assert "worker-1        stopped" in celery.run_script("status").stdout
    # While the lost tasks wait for their retry, the scheduled refresh gets going on the one
    # worker left (checked by the next test). Once a gist is stored: the store's table exists.
    deadline = time.monotonic() + 180
    while not any(
        ti["task_id"] == "video.store_gist" and ti["state"] == "success"
        for ti in celery.task_instances(dag_id, run_id)
    ):
        assert time.monotonic() < deadline, "no gist was stored after the kill"
        time.sleep(1)
    celery.unpause("gist_catalog_refresh")

    assert celery.wait_for_run(dag_id, run_id, timeout=360) == "success"
    tis = celery.task_instances(dag_id, run_id)
    by_key = {(ti["task_id"], ti["map_index"]): ti for ti in tis}
    for key, try_number in lost.items():
        retried = by_key[key]
        assert retried["state"] == "success", retried
        assert retried["try_number"] > try_number, retried  # retried, after the heartbeat timeout
        assert retried["hostname"] == WORKER_2, retried
    assert {ti["hostname"] for ti in tis if ti["state"] == "success"} >= {WORKER_1, WORKER_2}

    # No video uploaded, indexed or analysed twice: one create of each per video.
    after = emulator(celery, "/_emulator/stats")

    def calls(op: str) -> int:
        return int(after["calls"].get(op, 0)) - int(before["calls"].get(op, 0))

    assert calls("POST /assets") == len(VIDEOS)
    assert calls("POST /indexes/{index-id}/indexed-assets") == len(VIDEOS)
    assert calls("POST /analyze/tasks") == len(VIDEOS)
    created = {k: int(v) - int(before["created"].get(k, 0)) for k, v in after["created"].items()}
    assert created.get("analysis_tasks") == len(VIDEOS), created

    # Every gist stored once, in the one store, and shown by the gist view.
    rows = store_rows(celery, dag_id)
    assert sorted(title for _, _, title in rows) == sorted(TITLES)
    assert len({ref for _, ref, _ in rows}) == len(VIDEOS)
    index_id = rows[0][0]
    listing = celery.api("GET", "/gists/api/gists", params={"index_id": index_id, "page_size": 100}).json()
    assert sorted(g["title"] for g in listing["gists"]) == sorted(TITLES)
    page = celery.api("GET", "/gists/", params={"index_id": index_id, "page_size": 100})
    assert page.status_code == 200
    assert titles_in(page.text, TITLES) == []

    # Both workers spent one API budget: the rate-limited groups' windows live in the shared
    # table (pacing_conn_id = gist_pacing), one row per group, none per worker or holding the key.
    windows = gists_db(celery, "SELECT scope, rate_group FROM gist_rate_windows")
    groups = {group for _, group in windows}
    assert {"upload", "index", "analyze_async"} <= groups, windows
    assert len(windows) == len(groups)  # one scope (connection + host), not one per worker
    assert celery.secrets.get("GIST_EMULATOR_KEY", "\0") not in repr(windows)


def test_the_scheduled_refresh_refreshes_the_seeded_catalog(celery: Deployment) -> None:
    """Unpaused by the previous test right after the kill, so it ran on worker-2 alone."""
    dag_id = "gist_catalog_refresh"
    deadline = time.monotonic() + 60
    while not (runs := celery.runs(dag_id)):
        assert time.monotonic() < deadline, "unpausing created no scheduled run"
        time.sleep(1)
    assert len(runs) == 1
    run_id = runs[0]["dag_run_id"]
    assert run_id.startswith("scheduled__")  # its daily schedule fired when it was unpaused
    assert celery.wait_for_run(dag_id, run_id) == "success"

    tis = celery.task_instances(dag_id, run_id)
    assert {ti["hostname"] for ti in tis if ti["state"] == "success"} == {WORKER_2}  # worker-1 is gone
    after = emulator(celery, "/_emulator/stats")
    # The one sync analysis per seeded video is the refresh's: the 12 videos went through tasks.
    before = BEFORE_RUN["stats"]["calls"]
    assert int(after["calls"].get("POST /analyze", 0)) - int(before.get("POST /analyze", 0)) == SEEDED
    assert len(store_rows(celery, dag_id)) == SEEDED


def test_down_stops_everything_up_started(celery: Deployment) -> None:
    assert leftovers(celery.home), "nothing of the deployment is running before down"
    result = celery.down()
    assert result.returncode == 0, result.stderr
    assert leftovers(celery.home) == []
    assert not list((celery.home / "pids").glob("*.pid"))
    assert "postgres        stopped" in celery.run_script("status").stdout
