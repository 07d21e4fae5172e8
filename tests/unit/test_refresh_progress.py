"""Progress of long work: the refresh's progress lines and XCom, the triggers' status changes."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_gist.links import XCOM_KEY
from airflow_provider_gist.operators.refresh import RefreshGistsOperator
from airflow_provider_gist.refresh import engine
from airflow_provider_gist.refresh.progress import PROGRESS_XCOM_KEY, progress_line, progress_report
from airflow_provider_gist.triggers.indexing import TwelveLabsStatusTrigger
from tests.unit.test_refresh_engine import INDEX, make


def counts(**kw: int) -> SimpleNamespace:
    base = {"generated": 0, "failed": 0, "not_attempted": 0, "stored": 0}
    return SimpleNamespace(**{**base, **kw})


def test_report_has_rate_and_eta_once_the_total_is_known():
    plan = SimpleNamespace(planned=100, complete=True)
    report = progress_report(counts(generated=18, failed=2, stored=18), plan, elapsed=60.0)
    assert (report["done"], report["total"], report["failed"]) == (20, 100, 2)
    assert report["rate_per_min"] == 20.0 and report["eta_seconds"] == 240.0
    assert progress_line(report) == (
        "progress: 20/100 done (18 generated, 18 stored, 2 failed), 20.0/min, ETA 4m"
    )
    listing = progress_report(counts(generated=5), SimpleNamespace(planned=50, complete=False), 30.0)
    assert listing["eta_seconds"] is None and not listing["total_final"]  # a partial total promises nothing
    assert "50+ (listing)" in progress_line(listing) and "ETA unknown" in progress_line(listing)
    assert progress_report(counts(generated=3), [1, 2, 3, 4], 0.0)["total"] == 4  # a plain list plan


def test_refresh_logs_progress_at_its_cadence_and_hands_reports_on(monkeypatch, caplog):
    monkeypatch.setattr(engine, "PROGRESS_SECONDS", 0.0)  # every collection round
    refresher, _ = make(12, flush_seconds=0.01)
    reports: list[dict[str, Any]] = []
    refresher.on_progress = reports.append
    with caplog.at_level(logging.INFO, logger=engine.__name__):
        summary = refresher.run(INDEX)
    assert summary.generated == 12
    final = reports[-1]
    assert (final["done"], final["total"], final["stored"], final["failed"]) == (12, 12, 12, 0)
    assert final["total_final"] and final["eta_seconds"] == 0.0 and final["updated_at"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert lines and "12/12 done" in lines[-1] and "/min" in lines[-1]


def test_a_failing_progress_callback_never_fails_the_refresh():
    refresher, _ = make(3)

    def broken(report: dict[str, Any]) -> None:
        raise RuntimeError("xcom backend down")

    refresher.on_progress = broken
    assert refresher.run(INDEX).stored == 3


def test_operator_pushes_progress_and_the_index_link(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    refresher, _ = make(5)
    op = RefreshGistsOperator(task_id="r", index=INDEX)
    monkeypatch.setattr(op, "make_refresher", lambda: refresher)
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))
    op.execute(context={"ti": ti})
    progress = pushed[PROGRESS_XCOM_KEY]
    assert (progress["done"], progress["total"], progress["failed"]) == (5, 5, 0)
    assert set(progress) >= {"done", "total", "failed", "updated_at", "rate_per_min", "eta_seconds"}
    assert pushed[XCOM_KEY]["index_id"] == INDEX


class ScriptedTrigger(TwelveLabsStatusTrigger):
    resource = "asset"
    id_fields = ("asset_id",)

    def __init__(self, statuses: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = "a1"
        self.statuses = statuses

    async def fetch(self, hook: Any) -> dict[str, Any]:
        return {"_id": "a1", "status": self.statuses.pop(0)}

    def _hook(self) -> Any:
        return None


def test_trigger_logs_each_status_change_once():
    trigger = ScriptedTrigger(
        ["pending", "processing", "processing", "processing", "ready"],
        deadline=time.time() + 60,
        poll_interval=0.001,
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    infos: list[str] = []
    trigger._log = SimpleNamespace(  # the trigger's logger, recording what it says at info level
        info=lambda msg, *args: infos.append(msg % args), debug=lambda *a: None, warning=lambda *a: None
    )
    event = asyncio.run(first_event())
    assert event.payload["status"] == "ready"
    changes = [line for line in infos if "(was " in line]
    assert len(changes) == 3, changes  # pending, processing (once, not per poll), ready
    assert "is processing (was pending)" in changes[1] and "is ready (was processing)" in changes[2]


@pytest.mark.parametrize("key", [PROGRESS_XCOM_KEY])
def test_progress_key_is_stable(key):
    assert key == "gist_progress"  # the UI reads it by this name
