"""``python -m airflow_provider_gist.emulator`` (or ``twelvelabs-emulator``): serve until signalled."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from .app import DEFAULT_API_KEY, DEFAULT_PORT, EmulatorConfig, build_app
from .faults import GROUPS

# No headers in the access log: the API key travels in one.
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def _group_limit(text: str) -> tuple[str, int, float | None]:
    """``GROUP=N`` or ``GROUP=N/WINDOW``."""
    try:
        group, spec = text.split("=", 1)
        count, _, window = spec.partition("/")
        result = (group.strip(), int(count), float(window) if window else None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected GROUP=N or GROUP=N/WINDOW, got {text!r}") from exc
    if result[0] not in GROUPS:
        raise argparse.ArgumentTypeError(f"unknown group {result[0]!r}; expected one of {', '.join(GROUPS)}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="twelvelabs-emulator",
        description="Local emulator of the TwelveLabs v1.3 API (127.0.0.1 only). Prints its URL once ready.",
    )
    p.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1 (or localhost) is accepted")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (default %(default)s)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("TWELVELABS_EMULATOR_API_KEY", DEFAULT_API_KEY),
        help="key clients must send in x-api-key (default: $TWELVELABS_EMULATOR_API_KEY or tlk_emulator_key)",
    )
    p.add_argument("--asset-ready-seconds", type=float, default=2.0, help="processing -> ready (default 2)")
    p.add_argument(
        "--indexing-seconds", type=float, default=4.0, help="pending -> ready for indexing (default 4)"
    )
    p.add_argument(
        "--rate-limit", type=int, metavar="N", help="limit the analyze group to N requests per window"
    )
    p.add_argument("--rate-window", type=float, default=60.0, metavar="W", help="window seconds (default 60)")
    p.add_argument(
        "--retry-after",
        action="store_true",
        help="add Retry-After to rate-limit 429s (the docs do not promise it; off by default)",
    )
    p.add_argument(
        "--group-limit",
        type=_group_limit,
        action="append",
        default=[],
        metavar="GROUP=N[/W]",
        help=f"limit a group ({', '.join(GROUPS)}); repeatable",
    )
    p.add_argument("--faults", metavar="JSON", help="fault rules: a rule, a list, or {'rules': [...]}")
    p.add_argument("--faults-file", type=Path, metavar="PATH", help="fault rules from a JSON file")
    p.add_argument("--seed", type=int, default=0, help="seed for ids and probabilistic faults (default 0)")
    p.add_argument(
        "--error-rate", type=float, default=0.0, metavar="P", help="random 500/502/503 probability"
    )
    p.add_argument(
        "--latency", type=float, default=0.0, metavar="S", help="seconds added to every API response"
    )
    p.add_argument(
        "--analyze-latency", type=float, default=0.0, metavar="S", help="extra seconds for /analyze"
    )
    p.add_argument(
        "--listing-lag",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds before new assets, indexed assets and tasks appear in listings (default 0)",
    )
    p.add_argument("--journal-size", type=int, default=10_000, help="requests kept in the journal")
    p.add_argument("--max-upload-mb", type=int, default=250, help="largest accepted request body (MiB)")
    p.add_argument(
        "--max-direct-upload-mb",
        type=int,
        default=200,
        help="largest POST /assets direct file (MiB, default 200)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=5 * 1024 * 1024,
        help="multipart chunk size in bytes (default 5 MiB)",
    )
    p.add_argument(
        "--presigned-url-seconds",
        type=float,
        default=3600.0,
        help="presigned chunk URL lifetime (default 3600)",
    )
    p.add_argument(
        "--upload-session-seconds",
        type=float,
        default=86400.0,
        help="multipart upload session lifetime (default 86400)",
    )
    p.add_argument(
        "--analysis-slots",
        type=int,
        default=4,
        metavar="N",
        help="analysis tasks (and batch items) processed at once; the rest wait queued (default 4)",
    )
    p.add_argument(
        "--analysis-startup-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds an analysis task spends pending in its slot before processing (default 2)",
    )
    p.add_argument(
        "--analysis-seconds-per-minute",
        type=float,
        default=3.0,
        metavar="S",
        help="processing seconds per minute of video analysed (default 3)",
    )
    p.add_argument(
        "--batch-expiry-seconds",
        type=float,
        default=86400.0,
        help="a batch expires this long after creation; unfinished items are canceled (default 86400)",
    )
    p.add_argument(
        "--batch-retention-seconds",
        type=float,
        default=30 * 86400.0,
        help="a batch and its tasks are deleted this long after creation (default 30 days)",
    )
    p.add_argument(
        "--max-active-batches",
        type=int,
        default=5,
        metavar="N",
        help="active (pending, processing, canceling) batches per account; more are 429 (default 5)",
    )
    p.add_argument("--access-log", action="store_true", help="log requests to stderr (never headers)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    limits: dict[str, tuple[int, float]] = {}
    if args.rate_limit is not None:
        limits["analyze"] = (args.rate_limit, args.rate_window)
    for group, count, window in args.group_limit:
        limits[group] = (count, window if window is not None else args.rate_window)
    faults: list[Any] = []
    for text in filter(None, [args.faults_file.read_text() if args.faults_file else None, args.faults]):
        raw = json.loads(text)
        raw = raw.get("rules", raw) if isinstance(raw, dict) else raw
        faults.extend(raw if isinstance(raw, list) else [raw])
    return EmulatorConfig(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        asset_ready_seconds=args.asset_ready_seconds,
        indexing_seconds=args.indexing_seconds,
        rate_limits=limits,
        retry_after=args.retry_after,
        faults=faults,
        seed=args.seed,
        error_rate=args.error_rate,
        latency=args.latency,
        analyze_latency=args.analyze_latency,
        listing_lag=args.listing_lag,
        journal_size=args.journal_size,
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        max_direct_upload_bytes=args.max_direct_upload_mb * 1024 * 1024,
        multipart_chunk_size=args.chunk_size,
        presigned_url_seconds=args.presigned_url_seconds,
        upload_session_seconds=args.upload_session_seconds,
        analysis_slots=args.analysis_slots,
        analysis_startup_seconds=args.analysis_startup_seconds,
        analysis_seconds_per_minute=args.analysis_seconds_per_minute,
        batch_expiry_seconds=args.batch_expiry_seconds,
        batch_retention_seconds=args.batch_retention_seconds,
        max_active_batches=args.max_active_batches,
    )


async def serve(config: EmulatorConfig, *, access_log: bool) -> None:
    runner = web.AppRunner(
        build_app(config),
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
        handle_signals=False,
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"http://127.0.0.1:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"twelvelabs-emulator: {exc}", file=sys.stderr)
        return 2
    if args.access_log:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        asyncio.run(serve(config, access_log=args.access_log))
    except OSError as exc:  # typically the port is taken
        print(f"twelvelabs-emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
