"""Drive ``scripts/airflow-local.sh`` from a test: bring a deployment up, talk to it, take it down.

A deployment lives in a throwaway home on free loopback ports; nothing of the tests' own
Airflow settings leaks into it. :func:`leftovers` finds every process still carrying the home
in its environment (everything ``up`` starts inherits it), which is how a test proves that
``down`` stopped all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "airflow-local.sh"


def free_port(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (default 127.0.0.1)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((hosts[0] if hosts else "127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if all(_bindable(host, port) for host in hosts[1:]):
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def script_env(home: Path, **settings: str) -> dict[str, str]:
    """The script's environment: the caller's minus every AIRFLOW* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # The environment running the tests has the project installed (sys.prefix: the venv itself,
    # where resolving the interpreter's symlink would give the base install).
    env.setdefault("GIST_VENV", sys.prefix)
    env["GIST_LOCAL_HOME"] = str(home)
    env.update(settings)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no file)"


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    url: str
    password: str = ""
    token: str = ""
    secrets: dict[str, str] = field(default_factory=dict)

    # -- the script ------------------------------------------------------------------------------
    def run_script(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def up(self, *args: str) -> None:
        result = self.run_script("up", *args)
        if result.returncode != 0:
            logs = self.home / "logs" / "components"
            details = "\n".join(
                f"--- {log.name}\n{tail(log)}" for log in sorted(logs.glob("*.log")) if log.is_file()
            )
            raise AssertionError(f"airflow-local.sh up failed:\n{result.stdout}\n{result.stderr}\n{details}")
        self.secrets = dict(
            line.split("=", 1)
            for line in (self.home / "local-secrets.env").read_text().splitlines()
            if "=" in line
        )
        self.password = json.loads((self.home / "simple_auth_manager_passwords.json").read_text())["admin"]
        resp = requests.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=15
        )
        resp.raise_for_status()
        self.token = resp.json()["access_token"]

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.run_script("down", timeout=300)

    def pid(self, name: str) -> int:
        return int(json.loads((self.home / "pids" / f"{name}.pid").read_text())["pid"])

    # -- the REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/api/v2/dags/{dag_id}").ok:
                return
            time.sleep(1)
        errors = self.api("GET", "/api/v2/importErrors").text
        raise AssertionError(f"{dag_id} was not parsed in {timeout}s; import errors: {errors[:2000]}")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        resp = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        resp.raise_for_status()
        return str(resp.json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        resp.raise_for_status()
        return list(resp.json()["dag_runs"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        resp.raise_for_status()
        return str(resp.json()["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        unfinished = [
            (ti["task_id"], ti["map_index"], ti["state"], ti["hostname"], ti["try_number"])
            for ti in self.task_instances(dag_id, run_id)
            if ti["state"] != "success"
        ]
        raise AssertionError(
            f"{dag_id} run {run_id} still {state} after {timeout}s; unfinished: {unfinished}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        resp = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
            params={"limit": 500},
        )
        resp.raise_for_status()
        return list(resp.json()["task_instances"])

    def task_log(self, ti: dict[str, Any]) -> str:
        """The text of a task instance's log, as the UI reads it (from the worker that ran it)."""
        path = (
            f"/api/v2/dags/{ti['dag_id']}/dagRuns/{quote(ti['dag_run_id'], safe='')}/taskInstances/"
            f"{ti['task_id']}/logs/{ti['try_number']}"
        )
        resp = self.api("GET", path, params={"full_content": "true", "map_index": ti["map_index"]})
        resp.raise_for_status()
        content = resp.json()["content"]
        # Every field of every entry: an exception's type and message are fields of their own.
        return "\n".join(json.dumps(entry) if isinstance(entry, dict) else str(entry) for entry in content)


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants, parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def leftovers(home: Path) -> list[str]:
    """Live processes whose environment names ``home`` as GIST_LOCAL_HOME (what `up` started)."""
    marker = f"GIST_LOCAL_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if marker not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(f"{entry}: {cmd[:160]}")
    return found


def kill_leftovers(home: Path) -> None:
    """Last resort after a failed test: nothing of this deployment may outlive the session."""
    for line in leftovers(home):
        with contextlib.suppress(OSError):
            os.kill(int(line.split(":", 1)[0]), 9)


def remove_home(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)


def titles_in(html: str, titles: Iterable[str]) -> list[str]:
    """The ``titles`` that do not appear in the page (HTML-escaped as the view renders them)."""
    from html import escape

    return [title for title in titles if escape(title) not in html]
