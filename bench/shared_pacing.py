"""Benchmark: two catalog refreshes on two "workers" spending ONE API key's rate limit.

    .venv/bin/python bench/shared_pacing.py                 # about 4 minutes
    .venv/bin/python bench/shared_pacing.py --pacing-uri postgresql://user@127.0.0.1:5432/db

Starts the TwelveLabs emulator (one key, a fixed-window limit on ``/analyze``, a per-call
latency), seeds two indexes of ``--videos`` videos, then for each pacing mode starts two
refreshes together as two separate OS processes, each with its own ``AIRFLOW_HOME`` and
``TMPDIR`` (as on two Celery workers; each stores its gists in its own SQLite file):

  per-process  today's default: each process paces from the ``X-Ratelimit-*`` headers it sees,
               believing the whole window is its own
  shared       the connection's ``pacing_conn_id`` names one pacing store that both reach (a
               SQLite file here, or PostgreSQL with ``--pacing-uri``): one window for both

Each child runs :class:`~airflow_provider_gist.refresh.engine.GistRefresher` (the engine of
``RefreshGistsOperator``) with the operator's default concurrency. Both children import and
connect first, then report ready; the parent realigns the emulator's windows to a whole
second, clears its counters and tells both to go at once. Calls and 429s are counted by the
emulator (``/_emulator/stats``), not by the clients. The floor is what the limit allows for
the combined successful analyze calls: ``ceil(calls / limit)`` windows x the window length;
``strict`` is the tighter ``(windows - 1) x window + one call's latency`` (the last window
needs only its calls).
"""

from __future__ import annotations

import argparse
import json
import math
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The emulator control client and the model, shared with the catalog refresh bench.
from bench.catalog_refresh import MODEL, Emu, child_env, emulator_rate_args  # noqa: E402

MODES = ("per-process", "shared")
PACING_CONN_ID = "gist_pacing"
WORKERS = 2


def floor_seconds(calls: int, limit: int, window: float) -> float:
    """The brief's floor: the windows the calls need, each a whole window long."""
    return math.ceil(calls / limit) * window if calls > 0 else 0.0


def strict_floor_seconds(calls: int, limit: int, window: float, latency: float) -> float:
    """The least time fixed windows allow: the last window needs only one call's latency."""
    return (math.ceil(calls / limit) - 1) * window + latency if calls > 0 else 0.0


# ------------------------------------------------------------------------------------ child side


def child(args: argparse.Namespace) -> int:
    """One worker: build the refresher, say ready, wait for "go", refresh one index, print JSON."""
    from airflow_provider_gist.refresh.engine import GistRefresher
    from airflow_provider_gist.storage import SqlGistStore

    store = SqlGistStore()  # the embedded SQLite file under this worker's own AIRFLOW_HOME
    store.ensure_table()
    refresher = GistRefresher(store=store, concurrency=args.concurrency)
    refresher.resolve_index(args.index)  # connection, settings and first call before the clock starts
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    started = time.time()
    summary = refresher.run(args.index)
    print(
        json.dumps(
            {
                "started": started,
                "ended": time.time(),
                "generated": summary.generated,
                "failed": summary.failed,
                "stored": store.count(summary.index_id),
            }
        ),
        flush=True,
    )
    return 0


# ----------------------------------------------------------------------------------- parent side


def pacing_conn(args: argparse.Namespace, workdir: Path) -> str:
    """``AIRFLOW_CONN_GIST_PACING``: PostgreSQL from ``--pacing-uri``, else one SQLite file for both."""
    if not args.pacing_uri:
        return json.dumps({"conn_type": "sqlite", "host": str(workdir / "pacing.db")})
    parts = urlsplit(args.pacing_uri)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "login": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "schema": parts.path.lstrip("/") or "postgres",
        }
    )


def run_mode(
    mode: str, emu: Emu, api_key: str, indexes: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Both workers at once under one pacing mode; the combined figures."""
    extra: dict[str, Any] = {}  # the connection's defaults for retries: what a user gets
    with tempfile.TemporaryDirectory(prefix=f"gist-bench-pacing-{mode}-") as work:
        workdir = Path(work)
        if mode == "shared":
            extra["pacing_conn_id"] = PACING_CONN_ID
        children = []
        for n, index in enumerate(indexes):
            home, tmp = workdir / f"worker{n}" / "home", workdir / f"worker{n}" / "tmp"
            home.mkdir(parents=True)
            tmp.mkdir(parents=True)
            env = child_env(
                home,
                TMPDIR=str(tmp),
                AIRFLOW_CONN_TWELVELABS_DEFAULT=json.dumps(
                    {"conn_type": "twelvelabs", "host": emu.url, "password": api_key, "extra": extra}
                ),
            )
            if mode == "shared":
                env[f"AIRFLOW_CONN_{PACING_CONN_ID.upper()}"] = pacing_conn(args, workdir)
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                "--index",
                index,
                "--concurrency",
                str(args.concurrency),
            ]
            children.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=open(workdir / f"worker{n}.log", "w"),  # noqa: SIM115 (closed with the dir)
                    text=True,
                )
            )
        try:
            for proc in children:
                assert proc.stdout is not None
                ready, _, _ = select.select([proc.stdout], [], [], 120)
                line = proc.stdout.readline().strip() if ready else ""
                if line != "ready":
                    raise RuntimeError(f"a worker did not start: {line!r}\n{_logs(workdir)}")
            emu.realign(args.rate_limit, args.rate_window)
            go = time.time()
            for proc in children:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = []
            for proc in children:
                out, _ = proc.communicate(timeout=3600)
                if proc.returncode != 0:
                    raise RuntimeError(f"a worker failed ({proc.returncode}):\n{_logs(workdir)}")
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for proc in children:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    calls, throttled = emu.analyze_counts()
    return {
        "wall": max(r["ended"] for r in results) - go,
        "calls": calls,
        "throttled": throttled,
        "generated": sum(r["generated"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "stored": sum(r["stored"] for r in results),
    }


def _logs(workdir: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(workdir.glob("worker*.log")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=500, help="videos per worker's catalog (default 500)")
    p.add_argument("--rate-limit", type=int, default=50, help="analyze calls per window (default 50)")
    p.add_argument("--rate-window", type=float, default=5.0, help="window seconds (default 5)")
    p.add_argument("--analyze-latency", type=float, default=0.3, help="seconds per analyze call (0.3)")
    p.add_argument("--concurrency", type=int, default=None, help="threads per worker (operator default)")
    p.add_argument("--pacing-uri", help="PostgreSQL URI for the shared mode (default: a SQLite file)")
    p.add_argument("--only", choices=MODES, action="append", help="run only these modes")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--index", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.concurrency is None:
        from airflow_provider_gist.refresh.plan import DEFAULT_CONCURRENCY

        args.concurrency = DEFAULT_CONCURRENCY
    if args.child:
        return child(args)

    from airflow_provider_gist.emulator.server import EmulatorProcess

    modes = args.only or list(MODES)
    emu_args = emulator_rate_args(args)
    print(
        f"emulator: one key, /analyze limited to {args.rate_limit} calls per {args.rate_window:g}s fixed "
        f"window, {args.analyze_latency:g}s per call; {WORKERS} workers x {args.videos} videos, "
        f"{args.concurrency} threads each; shared store: "
        f"{'PostgreSQL' if args.pacing_uri else 'one SQLite file'}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    with EmulatorProcess(emu_args) as server:
        emu = Emu(server.url)
        for mode in modes:
            emu.post("reset")
            indexes = [
                emu.post(
                    "seed", {"index_name": f"bench-{mode}-{n}", "count": args.videos, "model_name": MODEL}
                )["index_id"]
                for n in range(WORKERS)
            ]
            print(f"running {mode} ...", flush=True)
            results[mode] = run_mode(mode, emu, server.api_key, indexes, args)

    header = (
        f"{'pacing':<13}{'videos':>7}{'analyze':>9}{'429s':>7}{'429 %':>7}{'wall s':>9}"
        f"{'floor s':>9}{'wall/floor':>11}{'strict s':>10}{'wall/strict':>12}{'lost':>6}"
    )
    print()
    print(header)
    print("-" * len(header))
    for mode, r in results.items():
        videos = WORKERS * args.videos
        ok = r["calls"] - r["throttled"]
        floor = floor_seconds(ok, args.rate_limit, args.rate_window)
        strict = strict_floor_seconds(ok, args.rate_limit, args.rate_window, args.analyze_latency)
        r.update(floor=floor, strict=strict, videos=videos)
        print(
            f"{mode:<13}{videos:>7}{r['calls']:>9}{r['throttled']:>7}"
            f"{100 * r['throttled'] / max(r['calls'], 1):>6.1f}%{r['wall']:>9.1f}{floor:>9.1f}"
            f"{r['wall'] / floor if floor else float('nan'):>10.2f}x{strict:>10.1f}"
            f"{r['wall'] / strict if strict else float('nan'):>11.2f}x{videos - r['stored']:>6}"
        )
    if "shared" in results:
        r = results["shared"]
        share = r["throttled"] / max(r["calls"], 1)
        ratio = r["wall"] / r["floor"] if r["floor"] else float("inf")
        verdict = "met" if share <= 0.05 and ratio <= 1.15 else "NOT met"
        print(f"\ntargets with shared pacing (429s <= 5% of calls, wall <= 1.15x floor): {verdict}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
