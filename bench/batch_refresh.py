"""Benchmark: a catalog refresh through /analyze/batches against the emulator's processing model.

    .venv/bin/python bench/batch_refresh.py --videos 10000

Starts the emulator as a subprocess with ``--slots`` concurrent analysis slots and a fixed
``--item-seconds`` per video, seeds ``--videos`` ready videos, then in this one run:

  batch  the batch refresh engine (``RefreshGistsOperator(analysis="batch")``'s steps), waiting
         between steps the way its trigger does (a GET of the batch every ``--poll`` seconds)
  sync   the sync refresh engine (``GistRefresher``) over the same catalog, with ``/analyze``
         limited to ``--rate-limit`` calls per ``--rate-window`` seconds

and prints, for each: wall time, the calls that created analysis work, gists stored and lost,
and the ratio to its floor. The batch floor is the emulator's processing floor,
``ceil(N / slots) * item_seconds + one poll interval``; the sync floor is the rate limit's,
``(ceil(N / limit) - 1) * window``. Goals (issue 12): batch creates <= ceil(N/1000) + resubmits,
wall <= 1.1x its floor, 0 lost.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API_KEY = "tlk_bench_batches_0123456789"
MODEL = "pegasus1.5"


class Log:
    def info(self, *args: Any) -> None: ...

    def warning(self, msg: str, *args: Any) -> None:
        print("warning:", msg % args if args else msg, file=sys.stderr)


def control(url: str, method: str, path: str, body: Any = None) -> Any:
    import requests

    response = requests.request(method, f"{url}/_emulator/{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def prepare(url: str, index: str, count: int) -> None:
    control(url, "POST", "reset")
    control(url, "POST", "seed", {"index_name": index, "count": count})
    control(url, "DELETE", "stats")


def counts(url: str, op: str) -> int:
    return int(control(url, "GET", "stats")["calls"].get(op, 0))


def run_batch(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_gist.analysis import prepare_gist_request
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.refresh.batches import TERMINAL_STATUSES, BatchRefresher, BatchState
    from airflow_provider_gist.storage import SqlGistStore

    prepare(url, "bench-batch", args.videos)
    store = SqlGistStore(table="bench_batch")
    store.ensure_table()
    hook = GistHook()
    template = prepare_gist_request(asset_id="tmpl", video_id=None, types=None, model_name=MODEL)
    saves: list[int] = []
    engine = BatchRefresher(
        hook=hook,
        store=store,
        template=template,
        save=lambda state: saves.append(len(json.dumps(state.to_json()))),
        log=Log(),
    )
    started = time.monotonic()
    state = BatchState(index_id=hook.resolve_index("bench-batch"), run_key="bench001")
    steps = 0
    while (waiting := engine.step(state)) is not None:
        steps += 1
        while hook.get_batch(waiting).get("status") not in TERMINAL_STATUSES:  # the trigger's polls
            time.sleep(args.poll)
    wall = time.monotonic() - started
    summary = state.to_summary()
    stored = store.count(state.index_id)
    hook.close()
    return {
        "wall": wall,
        "creates": counts(url, "POST /analyze/batches"),
        "stored": stored,
        "lost": args.videos - stored,
        "failed": summary.failed,
        "steps": steps,
        "largest_state_bytes": max(saves or [0]),
    }


def run_sync(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_gist.refresh.engine import GistRefresher
    from airflow_provider_gist.storage import SqlGistStore

    prepare(url, "bench-sync", args.videos)
    control(url, "POST", "rate-limits", {"window": args.rate_window, "groups": {"analyze": args.rate_limit}})
    store = SqlGistStore(table="bench_sync")
    store.ensure_table()
    started = time.monotonic()
    summary = GistRefresher(store=store, model_name=MODEL, concurrency=args.concurrency).run("bench-sync")
    wall = time.monotonic() - started
    stored = store.count(summary.index_id)
    return {
        "wall": wall,
        "creates": counts(url, "POST /analyze"),
        "stored": stored,
        "lost": args.videos - stored,
        "failed": summary.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=200, help="the emulator's concurrent analysis slots")
    parser.add_argument("--item-seconds", type=float, default=1.0, help="analysis time of one video")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between batch status checks")
    parser.add_argument("--rate-limit", type=int, default=100, help="sync: /analyze calls per window")
    parser.add_argument("--rate-window", type=float, default=1.0, help="sync: window seconds")
    parser.add_argument("--concurrency", type=int, default=32, help="sync: calls in flight")
    parser.add_argument("--skip-sync", action="store_true")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="gist-bench-batches-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow_provider_gist.emulator.server import EmulatorProcess

    emu_args = [
        "--analysis-slots",
        str(args.slots),
        "--analysis-startup-seconds",
        str(args.item_seconds),
        "--analysis-seconds-per-minute",
        "0",
        "--asset-ready-seconds",
        "0",
    ]
    emu = EmulatorProcess(emu_args, api_key=API_KEY)
    os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
        {"conn_type": "twelvelabs", "host": emu.url, "password": API_KEY, "extra": {"max_attempts": 4}}
    )
    try:
        batch = run_batch(emu.url, args)
        sync = None if args.skip_sync else run_sync(emu.url, args)
    finally:
        emu.stop()

    n = args.videos
    batch_floor = math.ceil(n / args.slots) * args.item_seconds + args.poll
    print(f"catalog: {n} videos; emulator: {args.slots} analysis slots, {args.item_seconds:g} s per video")
    print(
        f"batch: {batch['wall']:.1f} s = {batch['wall'] / batch_floor:.3f}x the processing floor "
        f"({batch_floor:.1f} s); {batch['creates']} batch creates (ceil(N/1000) = {math.ceil(n / 1000)}); "
        f"stored {batch['stored']}, lost {batch['lost']}, failed {batch['failed']}; "
        f"{batch['steps']} resumes; largest saved state {batch['largest_state_bytes']} bytes"
    )
    if sync is not None:
        sync_floor = (math.ceil(n / args.rate_limit) - 1) * args.rate_window
        print(
            f"sync:  {sync['wall']:.1f} s = {sync['wall'] / max(sync_floor, 1e-9):.3f}x its rate-limit floor "
            f"({sync_floor:.1f} s at {args.rate_limit} calls per {args.rate_window:g} s); "
            f"{sync['creates']} /analyze calls; stored {sync['stored']}, lost {sync['lost']}"
        )
        print(f"batch vs sync wall time: {batch['wall'] / sync['wall']:.3f}x")


if __name__ == "__main__":
    main()
