"""Benchmark: worker slots while gists are analysed, deferrable vs sync, in a real deployment.

    .venv/bin/python bench/worker_slots.py --tasks 40 --analysis-seconds 60

Brings up ``scripts/airflow-local.sh`` (LocalExecutor, parallelism 4, a triggerer, the emulator)
in a temporary home with a DAGs folder of its own, seeds ``--tasks`` ready videos, and runs two
DAGs of ``--tasks`` mapped ``GenerateGistOperator`` tasks: one ``deferrable=True`` (an analysis
task per video, waited for in the triggerer) and one sync (``POST /analyze`` held in the worker).
The emulator takes ``--analysis-seconds`` for every analysis, sync or not. Prints each run's wall
time as a ratio to one analysis. Goals (issue 12): deferrable at most 1.5x; sync, with 4 slots,
about tasks / 4 = 10x. Stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]

DAG_FILE = '''
"""Bench DAGs: one mapped GenerateGistOperator per video, deferrable or sync."""
from __future__ import annotations

from airflow.sdk import DAG, task

from airflow_provider_gist.operators.gist import GenerateGistOperator

for deferrable in (True, False):
    with DAG(
        dag_id=f"bench_slots_{'deferrable' if deferrable else 'sync'}",
        schedule=None,
        params={"asset_ids": []},
    ):

        @task
        def assets(params=None):
            return list(params["asset_ids"])

        GenerateGistOperator.partial(
            task_id="gist", deferrable=deferrable, poll_interval=1.0, duration=60, types=["title"]
        ).expand(asset_id=assets())
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deployment:
    def __init__(self, home: Path, dags: Path, analysis_seconds: float) -> None:
        self.api_port, self.emu_port = _free_port(), _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.update(
            GIST_LOCAL_HOME=str(home),
            GIST_LOCAL_PORT=str(self.api_port),
            GIST_EMULATOR_PORT=str(self.emu_port),
            GIST_LOCAL_DAGS_FOLDER=str(dags),
            GIST_VENV=str(Path(sys.executable).resolve().parents[1]),
            # every analysis takes the same time: sync /analyze and analysis tasks alike
            GIST_EMULATOR_ARGS=(
                f"--asset-ready-seconds 0 --analyze-latency {analysis_seconds} --analysis-slots 100 "
                f"--analysis-startup-seconds {analysis_seconds} --analysis-seconds-per-minute 0"
            ),
        )
        self.home = home
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.emulator = f"http://127.0.0.1:{self.emu_port}"
        self.token = ""

    def script(self, command: str) -> None:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "airflow-local.sh"), command],
            env=self.env,
            check=True,
            capture_output=command != "up",
            timeout=400,
        )

    def login(self) -> None:
        password = json.loads((self.home / "simple_auth_manager_passwords.json").read_text())["admin"]
        resp = requests.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": password}, timeout=15
        )
        resp.raise_for_status()
        self.token = resp.json()["access_token"]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )
        resp.raise_for_status()
        return resp.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except requests.HTTPError:
                time.sleep(2)
        errors = self.api("GET", "/api/v2/importErrors")
        raise RuntimeError(f"{dag_id} was not parsed in {timeout:.0f}s; import errors: {errors}")

    def run(self, dag_id: str, conf: dict[str, Any], timeout: float = 3600) -> tuple[str, float]:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", path)
            if state["state"] in ("success", "failed"):
                if state["state"] == "failed":
                    self.explain(dag_id, run["dag_run_id"])
                start = _ts(state["start_date"])
                return state["state"], _ts(state["end_date"]) - start
            time.sleep(2)
        raise RuntimeError(f"{dag_id} did not finish in {timeout:.0f}s")

    def explain(self, dag_id: str, run_id: str) -> None:
        """Print the first failed task instance and the end of its log."""
        tis = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        failed = [ti for ti in tis if ti["state"] != "success"]
        print(f"{dag_id}: {len(failed)} of {len(tis)} task instances did not succeed", file=sys.stderr)
        for ti in failed:
            print(
                f"  {ti['task_id']}[{ti.get('map_index')}]: {ti['state']} try {ti.get('try_number')}",
                file=sys.stderr,
            )
        for ti in failed[:1]:
            path = (
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
                f"{max(ti.get('try_number') or 1, 1)}?map_index={ti.get('map_index', -1)}"
            )
            try:
                content = self.api("GET", path).get("content") or []
                events = [e for e in content if isinstance(e, dict)]
                for event in events[-8:]:
                    print(f"  {event.get('event')} {event.get('error_detail') or ''}"[:2000], file=sys.stderr)
            except requests.HTTPError as err:
                print(f"no log: {err}", file=sys.stderr)


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--analysis-seconds", type=float, default=60.0)
    parser.add_argument("--skip-sync", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="gist-bench-slots-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_slots.py").write_text(DAG_FILE)
    dep = Deployment(home, dags, args.analysis_seconds)
    try:
        dep.script("up")
        dep.login()
        for dag_id in ("bench_slots_deferrable", "bench_slots_sync"):
            dep.wait_for_dag(dag_id)
            dep.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        seeded = requests.post(
            f"{dep.emulator}/_emulator/seed",
            json={"index_name": "bench-slots", "count": args.tasks},
            timeout=60,
        ).json()
        assets = [video["asset_id"] for video in seeded["videos"]]
        one = args.analysis_seconds
        state, deferred = dep.run("bench_slots_deferrable", {"asset_ids": assets})
        print(f"deferrable: {state}, {deferred:.1f} s = {deferred / one:.2f}x one analysis ({one:g} s)")
        if not args.skip_sync:
            state, sync = dep.run("bench_slots_sync", {"asset_ids": assets})
            print(f"sync:       {state}, {sync:.1f} s = {sync / one:.2f}x one analysis")
            print(f"deferrable vs sync: {deferred / sync:.3f}x ({args.tasks} tasks, 4 worker slots)")
    finally:
        dep.script("down")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
