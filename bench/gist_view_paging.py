"""Benchmark: does the gist view's list stay fast at 100,000 stored gists? SQLite and PostgreSQL.

    .venv/bin/python bench/gist_view_paging.py                    # 1,000 and 100,000 gists, both databases
    .venv/bin/python bench/gist_view_paging.py --backends sqlite  # SQLite only
    .venv/bin/python bench/gist_view_paging.py --large 20000      # a quicker look

For each database it stores 1,000 and N gists (5 indexes, 20 DAGs, a vocabulary of 200 topics)
in two tables, then times what the view does for one page of 25 (the store query, decoding the
rows, rendering the cards) as the median of ``--repeat`` runs:

* the first page at 1,000 gists: the baseline, measured in the same run;
* at N gists: the first page, a deep page (the *Older* link's seek cursor at row 90%), the first
  page of one index, the first page a user who may read half of the DAGs sees; and a topic
  filter (a term inside JSON: the database scans for it, so it has no goal);
* for contrast the old ``OFFSET`` paging at the same depth, and the overview (per-index counts,
  top terms, usage per day), which reads every row on purpose and is shown on first pages only.

Each figure is printed with its ratio to the baseline (goal: every paging row within 1.5x); the
rounds interleave the cases, so load from other jobs on the machine weighs on all of them alike.
Nothing is asserted. PostgreSQL is a throwaway cluster on 127.0.0.1 (as the tests start one,
tests/helpers/postgres.py), or ``GIST_TEST_POSTGRES_URI``; without PostgreSQL binaries that
backend is skipped. The view's read-only indexes (``ensure_catalog_indexes``) are created as the
catalog refresh creates them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gist-bench-home-"))
# common.sql logs each statement's row count at INFO: thousands of lines here
os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.task.hooks=WARNING")

INDEXES = [f"65ef0a1b2c3d4e5f6071829{n}" for n in range(5)]
DAGS = [f"dag_{n:02d}" for n in range(20)]
TOPICS = [f"Topic{n:03d}" for n in range(200)]
PAGE = 25
CATALOG_INDEXES = True


def rows_for(count: int) -> list[tuple[Any, ...]]:
    """``count`` stored-gist rows: distinct times one minute and a half apart, spread over
    indexes and DAGs, three topics and two hashtags each from a skewed vocabulary."""
    from datetime import UTC, datetime, timedelta

    from airflow_provider_gist.storage.base import gist_to_row

    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for n in range(count):
        topics = [TOPICS[(n * k) % 37 + (n % 5) * 30] for k in (1, 3, 7)]
        gist = {
            "index_id": INDEXES[n % len(INDEXES)],
            "video_ref": f"asset{n:07d}",
            "video_ref_type": "asset_id",
            "id": f"gen-{n}",
            "title": f"Video number {n} about {topics[0]}",
            "topics": list(dict.fromkeys(topics)),
            "hashtags": [topics[0] + "Life", "Daily"],
            "model": "pegasus1.2",
            "types": ["title", "topic", "hashtag"],
            "prompt_version": "gist-v1",
            "source_updated_at": "2026-01-01T00:00:00Z",
            "generated_at": (start + timedelta(seconds=90 * n)).isoformat(),
            "usage": {"output_tokens": 80 + n % 40, "input_tokens": 9000 + n % 1000},
        }
        out.append(gist_to_row(gist, "2026-06-01T00:00:00+00:00", DAGS[n % len(DAGS)]))
    return out


def fill(store: Any, count: int, catalog_indexes: bool) -> None:
    """Create the table and write ``count`` rows in batches (plain inserts: the bench is about reads)."""
    from airflow_provider_gist.storage.base import COLUMNS
    from airflow_provider_gist.storage.catalog import ensure_catalog_indexes

    store.ensure_table()
    if catalog_indexes:
        ensure_catalog_indexes(store)
    ph = store.hook.placeholder
    sql = f"INSERT INTO {store.table} ({', '.join(COLUMNS)}) VALUES ({', '.join([ph] * len(COLUMNS))})"
    rows = rows_for(count)
    conn = store.hook.get_conn()
    try:
        cursor = conn.cursor()
        for at in range(0, len(rows), 5000):
            cursor.executemany(sql, rows[at : at + 5000])
        conn.commit()
        if store.hook.dialect_name == "postgresql":
            cursor.execute(f"ANALYZE {store.table}")  # what autovacuum does after a load
            conn.commit()
        cursor.close()
    finally:
        conn.close()


def timed(cases: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """The median seconds of each case. Rounds go through every case in a shuffled order, so a
    load that comes and goes on the machine (other jobs) weighs on every figure alike."""
    for fn in cases.values():
        fn()  # warm: connection, statement and page caches
    samples: dict[str, list[float]] = {label: [] for label in cases}
    order = list(cases)
    shuffle = random.Random(7).shuffle  # a new order each round: no case always goes first
    for _ in range(repeat):
        shuffle(order)
        for label in order:
            started = time.perf_counter()
            cases[label]()
            samples[label].append(time.perf_counter() - started)
    return {label: statistics.median(values) for label, values in samples.items()}


def page_case(store: Any, filters: Any, dag_ids: set[str | None] | None = None) -> Callable[[], Any]:
    """What the view does for one page of the list: the query, the rows decoded, the cards rendered."""
    from airflow_provider_gist.plugins.catalog import read_list
    from airflow_provider_gist.plugins.catalog_page import render_catalog

    def run() -> Any:
        got = read_list(store, filters, dag_ids)
        assert len(got.gists) == PAGE, (filters, len(got.gists))
        return render_catalog(got, filters, base="/gists/")

    return run


def paging_cases(small: Any, large: Any, count: int) -> dict[str, Callable[[], Any]]:
    from airflow_provider_gist.plugins.render import Filters
    from airflow_provider_gist.storage.catalog import Cursor

    row = large.hook.get_first(
        f"SELECT generated_at, index_id, video_ref FROM {large.table} "
        f"ORDER BY generated_at DESC, index_id, video_ref LIMIT 1 OFFSET {int(count * 0.9) - 1}"
    )
    return {
        "baseline": page_case(small, Filters()),
        "first page": page_case(large, Filters()),
        "deep page (seek, 90%)": page_case(large, Filters(after=Cursor(*row).encode())),
        "first page of one index": page_case(large, Filters(index_id=INDEXES[2])),
        "first page, half the DAGs": page_case(large, Filters(), set(DAGS[::2])),
        "first page, one topic": page_case(large, Filters(topic=TOPICS[3])),
    }


def slow_cases(large: Any, count: int) -> dict[str, Callable[[], Any]]:
    """For contrast, measured apart with fewer rounds: the old OFFSET paging, and the overview."""
    from airflow_provider_gist.plugins.catalog import read_list, read_overview
    from airflow_provider_gist.plugins.render import Filters

    depth = int(count * 0.9)
    return {
        "deep page by OFFSET (old)": lambda: read_list(large, Filters(page=depth // PAGE), None),
        "overview (all rows)": lambda: read_overview(large, Filters(), None),
    }


def run_backend(name: str, make_store: Callable[[str], Any], large: int, repeat: int) -> None:
    small_store, large_store = make_store("bench_small"), make_store("bench_large")
    started = time.monotonic()
    fill(small_store, 1000, CATALOG_INDEXES)
    fill(large_store, large, CATALOG_INDEXES)
    indexes = "with" if CATALOG_INDEXES else "without"
    took = time.monotonic() - started
    print(f"\n{name}: stored 1,000 and {large:,} gists in {took:.0f}s ({indexes} catalog indexes)")
    figures = timed(paging_cases(small_store, large_store, large), repeat)
    base = figures.pop("baseline")
    slow = timed(slow_cases(large_store, large), max(3, repeat // 5))
    print(f"  {'page of 25 (query + cards)':<34} {'1,000':>10} {large:>10,}   ratio")
    print(f"  {'first page (baseline)':<34} {base * 1000:>8.2f}ms {'':>10}   1.00x")
    for label, value in figures.items():
        goal = "  (a scan: no goal)" if "topic" in label else "  (goal <= 1.5x)"
        print(f"  {label:<34} {'':>10} {value * 1000:>8.2f}ms {value / base:>6.2f}x{goal}")
    for label, value in slow.items():
        print(f"  {label:<34} {'':>10} {value * 1000:>8.2f}ms {value / base:>6.2f}x")


def sqlite_backend(large: int, repeat: int) -> None:
    from airflow_provider_gist.storage import SqlGistStore

    folder = Path(tempfile.mkdtemp(prefix="gist-bench-sqlite-"))
    os.environ["AIRFLOW_CONN_GIST_BENCH_SQLITE"] = json.dumps(
        {"conn_type": "sqlite", "host": str(folder / "gists.db")}
    )
    run_backend("SQLite", lambda table: SqlGistStore("gist_bench_sqlite", table=table), large, repeat)


def postgres_backend(large: int, repeat: int) -> None:
    from airflow_provider_gist.storage import SqlGistStore
    from tests.helpers.postgres import airflow_conn_json, find_pg_bin, start_throwaway_cluster

    cluster = None
    uri = os.environ.get("GIST_TEST_POSTGRES_URI")
    if not uri:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("\nPostgreSQL: skipped (no server binaries; set GIST_TEST_POSTGRES_URI)")
            return
        cluster = start_throwaway_cluster(bin_dir)
        uri = cluster.uri
    try:
        os.environ["AIRFLOW_CONN_GIST_BENCH_PG"] = airflow_conn_json(uri)
        stores: list[Any] = []

        def make(table: str) -> Any:
            store = SqlGistStore("gist_bench_pg", table=table)
            store.hook.run(f"DROP TABLE IF EXISTS {table}")
            stores.append(store)
            return store

        run_backend("PostgreSQL", make, large, repeat)
        for store in stores:
            store.hook.run(f"DROP TABLE IF EXISTS {store.table}")
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large", type=int, default=100_000, help="gists in the large table")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per figure (median)")
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--without-catalog-indexes",
        action="store_true",
        help="only the table's own indexes (a store no catalog refresh has written to)",
    )
    args = parser.parse_args()
    global CATALOG_INDEXES
    CATALOG_INDEXES = not args.without_catalog_indexes
    if "sqlite" in args.backends:
        sqlite_backend(args.large, args.repeat)
    if "postgres" in args.backends:
        postgres_backend(args.large, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
