"""A running refresh's progress: done/total, failures, rate and ETA (pure, no Airflow).

The engine builds one report every ``PROGRESS_SECONDS`` and at the end; it logs
:func:`progress_line` and hands the dict to its ``on_progress`` callback, through which the
operator pushes it as the ``gist_progress`` XCom for the UI while the task runs.
"""

from __future__ import annotations

import time
from typing import Any

#: The XCom key the refresh operator pushes each report under.
PROGRESS_XCOM_KEY = "gist_progress"


def progress_report(summary: Any, todo: Any, elapsed: float) -> dict[str, Any]:
    """JSON-safe counts of ``summary`` against the plan ``todo`` after ``elapsed`` seconds.

    A streamed plan only knows the videos planned so far: ``total_final`` says whether the
    listing has ended, and only then is there an ETA (a partial total would promise too early).
    """
    done = int(summary.generated + summary.failed + summary.not_attempted)
    planned = getattr(todo, "planned", None)
    if planned is None:
        planned = len(todo) if hasattr(todo, "__len__") else done
        final = True
    else:
        final = bool(getattr(todo, "complete", False))
    total = max(int(planned), done)
    rate = done / elapsed if elapsed > 0 else 0.0  # videos per second over the whole run
    eta = (total - done) / rate if final and rate > 0 else None
    return {
        "done": done,
        "total": total,
        "total_final": final,
        "generated": int(summary.generated),
        "stored": int(summary.stored),
        "failed": int(summary.failed),
        "rate_per_min": round(rate * 60, 2),
        "eta_seconds": None if eta is None else round(eta, 1),
        "elapsed_seconds": round(elapsed, 1),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def progress_line(report: dict[str, Any]) -> str:
    """One log line: ``progress: 120/400 done (118 stored, 2 failed), 35.2/min, ETA 8m`` ."""
    total = f"{report['total']}" if report["total_final"] else f"{report['total']}+ (listing)"
    eta = report["eta_seconds"]
    if eta is None:
        eta_text = "ETA unknown"
    elif eta >= 90:
        eta_text = f"ETA {eta / 60:.0f}m"
    else:
        eta_text = f"ETA {eta:.0f}s"
    return (
        f"progress: {report['done']}/{total} done ({report['generated']} generated, "
        f"{report['stored']} stored, {report['failed']} failed), "
        f"{report['rate_per_min']:.1f}/min, {eta_text}"
    )
