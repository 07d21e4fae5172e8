"""Start, check and stop the processes of a local deployment, by process id only.

Used by ``scripts/airflow-local.sh``; standard library only (it runs before any package is
imported). Each component is started in a session of its own and recorded in
``PID_DIR/NAME.pid`` as JSON: its pid and the kernel's start time of that pid, so a pid reused
by another program after a reboot or a crash is never taken for ours.

Stopping is where the trouble was: Airflow and Celery fork workers, the task runner puts each
task in a process group of its own, and a worker that ignores SIGTERM outlived ``down`` once.
So ``stop`` tracks every descendant of what it stops (re-scanned while it waits: children
forked or orphaned meanwhile are kept), sends SIGTERM to the components, then SIGTERM to
whatever they left behind, and SIGKILL to everything still alive when the grace runs out.

    python scripts/local_procs.py start  --dir PIDS --name NAME --log FILE -- CMD [ARGS...]
    python scripts/local_procs.py alive  --dir PIDS NAME           # exit 0 if running
    python scripts/local_procs.py status --dir PIDS NAME...
    python scripts/local_procs.py stop   --dir PIDS [--grace S] NAME...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: After the last component exited, what it left behind gets this long to exit on SIGTERM.
ORPHAN_GRACE = 5.0
#: How long to wait for SIGKILLed processes to disappear.
KILL_WAIT = 10.0
POLL = 0.2


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    start: int  # clock ticks after boot (field 22 of /proc/PID/stat)


def read_proc(pid: int) -> Proc | None:
    """The process ``pid`` from /proc, or ``None`` if it is gone (zombies count as gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return Proc(pid=pid, ppid=int(fields[1]), pgid=int(fields[2]), start=int(fields[19]))


def scan() -> dict[int, Proc]:
    """Every live process of the machine (the ones this user may see)."""
    procs: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                procs[proc.pid] = proc
    return procs


def same(pid: int, start: int) -> bool:
    """True while ``pid`` is still the process that started at ``start``."""
    proc = read_proc(pid)
    return proc is not None and proc.start == start


def descendants(roots: dict[int, int], procs: dict[int, Proc]) -> dict[int, int]:
    """``roots`` (pid -> start) and every live descendant of a live root, as pid -> start."""
    children: dict[int, list[Proc]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: dict[int, int] = {}
    stack = [pid for pid, start in roots.items() if pid in procs and procs[pid].start == start]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = procs[pid].start
        stack.extend(child.pid for child in children.get(pid, []))
    return found


def _record_path(pid_dir: Path, name: str) -> Path:
    return pid_dir / f"{name}.pid"


def load(pid_dir: Path, name: str) -> tuple[int, int] | None:
    """(pid, start) of a running component ``name``, or ``None`` (a stale record is removed)."""
    path = _record_path(pid_dir, name)
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text.isdigit():
        # A record of the script from before start times were kept: ours if it still runs
        # Airflow or the emulator (so `down` after an upgrade still stops that deployment).
        proc = read_proc(int(text))
        try:
            cmd = Path(f"/proc/{text}/cmdline").read_bytes()
        except OSError:
            cmd = b""
        if proc is not None and b"airflow" in cmd:
            return proc.pid, proc.start
        path.unlink(missing_ok=True)
        return None
    try:
        record = json.loads(text)
        pid, start = int(record["pid"]), int(record["start"])
    except (ValueError, KeyError, TypeError):
        return None
    if same(pid, start):
        return pid, start
    path.unlink(missing_ok=True)
    return None


def start(pid_dir: Path, name: str, log: Path, cmd: list[str]) -> int:
    running = load(pid_dir, name)
    if running is not None:
        print(f"{name} already running (pid {running[0]})", file=sys.stderr)
        return running[0]
    pid_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A session of its own: not stopped by a Ctrl-C in the terminal that ran `up`, and its
        # process group holds the children that do not move to a group of their own.
        proc = subprocess.Popen(  # noqa: S603 - the deployment's own commands, no shell
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    info = read_proc(proc.pid)
    if info is None:
        print(f"{name} exited at once; see {log}", file=sys.stderr)
        return 0
    _record_path(pid_dir, name).write_text(json.dumps({"pid": proc.pid, "start": info.start, "cmd": cmd}))
    print(f"started {name} (pid {proc.pid}, log {log})", file=sys.stderr)
    return proc.pid


def _signal(pid: int, start: int, sig: int) -> bool:
    if not same(pid, start):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(pid_dir: Path, names: list[str], grace: float) -> int:
    """SIGTERM ``names``, then what they leave, then SIGKILL all still alive after ``grace``.

    Returns 0 when every tracked process is gone, 1 otherwise (the survivors are printed).
    """
    mains: dict[int, tuple[str, int]] = {}
    for name in names:
        running = load(pid_dir, name)
        if running is not None:
            mains[running[0]] = (name, running[1])
    tracked = descendants({pid: start for pid, (_, start) in mains.items()}, scan())
    for pid, (name, start) in mains.items():
        if _signal(pid, start, signal.SIGTERM):
            print(f"SIGTERM {name} (pid {pid})", file=sys.stderr)

    deadline = time.monotonic() + grace
    termed = set(mains)
    while True:
        procs = scan()
        tracked.update(descendants(tracked, procs))
        tracked = {pid: start for pid, start in tracked.items() if same(pid, start)}
        if not tracked:
            break
        if not any(pid in tracked for pid in mains):
            # The components are gone; what they left behind (an orphaned task runner, a
            # worker that ignored the shutdown) is asked once, then killed soon after.
            for pid, start in tracked.items():
                if pid not in termed and _signal(pid, start, signal.SIGTERM):
                    termed.add(pid)
            deadline = min(deadline, time.monotonic() + ORPHAN_GRACE)
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL)

    if tracked:
        print(
            f"SIGKILL {len(tracked)} process(es) still alive after SIGTERM: {sorted(tracked)}",
            file=sys.stderr,
        )
        for pid, start in tracked.items():
            _signal(pid, start, signal.SIGKILL)
        until = time.monotonic() + KILL_WAIT
        while time.monotonic() < until:
            procs = scan()
            # anything forked between the scan and the kill is a descendant of a killed process
            tracked.update(descendants(tracked, procs))
            tracked = {pid: start for pid, start in tracked.items() if same(pid, start)}
            if not tracked:
                break
            for pid, start in tracked.items():
                _signal(pid, start, signal.SIGKILL)
            time.sleep(POLL)

    for pid, (name, start) in mains.items():
        if not same(pid, start):
            _record_path(pid_dir, name).unlink(missing_ok=True)
    if tracked:
        print(f"could not stop: {sorted(tracked)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--dir", type=Path, required=True)
    p_start.add_argument("--name", required=True)
    p_start.add_argument("--log", type=Path, required=True)
    p_start.add_argument("cmd", nargs=argparse.REMAINDER)
    for command in ("alive", "status"):
        p = sub.add_parser(command)
        p.add_argument("--dir", type=Path, required=True)
        p.add_argument("names", nargs="+")
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--dir", type=Path, required=True)
    p_stop.add_argument("--grace", type=float, default=30.0)
    p_stop.add_argument("names", nargs="*")
    args = parser.parse_args(argv)

    if args.command == "start":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("start needs a command after --")
        return 0 if start(args.dir, args.name, args.log, cmd) else 1
    if args.command == "alive":
        return 0 if all(load(args.dir, name) for name in args.names) else 1
    if args.command == "status":
        for name in args.names:
            running = load(args.dir, name)
            state = f"running (pid {running[0]})" if running else "stopped"
            print(f"{name:<16}{state}")
        return 0
    return stop(args.dir, args.names, args.grace)


if __name__ == "__main__":
    sys.exit(main())
