"""Benchmark: does a catalog refresh scale? The same refresh on 1,000 and on 100,000 videos.

    .venv/bin/python bench/refresh_scale.py                      # 1,000 and 100,000 videos
    .venv/bin/python bench/refresh_scale.py --sizes 1000 20000   # a quicker look

Starts the TwelveLabs emulator as a subprocess with no rate limit and a small latency per
``/analyze`` call, then for each catalog size: resets it, seeds that many ready videos
(``/_emulator/seed``), and runs ``GistRefresher`` (the engine of ``RefreshGistsOperator``) with
the SQLite gist store in a child process of its own, so the peak RSS is the refresh's. A second
pass over the now unchanged catalog (listing and store reads only, no analysis) follows.

Figures are printed, never asserted: time per video and the peak RSS growth during the run
(``ru_maxrss`` minus the RSS after imports), each also as a ratio against the smallest size,
measured in the same run. The goals: time per video at 100,000 within 1.2x of 1,000, and peak
RSS growth under 100 MB. Work that grows with the square of the catalog, or memory that grows
with it, shows up as ratios far above 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INDEX = "bench-scale"


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# ------------------------------------------------------------------------------------ child side


def child(args: argparse.Namespace) -> int:
    """One refresh of the seeded catalog, then a second pass; print the figures as JSON."""
    import requests

    os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
        {"conn_type": "twelvelabs", "host": args.url, "password": os.environ["GIST_BENCH_API_KEY"]}
    )
    from airflow_provider_gist.refresh.engine import GistRefresher
    from airflow_provider_gist.storage import SqlGistStore

    store = SqlGistStore()  # the embedded SQLite file under this child's temporary AIRFLOW_HOME
    store.ensure_table()
    refresher = GistRefresher(store=store, concurrency=args.concurrency)
    refresher.hook.url_for("analyze")  # connection and session resolved before the baseline RSS
    rss_before = _rss_mb()
    started = time.monotonic()
    summary = refresher.run(INDEX)
    wall = time.monotonic() - started
    rss_peak = _peak_rss_mb()
    stats = requests.get(f"{args.url}/_emulator/stats", timeout=30).json()
    started = time.monotonic()
    again = refresher.run(INDEX)
    second = time.monotonic() - started
    result = {
        "wall": wall,
        "stored": summary.stored,
        "failed": summary.failed,
        "analyze_calls": stats["calls"].get("POST /analyze", 0),
        "list_calls": stats["calls"].get("GET /indexes/{index-id}/indexed-assets", 0),
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        "second_wall": second,
        "second_skipped": again.skipped,
        "second_generated": again.generated,
        "rss_peak_after_second": _peak_rss_mb(),
    }
    print(json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------------- parent side


def run_size(url: str, api_key: str, count: int, concurrency: int) -> dict[str, Any]:
    import requests

    requests.post(f"{url}/_emulator/reset", timeout=60).raise_for_status()
    started = time.monotonic()
    seeded = requests.post(
        f"{url}/_emulator/seed",
        json={"index_name": INDEX, "count": count, "model_name": "pegasus1.2"},
        timeout=600,
    )
    seeded.raise_for_status()
    seed_seconds = time.monotonic() - started
    requests.delete(f"{url}/_emulator/stats", timeout=60).raise_for_status()
    with tempfile.TemporaryDirectory(prefix="gist-bench-scale-") as home:
        from bench.catalog_refresh import child_env

        env = child_env(home, GIST_BENCH_API_KEY=api_key)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--url", url]
        cmd += ["--concurrency", str(concurrency)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the refresh of {count} videos failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seed_seconds": seed_seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 100_000], help="catalog sizes (first: baseline)"
    )
    p.add_argument("--concurrency", type=int, default=16, help="refresh threads (the operator's default, 16)")
    p.add_argument("--analyze-latency", type=float, default=0.01, help="seconds per /analyze call (0.01)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from airflow_provider_gist.emulator.server import EmulatorProcess

    print(
        f"emulator: no rate limit, {args.analyze_latency:g}s per /analyze call; refresh: {args.concurrency} "
        f"threads, SQLite store; python {sys.version.split()[0]}, {os.cpu_count()} cores",
        flush=True,
    )
    results: dict[int, dict[str, Any]] = {}
    # A short journal: the emulator keeps every response body it journals, and 10,000 listing
    # pages of 50 videos make a heap whose garbage collection slows the emulator, not the refresh.
    emulator_args = ["--analyze-latency", str(args.analyze_latency), "--journal-size", "100"]
    with EmulatorProcess(emulator_args) as emu:
        for count in args.sizes:
            print(f"refreshing {count} videos ...", flush=True)
            results[count] = run_size(emu.url, emu.api_key, count, args.concurrency)

    base_count = args.sizes[0]
    base = results[base_count]
    base_per_video = base["wall"] / base_count
    base_second = base["second_wall"] / base_count
    base_growth = max(base["rss_peak"] - base["rss_before"], 0.1)
    header = (
        f"{'videos':>8}{'wall s':>9}{'ms/video':>10}{'x base':>8}{'2nd pass ms/video':>19}{'x base':>8}"
        f"{'peak RSS MB':>13}{'growth MB':>11}{'x base':>8}{'analyze':>9}{'lists':>7}{'stored':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for count, r in results.items():
        per_video = r["wall"] / count
        second = r["second_wall"] / count
        growth = r["rss_peak"] - r["rss_before"]
        print(
            f"{count:>8}{r['wall']:>9.1f}{per_video * 1000:>10.3f}{per_video / base_per_video:>7.2f}x"
            f"{second * 1000:>19.3f}{second / base_second:>7.2f}x"
            f"{r['rss_peak']:>13.0f}{growth:>+11.1f}{growth / base_growth:>7.1f}x"
            f"{r['analyze_calls']:>9}{r['list_calls']:>7}{r['stored']:>8}"
        )
    largest = results[args.sizes[-1]]
    ratio = (largest["wall"] / args.sizes[-1]) / base_per_video
    growth = largest["rss_peak"] - largest["rss_before"]
    print(
        f"\n{args.sizes[-1]} vs {base_count} videos: time per video {ratio:.2f}x (goal <= 1.2x); "
        f"peak RSS growth during the run {growth:+.1f} MB (goal < 100 MB); second pass "
        f"{(largest['second_wall'] / args.sizes[-1]) / base_second:.2f}x per video"
    )
    failed = {count: r["failed"] for count, r in results.items() if r["failed"]}
    if failed:
        print(f"note: videos that failed (not stored): {failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
