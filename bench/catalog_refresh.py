"""Benchmark: a scheduled catalog refresh against a rate-limited emulator, three ways.

    .venv/bin/python bench/catalog_refresh.py --videos 1000

Starts the TwelveLabs emulator as a subprocess (fixed-window limit on /analyze, a per-call
latency), then runs each approach in its own child process (so peak RSS is its own):

  ours        GistRefresher (the engine of RefreshGistsOperator) + the SQLite gist store:
              list -> plan -> threads sharing one RateLimitPacer -> batched stores
  sequential  a plain loop over GistHook.generate_gist (one call at a time)
  sdk         a thread pool calling the official ``twelvelabs`` SDK's ``client.analyze`` with
              ``request_options={"max_retries": N}`` (what a capable user writes today)

Before each approach the emulator is reset, the catalog seeded, and the limiter's windows
realigned to "now", so every approach starts at the beginning of a window. The floor is the
least time the limiter allows for N calls: (ceil(N / L) - 1) * W + one call's latency.
A second pass of ours over the unchanged catalog then shows its analyze calls (target 0).

Needs the ``twelvelabs`` package for the SDK approach (``pip install twelvelabs``); without it
that row is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

APPROACHES = ("ours", "sequential", "sdk")
MODEL = "pegasus1.2"


def floor_seconds(calls: int, limit: int, window: float, latency: float) -> float:
    """Least wall time fixed windows of ``limit`` calls per ``window`` allow for ``calls`` calls."""
    if calls <= 0:
        return 0.0
    return (math.ceil(calls / limit) - 1) * window + latency


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc), for the before-run baseline."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# ------------------------------------------------------------------------------------ child side


def child_env(home: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a bench child process: its own AIRFLOW_HOME, quiet logs, this repo importable."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "NO_PROXY": "*",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            **extra,
        }
    )
    return env


def emulator_rate_args(args: argparse.Namespace) -> list[str]:
    """Emulator flags for the bench's ``/analyze`` limit, window and latency."""
    return [
        "--rate-limit",
        str(args.rate_limit),
        "--rate-window",
        str(args.rate_window),
        "--analyze-latency",
        str(args.analyze_latency),
    ]


class Emu:
    """The control API of a running emulator (plain ``requests``; never the API key)."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.http.post(f"{self.url}/_emulator/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def prepare(self, index_name: str, count: int, limit: int, window: float) -> dict[str, Any]:
        """Fresh state, ``count`` ready videos, limiter windows starting now, stats cleared."""
        self.post("reset")
        seeded = self.post("seed", {"index_name": index_name, "count": count, "model_name": MODEL})
        self.realign(limit, window)
        return seeded

    def realign(self, limit: int, window: float) -> None:
        """Windows counted from now (a whole second: the limiter floors its origin), counters cleared."""
        time.sleep(math.ceil(time.time()) - time.time() + 0.005)
        self.post("rate-limits", {"window": window, "groups": {"analyze": limit}})
        self.http.delete(f"{self.url}/_emulator/stats", timeout=10).raise_for_status()

    def analyze_counts(self) -> tuple[int, int]:
        stats = self.http.get(f"{self.url}/_emulator/stats", timeout=10).json()
        statuses = stats["statuses"].get("POST /analyze", {})
        return stats["calls"].get("POST /analyze", 0), statuses.get("429", 0)


def run_ours(emu: Emu, args: argparse.Namespace, api_key: str) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
        {"conn_type": "twelvelabs", "host": emu.url, "password": api_key}
    )
    from airflow_provider_gist.operators.refresh import GistRefresher
    from airflow_provider_gist.storage import SqlGistStore

    store = SqlGistStore()  # the embedded SQLite file under this child's temporary AIRFLOW_HOME
    store.ensure_table()
    emu.prepare("bench-ours", args.count, args.rate_limit, args.rate_window)
    refresher = GistRefresher(store=store, concurrency=args.concurrency)
    rss_before = _rss_mb()
    started = time.monotonic()
    summary = refresher.run("bench-ours")
    wall = time.monotonic() - started
    calls, throttled = emu.analyze_counts()
    stored = store.count(summary.index_id)
    result = {
        "wall": wall,
        "calls": calls,
        "throttled": throttled,
        "lost": args.count - stored,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
        "failed": summary.failed,
    }
    # Second pass over the unchanged catalog: a refresh should cost listing only.
    emu.realign(args.rate_limit, args.rate_window)
    started = time.monotonic()
    again = refresher.run("bench-ours")
    result["second_wall"] = time.monotonic() - started
    result["second_calls"], _ = emu.analyze_counts()
    result["second_skipped"] = again.skipped
    return result


def run_sequential(emu: Emu, args: argparse.Namespace, api_key: str) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
        {"conn_type": "twelvelabs", "host": emu.url, "password": api_key}
    )
    from airflow_provider_gist.errors import GistError
    from airflow_provider_gist.hooks.gist import GistHook

    seeded = emu.prepare("bench-seq", args.count, args.rate_limit, args.rate_window)
    hook = GistHook()
    rss_before = _rss_mb()
    started = time.monotonic()
    done = 0
    for video in seeded["videos"]:
        try:
            hook.generate_gist(asset_id=video["asset_id"], index_id=seeded["index_id"])
            done += 1
        except GistError:
            pass
    wall = time.monotonic() - started
    calls, throttled = emu.analyze_counts()
    return {
        "wall": wall,
        "calls": calls,
        "throttled": throttled,
        "lost": args.count - done,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
    }


def run_sdk(emu: Emu, args: argparse.Namespace, api_key: str) -> dict[str, Any]:
    from twelvelabs import TwelveLabs

    # The SDK reads TWELVELABS_BASE_URL; the base URL must include the API version.
    os.environ["TWELVELABS_BASE_URL"] = f"{emu.url}/v1.3"
    client = TwelveLabs(api_key=api_key)
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "topics": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "hashtags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
        "required": ["title", "topics", "hashtags"],
    }
    prompt = "Give this video a title, 2-5 topics and 3-8 hashtags. Output only JSON."
    seeded = emu.prepare("bench-sdk", args.count, args.rate_limit, args.rate_window)

    def one(asset_id: str) -> bool:
        try:
            answer = client.analyze(
                model_name=MODEL,
                video={"type": "asset_id", "asset_id": asset_id},
                prompt=prompt,
                temperature=0.2,
                max_tokens=1024,
                response_format={"type": "json_schema", "json_schema": schema},
                request_options={"max_retries": args.sdk_max_retries},
            )
            json.loads(answer.data or "")
            return True
        except Exception:  # the user's loop would log and move on
            return False

    rss_before = _rss_mb()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.sdk_threads) as pool:
        ok = sum(pool.map(one, [v["asset_id"] for v in seeded["videos"]]))
    wall = time.monotonic() - started
    calls, throttled = emu.analyze_counts()
    return {
        "wall": wall,
        "calls": calls,
        "throttled": throttled,
        "lost": args.count - ok,
        "rss_before": rss_before,
        "rss_peak": _peak_rss_mb(),
    }


def child(args: argparse.Namespace) -> int:
    api_key = os.environ["GIST_BENCH_API_KEY"]
    emu = Emu(args.url)
    runner = {"ours": run_ours, "sequential": run_sequential, "sdk": run_sdk}[args.child]
    print(json.dumps(runner(emu, args, api_key)), flush=True)
    return 0


# ----------------------------------------------------------------------------------- parent side


def spawn(approach: str, count: int, url: str, api_key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one approach in a child process with its own AIRFLOW_HOME; return its JSON result."""
    with tempfile.TemporaryDirectory(prefix=f"gist-bench-{approach}-") as home:
        env = child_env(home, GIST_BENCH_API_KEY=api_key)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            approach,
            "--url",
            url,
            "--count",
            str(count),
            "--rate-limit",
            str(args.rate_limit),
            "--rate-window",
            str(args.rate_window),
            "--concurrency",
            str(args.concurrency),
            "--sdk-threads",
            str(args.sdk_threads),
            "--sdk-max-retries",
            str(args.sdk_max_retries),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{approach} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=1000, help="catalog size for ours and sdk (default 1000)")
    p.add_argument(
        "--baseline-videos",
        type=int,
        default=200,
        help="catalog size for the sequential loop, which needs N x latency (default 200)",
    )
    p.add_argument("--sdk-videos", type=int, help="catalog size for the SDK thread pool (default --videos)")
    p.add_argument("--rate-limit", type=int, default=100, help="analyze calls per window (default 100)")
    p.add_argument("--rate-window", type=float, default=2.0, help="window seconds (default 2)")
    p.add_argument("--analyze-latency", type=float, default=0.3, help="seconds per analyze call (0.3)")
    p.add_argument("--concurrency", type=int, default=64, help="our worker threads (default 64)")
    p.add_argument("--sdk-threads", type=int, default=16, help="SDK thread pool size (default 16)")
    p.add_argument(
        "--sdk-max-retries",
        type=int,
        default=5,
        help="request_options max_retries for the SDK (its counter starts at 2: 5 = 3 retries)",
    )
    p.add_argument("--only", choices=APPROACHES, action="append", help="run only these approaches")
    # child-process arguments
    p.add_argument("--child", choices=APPROACHES, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from airflow_provider_gist.emulator.server import EmulatorProcess

    approaches = args.only or list(APPROACHES)
    if "sdk" in approaches:
        try:
            import twelvelabs  # noqa: F401
        except ImportError:
            print("note: the twelvelabs SDK is not installed; skipping the sdk approach", file=sys.stderr)
            approaches.remove("sdk")
    sizes = {
        "ours": args.videos,
        "sequential": args.baseline_videos,
        "sdk": args.sdk_videos or args.videos,
    }
    emu_args = emulator_rate_args(args)
    print(
        f"emulator: /analyze limited to {args.rate_limit} calls per {args.rate_window:g}s fixed window, "
        f"{args.analyze_latency:g}s per call; ours: {args.concurrency} threads sharing one set of pacers; "
        f"sdk: {args.sdk_threads} threads, max_retries={args.sdk_max_retries}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    with EmulatorProcess(emu_args) as emu:
        for approach in approaches:
            print(f"running {approach} on {sizes[approach]} videos ...", flush=True)
            results[approach] = spawn(approach, sizes[approach], emu.url, emu.api_key, args)

    header = (
        f"{'approach':<12}{'videos':>7}{'wall s':>9}{'floor s':>9}{'wall/floor':>11}"
        f"{'analyze':>9}{'429s':>7}{'429 %':>7}{'lost':>6}{'peak RSS MB':>13}{'(+run)':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for approach, r in results.items():
        n = sizes[approach]
        floor = floor_seconds(n, args.rate_limit, args.rate_window, args.analyze_latency)
        share = 100 * r["throttled"] / r["calls"] if r["calls"] else 0.0
        print(
            f"{approach:<12}{n:>7}{r['wall']:>9.2f}{floor:>9.2f}{r['wall'] / floor:>10.3f}x"
            f"{r['calls']:>9}{r['throttled']:>7}{share:>6.1f}%{r['lost']:>6}"
            f"{r['rss_peak']:>13.0f}{r['rss_peak'] - r['rss_before']:>+8.0f}"
        )
    if "ours" in results:
        r = results["ours"]
        print(
            f"\nsecond pass of ours over the unchanged catalog: {r['second_calls']} analyze calls, "
            f"{r['second_skipped']} videos skipped, {r['second_wall']:.2f}s (listing + fingerprints)"
        )
    if sizes.get("sequential") != args.videos and "sequential" in results:
        print(
            f"note: the sequential loop ran on {sizes['sequential']} videos (--baseline-videos); "
            "compare it by wall/floor, each row against its own floor"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
