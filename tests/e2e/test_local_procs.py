"""``scripts/local_procs.py``: what ``airflow-local.sh down`` relies on to stop everything.

Once a LocalExecutor worker outlived ``down``: it ignored SIGTERM, and its parent (the
scheduler) had exited, so nothing tracked it. These tests start such process trees and check
that ``stop`` leaves none of their processes alive, and that it never touches a process it
did not start (a recorded pid that now belongs to another program).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.local_deployment import REPO, process_tree

PROCS = REPO / "scripts" / "local_procs.py"

#: A component that ignores SIGTERM, with a child and a grandchild in a process group of their
#: own (as Airflow's task runner puts each task) that ignore it too.
STUBBORN = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setpgid(0, 0)
    os.fork()
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""

#: A component that exits on SIGTERM but leaves behind a forked worker that ignores it: the
#: scheduler and the LocalExecutor worker that once survived ``down``.
LEAVES_AN_ORPHAN = """
import os, signal, time
if os.fork() == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


def procs(pid_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command, rest = args[0], args[1:]
    return subprocess.run(
        [sys.executable, str(PROCS), command, "--dir", str(pid_dir), *rest],
        capture_output=True,
        text=True,
        timeout=60,
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def start(pid_dir: Path, name: str, code: str, processes: int) -> list[int]:
    """Start ``code`` as component ``name``; wait until its tree has ``processes`` processes."""
    result = procs(
        pid_dir,
        "start",
        "--name",
        name,
        "--log",
        str(pid_dir / f"{name}.log"),
        "--",
        sys.executable,
        "-c",
        code,
    )
    assert result.returncode == 0, result.stderr
    pid = json.loads((pid_dir / f"{name}.pid").read_text())["pid"]
    deadline = time.monotonic() + 20
    while len(tree := [p for p in process_tree(pid) if alive(p)]) < processes:
        assert time.monotonic() < deadline, f"{name} did not fork: {tree}"
        time.sleep(0.05)
    return tree


@pytest.fixture
def pid_dir(tmp_path: Path):
    yield tmp_path
    # whatever a failed test left behind
    for record in tmp_path.glob("*.pid"):
        for pid in process_tree(json.loads(record.read_text())["pid"]):
            os.kill(pid, signal.SIGKILL)


def test_stop_kills_a_tree_that_ignores_sigterm(pid_dir: Path) -> None:
    tree = start(pid_dir, "stubborn", STUBBORN, processes=3)
    result = procs(pid_dir, "stop", "--grace", "1", "stubborn")
    assert result.returncode == 0, result.stderr
    assert "SIGKILL 3 process(es)" in result.stderr
    assert [pid for pid in tree if alive(pid)] == []
    assert not (pid_dir / "stubborn.pid").exists()
    assert procs(pid_dir, "alive", "stubborn").returncode == 1


def test_stop_kills_what_an_exiting_component_leaves_behind(pid_dir: Path) -> None:
    tree = start(pid_dir, "scheduler", LEAVES_AN_ORPHAN, processes=2)
    assert procs(pid_dir, "alive", "scheduler").returncode == 0
    # a long grace: the orphan must not wait for it once the component itself has exited
    result = procs(pid_dir, "stop", "--grace", "120", "scheduler")
    assert result.returncode == 0, result.stderr
    assert [pid for pid in tree if alive(pid)] == []
    assert "SIGKILL 1 process(es)" in result.stderr


def test_a_recorded_pid_that_is_not_ours_is_left_alone(pid_dir: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # a record from an earlier boot: the same pid, another start time
        (pid_dir / "emulator.pid").write_text(json.dumps({"pid": other.pid, "start": 1, "cmd": []}))
        assert procs(pid_dir, "alive", "emulator").returncode == 1
        assert "emulator        stopped" in procs(pid_dir, "status", "emulator").stdout
        assert procs(pid_dir, "stop", "--grace", "1", "emulator").returncode == 0
        assert other.poll() is None
        assert not (pid_dir / "emulator.pid").exists()  # the stale record is dropped
    finally:
        other.kill()
        other.wait()
