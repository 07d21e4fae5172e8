"""Helpers of the reliability suite: the emulator's control API, and one video lane run in-process.

A *lane* is what the example DAG does for one video (``dags/gist_index_and_generate.py``):
ingest -> wait for indexing (deferrable sensor) -> generate the gist -> store it. :class:`Lane`
runs the same operators, with the same arguments, by calling ``execute()`` with a small context,
and plays the parts of Airflow that matter for reliability:

* **task retries** like the example DAG (``retries=2``): a task that raises is run again with
  ``try_number + 1``, except for ``AirflowFailException`` / ``AirflowSensorTimeout``, which
  Airflow never retries;
* a **task_state_store** per task that survives the task's retries (keyed like Airflow's: per
  DAG run and task), and starts empty for a new run;
* **deferral**: the sensor's ``TaskDeferred`` trigger is run to its first event on an event
  loop, then ``execute_complete`` resumes the task, as the triggerer would.

It is ~100x cheaper than ``dag.test()`` (no metadata DB, no scheduler loop), which is what lets
the fault matrix cover every fault at once; a handful of scenarios still run the real example
DAG with ``dag.test()`` to show the two agree.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import requests

POST_ASSETS = "POST /assets"
POST_INDEXED = "POST /indexes/{index-id}/indexed-assets"
POST_ANALYZE = "POST /analyze"
POST_ANALYSIS_TASKS = "POST /analyze/tasks"
LIST_ASSETS = "GET /assets"
LIST_INDEXED = "GET /indexes/{index-id}/indexed-assets"
GET_ASSET = "GET /assets/{asset_id}"
GET_INDEXED = "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}"

#: What the emulator answers for this file name (docs/emulator.md, "Content").
VIDEO_URL = "https://videos.example.com/sunrise_harbour_fishing.mp4"
EXPECTED_TITLE = "Sunrise Harbour Fishing"
EXPECTED_TOPICS = ["Sunrise", "Harbour", "Fishing"]
EXPECTED_HASHTAGS = ["Sunrise", "Harbour", "Fishing", "SunriseHarbourFishing"]

#: The suite's API key: distinctive, so a leak anywhere is unmistakable (``ctl`` installs it).
SECRET_KEY = "tlk_R3liab1lity_SECRET_k3y_5f0e9d8c7b6a"

_run_ids = itertools.count(1)


class EmulatorControl:
    """The emulator's control API (no auth) plus direct API calls with the test key."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.url: str = emu.url
        self.base_url: str = emu.base_url

    # -- control API ---------------------------------------------------------------------------

    def add_faults(self, rules: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        if rules:
            resp = requests.post(f"{self.url}/_emulator/faults", json={"rules": list(rules)}, timeout=5)
            resp.raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}/_emulator/faults", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_emulator/stats", timeout=5).json()

    def calls(self, op: str | None = None) -> Any:
        calls = self.stats()["calls"]
        return calls if op is None else calls.get(op, 0)

    def succeeded(self, op: str) -> int:
        """How many ``op`` requests the server *handled* (2xx): for creates, the resources made."""
        statuses = self.stats()["statuses"].get(op, {})
        return sum(n for status, n in statuses.items() if status.startswith("2"))

    def journal(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.url}/_emulator/journal", timeout=5).json()["entries"]

    def seed(self, count: int, index_name: str = "seeded") -> list[dict[str, Any]]:
        """``count`` ready assets, indexed at once: ``[{"video_id", "asset_id", "filename"}]``."""
        resp = requests.post(
            f"{self.url}/_emulator/seed", json={"index_name": index_name, "count": count}, timeout=10
        )
        resp.raise_for_status()
        return resp.json()["videos"]

    def advance_clock(self, seconds: float) -> None:
        requests.post(f"{self.url}/_emulator/clock", json={"advance": seconds}, timeout=5).raise_for_status()

    def set_listing_lag(self, seconds: float) -> None:
        """New assets, indexed assets and tasks show up in listings only ``seconds`` after their create."""
        resp = requests.post(f"{self.url}/_emulator/listing-lag", json={"seconds": seconds}, timeout=5)
        resp.raise_for_status()

    def revoke_key(self) -> None:
        requests.post(f"{self.url}/_emulator/keys", json={"revoke": True}, timeout=5).raise_for_status()

    def restore_key(self, key: str = SECRET_KEY) -> None:
        requests.post(f"{self.url}/_emulator/keys", json={"api_key": key}, timeout=5).raise_for_status()

    # -- the API itself (ground truth of what exists) -------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, f"{self.base_url}/{path}", headers={"x-api-key": SECRET_KEY}, timeout=10, **kwargs
        )

    def _total(self, path: str) -> int:
        resp = self.api("GET", path, params={"page_limit": 50})
        resp.raise_for_status()
        return int(resp.json()["page_info"]["total_results"])

    def asset_count(self) -> int:
        return self._total("assets")

    def indexed_asset_count(self) -> int:
        """Indexed assets over every index (any status)."""
        resp = self.api("GET", "indexes", params={"page_limit": 50})
        resp.raise_for_status()
        return sum(self._total(f"indexes/{ix['_id']}/indexed-assets") for ix in resp.json()["data"])

    def delete_asset(self, asset_id: str) -> None:
        resp = self.api("DELETE", f"assets/{asset_id}", params={"force": "true"})
        assert resp.status_code < 300, resp.text


# ---------------------------------------------------------------------------------------------
# one lane, in-process
# ---------------------------------------------------------------------------------------------


class MemoryStateStore:
    """``context["task_state_store"]``: one per (run, task), shared by that task's tries."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


class _OutletEvents(dict):
    def __missing__(self, key: Any) -> Any:
        value = SimpleNamespace(extra={})
        self[key] = value
        return value


@dataclass
class TaskAttempts:
    task_id: str
    tries: int = 0
    errors: list[BaseException] = field(default_factory=list)


@dataclass
class LaneResult:
    """How a lane ended: ``failed_task`` and ``error`` are set when a task failed for good."""

    state: str
    results: dict[str, Any]
    attempts: dict[str, TaskAttempts]
    failed_task: str | None = None
    error: BaseException | None = None

    @property
    def tries(self) -> dict[str, int]:
        return {task: a.tries for task, a in self.attempts.items()}

    @property
    def messages(self) -> list[str]:
        """Every error text seen, retries included (for the secrets checks)."""
        return [str(err) for a in self.attempts.values() for err in a.errors]


def task_context(task_id: str = "task", *, try_number: int = 1, run_id: str | None = None) -> dict[str, Any]:
    """The parts of an Airflow task context our operators read."""
    return {
        "ti": SimpleNamespace(
            dag_id="gist_index_and_generate",
            run_id=run_id or f"reliability__{next(_run_ids)}",
            task_id=task_id,
            map_index=0,
            try_number=try_number,
        ),
        "task_state_store": MemoryStateStore(),
        "outlet_events": _OutletEvents(),
    }


def _never_retried(err: BaseException) -> bool:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

    return isinstance(err, AirflowFailException | AirflowSensorTimeout)


async def _first_event(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError(f"{trigger!r} ended without an event")


def execute_with_deferral(operator: Any, context: Mapping[str, Any]) -> Any:
    """``operator.execute``; on ``TaskDeferred`` run the trigger to its event and resume, like Airflow."""
    from airflow.sdk.exceptions import TaskDeferred

    try:
        return operator.execute(context)
    except TaskDeferred as deferred:
        event = asyncio.run(_first_event(deferred.trigger))
        method = getattr(operator, deferred.method_name)
        return method(context, event=event.payload)


class Lane:
    """One video through ingest -> wait -> generate -> store, with Airflow-like retries.

    ``before`` maps a task id to an action run once, just before that task's first try
    (e.g. delete the asset before ``generate_gist``). ``retry_delay`` is slept between tries
    (0 by default: the fastest retry is the harshest for duplicate detection). Every ``run()``
    is a new DAG run: its state stores start empty.
    """

    TASKS = ("ingest", "wait_for_indexing", "generate_gist", "store_gist")

    def __init__(
        self,
        *,
        video_url: str = VIDEO_URL,
        index_name: str = "reliability",
        types: list[str] | None = None,
        retries: int = 2,
        poll: float = 0.05,
        before: Mapping[str, Callable[[dict[str, Any]], None]] | None = None,
        retry_delay: float = 0.0,
    ) -> None:
        self.video_url = video_url
        self.index_name = index_name
        self.types = types or ["title", "topic", "hashtag"]
        self.retries = retries
        self.poll = poll
        self.before = dict(before or {})
        self.retry_delay = retry_delay

    def _operator(self, task_id: str, results: dict[str, Any]) -> Any:
        from airflow_provider_gist.operators.gist import GenerateGistOperator
        from airflow_provider_gist.operators.ingest import IngestVideoOperator
        from airflow_provider_gist.operators.store import StoreGistsOperator
        from airflow_provider_gist.sensors.indexing import IndexingCompleteSensor

        if task_id == "ingest":
            return IngestVideoOperator(
                task_id=task_id,
                video_url=self.video_url,
                index_name=self.index_name,
                create_index_if_missing=True,
                poll_interval=self.poll,
                asset_timeout=20,
            )
        if task_id == "wait_for_indexing":
            ingested = results["ingest"]
            return IndexingCompleteSensor(
                task_id=task_id,
                index_id=ingested["index_id"],
                indexed_asset_id=ingested["indexed_asset_id"],
                deferrable=True,
                poll_interval=self.poll,
                poke_interval=self.poll,
                timeout=20,
            )
        if task_id == "generate_gist":
            indexed = results["wait_for_indexing"]
            return GenerateGistOperator(
                task_id=task_id,
                asset_id=indexed["asset_id"],
                index_id=indexed["index_id"],
                source_updated_at=indexed["updated_at"],
                duration=indexed["duration"],
                types=self.types,
            )
        return StoreGistsOperator(task_id=task_id, gists=results["generate_gist"])

    def run(self) -> LaneResult:
        run_id = f"reliability__{next(_run_ids)}"
        results: dict[str, Any] = {}
        attempts: dict[str, TaskAttempts] = {}
        for task_id in self.TASKS:
            if task_id in self.before:
                self.before[task_id](results)
            attempt = attempts[task_id] = TaskAttempts(task_id)
            state_store = MemoryStateStore()
            while True:
                attempt.tries += 1
                context = task_context(f"video.{task_id}", try_number=attempt.tries, run_id=run_id)
                context["task_state_store"] = state_store
                try:
                    results[task_id] = execute_with_deferral(self._operator(task_id, results), context)
                    break
                except Exception as err:
                    attempt.errors.append(err)
                    if _never_retried(err) or attempt.tries > self.retries:
                        return LaneResult("failed", results, attempts, task_id, err)
                    time.sleep(self.retry_delay)
        return LaneResult("success", results, attempts)
