"""Soak (marker ``soak``, ~5 min): the example DAG over 50 videos, rate limited at 2x, 5% 5xx.

The same ``soak()`` as ``bench/soak.py`` (which prints the figures): the emulator runs in its
own process with every endpoint group the DAG uses limited to half the request rate this run
offers it unthrottled, and 5% of API requests answered 500 / 502 (HTML) / 503. Every gist must
be stored exactly once and nothing uploaded, indexed or analysed twice. Analyses take the
emulator a fraction of a second and tries are 2 s apart (``bench/soak.py`` says why neither
weakens the checks). Deselect with ``-m "not soak"``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, twelvelabs_conn_json

pytestmark = [pytest.mark.soak, pytest.mark.integration, pytest.mark.timeout(900)]

VIDEOS = 50


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gist_bench_soak", REPO / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_soak_50_videos_at_twice_the_rate_limit_with_5_percent_5xx(
    airflow_db, gist_home: Path, monkeypatch, capfd
) -> None:
    from airflow_provider_gist.emulator.server import EmulatorProcess

    bench = _bench()
    window = 5.0
    limits = bench.group_limits(2.0, window)
    emu = EmulatorProcess(bench.emulator_args(limits, window, 0.05, seed=7), api_key=bench.API_KEY)
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_TWELVELABS_DEFAULT",
            twelvelabs_conn_json(
                emu.url,
                api_key=bench.API_KEY,
                retry_deadline=120,
                create_lookup_seconds=bench.SOAK_LOOKUP_SECONDS,
            ),
        )
        result = bench.soak(emu.url, bench.API_KEY, VIDEOS, retry_delay=bench.SOAK_RETRY_DELAY)
    finally:
        emu.stop()
    with capfd.disabled():
        print("\nsoak figures:", json.dumps({"limits_per_window": limits, **result.figures}))
    assert result.ok, result.problems
    figures = result.figures
    assert figures["gists_stored"] == figures["assets"] == figures["indexed_assets"] == VIDEOS
    assert figures["analysis_tasks"] == VIDEOS
    assert figures["responses_5xx"] > 0, "the injected 5xx never fired: the soak proved nothing"
    assert figures["responses_429"] > 0, "the rate limits never bit: the soak proved nothing"
