"""Soak: the example DAG over many videos against a rate-limited, failing emulator.

    .venv/bin/python bench/soak.py --videos 50 --error-rate 0.05 --overload 2

Starts the TwelveLabs emulator as a child process (its own interpreter) with every endpoint
group limited (``--group-limit``, fixed windows) to ``1/overload`` of the request rate this
run offers it when unthrottled (``UNTHROTTLED_RATES``, measured with ``--calibrate``), plus
``--error-rate`` random 500 / 502 (HTML) / 503 answers on any API request. Then runs
``dags/gist_index_and_generate.py`` with ``dag.test()`` over ``--videos`` distinct URLs and
checks what matters:

* every video's gist is stored exactly once (one row per video, complete);
* nothing was uploaded, indexed or analysed twice (the API's own listings and 2xx create
  counts: one asset, indexed asset and analysis task per video);
* the limits really bit (429s) and the faults really fired (5xx).

Prints the figures as JSON (duration, calls, 429s, faults, task retries) and exits non-zero if
a check fails. ``tests/reliability/test_soak.py`` (marker ``soak``) runs the same ``soak()``.

The Airflow metadata DB and the gist store live in a throwaway ``AIRFLOW_HOME`` (migrated on
start, ~15 s), never in a deployment's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# The emulator's own grouping of operations into rate-limit groups (no Airflow import).
from airflow_provider_gist.emulator.faults import GROUPS, group_of  # noqa: E402

API_KEY = "tlk_soak_key_7e1d4c2b9a"  # the emulator's key for this run only
#: The connection's create_lookup_seconds: the emulator lists a create at once (no listing lag),
#: so a short window keeps each injected 5xx on a create from costing the default minute.
SOAK_LOOKUP_SECONDS = 3
WORDS = (
    "harbour", "sunrise", "fishing", "mountain", "trail", "running", "night", "market", "street",
    "food", "river", "kayak", "desert", "storm", "city", "cycling", "forest", "camp", "winter",
    "ski", "island", "ferry", "jazz", "club", "garden", "bees",
)  # fmt: skip

#: Requests per second each endpoint group the DAG uses receives while in use when nothing is
#: limited (``--calibrate`` -> ``busy_rates_per_second``; 50 videos, dag.test() on 2 busy cores,
#: gists through analysis tasks (``analyze_async``), their polls and the indexing polls in
#: ``read``: the 50 uploads take ~37 s, the 50 analyses ~50 s). Limits are these divided by
#: ``overload``.
UNTHROTTLED_RATES: dict[str, float] = {"analyze_async": 1.0, "upload": 1.36, "index": 1.36, "read": 5.3}


def video_urls(count: int) -> list[str]:
    """``count`` distinct, deterministic URLs whose file names make distinct titles."""
    urls = []
    for n in range(count):
        a, b, c = WORDS[n % len(WORDS)], WORDS[(n // len(WORDS) + 3 * n + 1) % len(WORDS)], f"take{n}"
        urls.append(f"https://videos.example.com/soak/{n:03d}/{a}_{b}_{c}.mp4")
    return urls


def group_limits(overload: float, window: float) -> dict[str, int]:
    """Per-group limits per window so that the unthrottled demand is ``overload`` times the limit."""
    return {g: max(1, math.floor(rate * window / overload)) for g, rate in UNTHROTTLED_RATES.items()}


#: Seconds between a task's tries (the DAG's own delay is 30 s). dag.test() runs one task at a
#: time, so a lane waiting out its delay at the end of the run only adds idle minutes; a shorter
#: delay makes a duplicate likelier (the retry comes sooner after a create that may have acted),
#: never rarer, so the soak checks no less with it. ``--retry-delay 30`` runs the DAG's pace.
SOAK_RETRY_DELAY = 2.0
#: The emulator's analysis tasks take a fraction of a second (16 slots, 0.1 s pending, 0.05 s per
#: video minute) instead of its default seconds per minute: dag.test() waits for each deferred
#: generate_gist in turn, so at the default pace the 50 analyses alone took about 15 minutes of
#: the soak, and nothing the soak checks (stored once, created once, limits and faults hit) depends
#: on how long an analysis lasts.
ANALYSIS_ARGS = [
    "--analysis-slots", "16", "--analysis-startup-seconds", "0.1", "--analysis-seconds-per-minute", "0.05",
]  # fmt: skip


def emulator_args(limits: dict[str, int] | None, window: float, error_rate: float, seed: int) -> list[str]:
    args = ["--asset-ready-seconds", "0.3", "--indexing-seconds", "0.6", "--seed", str(seed), *ANALYSIS_ARGS]
    args += ["--error-rate", str(error_rate), "--rate-window", str(window)]
    for group, limit in (limits or {}).items():
        args += ["--group-limit", f"{group}={limit}"]
    return args


@dataclass
class SoakResult:
    ok: bool
    problems: list[str]
    figures: dict[str, Any]


def _task_tries(run: Any) -> Counter[str]:
    tries: Counter[str] = Counter()
    for ti in run.get_task_instances():
        tries[f"{ti.task_id}:{ti.state}"] += 1
        if (ti.try_number or 1) > 1:
            tries[f"{ti.task_id}:retried"] += 1
    return tries


def soak(
    emulator_url: str,
    api_key: str,
    videos: int,
    *,
    index_name: str = "soak",
    retry_delay: float | None = None,
    journal_out: str | None = None,
) -> SoakResult:
    """Run the example DAG over ``videos`` URLs against the emulator at ``emulator_url``; check it.

    Airflow must already be configured (AIRFLOW_HOME, a migrated metadata DB) and
    ``AIRFLOW_CONN_TWELVELABS_DEFAULT`` must point at the emulator with ``api_key``.
    """
    import requests
    from airflow.dag_processing.dagbag import DagBag

    from airflow_provider_gist.storage.sql import SqlGistStore

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["gist_index_and_generate"]
    if retry_delay is not None:
        # dag.test() waits out each retry's delay in its (sequential) loop; a shorter delay only
        # makes duplicates likelier (the retry comes sooner after the failed create), never rarer.
        for task in dag.tasks:
            task.retry_delay = timedelta(seconds=retry_delay)
    urls = video_urls(videos)
    headers = {"x-api-key": api_key}

    started = time.monotonic()
    run = dag.test(run_conf={"video_urls": urls, "index_name": index_name})
    elapsed = time.monotonic() - started

    # The checks read the API's own listings as ground truth: with the random 5xx switched off, so
    # that a fault injected into a check cannot fail the soak.
    requests.delete(f"{emulator_url}/_emulator/faults", timeout=10).raise_for_status()
    stats = requests.get(f"{emulator_url}/_emulator/stats", timeout=10).json()
    statuses = stats["statuses"]

    def ok_count(op: str) -> int:
        return sum(n for status, n in statuses.get(op, {}).items() if status.startswith("2"))

    def listed(path: str) -> int:
        resp = requests.get(
            f"{emulator_url}/v1.3/{path}", params={"page_limit": 1}, headers=headers, timeout=10
        )
        resp.raise_for_status()
        return int(resp.json()["page_info"]["total_results"])

    indexes = requests.get(
        f"{emulator_url}/v1.3/indexes", params={"index_name": index_name}, headers=headers, timeout=10
    ).json()["data"]
    index_id = indexes[0]["_id"] if indexes else None
    store = SqlGistStore()
    rows = store.list_gists(index_id=index_id, limit=10 * videos) if index_id else []
    keys = Counter((r["index_id"], r["video_ref"]) for r in rows)
    five_xx = sum(n for by in statuses.values() for s, n in by.items() if s.startswith("5"))

    problems = []
    if str(run.state) != "success":
        problems.append(f"the DAG run ended {run.state}")
    if len(rows) != videos:
        problems.append(f"{len(rows)} gists stored for {videos} videos")
    if any(n > 1 for n in keys.values()):
        problems.append("a video has more than one stored gist")
    if any(not (r["title"] and r["topics"] and r["hashtags"]) for r in rows):
        problems.append("a stored gist is incomplete")
    assets, indexed = listed("assets"), listed(f"indexes/{index_id}/indexed-assets") if index_id else 0
    if assets != videos or ok_count("POST /assets") != videos:
        problems.append(
            f"{assets} assets exist, {ok_count('POST /assets')} uploads handled, for {videos} videos"
        )
    if indexed != videos or ok_count("POST /indexes/{index-id}/indexed-assets") != videos:
        problems.append(f"{indexed} indexed assets for {videos} videos")
    # Each analysis task is billed: one per video, however many tries its generate_gist took.
    analysis_tasks = listed("analyze/tasks")
    if analysis_tasks != videos or ok_count("POST /analyze/tasks") != videos:
        problems.append(
            f"{analysis_tasks} analysis tasks exist, {ok_count('POST /analyze/tasks')} creates handled, "
            f"for {videos} videos"
        )

    journal = requests.get(f"{emulator_url}/_emulator/journal", timeout=10).json()["entries"]
    if journal_out is not None:
        Path(journal_out).write_text(json.dumps(journal))
    figures = {
        "videos": videos,
        "dag_run_state": str(run.state),
        "seconds": round(elapsed, 1),
        "gists_stored": len(rows),
        "assets": assets,
        "indexed_assets": indexed,
        "analysis_tasks": analysis_tasks,
        "requests": stats["total_requests"],
        "requests_per_second": round(stats["total_requests"] / elapsed, 2),
        "calls": stats["calls"],
        "responses_429": stats["total_429"],
        "responses_5xx": five_xx,
        "faults": stats["faults"],
        "task_instances": dict(sorted(_task_tries(run).items())),
        "busy_rates_per_second": busy_rates(journal),
    }
    return SoakResult(not problems, problems, figures)


def busy_rates(journal: list[dict[str, Any]]) -> dict[str, float]:
    """Requests per second of each group over the span it was in use (first to last request).

    dag.test() runs the lanes' tasks roughly phase by phase (all uploads, then all waits, then
    all analyses), so this, not the run's average, is the demand a limit has to be compared with.
    """
    times: dict[str, list[float]] = {}
    for entry in journal:
        if entry.get("operation"):
            times.setdefault(group_of(entry["operation"]), []).append(entry["time"])
    return {
        group: round(len(ts) / max(ts[-1] - ts[0], 1e-3), 2)
        for group, ts in sorted(times.items())
        if len(ts) > 1
    }


def _prepare_airflow(home: Path) -> None:
    """A throwaway AIRFLOW_HOME with a migrated SQLite metadata DB (before airflow is imported)."""
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("GIST_POLL_INTERVAL", "0.2")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--overload", type=float, default=2.0, help="unthrottled demand / limit")
    parser.add_argument("--window", type=float, default=5.0, help="rate-limit window, seconds")
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=SOAK_RETRY_DELAY,
        help="seconds between task tries, instead of the DAG's 30 (default %(default)s)",
    )
    parser.add_argument("--journal-out", help="write the emulator's request journal (JSON) here")
    parser.add_argument("--calibrate", action="store_true", help="no limits, no faults: measure the rates")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="gist-soak-"))
    _prepare_airflow(home)
    from airflow_provider_gist.emulator.server import EmulatorProcess

    limits = None if args.calibrate else group_limits(args.overload, args.window)
    error_rate = 0.0 if args.calibrate else args.error_rate
    emu = EmulatorProcess(emulator_args(limits, args.window, error_rate, args.seed), api_key=API_KEY)
    try:
        os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
            {
                "conn_type": "twelvelabs",
                "host": emu.url,
                "password": API_KEY,
                "extra": {"retry_deadline": 120, "create_lookup_seconds": SOAK_LOOKUP_SECONDS},
            }
        )
        result = soak(
            emu.url, API_KEY, args.videos, retry_delay=args.retry_delay, journal_out=args.journal_out
        )
    finally:
        emu.stop()
    figures = result.figures
    figures["limits_per_window"] = limits
    figures["window_seconds"] = args.window
    figures["error_rate"] = error_rate
    figures["retry_delay_seconds"] = args.retry_delay
    if args.calibrate:
        seconds = figures["seconds"]
        per_group: Counter[str] = Counter()
        for op, n in figures["calls"].items():
            per_group[group_of(op)] += n
        figures["rates_per_second"] = {g: round(per_group[g] / seconds, 2) for g in GROUPS}
    print(json.dumps({"ok": result.ok, "problems": result.problems, **figures}, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
