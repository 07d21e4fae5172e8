"""Benchmark: two catalog refreshes on the two workers of the real Celery deployment, one API key.

    .venv/bin/python bench/celery_pacing.py                 # about 8 minutes

The Celery variant of ``bench/shared_pacing.py`` (same emulator limit, same floor): brings up
``scripts/airflow-local.sh up --executor celery`` in a throwaway home on free loopback ports
(PostgreSQL, Redis, API server, scheduler, DAG processor, triggerer, two workers with one task
slot each, so that the two refreshes of a leg land on different workers), with the emulator
limiting ``/analyze`` to ``--rate-limit`` calls per ``--rate-window`` and a DAGs folder that
holds one small DAG: a single ``RefreshGistsOperator`` (sync analysis, 16 threads, no
``max_videos`` cap) whose index and TwelveLabs connection come from the run's params.

Two legs, each over two fresh indexes of ``--videos`` ready videos, both runs triggered at once:

  per-process  a second TwelveLabs connection, added through the REST API with the same host
               and key but no ``pacing_conn_id``: each task paces from the headers it sees
  shared       ``twelvelabs_default``, which the script sets up with ``pacing_conn_id:
               gist_pacing`` (one window for both workers, kept in PostgreSQL)

Calls and 429s are counted by the emulator (``/_emulator/stats``, cleared when a leg starts),
gists stored are counted in the deployment's store (PostgreSQL). Wall time runs from the
earlier of the two refresh tasks' start to the later one's end (as Airflow recorded them), so
it includes each task's start-up, listing and planning. The floor is ``bench/shared_pacing.py``'s.
``down`` runs at the end whatever happened.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.shared_pacing import MODEL, Emu, floor_seconds, strict_floor_seconds  # noqa: E402
from tests.e2e.local_deployment import (  # noqa: E402
    Deployment,
    free_port,
    kill_leftovers,
    leftovers,
    remove_home,
    script_env,
    tail,
)

DAG_ID = "gist_bench_refresh"
TASK_ID = "refresh_gists"
PER_PROCESS_CONN_ID = "twelvelabs_per_process"
WORKER_ADDRESSES = ("127.0.0.2", "127.0.0.3")  # the script's worker hostnames
LEGS = {"per-process": PER_PROCESS_CONN_ID, "shared": "twelvelabs_default"}

# Written into the deployment's DAGs folder. Retries off: a retry would add a second try's
# calls and time to the leg's figures.
BENCH_DAG = textwrap.dedent(
    f'''\
    """Bench only (bench/celery_pacing.py): one refresh of params.index through params.conn_id."""

    import pendulum
    from airflow.sdk import DAG, Param

    from airflow_provider_gist.operators.refresh import RefreshGistsOperator

    with DAG(
        dag_id="{DAG_ID}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=4,
        params={{"index": Param("", type="string"), "conn_id": Param("twelvelabs_default", type="string")}},
    ):
        RefreshGistsOperator(
            task_id="{TASK_ID}",
            index="{{{{ params.index }}}}",
            twelvelabs_conn_id="{{{{ params.conn_id }}}}",
            analysis="sync",
            concurrency={{concurrency}},
            max_videos=None,
            retries=0,
        )
    '''
)


def parse_time(value: str | None) -> float:
    if not value:
        raise RuntimeError("a refresh task has no start or end time")
    return datetime.fromisoformat(value).timestamp()


def stored_gists(dep: Deployment, index_ids: list[str]) -> int:
    """Rows the refreshes wrote to the deployment's store (PostgreSQL database ``gists``)."""
    import psycopg

    uri = (
        f"postgresql://gist_store:{dep.secrets['GIST_LOCAL_STORE_PASSWORD']}@127.0.0.1:"
        f"{dep.env['GIST_PG_PORT']}/gists"
    )
    with psycopg.connect(uri, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM video_gists WHERE index_id = ANY(%s)", (index_ids,)
        ).fetchone()
    return int(row[0]) if row else 0


def summary_of(dep: Deployment, run_id: str) -> dict[str, Any]:
    """The refresh's returned summary (XCom), or {} when the API does not give it as an object."""
    path = (
        f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{TASK_ID}"
        "/xcomEntries/return_value"
    )
    resp = dep.api("GET", path, params={"deserialize": "true"})
    value = resp.json().get("value") if resp.ok else None
    return value if isinstance(value, dict) else {}


def run_leg(
    dep: Deployment, emu: Emu, leg: str, indexes: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Both refreshes of one leg triggered together; the combined figures."""
    emu.realign(args.rate_limit, args.rate_window)  # fresh windows, counters cleared
    triggered = time.time()
    run_ids = [dep.trigger(DAG_ID, {"index": index, "conn_id": LEGS[leg]}) for index in indexes]
    states = [dep.wait_for_run(DAG_ID, run_id, timeout=args.timeout) for run_id in run_ids]
    calls, throttled = emu.analyze_counts()
    tis = [
        next(ti for ti in dep.task_instances(DAG_ID, run_id) if ti["task_id"] == TASK_ID)
        for run_id in run_ids
    ]
    summaries = [summary_of(dep, run_id) for run_id in run_ids]
    started = min(parse_time(ti["start_date"]) for ti in tis)
    ended = max(parse_time(ti["end_date"]) for ti in tis)
    return {
        "states": states,
        "hosts": [str(ti["hostname"]) for ti in tis],
        "task_walls": [parse_time(ti["end_date"]) - parse_time(ti["start_date"]) for ti in tis],
        "start_skew": abs(parse_time(tis[0]["start_date"]) - parse_time(tis[1]["start_date"])),
        "wall": ended - started,
        "trigger_to_end": ended - triggered,
        "calls": calls,
        "throttled": throttled,
        "generated": sum(int(s.get("generated", 0)) for s in summaries),
        "failed": sum(int(s.get("failed", 0)) for s in summaries),
        "stored": stored_gists(dep, indexes),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=500, help="videos per refresh (default 500)")
    p.add_argument("--rate-limit", type=int, default=50, help="analyze calls per window (default 50)")
    p.add_argument("--rate-window", type=float, default=5.0, help="window seconds (default 5)")
    p.add_argument("--analyze-latency", type=float, default=0.3, help="seconds per analyze call (0.3)")
    p.add_argument("--concurrency", type=int, default=16, help="threads per refresh (default 16)")
    p.add_argument("--only", choices=list(LEGS), action="append", help="run only these legs")
    p.add_argument("--timeout", type=float, default=900, help="seconds a leg may take (default 900)")
    p.add_argument("--keep-home", action="store_true", help="keep the deployment's home (its logs)")
    args = p.parse_args(argv)
    legs = args.only or list(LEGS)

    home = Path(tempfile.mkdtemp(prefix="gist-bench-celery-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(BENCH_DAG.replace("{concurrency}", str(args.concurrency)))
    api_port, emu_port = free_port(), free_port()
    env = script_env(
        home,
        GIST_LOCAL_PORT=str(api_port),
        GIST_EMULATOR_PORT=str(emu_port),
        GIST_PG_PORT=str(free_port()),
        GIST_REDIS_PORT=str(free_port()),
        GIST_WORKER_LOG_PORT=str(free_port("127.0.0.1", *WORKER_ADDRESSES)),
        GIST_EMULATOR_ARGS=f"--rate-limit {args.rate_limit} --rate-window {args.rate_window:g} "
        f"--analyze-latency {args.analyze_latency:g}",
        GIST_EMULATOR_SEED="0",
        GIST_LOCAL_DAGS_FOLDER=str(dags),
        GIST_LOCAL_DAGS_PAUSED="True",
        # One slot per worker: two refreshes started together take one worker each.
        GIST_CELERY_CONCURRENCY="1",
        GIST_HEALTH_TIMEOUT="300",
        GIST_STOP_GRACE="20",
        PYTHONDONTWRITEBYTECODE="1",
    )
    dep = Deployment(home=home, env=env, url=f"http://127.0.0.1:{api_port}")
    print(
        f"Celery deployment: 2 workers x 1 slot; emulator: one key, /analyze limited to "
        f"{args.rate_limit} calls per {args.rate_window:g}s fixed window, {args.analyze_latency:g}s per "
        f"call; 2 refreshes x {args.videos} videos, {args.concurrency} threads each",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        began = time.monotonic()
        dep.up("--executor", "celery")
        print(f"up in {time.monotonic() - began:.0f}s; home {home}", flush=True)
        dep.wait_for_dag(DAG_ID)
        dep.unpause(DAG_ID)
        emu = Emu(f"http://127.0.0.1:{emu_port}")
        if "per-process" in legs:
            resp = dep.api(
                "POST",
                "/api/v2/connections",
                json={
                    "connection_id": PER_PROCESS_CONN_ID,
                    "conn_type": "twelvelabs",
                    "description": "bench: the same key, pacing per process (no pacing_conn_id)",
                    "host": emu.url,
                    "password": dep.secrets["GIST_EMULATOR_KEY"],
                },
            )
            if resp.status_code != 201:
                raise RuntimeError(f"could not add {PER_PROCESS_CONN_ID}: {resp.status_code}")
        for leg in legs:
            indexes = [
                emu.post(
                    "seed", {"index_name": f"bench-{leg}-{n}", "count": args.videos, "model_name": MODEL}
                )["index_id"]
                for n in range(2)
            ]
            print(f"running {leg} (connection {LEGS[leg]}) ...", flush=True)
            results[leg] = r = run_leg(dep, emu, leg, indexes, args)
            print(
                f"  runs {', '.join(r['states'])}; refresh tasks on {', '.join(r['hosts'])} "
                f"(started {r['start_skew']:.1f}s apart; each took "
                f"{', '.join(f'{w:.1f}s' for w in r['task_walls'])})",
                flush=True,
            )
            if sorted(r["hosts"]) != sorted(WORKER_ADDRESSES):
                print("  WARNING: the two refreshes did not run on the two different workers", flush=True)
    except BaseException:
        logs = home / "logs" / "components"
        for name in ("scheduler", "worker-1", "worker-2", "emulator"):
            print(f"--- {name}.log\n{tail(logs / f'{name}.log', 25)}", file=sys.stderr)
        raise
    finally:
        down = dep.down()
        if down.returncode != 0:
            print(f"down failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)
        left = leftovers(home)
        if left:
            print(f"left running after down (now killed): {left}", file=sys.stderr)
            kill_leftovers(home)
        if args.keep_home:
            print(f"home kept: {home}")
        else:
            remove_home(home)

    header = (
        f"{'pacing':<13}{'videos':>7}{'analyze':>9}{'429s':>7}{'429 %':>7}{'wall s':>9}"
        f"{'floor s':>9}{'wall/floor':>11}{'strict s':>10}{'wall/strict':>12}"
        f"{'generated':>10}{'stored':>8}{'failed':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for leg, r in results.items():
        ok = r["calls"] - r["throttled"]
        floor = floor_seconds(ok, args.rate_limit, args.rate_window)
        strict = strict_floor_seconds(ok, args.rate_limit, args.rate_window, args.analyze_latency)
        r.update(floor=floor, strict=strict)
        print(
            f"{leg:<13}{2 * args.videos:>7}{r['calls']:>9}{r['throttled']:>7}"
            f"{100 * r['throttled'] / max(r['calls'], 1):>6.1f}%{r['wall']:>9.1f}{floor:>9.1f}"
            f"{r['wall'] / floor if floor else float('nan'):>10.2f}x{strict:>10.1f}"
            f"{r['wall'] / strict if strict else float('nan'):>11.2f}x"
            f"{r['generated']:>10}{r['stored']:>8}{r['failed']:>8}"
        )
    for leg, r in results.items():
        print(f"{leg}: hosts {', '.join(r['hosts'])}; trigger to last end {r['trigger_to_end']:.1f}s")
    if "shared" in results:
        r = results["shared"]
        share = r["throttled"] / max(r["calls"], 1)
        ratio = r["wall"] / r["floor"] if r["floor"] else float("inf")
        complete = r["stored"] == 2 * args.videos
        verdict = "met" if share <= 0.05 and ratio <= 1.15 and complete else "NOT met"
        print(
            f"\ntargets with shared pacing (429s <= 5% of calls, wall <= 1.15x floor, all stored): {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
