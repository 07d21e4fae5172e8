"""Two workers spending one key against the emulator's rate limit: per-process vs shared pacing.

Each "worker" is its own :class:`RateLimitPacers` with four threads, each thread its own
:class:`GistHook` (as the refresh engine builds them); with ``pacing_conn_id`` each worker opens
its own connection to one SQLite file, as two processes would. 429s are counted by the emulator.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_gist.client.pacing import RateLimitPacers
from airflow_provider_gist.client.shared_pacing import TABLE
from airflow_provider_gist.errors import GistError
from tests.conftest import TEST_API_KEY, twelvelabs_conn_json

pytestmark = pytest.mark.integration

#: /analyze calls per window: fewer than the two workers' threads together, so two workers
#: that each think the window is theirs send more than it allows at every window's start.
LIMIT = 4
WINDOW = 1
THREADS = 4
CALLS_PER_THREAD = 2


def _control(emu, path: str, body: Any = None) -> Any:
    response = requests.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def _analyze_counts(emu) -> tuple[int, int]:
    stats = requests.get(f"{emu.url}/_emulator/stats", timeout=10).json()
    statuses = stats["statuses"].get("POST /analyze", {})
    return stats["calls"].get("POST /analyze", 0), statuses.get("429", 0)


def _two_workers(emu) -> list[Any]:
    """Both workers' threads at once, over 2 x 4 x 2 seeded videos; their gists (or errors)."""
    from airflow_provider_gist.hooks.gist import GistHook

    seeded = _control(emu, "seed", {"count": 2 * THREADS * CALLS_PER_THREAD, "model_name": "pegasus1.2"})
    assets = [video["asset_id"] for video in seeded["videos"]]
    # Windows counted from a whole second (the limiter floors its origin), counters cleared.
    time.sleep(1 - time.time() % 1 + 0.01)
    _control(emu, "rate-limits", {"window": WINDOW, "groups": {"analyze": LIMIT}})
    requests.delete(f"{emu.url}/_emulator/stats", timeout=10).raise_for_status()
    results: list[Any] = []
    lock = threading.Lock()
    start = threading.Barrier(2 * THREADS)

    def thread(pacers: RateLimitPacers, mine: list[str]) -> None:
        hook = GistHook(pacers=pacers)
        start.wait()
        for asset_id in mine:
            try:
                outcome: Any = hook.generate_gist(asset_id=asset_id, index_id=seeded["index_id"])
            except GistError as err:
                outcome = err
            with lock:
                results.append(outcome)
        hook.close()

    threads = []
    for worker in range(2):
        pacers = RateLimitPacers()  # one per worker: nothing in memory is shared between them
        for n in range(THREADS):
            first = (worker * THREADS + n) * CALLS_PER_THREAD
            threads.append(
                threading.Thread(target=thread, args=(pacers, assets[first : first + CALLS_PER_THREAD]))
            )
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_per_process_pacing_of_two_workers_draws_429s(emu, monkeypatch):
    """The problem: each worker believes the whole window is its own."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT", twelvelabs_conn_json(emu.url, max_attempts=12, retry_deadline=60)
    )
    _two_workers(emu)
    _, throttled = _analyze_counts(emu)
    assert throttled > 0


def test_shared_pacing_keeps_two_workers_under_one_limit(emu, monkeypatch, tmp_path: Path):
    db = tmp_path / "pacing" / "windows.db"
    db.parent.mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_GIST_PACING", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(emu.url, max_attempts=12, retry_deadline=60, pacing_conn_id="gist_pacing"),
    )
    results = _two_workers(emu)
    calls, throttled = _analyze_counts(emu)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert len(results) == 2 * THREADS * CALLS_PER_THREAD
    assert throttled == 0
    assert calls == len(results)
    # One row per rate-limit group of this connection and host; the key is nowhere in the files.
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT scope, rate_group, call_limit FROM {TABLE}").fetchall()
    assert rows == [(f"twelvelabs_default {emu.url}", "analyze", LIMIT)]
    for path in db.parent.iterdir():  # the database, its WAL and shared-memory files
        assert TEST_API_KEY.encode() not in path.read_bytes()
